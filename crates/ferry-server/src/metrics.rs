//! The server's Prometheus metrics, served at `/metrics` on the admin
//! listener in the text exposition format (prometheus-client).
//!
//! Counters and histograms are kept as things happen; the state of the
//! queue and of the cluster is read when a scrape asks. Labels are bounded:
//! protocol, direction, method, outcome, state, role; never a file name, an
//! account or a client address.

use std::sync::Arc;

use ferry_core::{Protocol, TransferRecord};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ServerCtx;

/// Labels of a session metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    /// `sftp` (SFTP and scp) or `https`.
    pub protocol: String,
}

/// Labels of a login.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `password`, `publickey`, `token`.
    pub method: String,
    /// `ok`, `failed` (wrong or unknown credentials, refused by policy),
    /// `busy` (a cap or the hashing queue), `error`.
    pub outcome: String,
}

/// Labels of a finished transfer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    /// `sftp`, `https`, `route`, `monitor`.
    pub protocol: String,
    /// `upload`, `download`, `push`, `pull`.
    pub direction: String,
    /// `completed`, `interrupted`, `failed`.
    pub status: String,
}

/// Labels of transferred bytes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `sftp`, `https`, `route`, `monitor`.
    pub protocol: String,
    /// `upload`, `download`, `push`, `pull`.
    pub direction: String,
}

/// A gauge's label set with one label, `state` or `role`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state.
    pub state: String,
}

/// Every metric of a server.
pub struct Metrics {
    registry: Registry,
    sessions_open: Family<ProtocolLabel, Gauge>,
    sessions_started: Family<ProtocolLabel, Counter>,
    logins: Family<LoginLabels, Counter>,
    transfers: Family<TransferLabels, Counter>,
    transfer_bytes: Family<DirectionLabels, Counter>,
    transfer_seconds: Family<DirectionLabels, Histogram>,
    defender_bans: Counter,
    in_flight: Family<StateLabel, Gauge>,
    events: Family<StateLabel, Gauge>,
    oldest_pending: Gauge<f64, std::sync::atomic::AtomicU64>,
    primary: Gauge,
    writable: Gauge,
    term: Gauge,
    last_log_index: Gauge,
    last_applied: Gauge,
    lag: Family<MemberLabel, Gauge>,
    leader_changes: Counter,
    leader_changes_seen: std::sync::atomic::AtomicU64,
    firings: Family<NameLabel, Counter>,
    misses: Family<NameLabel, Counter>,
    ingests: Family<NameLabel, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    route_attempts: Family<RouteAttemptLabels, Counter>,
    partner_attempts: Family<PartnerAttemptLabels, Counter>,
    notice_attempts: Family<EndpointAttemptLabels, Counter>,
    commit_index: Gauge,
    store_writes: Histogram,
    retention_removed: Family<KindLabel, Counter>,
    retention_runs: Counter,
    retention_last_run: Gauge,
}

/// Labels of an attempt of a route's event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteAttemptLabels {
    /// The route (bounded by the configuration).
    pub route: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
}

/// Labels of an attempt of an event that talks to a partner.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerAttemptLabels {
    /// The partner (bounded by the configuration).
    pub partner: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
}

/// Labels of an attempt to send a notification.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointAttemptLabels {
    /// The endpoint (bounded by the configuration).
    pub endpoint: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
}

/// The label of what retention removed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `transfers`, `events`, `attempts`, `files` or `partials`.
    pub kind: String,
}

/// The label of a configured thing (a schedule, a monitor): bounded by
/// the configuration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// Its name.
    pub name: String,
}

/// Labels of an event attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// The event's kind (`upload`, `schedule`, `monitor`, `pull`,
    /// `resubmit`, `notify`).
    pub kind: String,
    /// `done`, `retry` or `failed`.
    pub outcome: String,
}

