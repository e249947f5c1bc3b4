//! Graceful shutdown (SIGTERM, SIGINT): a server stops taking new work,
//! lets the transfers in flight finish up to a deadline, then ends what is
//! left the way a lost connection would (open uploads are logged
//! `interrupted` and keep their partial data for a resume), stops its
//! workers, releases its event leases and leaves its cluster.
//!
//! The order, in [`RunningServer::shutdown`](crate::RunningServer::shutdown):
//!
//! 1. **Drain** — logins, new edge connections and new file opens are
//!    refused ("this server is shutting down": an edge picks another
//!    server); `/readyz` says not ready; the engine's workers are told to
//!    stop (a queue worker drops the event it runs: every step is safe to
//!    repeat).
//! 2. **Transfers** — wait until every open file handle was closed, for at
//!    most the drain deadline.
//! 3. **Cut** — every edge connection ends; the sessions end as if logged
//!    out, and their unfinished uploads record `interrupted` rows.
//! 4. **Leases** — this server's event leases are released, so another
//!    server runs those events at once instead of after the lease.
//! 5. **Cluster** — the cluster loops stop and the cluster node shuts down
//!    (Raft: `Raft::shutdown`).

use std::time::Duration;

use ferry_core::{ErrorKind, FerryError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a shutdown in progress tells the rest of the server.
#[derive(Debug, Default)]
pub struct Drain {
    /// Cancelled when the drain begins: listeners stop accepting.
    began: CancellationToken,
    /// Cancelled when the drain is over: every edge connection ends.
    cut: CancellationToken,
    /// The actors of open file handles (uploads, downloads, resumable
    /// upload chunks): the transfers in flight.
    files: TaskTracker,
    /// Cancelled when an operator asked this server to stop
    /// (`ferry server drain`): the process then shuts down as on SIGTERM.
    stop: CancellationToken,
}

/// How long the sessions cut at the end of a drain have to record their
/// unfinished uploads.
const CUT_GRACE: Duration = Duration::from_secs(10);

impl Drain {
    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.began.is_cancelled()
    }

    /// Resolves when the drain begins.
    pub(crate) async fn began(&self) {
        self.began.cancelled().await
    }

    /// Why this server takes nothing new, while it drains.
    pub fn refusal(&self) -> Option<String> {
        self.is_draining()
            .then(|| "this server is shutting down".to_owned())
    }

    /// Err while draining: for a login, a new connection or a new open.
    pub(crate) fn check_open(&self) -> Result<(), FerryError> {
        match self.refusal() {
            Some(why) => Err(FerryError::new(ErrorKind::Unavailable, why)),
            None => Ok(()),
        }
    }

    /// Tracks the actor of an open file handle.
    pub(crate) fn track<F>(&self, actor: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.files.spawn(actor);
    }

    /// Resolves when the edge connections must end.
    pub(crate) async fn cut(&self) {
        self.cut.cancelled().await
    }

    /// Transfers in flight now.
    pub fn transfers_open(&self) -> usize {
        self.files.len()
    }

    /// Asks the process to shut down, as SIGTERM does.
    pub(crate) fn request_stop(&self) {
        self.stop.cancel();
    }

    /// Whether a stop was asked for.
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when an operator asked this server to stop: the process
    /// then runs [`crate::RunningServer::shutdown`].
    pub async fn stop_requested_wait(&self) {
        self.stop.cancelled().await
    }

    /// Starts the drain: nothing new is taken from now on.
    pub(crate) fn begin(&self) {
        self.began.cancel();
    }

    /// Waits up to `deadline` for the transfers in flight; true if they all
    /// ended.
    pub(crate) async fn wait_for_transfers(&self, deadline: Duration) -> bool {
        self.files.close();
        tokio::time::timeout(deadline, self.files.wait())
            .await
            .is_ok()
    }

    /// Ends every edge connection, and waits (bounded) until the sessions
    /// cut off have recorded their unfinished transfers.
    pub(crate) async fn cut_connections(&self) -> bool {
        self.cut.cancel();
        self.files.close();
        tokio::time::timeout(CUT_GRACE, self.files.wait())
            .await
            .is_ok()
    }
}

/// How long stopped workers have to end, and the cluster to shut down.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl crate::RunningServer {
    /// Shuts the server down gracefully (see the module documentation):
    /// transfers in flight get `drain` to finish. Returns what did not
    /// go as planned; the server is stopped either way.
    pub async fn shutdown(&self, drain: Duration) -> Result<(), Vec<String>> {
        let ctx = &self.ctx;
        let mut problems = Vec::new();
        tracing::info!(
            transfers = ctx.drain.transfers_open(),
            drain_secs = drain.as_secs_f64(),
            "shutting down: taking nothing new, waiting for the transfers in flight"
        );
        ctx.drain.begin();
        ctx.workers.stop();
        if ctx.drain.wait_for_transfers(drain).await {
            tracing::info!("no transfer in flight");
        } else {
            tracing::warn!(
                transfers = ctx.drain.transfers_open(),
                "the drain deadline passed: ending the transfers still open (partial data is kept for a resume)"
            );
        }
        if !ctx.drain.cut_connections().await {
            problems.push(format!(
                "{} transfers did not record their end within {CUT_GRACE:?}",
                ctx.drain.transfers_open()
            ));
        }
        if let Err(left) = ctx.workers.wait(STOP_GRACE).await {
            problems.push(format!("workers still running: {}", left.join(", ")));
        }
        if let Err(e) = release_leases(ctx).await {
            problems.push(e);
        }
        // The intents of uploads whose rows are logged (left, they cost a
        // re-check of each file at the next start).
        let c = ctx.clone();
        let _ = crate::session::blocking(move || {
            crate::rows::sweep_logged_intents(&c);
            Ok(())
        })
        .await;
        self.runner.stop();
        if let Err(e) = ctx.cluster.shutdown(STOP_GRACE).await {
            problems.push(e.to_string());
        }
        if let Err(left) = self.runner.wait(STOP_GRACE).await {
            problems.push(format!("cluster loops still running: {}", left.join(", ")));
        }
        for problem in &problems {
            tracing::warn!(%problem, "shutdown");
        }
        tracing::info!(node = %ctx.node_id, "server stopped");
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Gives this server's event leases back, so another server (or this one
/// after its restart) runs those events at once. Nothing to do where this
/// server cannot write (a standby, a witness, no quorum): the leases then
/// run out as after a crash.
async fn release_leases(ctx: &std::sync::Arc<crate::ServerCtx>) -> Result<(), String> {
    if ctx.check_writable().is_err() {
        return Ok(());
    }
    let release = ferry_core::Command::ReleaseNodeLeases {
        node: ctx.node_id.clone(),
        now: ctx.clock.now_ms(),
    };
    let c = ctx.clone();
    let applied = tokio::time::timeout(
        STOP_GRACE,
        crate::session::blocking(move || c.apply(&release)),
    )
    .await;
    match applied {
        Ok(Ok(o)) => {
            if o.rows_changed > 0 {
                tracing::info!(
                    events = o.rows_changed,
                    "released this server's event leases"
                );
            }
            Ok(())
        }
        Ok(Err(e)) => Err(format!("could not release the event leases: {e}")),
        Err(_) => Err(format!(
            "could not release the event leases within {STOP_GRACE:?}"
        )),
    }
}
