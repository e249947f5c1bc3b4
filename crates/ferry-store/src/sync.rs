//! Active/passive mode: copying configuration tables to a standby
//! (`ferry sync`) and merging history rows between servers after a failover.
//!
//! A sync runs in three steps. The active server writes a consistent
//! snapshot of its database ([`Store::snapshot_to`]) and reads the chosen
//! tables out of it ([`read_snapshot_tables`]); the standby compares them
//! with its own ([`Store::diff_tables`]) and applies them in one transaction
//! after backing up its database ([`Store::apply_tables`]).
//!
//! History rows are never synced: after a failover both servers hold rows the
//! other lacks, so they are exported in pages ([`Store::export_history`]) and
//! merged by id ([`Store::merge_history`]) without losing any (both in
//! `history.rs`, on the table machinery of this module). Pages follow
//! the exporting store's change sequence (a `change_seq` column that
//! triggers set from a counter of this store on every insert and change of a
//! history row), never a clock; the column is this store's alone and is left
//! out of every table read, sent, merged or digested here.
//!
//! Table and column names are interpolated into SQL only after they have been
//! matched against [`SYNCABLE_TABLES`] / [`HISTORY_TABLES`] and the local
//! schema (`pragma_table_info`), and they are quoted even then; every value
//! is a bound parameter.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::Path;

use ferry_core::sync::{SqlValue, TableData, TableDiff};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::{Result, Store, StoreError};

/// Configuration tables `ferry sync` may copy, in foreign-key order (parents first).
pub const SYNCABLE_TABLES: &[&str] = &[
    "accounts",
    "account_keys",
    "account_tokens",
    "folder_permissions",
    "virtual_folders",
    "folder_mounts",
    "partners",
    "routes",
    "schedules",
    "monitors",
    "notify_endpoints",
    "notify_rules",
    "settings",
    "admins",
    "admin_tokens",
    "retention_policies",
];

/// History tables: never synced, merged by id after a failover.
pub const HISTORY_TABLES: &[&str] = &[
    "transfers",
    "events",
    "event_attempts",
    "schedule_firings",
    "audit",
];

/// The column of the history tables holding the store's change sequence
/// (schema migration 8): node-local, so never part of a table's columns
/// as [`Schema`] reads them.
pub(crate) const CHANGE_SEQ: &str = "change_seq";

/// How often a snapshot retries its single backup step while the source is
/// busy (a checkpoint, another process's write lock on a rollback journal).
pub(crate) const SNAPSHOT_BUSY_RETRIES: u32 = 100;

pub(crate) fn to_sql(v: &SqlValue) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        SqlValue::Null => ValueRef::Null,
        SqlValue::Integer(i) => ValueRef::Integer(*i),
        SqlValue::Real(f) => ValueRef::Real(*f),
        SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
        SqlValue::Blob(b) => ValueRef::Blob(b),
    })
}

pub(crate) fn from_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

/// A primary-key value in a form that can be hashed and ordered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum KeyPart {
    Null,
    Integer(i64),
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

pub(crate) type Key = Vec<KeyPart>;

pub(crate) fn key_of(row: &[SqlValue], pk: &[usize]) -> Key {
    pk.iter()
        .map(|&i| match row.get(i) {
            None | Some(SqlValue::Null) => KeyPart::Null,
            Some(SqlValue::Integer(v)) => KeyPart::Integer(*v),
            Some(SqlValue::Real(v)) => KeyPart::Real(v.to_bits()),
            Some(SqlValue::Text(v)) => KeyPart::Text(v.clone()),
            Some(SqlValue::Blob(v)) => KeyPart::Blob(v.clone()),
        })
        .collect()
}

pub(crate) fn key_values(row: &[SqlValue], pk: &[usize]) -> Vec<SqlValue> {
    pk.iter()
        .map(|&i| row.get(i).cloned().unwrap_or(SqlValue::Null))
        .collect()
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

pub(crate) fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// The canonical (static) name of `name` if it is one of `allowed`.
pub(crate) fn known(name: &str, allowed: &[&'static str], what: &str) -> Result<&'static str> {
    allowed.iter().copied().find(|t| *t == name).ok_or_else(|| {
        StoreError::Incompatible(format!(
            "table {name:?} is not one of the {what} tables [{}]",
            allowed.join(", ")
        ))
    })
}

/// Column names and primary-key flags of a local table, in table order,
/// without the node-local [`CHANGE_SEQ`].
pub(crate) fn table_info(conn: &Connection, table: &str) -> Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT name, pk FROM pragma_table_info(?1) WHERE name != ?2 ORDER BY cid")?;
    let rows = stmt.query_map([table, CHANGE_SEQ], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let info = rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
    if info.is_empty() {
        return Err(StoreError::NotFound(format!("table {table:?}")));
    }
    Ok(info)
}

/// The local shape of a table.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) table: &'static str,
    pub(crate) columns: Vec<String>,
    /// Indexes into `columns` of the primary key, in key order.
    pub(crate) pk: Vec<usize>,
}

impl Schema {
    pub(crate) fn read(conn: &Connection, table: &'static str) -> Result<Self> {
        let info = table_info(conn, table)?;
        let mut pk: Vec<(i64, usize)> = info
            .iter()
            .enumerate()
            .filter(|(_, (_, k))| *k > 0)
            .map(|(i, (_, k))| (*k, i))
            .collect();
        if pk.is_empty() {
            return Err(StoreError::Incompatible(format!(
                "table {table} has no primary key"
            )));
        }
        pk.sort_unstable();
        Ok(Self {
            table,
            columns: info.into_iter().map(|(name, _)| name).collect(),
            pk: pk.into_iter().map(|(_, i)| i).collect(),
        })
    }

    pub(crate) fn column_list(&self) -> String {
        quoted_list(self.columns.iter().map(String::as_str))
    }

    /// The primary key's column names (`pk` holds their positions in
    /// `columns`, all in range by construction).
    pub(crate) fn pk_columns(&self) -> impl Iterator<Item = &str> {
        self.pk
            .iter()
            .filter_map(|&i| self.columns.get(i).map(String::as_str))
    }

    pub(crate) fn pk_list(&self) -> String {
        quoted_list(self.pk_columns())
    }

    pub(crate) fn index_of(&self, column: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                StoreError::Incompatible(format!("table {} has no column {column:?}", self.table))
            })
    }

    /// `INSERT INTO t (cols) VALUES (?..) ON CONFLICT(pk)`, to be completed
    /// with `DO NOTHING` or `DO UPDATE ...`.
    pub(crate) fn insert_on_conflict(&self) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT({})",
            quote(self.table),
            self.column_list(),
            placeholders(self.columns.len()),
            self.pk_list()
        )
    }

    /// `SET c = excluded.c, ...` over the non-key columns, if there are any.
    pub(crate) fn update_from_excluded(&self) -> Option<String> {
        let sets: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.pk.contains(i))
            .map(|(_, c)| format!("{q} = excluded.{q}", q = quote(c)))
            .collect();
        (!sets.is_empty()).then(|| format!("SET {}", sets.join(", ")))
    }
}

/// Runs `sql` and reads `n` columns of each row as values.
pub(crate) fn query_rows<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    n: usize,
) -> Result<Vec<Vec<SqlValue>>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| {
        (0..n)
            .map(|i| r.get::<_, Value>(i).map(from_sql))
            .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// Every row of a table, ordered by primary key.
pub(crate) fn read_rows(conn: &Connection, schema: &Schema) -> Result<Vec<Vec<SqlValue>>> {
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        schema.column_list(),
        quote(schema.table),
        schema.pk_list()
    );
    query_rows(conn, &sql, [], schema.columns.len())
}

