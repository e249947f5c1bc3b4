//! The cluster mode as a parameter: one trait, [`Cluster`], for everything
//! a server asks of its cluster, with three implementations side by side —
//! [`Single`] (a server alone), [`Node`] (active/passive) and
//! [`RaftNode`] (active/active, openraft). A server holds one
//! `Arc<dyn Cluster>` made by [`start`] and never asks which mode it runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{Command, ErrorKind, FerryError, Outcome, Secret};
use ferry_proto::cluster::NodeRole;
use ferry_proto::server::ServerFramed;
use ferry_store::Store;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{ClusterConfig, Mode};
use crate::error::ClusterError;
use crate::events::ClusterEvent;
use crate::node::{Node, NodeOptions};
use crate::raft::node::{RaftNode, RaftOptions};
use crate::sync::{SyncProgress, TargetOutcome};

/// A server-to-server connection as the internal listener accepted it.
pub type PeerStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// What the cluster asks of this server's workers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duties {
    /// Runs the primary-only duties (scheduler, folder monitors) in this
    /// term; `None`: another server does, or none.
    pub primary: Option<u64>,
    /// Serves sessions and runs queue workers.
    pub serving: bool,
    /// Writes can be made now or soon: idle queue workers should look.
    pub wake: bool,
}

/// Where a transfer-log row goes when a transfer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPolicy {
    /// Into this server's own store, in the same call (alone,
    /// active/passive): whether it can be written is known before the
    /// upload's file is committed under its name.
    Local,
    /// Proposed to the group (active/active): a row the group cannot take
    /// now waits on this server as a pending row and is proposed later.
    Replicated,
}

/// The replicated log's numbers on one server ([`Cluster::log_numbers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogNumbers {
    /// The last entry in this server's log.
    pub last_log_index: u64,
    /// The last entry known committed (on the leader: held by a majority
    /// of voters; on a follower: its leader's, as last heard).
    pub commit_index: u64,
    /// The last entry applied to its store.
    pub last_applied: u64,
    /// On the leader: how many entries each other member is behind.
    pub lag: Vec<(String, u64)>,
    /// How many times the leader this server knows of changed.
    pub leader_changes: u64,
}

/// `GET /role`: what this server is, in one shape for every mode.
#[derive(Debug, Clone, Serialize)]
pub struct RoleAnswer {
    /// The server's `node_id`.
    pub node: String,
    /// `single`, `active-passive` or `active-active`.
    pub mode: &'static str,
    /// `active`, `standby`, `witness`, `primary`, `follower` or
    /// `leader-without-quorum`.
    pub role: String,
    /// Runs the primary-only duties.
    pub primary: bool,
    /// Serves sessions now.
    pub ready: bool,
    /// Takes writes now.
    pub writable: bool,
    /// The epoch (active/passive) or Raft term (active/active); 0 alone.
    pub epoch: u64,
}

/// `ferry cluster status` of a server alone.
#[derive(Debug, Clone, Serialize)]
pub struct SingleStatus {
    /// `single`.
    pub mode: &'static str,
    /// This server.
    pub this: SingleSelf,
    /// Always empty.
    pub peers: Vec<()>,
}

/// A server alone, as its status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SingleSelf {
    /// The server's `node_id`.
    pub node: String,
    /// `active`.
    pub role: &'static str,
    /// Always true.
    pub ready: bool,
    /// Always 0.
    pub epoch: u64,
    /// Its workers.
    pub workers: Vec<ferry_worker::WorkerStatus>,
}

/// `ferry cluster status`: one type; the fields each mode has.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClusterStatus {
    /// A server alone.
    Single(SingleStatus),
    /// Active/passive: this server, its peers, the majority, recent events.
    ActivePassive(crate::node::ClusterStatus),
    /// Active/active: the group's members as each sees itself.
    ActiveActive(serde_json::Value),
}

/// Everything a server asks of its cluster.
#[async_trait]
pub trait Cluster: Send + Sync + std::fmt::Debug {
    /// The mode.
    fn mode(&self) -> Mode;

    /// Applies a command to shared state: the single write path (callers
    /// run on the blocking pool). Alone, straight to the store; on the
    /// active server of an active/passive pair, after the lease and epoch
    /// checks; in active/active, through the Raft log.
    fn apply(&self, command: &Command) -> Result<Outcome, FerryError>;

    /// Applies a change about this server itself (the leases of its last
    /// run, a transfer row it recovered): into its own store where the store
    /// is its own (alone, active/passive, also on a standby, whose rows
    /// reach the active server through the history pull), proposed where
    /// the store is the group's. Blocking, like [`Cluster::apply`].
    fn apply_about_self(&self, command: &Command) -> Result<Outcome, FerryError>;

