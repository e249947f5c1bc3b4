//! One server's part in an active/passive cluster: which server is active,
//! heartbeats, votes and promotion.
//!
//! Epochs order the active servers: a promotion starts a new epoch, a
//! server votes at most once per epoch (the vote is on disk before it is
//! sent), and a server that hears of a newer epoch steps down. A promotion
//! needs votes from a majority of servers and witnesses, and a voter refuses
//! while it still hears the active server's heartbeat, so a cut link or a
//! paused process never yields two active servers: the active server itself
//! stops serving when it has not heard from a majority for half the
//! failover time, before anyone may be promoted in its place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_core::sync::{HistoryMark, MergeCounts};
use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::cluster::{ClusterRequest, ClusterResponse, NodeRole, PeerStatus};
use ferry_proto::message::{Request, Response, Role};
use ferry_store::Store;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{ClusterConfig, PeerConfig};
use crate::events::{ClusterEvent, EventLog, Severity};
use crate::state::{NodeState, StateFile};

/// What this server is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    /// Active, standby or witness.
    pub role: NodeRole,
    /// Serving sessions and taking writes.
    pub ready: bool,
    /// The epoch.
    pub epoch: u64,
}

/// Everything a cluster node needs from its server.
pub struct NodeOptions {
    /// The `[cluster]` settings.
    pub config: ClusterConfig,
    /// This server's id.
    pub node_id: String,
    /// Votes and keeps state only; never active.
    pub witness: bool,
    /// The server's store.
    pub store: Arc<Store>,
    /// Where `cluster.json`, the event log and sync backups live.
    pub state_dir: PathBuf,
    /// The directory of the server's config file.
    pub config_dir: PathBuf,
    /// The config file's name in it (never synced).
    pub own_config: String,
    /// TLS to reach peers (the internal mutual-TLS client config).
    pub tls: Arc<rustls::ClientConfig>,
    /// Identifies the key sealing partner secrets (a hash of it).
    pub secret_key_id: String,
    /// Called after history rows from a peer were merged (wake the workers).
    pub on_merged: Box<dyn Fn(&MergeCounts) + Send + Sync>,
    /// Runs the node's loops; its status lists every worker of the server.
    pub runner: ferry_worker::Runner,
}

pub(crate) struct Peer {
    pub(crate) config: PeerConfig,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    pub(crate) contact: Mutex<Contact>,
}

/// What this node knows of a peer's reachability.
#[derive(Debug, Default)]
pub(crate) struct Contact {
    pub(crate) last_ok: Option<Instant>,
    pub(crate) last_error: Option<String>,
    pub(crate) alive: Option<bool>,
    /// How far this node merged the peer's history.
    pub(crate) history: HistoryMark,
}

#[derive(Debug)]
struct Inner {
    state: NodeState,
    role: NodeRole,
    ready: bool,
    /// When the active server was last heard (standby, witness).
    last_heartbeat: Option<Instant>,
    /// When each peer last acknowledged our heartbeat (active).
    acks: HashMap<String, Instant>,
    /// No election before this instant.
    quiet_until: Instant,
    /// A promotion or step-down is being worked on.
    changing: bool,
    /// The epoch this server became active in by a hand-over: the server
    /// active before granted its vote (stepping down first) and its
    /// history was merged here to the end afterwards, so no slot of its
    /// lease is left to it ([`Node::takeover_fence`] is waived).
    handed_over: Option<u64>,
}

/// A server's membership in an active/passive cluster.
pub struct Node {
    pub(crate) config: ClusterConfig,
    pub(crate) node_id: String,
    pub(crate) witness: bool,
    pub(crate) store: Arc<Store>,
    pub(crate) state_dir: PathBuf,
    pub(crate) config_dir: PathBuf,
    pub(crate) own_config: String,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) secret_key_id: String,
    pub(crate) on_merged: Box<dyn Fn(&MergeCounts) + Send + Sync>,
    pub(crate) runner: ferry_worker::Runner,
    pub(crate) events: EventLog,
    pub(crate) peers: Vec<Peer>,
    state_file: StateFile,
    inner: Mutex<Inner>,
    view: watch::Sender<RoleView>,
    /// What the role asks of the server's workers (from `view`).
    duties: watch::Receiver<crate::mode::Duties>,
    /// One sync at a time, sent or received.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("view", &*self.view.borrow())
            .finish_non_exhaustive()
    }
}

/// A peer's row in `ferry cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// Node id.
    pub id: String,
    /// Internal address.
    pub address: String,
    /// A witness?
    pub witness: bool,
    /// `alive` or `failed` (as seen from the node asked).
    pub health: String,
    /// Milliseconds since it last answered.
    pub last_contact_ms: Option<u64>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// What it says of itself.
    pub status: Option<PeerStatus>,
    /// Tables and files that differ from this (active) server.
    pub out_of_date: Vec<String>,
}

/// `ferry cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// `active-passive`.
    pub mode: String,
    /// The node asked.
    pub this: PeerStatus,
    /// Votes needed for a promotion.
    pub majority: usize,
    /// The other nodes.
    pub peers: Vec<PeerReport>,
    /// Recent cluster events.
    pub events: Vec<ClusterEvent>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(message: impl Into<String>) -> FerryError {
    FerryError::new(ErrorKind::Unavailable, message)
}

