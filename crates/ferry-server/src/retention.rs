//! Retention: the primary's worker that runs the retention policies, the
//! run itself (also started, or dry-run, through the admin API), and the
//! admin endpoints of policies and transfer reports.
//!
//! History rows go through the cluster as [`Command::PurgeHistory`]
//! commands, each carrying its cutoff (the engine clock, `ctx.clock`,
//! minus the policy's age) and a batch limit, so every server deletes the
//! same rows; between two batches the run pauses
//! (`[engine] retention_pause_ms`), so it never holds the store for long.
//! Files are not replicated state: a `files` policy deletes or archives
//! the files of its folder once, on the shared repository, and a
//! `partials` policy removes the partial uploads and scratch files left
//! behind (never one a writer holds locked).
//!
//! Where each server's store is its own (active/passive: history arrives
//! by pull, not by command), a server that is not the primary trims its
//! own copy of the history by the same policies, through
//! [`ferry_cluster::Cluster::apply_about_self`]; files are the primary's
//! alone.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use ferry_api as api;
use ferry_core::retention::{parse_age, FileAction, RetentionKind, RetentionPolicy};
use ferry_core::{Command, FerryError, VirtualPath};
use ferry_store::ReportBy;
use ferry_worker::Worker;
use tokio::sync::watch;

use crate::admin::{done, run as on_blocking, AdminState, ApiError, Reply, Routes};
use crate::engine::actions::account_home;
use crate::engine::PrimaryRole;
use crate::repository::Home;
use crate::session::blocking;
use crate::ServerCtx;

type ApiResult<T> = Result<T, ApiError>;

/// The most items one policy's result lists.
const SHOW: u32 = 1_000;

/// What a retention run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Everything the policies say, history through the cluster.
    Full,
    /// Lists what a full run would remove; removes nothing.
    Dry,
    /// Only the history policies, on this server's own store (a server
    /// that is not the primary, where each store is its own).
    OwnHistory,
}

/// Runs the retention policies every `[engine] retention_interval_secs`
/// while this node is the primary; where its store is its own, a server
/// that is not the primary trims its own history meanwhile.
pub async fn run(ctx: Arc<ServerCtx>, mut primary: watch::Receiver<PrimaryRole>, w: Worker) {
    let every = Duration::from_secs(ctx.engine.retention_interval_secs.clamp(1, 7 * 86_400));
    let own_store = !ctx.cluster.store_is_shared();
    loop {
        let is_primary = matches!(*primary.borrow_and_update(), PrimaryRole::Primary { .. });
        if !is_primary && !own_store {
            w.standby("another server is the primary");
            match w.until_stopped(primary.changed()).await {
                Some(Ok(())) => continue,
                None | Some(Err(_)) => return,
            }
        }
        w.idle();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = primary.changed() => continue,
            _ = w.stopping() => return,
        }
        let (kind, busy) = if is_primary {
            (RunKind::Full, "removing what the retention policies say")
        } else {
            (
                RunKind::OwnHistory,
                "trimming this server's own copy of the history",
            )
        };
        w.busy(busy);
        let same_role = {
            let primary = primary.clone();
            move || matches!(*primary.borrow(), PrimaryRole::Primary { .. }) == is_primary
        };
        match run_once(&ctx, kind, &same_role).await {
            Ok(_) => w.done_one(),
            Err(e) => {
                tracing::warn!(error = %e, "retention run failed");
                w.error(e);
            }
        }
    }
}

