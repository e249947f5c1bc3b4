//! Crash windows of the Raft storage, played with real openraft instances
//! in one process: a crash is a copy of a server's files taken at the
//! chosen moment (what a SIGKILL leaves), and the server must start again
//! from that copy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Command, COMMAND_FORMAT_VERSION};
use ferry_store::Store;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, Snapshot};
use openraft::{
    CommittedLeaderId, Config, Entry, EntryPayload, LogId, Membership, Raft, ServerState,
    SnapshotMeta, SnapshotPolicy, StorageError, StoredMembership,
};
use tokio::sync::watch;

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{open_storage, Member, NodeId, Proposal, TypeConfig};

/// The Raft instances of a test, by id: the network delivers to them.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<HashMap<NodeId, Raft<TypeConfig>>>>,
}

impl Router {
    fn add(&self, id: NodeId, raft: Raft<TypeConfig>) {
        self.nodes.lock().unwrap().insert(id, raft);
    }

    fn get<E: std::error::Error>(
        &self,
        id: NodeId,
    ) -> Result<Raft<TypeConfig>, RPCError<NodeId, Member, E>> {
        self.nodes.lock().unwrap().get(&id).cloned().ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other("not started")))
        })
    }
}

struct Link {
    router: Router,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, _node: &Member) -> Link {
        Link {
            router: self.clone(),
            target,
        }
    }
}