impl Node {
    /// Loads the node's state and starts its tasks (heartbeats, failure
    /// detection, history merge). A server that was active before a restart
    /// comes back as standby if a peer knows a newer epoch.
    pub async fn start(options: NodeOptions) -> Result<Arc<Node>, crate::ClusterError> {
        let state_file = StateFile::new(&options.state_dir);
        let state = state_file.load()?;
        let events = EventLog::open(&options.state_dir, &options.node_id).with_webhook(
            options.config.alert_webhook.as_deref(),
            options.config.alert_webhook_ca.as_deref(),
        )?;
        let role = if options.witness {
            NodeRole::Witness
        } else {
            NodeRole::Standby
        };
        let was_active = !options.witness && state.active.as_deref() == Some(&options.node_id);
        let peers = options
            .config
            .peers
            .iter()
            .map(|p| Peer {
                config: p.clone(),
                conn: tokio::sync::Mutex::new(None),
                contact: Mutex::new(Contact::default()),
            })
            .collect();
        let epoch = state.epoch;
        let failover = Duration::from_millis(options.config.failover_after_ms);
        let (duties_tx, duties) = watch::channel(crate::mode::Duties {
            primary: None,
            serving: false,
            wake: false,
        });
        let node = Arc::new(Node {
            config: options.config,
            node_id: options.node_id,
            witness: options.witness,
            store: options.store,
            state_dir: options.state_dir,
            config_dir: options.config_dir,
            own_config: options.own_config,
            tls: options.tls,
            secret_key_id: options.secret_key_id,
            on_merged: options.on_merged,
            runner: options.runner,
            events,
            peers,
            state_file,
            inner: Mutex::new(Inner {
                state,
                role,
                ready: false,
                last_heartbeat: None,
                acks: HashMap::new(),
                quiet_until: Instant::now() + failover,
                changing: false,
                handed_over: None,
            }),
            view: watch::Sender::new(RoleView {
                role,
                ready: false,
                epoch,
            }),
            duties,
            sync_lock: tokio::sync::Mutex::new(()),
        });
        node.events.record(
            Severity::Info,
            "role",
            format!(
                "started as {} in epoch {epoch}{}",
                if node.witness { "witness" } else { "standby" },
                if was_active {
                    " (was active before; checking peers)"
                } else {
                    ""
                }
            ),
        );
        if was_active {
            node.resume_active(epoch).await;
        }
        let heartbeat = node.clone();
        node.runner.spawn("cluster-heartbeat", |w| async move {
            w.busy("heartbeats to the peers");
            w.until_stopped(heartbeat.heartbeat_loop()).await;
        });
        let watchdog = node.clone();
        node.runner.spawn("cluster-watchdog", |w| async move {
            w.busy("watching the active server");
            w.until_stopped(watchdog.watchdog_loop()).await;
        });
        if !node.witness {
            node.clone().start_history_pulls();
        }
        // The active server, once ready, runs the primary-only duties (with
        // the epoch as term), serves sessions and runs queue workers.
        crate::mode::follow_view(&node.runner, node.subscribe(), duties_tx, |v| {
            let active = v.role == NodeRole::Active && v.ready;
            crate::mode::Duties {
                primary: active.then_some(v.epoch),
                serving: active,
                wake: active,
            }
        });
        Ok(node)
    }

    /// What the role asks of the server's workers, kept current.
    pub(crate) fn duties_watch(&self) -> watch::Receiver<crate::mode::Duties> {
        self.duties.clone()
    }

    /// Follows role changes.
    pub fn subscribe(&self) -> watch::Receiver<RoleView> {
        self.view.subscribe()
    }

    /// The role now.
    pub fn view(&self) -> RoleView {
        *self.view.borrow()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// How long after becoming active this server leaves schedule slots to
    /// the server that was active before: that one serves until its lease
    /// runs out (at most [`Node::lease`] after the majority stopped
    /// answering it, which is before this server was elected), and a slot
    /// it fired in that time is in its own store, not yet in this one. A
    /// heartbeat on top covers the two servers' clocks and the time the
    /// vote took to arrive.
    pub fn takeover_fence(&self) -> Duration {
        self.lease() + self.heartbeat()
    }

    /// Whether this server became active in `epoch` by a hand-over (see
    /// `Inner::handed_over`): then no slot is left to the server before.
    pub fn handed_over_in(&self, epoch: u64) -> bool {
        lock(&self.inner).handed_over == Some(epoch)
    }

    /// Ok when this server may change shared state; otherwise the error
    /// names the active server.
    pub fn check_writable(&self) -> Result<(), FerryError> {
        let inner = lock(&self.inner);
        // The lease is checked here, not only on the watchdog's tick: a
        // process that was paused past its lease must not take one more
        // write before the tick notices.
        let serving = inner.ready && !inner.changing && self.lease_held(&inner);
        match (inner.role, serving) {
            (NodeRole::Active, true) => Ok(()),
            (NodeRole::Active, false) if inner.changing => Err(unavailable(
                "this server is becoming active (taking in the other servers' history)",
            )),
            (NodeRole::Active, false) => Err(unavailable(
                "this server is active but cannot reach a majority of the cluster: read-only",
            )),
            (NodeRole::Witness, _) => Err(unavailable("this server is a witness: it serves nothing")),
            (NodeRole::Standby, _) => Err(unavailable(match &inner.state.active {
                Some(active) => format!(
                    "this server is a standby (active server: {active}); make changes there and run `ferry sync`"
                ),
                None => "this server is a standby and no server is active".to_owned(),
            })),
        }
    }

    /// Why this server does not serve sessions now, or `None` if it does.
    pub fn not_serving_reason(&self) -> Option<String> {
        self.check_writable().err().map(|e| e.message)
    }

    /// The recent cluster events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<ClusterEvent> {
        self.events.recent(limit)
    }

