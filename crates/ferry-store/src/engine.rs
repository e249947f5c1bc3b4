//! The transfer engine's tables: applying its commands and reading them back.
//!
//! Leases are plain columns checked inside the applying transaction, so a
//! claim, a renewal or a finish either holds for the node that made it or
//! changes nothing (`rows_changed == 0`): two nodes never hold one event.

use crate::cached::Cached;
use ferry_core::engine::{derived_id, glob_matches};
use ferry_core::{
    AfterPull, AttemptResult, Command, Event, EventAttempt, EventKind, EventStatus, Monitor,
    Notice, Partner, Protocol, Route, Schedule, TransferRecord, TriggerKind, UnixMillis,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, Store, StoreError};

/// Filters for [`Store::events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events with this status.
    pub status: Option<EventStatus>,
    /// Only events of this account.
    pub account: Option<String>,
    /// Only events involving this partner.
    pub partner: Option<String>,
    /// Only events created at or after this time (unix ms).
    pub since: Option<i64>,
    /// At most this many rows, newest first (default 1000).
    pub limit: Option<u32>,
}

/// Which events a queue worker claims: notifications have workers of
/// their own, so a dead mail server never holds up a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane<'a> {
    /// Every event but notifications.
    Transfers,
    /// Notifications, but those to the endpoints named (the ones this
    /// server is sending to already), so one endpoint that hangs holds
    /// one worker, not all.
    Notices {
        /// Endpoints skipped.
        skip: &'a [String],
    },
}

impl Lane<'_> {
    /// The lane's SQL condition on `events`, and its parameters (numbered
    /// from `first`).
    fn condition(self, first: usize) -> (String, Vec<String>) {
        match self {
            Lane::Transfers => ("kind != 'notify'".to_owned(), Vec::new()),
            Lane::Notices { skip: [] } => ("kind = 'notify'".to_owned(), Vec::new()),
            Lane::Notices { skip } => {
                let marks: Vec<String> =
                    (0..skip.len()).map(|i| format!("?{}", first + i)).collect();
                (
                    format!(
                        "kind = 'notify' AND json_extract(notice, '$.endpoint') NOT IN ({})",
                        marks.join(", ")
                    ),
                    skip.to_vec(),
                )
            }
        }
    }
}

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Firing {
    /// The slot, unix ms.
    pub slot: UnixMillis,
    /// When it was fired.
    pub fired_at: UnixMillis,
    /// The node that fired it.
    pub node: String,
    /// The event it queued.
    pub event_id: String,
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_col<T: std::str::FromStr>(text: String) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{e}").into(),
        )
    })
}

pub(crate) fn exists(tx: &Connection, sql: &str, key: &str) -> Result<bool> {
    Ok(tx.row(sql, [key], |_| Ok(())).optional()?.is_some())
}

pub(crate) fn require(tx: &Connection, table: &str, what: &str, name: &str) -> Result<()> {
    let sql = format!("SELECT 1 FROM {table} WHERE name = ?1");
    if exists(tx, &sql, name)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("{what} {name:?}")))
    }
}

pub(crate) fn ensure_absent(tx: &Connection, table: &str, what: &str, name: &str) -> Result<()> {
    let sql = format!("SELECT 1 FROM {table} WHERE name = ?1");
    if exists(tx, &sql, name)? {
        return Err(StoreError::AlreadyExists(format!("{what} {name:?}")));
    }
    Ok(())
}

fn delete_named(tx: &Connection, table: &str, what: &str, name: &str) -> Result<usize> {
    let n = tx.exec(&format!("DELETE FROM {table} WHERE name = ?1"), [name])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("{what} {name:?}")));
    }
    Ok(n)
}

