//! The Raft log and vote, in `raft.db` beside the node's store: one row per
//! entry, serde-encoded, written with a full fsync before openraft is told
//! the entries are durable.
//!
//! The log is never purged past the position the store has durably
//! applied (see [`super::progress`]): Ferry keeps no snapshot across a
//! restart, so at startup the store is the snapshot, and openraft needs
//! every entry after it.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::progress::AppliedProgress;
use super::{storage_error as io, NodeId, TypeConfig};

/// A handle on the log database; clones share it.
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
    /// When set, a purge waits until the store has applied its end.
    applied: Option<AppliedProgress>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

impl LogStore {
    /// Opens (creating) `path`.
    pub fn open(path: &Path) -> Result<Self, crate::ClusterError> {
        Self::open_at(path).map_err(crate::ClusterError::State)
    }

    fn open_at(path: &Path) -> Result<Self, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let setup = |conn: &Connection| -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
            )
        };
        setup(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            applied: None,
        })
    }

    /// Makes every purge wait until `applied` (the state machine's
    /// progress) has reached the purge's end, so `raft.db` never records a
    /// purge past what the store holds on disk.
    pub fn purge_after(mut self, applied: AppliedProgress) -> Self {
        self.applied = Some(applied);
        self
    }

    /// Repairs a log purged past the store's durably applied position
    /// `applied`, as a server killed while installing a snapshot left it
    /// before purges waited for the store ([`Self::purge_after`]).
    /// openraft cannot start from such a log: the entries between the store
    /// and the purge are gone, and the entries after the purge cannot be
    /// applied without them. The log is emptied and recorded as purged up
    /// to `applied`, and the saved commit position is lowered to it; the
    /// vote is kept, so the server never votes twice in a term. It then
    /// starts as a member whose log ends at its store, and the leader sends
    /// it the entries it lacks or a snapshot. Returns what was done, or
    /// `None` when the log was consistent.
    ///
    /// The server forgets entries it may have acknowledged to a leader;
    /// with the entries after its store already lost to the purge, this is
    /// the only state openraft 0.9 can start from.
    pub fn repair_purged_past(
        &self,
        applied: Option<LogId<NodeId>>,
    ) -> Result<Option<String>, crate::ClusterError> {
        let state = |e: rusqlite::Error| crate::ClusterError::State(format!("raft.db: {e}"));
        let purged: Option<LogId<NodeId>> = self
            .meta("last_purged")
            .map_err(|e| crate::ClusterError::State(format!("raft.db: {e}")))?;
        let Some(purged) = purged else {
            return Ok(None);
        };
        if applied.map(|a| a.index) >= Some(purged.index) {
            return Ok(None);
        }
        let committed: Option<LogId<NodeId>> = self
            .meta::<Option<LogId<NodeId>>>("committed")
            .map_err(|e| crate::ClusterError::State(format!("raft.db: {e}")))?
            .flatten();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(state)?;
        let dropped: i64 = tx
            .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
            .map_err(state)?;
        tx.execute("DELETE FROM log", []).map_err(state)?;
        match applied {
            Some(a) => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_purged', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [to_json(&a)?],
                )
                .map_err(state)?;
            }
            None => {
                tx.execute("DELETE FROM meta WHERE key = 'last_purged'", [])
                    .map_err(state)?;
            }
        }
        if committed.map(|c| c.index) > applied.map(|a| a.index) {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('committed', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [to_json(&applied)?],
            )
            .map_err(state)?;
        }
        tx.commit().map_err(state)?;
        Ok(Some(format!(
            "raft.db was purged up to {purged} but the store holds entries only up to {}: \
             the {dropped} entries left in the log were dropped and the log now ends at the \
             store; the leader sends what is missing",
            applied.map_or_else(|| "none".to_owned(), |a| a.to_string())
        )))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn set_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| io(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, bytes],
            )
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Write, e))?;
        Ok(())
    }

    /// Number of entries kept (for status).
    pub fn len(&self) -> u64 {
        self.conn()
            .query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .unwrap_or(0)
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `value` as `meta` holds it.
fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, crate::ClusterError> {
    serde_json::to_vec(value).map_err(|e| crate::ClusterError::State(format!("raft.db: {e}")))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        // SQLite integers are signed: clamp the open end.
        let to_i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![to_i(start), to_i(end)], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let mut entries = Vec::new();
        for row in rows {
            let bytes = row.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta("last_purged")?;
        let last: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some(bytes) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(&bytes)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.set_meta("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.set_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = (|| -> rusqlite::Result<()> {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt =
                    tx.prepare("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    let idx = i64::try_from(entry.log_id.index).unwrap_or(i64::MAX);
                    stmt.execute(params![idx, bytes])?;
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                // The commit was flushed (synchronous = FULL): durable now.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let idx = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        self.conn()
            .execute("DELETE FROM log WHERE idx >= ?1", [idx])
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        Ok(())
    }

    /// Purges up to `log_id` once the store has durably applied it (see
    /// [`LogStore::purge_after`]): openraft asks a follower to purge up to
    /// a snapshot from the leader while the state machine is still
    /// installing it. The mark and the deletion are one transaction.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        if let Some(applied) = &self.applied {
            applied
                .wait_for(&log_id)
                .await
                .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        let bytes = serde_json::to_vec(&log_id)
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let idx = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        let result = (|| -> rusqlite::Result<()> {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_purged', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![bytes],
            )?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [idx])?;
            tx.commit()
        })();
        result.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
