//! Ferry's SQLite store.
//!
//! One [`Store`] per server process, over one database file in WAL mode. The
//! schema is the numbered migrations in the workspace's `schemas/` directory,
//! compiled in and applied on open. Shared state changes only through
//! [`Store::apply`]; everything else here reads.

mod cached;
mod engine;
mod history;
mod migrations;
mod notify;
mod retention;
pub mod sync;

pub use engine::{EventCounts, EventFilter, Firing, Lane};
pub use retention::{PurgeCandidates, ReportBy, ReportLine};
pub use sync::{read_snapshot_tables, HISTORY_TABLES, SYNCABLE_TABLES};

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::cached::Cached;
use ferry_core::{
    Account, AccountKey, AccountPolicy, AccountToken, Admin, AdminToken, AuditRecord, Ban, Command,
    Direction, FolderRule, Mount, Outcome, Protocol, Secret, TransferRecord, TransferStatus,
    VirtualFolder,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A record with this key exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database was written by a newer Ferry.
    #[error("database schema version {found} is newer than this Ferry understands ({known})")]
    TooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// The change conflicts with other records (a partner still in use).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Tables sent by another server do not fit this one's (unknown table,
    /// other columns): nothing was applied.
    #[error("incompatible: {0}")]
    Incompatible(String),
    /// A file next to the database (a snapshot, a backup) could not be written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for ferry_core::FerryError {
    fn from(e: StoreError) -> Self {
        use ferry_core::ErrorKind;
        let kind = match &e {
            StoreError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Conflict(_) | StoreError::Incompatible(_) => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        };
        ferry_core::FerryError::new(kind, e.to_string())
    }
}

/// Result alias for the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Filters for [`Store::list_transfers`].
#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    /// Only this account's transfers.
    pub account: Option<String>,
    /// Only transfers with this status.
    pub status: Option<TransferStatus>,
    /// Only transfers that started at or after this time (unix ms).
    pub since: Option<i64>,
    /// Only pushes to and pulls from this partner.
    pub partner: Option<String>,
    /// Only transfers that started before this time (unix ms).
    pub until: Option<i64>,
    /// Only this protocol.
    pub protocol: Option<String>,
    /// Only paths containing this text (ignoring ASCII case).
    pub name: Option<String>,
    /// Keyset cursor: only rows after (`started_at`, `id`) in the list's
    /// order, i.e. older ones.
    pub before: Option<(i64, String)>,
    /// At most this many rows, newest first (default 1000).
    pub limit: Option<u32>,
}

