//! Queue workers: claim a due event with a lease, run it, record the outcome.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::engine::backoff_ms;
use ferry_core::{AttemptResult, Command, Event, FerryError};
use ferry_store::Lane;

use super::actions::{self, ActionError};
use crate::session::blocking;
use crate::ServerCtx;
use ferry_worker::Worker;

/// Longest sleep between looks at the queue (events queued by another node
/// are seen this late at most).
const POLL_MS: i64 = 1_000;

/// Which events a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Routes, schedules, resubmits: everything but notifications.
    Transfers,
    /// Notifications, at most one at a time per endpoint on this server.
    Notices,
}

/// Runs one worker of `work` until the server stops. Told to stop, it claims nothing
/// more and drops the event it runs: every step is safe to repeat, and the
/// server releases this node's leases as it shuts down.
pub async fn run(ctx: Arc<ServerCtx>, work: Work, w: Worker) {
    let mut serving = ctx.serving.subscribe();
    loop {
        // A standby runs no worker: its queue is the active server's business.
        if !*serving.borrow_and_update() {
            w.standby("this server does not serve now");
        }
        match w.until_stopped(serving.wait_for(|s| *s)).await {
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return,
        }
        // Register for wake-ups before looking, so a notification that
        // arrives while we look is not lost.
        let woken = ctx.engine_wake.notified();
        match claim_next(&ctx, work).await {
            Ok(Some(event)) => {
                w.busy(format!("event {} ({})", event.id, event.kind));
                // Marked when claimed; released when this attempt ends.
                let _sending = crate::notices::Sending::held(&ctx, &event);
                if w.until_stopped(execute(&ctx, event)).await.is_none() {
                    tracing::info!(worker = %w.name(), "stopped in the middle of an event; its lease is released");
                    return;
                }
                w.done_one();
                w.idle();
                continue;
            }
            Ok(None) => w.idle(),
            Err(e) => {
                tracing::warn!(worker = %w.name(), error = %e, "cannot read the event queue");
                w.error(&e);
            }
        }
        let now = ctx.clock.now_ms();
        let next = {
            let (store, ctx2) = (ctx.store.clone(), ctx.clone());
            blocking(move || {
                let busy = ctx2.notices_sending.endpoints();
                store
                    .next_claimable_at(lane(work, &busy))
                    .map_err(FerryError::from)
            })
            .await
            .ok()
            .flatten()
        };
        let wait = next
            .map(|at| (at - now).clamp(1, POLL_MS))
            .unwrap_or(POLL_MS);
        tokio::select! {
            _ = woken => {}
            _ = w.sleep(Duration::from_millis(wait as u64)) => {}
        }
        if w.is_stopping() {
            return;
        }
    }
}

/// Claims the first claimable event, if any. One worker of a server claims
/// at a time, and a claim returns only once it is applied here (see
/// `RaftNode::write`), so the next look at the store sees it: a claim that
/// another server won is refused once, not proposed again and again.
/// The store's lane of `work`, skipping the endpoints in `busy`.
fn lane(work: Work, busy: &[String]) -> Lane<'_> {
    match work {
        Work::Transfers => Lane::Transfers,
        Work::Notices => Lane::Notices { skip: busy },
    }
}

async fn claim_next(ctx: &Arc<ServerCtx>, work: Work) -> Result<Option<Event>, FerryError> {
    let ctx = ctx.clone();
    blocking(move || {
        let _claiming = ctx.claiming.lock().unwrap_or_else(|p| p.into_inner());
        let now = ctx.clock.now_ms();
        for id in ctx
            .store
            .claimable_events(lane(work, &ctx.notices_sending.endpoints()), now, 16)
            .map_err(FerryError::from)?
        {
            let claimed = ctx.apply(&Command::ClaimEvent {
                id: id.clone(),
                node: ctx.node_id.clone(),
                now,
                lease_until: now + ctx.engine.lease_ms(),
            })?;
            if claimed.rows_changed == 1 {
                let event = ctx.store.event(&id).map_err(FerryError::from)?;
                if let Some(e) = &event {
                    ctx.notices_sending.mark(e);
                }
                return Ok(event);
            }
        }
        Ok(None)
    })
    .await
}

/// Runs a claimed event while renewing its lease; records how it ended.
async fn execute(ctx: &Arc<ServerCtx>, event: Event) {
    let attempt = event.attempts;
    let id = event.id.clone();
    tracing::info!(event = %id, attempt, kind = %event.kind, "event started");
    let work = actions::run_event(ctx, &event);
    let renew = keep_lease(ctx, &id, attempt);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = renew => {
            tracing::warn!(event = %id, attempt, "lease lost; another node owns the event now");
            return;
        }
    };
    let now = ctx.clock.now_ms();
    let result = match outcome {
        Ok(summary) => {
            tracing::info!(event = %id, attempt, %summary, "event done");
            AttemptResult::Done
        }
        Err(ActionError { message, transient }) => {
            let retry = transient && attempt < event.max_attempts;
            tracing::warn!(event = %id, attempt, max = event.max_attempts, retry, error = %message, "event attempt failed");
            if retry {
                AttemptResult::Retry {
                    next_at: now + backoff_ms(event.retry_base_ms, attempt) as i64,
                    error: message,
                }
            } else {
                AttemptResult::Failed { error: message }
            }
        }
    };
    let outcome = match &result {
        AttemptResult::Done => "done",
        AttemptResult::Retry { .. } => "retry",
        AttemptResult::Failed { .. } => "failed",
    };
    ctx.metrics.attempt(&event, outcome);
    let command = Command::FinishAttempt {
        id: id.clone(),
        node: ctx.node_id.clone(),
        attempt,
        now,
        result,
    };
    let ctx2 = ctx.clone();
    match blocking(move || ctx2.apply(&command)).await {
        Ok(o) if o.rows_changed == 0 => {
            tracing::warn!(event = %id, attempt, "outcome not recorded: the lease had expired")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(event = %id, attempt, error = %e, "cannot record the outcome"),
    }
}

/// Renews the lease every third of its length; returns when it is lost.
async fn keep_lease(ctx: &Arc<ServerCtx>, id: &str, attempt: u32) {
    let every = Duration::from_millis((ctx.engine.lease_ms() / 3).max(100) as u64);
    loop {
        tokio::time::sleep(every).await;
        let command = Command::RenewLease {
            id: id.to_owned(),
            node: ctx.node_id.clone(),
            attempt,
            lease_until: ctx.clock.now_ms() + ctx.engine.lease_ms(),
        };
        let ctx = ctx.clone();
        match blocking(move || ctx.apply(&command)).await {
            Ok(o) if o.rows_changed == 0 => return,
            Ok(_) => {}
            // The store is briefly unavailable: keep working; the lease
            // still runs and the next renewal may succeed.
            Err(e) => tracing::warn!(event = %id, error = %e, "cannot renew the lease"),
        }
    }
}
