//! What events do: a route's actions on the file that arrived (push to a
//! partner, copy to another account, archive, rename), or a schedule's pull
//! or push of a folder. Every step is safe to run again after a crash:
//! pushes are idempotent (see `ferry_partner`), local moves recognise that
//! they already happened, and transfer-log rows have ids derived from the
//! event and step, so a repeated step writes no second row.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, Timelike};
use ferry_core::engine::{derived_id, expand_rename, glob_matches};
use ferry_core::{
    Action, AfterPull, Command, Direction, ErrorKind, Event, FerryError, Partner, Protocol,
    ScheduleAction, TransferRecord, TransferStatus, VirtualPath,
};
use ferry_partner::{PartnerAuth, PartnerError, PartnerSession, PartnerSpec, PutOutcome};
use sha2::{Digest, Sha256};

use crate::repository::{io_error, Home, Place};
use crate::session::blocking;
use crate::ServerCtx;

/// Why an attempt failed, and whether trying again later can help.
#[derive(Debug)]
pub struct ActionError {
    /// For the operator.
    pub message: String,
    /// A later attempt may succeed (partner down, connection lost).
    pub transient: bool,
}

impl ActionError {
    /// A failure that will happen again: no retry.
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure a later attempt may not meet.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }
}

impl From<FerryError> for ActionError {
    fn from(e: FerryError) -> Self {
        Self {
            // A change whose outcome is unknown is retried: every step is
            // safe to run again (rows by derived id, copies by rename).
            transient: matches!(
                e.kind,
                ErrorKind::Unavailable | ErrorKind::Busy | ErrorKind::OutcomeUnknown
            ),
            message: e.message,
        }
    }
}

