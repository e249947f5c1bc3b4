//! Folder monitors: watch local directories (change notifications plus a
//! periodic rescan, since notifications are missed on network filesystems),
//! and ingest each matching file once its size and mtime have stayed the
//! same for the monitor's stable time. Runs only on the primary.
//!
//! Ingest copies the file into the account's folder (partial name, synced,
//! renamed), writes the transfer-log row (which queues route events), and
//! only then removes the source. The row's id is derived from the monitor,
//! name, size and mtime, so a crash between the row and the removal does
//! not ingest the file twice. Files are only copied, never run or parsed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::engine::{derived_id, glob_matches};
use ferry_core::{Direction, FerryError, Monitor, Protocol, TransferRecord, TransferStatus};
use notify::Watcher;
use tokio::sync::{mpsc, watch};

use ferry_worker::Worker;

use super::{actions, PrimaryRole};
use crate::session::blocking;
use crate::ServerCtx;

/// What a monitor remembers of a file it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i128,
    since: i64,
}

/// Runs the folder monitors while this node is the primary.
pub async fn run(ctx: Arc<ServerCtx>, mut primary: watch::Receiver<PrimaryRole>, w: Worker) {
    loop {
        let is_primary = matches!(*primary.borrow_and_update(), PrimaryRole::Primary { .. });
        if !is_primary {
            w.standby("another server is the primary");
            match w.until_stopped(primary.changed()).await {
                Some(Ok(())) => continue,
                None | Some(Err(_)) => return,
            }
        }
        tracing::info!("folder monitors running (this node is the primary)");
        w.busy("watching the monitored folders");
        tokio::select! {
            _ = serve(&ctx) => {}
            _ = primary.changed() => tracing::info!("folder monitors stopped (primary role changed)"),
            _ = w.stopping() => return,
        }
    }
}

async fn serve(ctx: &Arc<ServerCtx>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .map_err(|e| tracing::warn!(error = %e, "change notifications unavailable; rescanning only"))
    .ok();
    let mut watched: Vec<PathBuf> = Vec::new();
    let mut seen: HashMap<(String, String), Seen> = HashMap::new();
    let rescan = Duration::from_secs(ctx.engine.monitor_rescan_secs.clamp(1, 3600));
    loop {
        let monitors = {
            let store = ctx.store.clone();
            blocking(move || store.monitors().map_err(FerryError::from)).await
        };
        let monitors = match monitors {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read folder monitors");
                Vec::new()
            }
        };
        if let Some(w) = watcher.as_mut() {
            for m in &monitors {
                let dir = PathBuf::from(&m.dir);
                if !watched.contains(&dir)
                    && w.watch(&dir, notify::RecursiveMode::NonRecursive).is_ok()
                {
                    watched.push(dir);
                }
            }
        }
        seen.retain(|(name, _), _| monitors.iter().any(|m| &m.name == name));
        // The soonest time a file being watched may become stable.
        let mut wake = rescan;
        for m in &monitors {
            match scan(ctx, m, &mut seen).await {
                Ok(Some(soon)) => wake = wake.min(soon),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(monitor = %m.name, error = %e, "folder monitor scan failed")
                }
            }
        }
        tokio::select! {
            _ = rx.recv() => {
                // Coalesce a burst of notifications.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(wake) => {}
        }
    }
}