    /// Applies an upload's transfer-log row whose content this server
    /// already keeps durably as the upload's intent (and logs again from
    /// there after a crash). Where the row goes to this server's own store
    /// (alone, active/passive), its commit need not wait for the disk
    /// ([`Store::apply_unflushed`]); in active/active it is proposed like
    /// any command. Blocking, like [`Cluster::apply`].
    fn apply_covered_row(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.apply(command)
    }

    /// Ok when a change made here now would be kept.
    fn check_writable(&self) -> Result<(), FerryError>;

    /// Why this server does not serve sessions now, if it does not.
    fn not_serving_reason(&self) -> Option<String>;

    /// Ok when this server's store is current enough to decide a login.
    async fn check_current(&self) -> Result<(), FerryError> {
        match self.not_serving_reason() {
            None => Ok(()),
            Some(why) => Err(FerryError::new(ErrorKind::Unavailable, why)),
        }
    }

    /// Where transfer-log rows go.
    fn row_policy(&self) -> RowPolicy {
        RowPolicy::Local
    }

    /// Whether every server's store holds every change as soon as it is
    /// made (alone; active/active, through the log). Not in active/passive,
    /// where each server has its own store and history arrives by pull.
    fn store_is_shared(&self) -> bool {
        true
    }

    /// What the cluster asks of this server's workers, kept current.
    fn duties(&self) -> watch::Receiver<Duties>;

    /// How long a new primary of `term` leaves schedule slots to the one
    /// before it (active/passive: that one may still fire until its lease
    /// runs out); `None` where a firing cannot happen twice.
    fn takeover_fence(&self, _term: u64) -> Option<Duration> {
        None
    }

    /// `GET /role`.
    fn role(&self) -> RoleAnswer;

    /// The replicated log's numbers on this server (active/active only).
    fn log_numbers(&self) -> Option<LogNumbers> {
        None
    }

    /// `ferry cluster status`.
    async fn status(self: Arc<Self>) -> ClusterStatus;

    /// `ferry cluster events`: the cluster's history, newest last.
    async fn events(&self, limit: usize) -> Result<Vec<ClusterEvent>, FerryError>;

    /// Whether a server that connected to the internal listener as
    /// `node_id`, with a certificate naming `cert_name`, is taken.
    fn admit_server(&self, node_id: &str, cert_name: Option<&str>) -> Result<(), ClusterError>;

    /// Serves an admitted server's connection until it closes.
    async fn serve_server(
        self: Arc<Self>,
        framed: ServerFramed<PeerStream>,
        peer: String,
        node_id: String,
    );

    /// Leaves the cluster as a process stops (after the server's workers).
    async fn shutdown(&self, _within: Duration) -> Result<(), ClusterError> {
        Ok(())
    }

    /// `ferry cluster promote` (active/passive).
    async fn promote(self: Arc<Self>, _force: bool) -> Result<String, FerryError> {
        Err(not_for(self.mode(), Mode::ActivePassive, "promote"))
    }

    /// `ferry sync` (active/passive).
    async fn sync(
        self: Arc<Self>,
        _targets: Vec<String>,
        _dry_run: bool,
        _progress: tokio::sync::mpsc::UnboundedSender<SyncProgress>,
    ) -> Result<Vec<TargetOutcome>, FerryError> {
        Err(not_for(self.mode(), Mode::ActivePassive, "sync"))
    }

    /// `ferry cluster init` (active/active).
    async fn initialize(&self) -> Result<String, FerryError> {
        Err(not_for(self.mode(), Mode::ActiveActive, "cluster init"))
    }

    /// `ferry cluster join` (active/active, on the joining server).
    async fn join(&self, _address: &str, _token: Secret) -> Result<String, FerryError> {
        Err(not_for(self.mode(), Mode::ActiveActive, "cluster join"))
    }

    /// `ferry cluster leave` (active/active, on the leaving server).
    async fn leave(&self) -> Result<String, FerryError> {
        Err(not_for(self.mode(), Mode::ActiveActive, "cluster leave"))
    }

    /// `ferry cluster remove` (active/active).
    async fn remove(&self, _name: &str) -> Result<String, FerryError> {
        Err(not_for(self.mode(), Mode::ActiveActive, "cluster remove"))
    }