impl From<PartnerError> for ActionError {
    fn from(e: PartnerError) -> Self {
        Self {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

type ActionResult<T> = Result<T, ActionError>;

/// Runs an event's work; the summary is logged.
pub async fn run_event(ctx: &Arc<ServerCtx>, event: &Event) -> ActionResult<String> {
    if event.kind == ferry_core::EventKind::Notify {
        return crate::notices::send(ctx, event).await;
    }
    if let Some(route) = &event.route {
        return run_route(ctx, event, route).await;
    }
    if let Some(schedule) = &event.schedule {
        let name = schedule.clone();
        let store = ctx.store.clone();
        let schedule = blocking(move || store.schedule(&name).map_err(FerryError::from))
            .await?
            .ok_or_else(|| ActionError::permanent(format!("schedule {schedule:?} was removed")))?;
        return match &schedule.action {
            ScheduleAction::Pull {
                partner,
                glob,
                account,
                dir,
            } => pull(ctx, event, partner, glob.as_deref(), account, dir).await,
            ScheduleAction::Push {
                partner,
                remote_dir,
                account,
                dir,
            } => push_folder(ctx, event, partner, remote_dir.as_deref(), account, dir).await,
        };
    }
    Err(ActionError::permanent(
        "the event names no route or schedule",
    ))
}

async fn run_route(ctx: &Arc<ServerCtx>, event: &Event, route: &str) -> ActionResult<String> {
    let name = route.to_owned();
    let store = ctx.store.clone();
    let route = blocking(move || store.route(&name).map_err(FerryError::from))
        .await?
        .ok_or_else(|| ActionError::permanent(format!("route {route:?} was removed")))?;
    let account = event
        .account
        .clone()
        .ok_or_else(|| ActionError::permanent("the event names no account"))?;
    let mut current = event
        .current_path
        .clone()
        .or_else(|| event.path.clone())
        .ok_or_else(|| ActionError::permanent("the event names no file"))?;
    let mut done = Vec::new();
    for (step, action) in route
        .actions
        .iter()
        .enumerate()
        .skip(event.steps_done as usize)
    {
        let step = step as u32;
        current = match action {
            Action::Push {
                partner,
                remote_dir,
            } => {
                push_one(
                    ctx,
                    event,
                    step,
                    &account,
                    &current,
                    partner,
                    remote_dir.as_deref(),
                )
                .await?;
                current
            }
            Action::Copy {
                account: target,
                dir,
            } => {
                copy_to_account(ctx, event, step, &account, &current, target, dir).await?;
                current
            }
            Action::Archive { dir } => move_in_home(ctx, &account, &current, dir, None).await?,
            Action::Rename { pattern } => {
                let name = file_name(&current)?;
                let when =
                    chrono::DateTime::from_timestamp_millis(event.created_at).unwrap_or_default();
                let new_name = expand_rename(
                    pattern,
                    &name,
                    [
                        when.year().max(0) as u32,
                        when.month(),
                        when.day(),
                        when.hour(),
                        when.minute(),
                        when.second(),
                    ],
                )?;
                let parent = parent_dir(&current);
                move_in_home(ctx, &account, &current, &parent, Some(&new_name)).await?
            }
        };
        done.push(action.to_string());
        progress(ctx, event, step + 1, &current).await?;
    }
    Ok(format!(
        "route {} on {}: {}",
        route.name,
        current,
        done.join(", ")
    ))
}

async fn progress(
    ctx: &Arc<ServerCtx>,
    event: &Event,
    steps_done: u32,
    current: &str,
) -> ActionResult<()> {
    let command = Command::EventProgress {
        id: event.id.clone(),
        node: ctx.node_id.clone(),
        attempt: event.attempts,
        steps_done,
        current_path: Some(current.to_owned()),
        now: ctx.clock.now_ms(),
    };
    let ctx = ctx.clone();
    let applied = blocking(move || ctx.apply(&command)).await?;
    if applied.rows_changed == 0 {
        return Err(ActionError {
            message: "the lease was lost while working".into(),
            transient: true,
        });
    }
    Ok(())
}

fn file_name(path: &str) -> ActionResult<String> {
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ActionError::permanent(format!("{path:?} names no file")))
}

fn parent_dir(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((parent, _)) => parent.to_owned(),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The home of `account`, with its virtual folders.
pub(crate) fn account_home(ctx: &ServerCtx, account: &str) -> Result<Home, FerryError> {
    let acc = crate::admin::existing_account(ctx, account)?;
    Home::of_account(&ctx.store, &ctx.repository, &acc.name, &acc.home)
}

/// `path` (a canonical path in a home) as a [`VirtualPath`].
pub(crate) fn virtual_path(path: &str) -> Result<VirtualPath, FerryError> {
    Ok(VirtualPath::parse_absolute(path)?)
}

/// Opens the regular file `path` of `account`'s home for reading.
fn open_in_home(ctx: &ServerCtx, account: &str, path: &str) -> Result<File, FerryError> {
    let (file, _) = account_home(ctx, account)?.read_file(&virtual_path(path)?)?;
    Ok(file)
}

/// The place of `path` in `home`, its folder created first if needed.
pub(crate) fn place_in_home(home: &Home, path: &str) -> Result<Place, FerryError> {
    let v = virtual_path(path)?;
    home.create_dir_all(&v.parent())?;
    home.place(&v)
}

/// Copies `input` to `output` while hashing it: (bytes, SHA-256 hex).
fn copy_hashing(mut input: impl Read, mut output: impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = crate::transfer::filled(&buf, n)?;
        hasher.update(chunk);
        output.write_all(chunk)?;
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// SHA-256 of a file, hex, and its size.
fn hash_file(mut file: &File) -> io::Result<(u64, String)> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    copy_hashing(file, io::sink())
}

/// Loads a partner and opens its sealed credentials.
async fn partner_spec(ctx: &Arc<ServerCtx>, name: &str) -> ActionResult<(Partner, PartnerSpec)> {
    let n = name.to_owned();
    let store = ctx.store.clone();
    let partner = blocking(move || store.partner(&n).map_err(FerryError::from))
        .await?
        .ok_or_else(|| ActionError::permanent(format!("partner {name:?} does not exist")))?;
    let spec = spec_of(ctx, &partner)?;
    Ok((partner, spec))
}

/// The connection settings of a partner, credentials unsealed.
pub fn spec_of(ctx: &ServerCtx, partner: &Partner) -> Result<PartnerSpec, FerryError> {
    let context = |field: &str| format!("partner {} {field}", partner.name);
    let auth = match (&partner.private_key_sealed, &partner.password_sealed) {
        (Some(key), password) => PartnerAuth::PrivateKey {
            openssh_pem: ctx.secrets.open(key, &context("private key"))?,
            passphrase: password
                .as_ref()
                .map(|p| ctx.secrets.open(p, &context("password")))
                .transpose()?,
        },
        (None, Some(password)) => {
            PartnerAuth::Password(ctx.secrets.open(password, &context("password"))?)
        }
        (None, None) => {
            return Err(FerryError::invalid(format!(
                "partner {} has neither a password nor a key",
                partner.name
            )))
        }
    };
    Ok(PartnerSpec {
        name: partner.name.clone(),
        host: partner.host.clone(),
        port: partner.port,
        username: partner.username.clone(),
        auth,
        host_key: partner.host_key.clone(),
        connect_timeout: ctx.engine.connect_timeout(),
        rate_limit: partner.rate_limit,
    })
}

/// Writes a transfer-log row (ignored if its id was written before).
async fn record(ctx: &Arc<ServerCtx>, row: TransferRecord) -> ActionResult<()> {
    crate::rows::log_transfer(ctx, row).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn partner_row(
    ctx: &ServerCtx,
    id: String,
    account: &str,
    path: &str,
    direction: Direction,
    partner: &Partner,
    event: &Event,
    started_at: i64,
    outcome: Result<(u64, String), String>,
) -> TransferRecord {
    let (status, bytes, sha256, error) = match outcome {
        Ok((bytes, sha)) => (TransferStatus::Completed, bytes, Some(sha), None),
        Err(e) => (TransferStatus::Failed, 0, None, Some(e)),
    };
    TransferRecord {
        id,
        account: account.to_owned(),
        protocol: Protocol::Sftp,
        direction,
        path: path.to_owned(),
        bytes,
        size: sha256.as_ref().map(|_| bytes),
        sha256,
        started_at,
        ended_at: ctx.clock.now_ms(),
        status,
        node: ctx.node_id.clone(),
        client_addr: format!("{}:{}", partner.host, partner.port),
        error,
        partner: Some(partner.name.clone()),
        event_id: Some(event.id.clone()),
    }
}

/// Pushes one file of an account to a partner, atomically and idempotently.
async fn push_one(
    ctx: &Arc<ServerCtx>,
    event: &Event,
    step: u32,
    account: &str,
    path: &str,
    partner_name: &str,
    remote_dir: Option<&str>,
) -> ActionResult<()> {
    let started = ctx.clock.now_ms();
    let (partner, spec) = partner_spec(ctx, partner_name).await?;
    let (acc, p) = (account.to_owned(), path.to_owned());
    let c = ctx.clone();
    let (local, size, sha) = blocking(move || {
        let file = open_in_home(&c, &acc, &p)?;
        let (size, sha) = hash_file(&file).map_err(|e| {
            let e = io_error(e);
            FerryError::new(e.kind, format!("cannot read {p}: {}", e.message))
        })?;
        Ok((file, size, sha))
    })
    .await?;
    let dir = remote_dir.unwrap_or(&partner.remote_dir).to_owned();
    let name = file_name(path)?;
    let tag = format!("{}-{step}", event.id);
    let pushed: Result<PutOutcome, PartnerError> = async {
        let session = PartnerSession::connect(&spec).await?;
        let put = session
            .put_open_file(local, Path::new(path), &dir, &name, &tag, &sha)
            .await;
        session.close().await;
        put
    }
    .await;
    match pushed {
        Ok(outcome) => {
            if outcome == PutOutcome::AlreadyPresent {
                tracing::info!(event = %event.id, partner = %partner.name, file = %name, "already on the partner; not sent again");
            }
            let row = partner_row(
                ctx,
                derived_id(&["push", &event.id, &step.to_string()]),
                account,
                path,
                Direction::Push,
                &partner,
                event,
                started,
                Ok((size, sha)),
            );
            record(ctx, row).await
        }
        Err(e) => {
            let row = partner_row(
                ctx,
                derived_id(&[
                    "push",
                    &event.id,
                    &step.to_string(),
                    &event.attempts.to_string(),
                ]),
                account,
                path,
                Direction::Push,
                &partner,
                event,
                started,
                Err(e.to_string()),
            );
            let _ = record(ctx, row).await;
            Err(e.into())
        }
    }
}

/// Copies `source` to `target` through a scratch file of its own (see
/// [`crate::repository::Scratch`]), synced, then renamed into place.
pub(crate) fn copy_file_atomically(
    source: File,
    target: &Place,
) -> Result<(u64, String), FerryError> {
    let mut scratch = target.create_scratch().map_err(io_error)?;
    let result = (|| {
        let copied = copy_hashing(source, &mut scratch.file)?;
        scratch.file.sync_all()?;
        target.commit_scratch(&scratch)?;
        Ok::<_, io::Error>(copied)
    })();
    if result.is_err() {
        let _ = target.remove_scratch(&scratch);
    }
    result.map_err(io_error)
}

async fn copy_to_account(
    ctx: &Arc<ServerCtx>,
    event: &Event,
    step: u32,
    account: &str,
    path: &str,
    target: &str,
    dir: &str,
) -> ActionResult<()> {
    let started = ctx.clock.now_ms();
    let name = file_name(path)?;
    let dest = join(dir, &name);
    let (c, acc, p, t, d, dest2) = (
        ctx.clone(),
        account.to_owned(),
        path.to_owned(),
        target.to_owned(),
        dir.to_owned(),
        dest.clone(),
    );
    let (bytes, sha) = blocking(move || {
        let source = open_in_home(&c, &acc, &p)?;
        let target_home = account_home(&c, &t)?;
        target_home.create_dir_all(&virtual_path(&d)?)?;
        copy_file_atomically(source, &target_home.place(&virtual_path(&dest2)?)?)
    })
    .await?;
    let row = TransferRecord {
        id: derived_id(&["copy", &event.id, &step.to_string()]),
        account: target.to_owned(),
        protocol: Protocol::Route,
        direction: Direction::Upload,
        path: dest,
        bytes,
        size: Some(bytes),
        sha256: Some(sha),
        started_at: started,
        ended_at: ctx.clock.now_ms(),
        status: TransferStatus::Completed,
        node: ctx.node_id.clone(),
        client_addr: format!("route from {account}:{path}"),
        error: None,
        partner: None,
        event_id: Some(event.id.clone()),
    };
    record(ctx, row).await
}

/// Moves a file of a home into `dir` (created if needed), under `new_name`
/// or its own name. Returns the new path. If the file is already gone and
/// the target exists, the move happened before (a retried step).
async fn move_in_home(
    ctx: &Arc<ServerCtx>,
    account: &str,
    path: &str,
    dir: &str,
    new_name: Option<&str>,
) -> ActionResult<String> {
    let name = match new_name {
        Some(n) => n.to_owned(),
        None => file_name(path)?,
    };
    let dest = join(dir, &name);
    let (c, acc, p, d, dest2) = (
        ctx.clone(),
        account.to_owned(),
        path.to_owned(),
        dir.to_owned(),
        dest.clone(),
    );
    blocking(move || {
        let home = account_home(&c, &acc)?;
        if p == dest2 {
            return Ok(());
        }
        let source = home.place(&virtual_path(&p)?)?;
        home.create_dir_all(&virtual_path(&d)?)?;
        let target = home.place(&virtual_path(&dest2)?)?;
        let file = Some(rustix::fs::FileType::RegularFile);
        match source.kind()? {
            kind if kind == file => {}
            Some(_) => return Err(FerryError::invalid(format!("{p} is not a regular file"))),
            None if target.kind()? == file => return Ok(()),
            None => return Err(FerryError::not_found(format!("{p} no longer exists"))),
        }
        source.rename_to(&target, true)?;
        target.sync_dir().map_err(io_error)
    })
    .await?;
    Ok(dest)
}

/// Pulls the partner's matching files into the account's folder. Each
/// version of a remote file (name, size, mtime) is pulled once: its
/// transfer id is derived from them. The remote file is deleted or moved
/// only after the local copy is committed and logged.
async fn pull(
    ctx: &Arc<ServerCtx>,
    event: &Event,
    partner_name: &str,
    glob: Option<&str>,
    account: &str,
    dir: &str,
) -> ActionResult<String> {
    let (partner, spec) = partner_spec(ctx, partner_name).await?;
    let session = PartnerSession::connect(&spec).await?;
    let result = pull_with(ctx, &session, event, &partner, glob, account, dir).await;
    session.close().await;
    result
}

async fn pull_with(
    ctx: &Arc<ServerCtx>,
    session: &PartnerSession,
    event: &Event,
    partner: &Partner,
    glob: Option<&str>,
    account: &str,
    dir: &str,
) -> ActionResult<String> {
    let remote_dir = partner.remote_dir.clone();
    let entries = session.list(&remote_dir).await?;
    let (mut pulled, mut skipped) = (0, 0);
    for entry in entries {
        if !entry.is_file
            || entry.name.starts_with('.')
            || !glob.is_none_or(|g| glob_matches(g, &entry.name))
        {
            continue;
        }
        // Names come from the partner's server: only a plain file name may
        // become a local path (dot names were skipped above).
        if entry.name.contains(['/', '\\']) || entry.name.chars().any(char::is_control) {
            tracing::warn!(partner = %partner.name, name = ?entry.name, "skipping a remote file with an unsafe name");
            continue;
        }
        let remote_path = join(&remote_dir, &entry.name);
        let id = derived_id(&[
            "pull",
            &partner.name,
            &remote_path,
            &entry.size.to_string(),
            &entry.mtime.to_string(),
        ]);
        let known = {
            let (store, id) = (ctx.store.clone(), id.clone());
            blocking(move || store.transfer(&id).map_err(FerryError::from)).await?
        };
        let local_path = join(dir, &entry.name);
        if known.is_none_or(|t| t.status != TransferStatus::Completed) {
            let started = ctx.clock.now_ms();
            let (c, acc, d, lp) = (
                ctx.clone(),
                account.to_owned(),
                dir.to_owned(),
                local_path.clone(),
            );
            let (place, scratch) = blocking(move || {
                let home = account_home(&c, &acc)?;
                home.create_dir_all(&virtual_path(&d)?)?;
                let place = home.place(&virtual_path(&lp)?)?;
                let scratch = place.create_scratch().map_err(io_error)?;
                Ok((place, scratch))
            })
            .await?;
            let file = scratch.file.try_clone().map_err(io_error)?;
            let got = session
                .get_into(&remote_path, file, Path::new(&local_path))
                .await;
            let (bytes, sha) = match got {
                Ok(v) => v,
                Err(e) => {
                    let _ = place.remove_scratch(&scratch);
                    return Err(e.into());
                }
            };
            blocking(move || {
                let committed = place.commit_scratch(&scratch);
                if committed.is_err() {
                    let _ = place.remove_scratch(&scratch);
                }
                committed.map_err(io_error)
            })
            .await?;
            let row = partner_row(
                ctx,
                id,
                account,
                &local_path,
                Direction::Pull,
                partner,
                event,
                started,
                Ok((bytes, sha)),
            );
            record(ctx, row).await?;
            pulled += 1;
        } else {
            skipped += 1;
        }
        match &partner.after_pull {
            AfterPull::Keep => {}
            AfterPull::Delete => session.remove(&remote_path).await?,
            AfterPull::Move(to) => {
                session.mkdir_all(to).await?;
                session.rename(&remote_path, &join(to, &entry.name)).await?
            }
        }
    }
    Ok(format!(
        "pulled {pulled} file(s) from {} ({skipped} already here)",
        partner.name
    ))
}

/// Pushes every file of an account's folder that was not sent in its
/// current version (size, mtime) to the partner.
async fn push_folder(
    ctx: &Arc<ServerCtx>,
    event: &Event,
    partner_name: &str,
    remote_dir: Option<&str>,
    account: &str,
    dir: &str,
) -> ActionResult<String> {
    let (partner, spec) = partner_spec(ctx, partner_name).await?;
    let (c, acc, d) = (ctx.clone(), account.to_owned(), dir.to_owned());
    let files = blocking(move || {
        let home = account_home(&c, &acc)?;
        let mut files = Vec::new();
        for entry in home.list(&virtual_path(&d)?)? {
            if entry.name.starts_with('.')
                || entry.stat.kind != ferry_proto::message::FileKind::File
            {
                continue;
            }
            let mtime =
                u128::from(entry.stat.mtime) * 1_000_000_000 + u128::from(entry.stat.mtime_nanos);
            files.push((entry.name, entry.stat.size, mtime));
        }
        files.sort();
        Ok(files)
    })
    .await?;
    let target_dir = remote_dir.unwrap_or(&partner.remote_dir).to_owned();
    let mut sent = 0;
    let mut session = None;
    for (step, (name, size, mtime)) in files.into_iter().enumerate() {
        let path = join(dir, &name);
        let id = derived_id(&[
            "push-folder",
            &partner.name,
            account,
            &path,
            &size.to_string(),
            &mtime.to_string(),
        ]);
        let known = {
            let (store, id) = (ctx.store.clone(), id.clone());
            blocking(move || store.transfer(&id).map_err(FerryError::from)).await?
        };
        if known.is_some() {
            continue;
        }
        if session.is_none() {
            session = Some(PartnerSession::connect(&spec).await?);
        }
        let Some(s) = session.as_ref() else { continue };
        let started = ctx.clock.now_ms();
        let (c, acc, p) = (ctx.clone(), account.to_owned(), path.clone());
        let (local, bytes, sha) = blocking(move || {
            let file = open_in_home(&c, &acc, &p)?;
            let (bytes, sha) = hash_file(&file).map_err(io_error)?;
            Ok((file, bytes, sha))
        })
        .await?;
        let tag = format!("{}-{step}", &id[..8]);
        s.put_open_file(local, Path::new(&path), &target_dir, &name, &tag, &sha)
            .await?;
        let row = partner_row(
            ctx,
            id,
            account,
            &path,
            Direction::Push,
            &partner,
            event,
            started,
            Ok((bytes, sha)),
        );
        record(ctx, row).await?;
        sent += 1;
    }
    if let Some(s) = session {
        s.close().await;
    }
    Ok(format!("pushed {sent} file(s) to {}", partner.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_errors_are_retried() {
        let transient = |kind| ActionError::from(FerryError::new(kind, "x")).transient;
        assert!(transient(ErrorKind::Unavailable));
        assert!(transient(ErrorKind::Busy));
        // The nemesis run found an event failed for good on an unknown
        // outcome of its progress write; it must be tried again.
        assert!(transient(ErrorKind::OutcomeUnknown));
        assert!(!transient(ErrorKind::NotFound));
        assert!(!transient(ErrorKind::PermissionDenied));
    }
}