/// Applies an engine command inside `tx`. Returns the rows changed.
pub(crate) fn apply(tx: &Connection, command: &Command) -> Result<usize> {
    match command {
        Command::RecordTransfer(t) => record_transfer(tx, t),
        Command::RenameTransfer { id, path } => rename_transfer(tx, id, path),
        Command::AddPartner(p) => {
            ensure_absent(tx, "partners", "partner", &p.name)?;
            Ok(tx.exec(
                "INSERT INTO partners (name, host, port, username, password_sealed,
                   private_key_sealed, host_key, remote_dir, after_pull, rate_limit, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    p.name,
                    p.host,
                    p.port,
                    p.username,
                    p.password_sealed,
                    p.private_key_sealed,
                    p.host_key,
                    p.remote_dir,
                    p.after_pull.to_string(),
                    p.rate_limit.map(|r| r as i64),
                    p.created_at
                ],
            )?)
        }
        Command::RemovePartner { name } => {
            let users: Vec<String> = routes_in(tx)?
                .into_iter()
                .filter(|r| r.actions.iter().any(|a| a.partner() == Some(name)))
                .map(|r| format!("route {}", r.name))
                .chain(
                    schedules_in(tx)?
                        .into_iter()
                        .filter(|s| s.action.partner() == name)
                        .map(|s| format!("schedule {}", s.name)),
                )
                .collect();
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "partner {name:?} is used by {}; remove those first",
                    users.join(", ")
                )));
            }
            delete_named(tx, "partners", "partner", name)
        }
        Command::AddRoute(r) => {
            ensure_absent(tx, "routes", "route", &r.name)?;
            require(tx, "accounts", "account", &r.account)?;
            for action in &r.actions {
                match action {
                    ferry_core::Action::Push { partner, .. } => {
                        require(tx, "partners", "partner", partner)?
                    }
                    ferry_core::Action::Copy { account, .. } => {
                        require(tx, "accounts", "account", account)?
                    }
                    _ => {}
                }
            }
            Ok(tx.exec(
                "INSERT INTO routes (name, account, pattern, actions, max_attempts,
                   retry_base_ms, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    r.name,
                    r.account,
                    r.pattern,
                    json(&r.actions)?,
                    r.max_attempts,
                    r.retry_base_ms as i64,
                    r.created_at
                ],
            )?)
        }
        Command::RemoveRoute { name } => delete_named(tx, "routes", "route", name),
        Command::AddSchedule(s) => {
            ensure_absent(tx, "schedules", "schedule", &s.name)?;
            require(tx, "partners", "partner", s.action.partner())?;
            require(tx, "accounts", "account", s.action.account())?;
            Ok(tx.exec(
                "INSERT INTO schedules (name, cron, timezone, action, catch_up, max_attempts,
                   retry_base_ms, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.name,
                    s.cron,
                    s.timezone,
                    json(&s.action)?,
                    s.catch_up,
                    s.max_attempts,
                    s.retry_base_ms as i64,
                    s.created_at
                ],
            )?)
        }
        Command::RemoveSchedule { name } => delete_named(tx, "schedules", "schedule", name),
        Command::AddMonitor(m) => {
            ensure_absent(tx, "monitors", "monitor", &m.name)?;
            require(tx, "accounts", "account", &m.account)?;
            Ok(tx.exec(
                "INSERT INTO monitors (name, dir, pattern, account, target_dir, stable_ms,
                   created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    m.name,
                    m.dir,
                    m.pattern,
                    m.account,
                    m.target_dir,
                    m.stable_ms as i64,
                    m.created_at
                ],
            )?)
        }
        Command::RemoveMonitor { name } => delete_named(tx, "monitors", "monitor", name),
        Command::FireSchedule {
            schedule,
            slot,
            node,
            term,
            event,
        } => {
            require(tx, "schedules", "schedule", schedule)?;
            let n = tx.exec(
                "INSERT OR IGNORE INTO schedule_firings (schedule, slot, fired_at, node, term,
                   event_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    schedule,
                    slot,
                    event.created_at,
                    node,
                    *term as i64,
                    event.id
                ],
            )?;
            if n == 0 {
                return Ok(0);
            }
            insert_event(tx, event)?;
            Ok(n + 1)
        }
        Command::EnqueueEvent(e) => {
            if exists(tx, "SELECT 1 FROM events WHERE id = ?1", &e.id)? {
                return Err(StoreError::AlreadyExists(format!("event {}", e.id)));
            }
            insert_event(tx, e)
        }
        Command::ClaimEvent {
            id,
            node,
            now,
            lease_until,
        } => claim(tx, id, node, *now, *lease_until),
        Command::RenewLease {
            id,
            node,
            attempt,
            lease_until,
        } => Ok(tx.exec(
            "UPDATE events SET lease_until = ?4
             WHERE id = ?1 AND status = 'running' AND lease_node = ?2 AND attempts = ?3",
            params![id, node, attempt, lease_until],
        )?),
        Command::EventProgress {
            id,
            node,
            attempt,
            steps_done,
            current_path,
            now,
        } => Ok(tx.exec(
            "UPDATE events SET steps_done = ?4, current_path = ?5, updated_at = ?6
             WHERE id = ?1 AND status = 'running' AND lease_node = ?2 AND attempts = ?3",
            params![id, node, attempt, steps_done, current_path, now],
        )?),
        Command::FinishAttempt {
            id,
            node,
            attempt,
            now,
            result,
        } => finish(tx, id, node, *attempt, *now, result),
        // Only leases taken (or moved on) before `now`: a release that
        // waited for a quorum must not end the leases this run has taken
        // meanwhile, whose events would then run twice.
        Command::ReleaseNodeLeases { node, now } => Ok(tx.exec(
            "UPDATE events SET lease_until = ?2 - 1
             WHERE status = 'running' AND lease_node = ?1 AND updated_at < ?2",
            params![node, now],
        )?),
        other => crate::notify::apply(tx, other).unwrap_or_else(|| {
            Err(StoreError::Corrupt(format!(
                "command {} is not an engine command",
                command.name()
            )))
        }),
    }
}

