//! The transfer engine: queue workers on every node, and the primary-only
//! scheduler and folder monitors.
//!
//! * [`worker`] claims due events with a lease, runs them ([`actions`]),
//!   renews the lease while it works, and records the outcome with retry and
//!   backoff. A node that restarts releases its old leases first.
//! * [`scheduler`] and [`monitor`] run only while this node holds the
//!   primary role ([`PrimaryRole`]); a single node always holds it, and the
//!   cluster moves it to the Raft leader. So does the retention worker
//!   ([`crate::retention`]).

pub mod actions;
pub mod monitor;
pub mod scheduler;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ServerCtx;

/// Whether this node runs the primary-only duties, and in which term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryRole {
    /// This node is the primary for `term`.
    Primary {
        /// The term (0 on a single node).
        term: u64,
    },
    /// Another node is, or none.
    Secondary,
}

impl PrimaryRole {
    /// The role for a cluster's [`ferry_cluster::Duties::primary`].
    pub fn of(primary: Option<u64>) -> Self {
        match primary {
            Some(term) => PrimaryRole::Primary { term },
            None => PrimaryRole::Secondary,
        }
    }
}

/// Wall-clock time for the engine. The test clock follows tokio's (pausable)
/// clock from a chosen start, so scheduler tests run through days at once.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system's clock.
    System,
    /// `start_ms` at the tokio instant `anchor`, moving with tokio time.
    Test {
        /// Wall time at the anchor, unix ms.
        start_ms: i64,
        /// The tokio instant it corresponds to.
        anchor: tokio::time::Instant,
    },
}

impl Clock {
    /// A test clock at `start_ms` now.
    pub fn starting_at(start_ms: i64) -> Self {
        Clock::Test {
            start_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    /// Now, in unix ms.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => crate::transfer::now_millis(),
            Clock::Test { start_ms, anchor } => {
                start_ms + anchor.elapsed().as_millis().min(i64::MAX as u128) as i64
            }
        }
    }
}

/// The `[engine]` section of the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Key file that seals partner credentials (created with a random key,
    /// mode 0600, if missing; every node of a cluster needs the same one).
    /// Relative to the config file; default `secret.key` in the state dir.
    #[serde(default)]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// Events run at once by this node.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Notifications sent at once by this node (workers apart from the
    /// transfer workers, so a dead endpoint delays no transfer).
    #[serde(default = "default_notify_workers")]
    pub notify_workers: usize,
    /// How long a claimed event stays with this node without a renewal.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Folder monitors rescan their directories this often, besides
    /// reacting to change notifications.
    #[serde(default = "default_rescan_secs")]
    pub monitor_rescan_secs: u64,
    /// Timeout for connecting to a partner.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The primary runs the retention policies this often.
    #[serde(default = "default_retention_interval")]
    pub retention_interval_secs: u64,
    /// Retention deletes at most this many history rows (or files) at once…
    #[serde(default = "default_retention_batch")]
    pub retention_batch: u32,
    /// …and pauses this long between two batches, so it never holds the
    /// store for long.
    #[serde(default = "default_retention_pause_ms")]
    pub retention_pause_ms: u64,
}

fn default_workers() -> usize {
    4
}
fn default_notify_workers() -> usize {
    4
}
fn default_lease_secs() -> u64 {
    60
}
fn default_rescan_secs() -> u64 {
    10
}
fn default_connect_timeout() -> u64 {
    15
}
fn default_retention_interval() -> u64 {
    3600
}
fn default_retention_batch() -> u32 {
    500
}
fn default_retention_pause_ms() -> u64 {
    200
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            secret_key_file: None,
            workers: default_workers(),
            notify_workers: default_notify_workers(),
            lease_secs: default_lease_secs(),
            monitor_rescan_secs: default_rescan_secs(),
            connect_timeout_secs: default_connect_timeout(),
            retention_interval_secs: default_retention_interval(),
            retention_batch: default_retention_batch(),
            retention_pause_ms: default_retention_pause_ms(),
        }
    }
}

impl EngineConfig {
    /// The lease length in ms.
    pub fn lease_ms(&self) -> i64 {
        (self.lease_secs.clamp(1, 86_400) * 1000) as i64
    }

    /// The partner connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.clamp(1, 600))
    }
}

fn log_released(events: usize) {
    if events > 0 {
        tracing::info!(events, "released the leases of this node's previous run");
    }
}

/// Starts the workers, the scheduler and the folder monitors. Leases this
/// node held before a restart are released first: nothing of this process
/// can be running them.
pub async fn start(ctx: Arc<ServerCtx>) -> Result<(), ferry_core::FerryError> {
    let release = ferry_core::Command::ReleaseNodeLeases {
        node: ctx.node_id.clone(),
        now: ctx.clock.now_ms(),
    };
    // A fact about this server's own previous run: into its own store where
    // the store is its own (whatever its role in an active/passive cluster
    // is now), proposed where it is the group's — once the group has a
    // leader, which it may not have at start.
    let first = {
        let (ctx, release) = (ctx.clone(), release.clone());
        crate::session::blocking(move || ctx.cluster.apply_about_self(&release)).await
    };
    match first {
        Ok(released) => log_released(released.rows_changed),
        Err(e) => {
            tracing::debug!(error = %e, "lease release waits for a quorum");
            let ctx2 = ctx.clone();
            ctx.workers.spawn("lease-release", |w| async move {
                w.busy("releasing the leases of this node's previous run");
                while w.sleep(Duration::from_secs(1)).await {
                    let (ctx, release) = (ctx2.clone(), release.clone());
                    let released =
                        crate::session::blocking(move || ctx.cluster.apply_about_self(&release))
                            .await;
                    match released {
                        Ok(o) => {
                            log_released(o.rows_changed);
                            w.done_one();
                            return;
                        }
                        Err(e) => w.error(e),
                    }
                }
            });
        }
    }
    for index in 0..ctx.engine.workers.max(1) {
        let ctx2 = ctx.clone();
        ctx.workers.spawn(format!("queue-worker-{index}"), |w| {
            worker::run(ctx2, worker::Work::Transfers, w)
        });
    }
    for index in 0..ctx.engine.notify_workers.max(1) {
        let ctx2 = ctx.clone();
        ctx.workers.spawn(format!("notice-worker-{index}"), |w| {
            worker::run(ctx2, worker::Work::Notices, w)
        });
    }
    let ctx2 = ctx.clone();
    ctx.workers
        .spawn("role-notices", |w| crate::notices::watch_role(ctx2, w));
    let (ctx2, primary) = (ctx.clone(), ctx.primary.subscribe());
    ctx.workers.spawn("scheduler", |w| {
        scheduler::run(ctx2.clone(), ctx2.clock.clone(), primary, w)
    });
    let (ctx2, primary) = (ctx.clone(), ctx.primary.subscribe());
    ctx.workers
        .spawn("folder-monitors", |w| monitor::run(ctx2, primary, w));
    let (ctx2, primary) = (ctx.clone(), ctx.primary.subscribe());
    ctx.workers
        .spawn("retention", |w| crate::retention::run(ctx2, primary, w));
    Ok(())
}