/// The store of one server.
pub struct Store {
    conn: Mutex<Connection>,
    /// Names this instance of the store to history pullers (see
    /// [`Store::store_id`]). Read and replaced only while `conn` is held.
    store_id: Mutex<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, switches it to WAL
    /// with full fsync on commit, and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A transfer-log row acknowledged to a client must survive a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement of the commands is kept parsed (see `cached`).
        conn.set_prepared_statement_cache_capacity(cached::CAPACITY);
        migrations::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            store_id: Mutex::new(new_store_id()),
        })
    }

    /// The id of this store instance, which [`Store::export_history`] puts
    /// on every page so a puller knows whether the change sequence it
    /// follows is still this one. It is new whenever the store is opened
    /// and when [`Store::restore_from`] replaces the contents: while a
    /// database is closed, its file may be put back from a backup or
    /// copied from another server, which nothing in the file tells, and a
    /// puller then starts again from the beginning instead of missing
    /// rows. (A puller also starts from the beginning after its own
    /// restart: its marks are kept in memory.)
    pub fn store_id(&self) -> String {
        let _conn = self.conn();
        self.current_store_id()
    }

    /// The store id; the caller holds `conn`.
    fn current_store_id(&self) -> String {
        self.store_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; SQLite
        // rolled that transaction back, so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one command in one transaction. The only writer of shared state.
    pub fn apply(&self, command: &Command) -> Result<Outcome> {
        self.apply_with(command, None)
    }

    /// Applies `command` and, in the same transaction, sets the node-local
    /// value `key` (the replicated-log position a cluster node has applied),
    /// so a crash leaves both or neither. A command that fails changes
    /// nothing; the value is then set on its own and the error returned.
    pub fn apply_marked(&self, command: &Command, key: &str, value: &str) -> Result<Outcome> {
        match self.apply_with(command, Some((key, value))) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.set_local(key, value)?;
                Err(e)
            }
        }
    }

    /// A node-local value (never replicated or synced).
    pub fn local(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM node_local WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a node-local value.
    pub fn set_local(&self, key: &str, value: &str) -> Result<()> {
        self.conn().exec(
            "INSERT INTO node_local (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// A cluster-wide setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Node-local values whose key starts with `prefix`, in key order.
    pub fn locals_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, value FROM node_local WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt
            .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Sets a node-local value and removes others (`remove`), in one
    /// transaction: one commit where two or more would each wait for the
    /// disk.
    pub fn set_local_removing(&self, key: &str, value: &str, remove: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.exec(
            "INSERT INTO node_local (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        for gone in remove {
            tx.exec("DELETE FROM node_local WHERE key = ?1", [gone])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes node-local values, in one transaction.
    pub fn remove_locals(&self, keys: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for key in keys {
            tx.exec("DELETE FROM node_local WHERE key = ?1", [key])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes a node-local value.
    pub fn remove_local(&self, key: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM node_local WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Replaces the shared state with a copy made by [`Store::snapshot_to`]
    /// (SQLite's backup API in reverse), as a cluster node does when it
    /// installs a snapshot from the leader. This node's own `node_local`
    /// values are kept: they are not the sender's to replace. The store
    /// gets a new [`Store::store_id`].
    pub fn restore_from(&self, snapshot: &Path) -> Result<()> {
        self.restore_setting_locals(snapshot, &[])
    }

    /// [`Store::restore_from`], with the node-local values in `set` set
    /// (over this node's own) by the same transaction that replaces the
    /// contents: a cluster node records the log position the snapshot
    /// reflects this way, so a crash leaves the old contents with the old
    /// position or the new contents with the new one, never a mix.
    ///
    /// The node-local rows are written into `snapshot` first, so the copy
    /// is changed: it must be this node's own file.
    pub fn restore_setting_locals(&self, snapshot: &Path, set: &[(&str, &str)]) -> Result<()> {
        let mut conn = self.conn();
        let mut locals: std::collections::BTreeMap<String, String> = {
            let mut stmt = conn.prepare_cached("SELECT key, value FROM node_local")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        };
        for (key, value) in set {
            locals.insert((*key).to_owned(), (*value).to_owned());
        }
        // The copy gets this node's rows before it is restored, so the
        // restore (one write transaction on this database) brings the
        // contents and the node-local rows in together.
        {
            let mut copy = Connection::open_with_flags(
                snapshot,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            // A snapshot of an older release's schema is brought up to this
            // one (its migrations only add: docs/upgrade.md); one of a newer
            // release is refused, and this store stays as it was.
            migrations::migrate(&mut copy)?;
            let tx = copy.transaction()?;
            tx.exec("DELETE FROM node_local", [])?;
            for (key, value) in &locals {
                tx.exec(
                    "INSERT INTO node_local (key, value) VALUES (?1, ?2)",
                    [key, value],
                )?;
            }
            tx.commit()?;
            copy.close().map_err(|(_, e)| e)?;
        }
        // Another store's history and change sequence from here on (even
        // half of one, should the restore fail): pullers must not take its
        // positions for this store's. No export runs while `conn` is held.
        *self.store_id.lock().unwrap_or_else(|p| p.into_inner()) = new_store_id();
        conn.restore(
            rusqlite::MAIN_DB,
            snapshot,
            None::<fn(rusqlite::backup::Progress)>,
        )?;
        Ok(())
    }

    /// Applies `command` like [`Store::apply`], but its commit does not
    /// wait for the disk (`synchronous=NORMAL` for this one transaction).
    /// Only for a change whose content is durable on this server already
    /// and is applied again from there after a crash: an upload's
    /// transfer-log row, written first, with a commit that waits, as its
    /// upload intent. The next commit that waits for the disk makes this
    /// one durable too (the WAL is written and synced in order), and the
    /// intent is removed only by such a later commit.
    pub fn apply_unflushed(&self, command: &Command) -> Result<Outcome> {
        let mut conn = self.conn();
        conn.exec("PRAGMA synchronous = NORMAL", [])?;
        let applied = Self::apply_on(&mut conn, command, None);
        // Every other commit waits for the disk again.
        conn.exec("PRAGMA synchronous = FULL", [])?;
        applied
    }

    fn apply_with(&self, command: &Command, marker: Option<(&str, &str)>) -> Result<Outcome> {
        Self::apply_on(&mut self.conn(), command, marker)
    }

    fn apply_on(
        conn: &mut Connection,
        command: &Command,
        marker: Option<(&str, &str)>,
    ) -> Result<Outcome> {
        let mut tx = conn.transaction()?;
        let applied = match command {
            Command::Keyed {
                key,
                at,
                command: inner,
            } => keyed(&mut tx, key, *at, inner)?,
            other => Ok(apply_in(&tx, other)?),
        };
        if let Some((key, value)) = marker {
            tx.exec(
                "INSERT INTO node_local (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?;
        }
        // A keyed command's error is kept with its key: committed too.
        tx.commit()?;
        let rows_changed = applied?;
        tracing::debug!(command = command.name(), rows_changed, "applied");
        Ok(Outcome { rows_changed })
    }
}

/// A fresh random store id.
fn new_store_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Applies one (unkeyed) command inside `tx`; the rows it changed.
fn apply_in(tx: &Connection, command: &Command) -> Result<usize> {
    let rows_changed = match command {
        Command::CreateAccount(a) => {
            let exists: bool = tx
                .query_row("SELECT 1 FROM accounts WHERE name = ?1", [&a.name], |_| {
                    Ok(true)
                })
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::AlreadyExists(format!("account {:?}", a.name)));
            }
            let history: Vec<&str> = a.password_hash.iter().map(Secret::expose).collect();
            tx.exec(
                "INSERT INTO accounts (id, name, home, password_hash, enabled, created_at,
                                       password_history)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.id,
                    a.name,
                    a.home,
                    a.password_hash.as_ref().map(Secret::expose),
                    a.enabled,
                    a.created_at,
                    serde_json::to_string(&history)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?
                ],
            )?
        }
        Command::SetAccountEnabled { name, enabled } => {
            let n = tx.exec(
                "UPDATE accounts SET enabled = ?2 WHERE name = ?1",
                params![name, enabled],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {name:?}")));
            }
            n
        }
        Command::RemoveAccount { name } => {
            let n = tx.exec("DELETE FROM accounts WHERE name = ?1", [name])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {name:?}")));
            }
            n
        }
        Command::AddAccountKey(k) => {
            let id = account_id(tx, &k.account)?;
            let n = tx.exec(
                "INSERT OR IGNORE INTO account_keys
                       (account_id, fingerprint, public_key, comment, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, k.fingerprint, k.public_key, k.comment, k.added_at],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "key {} of account {:?}",
                    k.fingerprint, k.account
                )));
            }
            n
        }
        Command::AddAccountToken(t) => {
            let account_id = account_id(tx, &t.account)?;
            let n = tx.exec(
                "INSERT OR IGNORE INTO account_tokens
                       (id, account_id, sha256, label, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.id,
                    account_id,
                    t.sha256,
                    t.label,
                    t.created_at,
                    t.expires_at
                ],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("token {:?}", t.id)));
            }
            // A new browser session sweeps out the expired ones (measured
            // by the command's own time, so every node removes the same).
            if t.is_web_session() {
                tx.exec(
                    "DELETE FROM account_tokens
                     WHERE substr(id, 1, ?1) = ?2 AND expires_at IS NOT NULL
                       AND expires_at <= ?3",
                    params![
                        ferry_core::WEB_SESSION_ID_PREFIX.len(),
                        ferry_core::WEB_SESSION_ID_PREFIX,
                        t.created_at
                    ],
                )?;
            }
            n
        }
        Command::RemoveAccountToken { account, id } => {
            let n = tx.exec(
                "DELETE FROM account_tokens WHERE id = ?2
                       AND account_id = (SELECT id FROM accounts WHERE name = ?1)",
                params![account, id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "token {id:?} of account {account:?}"
                )));
            }
            n
        }
        Command::RecordLogin { name, at } => tx.exec(
            "UPDATE accounts SET last_login_at = ?2
             WHERE name = ?1 AND (last_login_at IS NULL OR last_login_at < ?2)",
            params![name, at],
        )?,
        Command::UpdateAccount(ferry_core::AccountUpdate {
            name,
            password_hash,
            expires_at,
            allowed_networks,
            quota_bytes,
            quota_files,
            upload_rate,
            download_rate,
            max_sessions,
            must_change_password,
            active_since,
        }) => {
            let id = account_id(tx, name)?;
            if let Some(at) = active_since {
                tx.exec(
                    "UPDATE accounts SET active_since = ?2 WHERE id = ?1",
                    params![id, at],
                )?;
            }
            if let Some(hash) = password_hash {
                tx.exec(
                    "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                    params![id, hash.as_ref().map(Secret::expose)],
                )?;
            }
            if let Some(Some(hash)) = password_hash {
                // The new hash goes first; a password removed keeps the
                // history, so it cannot come back as it was either.
                let mut history = history_in(tx, &id)?;
                history.insert(0, hash.expose().to_owned());
                history.truncate(ferry_core::PASSWORD_HISTORY_LEN);
                tx.exec(
                    "UPDATE accounts SET password_history = ?2 WHERE id = ?1",
                    params![
                        id,
                        serde_json::to_string(&history)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?
                    ],
                )?;
            }
            if let Some(must) = must_change_password {
                tx.exec(
                    "UPDATE accounts SET must_change_password = ?2 WHERE id = ?1",
                    params![id, must],
                )?;
            }
            if let Some(at) = expires_at {
                tx.exec(
                    "UPDATE accounts SET expires_at = ?2 WHERE id = ?1",
                    params![id, at],
                )?;
            }
            if let Some(networks) = allowed_networks {
                tx.exec(
                    "UPDATE accounts SET allowed_networks = ?2 WHERE id = ?1",
                    params![id, networks.join(",")],
                )?;
            }
            let as_sql = |n: &Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            if let Some(bytes) = quota_bytes {
                tx.exec(
                    "UPDATE accounts SET quota_bytes = ?2 WHERE id = ?1",
                    params![id, as_sql(bytes)],
                )?;
            }
            if let Some(files) = quota_files {
                tx.exec(
                    "UPDATE accounts SET quota_files = ?2 WHERE id = ?1",
                    params![id, as_sql(files)],
                )?;
            }
            if let Some(rate) = upload_rate {
                tx.exec(
                    "UPDATE accounts SET upload_rate = ?2 WHERE id = ?1",
                    params![id, as_sql(rate)],
                )?;
            }
            if let Some(rate) = download_rate {
                tx.exec(
                    "UPDATE accounts SET download_rate = ?2 WHERE id = ?1",
                    params![id, as_sql(rate)],
                )?;
            }
            if let Some(cap) = max_sessions {
                tx.exec(
                    "UPDATE accounts SET max_sessions = ?2 WHERE id = ?1",
                    params![id, as_sql(cap)],
                )?;
            }
            1
        }
        Command::RemoveAccountKey {
            account,
            fingerprint,
        } => {
            let id = account_id(tx, account)?;
            match fingerprint {
                Some(fingerprint) => {
                    let n = tx.exec(
                        "DELETE FROM account_keys WHERE account_id = ?1 AND fingerprint = ?2",
                        params![id, fingerprint],
                    )?;
                    if n == 0 {
                        return Err(StoreError::NotFound(format!(
                            "key {fingerprint} of account {account:?}"
                        )));
                    }
                    n
                }
                None => tx.exec("DELETE FROM account_keys WHERE account_id = ?1", [id])?,
            }
        }
        Command::BanAddress(ban) => {
            // Bans that ended are forgotten here, deterministically (by the
            // new ban's own time), so the table stays small.
            tx.exec("DELETE FROM bans WHERE until <= ?1", [ban.banned_at])?;
            tx.exec(
                "INSERT INTO bans (address, until, banned_at, reason, by)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(address) DO UPDATE SET until = excluded.until,
                       banned_at = excluded.banned_at, reason = excluded.reason,
                       by = excluded.by",
                params![ban.address, ban.until, ban.banned_at, ban.reason, ban.by],
            )?;
            let notice = ferry_core::Notice {
                at: ban.banned_at,
                summary: format!(
                    "{} banned by {} for {} s: {}",
                    ban.address,
                    ban.by,
                    (ban.until - ban.banned_at).max(0) / 1000,
                    ban.reason
                ),
                address: Some(ban.address.clone()),
                node: Some(ban.by.clone()),
                error: Some(ban.reason.clone()),
                ..ferry_core::Notice::default()
            };
            let key = format!("ban:{}:{}", ban.address, ban.banned_at);
            1 + notify::raise(tx, ferry_core::TriggerKind::LoginBan, &key, notice)?
        }
        Command::UnbanAddress { address } => {
            let n = tx.exec("DELETE FROM bans WHERE address = ?1", [address])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("a ban of {address}")));
            }
            n
        }
        Command::CreateAdmin(a) => {
            let n = tx.exec(
                "INSERT OR IGNORE INTO admins (name, role, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                params![
                    a.name,
                    a.role.as_str(),
                    a.password_hash.as_ref().map(Secret::expose),
                    a.created_at
                ],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("admin {:?}", a.name)));
            }
            n
        }
        Command::RemoveAdmin { name } => {
            let n = tx.exec("DELETE FROM admins WHERE name = ?1", [name])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("admin {name:?}")));
            }
            n
        }
        Command::AddAdminToken(t) => {
            engine::require(tx, "admins", "admin", &t.admin)?;
            let n = tx.exec(
                "INSERT OR IGNORE INTO admin_tokens (id, admin, sha256, label, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.admin, t.sha256, t.label, t.created_at],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("token {:?}", t.id)));
            }
            n
        }
        Command::RemoveAdminToken { admin, id } => {
            let n = tx.exec(
                "DELETE FROM admin_tokens WHERE id = ?2 AND admin = ?1",
                params![admin, id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "token {id:?} of admin {admin:?}"
                )));
            }
            n
        }
        Command::RecordAudit(r) => tx.exec(
            "INSERT OR IGNORE INTO audit
                   (id, at, admin, role, client_addr, request, body, status, outcome, node,
                    before, after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                r.id,
                r.at,
                r.admin,
                r.role.as_str(),
                r.client_addr,
                r.request,
                r.body,
                r.status,
                r.outcome,
                r.node,
                r.before,
                r.after
            ],
        )?,
        Command::SetFolderRule(rule) => {
            let id = account_id(tx, &rule.account)?;
            let allow: Vec<&str> = rule.allow.iter().map(|p| p.as_str()).collect();
            tx.exec(
                "INSERT INTO folder_permissions (account_id, path, allow) VALUES (?1, ?2, ?3)
                     ON CONFLICT(account_id, path) DO UPDATE SET allow = excluded.allow",
                params![id, rule.path, allow.join(",")],
            )?
        }
        Command::RemoveFolderRule { account, path } => {
            let id = account_id(tx, account)?;
            let n = tx.exec(
                "DELETE FROM folder_permissions WHERE account_id = ?1 AND path = ?2",
                params![id, path],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "a rule for {path:?} of account {account:?}"
                )));
            }
            n
        }
        Command::CreateVirtualFolder(f) => {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT name FROM virtual_folders WHERE name = ?1 OR path = ?2",
                    params![f.name, f.path],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(taken) = taken {
                return Err(if taken == f.name {
                    StoreError::AlreadyExists(format!("virtual folder {:?}", f.name))
                } else {
                    StoreError::Conflict(format!(
                        "virtual folder {taken:?} is the directory {:?} already",
                        f.path
                    ))
                });
            }
            tx.exec(
                "INSERT INTO virtual_folders (name, path, created_at) VALUES (?1, ?2, ?3)",
                params![f.name, f.path, f.created_at],
            )?
        }
        Command::RemoveVirtualFolder { name } => {
            engine::require(tx, "virtual_folders", "virtual folder", name)?;
            let mounted: i64 = tx.row(
                "SELECT count(*) FROM folder_mounts WHERE folder = ?1",
                [name],
                |r| r.get(0),
            )?;
            if mounted > 0 {
                return Err(StoreError::Conflict(format!(
                    "virtual folder {name:?} is mounted in {mounted} home(s): unmount it first"
                )));
            }
            tx.exec("DELETE FROM virtual_folders WHERE name = ?1", [name])?
        }
        Command::MountFolder(m) => {
            let id = account_id(tx, &m.account)?;
            engine::require(tx, "virtual_folders", "virtual folder", &m.folder)?;
            let allow: Vec<&str> = m.allow.iter().map(|p| p.as_str()).collect();
            tx.exec(
                "INSERT INTO folder_mounts (account_id, path, folder, allow) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(account_id, path)
                     DO UPDATE SET folder = excluded.folder, allow = excluded.allow",
                params![id, m.path, m.folder, allow.join(",")],
            )?
        }
        Command::UnmountFolder { account, path } => {
            let id = account_id(tx, account)?;
            let n = tx.exec(
                "DELETE FROM folder_mounts WHERE account_id = ?1 AND path = ?2",
                params![id, path],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "a mount at {path:?} of account {account:?}"
                )));
            }
            n
        }
        Command::SetSetting { key, value } => tx.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?,
        Command::SetRetentionPolicy(_)
        | Command::RemoveRetentionPolicy { .. }
        | Command::PurgeHistory { .. } => retention::apply(tx, command)?,
        _ => engine::apply(tx, command)?,
    };
    Ok(rows_changed)
}