    /// `ferry cluster events`: this server's events and every peer's
    /// (witnesses included), merged by time; a peer that does not answer
    /// within 2 s is named in an event instead.
    pub async fn cluster_events(&self, limit: usize) -> Vec<ClusterEvent> {
        let asks = self.peers.iter().map(|peer| async move {
            let request = ClusterRequest::Events {
                limit: limit as u32,
            };
            let answer = match self.call(peer, request, Duration::from_secs(2)).await {
                Ok(ClusterResponse::Events(bytes)) => {
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
                }
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e),
            };
            (peer.config.id.clone(), answer)
        });
        let others = futures::future::join_all(asks).await;
        crate::events::merge(self.events.recent(limit), others, &self.node_id, limit)
    }

    /// The last sync applied here.
    pub fn last_sync(&self) -> Option<ferry_proto::cluster::SyncRecord> {
        lock(&self.inner).state.last_sync.clone()
    }

    pub(crate) fn state(&self) -> NodeState {
        lock(&self.inner).state.clone()
    }

    pub(crate) fn update_state(&self, change: impl FnOnce(&mut NodeState)) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        let mut next = inner.state.clone();
        change(&mut next);
        self.state_file
            .save(&next)
            .map_err(|e| format!("cannot save the cluster state: {e}"))?;
        inner.state = next;
        Ok(())
    }

    fn publish(&self, inner: &Inner) {
        let view = RoleView {
            role: inner.role,
            ready: inner.ready,
            epoch: inner.state.epoch,
        };
        self.view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_ms())
    }

    pub(crate) fn failover(&self) -> Duration {
        Duration::from_millis(self.config.failover_after_ms)
    }

    /// The active server's lease: how long it serves without hearing from a majority.
    fn lease(&self) -> Duration {
        self.failover() / 2
    }

    /// How much longer than the failover time this standby waits before it
    /// asks to become active: a heartbeat period for each point of priority
    /// below 100 (at most 20), so the preferred standby asks first.
    fn stagger(&self) -> Duration {
        let steps = 100u32.saturating_sub(self.config.priority).min(20);
        self.heartbeat() * steps
    }

    // ---- talking to peers -------------------------------------------------

    /// A new connection to `peer`, checked to be the node configured there.
    pub(crate) async fn connect(
        &self,
        peer: &Peer,
        deadline: Duration,
    ) -> Result<Arc<Connection>, String> {
        let conn = tokio::time::timeout(
            deadline,
            Connection::connect(
                &peer.config.address,
                self.tls.clone(),
                Role::Server,
                &self.node_id,
            ),
        )
        .await
        .map_err(|_| {
            format!(
                "{} ({}) did not answer",
                peer.config.id, peer.config.address
            )
        })?
        .map_err(|e| format!("{} is unreachable: {e}", peer.config.id))?;
        if conn.peer_node_id() != peer.config.id {
            return Err(format!(
                "{} answers as {:?}, expected {:?}",
                peer.config.address,
                conn.peer_node_id(),
                peer.config.id
            ));
        }
        Ok(conn)
    }

    /// The cached connection to `peer` (heartbeats, votes, status, history).
    async fn connection(&self, peer: &Peer) -> Result<Arc<Connection>, String> {
        let mut slot = peer.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let conn = self.connect(peer, self.failover()).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// One request to a peer, with a deadline; records reachability.
    pub(crate) async fn call(
        &self,
        peer: &Peer,
        request: ClusterRequest,
        deadline: Duration,
    ) -> Result<ClusterResponse, String> {
        let result = tokio::time::timeout(deadline, async {
            let conn = self.connection(peer).await?;
            match conn.call(Request::Cluster(request)).await {
                Ok(Response::Cluster(r)) => Ok(r),
                Ok(Response::Error(e)) => Err(format!("{}: {}", peer.config.id, e.message)),
                Ok(other) => Err(format!("{}: unexpected answer {other:?}", peer.config.id)),
                Err(e) => Err(format!("{}: {e}", peer.config.id)),
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("{}: no answer in time", peer.config.id)));
        self.note_contact(peer, &result);
        result
    }

    fn note_contact<T>(&self, peer: &Peer, result: &Result<T, String>) {
        let became = {
            let mut contact = lock(&peer.contact);
            match result {
                Ok(_) => {
                    contact.last_ok = Some(Instant::now());
                    contact.last_error = None;
                }
                Err(e) => contact.last_error = Some(e.clone()),
            }
            // A peer is failed after a failover time without an answer.
            let alive = contact
                .last_ok
                .is_some_and(|t| t.elapsed() < self.failover());
            let became = (contact.alive != Some(alive)).then_some(alive);
            contact.alive = Some(alive);
            became
        };
        match became {
            Some(true) => self.events.record(
                Severity::Info,
                "peer",
                format!("{} is alive", peer.config.id),
            ),
            Some(false) => self.events.record(
                Severity::Alert,
                "peer",
                format!(
                    "{} failed: {}",
                    peer.config.id,
                    lock(&peer.contact).last_error.clone().unwrap_or_default()
                ),
            ),
            None => {}
        }
    }

    // ---- the active side -------------------------------------------------

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (role, epoch) = {
                let inner = lock(&self.inner);
                (inner.role, inner.state.epoch)
            };
            if role != NodeRole::Active {
                continue;
            }
            let calls = self.peers.iter().map(|peer| {
                let node = self.clone();
                async move {
                    let answer = node
                        .call(
                            peer,
                            ClusterRequest::Heartbeat {
                                epoch,
                                node: node.node_id.clone(),
                            },
                            node.heartbeat() * 2,
                        )
                        .await;
                    (peer.config.id.clone(), answer)
                }
            });
            for (peer, answer) in futures::future::join_all(calls).await {
                if let Ok(ClusterResponse::HeartbeatAck { epoch: theirs, .. }) = answer {
                    if theirs > epoch {
                        self.step_down(
                            theirs,
                            None,
                            &format!("{peer} knows the newer epoch {theirs}"),
                        );
                        break;
                    }
                    lock(&self.inner).acks.insert(peer, Instant::now());
                }
            }
            self.check_lease();
        }
    }

    /// Whether a majority (this server included) acknowledged a heartbeat
    /// within the lease; always true without automatic promotion.
    fn lease_held(&self, inner: &Inner) -> bool {
        if !self.config.auto_promote {
            return true;
        }
        let lease = self.lease();
        let heard = inner.acks.values().filter(|t| t.elapsed() < lease).count() + 1;
        heard >= self.config.majority()
    }

    /// An active server serves only while a majority heard it recently.
    fn check_lease(&self) {
        let mut inner = lock(&self.inner);
        if inner.role != NodeRole::Active || inner.changing {
            return;
        }
        let ready = self.lease_held(&inner);
        if ready != inner.ready {
            inner.ready = ready;
            self.publish(&inner);
            drop(inner);
            if ready {
                self.events.record(
                    Severity::Info,
                    "majority",
                    "a majority of the cluster hears this server: serving".into(),
                );
            } else {
                self.events.record(
                    Severity::Alert,
                    "majority",
                    "cannot reach a majority of the cluster: stopped serving until it can".into(),
                );
            }
        }
    }

    fn step_down(&self, epoch: u64, active: Option<String>, why: &str) {
        let was = {
            let mut inner = lock(&self.inner);
            let was = inner.role;
            if inner.role == NodeRole::Active {
                inner.role = NodeRole::Standby;
            }
            inner.ready = false;
            inner.acks.clear();
            inner.last_heartbeat = active.as_ref().map(|_| Instant::now());
            // Whoever deposed this server gets a failover period to take
            // over before this one stands again.
            inner.quiet_until = Instant::now() + self.failover();
            self.publish(&inner);
            was
        };
        let saved = self.update_state(|s| {
            if epoch > s.epoch || active.is_some() {
                s.epoch = s.epoch.max(epoch);
                s.active = active.clone();
            }
        });
        if let Err(e) = saved {
            tracing::error!(error = %e, "cannot record stepping down");
        }
        {
            let inner = lock(&self.inner);
            self.publish(&inner);
        }
        if was == NodeRole::Active {
            self.events.record(
                Severity::Alert,
                "role",
                format!("stepped down to standby: {why}"),
            );
        }
    }

    /// A server that was active before its restart: active again only if no
    /// peer knows a newer epoch.
    async fn resume_active(self: &Arc<Self>, epoch: u64) {
        let probes = self
            .peers
            .iter()
            .map(|peer| self.call(peer, ClusterRequest::Status, self.failover() / 2));
        let answers = futures::future::join_all(probes).await;
        let newer = answers.iter().find_map(|a| match a {
            Ok(ClusterResponse::Status(s)) if s.epoch > epoch => Some(s.clone()),
            _ => None,
        });
        if let Some(s) = newer {
            self.step_down(
                s.epoch,
                s.active.clone(),
                &format!("{} is in the newer epoch {}", s.node, s.epoch),
            );
            self.events.record(
                Severity::Info,
                "role",
                format!(
                    "stays standby: epoch {} began while it was away (active: {})",
                    s.epoch,
                    s.active.as_deref().unwrap_or("none")
                ),
            );
            return;
        }
        self.become_active(epoch, "resumed after a restart", None)
            .await;
    }

    /// `handed_over_by`: the server active before, when it granted its vote
    /// in this promotion.
    async fn become_active(self: &Arc<Self>, epoch: u64, why: &str, handed_over_by: Option<&str>) {
        {
            let mut inner = lock(&self.inner);
            inner.role = NodeRole::Active;
            inner.ready = false;
            inner.changing = true;
            self.publish(&inner);
        }
        if let Err(e) = self.update_state(|s| {
            s.epoch = epoch;
            s.active = Some(self.node_id.clone());
        }) {
            tracing::error!(error = %e, "cannot record the promotion");
        }
        // Take in what the other servers wrote while this one was not active.
        let (merged, complete) = self.merge_from_peers(self.failover() * 2).await;
        {
            let mut inner = lock(&self.inner);
            inner.changing = false;
            if handed_over_by.is_some_and(|old| complete.iter().any(|p| p == old)) {
                inner.handed_over = Some(epoch);
            }
            let now = Instant::now();
            for peer in &self.peers {
                if lock(&peer.contact)
                    .last_ok
                    .is_some_and(|t| t.elapsed() < self.lease())
                {
                    inner.acks.insert(peer.config.id.clone(), now);
                }
            }
            inner.ready = !self.config.auto_promote;
            self.publish(&inner);
        }
        self.check_lease();
        self.events.record(
            Severity::Alert,
            "role",
            format!(
                "active in epoch {epoch} ({why}); merged {} history rows from peers",
                merged.total()
            ),
        );
    }

    // ---- the standby side ------------------------------------------------

    async fn watchdog_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat() / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check_lease();
            if self.witness || !self.config.auto_promote {
                continue;
            }
            let due = {
                let inner = lock(&self.inner);
                let stagger = self.stagger();
                inner.role == NodeRole::Standby
                    && !inner.changing
                    && Instant::now() >= inner.quiet_until
                    && inner
                        .last_heartbeat
                        .is_none_or(|t| t.elapsed() >= self.failover() + stagger)
            };
            if due {
                if let Err(e) = self.run_election(false, false).await {
                    tracing::info!("no promotion: {e}");
                }
                let mut inner = lock(&self.inner);
                inner.quiet_until = Instant::now() + self.failover();
            }
        }
    }

    /// Asks the peers to make this server active. `manual`: an operator
    /// asked; `force`: without a majority (the operator vouches that the
    /// active server is down).
    async fn run_election(self: &Arc<Self>, manual: bool, force: bool) -> Result<String, String> {
        let (epoch, active_before) = {
            let mut inner = lock(&self.inner);
            if inner.changing {
                return Err("a promotion is already under way".into());
            }
            inner.changing = true;
            (
                inner.state.epoch.max(inner.state.voted_epoch) + 1,
                inner.state.active.clone(),
            )
        };
        let result = self.election(epoch, manual, force).await;
        lock(&self.inner).changing = false;
        match result {
            Ok((message, granted)) => {
                // A server that was active and voted for us stepped down
                // before it answered: it fires nothing more.
                let handed_over_by =
                    active_before.filter(|a| *a != self.node_id && granted.contains(a));
                self.become_active(epoch, &message, handed_over_by.as_deref())
                    .await;
                Ok(format!(
                    "{} is active in epoch {epoch}: {message}",
                    self.node_id
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn election(
        self: &Arc<Self>,
        epoch: u64,
        manual: bool,
        force: bool,
    ) -> Result<(String, Vec<String>), String> {
        self.update_state(|s| s.voted_epoch = epoch)?;
        let calls = self.peers.iter().map(|peer| {
            let request = ClusterRequest::RequestVote {
                epoch,
                candidate: self.node_id.clone(),
                manual,
            };
            async move {
                (
                    peer.config.id.clone(),
                    self.call(peer, request, self.failover() / 2).await,
                )
            }
        });
        let mut granted = vec![self.node_id.clone()];
        let mut refused = Vec::new();
        let needed = self.config.majority();
        let mut pending: futures::stream::FuturesUnordered<_> = calls.collect();
        while let Some((peer, answer)) = futures::StreamExt::next(&mut pending).await {
            match answer {
                Ok(ClusterResponse::Vote { granted: true, .. }) => granted.push(peer),
                Ok(ClusterResponse::Vote {
                    epoch: theirs,
                    reason,
                    ..
                }) => {
                    if theirs > epoch {
                        self.update_state(|s| s.epoch = s.epoch.max(theirs))?;
                    }
                    refused.push(format!("{peer}: {reason}"));
                }
                Ok(other) => refused.push(format!("{peer}: unexpected answer {other:?}")),
                Err(e) => refused.push(e),
            }
            // An automatic promotion need not wait for a dead peer's
            // timeout once a majority agreed; an operator's promotion waits
            // for every answer, so the old active server hears it.
            if !manual && granted.len() >= needed {
                break;
            }
        }
        if granted.len() >= needed {
            Ok((format!("votes from {}", granted.join(", ")), granted))
        } else if force {
            self.events.record(
                Severity::Alert,
                "promote",
                format!(
                    "forced promotion with {} of {needed} votes ({})",
                    granted.len(),
                    refused.join("; ")
                ),
            );
            Ok((
                format!("forced, {} of {needed} votes", granted.len()),
                granted,
            ))
        } else {
            Err(format!(
                "got {} of {needed} votes needed ({}){}",
                granted.len(),
                refused.join("; "),
                if manual {
                    "; if the active server is down for sure, `ferry cluster promote --force` promotes without a majority"
                } else {
                    ""
                }
            ))
        }
    }

    /// `ferry cluster promote`: makes this standby the active server.
    pub async fn promote(self: &Arc<Self>, force: bool) -> Result<String, FerryError> {
        let view = self.view();
        match view.role {
            NodeRole::Witness => {
                return Err(FerryError::invalid(
                    "this server is a witness: it cannot become active",
                ))
            }
            NodeRole::Active => {
                return Ok(format!(
                    "{} is already active in epoch {}",
                    self.node_id, view.epoch
                ))
            }
            NodeRole::Standby => {}
        }
        self.events.record(
            Severity::Info,
            "promote",
            format!(
                "operator asked for promotion{}",
                if force { " (forced)" } else { "" }
            ),
        );
        self.run_election(true, force)
            .await
            .map_err(|e| FerryError::new(ErrorKind::Conflict, format!("not promoted: {e}")))
    }

    // ---- requests from peers ---------------------------------------------

    /// Answers a heartbeat from the server that believes it is active.
    pub(crate) fn on_heartbeat(&self, epoch: u64, from: &str) -> ClusterResponse {
        let mine = lock(&self.inner).state.epoch;
        if epoch < mine {
            return ClusterResponse::HeartbeatAck {
                epoch: mine,
                role: self.view().role,
            };
        }
        let (was_active, known) = {
            let mut inner = lock(&self.inner);
            inner.last_heartbeat = Some(Instant::now());
            (
                inner.role == NodeRole::Active,
                inner.state.epoch == epoch && inner.state.active.as_deref() == Some(from),
            )
        };
        if was_active && from != self.node_id {
            self.step_down(
                epoch,
                Some(from.to_owned()),
                &format!("{from} is active in epoch {epoch}"),
            );
        } else if !known {
            if let Err(e) = self.update_state(|s| {
                s.epoch = epoch;
                s.active = Some(from.to_owned());
            }) {
                tracing::error!(error = %e, "cannot record the active server");
            }
            let inner = lock(&self.inner);
            self.publish(&inner);
            drop(inner);
            self.events.record(
                Severity::Info,
                "role",
                format!("{from} is the active server (epoch {epoch})"),
            );
        }
        let inner = lock(&self.inner);
        ClusterResponse::HeartbeatAck {
            epoch: inner.state.epoch,
            role: inner.role,
        }
    }

    /// Answers a vote request.
    pub(crate) fn on_vote(&self, epoch: u64, candidate: &str, manual: bool) -> ClusterResponse {
        let refuse = |inner: &Inner, reason: String| ClusterResponse::Vote {
            granted: false,
            epoch: inner.state.epoch,
            reason,
        };
        let is_active = {
            let inner = lock(&self.inner);
            let newest = inner.state.epoch.max(inner.state.voted_epoch);
            if epoch <= newest {
                return refuse(&inner, format!("already voted in or past epoch {epoch}"));
            }
            if !manual {
                if inner.role == NodeRole::Active && inner.ready {
                    return refuse(&inner, format!("{} is active and serving", self.node_id));
                }
                if let Some(t) = inner.last_heartbeat {
                    if t.elapsed() < self.failover() {
                        return refuse(
                            &inner,
                            format!(
                                "heard the active server {} {} ms ago",
                                inner.state.active.as_deref().unwrap_or("?"),
                                t.elapsed().as_millis()
                            ),
                        );
                    }
                }
            }
            inner.role == NodeRole::Active
        };
        // The vote is on disk before it is sent.
        if let Err(e) = self.update_state(|s| s.voted_epoch = epoch) {
            let inner = lock(&self.inner);
            return refuse(&inner, e);
        }
        if is_active {
            self.step_down(
                epoch,
                None,
                &format!("voted for {candidate} in epoch {epoch} (operator's promotion)"),
            );
        }
        {
            // Give the candidate time to take over before standing ourselves.
            let mut inner = lock(&self.inner);
            inner.quiet_until = Instant::now() + self.failover();
        }
        self.events.record(
            Severity::Info,
            "vote",
            format!("voted for {candidate} in epoch {epoch}"),
        );
        let inner = lock(&self.inner);
        ClusterResponse::Vote {
            granted: true,
            epoch: inner.state.epoch,
            reason: String::new(),
        }
    }

    /// This node's own status.
    pub(crate) fn own_status(&self, with_digests: bool) -> PeerStatus {
        let (role, ready, state) = {
            let inner = lock(&self.inner);
            (inner.role, inner.ready, inner.state.clone())
        };
        let (table_digests, file_digests) = if with_digests && !self.witness {
            (
                crate::sync::table_digests(&self.store),
                crate::sync::file_digests(self),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        PeerStatus {
            node: self.node_id.clone(),
            role,
            ready,
            epoch: state.epoch,
            active: state.active.clone(),
            software: crate::SOFTWARE.to_owned(),
            schema_version: self.store.schema_version().unwrap_or(0),
            last_sync: state.last_sync,
            table_digests,
            file_digests,
            workers: self.runner.statuses(),
        }
    }

    /// `ferry cluster status` as seen from this node.
    pub async fn status(self: &Arc<Self>) -> ClusterStatus {
        let this = {
            let node = self.clone();
            tokio::task::spawn_blocking(move || node.own_status(true))
                .await
                .unwrap_or_else(|_| self.own_status(false))
        };
        let asks = self.peers.iter().map(|peer| async move {
            let answer = self
                .call(peer, ClusterRequest::Status, Duration::from_secs(5))
                .await;
            (peer, answer)
        });
        let synced = self.manifests().ok().map(|m| m.tables);
        let mut peers = Vec::new();
        for (peer, answer) in futures::future::join_all(asks).await {
            let contact = lock(&peer.contact);
            let (status, error) = match answer {
                Ok(ClusterResponse::Status(s)) => (Some(s), None),
                Ok(other) => (None, Some(format!("unexpected answer {other:?}"))),
                Err(e) => (None, Some(e)),
            };
            let out_of_date = match (&status, this.role) {
                (Some(s), NodeRole::Active) if s.role == NodeRole::Standby => {
                    crate::sync::out_of_date(&this, s, synced.as_deref())
                }
                _ => Vec::new(),
            };
            peers.push(PeerReport {
                id: peer.config.id.clone(),
                address: peer.config.address.clone(),
                witness: peer.config.witness,
                health: if status.is_some() { "alive" } else { "failed" }.into(),
                last_contact_ms: contact
                    .last_ok
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                error,
                status,
                out_of_date,
            });
        }
        ClusterStatus {
            mode: "active-passive".into(),
            this,
            majority: self.config.majority(),
            peers,
            events: self.events.recent(20),
        }
    }

    /// Whether `id` is one of the configured peers.
    pub fn is_peer(&self, id: &str) -> bool {
        self.peer(id).is_some()
    }

    pub(crate) fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.config.id == id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::path::Path;

    use ferry_proto::tls::TlsFiles;

    use super::*;
    use crate::config::Mode;

    /// A TLS client config from a fresh CA in `dir/pki` (made once per dir).
    fn tls(dir: &Path) -> Arc<rustls::ClientConfig> {
        let pki = dir.join("pki");
        if !pki.exists() {
            std::fs::create_dir(&pki).unwrap();
            ferry_proto::pki::create_ca(&pki, "test").unwrap();
            ferry_proto::pki::issue(
                &pki,
                &pki,
                "a",
                &["127.0.0.1".into()],
                ferry_proto::pki::CertRole::Server,
            )
            .unwrap();
        }
        ferry_proto::tls::internal_client_config(&TlsFiles {
            ca: pki.join("ca.crt"),
            cert: pki.join("a.crt"),
            key: pki.join("a.key"),
        })
        .unwrap()
    }

    fn peer(id: &str, address: &str, witness: bool) -> PeerConfig {
        PeerConfig {
            id: id.into(),
            address: address.into(),
            witness,
        }
    }

    /// Peers on ports nobody listens on; a failover time long enough that
    /// the watchdog never starts an election during a test.
    fn config(peers: Vec<PeerConfig>, auto_promote: bool) -> ClusterConfig {
        ClusterConfig {
            mode: Mode::ActivePassive,
            peers,
            heartbeat_ms_setting: Some(500),
            failover_after_ms: 60_000,
            auto_promote,
            ..ClusterConfig::default()
        }
    }

    /// Server `a` with a peer server `b` and a witness `w`.
    fn three_voters() -> ClusterConfig {
        config(
            vec![
                peer("b", "127.0.0.1:1", false),
                peer("w", "127.0.0.1:2", true),
            ],
            true,
        )
    }

    async fn start_with(
        dir: &Path,
        config: ClusterConfig,
        node_id: &str,
        witness: bool,
    ) -> Arc<Node> {
        Node::start(NodeOptions {
            config,
            node_id: node_id.into(),
            witness,
            store: Arc::new(Store::open_in_memory().unwrap()),
            state_dir: dir.to_path_buf(),
            config_dir: dir.to_path_buf(),
            own_config: "server.toml".into(),
            tls: tls(dir),
            secret_key_id: "k".into(),
            on_merged: Box::new(|_| {}),
            runner: ferry_worker::Runner::new(),
        })
        .await
        .unwrap()
    }

    async fn start(dir: &Path) -> Arc<Node> {
        start_with(dir, three_voters(), "a", false).await
    }

    fn vote(answer: ClusterResponse) -> (bool, u64, String) {
        match answer {
            ClusterResponse::Vote {
                granted,
                epoch,
                reason,
            } => (granted, epoch, reason),
            other => panic!("not a vote: {other:?}"),
        }
    }

    #[tokio::test]
    async fn fresh_node_is_a_read_only_standby_in_epoch_zero() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let view = node.view();
        assert_eq!(view.role, NodeRole::Standby);
        assert!(!view.ready);
        assert_eq!(view.epoch, 0);
        assert_eq!(node.state(), NodeState::default());
        let err = node.check_writable().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("standby"), "{}", err.message);
        assert!(
            err.message.contains("no server is active"),
            "{}",
            err.message
        );
        assert!(node.not_serving_reason().is_some());
    }

    #[tokio::test]
    async fn votes_once_per_epoch_and_persists_the_vote() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let (granted, epoch, reason) = vote(node.on_vote(1, "b", false));
        assert!(granted, "refused: {reason}");
        assert_eq!(epoch, 0);
        assert_eq!(node.state().voted_epoch, 1);
        assert_eq!(
            StateFile::new(dir.path()).load().unwrap().voted_epoch,
            1,
            "the vote must be on disk"
        );

        let (granted, _, reason) = vote(node.on_vote(1, "w", false));
        assert!(!granted, "voted twice in epoch 1");
        assert!(reason.contains("already voted"), "{reason}");
        // Manual or not, an epoch already voted in is never granted again.
        let (granted, _, reason) = vote(node.on_vote(1, "w", true));
        assert!(!granted, "voted twice in epoch 1 (manual)");
        assert!(reason.contains("already voted"), "{reason}");
        // Nor an older one.
        let (granted, _, _) = vote(node.on_vote(0, "w", true));
        assert!(!granted);
        assert_eq!(StateFile::new(dir.path()).load().unwrap().voted_epoch, 1);
        // A newer epoch is fine.
        let (granted, _, reason) = vote(node.on_vote(2, "w", false));
        assert!(granted, "refused: {reason}");
        assert_eq!(StateFile::new(dir.path()).load().unwrap().voted_epoch, 2);
        // Voting changes neither the role nor the known epoch.
        assert_eq!(node.view().role, NodeRole::Standby);
        assert_eq!(node.state().epoch, 0);
    }

    #[tokio::test]
    async fn heartbeat_records_the_active_server_and_blocks_automatic_votes() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let ack = node.on_heartbeat(3, "b");
        assert!(
            matches!(
                ack,
                ClusterResponse::HeartbeatAck {
                    epoch: 3,
                    role: NodeRole::Standby
                }
            ),
            "{ack:?}"
        );
        let state = node.state();
        assert_eq!(state.epoch, 3);
        assert_eq!(state.active.as_deref(), Some("b"));
        assert_eq!(StateFile::new(dir.path()).load().unwrap(), state);
        assert_eq!(node.view().epoch, 3);
        let err = node.check_writable().unwrap_err();
        assert!(err.message.contains("active server: b"), "{}", err.message);

        let (granted, epoch, reason) = vote(node.on_vote(4, "c", false));
        assert!(!granted, "granted while hearing the active server");
        assert_eq!(epoch, 3);
        assert!(reason.contains("heard the active server b"), "{reason}");
        assert_eq!(
            node.state().voted_epoch,
            0,
            "a refused vote is not recorded"
        );

        let (granted, _, reason) = vote(node.on_vote(4, "c", true));
        assert!(granted, "manual vote refused: {reason}");
        assert_eq!(node.state().voted_epoch, 4);
        assert_eq!(StateFile::new(dir.path()).load().unwrap().voted_epoch, 4);
    }

    #[tokio::test]
    async fn stale_heartbeat_is_answered_with_the_newer_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        node.on_heartbeat(3, "b");
        for from in ["b", "c"] {
            let ack = node.on_heartbeat(2, from);
            assert!(
                matches!(ack, ClusterResponse::HeartbeatAck { epoch: 3, .. }),
                "{from}: {ack:?}"
            );
            let state = node.state();
            assert_eq!(state.epoch, 3);
            assert_eq!(
                state.active.as_deref(),
                Some("b"),
                "after a heartbeat from {from}"
            );
        }
        assert_eq!(node.view().epoch, 3);
        assert_eq!(
            StateFile::new(dir.path()).load().unwrap().active.as_deref(),
            Some("b")
        );
    }

    #[tokio::test]
    async fn restart_keeps_epoch_and_vote() {
        let dir = tempfile::tempdir().unwrap();
        {
            let node = start(dir.path()).await;
            node.on_heartbeat(3, "b");
            let (granted, _, reason) = vote(node.on_vote(5, "c", true));
            assert!(granted, "{reason}");
        }
        let node = start(dir.path()).await;
        let state = node.state();
        assert_eq!(state.epoch, 3);
        assert_eq!(state.voted_epoch, 5);
        assert_eq!(state.active.as_deref(), Some("b"));
        let view = node.view();
        assert_eq!(view.epoch, 3);
        assert_eq!(view.role, NodeRole::Standby);
        // The vote from before the restart still counts.
        for epoch in [4, 5] {
            let (granted, _, reason) = vote(node.on_vote(epoch, "w", true));
            assert!(!granted, "voted again in epoch {epoch} after a restart");
            assert!(reason.contains("already voted"), "{reason}");
        }
        let (granted, _, reason) = vote(node.on_vote(6, "w", true));
        assert!(granted, "{reason}");
    }

    #[tokio::test]
    async fn promotion_needs_a_majority_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        node.on_heartbeat(3, "b");

        let err = node.promote(false).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(
            err.message.contains("got 1 of 2 votes needed"),
            "{}",
            err.message
        );
        assert!(err.message.contains("--force"), "{}", err.message);
        assert_eq!(node.view().role, NodeRole::Standby);
        assert!(node.check_writable().is_err());
        // A failed election still used up its epoch: the vote for itself.
        let before = node.state();
        assert_eq!(before.voted_epoch, 4);
        assert_eq!(before.active.as_deref(), Some("b"));
        let expected = before.epoch.max(before.voted_epoch) + 1;

        let message = node.promote(true).await.unwrap();
        assert!(message.contains("forced"), "{message}");
        let view = node.view();
        assert_eq!(view.role, NodeRole::Active);
        assert_eq!(view.epoch, expected);
        let state = node.state();
        assert_eq!(state.epoch, expected);
        assert_eq!(state.active.as_deref(), Some("a"));
        assert_eq!(StateFile::new(dir.path()).load().unwrap().epoch, expected);
        // No peer acknowledged: without a majority the lease is not held.
        assert!(!view.ready);
        let err = node.check_writable().unwrap_err();
        assert!(err.message.contains("majority"), "{}", err.message);

        // Already active: promote again is a no-op.
        let again = node.promote(false).await.unwrap();
        assert!(again.contains("already active"), "{again}");
        assert_eq!(node.view().epoch, expected);
    }

    #[tokio::test]
    async fn forced_promotion_without_auto_promote_is_writable() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(vec![peer("b", "127.0.0.1:1", false)], false);
        assert_eq!(config.majority(), 2);
        let node = start_with(dir.path(), config, "a", false).await;

        let err = node.promote(false).await.unwrap_err();
        assert!(
            err.message.contains("got 1 of 2 votes needed"),
            "{}",
            err.message
        );
        assert!(err.message.contains("--force"), "{}", err.message);
        assert_eq!(node.view().role, NodeRole::Standby);

        node.promote(true).await.unwrap();
        let view = node.view();
        assert_eq!(view.role, NodeRole::Active);
        assert_eq!(view.epoch, 2);
        assert!(view.ready);
        node.check_writable().unwrap();
        assert!(node.not_serving_reason().is_none());
    }

    #[tokio::test]
    async fn witness_never_becomes_active() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            vec![
                peer("a", "127.0.0.1:1", false),
                peer("b", "127.0.0.1:2", false),
            ],
            true,
        );
        let node = start_with(dir.path(), config, "w", true).await;
        assert_eq!(node.view().role, NodeRole::Witness);
        let err = node.check_writable().unwrap_err();
        assert!(err.message.contains("witness"), "{}", err.message);
        for force in [false, true] {
            let err = node.promote(force).await.unwrap_err();
            assert!(err.message.contains("witness"), "{}", err.message);
            assert_eq!(node.view().role, NodeRole::Witness);
        }
        assert_eq!(node.state().voted_epoch, 0, "a witness does not stand");
        // It still votes.
        let (granted, _, reason) = vote(node.on_vote(1, "a", false));
        assert!(granted, "{reason}");
    }
}
