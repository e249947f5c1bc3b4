//! The Raft state machine is the node's store: each committed entry's
//! command goes through `Store::apply`, in the same transaction as the
//! record of the log position it came from, so after a crash the store and
//! "applied up to" agree. A snapshot is a consistent copy of the database
//! (SQLite's backup API); installing one restores it.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_core::{Command, ErrorKind, FerryError, Outcome};
use ferry_store::Store;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership,
};
use tokio::sync::Mutex;

use super::{storage_error as io, Applied, Member, NodeId, TypeConfig};

const APPLIED: &str = "raft.applied";

/// The current snapshot: its description and the database copy.
type KeptSnapshot = (SnapshotMeta<NodeId, Member>, Vec<u8>);
/// The last applied position and membership.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);
const MEMBERSHIP: &str = "raft.membership";

/// The state machine over a node's store; clones share it.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    state_dir: PathBuf,
    current: Arc<Mutex<Option<KeptSnapshot>>>,
    counter: Arc<AtomicU64>,
    /// Called after entries were applied (wakes the queue workers).
    on_applied: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMachine")
    }
}

impl StateMachine {
    /// The state machine of `store`; snapshots are staged in `state_dir`.
    pub fn new(
        store: Arc<Store>,
        state_dir: PathBuf,
        on_applied: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store,
            state_dir,
            current: Arc::default(),
            counter: Arc::default(),
            on_applied,
        }
    }

    fn read_local<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let text = self
            .store
            .local(key)
            .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Read, e))
    }

    fn applied(&self) -> Result<AppliedState, StorageError<NodeId>> {
        Ok((
            self.read_local(APPLIED)?,
            self.read_local(MEMBERSHIP)?.unwrap_or_default(),
        ))
    }

    fn snapshot_file(&self, what: &str) -> PathBuf {
        self.state_dir.join(format!(
            ".raft-{what}-{}-{}.db",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn remove_db(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// Applies one command as of `log_id`; a primary-only command from an
/// older term is refused here, where every node decides the same way.
fn apply_one(store: &Store, command: &Command, log_id: &LogId<NodeId>) -> Applied {
    if let Command::FireSchedule { term, .. } = command {
        if *term != log_id.leader_id.term {
            let marker = serde_json::to_string(log_id).unwrap_or_default();
            let _ = store.set_local(APPLIED, &marker);
            return Applied {
                result: Err(FerryError::new(
                    ErrorKind::Conflict,
                    format!(
                        "schedule firing of term {term} refused: the log is in term {}",
                        log_id.leader_id.term
                    ),
                )),
            };
        }
    }
    let marker = serde_json::to_string(log_id).unwrap_or_default();
    Applied {
        result: store
            .apply_marked(command, APPLIED, &marker)
            .map_err(FerryError::from),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let file = self.snapshot_file("build");
        let store = self.store.clone();
        let path = file.clone();
        // The copy and its applied position are taken together: the store's
        // lock is held by the backup, and the marker is inside the copy.
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            store.snapshot_to(&path).map_err(|e| e.to_string())?;
            std::fs::read(&path).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
        .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e));
        Self::remove_db(&file);
        let bytes = bytes?;
        // Read the position from the copy itself, not the live store.
        let copy = self.snapshot_file("meta");
        std::fs::write(&copy, &bytes)
            .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let (last_log_id, last_membership) = {
            let snapshot_store = ferry_store::Store::open(&copy)
                .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
            let read = |key: &str| snapshot_store.local(key).ok().flatten();
            let applied: Option<LogId<NodeId>> =
                read(APPLIED).and_then(|t| serde_json::from_str(&t).ok());
            let membership: StoredMembership<NodeId, Member> = read(MEMBERSHIP)
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            (applied, membership)
        };
        Self::remove_db(&copy);
        let snapshot_id = format!(
            "{}-{}",
            last_log_id
                .map(|l| l.to_string())
                .unwrap_or_else(|| "empty".into()),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        *self.current.lock().await = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<NodeId>> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let store = self.store.clone();
        let results = tokio::task::spawn_blocking(move || -> Result<Vec<Applied>, String> {
            let mut results = Vec::with_capacity(entries.len());
            for entry in &entries {
                let log_id = entry.log_id;
                let marker = serde_json::to_string(&log_id).map_err(|e| e.to_string())?;
                match &entry.payload {
                    EntryPayload::Normal(proposal) => {
                        results.push(apply_one(&store, &proposal.command, &log_id));
                    }
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(log_id), m.clone());
                        let text = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
                        store
                            .set_local(MEMBERSHIP, &text)
                            .map_err(|e| e.to_string())?;
                        store
                            .set_local(APPLIED, &marker)
                            .map_err(|e| e.to_string())?;
                        results.push(Applied {
                            result: Ok(Outcome { rows_changed: 0 }),
                        });
                    }
                    EntryPayload::Blank => {
                        store
                            .set_local(APPLIED, &marker)
                            .map_err(|e| e.to_string())?;
                        results.push(Applied {
                            result: Ok(Outcome { rows_changed: 0 }),
                        });
                    }
                }
            }
            Ok(results)
        })
        .await
        .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?
        .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        (self.on_applied)();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file = self.snapshot_file("install");
        let store = self.store.clone();
        let path = file.clone();
        let data = bytes.clone();
        let applied = serde_json::to_string(&meta.last_log_id)
            .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let membership = serde_json::to_string(&meta.last_membership)
            .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let restored = tokio::task::spawn_blocking(move || -> Result<(), String> {
            std::fs::write(&path, &data).map_err(|e| e.to_string())?;
            store.restore_from(&path).map_err(|e| e.to_string())?;
            store
                .set_local(APPLIED, &applied)
                .map_err(|e| e.to_string())?;
            store
                .set_local(MEMBERSHIP, &membership)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        Self::remove_db(&file);
        restored.map_err(|e| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        *self.current.lock().await = Some((meta.clone(), bytes));
        (self.on_applied)();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .current
            .lock()
            .await
            .as_ref()
            .map(|(meta, bytes)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(bytes.clone())),
            }))
    }
}