/// The label of a cluster member.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabel {
    /// Its `node_id`.
    pub member: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn write_durations() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn durations() -> Histogram {
    // 10 ms to ~11 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            sessions_open: Family::default(),
            sessions_started: Family::default(),
            logins: Family::default(),
            transfers: Family::default(),
            transfer_bytes: Family::default(),
            transfer_seconds: Family::new_with_constructor(durations),
            defender_bans: Counter::default(),
            in_flight: Family::default(),
            events: Family::default(),
            oldest_pending: Gauge::default(),
            primary: Gauge::default(),
            writable: Gauge::default(),
            term: Gauge::default(),
            last_log_index: Gauge::default(),
            last_applied: Gauge::default(),
            lag: Family::default(),
            leader_changes: Counter::default(),
            leader_changes_seen: std::sync::atomic::AtomicU64::new(0),
            firings: Family::default(),
            misses: Family::default(),
            ingests: Family::default(),
            attempts: Family::default(),
            route_attempts: Family::default(),
            partner_attempts: Family::default(),
            notice_attempts: Family::default(),
            commit_index: Gauge::default(),
            store_writes: write_durations(),
            retention_removed: Family::default(),
            retention_runs: Counter::default(),
            retention_last_run: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ferry_sessions_open",
            "Sessions open on this server",
            m.sessions_open.clone(),
        );
        registry.register(
            "ferry_sessions_started",
            "Sessions started on this server",
            m.sessions_started.clone(),
        );
        registry.register(
            "ferry_logins",
            "Logins checked by this server, by method and outcome",
            m.logins.clone(),
        );
        registry.register(
            "ferry_transfers",
            "Transfers ended, by protocol, direction and status",
            m.transfers.clone(),
        );
        registry.register(
            "ferry_transfer_bytes",
            "Bytes moved by ended transfers",
            m.transfer_bytes.clone(),
        );
        registry.register(
            "ferry_transfer_duration_seconds",
            "How long transfers took, open to close",
            m.transfer_seconds.clone(),
        );
        registry.register(
            "ferry_defender_bans",
            "Client addresses this server's defender banned",
            m.defender_bans.clone(),
        );
        registry.register(
            "ferry_transfers_in_flight",
            "Files open for upload or download by clients of this server (state: upload, download)",
            m.in_flight.clone(),
        );
        registry.register(
            "ferry_events",
            "Events in the queue, by state (the whole cluster's, as this server's store has them)",
            m.events.clone(),
        );
        registry.register(
            "ferry_event_oldest_pending_age_seconds",
            "Age of the oldest pending event (0: none)",
            m.oldest_pending.clone(),
        );
        registry.register(
            "ferry_primary",
            "1 while this server is the cluster's primary",
            m.primary.clone(),
        );
        registry.register(
            "ferry_writable",
            "1 while this server takes writes",
            m.writable.clone(),
        );
        registry.register(
            "ferry_cluster_term",
            "The cluster's term (Raft) or epoch (active/passive) as this server knows it",
            m.term.clone(),
        );
        registry.register(
            "ferry_schedule_firings",
            "Schedule slots this server fired, by schedule",
            m.firings.clone(),
        );
        registry.register(
            "ferry_schedule_misses",
            "Due schedule slots that did not fire (no primary then; skipped, or folded into one catch-up firing), by schedule",
            m.misses.clone(),
        );
        registry.register(
            "ferry_route_attempts",
            "Attempts of route events this server ran, by route and outcome",
            m.route_attempts.clone(),
        );
        registry.register(
            "ferry_partner_attempts",
            "Attempts of events talking to a partner this server ran, by partner and outcome",
            m.partner_attempts.clone(),
        );
        registry.register(
            "ferry_notification_attempts",
            "Notifications this server tried to send, by endpoint and outcome",
            m.notice_attempts.clone(),
        );
        registry.register(
            "ferry_raft_commit_index",
            "The last Raft entry known committed (the leader's as last heard, on a follower)",
            m.commit_index.clone(),
        );
        registry.register(
            "ferry_store_write_seconds",
            "Time a change takes until it is in this server's store (through the cluster: replication included)",
            m.store_writes.clone(),
        );
        registry.register(
            "ferry_monitor_ingests",
            "Files this server's folder monitors took in, by monitor",
            m.ingests.clone(),
        );
        registry.register(
            "ferry_event_attempts",
            "Event attempts this server ran, by event kind and outcome",
            m.attempts.clone(),
        );
        registry.register(
            "ferry_retention_removed",
            "History rows and files this server's retention runs removed (or archived), by kind",
            m.retention_removed.clone(),
        );
        registry.register(
            "ferry_retention_runs",
            "Retention runs this server made (dry runs not counted)",
            m.retention_runs.clone(),
        );
        registry.register(
            "ferry_retention_last_run_timestamp_seconds",
            "When this server's last retention run ended (unix seconds; 0: none yet)",
            m.retention_last_run.clone(),
        );
        registry.register(
            "ferry_raft_last_log_index",
            "The last entry of this server's Raft log (active/active)",
            m.last_log_index.clone(),
        );
        registry.register(
            "ferry_raft_last_applied_index",
            "The last Raft entry applied to this server's store",
            m.last_applied.clone(),
        );
        registry.register(
            "ferry_raft_replication_lag_entries",
            "On the leader: entries each other member is behind",
            m.lag.clone(),
        );
        registry.register(
            "ferry_raft_leader_changes",
            "Times the leader this server knows of changed",
            m.leader_changes.clone(),
        );
        Self { registry, ..m }
    }
}