/// Writes a transfer-log row once; a completed arrival queues one event per
/// matching route (ids derived from the transfer and route, so a replay
/// changes nothing).
fn record_transfer(tx: &Connection, t: &TransferRecord) -> Result<usize> {
    // A transfer id is written once, by the node that served it; a replayed
    // command leaves the first row as it was.
    let n = tx.exec(
        "INSERT OR IGNORE INTO transfers
           (id, account, protocol, direction, path, bytes, sha256, started_at,
            ended_at, status, node, client_addr, error, partner, event_id, format, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1, ?16)",
        params![
            t.id,
            t.account,
            t.protocol.as_str(),
            t.direction.as_str(),
            t.path,
            t.bytes as i64,
            t.sha256,
            t.started_at,
            t.ended_at,
            t.status.as_str(),
            t.node,
            t.client_addr,
            t.error,
            t.partner,
            t.event_id,
            t.size.map(|n| n as i64)
        ],
    )?;
    if n == 0 || waits_for_rename(t) {
        return Ok(n);
    }
    let raised = raise_transfer_done(tx, t)?;
    if !t.triggers_routes() {
        return Ok(n + raised);
    }
    Ok(n + raised + queue_route_events(tx, t)?)
}

/// Raises the `TransferDone` notices of a completed transfer (once per
/// rule and transfer id).
fn raise_transfer_done(tx: &Connection, t: &TransferRecord) -> Result<usize> {
    if t.status != ferry_core::TransferStatus::Completed {
        return Ok(0);
    }
    // A push or pull made by a route's event: the route is the event's.
    let route: Option<String> = match &t.event_id {
        Some(event) => tx
            .query_row("SELECT route FROM events WHERE id = ?1", [event], |r| {
                r.get(0)
            })
            .optional()?
            .flatten(),
        None => None,
    };
    let partner = t
        .partner
        .as_ref()
        .map(|p| format!(" with partner {p}"))
        .unwrap_or_default();
    let notice = Notice {
        at: t.ended_at,
        summary: format!(
            "{} {} of {} ({} bytes) by {} completed{partner}",
            t.protocol, t.direction, t.path, t.bytes, t.account
        ),
        account: Some(t.account.clone()),
        route,
        partners: t.partner.iter().cloned().collect(),
        file: Some(t.path.clone()),
        event_id: t.event_id.clone(),
        transfer_id: Some(t.id.clone()),
        bytes: Some(t.bytes),
        node: Some(t.node.clone()),
        ..Notice::default()
    };
    crate::notify::raise(
        tx,
        TriggerKind::TransferDone,
        &format!("transfer-done:{}", t.id),
        notice,
    )
}