pub(crate) fn read_table(conn: &Connection, table: &'static str) -> Result<TableData> {
    let schema = Schema::read(conn, table)?;
    let rows = read_rows(conn, &schema)?;
    Ok(TableData {
        name: table.to_owned(),
        columns: schema.columns,
        rows,
    })
}

/// An incoming table that passed the checks against the local schema.
pub(crate) struct Checked<'a> {
    pub(crate) schema: Schema,
    pub(crate) data: &'a TableData,
}

/// Checks incoming tables against `allowed` and the local schema, and returns
/// them in `allowed` order.
pub(crate) fn check_incoming<'a>(
    conn: &Connection,
    incoming: &'a [TableData],
    allowed: &[&'static str],
    what: &str,
) -> Result<Vec<Checked<'a>>> {
    let mut out: Vec<Checked<'a>> = Vec::with_capacity(incoming.len());
    for data in incoming {
        let table = known(&data.name, allowed, what)?;
        if out.iter().any(|c| c.schema.table == table) {
            return Err(StoreError::Incompatible(format!(
                "table {table} is sent twice"
            )));
        }
        let schema = Schema::read(conn, table)?;
        if data.columns != schema.columns {
            return Err(StoreError::Incompatible(format!(
                "table {table}: the sender has columns [{}], this server [{}]",
                data.columns.join(", "),
                schema.columns.join(", ")
            )));
        }
        let mut keys = HashSet::with_capacity(data.rows.len());
        for (i, row) in data.rows.iter().enumerate() {
            if row.len() != schema.columns.len() {
                return Err(StoreError::Incompatible(format!(
                    "table {table}: row {i} has {} values for {} columns",
                    row.len(),
                    schema.columns.len()
                )));
            }
            if !keys.insert(key_of(row, &schema.pk)) {
                return Err(StoreError::Incompatible(format!(
                    "table {table}: primary key {:?} is sent twice",
                    key_values(row, &schema.pk)
                )));
            }
        }
        out.push(Checked { schema, data });
    }
    out.sort_by_key(|c| allowed.iter().position(|t| *t == c.schema.table));
    Ok(out)
}

/// What applying one incoming table changes.
pub(crate) struct Plan<'a> {
    pub(crate) diff: TableDiff,
    /// New and changed rows.
    pub(crate) upserts: Vec<&'a [SqlValue]>,
    /// Keys of local rows that are not sent.
    pub(crate) deletes: Vec<Vec<SqlValue>>,
}

pub(crate) fn plan<'a>(conn: &Connection, checked: &[Checked<'a>]) -> Result<Vec<Plan<'a>>> {
    let mut plans = Vec::with_capacity(checked.len());
    for c in checked {
        let pk = &c.schema.pk;
        let local: BTreeMap<Key, Vec<SqlValue>> = read_rows(conn, &c.schema)?
            .into_iter()
            .map(|row| (key_of(&row, pk), row))
            .collect();
        let mut plan = Plan {
            diff: TableDiff {
                table: c.schema.table.to_owned(),
                ..TableDiff::default()
            },
            upserts: Vec::new(),
            deletes: Vec::new(),
        };
        let mut sent = HashSet::with_capacity(c.data.rows.len());
        for row in &c.data.rows {
            let key = key_of(row, pk);
            match local.get(&key) {
                None => {
                    plan.diff.added += 1;
                    plan.upserts.push(row);
                }
                Some(mine) if mine == row => plan.diff.unchanged += 1,
                Some(_) => {
                    plan.diff.changed += 1;
                    plan.upserts.push(row);
                }
            }
            sent.insert(key);
        }
        for (key, row) in &local {
            if !sent.contains(key) {
                plan.diff.removed += 1;
                plan.deletes.push(key_values(row, pk));
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Wraps a constraint failure while applying `table` into a `Conflict` that
/// names the table; other errors pass through.
pub(crate) fn apply_error(table: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            StoreError::Conflict(format!("table {table}: {e}; nothing was applied"))
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Copies the main database of `src` into the new file `dest` in one backup
/// step, then makes the copy a self-contained rollback-journal file and
/// fsyncs it. On failure the partial file is removed.
pub(crate) fn snapshot_conn(src: &Connection, dest: &Path) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        // The copy holds password hashes and sealed partner secrets.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(dest) {
        Ok(file) => drop(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists(format!(
                "file {}",
                dest.display()
            )))
        }
        Err(e) => return Err(io_error(dest, e)),
    }
    let result = write_snapshot(src, dest);
    if result.is_err() {
        // Best effort: a half-written copy must not pass for a snapshot.
        let _ = std::fs::remove_file(dest);
    }
    result
}

pub(crate) fn write_snapshot(src: &Connection, dest: &Path) -> Result<()> {
    let mut out = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    {
        let backup = Backup::new(src, &mut out)?;
        let mut retries = 0;
        loop {
            // All pages in one step: the copy is one read transaction on the
            // source, so writers on other connections never restart it.
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked if retries < SNAPSHOT_BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => {
                    return Err(StoreError::Conflict(format!(
                        "no snapshot was taken: the backup step ended with {other:?}"
                    )))
                }
            }
        }
    }
    // The copy carries the source's WAL flag; a snapshot is one file.
    let mode: String = out.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Corrupt(format!(
            "snapshot {} stayed in journal mode {mode}",
            dest.display()
        )));
    }
    out.close().map_err(|(_, e)| e)?;
    File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(dest, e))?;
    #[cfg(unix)]
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// [`Store::snapshot_to`] of the database file `db` without opening it as a
/// store (no migration, no write to it, no lock of the state directory):
/// the consistent copy `ferry backup` takes beside the server that has it
/// open. `dest` must not exist; on failure no file is left behind.
pub fn snapshot_file(db: &Path, dest: &Path) -> Result<()> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(std::time::Duration::from_secs(5))?;
    snapshot_conn(&src, dest)
}