/// An open file's place in `ferry_transfers_in_flight`; dropped, it leaves.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An open session's place in `ferry_sessions_open`; dropped, it leaves.
#[derive(Debug)]
pub struct OpenSession(Gauge);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Takes in the Raft log's numbers read now.
    fn log_numbers(&self, n: &ferry_cluster::LogNumbers) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.last_log_index.set(as_i64(n.last_log_index));
        self.commit_index.set(as_i64(n.commit_index));
        self.last_applied.set(as_i64(n.last_applied));
        self.lag.clear();
        for (member, lag) in &n.lag {
            self.lag
                .get_or_create(&MemberLabel {
                    member: member.clone(),
                })
                .set(as_i64(*lag));
        }
        let seen = self
            .leader_changes_seen
            .swap(n.leader_changes, std::sync::atomic::Ordering::Relaxed);
        self.leader_changes
            .inc_by(n.leader_changes.saturating_sub(seen));
    }

    /// Counts a session started with `protocol`; hold the guard while it
    /// is open.
    pub fn session_started(&self, protocol: Protocol) -> OpenSession {
        let label = ProtocolLabel {
            protocol: protocol.to_string(),
        };
        self.sessions_started.get_or_create(&label).inc();
        let open = self.sessions_open.get_or_create(&label).clone();
        open.inc();
        OpenSession(open)
    }

    /// Counts a file opened by a client for upload (`writes`) or download;
    /// hold the guard until the transfer ends.
    pub fn transfer_started(&self, writes: bool) -> InFlight {
        let state = if writes { "upload" } else { "download" };
        let gauge = self
            .in_flight
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Counts a login checked with `method` that ended in `outcome`.
    pub fn login(&self, method: &str, outcome: &str) {
        self.logins
            .get_or_create(&LoginLabels {
                method: method.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts an ended transfer.
    pub fn transfer(&self, record: &TransferRecord) {
        let protocol = record.protocol.as_str().to_owned();
        let direction = record.direction.as_str();
        let status = record.status.as_str();
        self.transfers
            .get_or_create(&TransferLabels {
                protocol: protocol.clone(),
                direction: direction.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        let labels = DirectionLabels {
            protocol,
            direction: direction.to_owned(),
        };
        self.transfer_bytes
            .get_or_create(&labels)
            .inc_by(record.bytes);
        let millis = record.ended_at.saturating_sub(record.started_at).max(0);
        self.transfer_seconds
            .get_or_create(&labels)
            .observe(millis as f64 / 1000.0);
    }

    /// Counts a slot of `schedule` fired here.
    pub fn fired(&self, schedule: &str) {
        self.firings
            .get_or_create(&NameLabel {
                name: schedule.to_owned(),
            })
            .inc();
    }

    /// Counts a file `monitor` took in here.
    pub fn ingested(&self, monitor: &str) {
        self.ingests
            .get_or_create(&NameLabel {
                name: monitor.to_owned(),
            })
            .inc();
    }

    /// Counts an attempt of `event` that ended in `outcome`: by kind, and
    /// by its route, partners or notification endpoint.
    pub fn attempt(&self, event: &ferry_core::Event, outcome: &str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                kind: event.kind.to_string(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(route) = &event.route {
            self.route_attempts
                .get_or_create(&RouteAttemptLabels {
                    route: route.clone(),
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
        if let Some(notice) = &event.notice {
            self.notice_attempts
                .get_or_create(&EndpointAttemptLabels {
                    endpoint: notice.endpoint.clone(),
                    outcome: outcome.to_owned(),
                })
                .inc();
        } else {
            for partner in &event.partners {
                self.partner_attempts
                    .get_or_create(&PartnerAttemptLabels {
                        partner: partner.clone(),
                        outcome: outcome.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Counts `n` slots of `schedule` that were due and did not fire.
    pub fn missed(&self, schedule: &str, n: u64) {
        self.misses
            .get_or_create(&NameLabel {
                name: schedule.to_owned(),
            })
            .inc_by(n);
    }

    /// Records how long a change took to reach this server's store.
    pub fn store_write(&self, seconds: f64) {
        self.store_writes.observe(seconds);
    }

    /// Counts `n` history rows or files of `kind` retention removed.
    pub fn retention_removed(&self, kind: &str, n: u64) {
        self.retention_removed
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts a retention run that ended at `at_ms` (unix ms).
    pub fn retention_ran(&self, at_ms: i64) {
        self.retention_runs.inc();
        self.retention_last_run.set(at_ms / 1000);
    }

    /// Counts a ban of this server's defender.
    pub fn banned(&self) {
        self.defender_bans.inc();
    }
}

/// The text exposition of `ctx`'s metrics, the queue's and the cluster's
/// state read now. Blocks (store reads).
pub fn render(ctx: &Arc<ServerCtx>) -> String {
    let m = &ctx.metrics;
    match ctx.store.event_counts() {
        Ok(counts) => {
            for state in ["pending", "running", "done", "failed"] {
                let n = counts
                    .by_state
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                m.events
                    .get_or_create(&StateLabel {
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            let age = counts
                .oldest_pending_at
                .map_or(0, |at| crate::transfer::now_millis().saturating_sub(at));
            m.oldest_pending.set(age.max(0) as f64 / 1000.0);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count the events"),
    }
    let role = ctx.cluster.role();
    m.primary.set(i64::from(role.primary));
    m.writable.set(i64::from(role.writable));
    m.term.set(i64::try_from(role.epoch).unwrap_or(i64::MAX));
    if let Some(numbers) = ctx.cluster.log_numbers() {
        m.log_numbers(&numbers);
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
        tracing::error!(error = %e, "metrics: cannot encode");
    }
    text
}