/// An upload under a temporary name: its routes wait for the rename.
fn waits_for_rename(t: &TransferRecord) -> bool {
    t.direction == ferry_core::Direction::Upload
        && t.path
            .rsplit('/')
            .next()
            .is_some_and(ferry_core::path::is_temporary_upload_name)
}

/// Moves an upload's row from its temporary name to its final one and
/// queues the events of the routes that match the final name.
fn rename_transfer(tx: &Connection, id: &str, path: &str) -> Result<usize> {
    let Some(mut t) = tx
        .query_row(
            &format!(
                "SELECT {} FROM transfers WHERE id = ?1",
                crate::TRANSFER_COLUMNS
            ),
            params![id],
            crate::row_to_transfer,
        )
        .optional()?
    else {
        return Err(StoreError::NotFound(format!("transfer {id:?}")));
    };
    if !waits_for_rename(&t) || t.path == path {
        return Ok(0);
    }
    tx.exec(
        "UPDATE transfers SET path = ?2 WHERE id = ?1",
        params![id, path],
    )?;
    t.path = path.to_owned();
    if waits_for_rename(&t) {
        return Ok(1);
    }
    let raised = raise_transfer_done(tx, &t)?;
    if !t.triggers_routes() {
        return Ok(1 + raised);
    }
    Ok(1 + raised + queue_route_events(tx, &t)?)
}

/// Queues one event per route that matches a completed arrival, with ids
/// derived from the transfer and route (a replay changes nothing).
fn queue_route_events(tx: &Connection, t: &TransferRecord) -> Result<usize> {
    let kind = match (t.protocol, t.direction) {
        (_, ferry_core::Direction::Pull) => EventKind::Pull,
        (Protocol::Monitor, _) => EventKind::Monitor,
        _ => EventKind::Upload,
    };
    let mut rows = 0;
    for route in routes_in(tx)? {
        if route.account != t.account || !glob_matches(&route.pattern, &t.path) {
            continue;
        }
        let event = Event {
            id: derived_id(&["route", &t.id, &route.name]),
            kind,
            route: Some(route.name.clone()),
            schedule: None,
            slot: None,
            account: Some(t.account.clone()),
            path: Some(t.path.clone()),
            transfer_id: Some(t.id.clone()),
            partners: route
                .actions
                .iter()
                .filter_map(|a| a.partner().map(str::to_owned))
                .collect(),
            status: EventStatus::Pending,
            attempts: 0,
            max_attempts: route.max_attempts,
            retry_base_ms: route.retry_base_ms,
            next_at: t.ended_at,
            lease_node: None,
            lease_until: None,
            steps_done: 0,
            current_path: Some(t.path.clone()),
            created_at: t.ended_at,
            updated_at: t.ended_at,
            last_error: None,
            resubmit_of: None,
            notice: None,
        };
        rows += insert_event(tx, &event)?;
    }
    Ok(rows)
}