/// Runs every policy once (see [`RunKind`]), one run at a time on this
/// server. `go_on` is asked between batches: a run stops early when it
/// says no (the primary role moved).
pub async fn run_once(
    ctx: &Arc<ServerCtx>,
    kind: RunKind,
    go_on: &(dyn Fn() -> bool + Sync),
) -> Result<api::RetentionReport, FerryError> {
    let dry_run = kind == RunKind::Dry;
    let _one = ctx.retention_running.lock().await;
    let now = ctx.clock.now_ms();
    let mut policies = {
        let store = ctx.store.clone();
        blocking(move || store.retention_policies().map_err(FerryError::from)).await?
    };
    if kind == RunKind::OwnHistory {
        policies.retain(|p| p.kind.is_history());
    }
    let mut results = Vec::with_capacity(policies.len());
    for p in policies {
        let before = now.saturating_sub(p.older_than_ms);
        let mut result = api::RetentionResult {
            policy: p.name.clone(),
            kind: p.kind.to_string(),
            before: api::time(before),
            removed: 0,
            items: Vec::new(),
            error: None,
        };
        let outcome = match p.kind {
            history_kind if history_kind.is_history() => {
                history(ctx, history_kind, before, kind, go_on, &mut result).await
            }
            RetentionKind::Files => files(ctx, &p, before, dry_run, go_on, &mut result).await,
            _ => partials(ctx, &p, before, dry_run, &mut result).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(policy = %p.name, error = %e, "retention policy did not finish");
            result.error = Some(e.message);
        }
        if !dry_run && !p.kind.is_history() {
            // History rows are counted batch by batch.
            ctx.metrics
                .retention_removed(p.kind.as_str(), result.removed);
        }
        results.push(result);
        if !go_on() {
            break;
        }
    }
    let count = |kind: RetentionKind| -> u64 {
        results
            .iter()
            .filter(|r| r.kind == kind.as_str())
            .map(|r| r.removed)
            .sum()
    };
    if results.is_empty() {
        tracing::debug!(dry_run, "retention run: no policies");
    } else {
        tracing::info!(
            dry_run,
            own_history_only = kind == RunKind::OwnHistory,
            policies = results.len(),
            transfers = count(RetentionKind::Transfers),
            events = count(RetentionKind::Events),
            attempts = count(RetentionKind::Attempts),
            files = count(RetentionKind::Files),
            partials = count(RetentionKind::Partials),
            failed = results.iter().filter(|r| r.error.is_some()).count(),
            "retention run"
        );
    }
    if !dry_run {
        ctx.metrics.retention_ran(ctx.clock.now_ms());
    }
    Ok(api::RetentionReport {
        dry_run,
        at: api::time(now),
        results,
    })
}

/// The pause between two batches.
fn pause(ctx: &ServerCtx) -> Duration {
    Duration::from_millis(ctx.engine.retention_pause_ms.min(60_000))
}

/// Deletes a history policy's rows in batches (or lists them).
async fn history(
    ctx: &Arc<ServerCtx>,
    kind: RetentionKind,
    before: i64,
    run: RunKind,
    go_on: &(dyn Fn() -> bool + Sync),
    result: &mut api::RetentionResult,
) -> Result<(), FerryError> {
    if run == RunKind::Dry {
        let store = ctx.store.clone();
        let would = blocking(move || {
            store
                .purge_candidates(kind, before, SHOW)
                .map_err(FerryError::from)
        })
        .await?;
        result.removed = would.count;
        result.items = would.ids;
        return Ok(());
    }
    let limit = ctx.engine.retention_batch.clamp(1, 100_000);
    loop {
        let command = Command::PurgeHistory {
            kind,
            before,
            limit,
        };
        let c = ctx.clone();
        let deleted = blocking(move || match run {
            RunKind::OwnHistory => c.cluster.apply_about_self(&command),
            _ => c.apply(&command),
        })
        .await?
        .rows_changed;
        result.removed += deleted as u64;
        ctx.metrics.retention_removed(kind.as_str(), deleted as u64);
        if deleted < limit as usize || !go_on() {
            return Ok(());
        }
        tokio::time::sleep(pause(ctx)).await;
    }
}

/// Deletes or archives the files of a `files` policy's folder (or lists
/// them), a batch at a time.
async fn files(
    ctx: &Arc<ServerCtx>,
    p: &RetentionPolicy,
    before: i64,
    dry_run: bool,
    go_on: &(dyn Fn() -> bool + Sync),
    result: &mut api::RetentionResult,
) -> Result<(), FerryError> {
    let (Some(account), Some(folder), Some(action)) = (&p.account, &p.folder, &p.action) else {
        return Err(FerryError::invalid(
            "the policy names no account, folder or action",
        ));
    };
    let folder = VirtualPath::parse_absolute(folder)?;
    let (c, acc, dir) = (ctx.clone(), account.clone(), folder.clone());
    let (home, old) = blocking(move || {
        let home = account_home(&c, &acc)?;
        let old = match home.files_older_than(&dir, before) {
            Err(e) if e.kind == ferry_core::ErrorKind::NotFound => Vec::new(),
            other => other?,
        };
        Ok((home, old))
    })
    .await?;
    let paths: Vec<String> = old
        .into_iter()
        .map(|e| join(&folder.to_string(), &e.name))
        .collect();
    if dry_run {
        result.removed = paths.len() as u64;
        result.items = paths.into_iter().take(SHOW as usize).collect();
        return Ok(());
    }
    let batch = ctx.engine.retention_batch.clamp(1, 100_000) as usize;
    for (i, chunk) in paths.chunks(batch).enumerate() {
        if i > 0 {
            if !go_on() {
                break;
            }
            tokio::time::sleep(pause(ctx)).await;
        }
        let (home, chunk, action) = (home.clone(), chunk.to_vec(), action.clone());
        let gone = blocking(move || Ok(remove_or_archive(&home, &chunk, &action))).await?;
        result.removed += gone.len() as u64;
        let room = (SHOW as usize).saturating_sub(result.items.len());
        result.items.extend(gone.into_iter().take(room));
    }
    Ok(())
}

