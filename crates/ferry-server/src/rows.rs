//! Transfer-log rows of transfers that end on this server: logged through
//! the cluster ([`log_transfer`]), written first as an upload intent so a
//! file never stands in a home without its row ([`UPLOAD_INTENT`],
//! [`recover_upload_intents`]), and kept on this node as pending rows while
//! the cluster cannot take them ([`PENDING_ROW`], [`flush_pending_rows`]).

use std::sync::Arc;

use ferry_core::{
    Command, Direction, ErrorKind, FerryError, Protocol, TransferRecord, TransferStatus,
};

use ferry_proto::message::HashAlgorithm;

use crate::repository::io_error;
use crate::session::{blocking, parse};
use crate::transfer::{file_digest, now_millis};
use crate::{uploads, ServerCtx};

/// Prefix of node-local keys holding transfer-log rows not yet replicated.
pub(crate) const PENDING_ROW: &str = "pending-transfer:";

/// Prefix of node-local keys holding the row of an upload that is being
/// committed: written (synchronously) before the partial file is renamed
/// to its name, removed once the row is logged or waits as a
/// [`PENDING_ROW`]. A server that died in between finds it at its next
/// start ([`recover_upload_intents`]): the upload's file under its name
/// with the row's size and SHA-256 means the rename happened, and the row
/// is logged then, so no file stays in a home without its row.
pub(crate) const UPLOAD_INTENT: &str = "upload-intent:";

/// The most logged intents kept for removal before they are removed on
/// their own (they are removed with the next intent written, or by the
/// pending-rows worker within 2 s).
const MAX_LOGGED_INTENTS: usize = 256;

/// Writes an upload's intent, durably, before its partial file is renamed
/// to its name. The same commit removes the intents of uploads whose rows
/// were logged since the last one ([`forget_intent`]).
pub(crate) fn write_intent(ctx: &ServerCtx, record: &TransferRecord) -> Result<(), FerryError> {
    let text = serde_json::to_string(record).map_err(|e| FerryError::internal(e.to_string()))?;
    let logged = std::mem::take(&mut *lock(&ctx.logged_intents));
    ctx.store
        .set_local_removing(&format!("{UPLOAD_INTENT}{}", record.id), &text, &logged)
        .map_err(|e| {
            // Not removed: they go with the next intent or sweep.
            lock(&ctx.logged_intents).extend(logged);
            FerryError::new(
                ErrorKind::Unavailable,
                format!("could not commit the upload: {e}"),
            )
        })
}

/// Removes an upload's intent at once (its rename was undone, or failed).
pub(crate) fn remove_intent(ctx: &ServerCtx, id: &str) {
    if let Err(e) = ctx.store.remove_local(&format!("{UPLOAD_INTENT}{id}")) {
        // Harmless: the next start finds the row logged already.
        tracing::warn!(transfer = %id, error = %e, "could not remove an upload's commit intent");
    }
}

/// The row of the upload is logged (or waits as a [`PENDING_ROW`]): its
/// intent may go. It is not removed now, which would cost a commit that
/// waits for the disk per upload, but with the next intent written or by
/// [`sweep_logged_intents`]. A server that stops before finds the intent at
/// its next start, sees the file under its name, and logs the row again,
/// which keeps one row (rows are inserted by id).
pub(crate) fn forget_intent(ctx: &ServerCtx, id: &str) {
    let mut logged = lock(&ctx.logged_intents);
    logged.push(format!("{UPLOAD_INTENT}{id}"));
    if logged.len() > MAX_LOGGED_INTENTS {
        // A burst with no upload after it: the worker's next sweep takes
        // them; bound the list meanwhile by dropping the oldest (their
        // intents are removed at the next start, after the row check).
        let excess = logged.len() - MAX_LOGGED_INTENTS;
        logged.drain(..excess);
    }
}