pub(crate) fn insert_event(tx: &Connection, e: &Event) -> Result<usize> {
    Ok(tx.exec(
        "INSERT INTO events (id, kind, route, schedule, slot, account, path, transfer_id,
           partners, status, attempts, max_attempts, retry_base_ms, next_at, lease_node,
           lease_until, steps_done, current_path, created_at, updated_at, last_error,
           resubmit_of, notice)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
           ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
        params![
            e.id,
            e.kind.as_str(),
            e.route,
            e.schedule,
            e.slot,
            e.account,
            e.path,
            e.transfer_id,
            e.partners.join(","),
            e.status.as_str(),
            e.attempts,
            e.max_attempts,
            e.retry_base_ms as i64,
            e.next_at,
            e.lease_node,
            e.lease_until,
            e.steps_done,
            e.current_path,
            e.created_at,
            e.updated_at,
            e.last_error,
            e.resubmit_of,
            e.notice.as_ref().map(json).transpose()?
        ],
    )?)
}

/// An event's status, attempts, max attempts, next_at, lease end and holder.
type ClaimRow = (String, u32, u32, i64, Option<i64>, Option<String>);

fn claim(
    tx: &Connection,
    id: &str,
    node: &str,
    now: UnixMillis,
    lease_until: UnixMillis,
) -> Result<usize> {
    let row: Option<ClaimRow> = tx
        .query_row(
            "SELECT status, attempts, max_attempts, next_at, lease_until, lease_node
             FROM events WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?;
    let Some((status, attempts, max_attempts, next_at, lease, holder)) = row else {
        return Err(StoreError::NotFound(format!("event {id}")));
    };
    match status.as_str() {
        "pending" if next_at <= now => {}
        "running" if lease.is_some_and(|l| l < now) => {
            // The holder stopped renewing (it died or was cut off): that
            // attempt is over.
            let holder = holder.unwrap_or_default();
            tx.exec(
                "UPDATE event_attempts SET ended_at = ?3, outcome = 'lease expired',
                   error = ?4
                 WHERE event_id = ?1 AND attempt = ?2 AND ended_at IS NULL",
                params![
                    id,
                    attempts,
                    now,
                    format!("node {holder} stopped renewing its lease")
                ],
            )?;
            if attempts >= max_attempts {
                tx.exec(
                    "UPDATE events SET status = 'failed', lease_node = NULL,
                       lease_until = NULL, updated_at = ?2,
                       last_error = 'the lease of the last attempt expired'
                     WHERE id = ?1",
                    params![id, now],
                )?;
                raise_for_event(tx, id, now, TriggerKind::EventFailed)?;
                return Ok(0);
            }
        }
        _ => return Ok(0),
    }
    tx.exec(
        "UPDATE events SET status = 'running', attempts = attempts + 1, lease_node = ?2,
           lease_until = ?3, updated_at = ?4
         WHERE id = ?1",
        params![id, node, lease_until, now],
    )?;
    tx.exec(
        "INSERT INTO event_attempts (event_id, attempt, node, started_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![id, attempts + 1, node, now],
    )?;
    Ok(1)
}

fn finish(
    tx: &Connection,
    id: &str,
    node: &str,
    attempt: u32,
    now: UnixMillis,
    result: &AttemptResult,
) -> Result<usize> {
    let (status, next_at, error, outcome) = match result {
        AttemptResult::Done => ("done", None, None, "done"),
        AttemptResult::Retry { next_at, error } => {
            ("pending", Some(*next_at), Some(error.as_str()), "retry")
        }
        AttemptResult::Failed { error } => ("failed", None, Some(error.as_str()), "failed"),
    };
    let n = tx.exec(
        "UPDATE events SET status = ?4, next_at = COALESCE(?5, next_at), last_error = ?6,
           lease_node = NULL, lease_until = NULL, updated_at = ?7
         WHERE id = ?1 AND status = 'running' AND lease_node = ?2 AND attempts = ?3",
        params![id, node, attempt, status, next_at, error, now],
    )?;
    if n == 0 {
        // The lease was lost: another node owns the event now.
        return Ok(0);
    }
    tx.exec(
        "UPDATE event_attempts SET ended_at = ?3, outcome = ?4, error = ?5
         WHERE event_id = ?1 AND attempt = ?2",
        params![id, attempt, now, outcome, error],
    )?;
    let raised = match result {
        AttemptResult::Done => 0,
        AttemptResult::Retry { .. } => raise_for_event(tx, id, now, TriggerKind::EventRetrying)?,
        AttemptResult::Failed { .. } => raise_for_event(tx, id, now, TriggerKind::EventFailed)?,
    };
    Ok(n + raised)
}

/// Raises the notices of an event's failed attempt (`EventRetrying`, once
/// per rule and event) or of its failure (`EventFailed`). A notification's
/// own failure raises nothing, so a dead endpoint cannot feed itself.
fn raise_for_event(tx: &Connection, id: &str, now: UnixMillis, kind: TriggerKind) -> Result<usize> {
    let Some(event) = tx
        .query_row(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
            [id],
            row_to_event,
        )
        .optional()?
    else {
        return Ok(0);
    };
    if event.kind == EventKind::Notify {
        return Ok(0);
    }
    let what = event
        .route
        .as_ref()
        .map(|r| format!("route {r}"))
        .or_else(|| event.schedule.as_ref().map(|s| format!("schedule {s}")))
        .unwrap_or_else(|| format!("event {id}"));
    let file = event
        .path
        .as_ref()
        .map(|p| format!(" on {p}"))
        .unwrap_or_default();
    let summary = match kind {
        TriggerKind::EventFailed => format!(
            "{what} failed{file} after {} attempt(s): {}",
            event.attempts,
            event.last_error.as_deref().unwrap_or("no error recorded")
        ),
        _ => format!(
            "{what}{file}: attempt {} failed, retrying: {}",
            event.attempts,
            event.last_error.as_deref().unwrap_or("no error recorded")
        ),
    };
    let key = format!("{}:{id}", kind.as_str());
    crate::notify::raise(
        tx,
        kind,
        &key,
        crate::notify::event_notice(&event, now, summary),
    )
}

const EVENT_COLUMNS: &str = "id, kind, route, schedule, slot, account, path, transfer_id,
    partners, status, attempts, max_attempts, retry_base_ms, next_at, lease_node, lease_until,
    steps_done, current_path, created_at, updated_at, last_error, resubmit_of, notice";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let partners: String = r.get(8)?;
    Ok(Event {
        id: r.get(0)?,
        kind: parse_col(r.get(1)?)?,
        route: r.get(2)?,
        schedule: r.get(3)?,
        slot: r.get(4)?,
        account: r.get(5)?,
        path: r.get(6)?,
        transfer_id: r.get(7)?,
        partners: partners
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        status: parse_col(r.get(9)?)?,
        attempts: r.get(10)?,
        max_attempts: r.get(11)?,
        retry_base_ms: r.get::<_, i64>(12)? as u64,
        next_at: r.get(13)?,
        lease_node: r.get(14)?,
        lease_until: r.get(15)?,
        steps_done: r.get(16)?,
        current_path: r.get(17)?,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
        last_error: r.get(20)?,
        resubmit_of: r.get(21)?,
        notice: r
            .get::<_, Option<String>>(22)?
            .map(|n| from_json(&n))
            .transpose()?,
    })
}