/// Deletes or archives `paths` of `home`; those it did.
fn remove_or_archive(home: &Home, paths: &[String], action: &FileAction) -> Vec<String> {
    let mut done = Vec::new();
    for path in paths {
        let outcome = (|| -> Result<(), FerryError> {
            let v = VirtualPath::parse_absolute(path)?;
            match action {
                FileAction::Delete => home.remove(&v),
                FileAction::Archive { dir } => {
                    let dir_v = VirtualPath::parse_absolute(dir)?;
                    home.create_dir_all(&dir_v)?;
                    let name = path.rsplit('/').next().unwrap_or_default();
                    let to = VirtualPath::parse_absolute(&join(dir, name))?;
                    match home.rename(&v, &to, false) {
                        Err(e) if e.kind == ferry_core::ErrorKind::AlreadyExists => {
                            // Never over an archived file: this one gets
                            // the time it was archived after its name.
                            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
                            let to = VirtualPath::parse_absolute(&join(
                                dir,
                                &format!("{name}.{stamp}"),
                            ))?;
                            home.rename(&v, &to, false)
                        }
                        other => other,
                    }
                }
            }
        })();
        match outcome {
            Ok(()) => {
                tracing::debug!(%path, %action, "retention: file past its age");
                done.push(path.clone());
            }
            Err(e) => tracing::warn!(%path, error = %e, "retention: file not removed"),
        }
    }
    done
}

/// Removes the partial uploads and scratch files of a `partials` policy
/// (or lists them): of one home, or of the whole repository. A resumable
/// upload removed is logged `interrupted`, as when it expires.
async fn partials(
    ctx: &Arc<ServerCtx>,
    p: &RetentionPolicy,
    before: i64,
    dry_run: bool,
    result: &mut api::RetentionResult,
) -> Result<(), FerryError> {
    let (c, account) = (ctx.clone(), p.account.clone());
    let (mut found, uploads) = blocking(move || {
        let remove = !dry_run;
        let mut uploads = Vec::new();
        let found = match account {
            Some(account) => {
                let home = account_home(&c, &account)?;
                for record in crate::uploads::idle_before(&home, before, remove) {
                    uploads.push((account.clone(), String::new(), record));
                }
                home.sweep_leftovers(before, remove)?
            }
            None => {
                for acc in c.store.accounts().map_err(FerryError::from)? {
                    // Only homes with resumable uploads: opening a home
                    // would make the homes of accounts never logged in.
                    let dir = c
                        .repository
                        .join(&acc.home)
                        .join(crate::uploads::UPLOADS_DIR);
                    if !dir.is_dir() {
                        continue;
                    }
                    let Ok(home) = Home::open(&c.repository, &acc.home) else {
                        continue;
                    };
                    let prefix = format!("{}/", acc.home.trim_matches('/'));
                    for record in crate::uploads::idle_before(&home, before, remove) {
                        uploads.push((acc.name.clone(), prefix.clone(), record));
                    }
                }
                let root = rustix::fs::open(
                    &c.repository,
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| crate::repository::io_error(e.into()))?;
                crate::repository::sweep_leftovers(&root, before, remove)?
            }
        };
        Ok((found, uploads))
    })
    .await?;
    for (account, prefix, record) in uploads {
        found.push(format!(
            "{prefix}{}/{}",
            crate::uploads::UPLOADS_DIR,
            record.id
        ));
        if dry_run {
            continue;
        }
        tracing::info!(%account, upload = %record.id, policy = %p.name, "resumable upload removed by retention");
        let row = crate::rows::upload_row(
            ctx,
            &account,
            &record,
            ferry_core::TransferStatus::Interrupted,
            None,
            Some(format!(
                "upload left unfinished past retention policy {}; its data was removed",
                p.name
            )),
        );
        if let Err(e) = crate::rows::log_transfer(ctx, row).await {
            tracing::warn!(%account, upload = %record.id, error = %e, "cannot log the removed upload");
        }
    }
    found.sort();
    result.removed = found.len() as u64;
    result.items = found.into_iter().take(SHOW as usize).collect();
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

// ---- the admin API ----

/// The routes of retention and reports, merged into the admin router.
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::ListRetentionPolicies, _, _>(list_policies)
        .add::<api::SetRetentionPolicy, _, _>(set_policy)
        .add::<api::RemoveRetentionPolicy, _, _>(remove_policy)
        .add::<api::RunRetention, _, _>(run_now)
        .add::<api::ReportTransfers, _, _>(report_transfers)
}