/// What a keyed command gave, as kept with its key.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeptResult {
    Rows(usize),
    Error { kind: String, message: String },
}

impl KeptResult {
    fn of(result: &Result<usize>) -> Self {
        match result {
            Ok(n) => KeptResult::Rows(*n),
            Err(StoreError::AlreadyExists(m)) => KeptResult::Error {
                kind: "already_exists".into(),
                message: m.clone(),
            },
            Err(StoreError::NotFound(m)) => KeptResult::Error {
                kind: "not_found".into(),
                message: m.clone(),
            },
            Err(e) => KeptResult::Error {
                kind: "conflict".into(),
                message: e.to_string(),
            },
        }
    }

    fn replay(self) -> Result<usize> {
        match self {
            KeptResult::Rows(n) => Ok(n),
            KeptResult::Error { kind, message } => Err(match kind.as_str() {
                "already_exists" => StoreError::AlreadyExists(message),
                "not_found" => StoreError::NotFound(message),
                _ => StoreError::Conflict(message),
            }),
        }
    }
}

/// Applies `command` once per `key`: the outer error is the database's,
/// the inner one the command's (kept with the key, and given again to a
/// retry). Keys older than [`ferry_core::IDEMPOTENCY_KEY_TTL_MS`] are
/// dropped here, by the command's own time, the same on every node.
fn keyed(
    tx: &mut Transaction<'_>,
    key: &str,
    at: ferry_core::UnixMillis,
    command: &Command,
) -> Result<Result<usize>> {
    tx.exec(
        "DELETE FROM idempotency_keys WHERE created_at < ?1",
        [at - ferry_core::IDEMPOTENCY_KEY_TTL_MS],
    )?;
    let kept: Option<(String, String)> = tx
        .query_row(
            "SELECT kind, result FROM idempotency_keys WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((kind, result)) = kept {
        if kind != command.name() {
            return Ok(Err(StoreError::Conflict(format!(
                "idempotency key {key:?} was used for {kind}, not {}",
                command.name()
            ))));
        }
        let kept: KeptResult =
            serde_json::from_str(&result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        return Ok(kept.replay());
    }
    let result = {
        let savepoint = tx.savepoint()?;
        let result = apply_in(&savepoint, command);
        if result.is_ok() {
            savepoint.commit()?;
        }
        // Dropped without commit: the command's partial changes roll back.
        result
    };
    if matches!(result, Err(StoreError::Sqlite(_) | StoreError::Io(_))) {
        // The database failed, not the command: nothing is kept.
        return Err(result.err().unwrap_or(StoreError::Corrupt(String::new())));
    }
    let text = serde_json::to_string(&KeptResult::of(&result))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.exec(
        "INSERT INTO idempotency_keys (key, kind, result, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![key, command.name(), text, at],
    )?;
    Ok(result)
}

/// The password history of the account with id `id`, the current hash
/// first: the stored list, or the current hash alone for an account whose
/// password was set before the history was kept.
fn history_in(conn: &Connection, id: &str) -> Result<Vec<String>> {
    let (current, stored): (Option<String>, String) = conn.row(
        "SELECT password_hash, password_history FROM accounts WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut history: Vec<String> = serde_json::from_str(&stored)
        .map_err(|e| StoreError::Corrupt(format!("password history: {e}")))?;
    if history.is_empty() {
        history.extend(current);
    }
    Ok(history)
}

impl Store {
    /// The account called `name`.
    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        self.conn()
            .query_row(
                "SELECT id, name, home, password_hash, enabled, created_at
                 FROM accounts WHERE name = ?1",
                [name],
                row_to_account,
            )
            .optional()
            .map_err(Into::into)
    }

    /// What limits account `name` beyond its credentials; `None` if there
    /// is no such account.
    pub fn account_policy(&self, name: &str) -> Result<Option<AccountPolicy>> {
        self.conn()
            .query_row(
                "SELECT expires_at, allowed_networks, quota_bytes, quota_files,
                        upload_rate, download_rate, max_sessions, must_change_password,
                        created_at, last_login_at, active_since
                 FROM accounts WHERE name = ?1",
                [name],
                |r| {
                    let networks: String = r.get(1)?;
                    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
                        Ok(r.get::<_, Option<i64>>(i)?
                            .map(|n| u64::try_from(n).unwrap_or(0)))
                    };
                    Ok(AccountPolicy {
                        quota_bytes: count(2)?,
                        quota_files: count(3)?,
                        upload_rate: count(4)?,
                        download_rate: count(5)?,
                        max_sessions: count(6)?,
                        must_change_password: r.get(7)?,
                        created_at: r.get(8)?,
                        last_login_at: r.get(9)?,
                        active_since: r.get(10)?,
                        expires_at: r.get(0)?,
                        allowed_networks: networks
                            .split(',')
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    })
                },
            )
            .optional()
            .map_err(Into::into)
    }

    /// The argon2 hashes of account `name`'s last passwords, the current
    /// one first (at most [`ferry_core::PASSWORD_HISTORY_LEN`]); empty if
    /// there is no such account.
    pub fn password_history(&self, name: &str) -> Result<Vec<Secret>> {
        let conn = self.conn();
        let Some(id) = conn
            .query_row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        else {
            return Ok(Vec::new());
        };
        Ok(history_in(&conn, &id)?
            .into_iter()
            .map(Secret::new)
            .collect())
    }

    /// Every named admin, by name.
    pub fn admins(&self) -> Result<Vec<Admin>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, role, password_hash, created_at FROM admins ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_admin)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The admin called `name`, if any.
    pub fn admin(&self, name: &str) -> Result<Option<Admin>> {
        self.conn()
            .query_row(
                "SELECT name, role, password_hash, created_at FROM admins WHERE name = ?1",
                [name],
                row_to_admin,
            )
            .optional()
            .map_err(Into::into)
    }

    /// The admin whose API token has SHA-256 `sha256` (hex), if any.
    pub fn admin_by_token(&self, sha256: &str) -> Result<Option<Admin>> {
        self.conn()
            .query_row(
                "SELECT a.name, a.role, a.password_hash, a.created_at
                 FROM admin_tokens t JOIN admins a ON a.name = t.admin
                 WHERE t.sha256 = ?1",
                [sha256],
                row_to_admin,
            )
            .optional()
            .map_err(Into::into)
    }

    /// The API tokens of admin `name`.
    pub fn admin_tokens(&self, name: &str) -> Result<Vec<AdminToken>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, admin, sha256, label, created_at FROM admin_tokens
             WHERE admin = ?1 ORDER BY created_at",
        )?;
        let rows = stmt.query_map([name], |r| {
            Ok(AdminToken {
                id: r.get(0)?,
                admin: r.get(1)?,
                sha256: r.get(2)?,
                label: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Audit records, newest first: since `since` (unix ms), of `admin`
    /// only, at most `limit`.
    pub fn audit(
        &self,
        since: Option<ferry_core::UnixMillis>,
        admin: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, admin, role, client_addr, request, body, status, outcome, node,
                    before, after
             FROM audit WHERE at >= ?1 AND (?2 IS NULL OR admin = ?2)
             ORDER BY at DESC, id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![since.unwrap_or(0), admin, limit], |r| {
            Ok(AuditRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                admin: r.get(2)?,
                role: parse_text(3, r.get(3)?)?,
                client_addr: r.get(4)?,
                request: r.get(5)?,
                body: r.get(6)?,
                status: r.get(7)?,
                outcome: r.get(8)?,
                node: r.get(9)?,
                before: r.get(10)?,
                after: r.get(11)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The bans that last beyond `now`, newest first.
    pub fn bans(&self, now: ferry_core::UnixMillis) -> Result<Vec<Ban>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT address, until, banned_at, reason, by FROM bans
             WHERE until > ?1 ORDER BY banned_at DESC",
        )?;
        let rows = stmt.query_map([now], row_to_ban)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The ban of `address` if it lasts beyond `now`.
    pub fn ban(&self, address: &str, now: ferry_core::UnixMillis) -> Result<Option<Ban>> {
        self.conn()
            .query_row(
                "SELECT address, until, banned_at, reason, by FROM bans
                 WHERE address = ?1 AND until > ?2",
                params![address, now],
                row_to_ban,
            )
            .optional()
            .map_err(Into::into)
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, home, password_hash, enabled, created_at
             FROM accounts ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_account)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The authorised keys of account `name`.
    pub fn account_keys(&self, name: &str) -> Result<Vec<AccountKey>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.name, k.fingerprint, k.public_key, k.comment, k.added_at
             FROM account_keys k JOIN accounts a ON a.id = k.account_id
             WHERE a.name = ?1 ORDER BY k.added_at",
        )?;
        let rows = stmt.query_map([name], |r| {
            Ok(AccountKey {
                account: r.get(0)?,
                fingerprint: r.get(1)?,
                public_key: r.get(2)?,
                comment: r.get(3)?,
                added_at: r.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The folder rules of account `name` (none: it may do everything).
    pub fn folder_rules(&self, name: &str) -> Result<Vec<FolderRule>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.name, f.path, f.allow
             FROM folder_permissions f JOIN accounts a ON a.id = f.account_id
             WHERE a.name = ?1 ORDER BY f.path",
        )?;
        let rows = stmt.query_map([name], |r| {
            let allow: String = r.get(2)?;
            Ok(FolderRule {
                account: r.get(0)?,
                path: r.get(1)?,
                allow: ferry_core::permissions::parse_permissions(&allow)
                    .map_err(|e| bad_text(2, e))?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Every virtual folder, by name.
    pub fn virtual_folders(&self) -> Result<Vec<VirtualFolder>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, path, created_at FROM virtual_folders ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(VirtualFolder {
                name: r.get(0)?,
                path: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The mounts of account `account` (`Some`) or of every account, by
    /// account and path, each with its folder's directory (relative to the
    /// repository).
    pub fn mounts(&self, account: Option<&str>) -> Result<Vec<(Mount, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.name, m.folder, m.path, m.allow, f.path
             FROM folder_mounts m
             JOIN accounts a ON a.id = m.account_id
             JOIN virtual_folders f ON f.name = m.folder
             WHERE ?1 IS NULL OR a.name = ?1
             ORDER BY a.name, m.path",
        )?;
        let rows = stmt.query_map([account], |r| {
            let allow: String = r.get(3)?;
            let mount = Mount {
                account: r.get(0)?,
                folder: r.get(1)?,
                path: r.get(2)?,
                allow: ferry_core::permissions::parse_permissions(&allow)
                    .map_err(|e| bad_text(3, e))?,
            };
            Ok((mount, r.get(4)?))
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The token with public id `id`, if any (whatever its expiry).
    pub fn account_token(&self, id: &str) -> Result<Option<AccountToken>> {
        self.conn()
            .query_row(
                "SELECT a.name, t.id, t.sha256, t.label, t.created_at, t.expires_at
                 FROM account_tokens t JOIN accounts a ON a.id = t.account_id
                 WHERE t.id = ?1",
                [id],
                row_to_token,
            )
            .optional()
            .map_err(Into::into)
    }

    /// The API tokens of account `name`, oldest first (browser sessions
    /// are not API tokens: see [`Store::account_web_sessions`]).
    pub fn account_tokens(&self, name: &str) -> Result<Vec<AccountToken>> {
        self.tokens_of(name, false)
    }

    /// The browser sessions of account `name` (expired ones too, until
    /// the next browser login sweeps them out), oldest first.
    pub fn account_web_sessions(&self, name: &str) -> Result<Vec<AccountToken>> {
        self.tokens_of(name, true)
    }

    fn tokens_of(&self, name: &str, web: bool) -> Result<Vec<AccountToken>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.name, t.id, t.sha256, t.label, t.created_at, t.expires_at
             FROM account_tokens t JOIN accounts a ON a.id = t.account_id
             WHERE a.name = ?1 AND (substr(t.id, 1, ?2) = ?3) = ?4
             ORDER BY t.created_at, t.id",
        )?;
        let prefix = ferry_core::WEB_SESSION_ID_PREFIX;
        let rows = stmt.query_map(params![name, prefix.len(), prefix, web], row_to_token)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Transfer-log rows matching `filter`, newest first. The statement
    /// names only the filters given, so SQLite picks the index that fits
    /// (an account's rows by `transfers_by_account`, the rest by
    /// `transfers_by_start`), and the keyset cursor is a range on
    /// `started_at`: a page costs the same deep in the log as at its top.
    pub fn list_transfers(&self, filter: &TransferFilter) -> Result<Vec<TransferRecord>> {
        use rusqlite::types::Value;
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut add = |condition: &'static str, value: Value| {
            conditions.push(condition);
            values.push(value);
        };
        if let Some(account) = &filter.account {
            add("account = ?", Value::Text(account.clone()));
        }
        if let Some(status) = filter.status {
            add("status = ?", Value::Text(status.as_str().to_owned()));
        }
        if let Some(since) = filter.since {
            add("started_at >= ?", Value::Integer(since));
        }
        if let Some(until) = filter.until {
            add("started_at < ?", Value::Integer(until));
        }
        if let Some(partner) = &filter.partner {
            add("partner = ?", Value::Text(partner.clone()));
        }
        if let Some(protocol) = &filter.protocol {
            add("protocol = ?", Value::Text(protocol.clone()));
        }
        if let Some(name) = &filter.name {
            // LIKE ignores ASCII case; the text's own `%`, `_` and `\`
            // are escaped, so they match only themselves.
            let mut pattern = String::from("%");
            for c in name.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            add("path LIKE ? ESCAPE '\\'", Value::Text(pattern));
        }
        if let Some((at, id)) = &filter.before {
            add("started_at <= ?", Value::Integer(*at));
            add("(started_at < ? OR id < ?)", Value::Integer(*at));
            values.push(Value::Text(id.clone()));
        }
        let wheres = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Value::Integer(i64::from(filter.limit.unwrap_or(1000))));
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers {wheres}
             ORDER BY started_at DESC, id DESC
             LIMIT ?"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), row_to_transfer)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The transfer-log row with this id.
    pub fn transfer(&self, id: &str) -> Result<Option<TransferRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"),
                [id],
                row_to_transfer,
            )
            .optional()
            .map_err(Into::into)
    }
}

/// The id of the account called `name`, or `NotFound`.
fn account_id(tx: &Connection, name: &str) -> Result<String> {
    tx.row("SELECT id FROM accounts WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("account {name:?}")))
}

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountToken> {
    Ok(AccountToken {
        account: r.get(0)?,
        id: r.get(1)?,
        sha256: r.get(2)?,
        label: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

pub(crate) const TRANSFER_COLUMNS: &str = "id, account, protocol, direction, path, bytes, sha256,
    started_at, ended_at, status, node, client_addr, error, partner, event_id, size";

/// The error of a text column `idx` that does not parse.
pub(crate) fn bad_text(idx: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        e.to_string().into(),
    )
}

fn parse_text<T: std::str::FromStr>(idx: usize, text: String) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map_err(|e| bad_text(idx, e))
}

pub(crate) fn row_to_transfer(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransferRecord> {
    let bytes: i64 = r.get(5)?;
    Ok(TransferRecord {
        id: r.get(0)?,
        account: r.get(1)?,
        protocol: parse_text::<Protocol>(2, r.get(2)?)?,
        direction: parse_text::<Direction>(3, r.get(3)?)?,
        path: r.get(4)?,
        bytes: u64::try_from(bytes)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(5, bytes))?,
        sha256: r.get(6)?,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        status: parse_text::<TransferStatus>(9, r.get(9)?)?,
        node: r.get(10)?,
        client_addr: r.get(11)?,
        error: r.get(12)?,
        partner: r.get(13)?,
        event_id: r.get(14)?,
        size: r
            .get::<_, Option<i64>>(15)?
            .map(|n| u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(15, n)))
            .transpose()?,
    })
}

fn row_to_admin(r: &rusqlite::Row<'_>) -> rusqlite::Result<Admin> {
    Ok(Admin {
        name: r.get(0)?,
        role: parse_text(1, r.get(1)?)?,
        password_hash: r.get::<_, Option<String>>(2)?.map(Secret::new),
        created_at: r.get(3)?,
    })
}

fn row_to_ban(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ban> {
    Ok(Ban {
        address: r.get(0)?,
        until: r.get(1)?,
        banned_at: r.get(2)?,
        reason: r.get(3)?,
        by: r.get(4)?,
    })
}

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        home: r.get(2)?,
        password_hash: r.get::<_, Option<String>>(3)?.map(Secret::new),
        enabled: r.get(4)?,
        created_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests;