/// Removes the intents [`forget_intent`] kept, in one commit.
pub(crate) fn sweep_logged_intents(ctx: &ServerCtx) {
    let logged = std::mem::take(&mut *lock(&ctx.logged_intents));
    if logged.is_empty() {
        return;
    }
    if let Err(e) = ctx.store.remove_locals(&logged) {
        tracing::warn!(error = %e, "could not remove the commit intents of logged uploads");
        lock(&ctx.logged_intents).extend(logged);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// At start, before sessions are served: every upload this server was
/// committing when it stopped. One whose file is under its name with the
/// intended size and SHA-256 was renamed, so its row becomes a
/// [`PENDING_ROW`] (logged by [`flush_pending_rows`]; logging a row twice
/// keeps one). Otherwise the rename never happened, the client was never
/// told the upload succeeded, and the partial file stays for a resume.
/// Returns how many rows were recovered.
pub(crate) fn recover_upload_intents(ctx: &ServerCtx) -> Result<usize, FerryError> {
    let mut recovered = 0;
    for (key, text) in ctx
        .store
        .locals_with_prefix(UPLOAD_INTENT)
        .map_err(FerryError::from)?
    {
        let record: TransferRecord =
            serde_json::from_str(&text).map_err(|e| FerryError::internal(format!("{key}: {e}")))?;
        let renamed = (|| -> Result<bool, FerryError> {
            let home = crate::engine::actions::account_home(ctx, &record.account)?;
            let (file, meta) = home.read_file(&parse(&record.path)?)?;
            if Some(meta.len()) != record.size {
                return Ok(false);
            }
            let sha = file_digest(&file, HashAlgorithm::Sha256).map_err(io_error)?;
            Ok(Some(&sha) == record.sha256.as_ref())
        })()
        .unwrap_or(false);
        if renamed {
            ctx.store
                .set_local(&format!("{PENDING_ROW}{}", record.id), &text)
                .map_err(FerryError::from)?;
            recovered += 1;
            tracing::warn!(
                transfer = %record.id, account = %record.account, path = %record.path,
                "an upload committed just before this server stopped gets its transfer-log row now"
            );
        }
        ctx.store.remove_local(&key).map_err(FerryError::from)?;
    }
    Ok(recovered)
}

/// Proposes the transfer-log rows that wait on this node (rows that waited
/// for a quorum in active/active, rows of uploads recovered at start),
/// oldest first; each is removed once the store has it. Runs in every mode.
pub(crate) async fn flush_pending_rows(ctx: Arc<ServerCtx>, w: ferry_worker::Worker) {
    w.idle();
    while w.sleep(std::time::Duration::from_secs(2)).await {
        // A row that waited here is a fact about this server: it goes into
        // its own store where the store is its own (an active/passive
        // standby too, which may stay standby for good: the active
        // server's history pull brings the row and its route events over,
        // rows insert-once by id, events by progress), and is proposed
        // where the store is the group's, once the group takes writes.
        let c = ctx.clone();
        let flushed = blocking(move || {
            sweep_logged_intents(&c);
            let pending = c
                .store
                .locals_with_prefix(PENDING_ROW)
                .map_err(FerryError::from)?;
            let mut n = 0;
            for (key, text) in pending {
                let record: TransferRecord = serde_json::from_str(&text)
                    .map_err(|e| FerryError::internal(format!("{key}: {e}")))?;
                let command = Command::RecordTransfer(record);
                match c.cluster.apply_about_self(&command) {
                    Ok(_) => {}
                    Err(e) if e.kind == ferry_core::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                c.store.remove_local(&key).map_err(FerryError::from)?;
                n += 1;
            }
            Ok(n)
        })
        .await;
        match flushed {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    rows = n,
                    "transfer-log rows that waited for a quorum are replicated"
                );
                w.done_one();
            }
            Err(e) => {
                tracing::debug!(error = %e, "pending transfer-log rows wait");
                w.error(e);
            }
        }
    }
}

/// Writes a transfer-log row. The error says the log is unavailable; the
/// caller must not acknowledge the transfer then.
pub(crate) async fn log_transfer(
    ctx: &Arc<ServerCtx>,
    record: TransferRecord,
) -> Result<(), FerryError> {
    note_transfer(ctx, &record);
    let writer = ctx.clone();
    let written = blocking(move || write_row(&writer, &record, false)).await;
    row_written(ctx, written)
}

/// Logs and counts a transfer whose row is about to be written.
pub(crate) fn note_transfer(ctx: &ServerCtx, record: &TransferRecord) {
    tracing::info!(
        account = %record.account, path = %record.path, direction = %record.direction,
        bytes = record.bytes, status = %record.status, "transfer"
    );
    ctx.metrics.transfer(record);
}

/// Writes a transfer-log row, on the blocking pool: the rows changed (0
/// where the row waits on this node as a [`PENDING_ROW`]). `covered` is
/// for the row of an upload whose intent holds it durably already
/// ([`ServerCtx::apply_covered_row`]). The caller ends with
/// [`row_written`].
pub(crate) fn write_row(
    ctx: &ServerCtx,
    record: &TransferRecord,
    covered: bool,
) -> Result<usize, FerryError> {
    let command = Command::RecordTransfer(record.clone());
    let applied = if covered {
        ctx.apply_covered_row(&command)
    } else {
        ctx.apply(&command)
    };
    match applied {
        // The cluster cannot take the row now (no quorum, or this
        // server fell behind), or may have taken it without saying so
        // (outcome unknown; a row logged twice is kept once). A
        // download still completed, and so did an upload whose file is
        // already committed under its name:
        // the row waits on this node's disk (synchronous, like the
        // store) and is proposed when the cluster takes writes again,
        // never dropped; its routes run then. The client is told what
        // happened: the file is stored. (A row that did reach the log
        // meanwhile is recorded once: rows are inserted by id.)
        Err(e)
            if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::OutcomeUnknown)
                && ctx.cluster.row_policy() == ferry_cluster::RowPolicy::Replicated
                && (record.direction == Direction::Download
                    || record.status == TransferStatus::Completed) =>
        {
            let text =
                serde_json::to_string(record).map_err(|e| FerryError::internal(e.to_string()))?;
            ctx.store
                .set_local(&format!("{PENDING_ROW}{}", record.id), &text)
                .map_err(FerryError::from)?;
            tracing::warn!(transfer = %record.id, "no quorum: the transfer-log row waits on this node");
            Ok(0)
        }
        other => other.map(|outcome| outcome.rows_changed),
    }
}

