//! The Raft log and vote, in `raft.db` beside the node's store: one row per
//! entry, serde-encoded, written with a full fsync before openraft is told
//! the entries are durable.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{storage_error as io, NodeId, TypeConfig};

/// A handle on the log database; clones share it.
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
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
        })
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

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.set_meta("last_purged", &Some(log_id))?;
        let idx = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        self.conn()
            .execute("DELETE FROM log WHERE idx <= ?1", [idx])
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        Ok(())
    }
}
