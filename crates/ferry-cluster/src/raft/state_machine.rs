//! The Raft state machine is the node's store: each committed entry's
//! command goes through `Store::apply`, in the same transaction as the
//! record of the log position it came from, so after a crash the store and
//! "applied up to" agree. A snapshot is a consistent copy of the database
//! (SQLite's backup API) in a file under `raft-snapshots/`; it is read and
//! sent in chunks, received into a file, and installed by restoring it, so
//! no database is ever held in memory whole. The restore and the record of
//! the snapshot's log position are one transaction too.
//!
//! Snapshot files do not outlive the process: at startup openraft builds
//! one from the store, which is why the log store must never purge past
//! what the store has durably applied. The state machine publishes that
//! position ([`StateMachine::progress`]) for the log store to wait on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_core::{Command, ErrorKind, FerryError, Outcome};
use ferry_store::Store;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership,
};
use tokio::io::AsyncSeekExt;
use tokio::sync::Mutex;

use super::progress::AppliedProgress;
use super::{storage_error as io, Applied, Member, NodeId, TypeConfig};

/// The node-local value (in the store) holding the last applied log id.
pub const APPLIED: &str = "raft.applied";

/// The current snapshot: its description and the file holding the copy.
type KeptSnapshot = (SnapshotMeta<NodeId, Member>, PathBuf);
/// The last applied position and membership.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);
/// The node-local value (in the store) holding the membership as of
/// [`APPLIED`].
pub const MEMBERSHIP: &str = "raft.membership";

/// The folder of snapshot files inside the state directory.
const SNAPSHOT_DIR: &str = "raft-snapshots";

/// The state machine over a node's store; clones share it.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<KeptSnapshot>>>,
    /// The file a snapshot from the leader is being received into.
    receiving: Arc<Mutex<Option<PathBuf>>>,
    counter: Arc<AtomicU64>,
    /// Called after entries were applied (wakes the queue workers).
    on_applied: Arc<dyn Fn() + Send + Sync>,
    /// The position the store holds on disk, for the log store's purge.
    progress: AppliedProgress,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMachine")
    }
}