const PARTNER_COLUMNS: &str = "name, host, port, username, password_sealed, private_key_sealed,
    host_key, remote_dir, after_pull, rate_limit, created_at";

fn row_to_partner(r: &rusqlite::Row<'_>) -> rusqlite::Result<Partner> {
    Ok(Partner {
        name: r.get(0)?,
        host: r.get(1)?,
        port: r.get(2)?,
        username: r.get(3)?,
        password_sealed: r.get(4)?,
        private_key_sealed: r.get(5)?,
        host_key: r.get(6)?,
        remote_dir: r.get(7)?,
        after_pull: parse_col::<AfterPull>(r.get(8)?)?,
        rate_limit: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        created_at: r.get(10)?,
    })
}

const ROUTE_COLUMNS: &str =
    "name, account, pattern, actions, max_attempts, retry_base_ms, created_at";

fn row_to_route(r: &rusqlite::Row<'_>) -> rusqlite::Result<Route> {
    Ok(Route {
        name: r.get(0)?,
        account: r.get(1)?,
        pattern: r.get(2)?,
        actions: from_json(&r.get::<_, String>(3)?)?,
        max_attempts: r.get(4)?,
        retry_base_ms: r.get::<_, i64>(5)? as u64,
        created_at: r.get(6)?,
    })
}