    /// `ferry cluster finalize-upgrade`: raises the feature level
    /// ([`ferry_core::release`]). Only a replicated log has one; a server
    /// alone, or an active/passive pair (each server its own store, the
    /// sync and history pulls checking their formats and schemas), runs
    /// at its own release's level.
    async fn finalize_upgrade(&self) -> Result<String, FerryError> {
        Ok(format!(
            "this server runs {} at feature level {}: in {} mode there is no cluster-wide level to raise",
            crate::SOFTWARE,
            ferry_core::release::FEATURE_LEVEL,
            mode_name(self.mode())
        ))
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Single => "single",
        Mode::ActivePassive => "active-passive",
        Mode::ActiveActive => "active-active",
    }
}

/// The error of an operator action for another mode.
fn not_for(mode: Mode, wanted: Mode, what: &str) -> FerryError {
    if mode == Mode::Single {
        return FerryError::invalid(
            "this server runs alone ([cluster] mode = \"single\"); there is no cluster to act on",
        );
    }
    FerryError::invalid(format!(
        "`ferry {what}` is for [cluster] mode = \"{}\"; this server runs \"{}\"",
        mode_name(wanted),
        mode_name(mode)
    ))
}

/// What starting a cluster node needs from its server.
pub struct ClusterOptions {
    /// The `[cluster]` settings.
    pub config: ClusterConfig,
    /// This server's `node_id`.
    pub node_id: String,
    /// Votes only; serves nothing.
    pub witness: bool,
    /// The server's store.
    pub store: Arc<Store>,
    /// Node-local state: `cluster.json`, `raft.db`, the event log.
    pub state_dir: PathBuf,
    /// The server's config file (its directory holds the sync manifests).
    pub config_file: Option<PathBuf>,
    /// TLS to reach other servers.
    pub tls: Arc<rustls::ClientConfig>,
    /// Identifies the key sealing partner secrets.
    pub secret_key_id: String,
    /// Called when replication changed the store (wake the workers).
    pub on_change: Arc<dyn Fn() + Send + Sync>,
    /// Runs the cluster's loops.
    pub runner: ferry_worker::Runner,
}

/// Starts this server's part in the cluster its config names.
pub async fn start(options: ClusterOptions) -> Result<Arc<dyn Cluster>, ClusterError> {
    let ClusterOptions {
        config,
        node_id,
        witness,
        store,
        state_dir,
        config_file,
        tls,
        secret_key_id,
        on_change,
        runner,
    } = options;
    match config.mode {
        Mode::Single => Ok(Arc::new(Single::new(node_id, store, runner))),
        Mode::ActivePassive => {
            let config_file = config_file.unwrap_or_default();
            let node = Node::start(NodeOptions {
                config,
                node_id,
                witness,
                store,
                state_dir,
                config_dir: config_file
                    .parent()
                    .map(|p| p.to_owned())
                    .unwrap_or_else(|| PathBuf::from(".")),
                own_config: config_file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                tls,
                secret_key_id,
                on_merged: Box::new(move |_| on_change()),
                runner,
            })
            .await?;
            Ok(node)
        }
        Mode::ActiveActive => {
            let node = RaftNode::start(RaftOptions {
                advertise: config.advertise.clone().unwrap_or_default(),
                config,
                name: node_id,
                store,
                state_dir,
                tls,
                witness,
                on_applied: on_change,
                runner,
            })
            .await?;
            Ok(node)
        }
    }
}

/// Keeps `duties` current from a node's own view of its role: the
/// `cluster-role` worker.
pub(crate) fn follow_view<V>(
    runner: &ferry_worker::Runner,
    mut view: watch::Receiver<V>,
    duties: watch::Sender<Duties>,
    map: impl Fn(V) -> Duties + Send + 'static,
) where
    V: Copy + Send + Sync + 'static,
{
    runner.spawn("cluster-role", |w| async move {
        w.busy("mapping the cluster role onto the server's duties");
        loop {
            let now = map(*view.borrow_and_update());
            duties.send_if_modified(|d| std::mem::replace(d, now) != now);
            match w.until_stopped(view.changed()).await {
                Some(Ok(())) => {}
                None | Some(Err(_)) => return,
            }
        }
    });
}

// ---- a server alone ------------------------------------------------------

/// A server alone: always the primary, always serving; writes go straight
/// to its store.
pub struct Single {
    node_id: String,
    store: Arc<Store>,
    runner: ferry_worker::Runner,
    duties: watch::Sender<Duties>,
}

impl std::fmt::Debug for Single {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Single")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Single {
    /// A server alone with its store.
    pub fn new(node_id: String, store: Arc<Store>, runner: ferry_worker::Runner) -> Self {
        Self {
            node_id,
            store,
            runner,
            duties: watch::Sender::new(Duties {
                primary: Some(0),
                serving: true,
                wake: true,
            }),
        }
    }
}