/// Scans one monitor's directory, ingesting stable files. Returns how soon
/// a file still settling may become stable.
async fn scan(
    ctx: &Arc<ServerCtx>,
    monitor: &Monitor,
    seen: &mut HashMap<(String, String), Seen>,
) -> Result<Option<Duration>, FerryError> {
    let dir = PathBuf::from(&monitor.dir);
    let pattern = monitor.pattern.clone();
    let files = blocking(move || list_candidates(&dir, &pattern)).await?;
    let now = ctx.clock.now_ms();
    let mut soonest: Option<Duration> = None;
    let present: Vec<String> = files.iter().map(|(n, _, _)| n.clone()).collect();
    seen.retain(|(m, name), _| m != &monitor.name || present.contains(name));
    for (name, size, mtime_ns) in files {
        let key = (monitor.name.clone(), name.clone());
        let entry = seen.entry(key.clone()).or_insert(Seen {
            size,
            mtime_ns,
            since: now,
        });
        if entry.size != size || entry.mtime_ns != mtime_ns {
            *entry = Seen {
                size,
                mtime_ns,
                since: now,
            };
        }
        let waited = now - entry.since;
        let stable_ms = monitor.stable_ms as i64;
        if waited < stable_ms {
            let left = Duration::from_millis((stable_ms - waited) as u64);
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
            continue;
        }
        match ingest(ctx, monitor, &name, size, mtime_ns).await {
            Ok(()) => {
                seen.remove(&key);
            }
            Err(e) => {
                tracing::warn!(monitor = %monitor.name, file = %name, error = %e, "could not ingest")
            }
        }
    }
    Ok(soonest)
}

/// Regular files (not symlinks, not dotfiles) of `dir` matching `pattern`,
/// with size and mtime.
fn list_candidates(dir: &Path, pattern: &str) -> Result<Vec<(String, u64, i128)>, FerryError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| {
        FerryError::unavailable(format!(
            "cannot read monitored directory {}: {e}",
            dir.display()
        ))
    })?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !glob_matches(pattern, &name) {
            continue;
        }
        // symlink_metadata: a symlink is never followed out of the folder.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        out.push((name, meta.len(), mtime_ns));
    }
    out.sort();
    Ok(out)
}

async fn ingest(
    ctx: &Arc<ServerCtx>,
    monitor: &Monitor,
    name: &str,
    size: u64,
    mtime_ns: i128,
) -> Result<(), FerryError> {
    let started = ctx.clock.now_ms();
    let id = derived_id(&[
        "monitor",
        &monitor.name,
        name,
        &size.to_string(),
        &mtime_ns.to_string(),
    ]);
    let source = PathBuf::from(&monitor.dir).join(name);
    let path = if monitor.target_dir.ends_with('/') {
        format!("{}{name}", monitor.target_dir)
    } else {
        format!("{}/{name}", monitor.target_dir)
    };
    let (c, m, src, p, tid) = (
        ctx.clone(),
        monitor.clone(),
        source.clone(),
        path.clone(),
        id.clone(),
    );
    let copied = blocking(move || {
        if c.store.transfer(&tid).map_err(FerryError::from)?.is_some() {
            // Ingested before a crash or restart; only the removal is left.
            return Ok(None);
        }
        let home = actions::account_home(&c, &m.account)?;
        let target = actions::place_in_home(&home, &p)?;
        let source = fs::File::open(&src).map_err(crate::repository::io_error)?;
        actions::copy_file_atomically(source, &target).map(Some)
    })
    .await?;
    if let Some((bytes, sha256)) = copied {
        if bytes != size {
            // It changed while we copied: not stable after all. The copy
            // stays (it is complete as read); the next scan sees a new
            // version and ingests it again.
            tracing::warn!(monitor = %monitor.name, file = %name, "file changed while being ingested");
        }
        let row = TransferRecord {
            id,
            account: monitor.account.clone(),
            protocol: Protocol::Monitor,
            direction: Direction::Upload,
            path: path.clone(),
            bytes,
            size: Some(bytes),
            sha256: Some(sha256),
            started_at: started,
            ended_at: ctx.clock.now_ms(),
            status: TransferStatus::Completed,
            node: ctx.node_id.clone(),
            client_addr: format!("monitor {}", monitor.name),
            error: None,
            partner: None,
            event_id: None,
        };
        // Logging the row queues its route events and wakes the workers.
        crate::rows::log_transfer(ctx, row).await?;
        if bytes != size {
            return Ok(());
        }
    }
    blocking(move || fs::remove_file(&source).map_err(crate::repository::io_error)).await?;
    tracing::info!(monitor = %monitor.name, file = %name, account = %monitor.account, %path, "ingested");
    ctx.metrics.ingested(&monitor.name);
    Ok(())
}