const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, action, catch_up, max_attempts, retry_base_ms, created_at";

fn row_to_schedule(r: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        name: r.get(0)?,
        cron: r.get(1)?,
        timezone: r.get(2)?,
        action: from_json(&r.get::<_, String>(3)?)?,
        catch_up: r.get(4)?,
        max_attempts: r.get(5)?,
        retry_base_ms: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
    })
}

const MONITOR_COLUMNS: &str = "name, dir, pattern, account, target_dir, stable_ms, created_at";

fn row_to_monitor(r: &rusqlite::Row<'_>) -> rusqlite::Result<Monitor> {
    Ok(Monitor {
        name: r.get(0)?,
        dir: r.get(1)?,
        pattern: r.get(2)?,
        account: r.get(3)?,
        target_dir: r.get(4)?,
        stable_ms: r.get::<_, i64>(5)? as u64,
        created_at: r.get(6)?,
    })
}

fn routes_in(conn: &rusqlite::Connection) -> Result<Vec<Route>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ROUTE_COLUMNS} FROM routes ORDER BY name"))?;
    let rows = stmt.query_map([], row_to_route)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

fn schedules_in(conn: &rusqlite::Connection) -> Result<Vec<Schedule>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
    ))?;
    let rows = stmt.query_map([], row_to_schedule)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// The event queue in numbers ([`Store::event_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Events by state (`pending`, `running`, `done`, `failed`); a state
    /// without events is left out.
    pub by_state: Vec<(String, u64)>,
    /// When the oldest pending event was created.
    pub oldest_pending_at: Option<UnixMillis>,
}