#[async_trait]
impl Cluster for Single {
    fn mode(&self) -> Mode {
        Mode::Single
    }

    fn apply(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.store.apply(command).map_err(FerryError::from)
    }

    fn apply_about_self(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.apply(command)
    }

    fn apply_covered_row(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.store
            .apply_unflushed(command)
            .map_err(FerryError::from)
    }

    fn check_writable(&self) -> Result<(), FerryError> {
        Ok(())
    }

    fn not_serving_reason(&self) -> Option<String> {
        None
    }

    fn duties(&self) -> watch::Receiver<Duties> {
        self.duties.subscribe()
    }

    fn role(&self) -> RoleAnswer {
        RoleAnswer {
            node: self.node_id.clone(),
            mode: "single",
            role: "active".into(),
            primary: true,
            ready: true,
            writable: true,
            epoch: 0,
        }
    }

    async fn status(self: Arc<Self>) -> ClusterStatus {
        ClusterStatus::Single(SingleStatus {
            mode: "single",
            this: SingleSelf {
                node: self.node_id.clone(),
                role: "active",
                ready: true,
                epoch: 0,
                workers: self.runner.statuses(),
            },
            peers: Vec::new(),
        })
    }

    async fn events(&self, _limit: usize) -> Result<Vec<ClusterEvent>, FerryError> {
        Err(not_for(Mode::Single, Mode::ActivePassive, "cluster events"))
    }

    fn admit_server(&self, _node_id: &str, _cert_name: Option<&str>) -> Result<(), ClusterError> {
        Err(ClusterError::Refused(format!(
            "{} is not in a cluster",
            self.node_id
        )))
    }

    async fn serve_server(
        self: Arc<Self>,
        _framed: ServerFramed<PeerStream>,
        _peer: String,
        _node_id: String,
    ) {
    }
}

/// The certificate must name the server it connects as.
fn cert_names(peer_node: &str, cert_name: Option<&str>) -> Result<(), ClusterError> {
    if cert_name == Some(peer_node) {
        Ok(())
    } else {
        Err(ClusterError::Refused(format!(
            "the certificate names {:?}, not {peer_node:?}",
            cert_name.unwrap_or("nobody")
        )))
    }
}

// ---- active/passive --------------------------------------------------------

#[async_trait]
impl Cluster for Node {
    fn mode(&self) -> Mode {
        Mode::ActivePassive
    }

    fn apply(&self, command: &Command) -> Result<Outcome, FerryError> {
        // Only the active server changes shared state; a standby takes it
        // from `ferry sync` and the history merge.
        self.check_writable()?;
        if let Command::FireSchedule { term, .. } = command {
            let epoch = self.view().epoch;
            if *term != epoch {
                return Err(FerryError::new(
                    ErrorKind::Conflict,
                    format!(
                        "schedule firing of epoch {term} refused: this server is in epoch {epoch}"
                    ),
                ));
            }
        }
        self.store.apply(command).map_err(FerryError::from)
    }

    fn apply_about_self(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.store.apply(command).map_err(FerryError::from)
    }

    fn apply_covered_row(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.check_writable()?;
        self.store
            .apply_unflushed(command)
            .map_err(FerryError::from)
    }

    fn check_writable(&self) -> Result<(), FerryError> {
        Node::check_writable(self)
    }

    fn not_serving_reason(&self) -> Option<String> {
        Node::not_serving_reason(self)
    }

    fn duties(&self) -> watch::Receiver<Duties> {
        self.duties_watch()
    }

    fn store_is_shared(&self) -> bool {
        false
    }

    fn takeover_fence(&self, term: u64) -> Option<Duration> {
        // Epoch 1 had no server active before it; after a hand-over the
        // server before fires nothing more and its firings are merged.
        (term > 1 && !self.handed_over_in(term)).then(|| Node::takeover_fence(self))
    }

    fn role(&self) -> RoleAnswer {
        let v = self.view();
        let writable = Node::check_writable(self).is_ok();
        RoleAnswer {
            node: self.node_id().to_owned(),
            mode: "active-passive",
            role: v.role.as_str().to_owned(),
            primary: v.role == NodeRole::Active && v.ready,
            ready: v.ready,
            writable,
            epoch: v.epoch,
        }
    }

    async fn status(self: Arc<Self>) -> ClusterStatus {
        ClusterStatus::ActivePassive(Node::status(&self).await)
    }

    async fn events(&self, limit: usize) -> Result<Vec<ClusterEvent>, FerryError> {
        Ok(self.cluster_events(limit).await)
    }