impl StateMachine {
    /// The state machine of `store`; snapshot files live in
    /// `state_dir/raft-snapshots`, which is emptied here (a file left by a
    /// crash is never taken for a snapshot).
    pub fn new(
        store: Arc<Store>,
        state_dir: PathBuf,
        on_applied: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, crate::ClusterError> {
        Self::open(store, state_dir, on_applied).map_err(crate::ClusterError::State)
    }

    fn open(
        store: Arc<Store>,
        state_dir: PathBuf,
        on_applied: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, String> {
        let snapshot_dir = state_dir.join(SNAPSHOT_DIR);
        if snapshot_dir.exists() {
            std::fs::remove_dir_all(&snapshot_dir)
                .map_err(|e| format!("cannot empty {}: {e}", snapshot_dir.display()))?;
        }
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(|e| format!("cannot create {}: {e}", snapshot_dir.display()))?;
        // Absolute, to compare with the kernel's paths of open files.
        let snapshot_dir = std::fs::canonicalize(&snapshot_dir)
            .map_err(|e| format!("cannot resolve {}: {e}", snapshot_dir.display()))?;
        let applied = applied_in(&store).map_err(|e| format!("the store: {e}"))?;
        Ok(Self {
            store,
            snapshot_dir,
            current: Arc::default(),
            receiving: Arc::default(),
            counter: Arc::default(),
            on_applied,
            progress: AppliedProgress::new(applied),
        })
    }

    /// The log position the store has durably applied, kept current: give
    /// it to [`super::log_store::LogStore::purge_after`].
    pub fn progress(&self) -> AppliedProgress {
        self.progress.clone()
    }

    /// Publishes the applied position the store now holds (read back from
    /// it, so only what was committed counts).
    fn publish_applied(&self) -> Result<(), StorageError<NodeId>> {
        let applied = applied_in(&self.store)
            .map_err(|e| io(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        self.progress.set(applied);
        Ok(())
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
        self.snapshot_dir.join(format!(
            "{what}-{}.db",
            self.counter.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The path of an open snapshot file, from the kernel's record of it.
    async fn path_of(&self, file: &tokio::fs::File) -> Option<PathBuf> {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        tokio::fs::read_link(link).await.ok()
    }

    /// Makes `kept` the current snapshot; the file of the one it replaces
    /// is removed (a sender still reading it keeps its open file).
    async fn keep(&self, kept: KeptSnapshot) {
        let old = self.current.lock().await.replace(kept);
        if let Some((_, path)) = old {
            remove_db(&path);
        }
    }

    /// Installs `snapshot` as of `meta` (see `install_snapshot`).
    async fn install(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        // Every chunk written reaches the file before it is read back.
        let mut snapshot = *snapshot;
        snapshot.sync_all().await.map_err(|e| failed(&e))?;
        let receiving = self.receiving.lock().await.take();
        let path = match self.path_of(&snapshot).await {
            // The file this machine received into: restored from in place.
            Some(path) if path.starts_with(&self.snapshot_dir) => path,
            // Any other data (openraft may hand over a snapshot it holds):
            // copied in first.
            _ => {
                let path = self.snapshot_file("copied");
                let copied = async {
                    snapshot.seek(std::io::SeekFrom::Start(0)).await?;
                    let mut out = tokio::fs::File::create(&path).await?;
                    tokio::io::copy(&mut snapshot, &mut out).await?;
                    out.sync_all().await
                }
                .await;
                if let Err(e) = copied {
                    remove_db(&path);
                    return Err(failed(&e));
                }
                path
            }
        };
        drop(snapshot);
        if let Some(abandoned) = receiving.filter(|r| *r != path) {
            remove_db(&abandoned);
        }
        let store = self.store.clone();
        let applied = serde_json::to_string(&meta.last_log_id).map_err(|e| failed(&e))?;
        let membership = serde_json::to_string(&meta.last_membership).map_err(|e| failed(&e))?;
        let source = path.clone();
        // One transaction: the contents and the position they reflect.
        let restored = tokio::task::spawn_blocking(move || -> Result<(), String> {
            store
                .restore_setting_locals(
                    &source,
                    &[
                        (APPLIED, applied.as_str()),
                        (MEMBERSHIP, membership.as_str()),
                    ],
                )
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| failed(&e))?;
        if let Err(e) = restored {
            remove_db(&path);
            return Err(failed(&e));
        }
        self.publish_applied()?;
        // Kept as the current snapshot, to send on to a member behind.
        self.keep((meta.clone(), path)).await;
        (self.on_applied)();
        Ok(())
    }
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// The applied position recorded in `store`.
fn applied_in(store: &Store) -> Result<Option<LogId<NodeId>>, String> {
    store
        .local(APPLIED)
        .map_err(|e| e.to_string())?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| format!("{APPLIED}: {e}"))
}

/// The applied position and membership recorded inside a database copy.
fn position_in(copy: &Path) -> Result<AppliedState, String> {
    let snapshot_store = ferry_store::Store::open(copy).map_err(|e| e.to_string())?;
    let read = |key: &str| snapshot_store.local(key).ok().flatten();
    let applied: Option<LogId<NodeId>> = read(APPLIED).and_then(|t| serde_json::from_str(&t).ok());
    let membership: StoredMembership<NodeId, Member> = read(MEMBERSHIP)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Ok((applied, membership))
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
        let file = self.snapshot_file("built");
        let store = self.store.clone();
        let path = file.clone();
        // The copy is one consistent read of the database, and the applied
        // position is read from the copy itself, not the live store.
        let position = tokio::task::spawn_blocking(move || -> Result<AppliedState, String> {
            store.snapshot_to(&path).map_err(|e| e.to_string())?;
            position_in(&path)
        })
        .await
        .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
        .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e));
        let (last_log_id, last_membership) = match position {
            Ok(p) => p,
            Err(e) => {
                remove_db(&file);
                return Err(e);
            }
        };
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
        let data = tokio::fs::File::open(&file)
            .await
            .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        self.keep((meta.clone(), file)).await;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
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
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.progress.fail(&e);
                return Err(io(ErrorSubject::StateMachine, ErrorVerb::Write, e));
            }
        };
        if let Err(e) = self.publish_applied() {
            self.progress.fail(&e);
            return Err(e);
        }
        (self.on_applied)();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let path = self.snapshot_file("received");
        let mut options = tokio::fs::OpenOptions::new();
        // The copy holds password hashes and sealed partner secrets.
        options.read(true).write(true).create_new(true).mode(0o600);
        let file = options
            .open(&path)
            .await
            .map_err(|e| io(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        // A stream that was given up for this one leaves nothing behind.
        if let Some(abandoned) = self.receiving.lock().await.replace(path) {
            remove_db(&abandoned);
        }
        Ok(Box::new(file))
    }

    /// Restores the store from the snapshot. Its contents and its log
    /// position (`raft.applied`, and the membership) are written by one
    /// transaction, committed with a full fsync before this returns; only
    /// then may the log store purge up to the snapshot, which openraft has
    /// already asked it to (see [`super::progress`]).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let installed = self.install(meta, snapshot).await;
        if let Err(e) = &installed {
            self.progress.fail(e);
        }
        installed
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Opened under the lock: the file cannot be replaced meanwhile.
        let current = self.current.lock().await;
        let Some((meta, path)) = current.as_ref() else {
            return Ok(None);
        };
        let data = tokio::fs::File::open(path).await.map_err(|e| {
            io(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(data),
        }))
    }
}
