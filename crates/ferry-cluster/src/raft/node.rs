//! One server in an active/active cluster: its Raft instance, the write
//! path (propose here, or forward to the leader), the primary role (the
//! leader, while a majority hears it) and status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::release::{self, FEATURE_LEVEL, FEATURE_LEVEL_SETTING};
use ferry_core::{Command, ErrorKind, FerryError, Outcome, Secret, COMMAND_FORMAT_VERSION};
use ferry_proto::cluster::{ClusterRequest, ClusterResponse, RaftRpc};
use ferry_proto::message::{Request, Response, Role};
use ferry_store::Store;
use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::ChangeMembers;
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use serde::Serialize;
use sha2::Digest;
use tokio::sync::watch;

use super::log_store::LogStore;
use super::network::{CallError, Network};
use super::{node_id_of, Member, NodeId, Proposal, TypeConfig};
use crate::config::ClusterConfig;
use crate::events::{EventLog, Severity};

/// The message of every write refused for want of a majority.
pub const NO_QUORUM: &str = "cluster has no quorum: read-only";

/// What this server is in the Raft group now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftView {
    /// Leader and heard by a majority lately: runs the primary-only duties.
    pub primary: bool,
    /// The current term.
    pub term: u64,
    /// A leader is known (writes can be made here or forwarded).
    pub has_leader: bool,
    /// Up to date enough to take logins and writes: the primary, or a
    /// follower that heard its leader lately and is not far behind it.
    pub serving: bool,
}

/// Why a server must not take logins or writes now.
#[derive(Debug, Clone, Copy)]
enum Staleness {
    Witness,
    /// A leader no majority answered lately.
    LeaderAlone,
    /// A follower that has not heard a leader since it started.
    NeverHeard,
    /// A follower that has not heard its leader for so many ms.
    Silent(u64),
    /// A follower that has not had applied its leader's commit index
    /// within the bound; so many entries behind.
    Behind(u64),
}

impl Staleness {
    fn describe(self, name: &str) -> String {
        match self {
            Staleness::Witness => "this server is a witness: it votes and serves nothing".into(),
            Staleness::LeaderAlone => {
                format!("{NO_QUORUM} ({name} leads but no majority answered it lately)")
            }
            Staleness::NeverHeard => {
                format!("{name} has not heard from a leader since it started")
            }
            Staleness::Silent(ms) => format!("{name} has not heard from its leader for {ms} ms"),
            Staleness::Behind(n) => {
                format!("{name} is {n} log entries behind its leader and catching up")
                    .replace(" 1 log entries", " 1 log entry")
            }
        }
    }
}

/// What a follower last heard from its leader.
#[derive(Debug, Clone, Copy)]
struct LeaderContact {
    /// When it last accepted an AppendEntries.
    at: std::time::Instant,
    /// The leader's commit index then.
    commit: u64,
    /// When this server last had applied its leader's commit index as
    /// last heard; `None` until it first has.
    caught_up: Option<std::time::Instant>,
}

/// What a Raft node needs from its server.
pub struct RaftOptions {
    /// The `[cluster]` settings (peers are the other initial members).
    pub config: ClusterConfig,
    /// This server's `node_id`.
    pub name: String,
    /// The address other servers reach this one at (`host:port`).
    pub advertise: String,
    /// The server's store (the state machine).
    pub store: Arc<Store>,
    /// Where `raft.db` and the event log live.
    pub state_dir: PathBuf,
    /// TLS to reach other servers.
    pub tls: Arc<rustls::ClientConfig>,
    /// Called after entries were applied (wake the queue workers).
    pub on_applied: Arc<dyn Fn() + Send + Sync>,
    /// A witness votes and keeps the log but never stands for election,
    /// so it is never the leader; it serves nothing.
    pub witness: bool,
    /// Runs the node's loops; its status lists every worker of the server.
    pub runner: ferry_worker::Runner,
}