impl Store {
    pub(crate) fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, map)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    pub(crate) fn one<T>(
        &self,
        sql: &str,
        key: &str,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.conn()
            .query_row(sql, [key], map)
            .optional()
            .map_err(Into::into)
    }

    /// Every partner, by name.
    pub fn partners(&self) -> Result<Vec<Partner>> {
        self.all(
            &format!("SELECT {PARTNER_COLUMNS} FROM partners ORDER BY name"),
            [],
            row_to_partner,
        )
    }

    /// The partner called `name`.
    pub fn partner(&self, name: &str) -> Result<Option<Partner>> {
        self.one(
            &format!("SELECT {PARTNER_COLUMNS} FROM partners WHERE name = ?1"),
            name,
            row_to_partner,
        )
    }

    /// Every route, by name.
    pub fn routes(&self) -> Result<Vec<Route>> {
        routes_in(&self.conn())
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Result<Option<Route>> {
        self.one(
            &format!("SELECT {ROUTE_COLUMNS} FROM routes WHERE name = ?1"),
            name,
            row_to_route,
        )
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> Result<Vec<Schedule>> {
        schedules_in(&self.conn())
    }

    /// The schedule called `name`.
    pub fn schedule(&self, name: &str) -> Result<Option<Schedule>> {
        self.one(
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"),
            name,
            row_to_schedule,
        )
    }

    /// The latest slot that fired for `schedule`, if any.
    pub fn last_firing(&self, schedule: &str) -> Result<Option<UnixMillis>> {
        self.conn()
            .query_row(
                "SELECT MAX(slot) FROM schedule_firings WHERE schedule = ?1",
                [schedule],
                |r| r.get(0),
            )
            .map_err(Into::into)
    }

    /// The firings of `schedule`, newest first.
    pub fn firings(&self, schedule: &str, limit: u32) -> Result<Vec<Firing>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT slot, fired_at, node, event_id FROM schedule_firings
             WHERE schedule = ?1 ORDER BY slot DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![schedule, limit], |r| {
            Ok(Firing {
                slot: r.get(0)?,
                fired_at: r.get(1)?,
                node: r.get(2)?,
                event_id: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Every folder monitor, by name.
    pub fn monitors(&self) -> Result<Vec<Monitor>> {
        self.all(
            &format!("SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY name"),
            [],
            row_to_monitor,
        )
    }

    /// How many events are in each state, and when the oldest pending one
    /// was created.
    pub fn event_counts(&self) -> Result<EventCounts> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT status, count(*) FROM events GROUP BY status")?;
        let counts = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let oldest_pending_at = conn.row(
            "SELECT min(created_at) FROM events WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(EventCounts {
            by_state: counts,
            oldest_pending_at,
        })
    }

    /// The event with this id.
    pub fn event(&self, id: &str) -> Result<Option<Event>> {
        self.one(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
            id,
            row_to_event,
        )
    }

    /// Events matching `filter`, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        self.all(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE (?1 IS NULL OR status = ?1)
                   AND (?2 IS NULL OR account = ?2)
                   AND (?3 IS NULL OR instr(',' || partners || ',', ',' || ?3 || ',') > 0)
                   AND (?4 IS NULL OR created_at >= ?4)
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            ),
            params![
                filter.status.map(|s| s.as_str()),
                filter.account,
                filter.partner,
                filter.since,
                filter.limit.unwrap_or(1000)
            ],
            row_to_event,
        )
    }

    /// The events a transfer caused, or whose work it was.
    pub fn events_of_transfer(&self, transfer_id: &str) -> Result<Vec<Event>> {
        self.all(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE transfer_id = ?1
                    OR id = (SELECT event_id FROM transfers WHERE id = ?1)
                 ORDER BY created_at, id"
            ),
            [transfer_id],
            row_to_event,
        )
    }

    /// Every attempt at an event, first first.
    pub fn event_attempts(&self, id: &str) -> Result<Vec<EventAttempt>> {
        self.all(
            "SELECT event_id, attempt, node, started_at, ended_at, outcome, error
             FROM event_attempts WHERE event_id = ?1 ORDER BY attempt",
            [id],
            |r| {
                Ok(EventAttempt {
                    event_id: r.get(0)?,
                    attempt: r.get(1)?,
                    node: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    outcome: r.get(5)?,
                    error: r.get(6)?,
                })
            },
        )
    }

    /// Ids of events of `lane` a worker may claim at `now`: pending and
    /// due, or running with an expired lease. Oldest due first.
    pub fn claimable_events(
        &self,
        lane: Lane<'_>,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (condition, skip) = lane.condition(3);
        let mut values: Vec<rusqlite::types::Value> = vec![now.into(), i64::from(limit).into()];
        values.extend(skip.into_iter().map(Into::into));
        self.all(
            &format!(
                "SELECT id FROM events
                 WHERE ((status = 'pending' AND next_at <= ?1)
                    OR (status = 'running' AND lease_until < ?1))
                   AND {condition}
                 ORDER BY next_at, created_at LIMIT ?2"
            ),
            rusqlite::params_from_iter(values),
            |r| r.get(0),
        )
    }

    /// When the next pending or running event of `lane` becomes claimable,
    /// if any.
    pub fn next_claimable_at(&self, lane: Lane<'_>) -> Result<Option<UnixMillis>> {
        let (condition, skip) = lane.condition(1);
        self.conn()
            .query_row(
                &format!(
                    "SELECT MIN(CASE status WHEN 'pending' THEN next_at ELSE lease_until + 1 END)
                     FROM events WHERE status IN ('pending', 'running') AND {condition}"
                ),
                rusqlite::params_from_iter(skip),
                |r| r.get(0),
            )
            .map_err(Into::into)
    }
}