fn remote<E: std::error::Error>(
    target: NodeId,
    e: RaftError<NodeId, E>,
) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    match e {
        RaftError::Fatal(f) => RPCError::Network(NetworkError::new(&f)),
        e => RPCError::RemoteError(RemoteError::new(target, e)),
    }
}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let raft = self.router.get(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| remote(self.target, e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let raft = self.router.get(self.target)?;
        raft.vote(rpc).await.map_err(|e| remote(self.target, e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self.router.get(self.target)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| remote(self.target, e))
    }
}

/// A state machine whose snapshot install waits, once entered, until the
/// test lets it go: the window a SIGKILL falls into.
struct Held {
    inner: StateMachine,
    entered: watch::Sender<bool>,
    release: watch::Receiver<bool>,
}

impl RaftStateMachine<TypeConfig> for Held {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<super::Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        self.inner.apply(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.inner.get_snapshot_builder().await
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        self.entered.send_replace(true);
        let _ = self.release.wait_for(|go| *go).await;
        self.inner.install_snapshot(meta, snapshot).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.inner.get_current_snapshot().await
    }
}

fn config() -> Arc<Config> {
    Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 400,
            // A snapshot every 20 entries and the log purged right up to it,
            // so a newcomer can only be brought up by a snapshot.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            install_snapshot_timeout: 5_000,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

fn member(id: NodeId) -> Member {
    Member {
        name: format!("n{id}"),
        addr: format!("n{id}:1"),
    }
}

fn store_in(dir: &Path) -> Arc<Store> {
    Arc::new(Store::open(&dir.join("ferry.db")).unwrap())
}

/// What a SIGKILL leaves of a server's state directory `from`: its
/// databases as the kernel holds them, copied to `to`.
fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["raft.db", "raft.db-wal", "ferry.db", "ferry.db-wal"] {
        let file = from.join(name);
        if file.exists() {
            std::fs::copy(&file, to.join(name)).unwrap();
        }
    }
}

/// The index `raft.db` in `dir` records as purged, and the index the store
/// there records as applied, read from the files as a restart finds them.
async fn purged_and_applied(dir: &Path) -> (Option<u64>, Option<u64>) {
    let mut log = LogStore::open(&dir.join("raft.db")).unwrap();
    let purged = log.get_log_state().await.unwrap().last_purged_log_id;
    let applied: Option<LogId<NodeId>> = store_in(dir)
        .local("raft.applied")
        .unwrap()
        .map(|t| serde_json::from_str(&t).unwrap());
    (purged.map(|l| l.index), applied.map(|l| l.index))
}

/// Starts a server from `dir` as `RaftNode::start` does, and checks that
/// openraft came up (a storage state openraft rejects panics its core).
async fn start_from(dir: &Path, id: NodeId, router: &Router) -> Raft<TypeConfig> {
    let storage = open_storage(dir, store_in(dir), Arc::new(|| {})).unwrap();
    let raft = Raft::new(
        id,
        config(),
        router.clone(),
        storage.log,
        storage.state_machine,
    )
    .await
    .unwrap();
    raft.is_initialized()
        .await
        .expect("openraft did not start from this state");
    raft
}

fn proposal(n: usize) -> Proposal {
    Proposal {
        format: COMMAND_FORMAT_VERSION,
        // Refused (no such account), but applied and logged like any.
        command: Command::SetAccountEnabled {
            name: format!("nobody-{n}"),
            enabled: true,
        },
    }
}

/// The crash of the nemesis run: a follower is killed while it installs a
/// snapshot from the leader. openraft asks its log store to purge up to
/// the snapshot before the state machine has installed it; the purge must
/// not reach `raft.db` first, or the server cannot start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_while_installing_a_snapshot_starts_again() {
    let dirs = tempfile::tempdir().unwrap();
    let (d1, d2, crashed) = (
        dirs.path().join("n1"),
        dirs.path().join("n2"),
        dirs.path().join("n2-crashed"),
    );
    for d in [&d1, &d2] {
        std::fs::create_dir_all(d).unwrap();
    }
    let router = Router::default();

    // n1 alone writes enough for snapshots and purges its log.
    let s1 = open_storage(&d1, store_in(&d1), Arc::new(|| {})).unwrap();
    let n1 = Raft::new(1, config(), router.clone(), s1.log, s1.state_machine)
        .await
        .unwrap();
    router.add(1, n1.clone());
    n1.initialize(BTreeMap::from([(1, member(1))]))
        .await
        .unwrap();
    // Initialised is not yet leading: a write before the election is
    // refused (ForwardToLeader), which a loaded machine shows.
    n1.wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "n1 leads")
        .await
        .unwrap();
    for n in 0..50 {
        n1.client_write(proposal(n)).await.unwrap();
    }
    n1.wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.map(|p| p.index).unwrap_or(0) >= 20,
            "n1 purged its log",
        )
        .await
        .unwrap();

    // n2 joins; n1 can only send it a snapshot, whose install n2 holds.
    let s2 = open_storage(&d2, store_in(&d2), Arc::new(|| {})).unwrap();
    let (entered_tx, mut entered) = watch::channel(false);
    let (release, release_rx) = watch::channel(false);
    let held = Held {
        inner: s2.state_machine,
        entered: entered_tx,
        release: release_rx,
    };
    let n2 = Raft::new(2, config(), router.clone(), s2.log, held)
        .await
        .unwrap();
    router.add(2, n2.clone());
    n1.add_learner(2, member(2), false).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), entered.wait_for(|e| *e))
        .await
        .expect("n2 never began to install a snapshot")
        .unwrap();
    // openraft issues the purge with the install; give it every chance to
    // land, then kill n2 here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    crash_copy(&d2, &crashed);

    // The invariant a restart needs: the log purged no further than the
    // store applied (the store is the only snapshot after a restart).
    let (purged, applied) = purged_and_applied(&crashed).await;
    assert!(
        purged <= applied,
        "raft.db purged up to {purged:?} while the store applied {applied:?}"
    );
    // And n2 does start from what the kill left.
    let router2 = Router::default();
    let again = start_from(&crashed, 2, &router2).await;
    again.shutdown().await.unwrap();

    // Had it not been killed, the install goes through and n2 catches up.
    release.send_replace(true);
    let last = n1.metrics().borrow().last_applied.map(|l| l.index);
    n2.wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.last_applied.map(|l| l.index) >= last,
            "n2 caught up after the install",
        )
        .await
        .unwrap();
    let (purged, applied) = purged_and_applied(&d2).await;
    assert!(
        purged.is_some() && purged <= applied,
        "{purged:?} {applied:?}"
    );
    n2.shutdown().await.unwrap();
    n1.shutdown().await.unwrap();
}

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// A state directory an earlier release left after such a kill: `raft.db`
/// purged up to 30 while the store applied only up to 10, and the commit
/// position `raft.db` saved at `committed`.
async fn purged_past_the_store(dir: &Path, committed: u64) {
    let mut log = LogStore::open(&dir.join("raft.db")).unwrap();
    let mut sm = StateMachine::new(store_in(dir), dir.to_owned(), Arc::new(|| {})).unwrap();
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, member(1))]));
    let entries: Vec<Entry<TypeConfig>> = (1..=30)
        .map(|i| Entry {
            log_id: log_id(i),
            payload: if i == 1 {
                EntryPayload::Membership(membership.clone())
            } else {
                EntryPayload::Blank
            },
        })
        .collect();
    log.blocking_append(entries.clone()).await.unwrap();
    log.save_vote(&openraft::Vote::new_committed(1, 1))
        .await
        .unwrap();
    log.save_committed(Some(log_id(committed))).await.unwrap();
    sm.apply(entries.into_iter().take(10)).await.unwrap();
    // The purge that an install in progress let through.
    log.purge(log_id(30)).await.unwrap();
    assert_eq!(
        purged_and_applied(dir).await,
        (Some(30), Some(10)),
        "the broken state"
    );
}

/// Such a server starts (its log emptied back to its store) instead of
/// failing, and serves on.
async fn starts_from_a_log_purged_past_the_store(committed: u64) {
    let dir = tempfile::tempdir().unwrap();
    purged_past_the_store(dir.path(), committed).await;

    let storage = open_storage(dir.path(), store_in(dir.path()), Arc::new(|| {})).unwrap();
    assert!(storage.repaired.is_some(), "nothing was repaired");
    drop(storage);
    assert_eq!(purged_and_applied(dir.path()).await, (Some(10), Some(10)));

    let router = Router::default();
    let raft = start_from(dir.path(), 1, &router).await;
    router.add(1, raft.clone());
    // Alone in its group, it leads again and commits new entries.
    raft.wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "leads again")
        .await
        .unwrap();
    raft.client_write(proposal(0)).await.unwrap();
    raft.shutdown().await.unwrap();
}

/// The nemesis run's shape: the commit position saved no further than the
/// store (openraft panicked: `purge_upto <= snapshot_last_log_id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_purged_past_the_store_is_repaired_at_start() {
    starts_from_a_log_purged_past_the_store(10).await;
}

/// The commit position saved past the store too (openraft failed to
/// re-apply entries the purge removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_and_commit_past_the_store_are_repaired_at_start() {
    starts_from_a_log_purged_past_the_store(30).await;
}