/// A server's membership in the Raft group.
pub struct RaftNode {
    /// The openraft instance.
    pub raft: Raft<TypeConfig>,
    /// Raft id.
    pub id: NodeId,
    /// `node_id`.
    pub name: String,
    /// Advertised address.
    pub advertise: String,
    config: ClusterConfig,
    network: Network,
    log: LogStore,
    store: Arc<Store>,
    /// The cluster's event history.
    pub events: EventLog,
    /// Votes and keeps the log only.
    pub witness: bool,
    runner: ferry_worker::Runner,
    view: watch::Sender<RaftView>,
    /// What the group asks of the server's workers (from `view`).
    duties: watch::Receiver<crate::mode::Duties>,
    contact: std::sync::Mutex<Option<LeaderContact>>,
    /// How many times the leader this server knows of changed.
    leader_changes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A member as `ferry cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// `node_id`.
    pub name: String,
    /// Address.
    pub address: String,
    /// leader, follower, candidate, learner, or unknown (not reachable).
    pub role: String,
    /// Its term.
    pub term: Option<u64>,
    /// Last log index it holds.
    pub last_log_index: Option<u64>,
    /// Last index it applied.
    pub applied_index: Option<u64>,
    /// Entries it is behind the leader (leader's view).
    pub lag: Option<u64>,
    /// Its release.
    pub version: Option<String>,
    /// The highest feature level its release can run at.
    pub supports_level: Option<u32>,
    /// Whether it runs the scheduler and folder monitors.
    pub primary: Option<bool>,
    /// Its workers and what each does.
    pub workers: Option<Vec<ferry_worker::WorkerStatus>>,
    /// Milliseconds since this node last heard from it.
    pub last_contact_ms: Option<u64>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// What one node says of itself (the `RaftStatus` answer).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SelfStatus {
    name: String,
    role: String,
    term: u64,
    last_log_index: Option<u64>,
    applied_index: Option<u64>,
    leader: Option<String>,
    version: String,
    /// The highest feature level this release can run at; absent in the
    /// answers of 0.1, which had none ([`release::level_of_member`]).
    #[serde(default)]
    feature_level: Option<u32>,
    primary: bool,
    workers: Vec<ferry_worker::WorkerStatus>,
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// The feature level from which a server answers
/// [`ClusterRequest::ProbeMembers`] (release 0.2).
const PROBE_MEMBERS_LEVEL: u32 = 2;

/// The setting holding the SHA-256 of the join token.
const JOIN_TOKEN_SHA256: &str = "cluster.join_token_sha256";

/// A change of the group's members.
enum MembershipChange {
    /// Add this server (with the token it presented).
    Join(Member, Secret),
    /// Remove the server called so.
    Leave(String),
}

/// The leader's answer to a forwarded proposal: the store's answer and the
/// log index of the entry, so the proposer can wait until it has applied
/// it too before it reads its own store.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Proposed {
    result: Result<Outcome, FerryError>,
    index: Option<u64>,
}

/// A store answer with the log index it was applied at, when known.
type Answered = (Result<Outcome, FerryError>, Option<u64>);

/// Why a proposal attempt did not produce a store answer.
enum Attempt {
    /// Nobody took it: it can be sent again.
    NotDelivered(String),
    /// It was sent but the answer was lost: it may have been committed.
    Lost(String),
    /// It failed for good.
    Failed(FerryError),
}

/// A change that may or may not be made: the caller must not take it for
/// a failure (nor a success).
fn outcome_unknown(detail: impl std::fmt::Display) -> FerryError {
    FerryError::new(
        ErrorKind::OutcomeUnknown,
        format!("outcome unknown: {detail}; the change may still be made"),
    )
}

fn no_quorum(detail: impl std::fmt::Display) -> FerryError {
    FerryError::new(ErrorKind::Unavailable, format!("{NO_QUORUM} ({detail})"))
}

impl RaftNode {
    /// Opens the log, starts Raft, and follows its metrics to keep the
    /// primary role current.
    pub async fn start(options: RaftOptions) -> Result<Arc<Self>, crate::ClusterError> {
        let super::Storage {
            log,
            state_machine,
            repaired,
        } = super::open_storage(
            &options.state_dir,
            options.store.clone(),
            options.on_applied.clone(),
        )?;
        if let Some(repaired) = &repaired {
            tracing::warn!(name = %options.name, "{repaired}");
        }
        let routes = options
            .config
            .peers
            .iter()
            .map(|p| (p.id.clone(), p.address.clone()))
            .collect();
        let network = Network::new(options.tls.clone(), options.name.clone(), routes);
        let hb = options.config.heartbeat_ms().max(20);
        let raft_config = Config {
            cluster_name: "ferry".into(),
            heartbeat_interval: hb,
            election_timeout_min: options.config.election_timeout_ms,
            // openraft waits out a leader lease (the maximum) before it
            // stands, and twice the maximum more after it lost an election
            // to a longer log: a narrow range keeps failover near twice the
            // minimum, and under 3 s even then (the nemesis tests found
            // 3.5 s elections with 1.5 x).
            election_timeout_max: options.config.election_timeout_max_ms(),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.config.snapshot_every),
            // Entries already in a snapshot are kept for one more period, so
            // a follower a little behind catches up from the log; one
            // further behind gets the snapshot.
            max_in_snapshot_log_to_keep: options.config.snapshot_every.min(1000),
            purge_batch_size: 1,
            // Each chunk has this long; the last one also covers the
            // restore of the whole database on the receiver.
            install_snapshot_timeout: 60_000,
            snapshot_max_chunk_size: super::SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| crate::ClusterError::Config(format!("[cluster] timing: {e}")))?;
        let events = EventLog::open(&options.state_dir, &options.name).with_webhook(
            options.config.alert_webhook.as_deref(),
            options.config.alert_webhook_ca.as_deref(),
        )?;
        if let Some(repaired) = repaired {
            events.record(Severity::Alert, "storage", repaired);
        }
        let id = node_id_of(&options.name);
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            network.clone(),
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| crate::ClusterError::Raft(format!("cannot start Raft: {e}")))?;
        let (duties_tx, duties) = watch::channel(crate::mode::Duties {
            primary: None,
            serving: !options.witness,
            wake: false,
        });
        let node = Arc::new(Self {
            raft,
            id,
            name: options.name.clone(),
            advertise: options.advertise,
            config: options.config,
            network,
            log,
            store: options.store.clone(),
            events,
            runner: options.runner,
            witness: options.witness,
            view: watch::Sender::new(RaftView {
                primary: false,
                term: 0,
                has_leader: false,
                serving: false,
            }),
            duties,
            contact: std::sync::Mutex::new(None),
            leader_changes: std::sync::atomic::AtomicU64::new(0),
        });
        if node.witness {
            // Never a candidate, so never the leader; it still votes.
            node.raft.runtime_config().elect(false);
        }
        let follower = node.clone();
        node.runner.spawn("raft-metrics", |w| async move {
            w.busy("following the Raft group's metrics");
            w.until_stopped(follower.follow_metrics()).await;
        });
        // The leader, while a majority hears it, is the primary (with the
        // Raft term); every server but a witness serves sessions and runs
        // queue workers (a stale one refuses them: `stale_reason`).
        let serving = !node.witness;
        crate::mode::follow_view(&node.runner, node.subscribe(), duties_tx, move |v| {
            crate::mode::Duties {
                primary: v.primary.then_some(v.term),
                serving,
                wake: v.has_leader,
            }
        });
        Ok(node)
    }

    /// What the group asks of the server's workers, kept current.
    pub(crate) fn duties_watch(&self) -> watch::Receiver<crate::mode::Duties> {
        self.duties.clone()
    }

    /// Follows role changes.
    pub fn subscribe(&self) -> watch::Receiver<RaftView> {
        self.view.subscribe()
    }

    /// The view now.
    pub fn view(&self) -> RaftView {
        *self.view.borrow()
    }

    fn lease_ms(&self) -> u64 {
        self.config.election_timeout_ms
    }

    /// The log's numbers on this server, for metrics.
    pub fn log_numbers(&self) -> crate::mode::LogNumbers {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, matched)| {
                        let name = m
                            .membership_config
                            .membership()
                            .get_node(id)
                            .map_or_else(|| id.to_string(), |n| n.name.clone());
                        let matched = matched.map_or(0, |l| l.index);
                        (name, last.saturating_sub(matched))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The commit index: on the leader, the highest entry a majority of
        // voters holds; on a follower, its leader's as last heard.
        let commit = if m.state == ServerState::Leader {
            let mut matched: Vec<u64> = m
                .membership_config
                .membership()
                .voter_ids()
                .map(|id| {
                    if id == self.id {
                        last
                    } else {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id).copied().flatten())
                            .map_or(0, |l| l.index)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched.get(matched.len() / 2).copied().unwrap_or(0)
        } else {
            self.contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map_or(0, |c| c.commit)
        };
        crate::mode::LogNumbers {
            last_log_index: last,
            commit_index: commit,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            lag,
            leader_changes: self
                .leader_changes
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Recomputes the view from metrics: on every change, and every
    /// heartbeat so that a leader that stops hearing a majority drops the
    /// primary role within one election timeout.
    async fn follow_metrics(self: Arc<Self>) {
        let mut metrics = self.raft.metrics();
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms().max(20)));
        let mut last = self.view();
        let mut lagging: std::collections::BTreeSet<NodeId> = Default::default();
        let mut behind_told = false;
        let mut behind_since: Option<std::time::Instant> = None;
        // Since when no leader is known, and whether that was alerted.
        let mut leaderless_since: Option<std::time::Instant> = None;
        let mut quorum_alerted = false;
        let mut leader = None;
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
            let m = metrics.borrow().clone();
            if m.current_leader.is_some() && m.current_leader != leader {
                leader = m.current_leader;
                self.leader_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(since) = leaderless_since {
                let quiet = since.elapsed();
                if !quorum_alerted && quiet > Duration::from_millis(self.lease_ms() * 4) {
                    quorum_alerted = true;
                    self.events.record(
                        Severity::Alert,
                        "role",
                        format!(
                            "lost the quorum: no leader for {} ms: {NO_QUORUM}",
                            quiet.as_millis()
                        ),
                    );
                }
            }
            self.note_caught_up(&m);
            self.check_lag(&m, &mut lagging);
            let heard = m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms < self.lease_ms());
            let stale = self.staleness(&m);
            let view = RaftView {
                primary: m.state == ServerState::Leader && heard,
                term: m.current_term,
                has_leader: m.current_leader.is_some() && (m.state != ServerState::Leader || heard),
                serving: stale.is_none(),
            };
            // Contact lost is told by the role events; being behind a
            // leader that is there is told here, once each way.
            // Told once it has lasted: a follower that just restarted is
            // behind for a moment, which is no news.
            match stale {
                Some(Staleness::Behind(_)) => {
                    behind_since.get_or_insert_with(std::time::Instant::now);
                }
                None => behind_since = None,
                _ => {}
            }
            let lasting = behind_since.is_some_and(|t| t.elapsed() > Duration::from_secs(5));
            match (stale, behind_told) {
                (Some(why @ Staleness::Behind(_)), false) if lasting => {
                    self.events.record(
                        Severity::Alert,
                        "lag",
                        format!(
                            "stopped serving logins and writes: {}",
                            why.describe(&self.name)
                        ),
                    );
                    behind_told = true;
                }
                (None, true) => {
                    self.events.record(
                        Severity::Info,
                        "lag",
                        "caught up with the leader: serving again".into(),
                    );
                    behind_told = false;
                }
                _ => {}
            }
            if view != last {
                if last.has_leader && !view.has_leader {
                    leaderless_since = Some(std::time::Instant::now());
                }
                if view.has_leader {
                    leaderless_since = None;
                }
                let (severity, message) =
                    match (last.primary, view.primary, last.has_leader, view.has_leader) {
                        (false, true, _, _) => (
                            Severity::Alert,
                            format!("became the primary (leader) in term {}", view.term),
                        ),
                        (true, false, _, _) => (
                            Severity::Alert,
                            format!("is no longer the primary (term {})", view.term),
                        ),
                        // A leader change passes through this; the alert
                        // comes only if no leader follows (below).
                        (_, _, true, false) => (
                            Severity::Info,
                            format!("no leader known (term {}): an election is due", view.term),
                        ),
                        (_, _, false, true) => {
                            if quorum_alerted {
                                (
                                    Severity::Info,
                                    format!("quorum regained; leader known in term {}", view.term),
                                )
                            } else {
                                (
                                    Severity::Info,
                                    format!("leader known in term {}", view.term),
                                )
                            }
                        }
                        _ => (Severity::Info, format!("term {}", view.term)),
                    };
                if view.has_leader {
                    quorum_alerted = false;
                }
                if view.term != last.term
                    || view.primary != last.primary
                    || view.has_leader != last.has_leader
                {
                    self.events.record(severity, "role", message);
                }
                last = view;
                self.view.send_replace(view);
            }
        }
    }

    /// Alerts once when a member falls more than `lag_alert_entries`
    /// behind the leader, and once when it has caught up.
    fn check_lag(
        &self,
        m: &openraft::RaftMetrics<NodeId, Member>,
        lagging: &mut std::collections::BTreeSet<NodeId>,
    ) {
        let Some(replication) = &m.replication else {
            lagging.clear();
            return;
        };
        let last = m.last_log_index.unwrap_or(0);
        let name = |id: &NodeId| {
            m.membership_config
                .membership()
                .get_node(id)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| id.to_string())
        };
        for (id, matched) in replication {
            let lag = last.saturating_sub(matched.map(|l| l.index).unwrap_or(0));
            if lag > self.config.lag_alert_entries {
                if lagging.insert(*id) {
                    self.events.record(
                        Severity::Alert,
                        "lag",
                        format!("{} is {lag} log entries behind the leader", name(id)),
                    );
                }
            } else if lagging.remove(id) {
                self.events
                    .record(Severity::Info, "lag", format!("{} has caught up", name(id)));
            }
        }
    }

    fn members_from_config(&self) -> BTreeMap<NodeId, Member> {
        let mut members = BTreeMap::new();
        members.insert(
            self.id,
            Member {
                name: self.name.clone(),
                addr: self.advertise.clone(),
            },
        );
        for peer in &self.config.peers {
            members.insert(
                node_id_of(&peer.id),
                Member {
                    name: peer.id.clone(),
                    addr: peer.address.clone(),
                },
            );
        }
        members
    }

    /// Stops this server's part in the group: openraft's tasks end (a
    /// leader stops sending heartbeats, so the others elect a new one
    /// after an election timeout), the log and state machine stay as they
    /// are for the next start. Bounded: openraft gets `within`.
    pub async fn shutdown(&self, within: Duration) -> Result<(), crate::ClusterError> {
        match tokio::time::timeout(within, self.raft.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::ClusterError::Raft(format!(
                "openraft did not shut down cleanly: {e}"
            ))),
            Err(_) => Err(crate::ClusterError::Raft(format!(
                "openraft did not shut down within {within:?}"
            ))),
        }
    }

    /// `ferry cluster init`: makes this server and the configured peers the
    /// group's members. Only once, on one server.
    pub async fn initialize(&self) -> Result<String, FerryError> {
        let members = self.members_from_config();
        let names: Vec<String> = members.values().map(|m| m.name.clone()).collect();
        match self.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                return Err(FerryError::new(
                    ErrorKind::Conflict,
                    "this cluster is initialised already",
                ))
            }
            Err(e) => return Err(FerryError::invalid(format!("cannot initialise: {e}"))),
        }
        self.events.record(
            Severity::Info,
            "membership",
            format!("initialised the cluster with {}", names.join(", ")),
        );
        // The join token: shown once, kept only as its SHA-256 in the
        // replicated settings, so any member can check a join.
        let mut bytes = [0u8; 24];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
        let token = format!("fyj_{}", hex::encode(bytes));
        self.write(Command::SetSetting {
            key: JOIN_TOKEN_SHA256.into(),
            value: hex::encode(sha2::Sha256::digest(token.as_bytes())),
        })
        .await?;
        // The founders' shared level: a new cluster of one release runs at
        // that release's level without a finalize-upgrade.
        let level = match self.finalize_upgrade().await {
            Ok(_) => format!("feature level {}", self.feature_level()),
            Err(e) => format!("{e}; run `ferry cluster finalize-upgrade` once every server is up"),
        };
        Ok(format!(
            "cluster initialised with {} ({level})\njoin token (shown once; other servers join with `ferry cluster join ADDR --join-token-file F`): {token}",
            names.join(", ")
        ))
    }

    /// `ferry cluster join ADDR`: asks the member at `addr` to add this
    /// server to the group; it catches up from the leader afterwards.
    pub async fn join(&self, addr: &str, token: Secret) -> Result<String, FerryError> {
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            ferry_proto::client::Connection::connect(
                addr,
                self.network.tls(),
                Role::Server,
                &self.name,
            ),
        )
        .await
        .map_err(|_| FerryError::new(ErrorKind::Unavailable, format!("{addr} did not answer")))?
        .map_err(|e| {
            FerryError::new(ErrorKind::Unavailable, format!("cannot reach {addr}: {e}"))
        })?;
        let request = ClusterRequest::Join {
            name: self.name.clone(),
            addr: self.advertise.clone(),
            token,
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(120),
            conn.call(Request::Cluster(request)),
        )
        .await
        .map_err(|_| FerryError::new(ErrorKind::Unavailable, "the join did not finish in time"))?
        .map_err(|e| FerryError::new(ErrorKind::Unavailable, e.to_string()))?;
        match answer {
            Response::Cluster(ClusterResponse::RaftReply(bytes)) => {
                let result: Result<String, FerryError> = serde_json::from_slice(&bytes)
                    .map_err(|e| FerryError::internal(e.to_string()))?;
                let message = result?;
                self.events
                    .record(Severity::Info, "membership", message.clone());
                self.verify_links().await?;
                Ok(message)
            }
            Response::Error(e) => Err(e),
            other => Err(FerryError::internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// After a join: the leader's entries reach this server, and this
    /// server reaches every member, or the join is reported as failed
    /// (the membership stands; the message says how to undo it).
    async fn verify_links(&self) -> Result<(), FerryError> {
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            while self
                .contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok();
        let mut problems = Vec::new();
        if !heard {
            problems.push(format!(
                "the leader's entries do not reach {} (does the leader reach {}?)",
                self.name, self.advertise
            ));
        }
        let others = self.members().into_iter().filter(|(id, _)| *id != self.id);
        for (_, member) in others {
            if let Err(e) = self
                .network
                .call(&member, ClusterRequest::RaftStatus, Duration::from_secs(3))
                .await
            {
                problems.push(format!("{} cannot reach {}: {e}", self.name, member.name));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let why = format!(
            "{} was added to the group, but: {}. Fix the addresses (advertise, [[cluster.peers]]) or run `ferry cluster remove {}` on a member",
            self.name,
            problems.join("; "),
            self.name
        );
        self.events
            .record(Severity::Alert, "membership", why.clone());
        Err(FerryError::new(ErrorKind::Unavailable, why))
    }

    /// `ferry cluster leave`: removes this server from the group.
    pub async fn leave(&self) -> Result<String, FerryError> {
        let message = self
            .change_members(MembershipChange::Leave(self.name.clone()))
            .await?;
        self.events
            .record(Severity::Alert, "membership", message.clone());
        Ok(message)
    }

    /// `ferry cluster remove NAME`: removes another member (gone for good,
    /// or wiped: it joins again afterwards).
    pub async fn remove(&self, name: &str) -> Result<String, FerryError> {
        if name == self.name {
            return Err(FerryError::invalid(
                "this is the server asked: use `ferry cluster leave` on it",
            ));
        }
        if !self.is_member(name) {
            return Err(FerryError::new(
                ErrorKind::NotFound,
                format!("{name:?} is not a member of this cluster"),
            ));
        }
        let message = self
            .change_members(MembershipChange::Leave(name.to_owned()))
            .await?
            .replace(
                "; stop it now",
                "; to bring it back, empty its state directory and run `ferry cluster join` on it",
            );
        self.events
            .record(Severity::Alert, "membership", message.clone());
        Ok(message)
    }

    /// Runs a membership change at the leader (here, or forwarded).
    async fn change_members(&self, change: MembershipChange) -> Result<String, FerryError> {
        let leader_id = self.raft.current_leader().await;
        if leader_id == Some(self.id) {
            return self.change_members_here(change).await;
        }
        let m = self.raft.metrics().borrow().clone();
        let leader = leader_id
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
            .ok_or_else(|| no_quorum("no leader"))?;
        let request = match change {
            MembershipChange::Join(member, token) => ClusterRequest::Join {
                name: member.name,
                addr: member.addr,
                token,
            },
            MembershipChange::Leave(name) => ClusterRequest::Leave { name },
        };
        match self
            .network
            .call(&leader, request, Duration::from_secs(120))
            .await
        {
            Ok(ClusterResponse::RaftReply(bytes)) => {
                let result: Result<String, FerryError> = serde_json::from_slice(&bytes)
                    .map_err(|e| FerryError::internal(e.to_string()))?;
                result
            }
            Ok(other) => Err(FerryError::internal(format!("leader answered {other:?}"))),
            Err(CallError::Refused(e)) => Err(e),
            Err(e) => Err(no_quorum(e)),
        }
    }

    /// Before a join changes anything: this leader reaches the new server
    /// at the address it gave (its entries will go there), and the new
    /// server's release can run the cluster's feature level.
    async fn check_joiner(&self, member: &Member) -> Result<(), FerryError> {
        let refused = |kind, why: String| {
            let message = format!(
                "refused the join of {}: {why}; nothing was changed",
                member.name
            );
            self.events
                .record(Severity::Alert, "membership", message.clone());
            FerryError::new(kind, message)
        };
        let status = self.ask_status(member).await.map_err(|e| {
            refused(
                ErrorKind::Unavailable,
                format!(
                    "the leader {} cannot reach it at {} ({e}); check its `advertise` address and that its [[cluster.peers]] name every member",
                    self.name, member.addr
                ),
            )
        })?;
        // Whoever answered must be the server that asked.
        if status.name != member.name {
            return Err(refused(
                ErrorKind::Conflict,
                format!("{} answers as {:?}", member.addr, status.name),
            ));
        }
        let level = release::level_of_member(status.feature_level, &status.version);
        let cluster = self.feature_level();
        if level < cluster {
            return Err(refused(
                ErrorKind::Conflict,
                format!(
                    "it runs {}, which cannot run this cluster's feature level {cluster}; start it with the members' release",
                    status.version
                ),
            ));
        }
        // The other direction: it must reach every member (to forward
        // writes, to stand for election). A release before 0.2 does not
        // know the question; its join is checked after the change instead.
        if level < PROBE_MEMBERS_LEVEL {
            return Ok(());
        }
        let members = self
            .members()
            .into_iter()
            .map(|(_, m)| (m.name, m.addr))
            .collect();
        let problems: Vec<String> = match self
            .network
            .call(
                member,
                ClusterRequest::ProbeMembers { members },
                Duration::from_secs(10),
            )
            .await
        {
            Ok(ClusterResponse::RaftReply(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| refused(ErrorKind::Internal, format!("its answer: {e}")))?,
            Ok(other) => {
                return Err(refused(
                    ErrorKind::Internal,
                    format!("it answered {other:?}"),
                ))
            }
            Err(e) => {
                return Err(refused(
                    ErrorKind::Unavailable,
                    format!("it did not say whether it reaches the members ({e})"),
                ))
            }
        };
        if !problems.is_empty() {
            return Err(refused(
                ErrorKind::Unavailable,
                format!(
                    "{}; check its [[cluster.peers]] addresses and that the members let it in",
                    problems.join("; ")
                ),
            ));
        }
        Ok(())
    }

    /// [`ClusterRequest::ProbeMembers`]: whether this server reaches each
    /// of `members`; the problems found. An answer, even a refusal (this
    /// server is no member yet), shows the member is reachable.
    async fn probe_members(&self, members: Vec<(String, String)>) -> Vec<String> {
        let probes = members
            .into_iter()
            .filter(|(name, _)| *name != self.name)
            .map(|(name, addr)| async move {
                let member = Member {
                    name: name.clone(),
                    addr: addr.clone(),
                };
                match self
                    .network
                    .call(&member, ClusterRequest::RaftStatus, Duration::from_secs(3))
                    .await
                {
                    Ok(_) | Err(CallError::Refused(_)) => None,
                    Err(e) => Some(format!("{} cannot reach {name} at {addr} ({e})", self.name)),
                }
            });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn change_members_here(&self, change: MembershipChange) -> Result<String, FerryError> {
        let failed = |e: &dyn std::fmt::Display| {
            FerryError::new(
                ErrorKind::Conflict,
                format!("membership change failed: {e}"),
            )
        };
        match change {
            MembershipChange::Join(member, token) => {
                let expected = self
                    .store
                    .setting(JOIN_TOKEN_SHA256)
                    .map_err(FerryError::from)?
                    .ok_or_else(|| {
                        FerryError::new(ErrorKind::AuthFailed, "this cluster has no join token")
                    })?;
                let presented = hex::encode(sha2::Sha256::digest(token.expose().as_bytes()));
                if presented != expected {
                    self.events.record(
                        Severity::Alert,
                        "membership",
                        format!("refused a join from {:?}: wrong token", member.name),
                    );
                    return Err(FerryError::new(ErrorKind::AuthFailed, "wrong join token"));
                }
                self.check_joiner(&member).await?;
                let id = node_id_of(&member.name);
                let name = member.name.clone();
                self.network.forget(id);
                self.raft
                    .add_learner(id, member, true)
                    .await
                    .map_err(|e| failed(&e))?;
                self.raft
                    .change_membership(
                        ChangeMembers::AddVoterIds([id].into_iter().collect()),
                        false,
                    )
                    .await
                    .map_err(|e| failed(&e))?;
                let message = format!("{name} joined the cluster");
                self.events
                    .record(Severity::Info, "membership", message.clone());
                Ok(message)
            }
            MembershipChange::Leave(name) => {
                let id = node_id_of(&name);
                self.raft
                    .change_membership(
                        ChangeMembers::RemoveVoters([id].into_iter().collect()),
                        false,
                    )
                    .await
                    .map_err(|e| failed(&e))?;
                self.network.forget(id);
                let message = format!("{name} left the cluster; stop it now");
                self.events
                    .record(Severity::Info, "membership", message.clone());
                Ok(message)
            }
        }
    }

    /// Whether `name` is a member (voter or learner) or a configured peer.
    pub fn knows(&self, name: &str) -> bool {
        self.config.peers.iter().any(|p| p.id == name) || self.is_member(name)
    }

    /// The group's members (voters and learners) now, by Raft id.
    fn members(&self) -> Vec<(NodeId, Member)> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// Whether a member of the group is called `name`.
    fn is_member(&self, name: &str) -> bool {
        self.members().iter().any(|(_, n)| n.name == name)
    }

    /// What the server at `member` says of itself (bounded: 3 s).
    async fn ask_status(&self, member: &Member) -> Result<SelfStatus, String> {
        match self
            .network
            .call(member, ClusterRequest::RaftStatus, Duration::from_secs(3))
            .await
        {
            Ok(ClusterResponse::RaftReply(bytes)) => {
                serde_json::from_slice::<SelfStatus>(&bytes).map_err(|e| e.to_string())
            }
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Refuses `command` if the cluster's feature level is below the one it
    /// needs. The commands of the first level (every one so far) pass
    /// without reading the level.
    fn check_command_level(&self, command: &Command) -> Result<(), FerryError> {
        let needed = command.feature_level();
        if needed <= release::FIRST_FEATURE_LEVEL {
            return Ok(());
        }
        release::check_level(command.name(), needed, self.feature_level())
    }

    /// The cluster's feature level, as applied here ([`release`]).
    pub fn feature_level(&self) -> u32 {
        let stored = self.store.setting(FEATURE_LEVEL_SETTING).ok().flatten();
        release::parse_level(stored.as_deref())
    }

    /// `ferry cluster finalize-upgrade`: raises the feature level as far as
    /// every member's release can run. Refused while a member does not
    /// answer (its release is unknown) or when an older member holds the
    /// level where it is; the message names the members and releases.
    pub async fn finalize_upgrade(&self) -> Result<String, FerryError> {
        let current = self.feature_level();
        let mut levels = Vec::new();
        let mut silent = Vec::new();
        for (id, member) in self.members() {
            let status = if id == self.id {
                Ok(self.self_status())
            } else {
                self.ask_status(&member).await
            };
            match status {
                Ok(s) => levels.push((
                    member.name,
                    release::level_of_member(s.feature_level, &s.version),
                    s.version,
                )),
                Err(e) => silent.push(format!("{} ({e})", member.name)),
            }
        }
        if !silent.is_empty() {
            return Err(FerryError::new(
                ErrorKind::Unavailable,
                format!(
                    "the feature level stays {current}: every member must say its release, and {} did not answer",
                    silent.join(", ")
                ),
            ));
        }
        let target = levels.iter().map(|(_, l, _)| *l).min().unwrap_or(current);
        let releases = levels
            .iter()
            .map(|(name, level, version)| format!("{name} runs {version} (level {level})"))
            .collect::<Vec<_>>()
            .join(", ");
        if target <= current {
            let behind: Vec<&str> = levels
                .iter()
                .filter(|(_, l, _)| *l < FEATURE_LEVEL)
                .map(|(name, _, _)| name.as_str())
                .collect();
            if behind.is_empty() {
                return Ok(format!(
                    "the cluster runs at feature level {current} already ({releases})"
                ));
            }
            return Err(FerryError::new(
                ErrorKind::Conflict,
                format!(
                    "the feature level stays {current}: {} must be upgraded first ({releases})",
                    behind.join(", ")
                ),
            ));
        }
        self.write(Command::SetSetting {
            key: FEATURE_LEVEL_SETTING.into(),
            value: target.to_string(),
        })
        .await?;
        let message = format!("feature level raised from {current} to {target} ({releases})");
        self.events
            .record(Severity::Info, "upgrade", message.clone());
        Ok(message)
    }

    /// Proposes `command` (here if this is the leader, else at the leader)
    /// and waits until it is committed and applied here, so that what the
    /// caller reads from its own store next includes it.
    pub async fn write(&self, command: Command) -> Result<Outcome, FerryError> {
        self.check_command_level(&command)?;
        let proposal = Proposal {
            format: COMMAND_FORMAT_VERSION,
            command,
        };
        // Long enough for an election or two (at most two election
        // timeouts each) after a leader died.
        let deadline = Duration::from_millis(self.config.election_timeout_ms * 8);
        // A transfer-log row is inserted once by its id, and a keyed change
        // once by its key: sending either again when an answer was lost
        // cannot make a second change.
        let idempotent = matches!(
            proposal.command,
            Command::RecordTransfer(_) | Command::Keyed { .. }
        );
        // Whether an attempt may have reached the log: if the deadline
        // passes then, the change may still be made.
        let in_flight = std::sync::atomic::AtomicBool::new(false);
        let attempts = async {
            loop {
                in_flight.store(true, std::sync::atomic::Ordering::Relaxed);
                let attempt = self.propose_once(proposal.clone()).await;
                if matches!(attempt, Err(Attempt::NotDelivered(_))) {
                    in_flight.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                match attempt {
                    Ok((store_answer, index)) => {
                        self.wait_applied(index).await;
                        return store_answer;
                    }
                    // Not delivered anywhere (no leader yet, or the leader we
                    // knew is gone): safe to try again once one is elected.
                    Err(Attempt::NotDelivered(why)) => {
                        tracing::debug!(%why, "proposal not delivered; trying again");
                        tokio::time::sleep(Duration::from_millis(
                            self.config.heartbeat_ms().max(20),
                        ))
                        .await;
                    }
                    Err(Attempt::Lost(why)) if idempotent => {
                        tracing::debug!(%why, "answer lost; sending the idempotent proposal again");
                        tokio::time::sleep(Duration::from_millis(
                            self.config.heartbeat_ms().max(20),
                        ))
                        .await;
                    }
                    Err(Attempt::Lost(why)) => return Err(outcome_unknown(why)),
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(deadline, attempts).await {
            Ok(result) => result,
            Err(_) if in_flight.load(std::sync::atomic::Ordering::Relaxed) => Err(outcome_unknown(
                "it was proposed, but no majority confirmed it in time",
            )),
            Err(_) => Err(no_quorum("no majority answered in time")),
        }
    }

    /// Waits (a bounded time) until this server has applied the entry at
    /// `index`; a write made through the leader is committed there first.
    async fn wait_applied(&self, index: Option<u64>) {
        let Some(index) = index else { return };
        let bound = Duration::from_millis(self.config.election_timeout_ms * 4);
        if let Err(e) = self
            .raft
            .wait(Some(bound))
            .applied_index_at_least(Some(index), "own write applied")
            .await
        {
            tracing::warn!(index, error = %e, "a committed write was not applied here in time");
        }
    }

    /// One attempt: `Ok` is the store's answer to the committed command,
    /// with the entry's log index.
    async fn propose_once(&self, proposal: Proposal) -> Result<Answered, Attempt> {
        match self.raft.client_write(proposal.clone()).await {
            Ok(response) => Ok((response.data.result, Some(response.log_id.index))),
            Err(e) => match e.forward_to_leader() {
                Some(forward) => match forward.leader_node.clone() {
                    Some(leader) if leader.name != self.name => {
                        self.forward(&leader, &proposal).await
                    }
                    _ => Err(Attempt::NotDelivered("no leader".into())),
                },
                None => match e {
                    RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                        Err(Attempt::Failed(FerryError::invalid(e.to_string())))
                    }
                    other => Err(Attempt::Failed(no_quorum(other))),
                },
            },
        }
    }

    async fn forward(&self, leader: &Member, proposal: &Proposal) -> Result<Answered, Attempt> {
        let bytes = serde_json::to_vec(proposal)
            .map_err(|e| Attempt::Failed(FerryError::internal(e.to_string())))?;
        let ttl = Duration::from_millis(self.config.election_timeout_ms * 4);
        match self
            .network
            .call(leader, ClusterRequest::Propose { proposal: bytes }, ttl)
            .await
        {
            Ok(ClusterResponse::RaftReply(bytes)) => {
                match serde_json::from_slice::<Proposed>(&bytes) {
                    Ok(p) => Ok((p.result, p.index)),
                    // A leader of an earlier build answers the result alone.
                    Err(_) => serde_json::from_slice(&bytes)
                        .map(|result| (result, None))
                        .map_err(|e| Attempt::Failed(FerryError::internal(e.to_string()))),
                }
            }
            Ok(other) => Err(Attempt::Failed(FerryError::internal(format!(
                "leader answered {other:?}"
            )))),
            // The leader could not take it (it lost the leadership meanwhile).
            Err(CallError::Refused(e)) if e.kind == ErrorKind::Unavailable => {
                Err(Attempt::NotDelivered(e.message))
            }
            Err(CallError::Refused(e)) => Err(Attempt::Failed(e)),
            Err(CallError::Unreachable(e)) => Err(Attempt::NotDelivered(e)),
            // Sent, but the answer was lost: it may have been committed, so
            // it is sent again only when that is harmless.
            Err(e @ CallError::Broken(_)) => {
                Err(Attempt::Lost(format!("leader {}: {e}", leader.name)))
            }
        }
    }

    /// [`RaftNode::write`] from a blocking thread (the store's callers run
    /// there). Must not be called from an async task.
    pub fn write_blocking(&self, command: Command) -> Result<Outcome, FerryError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| FerryError::internal("no runtime for a cluster write"))?;
        handle.block_on(self.write(command))
    }

    /// Ok when a write made here now would be committed.
    pub fn check_writable(&self) -> Result<(), FerryError> {
        if self.witness {
            return Err(FerryError::new(
                ErrorKind::Unavailable,
                "this server is a witness: it votes and serves nothing",
            ));
        }
        if !self.view().has_leader {
            return Err(FerryError::new(ErrorKind::Unavailable, NO_QUORUM));
        }
        match self.stale_reason() {
            None => Ok(()),
            Some(why) => Err(FerryError::new(ErrorKind::Unavailable, why)),
        }
    }

    /// Ok when this server's store holds every change committed in the
    /// cluster before the call, so a login decided here sees an account
    /// disabled or a key removed through any server. The leader confirms
    /// its leadership with a majority (openraft's linearizable read); a
    /// follower waits, up to `stale_after_ms`, until it has applied its
    /// leader's commit index as last heard (at most a heartbeat old).
    pub async fn check_current(&self) -> Result<(), FerryError> {
        if let Some(why) = self.stale_reason() {
            return Err(FerryError::new(ErrorKind::Unavailable, why));
        }
        let is_leader = self.raft.metrics().borrow().state == ServerState::Leader;
        let wait = Duration::from_millis(self.config.stale_after_ms());
        if is_leader {
            return match tokio::time::timeout(wait, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(no_quorum(e)),
                Err(_) => Err(no_quorum("no majority confirmed the leader in time")),
            };
        }
        let commit = self
            .contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|c| c.commit)
            .unwrap_or(0);
        match self
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(commit), "caught up for a login")
            .await
        {
            Ok(_) => Ok(()),
            Err(_) => {
                let applied = self
                    .raft
                    .metrics()
                    .borrow()
                    .last_applied
                    .map(|l| l.index)
                    .unwrap_or(0);
                Err(FerryError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{} is behind its leader (applied {applied} of {commit} committed entries) and catching up",
                        self.name
                    ),
                ))
            }
        }
    }

    /// Why this server must not take logins or writes now, if so: a
    /// witness; a leader no majority has answered lately; a follower that
    /// has not heard its leader within `stale_after_ms`, or has not had
    /// applied the leader's commit index within it (behind, or receiving
    /// a snapshot). Its store may miss a change made
    /// elsewhere (a disabled account, a removed key).
    pub fn stale_reason(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        self.staleness(&m).map(|s| s.describe(&self.name))
    }

    /// Records that this follower has applied its leader's commit index
    /// as last heard, if it has.
    fn note_caught_up(&self, m: &openraft::RaftMetrics<NodeId, Member>) {
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let mut contact = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = contact.as_mut() {
            if applied >= c.commit {
                c.caught_up = Some(std::time::Instant::now());
            }
        }
    }

    fn staleness(&self, m: &openraft::RaftMetrics<NodeId, Member>) -> Option<Staleness> {
        if self.witness {
            return Some(Staleness::Witness);
        }
        if m.state == ServerState::Leader {
            return match m.millis_since_quorum_ack {
                Some(ms) if ms < self.lease_ms() => None,
                _ => Some(Staleness::LeaderAlone),
            };
        }
        let contact = *self.contact.lock().unwrap_or_else(|p| p.into_inner());
        let Some(contact) = contact else {
            return Some(Staleness::NeverHeard);
        };
        let silent = u64::try_from(contact.at.elapsed().as_millis()).unwrap_or(u64::MAX);
        if silent > self.config.stale_after_ms() {
            return Some(Staleness::Silent(silent));
        }
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let current = contact.caught_up.is_some_and(|at| {
            u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
                <= self.config.stale_after_ms()
        });
        (!current).then_some(Staleness::Behind(contact.commit.saturating_sub(applied)))
    }

    /// Answers a Raft RPC or a forwarded proposal from another member.
    pub async fn handle(
        &self,
        request: ClusterRequest,
        from: &str,
    ) -> Result<ClusterResponse, FerryError> {
        // A server that is not (yet) a member may only ask to join.
        if !matches!(request, ClusterRequest::Join { .. }) && !self.knows(from) {
            return Err(FerryError::new(
                ErrorKind::PermissionDenied,
                format!("{from:?} is not a member of this cluster"),
            ));
        }
        let decode = |e: serde_json::Error| FerryError::invalid(format!("bad Raft payload: {e}"));
        let encode = |v: &dyn erased::Encode| v.encode();
        if let ClusterRequest::Events { limit } = request {
            return Ok(ClusterResponse::Events(encode(
                &self.events.recent(limit as usize),
            )?));
        }
        let bytes = match request {
            ClusterRequest::Raft {
                rpc: RaftRpc::AppendEntries,
                payload,
            } => {
                let req: AppendEntriesRequest<TypeConfig> =
                    serde_json::from_slice(&payload).map_err(decode)?;
                let commit = req.leader_commit.map(|l| l.index).unwrap_or(0);
                let result = self.raft.append_entries(req).await;
                if matches!(
                    result,
                    Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_))
                ) {
                    let mut contact = self.contact.lock().unwrap_or_else(|p| p.into_inner());
                    let caught_up = contact.and_then(|c| c.caught_up);
                    *contact = Some(LeaderContact {
                        at: std::time::Instant::now(),
                        commit,
                        caught_up,
                    });
                }
                self.note_caught_up(&self.raft.metrics().borrow());
                encode(&result)
            }
            ClusterRequest::Raft {
                rpc: RaftRpc::Vote,
                payload,
            } => {
                let req: VoteRequest<NodeId> = serde_json::from_slice(&payload).map_err(decode)?;
                encode(&self.raft.vote(req).await)
            }
            ClusterRequest::Raft {
                rpc: RaftRpc::InstallSnapshot,
                payload,
            } => {
                let req: InstallSnapshotRequest<TypeConfig> =
                    serde_json::from_slice(&payload).map_err(decode)?;
                let result: Result<_, RaftError<NodeId, InstallSnapshotError>> =
                    self.raft.install_snapshot(req).await;
                encode(&result)
            }
            ClusterRequest::Raft {
                rpc: RaftRpc::InstallSnapshotChunk,
                payload,
            } => {
                let req = super::network::decode_chunk(&payload).map_err(FerryError::invalid)?;
                let result: Result<_, RaftError<NodeId, InstallSnapshotError>> =
                    self.raft.install_snapshot(req).await;
                encode(&result)
            }
            ClusterRequest::Propose { proposal } => {
                let proposal: Proposal = serde_json::from_slice(&proposal).map_err(decode)?;
                if proposal.format > COMMAND_FORMAT_VERSION {
                    return Err(FerryError::new(
                        ErrorKind::Conflict,
                        format!(
                            "command format {} is newer than this server's {COMMAND_FORMAT_VERSION}",
                            proposal.format
                        ),
                    ));
                }
                self.check_command_level(&proposal.command)?;
                let answer = match self.raft.client_write(proposal).await {
                    Ok(r) => Proposed {
                        result: r.data.result,
                        index: Some(r.log_id.index),
                    },
                    Err(e) => Proposed {
                        result: Err(no_quorum(e)),
                        index: None,
                    },
                };
                encode(&answer)
            }
            ClusterRequest::RaftStatus => encode(&self.self_status()),
            ClusterRequest::ProbeMembers { members } => encode(&self.probe_members(members).await),
            ClusterRequest::Join { name, addr, token } => {
                if name != from {
                    return Err(FerryError::new(
                        ErrorKind::PermissionDenied,
                        format!("{from:?} cannot ask for {name:?} to join"),
                    ));
                }
                let result = self
                    .change_members(MembershipChange::Join(Member { name, addr }, token))
                    .await;
                encode(&result)
            }
            ClusterRequest::Leave { name } => {
                let result = self.change_members(MembershipChange::Leave(name)).await;
                encode(&result)
            }
            _ => return Err(FerryError::invalid("not a Raft request")),
        }?;
        Ok(ClusterResponse::RaftReply(bytes))
    }

    /// `ferry cluster events`: this server's events and every other
    /// member's, merged by time (a member that does not answer within 2 s
    /// is named in an event instead).
    pub async fn cluster_events(&self, limit: usize) -> Vec<crate::events::ClusterEvent> {
        let others = self.members().into_iter().filter(|(id, _)| *id != self.id);
        let asks = others.map(|(_, member)| async move {
            let request = ClusterRequest::Events {
                limit: limit as u32,
            };
            let answer = match self
                .network
                .call(&member, request, Duration::from_secs(2))
                .await
            {
                Ok(ClusterResponse::Events(bytes)) => {
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
                }
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
            (member.name.clone(), answer)
        });
        let others = futures::future::join_all(asks).await;
        crate::events::merge(self.events.recent(limit), others, &self.name, limit)
    }

    fn self_status(&self) -> SelfStatus {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.name.clone())
        });
        SelfStatus {
            name: self.name.clone(),
            role: role_name(m.state).into(),
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            leader,
            version: crate::SOFTWARE.into(),
            feature_level: Some(FEATURE_LEVEL),
            primary: self.view().primary,
            workers: self.runner.statuses(),
        }
    }

    /// `ferry cluster status` as seen from here: every member's own view
    /// (asked over the network), and the leader's replication lag.
    pub async fn status(&self) -> serde_json::Value {
        let m = self.raft.metrics().borrow().clone();
        let members: Vec<(NodeId, Member)> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let last = m.last_log_index.unwrap_or(0);
        let mut rows = Vec::new();
        for (id, member) in members {
            let mut row = MemberStatus {
                name: member.name.clone(),
                address: member.addr.clone(),
                role: "unknown".into(),
                term: None,
                last_log_index: None,
                applied_index: None,
                lag: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id))
                    .map(|matched| last.saturating_sub(matched.map(|l| l.index).unwrap_or(0))),
                version: None,
                supports_level: None,
                primary: None,
                workers: None,
                last_contact_ms: if id == self.id {
                    Some(0)
                } else if Some(id) == m.current_leader {
                    // A follower hears its leader; it seldom calls it.
                    let heard = self
                        .contact
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .map(|c| u64::try_from(c.at.elapsed().as_millis()).unwrap_or(u64::MAX));
                    heard.or_else(|| self.network.last_contact_ms(&member.name))
                } else {
                    self.network.last_contact_ms(&member.name)
                },
                error: None,
            };
            let own = if id == self.id {
                Ok(self.self_status())
            } else {
                self.ask_status(&member).await
            };
            match own {
                Ok(s) => {
                    row.role = s.role;
                    row.term = Some(s.term);
                    row.last_log_index = s.last_log_index;
                    row.applied_index = s.applied_index;
                    row.supports_level =
                        Some(release::level_of_member(s.feature_level, &s.version));
                    row.version = Some(s.version);
                    row.primary = Some(s.primary);
                    row.workers = Some(s.workers);
                }
                Err(e) => row.error = Some(e),
            }
            rows.push(row);
        }
        serde_json::json!({
            "mode": "active-active",
            "node": self.name,
            "term": m.current_term,
            "leader": m.current_leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.name.clone())),
            "writable": self.check_writable().is_ok(),
            "feature_level": self.feature_level(),
            "log_entries_kept": self.log.len(),
            "members": rows,
            "events": self.events.recent(20),
        })
    }
}

/// JSON encoding of the answers, behind one object-safe call.
mod erased {
    use ferry_core::FerryError;

    pub trait Encode {
        fn encode(&self) -> Result<Vec<u8>, FerryError>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Vec<u8>, FerryError> {
            serde_json::to_vec(self).map_err(|e| FerryError::internal(e.to_string()))
        }
    }
}