async fn list_policies(
    State(s): State<AdminState>,
) -> ApiResult<Reply<api::ListRetentionPolicies>> {
    on_blocking(move || {
        let policies = s.ctx.store.retention_policies().map_err(FerryError::from)?;
        Ok(Reply(policies.into_iter().map(Into::into).collect()))
    })
    .await
}

async fn set_policy(
    State(s): State<AdminState>,
    Json(body): Json<api::NewRetentionPolicy>,
) -> ApiResult<Reply<api::SetRetentionPolicy>> {
    let kind: RetentionKind = body.kind.parse()?;
    let folder = body
        .folder
        .as_deref()
        .map(|f| VirtualPath::parse_absolute(f).map(|v| v.to_string()))
        .transpose()
        .map_err(FerryError::from)?;
    let policy = RetentionPolicy {
        name: body.name,
        kind,
        older_than_ms: parse_age(&body.older_than)?,
        account: body.account,
        folder,
        action: body.action.as_deref().map(str::parse).transpose()?,
        created_at: crate::transfer::now_millis(),
    };
    policy.check()?;
    on_blocking(move || {
        if let Some(account) = &policy.account {
            crate::admin::existing_account(&s.ctx, account)?;
        }
        s.ctx.apply(&Command::SetRetentionPolicy(policy.clone()))?;
        Ok(Reply(policy.into()))
    })
    .await
}

async fn remove_policy(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveRetentionPolicy>> {
    on_blocking(move || s.ctx.apply(&Command::RemoveRetentionPolicy { name })).await?;
    Ok(done())
}

async fn run_now(
    State(s): State<AdminState>,
    Json(body): Json<api::RetentionRun>,
) -> ApiResult<Reply<api::RunRetention>> {
    if !body.dry_run {
        s.ctx.check_writable()?;
    }
    let kind = if body.dry_run {
        RunKind::Dry
    } else {
        RunKind::Full
    };
    let report = run_once(&s.ctx, kind, &|| true).await?;
    Ok(Reply(report))
}

async fn report_transfers(
    State(s): State<AdminState>,
    Query(q): Query<api::ReportQuery>,
) -> ApiResult<Reply<api::ReportTransfers>> {
    let by_name = q.by.unwrap_or_else(|| "account".into());
    let by = match by_name.as_str() {
        "account" => ReportBy::Account,
        "partner" => ReportBy::Partner,
        "route" => ReportBy::Route,
        other => {
            return Err(
                FerryError::invalid(format!("by {other:?}: use account, partner or route")).into(),
            )
        }
    };
    let per = q.per.unwrap_or_else(|| "day".into());
    let period_ms = match per.as_str() {
        "day" => 86_400_000,
        "hour" => 3_600_000,
        other => return Err(FerryError::invalid(format!("per {other:?}: use day or hour")).into()),
    };
    let now = crate::transfer::now_millis();
    let until = q.until.map_or(now, |t| api::unix_ms(&t));
    let since = q.since.map_or(now - 7 * 86_400_000, |t| api::unix_ms(&t));
    on_blocking(move || {
        let lines = s
            .ctx
            .store
            .transfer_report(by, period_ms, since, until)
            .map_err(FerryError::from)?;
        Ok(Reply(api::TransferReport {
            by: by_name,
            per,
            since: api::time(since),
            until: api::time(until),
            lines: lines
                .into_iter()
                .map(|l| api::ReportLine {
                    period: api::time(l.period),
                    group: l.group,
                    transfers: l.transfers,
                    completed: l.completed,
                    failures: l.failures,
                    bytes: l.bytes,
                })
                .collect(),
        }))
    })
    .await
}