/// What [`write_row`] returned, as the transfer's answer: wakes the
/// workers for the route events the row queued, and words a failure.
pub(crate) fn row_written(
    ctx: &ServerCtx,
    written: Result<usize, FerryError>,
) -> Result<(), FerryError> {
    match &written {
        // Rows beyond the transfer's own are route events: let idle
        // workers look (and leave them asleep when no route matched).
        Ok(rows) if *rows > 1 => ctx.engine_wake.notify_waiters(),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not write the transfer log"),
    }
    written.map(|_| ()).map_err(|e| {
        // A cluster without a quorum is a passing state: say so, so that
        // an event's work is retried rather than failed.
        let kind = if e.kind == ErrorKind::Unavailable {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        FerryError::new(kind, format!("transfer log unavailable: {}", e.message))
    })
}

/// The transfer-log row of a resumable upload that ended (committed,
/// cancelled or expired).
pub(crate) fn upload_row(
    ctx: &ServerCtx,
    account: &str,
    record: &uploads::Record,
    status: TransferStatus,
    sha256: Option<String>,
    error: Option<String>,
) -> TransferRecord {
    TransferRecord {
        id: record.transfer_id.clone(),
        account: account.to_owned(),
        protocol: Protocol::Https,
        direction: Direction::Upload,
        path: record.path.clone(),
        bytes: record.offset,
        size: sha256.as_ref().map(|_| record.length),
        sha256,
        started_at: record.created_at,
        ended_at: now_millis(),
        status,
        node: ctx.node_id.clone(),
        client_addr: record.client_addr.clone(),
        error,
        partner: None,
        event_id: None,
    }
}