    fn admit_server(&self, node_id: &str, cert_name: Option<&str>) -> Result<(), ClusterError> {
        if !self.is_peer(node_id) {
            return Err(ClusterError::Refused(format!(
                "{node_id:?} is not a peer of {}",
                self.node_id()
            )));
        }
        cert_names(node_id, cert_name)
    }

    async fn serve_server(
        self: Arc<Self>,
        framed: ServerFramed<PeerStream>,
        peer: String,
        _node_id: String,
    ) {
        crate::peer::serve_peer(framed, self, peer).await;
    }

    async fn promote(self: Arc<Self>, force: bool) -> Result<String, FerryError> {
        Node::promote(&self, force).await
    }

    async fn sync(
        self: Arc<Self>,
        targets: Vec<String>,
        dry_run: bool,
        progress: tokio::sync::mpsc::UnboundedSender<SyncProgress>,
    ) -> Result<Vec<TargetOutcome>, FerryError> {
        Node::sync(&self, targets, dry_run, progress).await
    }
}

// ---- active/active ---------------------------------------------------------

#[async_trait]
impl Cluster for RaftNode {
    fn mode(&self) -> Mode {
        Mode::ActiveActive
    }

    fn log_numbers(&self) -> Option<LogNumbers> {
        Some(RaftNode::log_numbers(self))
    }

    fn apply(&self, command: &Command) -> Result<Outcome, FerryError> {
        if self.witness {
            RaftNode::check_writable(self)?;
        }
        // Proposed to the Raft log; every server applies it in order.
        // Callers run on the blocking pool, where waiting is allowed.
        self.write_blocking(command.clone())
    }

    fn apply_about_self(&self, command: &Command) -> Result<Outcome, FerryError> {
        // The store is the group's: only the log changes it. Without a
        // leader the caller is told at once, and tries again later.
        if !self.view().has_leader {
            return Err(FerryError::new(
                ErrorKind::Unavailable,
                crate::raft::node::NO_QUORUM,
            ));
        }
        self.write_blocking(command.clone())
    }

    fn check_writable(&self) -> Result<(), FerryError> {
        RaftNode::check_writable(self)
    }

    fn not_serving_reason(&self) -> Option<String> {
        self.stale_reason()
    }

    async fn check_current(&self) -> Result<(), FerryError> {
        RaftNode::check_current(self).await
    }

    fn row_policy(&self) -> RowPolicy {
        RowPolicy::Replicated
    }

    fn duties(&self) -> watch::Receiver<Duties> {
        self.duties_watch()
    }

    fn role(&self) -> RoleAnswer {
        let v = self.view();
        let leader = self.raft.metrics().borrow().state == openraft::ServerState::Leader;
        RoleAnswer {
            node: self.name.clone(),
            mode: "active-active",
            role: if v.primary {
                "primary"
            } else if leader {
                "leader-without-quorum"
            } else {
                "follower"
            }
            .into(),
            primary: v.primary,
            ready: v.serving,
            writable: v.has_leader && v.serving,
            epoch: v.term,
        }
    }

    async fn status(self: Arc<Self>) -> ClusterStatus {
        ClusterStatus::ActiveActive(RaftNode::status(&self).await)
    }

    async fn events(&self, limit: usize) -> Result<Vec<ClusterEvent>, FerryError> {
        Ok(self.cluster_events(limit).await)
    }

    fn admit_server(&self, node_id: &str, cert_name: Option<&str>) -> Result<(), ClusterError> {
        // Which requests a server may make is decided per request (members
        // only, or a join with the token).
        cert_names(node_id, cert_name)
    }

    async fn serve_server(
        self: Arc<Self>,
        framed: ServerFramed<PeerStream>,
        peer: String,
        node_id: String,
    ) {
        crate::peer::serve_raft_peer(framed, self, peer, node_id).await;
    }

    async fn shutdown(&self, within: Duration) -> Result<(), ClusterError> {
        RaftNode::shutdown(self, within).await
    }

    async fn initialize(&self) -> Result<String, FerryError> {
        RaftNode::initialize(self).await
    }

    async fn join(&self, address: &str, token: Secret) -> Result<String, FerryError> {
        RaftNode::join(self, address, token).await
    }

    async fn leave(&self) -> Result<String, FerryError> {
        RaftNode::leave(self).await
    }

    async fn remove(&self, name: &str) -> Result<String, FerryError> {
        RaftNode::remove(self, name).await
    }

    async fn finalize_upgrade(&self) -> Result<String, FerryError> {
        RaftNode::finalize_upgrade(self).await
    }
}