/// Reads `tables` (each must be in [`SYNCABLE_TABLES`], else
/// [`StoreError::Incompatible`]) from a snapshot file made by
/// [`Store::snapshot_to`], opened read-only; rows are ordered by primary key.
pub fn read_snapshot_tables(snapshot: &Path, tables: &[&str]) -> Result<Vec<TableData>> {
    let names = tables
        .iter()
        .map(|t| known(t, SYNCABLE_TABLES, "syncable"))
        .collect::<Result<Vec<_>>>()?;
    let mut conn = Connection::open_with_flags(
        snapshot,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let tx = conn.transaction()?;
    let out = names
        .into_iter()
        .map(|t| read_table(&tx, t))
        .collect::<Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(out)
}

impl Store {
    /// The schema version (`PRAGMA user_version`) of this database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Into::into)
    }

    /// Writes a consistent copy of the whole database to `dest`, which must
    /// not exist (else [`StoreError::AlreadyExists`]), with SQLite's online
    /// backup API in one step, so writers on other connections never make it
    /// restart and service does not pause (WAL): the copy is read through a
    /// connection of its own, so this store's callers do not wait for it
    /// either. The copy is a self-contained file (rollback journal, not WAL),
    /// readable only by its owner on Unix, and fsynced before this returns.
    /// On failure no file is left behind.
    pub fn snapshot_to(&self, dest: &Path) -> Result<()> {
        let file = self
            .conn()
            .path()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from);
        match file {
            Some(file) => {
                let src = Connection::open_with_flags(
                    &file,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                src.busy_timeout(std::time::Duration::from_secs(5))?;
                snapshot_conn(&src, dest)
            }
            // In memory: only this connection can read it.
            None => snapshot_conn(&self.conn(), dest),
        }
    }

    /// The column names of `table` in table order (`PRAGMA table_info`),
    /// as synced and merged (without the node-local change sequence);
    /// [`StoreError::NotFound`] if there is no such table.
    pub fn table_columns(&self, table: &str) -> Result<Vec<String>> {
        Ok(table_info(&self.conn(), table)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Compares incoming tables with the local ones without writing: per
    /// table (in [`SYNCABLE_TABLES`] order), the rows added, changed, removed
    /// and unchanged, keyed by the table's primary key.
    ///
    /// [`StoreError::Incompatible`] when a table is not in
    /// [`SYNCABLE_TABLES`] or is sent twice, when its columns (names and
    /// order) differ from the local table's (the message names the table and
    /// both column lists), when a row has the wrong number of values, or when
    /// a primary key is sent twice.
    pub fn diff_tables(&self, incoming: &[TableData]) -> Result<Vec<TableDiff>> {
        let mut conn = self.conn();
        let checked = check_incoming(&conn, incoming, SYNCABLE_TABLES, "syncable")?;
        let tx = conn.transaction()?;
        let diffs = plan(&tx, &checked)?.into_iter().map(|p| p.diff).collect();
        tx.commit()?;
        Ok(diffs)
    }

    /// Applies incoming tables atomically and returns what changed (as
    /// [`Store::diff_tables`] would have reported it).
    ///
    /// The tables are checked as by [`Store::diff_tables`] first; then a
    /// backup of the current database is written to `backup_to` (see
    /// [`Store::snapshot_to`]); then one transaction, with foreign keys
    /// deferred to its end, makes each sent table equal to the incoming rows:
    /// local rows whose key is not sent are deleted (children first, in
    /// reverse [`SYNCABLE_TABLES`] order), then new and changed rows are
    /// written parents first with `INSERT .. ON CONFLICT(key) DO UPDATE`. A
    /// row is never replaced (a delete would cascade to its children), so
    /// updating an account keeps its keys. Tables not sent are left alone,
    /// except for rows that `ON DELETE CASCADE` removes with a deleted parent.
    ///
    /// Before committing, each sent table must hold exactly the sent rows
    /// and none of its rows may refer to a missing parent; a violation, or
    /// any other error, rolls everything back (the database is exactly as
    /// before) and the error names the table and constraint.
    pub fn apply_tables(&self, incoming: &[TableData], backup_to: &Path) -> Result<Vec<TableDiff>> {
        let mut conn = self.conn();
        let checked = check_incoming(&conn, incoming, SYNCABLE_TABLES, "syncable")?;
        snapshot_conn(&conn, backup_to)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.pragma_update(None, "defer_foreign_keys", "ON")?;
        let plans = plan(&tx, &checked)?;

        // Deleting first lets a sent row take a unique value (an account
        // name) that a removed row held.
        for (c, p) in checked.iter().zip(&plans).rev() {
            if p.deletes.is_empty() {
                continue;
            }
            let s = &c.schema;
            let condition = s
                .pk_columns()
                .enumerate()
                .map(|(n, column)| format!("{} IS ?{}", quote(column), n + 1))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!("DELETE FROM {} WHERE {condition}", quote(s.table));
            let mut stmt = tx.prepare(&sql)?;
            for key in &p.deletes {
                stmt.execute(params_from_iter(key.iter().map(to_sql)))
                    .map_err(|e| apply_error(s.table, e))?;
            }
        }
        for (c, p) in checked.iter().zip(&plans) {
            if p.upserts.is_empty() {
                continue;
            }
            let s = &c.schema;
            let sql = match s.update_from_excluded() {
                Some(set) => format!("{} DO UPDATE {set}", s.insert_on_conflict()),
                None => format!("{} DO NOTHING", s.insert_on_conflict()),
            };
            let mut stmt = tx.prepare(&sql)?;
            for row in &p.upserts {
                stmt.execute(params_from_iter(row.iter().map(to_sql)))
                    .map_err(|e| apply_error(s.table, e))?;
            }
        }

        for c in &checked {
            let table = c.schema.table;
            let count: i64 =
                tx.query_row(&format!("SELECT COUNT(*) FROM {}", quote(table)), [], |r| {
                    r.get(0)
                })?;
            if usize::try_from(count).ok() != Some(c.data.rows.len()) {
                return Err(StoreError::Conflict(format!(
                    "table {table}: {} rows were sent but {count} would be stored (rows \
                     whose parent is not sent are removed with it); nothing was applied",
                    c.data.rows.len()
                )));
            }
            let mut stmt = tx.prepare(
                "SELECT parent, COUNT(*) FROM pragma_foreign_key_check(?1)
                 GROUP BY parent ORDER BY parent",
            )?;
            let broken = stmt
                .query_map([table], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if let Some((parent, n)) = broken.first() {
                return Err(StoreError::Conflict(format!(
                    "table {table}: {n} row(s) refer to rows of {parent} that would not \
                     exist (FOREIGN KEY constraint); nothing was applied"
                )));
            }
        }
        tx.commit().map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                StoreError::Conflict(format!("{e} at commit; nothing was applied"))
            }
            _ => StoreError::Sqlite(e),
        })?;
        let diffs: Vec<TableDiff> = plans.into_iter().map(|p| p.diff).collect();
        for d in &diffs {
            tracing::info!(
                table = %d.table,
                added = d.added,
                changed = d.changed,
                removed = d.removed,
                "applied synced table"
            );
        }
        Ok(diffs)
    }

    /// A digest (hex SHA-256) of the given tables' names, columns and rows,
    /// ordered by primary key: equal digests mean equal contents. Each table
    /// must be in [`SYNCABLE_TABLES`] or [`HISTORY_TABLES`].
    pub fn digest_tables(&self, tables: &[&str]) -> Result<String> {
        fn put(hasher: &mut Sha256, bytes: &[u8]) {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let all: Vec<&'static str> = SYNCABLE_TABLES
            .iter()
            .chain(HISTORY_TABLES)
            .copied()
            .collect();
        let names = tables
            .iter()
            .map(|t| known(t, &all, "syncable or history"))
            .collect::<Result<Vec<_>>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut hasher = Sha256::new();
        for table in names {
            let data = read_table(&tx, table)?;
            put(&mut hasher, data.name.as_bytes());
            hasher.update((data.columns.len() as u64).to_le_bytes());
            for c in &data.columns {
                put(&mut hasher, c.as_bytes());
            }
            hasher.update((data.rows.len() as u64).to_le_bytes());
            for value in data.rows.iter().flatten() {
                match value {
                    SqlValue::Null => hasher.update([0]),
                    SqlValue::Integer(v) => {
                        hasher.update([1]);
                        hasher.update(v.to_le_bytes());
                    }
                    SqlValue::Real(v) => {
                        hasher.update([2]);
                        hasher.update(v.to_bits().to_le_bytes());
                    }
                    SqlValue::Text(v) => {
                        hasher.update([3]);
                        put(&mut hasher, v.as_bytes());
                    }
                    SqlValue::Blob(v) => {
                        hasher.update([4]);
                        put(&mut hasher, v);
                    }
                }
            }
        }
        tx.commit()?;
        Ok(hex::encode(hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::sync::HistoryMark;
    use ferry_core::sync::HistoryPage;
    use ferry_core::{
        Account, AccountKey, AccountToken, AfterPull, AttemptResult, Command, Direction, ErrorKind,
        Event, EventKind, EventStatus, FerryError, Partner, Protocol, Route, Schedule,
        ScheduleAction, Secret, TransferRecord, TransferStatus,
    };
    use std::path::PathBuf;

    fn account(name: &str) -> Account {
        Account {
            id: format!("id-{name}"),
            name: name.into(),
            home: name.into(),
            password_hash: Some(Secret::new("$argon2id$fake")),
            enabled: true,
            created_at: 1,
        }
    }

    fn key(account: &str, fingerprint: &str) -> AccountKey {
        AccountKey {
            account: account.into(),
            fingerprint: fingerprint.into(),
            public_key: "ssh-ed25519 AAAA".into(),
            comment: "laptop".into(),
            added_at: 2,
        }
    }

    fn partner(name: &str) -> Partner {
        Partner {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 22,
            username: "u".into(),
            password_sealed: Some("sealed".into()),
            private_key_sealed: None,
            host_key: "ssh-ed25519 AAAA".into(),
            remote_dir: "/in".into(),
            after_pull: AfterPull::Delete,
            rate_limit: None,
            created_at: 1,
        }
    }

    fn transfer(id: &str, ended_at: i64) -> TransferRecord {
        TransferRecord {
            id: id.into(),
            account: "alice".into(),
            protocol: Protocol::Sftp,
            direction: Direction::Upload,
            path: "/a".into(),
            bytes: 10,
            size: None,
            sha256: None,
            started_at: ended_at - 1,
            ended_at,
            status: TransferStatus::Completed,
            node: "n1".into(),
            client_addr: "127.0.0.1:1".into(),
            error: None,
            partner: None,
            event_id: None,
        }
    }

    fn event(id: &str, at: i64) -> Event {
        Event {
            id: id.into(),
            kind: EventKind::Upload,
            route: None,
            schedule: None,
            slot: None,
            account: Some("alice".into()),
            path: Some("/a".into()),
            transfer_id: None,
            partners: vec![],
            status: EventStatus::Pending,
            attempts: 0,
            max_attempts: 3,
            retry_base_ms: 100,
            next_at: at,
            lease_node: None,
            lease_until: None,
            steps_done: 0,
            current_path: None,
            created_at: at,
            updated_at: at,
            last_error: None,
            resubmit_of: None,
            notice: None,
        }
    }

    fn apply(s: &Store, command: Command) {
        s.apply(&command).unwrap();
    }

    fn claim(s: &Store, id: &str, node: &str, now: i64) {
        let out = s
            .apply(&Command::ClaimEvent {
                id: id.into(),
                node: node.into(),
                now,
                lease_until: now + 1000,
            })
            .unwrap();
        assert_eq!(out.rows_changed, 1, "claim of {id}");
    }

    fn finish(s: &Store, id: &str, node: &str, attempt: u32, now: i64, result: AttemptResult) {
        let out = s
            .apply(&Command::FinishAttempt {
                id: id.into(),
                node: node.into(),
                attempt,
                now,
                result,
            })
            .unwrap();
        assert_eq!(out.rows_changed, 1, "finish of {id}");
    }

    fn configure(s: &Store) {
        apply(s, Command::CreateAccount(account("alice")));
        apply(s, Command::CreateAccount(account("bob")));
        apply(s, Command::AddAccountKey(key("alice", "SHA256:k1")));
        apply(
            s,
            Command::AddAccountToken(AccountToken {
                account: "alice".into(),
                id: "tok1".into(),
                sha256: "00".repeat(32),
                label: "ci".into(),
                created_at: 3,
                expires_at: None,
            }),
        );
        apply(s, Command::AddPartner(partner("acme")));
        apply(
            s,
            Command::AddRoute(Route {
                name: "to-acme".into(),
                account: "alice".into(),
                pattern: "*.csv".into(),
                actions: vec!["push:acme".parse().unwrap()],
                max_attempts: 2,
                retry_base_ms: 100,
                created_at: 1,
            }),
        );
        apply(
            s,
            Command::AddSchedule(Schedule {
                name: "pull".into(),
                cron: "0 * * * * *".into(),
                timezone: "UTC".into(),
                action: "pull:acme:alice".parse::<ScheduleAction>().unwrap(),
                catch_up: false,
                max_attempts: 3,
                retry_base_ms: 100,
                created_at: 1,
            }),
        );
    }

    fn configured() -> Store {
        let s = Store::open_in_memory().unwrap();
        configure(&s);
        s
    }

    fn config_digest(s: &Store) -> String {
        s.digest_tables(SYNCABLE_TABLES).unwrap()
    }

    fn all_digest(s: &Store) -> String {
        let all: Vec<&str> = SYNCABLE_TABLES
            .iter()
            .chain(HISTORY_TABLES)
            .copied()
            .collect();
        s.digest_tables(&all).unwrap()
    }

    /// Snapshots `from` into `dir` and reads `tables` out of the snapshot.
    fn tables_of(from: &Store, dir: &Path, tables: &[&str]) -> Vec<TableData> {
        let snap = fresh_path(dir, "snap");
        from.snapshot_to(&snap).unwrap();
        read_snapshot_tables(&snap, tables).unwrap()
    }

    fn fresh_path(dir: &Path, stem: &str) -> PathBuf {
        (0..)
            .map(|n| dir.join(format!("{stem}-{n}.db")))
            .find(|p| !p.exists())
            .unwrap()
    }

    fn rows_of<'a>(tables: &'a [TableData], name: &str) -> &'a TableData {
        tables.iter().find(|t| t.name == name).unwrap()
    }

    #[test]
    fn a_snapshot_round_trips_through_read_snapshot_tables() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.db")).unwrap();
        configure(&s);
        let snap = dir.path().join("snap.db");
        s.snapshot_to(&snap).unwrap();

        // One self-contained file, not a WAL database.
        let header = std::fs::read(&snap).unwrap();
        assert_eq!(&header[..16], b"SQLite format 3\0");
        assert_eq!((header[18], header[19]), (1, 1), "rollback journal mode");
        assert!(!dir.path().join("snap.db-wal").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&snap).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read a snapshot");
        }

        let tables = read_snapshot_tables(&snap, SYNCABLE_TABLES).unwrap();
        assert_eq!(
            tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            SYNCABLE_TABLES
        );
        let accounts = rows_of(&tables, "accounts");
        assert_eq!(accounts.columns, s.table_columns("accounts").unwrap());
        assert_eq!(accounts.rows.len(), 2);
        assert_eq!(accounts.rows[0][0], SqlValue::Text("id-alice".into()));
        assert_eq!(accounts.rows[1][1], SqlValue::Text("bob".into()));
        assert_eq!(rows_of(&tables, "account_keys").rows.len(), 1);
        assert_eq!(rows_of(&tables, "monitors").rows.len(), 0);

        // Applying the snapshot's tables to an empty store reproduces them.
        let copy = Store::open_in_memory().unwrap();
        copy.apply_tables(&tables, &dir.path().join("backup.db"))
            .unwrap();
        assert_eq!(config_digest(&copy), config_digest(&s));
        let reopened = Store::open(&snap).unwrap();
        assert_eq!(config_digest(&reopened), config_digest(&s));
        assert_eq!(
            reopened.schema_version().unwrap(),
            s.schema_version().unwrap()
        );
        assert_eq!(s.schema_version().unwrap(), crate::migrations::LATEST);

        // The destination must not exist; other tables cannot be read.
        assert!(matches!(
            s.snapshot_to(&snap).unwrap_err(),
            StoreError::AlreadyExists(_)
        ));
        assert!(matches!(
            read_snapshot_tables(&snap, &["transfers"]).unwrap_err(),
            StoreError::Incompatible(_)
        ));
        assert!(matches!(
            s.table_columns("nope").unwrap_err(),
            StoreError::NotFound(_)
        ));
    }

    #[test]
    fn snapshots_are_taken_while_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ferry.db");
        let reader = Store::open(&db).unwrap();
        let writer = Store::open(&db).unwrap();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                for i in 0..300 {
                    apply(
                        &writer,
                        Command::RecordTransfer(transfer(&format!("t{i}"), i)),
                    );
                }
            });
            let mut seen = Vec::new();
            for n in 0..5 {
                let snap = dir.path().join(format!("snap-{n}.db"));
                reader.snapshot_to(&snap).unwrap();
                let copy = Store::open(&snap).unwrap();
                let page = copy.export_history(0, 1000).unwrap();
                seen.push(rows_of(&page.tables, "transfers").rows.len());
            }
            handle.join().unwrap();
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        });
        let snap = dir.path().join("final.db");
        reader.snapshot_to(&snap).unwrap();
        let copy = Store::open(&snap).unwrap();
        assert_eq!(
            copy.digest_tables(&["transfers"]).unwrap(),
            writer.digest_tables(&["transfers"]).unwrap()
        );
    }

    #[test]
    fn diff_counts_added_changed_removed_and_unchanged_rows_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let active = Store::open_in_memory().unwrap();
        for name in ["alice", "bob", "dave"] {
            apply(&active, Command::CreateAccount(account(name)));
        }
        apply(&active, Command::AddAccountKey(key("alice", "SHA256:k1")));
        let standby = Store::open_in_memory().unwrap();
        apply(&standby, Command::CreateAccount(account("alice")));
        let mut bob = account("bob");
        bob.home = "elsewhere".into();
        apply(&standby, Command::CreateAccount(bob));
        apply(&standby, Command::CreateAccount(account("carol")));

        let mut tables = tables_of(&active, dir.path(), &["accounts", "account_keys"]);
        tables.reverse(); // results come in SYNCABLE_TABLES order anyway
        let before = all_digest(&standby);
        let diffs = standby.diff_tables(&tables).unwrap();
        assert_eq!(
            diffs,
            vec![
                TableDiff {
                    table: "accounts".into(),
                    added: 1,
                    changed: 1,
                    removed: 1,
                    unchanged: 1,
                },
                TableDiff {
                    table: "account_keys".into(),
                    added: 1,
                    changed: 0,
                    removed: 0,
                    unchanged: 0,
                },
            ]
        );
        assert_eq!(all_digest(&standby), before, "a diff writes nothing");
        assert!(standby.account("carol").unwrap().is_some());
    }

    #[test]
    fn apply_makes_the_standby_equal_and_backs_it_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let active = configured();
        let standby = Store::open_in_memory().unwrap();
        apply(&standby, Command::CreateAccount(account("zed")));
        apply(&standby, Command::AddAccountKey(key("zed", "SHA256:z")));
        apply(&standby, Command::RecordTransfer(transfer("t1", 5)));
        let history = standby.digest_tables(HISTORY_TABLES).unwrap();
        assert_ne!(config_digest(&standby), config_digest(&active));

        let tables = tables_of(&active, dir.path(), SYNCABLE_TABLES);
        let backup = dir.path().join("backup.db");
        let diffs = standby.apply_tables(&tables, &backup).unwrap();
        assert_eq!(config_digest(&standby), config_digest(&active));
        assert_eq!(standby.digest_tables(HISTORY_TABLES).unwrap(), history);
        let accounts = diffs.iter().find(|d| d.table == "accounts").unwrap();
        assert_eq!((accounts.added, accounts.removed), (2, 1));
        assert!(standby.account("zed").unwrap().is_none());
        assert_eq!(standby.account_keys("alice").unwrap().len(), 1);
        assert!(standby.route("to-acme").unwrap().is_some());

        // The backup holds the standby as it was.
        let old = Store::open(&backup).unwrap();
        assert!(old.account("zed").unwrap().is_some());
        assert!(old.account("alice").unwrap().is_none());
        assert_eq!(old.digest_tables(HISTORY_TABLES).unwrap(), history);

        // Applying the same tables again changes nothing.
        let again = standby
            .apply_tables(&tables, &dir.path().join("backup-2.db"))
            .unwrap();
        assert!(again.iter().all(TableDiff::is_empty), "{again:?}");
        assert_eq!(again.len(), SYNCABLE_TABLES.len());

        // An existing backup file is never overwritten, and nothing is applied.
        apply(&active, Command::CreateAccount(account("erin")));
        let newer = tables_of(&active, dir.path(), SYNCABLE_TABLES);
        let before = all_digest(&standby);
        assert!(matches!(
            standby.apply_tables(&newer, &backup).unwrap_err(),
            StoreError::AlreadyExists(_)
        ));
        assert_eq!(all_digest(&standby), before);
    }

    #[test]
    fn apply_refuses_other_columns_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let active = configured();
        let standby = configured();
        apply(&standby, Command::CreateAccount(account("zed")));
        let before = all_digest(&standby);
        let mut tables = tables_of(&active, dir.path(), &["accounts", "account_keys"]);
        let accounts = tables.iter_mut().find(|t| t.name == "accounts").unwrap();
        accounts.columns.pop();
        for row in &mut accounts.rows {
            row.pop();
        }
        let backup = dir.path().join("backup.db");
        let err = standby.apply_tables(&tables, &backup).unwrap_err();
        assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(
                "table accounts: the sender has columns [id, name, home, password_hash, \
                 enabled, created_at, expires_at, allowed_networks, quota_bytes, quota_files, \
                 upload_rate, download_rate, max_sessions, password_history, \
                 must_change_password, last_login_at], this server [id, name, home, \
                 password_hash, enabled, created_at, expires_at, allowed_networks, quota_bytes, \
                 quota_files, upload_rate, download_rate, max_sessions, password_history, \
                 must_change_password, last_login_at, active_since]"
            ),
            "{message}"
        );
        assert_eq!(FerryError::from(err).kind, ErrorKind::Conflict);
        assert!(matches!(
            standby.diff_tables(&tables).unwrap_err(),
            StoreError::Incompatible(_)
        ));
        assert_eq!(all_digest(&standby), before);
        assert!(
            !backup.exists(),
            "nothing is written for incompatible tables"
        );

        // Tables that are not configuration, tables sent twice, rows of the
        // wrong width and keys sent twice are refused the same way.
        let good = tables_of(&active, dir.path(), &["accounts"]);
        let transfers = TableData {
            name: "transfers".into(),
            columns: standby.table_columns("transfers").unwrap(),
            rows: vec![],
        };
        let twice = vec![good[0].clone(), good[0].clone()];
        let mut narrow = good.clone();
        narrow[0].rows[0].pop();
        let mut duplicate = good.clone();
        let first = duplicate[0].rows[0].clone();
        duplicate[0].rows.push(first);
        for bad in [vec![transfers], twice, narrow, duplicate] {
            let err = standby.apply_tables(&bad, &backup).unwrap_err();
            assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
        }
        assert_eq!(all_digest(&standby), before);
        assert!(!backup.exists());
    }

    #[test]
    fn keys_sent_without_their_account_are_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let active = configured();
        let standby = Store::open_in_memory().unwrap();
        apply(&standby, Command::CreateAccount(account("bob")));
        let before = all_digest(&standby);

        // The partners would apply, but the keys' account does not exist here.
        let tables = tables_of(&active, dir.path(), &["account_keys", "partners"]);
        let err = standby
            .apply_tables(&tables, &fresh_path(dir.path(), "backup"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("account_keys"), "{message}");
        assert!(message.contains("accounts"), "{message}");
        assert!(message.contains("FOREIGN KEY"), "{message}");
        assert_eq!(all_digest(&standby), before);
        assert!(standby.partners().unwrap().is_empty());

        // Sending accounts without alice but her key unchanged contradicts
        // itself: deleting alice would take the key with her.
        let standby = configured();
        let before = all_digest(&standby);
        let mut tables = tables_of(&active, dir.path(), &["accounts", "account_keys"]);
        tables[0]
            .rows
            .retain(|r| r[1] != SqlValue::Text("alice".into()));
        let err = standby
            .apply_tables(&tables, &fresh_path(dir.path(), "backup"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("account_keys"), "{err}");
        assert_eq!(all_digest(&standby), before);
    }

    #[test]
    fn updating_an_account_keeps_its_keys_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let active = configured();
        let standby = configured();
        apply(
            &active,
            Command::SetAccountEnabled {
                name: "alice".into(),
                enabled: false,
            },
        );
        let tables = tables_of(&active, dir.path(), &["accounts"]);
        let diffs = standby
            .apply_tables(&tables, &fresh_path(dir.path(), "backup"))
            .unwrap();
        assert_eq!((diffs[0].changed, diffs[0].unchanged), (1, 1));
        assert!(!standby.account("alice").unwrap().unwrap().enabled);
        assert_eq!(standby.account_keys("alice").unwrap().len(), 1);
        assert_eq!(standby.account_tokens("alice").unwrap().len(), 1);
        assert_eq!(config_digest(&standby), config_digest(&active));
    }

    #[test]
    fn an_account_created_on_both_servers_takes_the_senders_id() {
        let dir = tempfile::tempdir().unwrap();
        let active = Store::open_in_memory().unwrap();
        let mut alice = account("alice");
        alice.id = "id-alice-2".into();
        apply(&active, Command::CreateAccount(alice));
        apply(&active, Command::AddAccountKey(key("alice", "SHA256:new")));
        let standby = Store::open_in_memory().unwrap();
        apply(&standby, Command::CreateAccount(account("alice")));
        apply(&standby, Command::AddAccountKey(key("alice", "SHA256:old")));

        let tables = tables_of(&active, dir.path(), &["accounts", "account_keys"]);
        standby
            .apply_tables(&tables, &fresh_path(dir.path(), "backup"))
            .unwrap();
        assert_eq!(standby.account("alice").unwrap().unwrap().id, "id-alice-2");
        let keys = standby.account_keys("alice").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint, "SHA256:new");
        assert_eq!(config_digest(&standby), config_digest(&active));
    }

    fn export_all(s: &Store) -> Vec<TableData> {
        let page = s.export_history(0, 10_000).unwrap();
        assert!(!page.more);
        page.tables
    }

    #[test]
    fn transfers_merge_both_ways_and_are_never_overwritten() {
        let a = Store::open_in_memory().unwrap();
        let b = Store::open_in_memory().unwrap();
        apply(&a, Command::RecordTransfer(transfer("t1", 100)));
        apply(&b, Command::RecordTransfer(transfer("t2", 200)));
        apply(&a, Command::RecordTransfer(transfer("t3", 300)));
        let mut other = transfer("t3", 300);
        other.node = "n2".into();
        other.bytes = 99;
        apply(&b, Command::RecordTransfer(other));

        let counts = b.merge_history(&export_all(&a)).unwrap();
        assert_eq!(counts.transfers, 1);
        let counts = a.merge_history(&export_all(&b)).unwrap();
        assert_eq!(counts.transfers, 1);
        for s in [&a, &b] {
            for id in ["t1", "t2", "t3"] {
                assert!(s.transfer(id).unwrap().is_some(), "{id}");
            }
        }
        assert_eq!(a.transfer("t3").unwrap().unwrap().node, "n1");
        assert_eq!(b.transfer("t3").unwrap().unwrap().node, "n2");
        assert_eq!(b.transfer("t3").unwrap().unwrap().bytes, 99);
        // Merging again writes nothing.
        assert_eq!(b.merge_history(&export_all(&a)).unwrap().total(), 0);
        assert_eq!(a.merge_history(&export_all(&b)).unwrap().total(), 0);
    }

    #[test]
    fn events_merge_by_progress_and_their_attempts_follow() {
        let a = Store::open_in_memory().unwrap();
        let b = Store::open_in_memory().unwrap();
        for s in [&a, &b] {
            for id in ["e1", "e2", "e3"] {
                apply(s, Command::EnqueueEvent(event(id, 10)));
            }
        }
        // e1: done on a, still pending on b.
        claim(&a, "e1", "n1", 100);
        finish(&a, "e1", "n1", 1, 200, AttemptResult::Done);
        // e2: done on b early; on a a later attempt left it pending (newer).
        claim(&b, "e2", "n2", 100);
        finish(&b, "e2", "n2", 1, 150, AttemptResult::Done);
        claim(&a, "e2", "n1", 300);
        let retry = AttemptResult::Retry {
            next_at: 1000,
            error: "partner down".into(),
        };
        finish(&a, "e2", "n1", 1, 400, retry);
        // e3: running on b (open attempt), done on a.
        claim(&b, "e3", "n2", 100);
        claim(&a, "e3", "n1", 100);
        finish(&a, "e3", "n1", 1, 250, AttemptResult::Done);

        let counts = b.merge_history(&export_all(&a)).unwrap();
        assert_eq!(counts.events, 2, "e1 and e3 moved on; e2 did not go back");
        assert_eq!(counts.attempts, 2, "e1's attempt is new, e3's ended");
        let status = |s: &Store, id: &str| s.event(id).unwrap().unwrap().status;
        assert_eq!(status(&b, "e1"), EventStatus::Done);
        assert_eq!(status(&b, "e2"), EventStatus::Done);
        assert_eq!(status(&b, "e3"), EventStatus::Done);
        let e2 = b.event("e2").unwrap().unwrap();
        assert_eq!(
            e2.updated_at, 150,
            "a done event is never replaced by a pending one"
        );
        let b_e1 = b.event_attempts("e1").unwrap();
        assert_eq!(b_e1, a.event_attempts("e1").unwrap());
        let b_e2 = b.event_attempts("e2").unwrap();
        assert_eq!(b_e2.len(), 1);
        assert_eq!(b_e2[0].node, "n2", "an ended attempt is kept");
        let b_e3 = b.event_attempts("e3").unwrap();
        assert_eq!((b_e3[0].ended_at, b_e3[0].node.as_str()), (Some(250), "n1"));

        // The other way: a's pending e2 takes b's done copy; its own ended
        // attempt stays.
        let counts = a.merge_history(&export_all(&b)).unwrap();
        assert_eq!(counts.events, 1);
        assert_eq!(counts.attempts, 0);
        assert_eq!(status(&a, "e2"), EventStatus::Done);
        assert_eq!(a.event("e2").unwrap().unwrap().updated_at, 150);
        assert_eq!(
            a.event_attempts("e2").unwrap()[0].outcome.as_deref(),
            Some("retry")
        );
        assert_eq!(
            a.digest_tables(&["events"]).unwrap(),
            b.digest_tables(&["events"]).unwrap()
        );

        // Attempts of events that do not exist here are skipped.
        let mut attempts = export_all(&a)
            .into_iter()
            .find(|t| t.name == "event_attempts")
            .unwrap();
        for (i, row) in attempts.rows.iter_mut().enumerate() {
            row[0] = SqlValue::Text(format!("ghost{i}"));
        }
        let before = all_digest(&b);
        assert_eq!(b.merge_history(&[attempts]).unwrap().total(), 0);
        assert_eq!(all_digest(&b), before);
    }

    #[test]
    fn firings_merge_by_slot_and_skip_unknown_schedules() {
        let a = configured();
        let fire = |s: &Store, slot: i64, event_id: &str, node: &str| {
            let mut e = event(event_id, slot);
            e.kind = EventKind::Schedule;
            e.schedule = Some("pull".into());
            e.slot = Some(slot);
            apply(
                s,
                Command::FireSchedule {
                    schedule: "pull".into(),
                    slot,
                    node: node.into(),
                    term: 0,
                    event: e,
                },
            );
        };
        fire(&a, 60_000, "f1", "n1");
        fire(&a, 120_000, "f2", "n1");
        let b = configured();
        fire(&b, 60_000, "g1", "n2");

        let counts = b.merge_history(&export_all(&a)).unwrap();
        assert_eq!((counts.firings, counts.events), (1, 2));
        let firings = b.firings("pull", 10).unwrap();
        assert_eq!(firings.len(), 2);
        assert_eq!(firings[1].event_id, "g1", "the slot b fired stays b's");

        let c = Store::open_in_memory().unwrap();
        let counts = c.merge_history(&export_all(&a)).unwrap();
        assert_eq!((counts.firings, counts.events), (0, 2));
    }

    #[test]
    fn merge_refuses_other_columns_and_configuration_tables() {
        let dir = tempfile::tempdir().unwrap();
        let a = configured();
        apply(&a, Command::RecordTransfer(transfer("t1", 100)));
        apply(&a, Command::EnqueueEvent(event("e1", 100)));
        let b = Store::open_in_memory().unwrap();
        let before = all_digest(&b);

        let mut page = export_all(&a);
        let events = page.iter_mut().find(|t| t.name == "events").unwrap();
        events.columns.swap(0, 1);
        let err = b.merge_history(&page).unwrap_err();
        assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
        assert!(err.to_string().contains("table events"), "{err}");

        let config = tables_of(&a, dir.path(), &["accounts"]);
        let err = b.merge_history(&config).unwrap_err();
        assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
        assert_eq!(all_digest(&b), before, "transfers were not merged either");
    }

    /// Pulls `from`'s history into `into` after `mark`, in pages of
    /// `limit` rows, as a server pulls a peer's (`Node::pull_history`);
    /// the pages merged.
    fn pull(from: &Store, into: &Store, mark: &mut HistoryMark, limit: u32) -> Vec<HistoryPage> {
        let mut merged = Vec::new();
        for _ in 0..1000 {
            let page = from.export_history(mark.after_seq(), limit).unwrap();
            if !mark.accepts(&page) {
                continue;
            }
            into.merge_history(&page.tables).unwrap();
            mark.advance(&page);
            let more = page.more;
            merged.push(page);
            if !more {
                return merged;
            }
        }
        panic!("the pull never ended");
    }

    fn text(v: &SqlValue) -> String {
        match v {
            SqlValue::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// The ids (first key column) of `table`'s rows in `page`.
    fn ids(page: &HistoryPage, table: &str) -> Vec<String> {
        rows_of(&page.tables, table)
            .rows
            .iter()
            .map(|r| text(&r[0]))
            .collect()
    }

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn rows_stamped_an_hour_behind_the_puller_are_still_pulled() {
        // The puller's clock says `now`; the exporter's is an hour slow (or
        // its rows committed late): the times on its rows say nothing about
        // whether the puller has seen them.
        let now = 1_800_000_000_000;
        let exporter = Store::open_in_memory().unwrap();
        let puller = Store::open_in_memory().unwrap();
        let mut mark = HistoryMark::default();
        let behind = now - HOUR_MS;
        apply(&exporter, Command::RecordTransfer(transfer("first", now)));
        apply(&exporter, Command::EnqueueEvent(event("e1", behind - 10)));
        pull(&exporter, &puller, &mut mark, 100);
        assert!(puller.transfer("first").unwrap().is_some());

        apply(&exporter, Command::RecordTransfer(transfer("late", behind)));
        apply(&exporter, Command::EnqueueEvent(event("e2", behind)));
        claim(&exporter, "e1", "n1", behind);
        finish(&exporter, "e1", "n1", 1, behind + 1, AttemptResult::Done);
        let pages = pull(&exporter, &puller, &mut mark, 100);
        assert_eq!(ids(&pages[0], "transfers"), ["late"], "only what is new");
        assert!(puller.transfer("late").unwrap().is_some());
        assert!(puller.event("e2").unwrap().is_some());
        assert_eq!(
            puller.event("e1").unwrap().unwrap().status,
            EventStatus::Done,
            "a change stamped an hour back is pulled too"
        );
        assert_eq!(
            puller.event_attempts("e1").unwrap(),
            exporter.event_attempts("e1").unwrap()
        );
        assert_eq!(
            puller.digest_tables(HISTORY_TABLES).unwrap(),
            exporter.digest_tables(HISTORY_TABLES).unwrap()
        );

        // Nothing changed since: an empty page at the same position.
        let before = mark.clone();
        let pages = pull(&exporter, &puller, &mut mark, 100);
        assert!(pages[0].tables.iter().all(|t| t.rows.is_empty()));
        assert_eq!(mark, before);
    }

    #[test]
    fn export_history_pages_in_commit_order_without_missing_or_repeating_a_row() {
        let s = configured();
        let fire = |slot: i64| {
            let mut e = event(&format!("f{slot}"), slot);
            e.kind = EventKind::Schedule;
            e.schedule = Some("pull".into());
            e.slot = Some(slot);
            apply(
                &s,
                Command::FireSchedule {
                    schedule: "pull".into(),
                    slot,
                    node: "n1".into(),
                    term: 0,
                    event: e,
                },
            );
        };
        // Interleaved writes to every table, with times in no order at all
        // (and many rows at one time).
        for i in 0..12i64 {
            let at = if i % 3 == 0 { 55 } else { 1000 - i * 70 };
            apply(
                &s,
                Command::RecordTransfer(transfer(&format!("t{i:02}"), at)),
            );
            apply(&s, Command::EnqueueEvent(event(&format!("e{i:02}"), at)));
            if i % 2 == 0 {
                claim(&s, &format!("e{i:02}"), "n1", at);
            }
            if i % 4 == 0 {
                finish(&s, &format!("e{i:02}"), "n1", 1, at, AttemptResult::Done);
                fire(i * 60_000);
            }
        }

        let limit = 3;
        let mut mark = HistoryMark::default();
        let mut sent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut last = 0;
        let mut pages = 0;
        loop {
            let page = s.export_history(mark.after_seq(), limit).unwrap();
            assert!(mark.accepts(&page));
            assert!(page.last_seq > last || !page.more, "the position moves on");
            last = page.last_seq;
            pages += 1;
            let events = ids(&page, "events");
            for table in HISTORY_TABLES {
                let rows = &rows_of(&page.tables, table).rows;
                for row in rows {
                    // Attempts: (event, attempt); firings: (schedule, slot).
                    let key = match table {
                        &"event_attempts" | &"schedule_firings" => format!("{:?}", &row[..2]),
                        _ => text(&row[0]),
                    };
                    let seen = sent.entry(table).or_default();
                    if seen.contains(&key) {
                        assert!(
                            *table == "event_attempts" && events.contains(&text(&row[0])),
                            "{table} {key} sent twice"
                        );
                    } else {
                        seen.push(key);
                    }
                }
                if *table != "event_attempts" {
                    assert!(rows.len() <= limit as usize, "{table}: {}", rows.len());
                }
            }
            mark.advance(&page);
            if !page.more {
                break;
            }
        }
        assert!(pages > 4, "{pages} pages");
        let expected = |table: &str| {
            let data = export_all(&s);
            rows_of(&data, table).rows.len()
        };
        for table in HISTORY_TABLES {
            let got = sent.get(table).map_or(0, |rows| rows.len());
            assert_eq!(got, expected(table), "{table}");
        }

        // Rows written and changed after that come, and nothing else.
        apply(&s, Command::RecordTransfer(transfer("new", 1)));
        claim(&s, "e01", "n1", 5_000);
        let page = s.export_history(mark.after_seq(), limit).unwrap();
        assert!(mark.accepts(&page));
        assert!(!page.more);
        assert_eq!(ids(&page, "transfers"), ["new"]);
        assert_eq!(ids(&page, "events"), ["e01"]);
        assert_eq!(ids(&page, "event_attempts"), ["e01"]);
        assert!(rows_of(&page.tables, "schedule_firings").rows.is_empty());
    }

    #[test]
    fn an_event_comes_with_its_earlier_attempts() {
        let a = Store::open_in_memory().unwrap();
        apply(&a, Command::EnqueueEvent(event("e1", 10)));
        claim(&a, "e1", "n1", 20);
        let mark = a.export_history(0, 10).unwrap().last_seq;
        // Only the event changes after `mark`: its attempt comes with it.
        apply(
            &a,
            Command::EventProgress {
                id: "e1".into(),
                node: "n1".into(),
                attempt: 1,
                steps_done: 1,
                current_path: None,
                now: 30,
            },
        );
        let page = a.export_history(mark, 10).unwrap();
        assert_eq!(ids(&page, "events"), ["e1"]);
        assert_eq!(rows_of(&page.tables, "event_attempts").rows.len(), 1);
        // So a server that never had the event gets both.
        let b = Store::open_in_memory().unwrap();
        let counts = b.merge_history(&page.tables).unwrap();
        assert_eq!((counts.events, counts.attempts), (1, 1));
    }

    #[test]
    fn a_merge_that_changes_nothing_moves_no_position() {
        let a = Store::open_in_memory().unwrap();
        let b = Store::open_in_memory().unwrap();
        apply(&a, Command::RecordTransfer(transfer("t1", 100)));
        apply(&a, Command::EnqueueEvent(event("e1", 100)));
        claim(&a, "e1", "n1", 110);
        finish(&a, "e1", "n1", 1, 120, AttemptResult::Done);
        apply(&b, Command::RecordTransfer(transfer("t2", 100)));

        let mut from_a = HistoryMark::default();
        let mut from_b = HistoryMark::default();
        pull(&a, &b, &mut from_a, 100);
        pull(&b, &a, &mut from_b, 100);
        let newest = |s: &Store| s.export_history(0, 1).unwrap();
        let (a_seq, b_seq) = (newest(&a).last_seq, newest(&b).last_seq);
        let empty = |pages: &[HistoryPage]| {
            pages
                .iter()
                .all(|p| p.tables.iter().all(|t| t.rows.is_empty()))
        };

        // The row a merged from b was new to a, so it has a new position
        // there and comes back to b once; merging it changes nothing on b,
        // so it takes no position and goes no further.
        let pages = pull(&a, &b, &mut from_a, 100);
        assert_eq!(ids(&pages[0], "transfers"), ["t2"]);
        assert!(empty(&pull(&b, &a, &mut from_b, 100)));
        assert_eq!((newest(&a).last_seq, newest(&b).last_seq), (a_seq, b_seq));
        for _ in 0..3 {
            assert!(empty(&pull(&a, &b, &mut from_a, 100)));
            assert!(empty(&pull(&b, &a, &mut from_b, 100)));
        }
        assert_eq!(b.merge_history(&export_all(&a)).unwrap().total(), 0);
        assert_eq!(a.merge_history(&export_all(&b)).unwrap().total(), 0);
        assert_eq!((newest(&a).last_seq, newest(&b).last_seq), (a_seq, b_seq));
        assert_eq!(
            a.digest_tables(HISTORY_TABLES).unwrap(),
            b.digest_tables(HISTORY_TABLES).unwrap()
        );

        // An update that leaves a row as it was takes no position either.
        a.conn()
            .execute(r#"UPDATE "events" SET "status" = "status""#, [])
            .unwrap();
        assert_eq!(newest(&a).last_seq, a_seq);
    }

    #[test]
    fn rows_merged_from_one_server_are_passed_on_to_a_third() {
        let a = Store::open_in_memory().unwrap();
        let b = Store::open_in_memory().unwrap();
        let c = Store::open_in_memory().unwrap();
        apply(&b, Command::RecordTransfer(transfer("on-b", 100)));
        let mut c_from_b = HistoryMark::default();
        pull(&b, &c, &mut c_from_b, 100);

        // b merges an old row from a after c last pulled from b.
        apply(&a, Command::RecordTransfer(transfer("on-a", 5)));
        pull(&a, &b, &mut HistoryMark::default(), 100);
        let pages = pull(&b, &c, &mut c_from_b, 100);
        assert_eq!(ids(&pages[0], "transfers"), ["on-a"]);
        assert!(c.transfer("on-a").unwrap().is_some());
    }

    #[test]
    fn another_store_behind_the_same_server_is_pulled_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let puller = Store::open_in_memory().unwrap();
        let mut mark = HistoryMark::default();

        let exporter = Store::open(&path).unwrap();
        for i in 0..5 {
            apply(
                &exporter,
                Command::RecordTransfer(transfer(&format!("a{i}"), 10)),
            );
        }
        pull(&exporter, &puller, &mut mark, 2);
        let reached = mark.after_seq();
        assert!(reached >= 5);

        // A snapshot of a store with fewer changes replaces the exporter's
        // contents: its positions start below the mark.
        let other = Store::open_in_memory().unwrap();
        apply(&other, Command::RecordTransfer(transfer("b0", 10)));
        apply(&other, Command::RecordTransfer(transfer("b1", 10)));
        let snap = dir.path().join("other.db");
        other.snapshot_to(&snap).unwrap();
        let id = exporter.store_id();
        exporter.restore_from(&snap).unwrap();
        assert_ne!(exporter.store_id(), id, "a restore makes another store");
        // A row written after the restore would have had a position at or
        // below the mark: it still comes.
        apply(&exporter, Command::RecordTransfer(transfer("b2", 10)));
        let page = exporter.export_history(mark.after_seq(), 2).unwrap();
        assert!(!mark.accepts(&page), "{page:?}");
        assert_eq!(mark.after_seq(), 0);
        pull(&exporter, &puller, &mut mark, 2);
        for id in ["b0", "b1", "b2"] {
            assert!(puller.transfer(id).unwrap().is_some(), "{id}");
        }

        // The file put back from an older copy while the server was down:
        // the store opened from it is another one too.
        let id = exporter.store_id();
        drop(exporter);
        let exporter = Store::open(&path).unwrap();
        assert_ne!(exporter.store_id(), id, "each opening is another store");
        let page = exporter.export_history(mark.after_seq(), 2).unwrap();
        assert!(!mark.accepts(&page));
        assert_eq!(mark.after_seq(), 0);
    }

    #[test]
    fn change_sequence_triggers_compare_every_column() {
        // A migration adding a column to a history table must recreate the
        // table's update trigger with it, or a change of only that column
        // would never be pulled.
        let s = Store::open_in_memory().unwrap();
        let conn = s.conn();
        for table in HISTORY_TABLES {
            let sql: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    [format!("{table}_change_seq_update")],
                    |r| r.get(0),
                )
                .unwrap();
            for (column, _) in table_info(&conn, table).unwrap() {
                for side in ["NEW", "OLD"] {
                    let found = [",", ")"]
                        .iter()
                        .any(|end| sql.contains(&format!("{side}.{column}{end}")));
                    assert!(found, "{table}: {side}.{column} missing from the trigger");
                }
            }
        }
    }
}
