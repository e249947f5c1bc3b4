//! Admin API of the transfer engine: partners, routes, schedules, folder
//! monitors, the event queue, and one transfer with its events and attempts.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ferry_api as api;
use ferry_core::engine::{check_name, glob_matcher};
use ferry_core::{
    Action, AfterPull, Command, Event, EventKind, EventStatus, FerryError, Monitor, Partner, Route,
    Schedule, ScheduleAction, VirtualPath,
};
use ferry_store::EventFilter;

use crate::admin::{done, run, AdminState, ApiError, Reply, Routes};
use crate::engine::scheduler::CronSlots;
use crate::transfer::now_millis;

type ApiResult<T> = Result<T, ApiError>;

/// The engine's routes, merged into the admin router (behind its token check).
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::ListPartners, _, _>(list_partners)
        .add::<api::AddPartner, _, _>(add_partner)
        .add::<api::RemovePartner, _, _>(remove_partner)
        .add::<api::TestPartner, _, _>(test_partner)
        .add::<api::ListRoutes, _, _>(list_routes)
        .add::<api::AddRoute, _, _>(add_route)
        .add::<api::RemoveRoute, _, _>(remove_route)
        .add::<api::ListSchedules, _, _>(list_schedules)
        .add::<api::AddSchedule, _, _>(add_schedule)
        .add::<api::RemoveSchedule, _, _>(remove_schedule)
        .add::<api::ListFirings, _, _>(list_firings)
        .add::<api::ListMonitors, _, _>(list_monitors)
        .add::<api::AddMonitor, _, _>(add_monitor)
        .add::<api::RemoveMonitor, _, _>(remove_monitor)
        .add::<api::ListEvents, _, _>(list_events)
        .add::<api::ShowEvent, _, _>(show_event)
        .add::<api::ResubmitEvent, _, _>(resubmit_event)
        .add::<api::ShowTransfer, _, _>(show_transfer)
}

// ---- partners ----

/// Defaults of a new partner.
const DEFAULT_PORT: u16 = 22;
const DEFAULT_REMOTE_DIR: &str = ".";
const DEFAULT_AFTER_PULL: &str = "keep";

fn partner_view(p: Partner) -> api::Partner {
    api::Partner {
        auth: if p.private_key_sealed.is_some() {
            "key"
        } else {
            "password"
        }
        .into(),
        host_key_fingerprint: ferry_partner::fingerprint(&p.host_key).unwrap_or_default(),
        name: p.name,
        host: p.host,
        port: p.port,
        username: p.username,
        host_key: p.host_key,
        remote_dir: p.remote_dir,
        after_pull: p.after_pull.to_string(),
        rate_limit: p.rate_limit,
        created_at: api::time(p.created_at),
    }
}

async fn list_partners(State(s): State<AdminState>) -> ApiResult<Reply<api::ListPartners>> {
    run(move || {
        let partners = s.ctx.store.partners().map_err(FerryError::from)?;
        Ok(partners.into_iter().map(partner_view).collect())
    })
    .await
    .map(Reply)
}

async fn add_partner(
    State(s): State<AdminState>,
    Json(body): Json<api::NewPartner>,
) -> ApiResult<Reply<api::AddPartner>> {
    check_name("partner", &body.name)?;
    if body.host.is_empty() || body.username.is_empty() {
        return Err(FerryError::invalid("host and username must not be empty").into());
    }
    if body.password.is_none() && body.private_key.is_none() {
        return Err(FerryError::invalid("give a password or a private key").into());
    }
    let host_key = ferry_partner::parse_host_key(&body.host_key)
        .map_err(|e| FerryError::invalid(format!("host key: {e}")))?;
    let after_pull: AfterPull = body
        .after_pull
        .as_deref()
        .unwrap_or(DEFAULT_AFTER_PULL)
        .parse()?;
    let remote_dir = body
        .remote_dir
        .unwrap_or_else(|| DEFAULT_REMOTE_DIR.to_owned());
    if remote_dir.is_empty() || remote_dir.contains('\0') {
        return Err(FerryError::invalid("remote_dir must not be empty").into());
    }
    run(move || {
        let ctx = &s.ctx;
        let context = |field: &str| format!("partner {} {field}", body.name);
        let partner = Partner {
            password_sealed: body
                .password
                .as_ref()
                .map(|p| ctx.secrets.seal(p, &context("password")))
                .transpose()?,
            private_key_sealed: body
                .private_key
                .as_ref()
                .map(|k| ctx.secrets.seal(k, &context("private key")))
                .transpose()?,
            name: body.name,
            host: body.host,
            port: body.port.unwrap_or(DEFAULT_PORT),
            username: body.username,
            host_key,
            remote_dir,
            after_pull,
            rate_limit: body.rate_limit.filter(|r| *r > 0),
            created_at: now_millis(),
        };
        ctx.apply(&Command::AddPartner(partner.clone()))?;
        Ok(Reply(partner_view(partner)))
    })
    .await
}

async fn remove_partner(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemovePartner>> {
    run(move || s.ctx.apply(&Command::RemovePartner { name })).await?;
    Ok(done())
}

async fn test_partner(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::TestPartner>> {
    let ctx = s.ctx.clone();
    let n = name.clone();
    let partner = run(move || ctx.store.partner(&n).map_err(FerryError::from))
        .await?
        .ok_or_else(|| FerryError::not_found(format!("partner {name:?} not found")))?;
    let spec = crate::engine::actions::spec_of(&s.ctx, &partner)?;
    let partner_error = |e: ferry_partner::PartnerError| {
        ApiError::new(StatusCode::BAD_GATEWAY, "partner_error", e.to_string())
    };
    let session = ferry_partner::PartnerSession::connect(&spec)
        .await
        .map_err(partner_error)?;
    let listed = session.list(&partner.remote_dir).await;
    session.close().await;
    let mut entries: Vec<String> = listed
        .map_err(partner_error)?
        .into_iter()
        .map(|e| {
            if e.is_dir {
                format!("{}/", e.name)
            } else {
                e.name
            }
        })
        .collect();
    entries.sort();
    Ok(Reply(api::PartnerTest {
        host_key_fingerprint: ferry_partner::fingerprint(&partner.host_key).unwrap_or_default(),
        partner: partner.name,
        remote_dir: partner.remote_dir,
        entries,
    }))
}

// ---- routes ----

/// Defaults of a new route's or schedule's retries.
const DEFAULT_ATTEMPTS: u32 = 5;
const DEFAULT_RETRY_MS: u64 = 30_000;

fn check_attempts(max_attempts: u32, retry_base_ms: u64) -> Result<(), FerryError> {
    if !(1..=100).contains(&max_attempts) {
        return Err(FerryError::invalid("max_attempts must be 1-100"));
    }
    if !(10..=86_400_000).contains(&retry_base_ms) {
        return Err(FerryError::invalid("retry_base_ms must be 10 ms to a day"));
    }
    Ok(())
}

async fn list_routes(State(s): State<AdminState>) -> ApiResult<Reply<api::ListRoutes>> {
    run(move || s.ctx.store.routes().map_err(FerryError::from))
        .await
        .map(|routes| Reply(routes.into_iter().map(api::Route::from).collect()))
}

async fn add_route(
    State(s): State<AdminState>,
    Json(body): Json<api::NewRoute>,
) -> ApiResult<Reply<api::AddRoute>> {
    check_name("route", &body.name)?;
    glob_matcher(&body.pattern)?;
    let max_attempts = body.max_attempts.unwrap_or(DEFAULT_ATTEMPTS);
    let retry_base_ms = body.retry_base_ms.unwrap_or(DEFAULT_RETRY_MS);
    check_attempts(max_attempts, retry_base_ms)?;
    if body.actions.is_empty() {
        return Err(FerryError::invalid("a route needs at least one action").into());
    }
    let actions = body
        .actions
        .iter()
        .map(|a| a.parse::<Action>())
        .collect::<Result<Vec<_>, _>>()?;
    let route = Route {
        name: body.name,
        account: body.account,
        pattern: body.pattern,
        actions,
        max_attempts,
        retry_base_ms,
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddRoute(route.clone()))?;
        Ok(Reply(route.into()))
    })
    .await
}

async fn remove_route(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveRoute>> {
    run(move || s.ctx.apply(&Command::RemoveRoute { name })).await?;
    Ok(done())
}

// ---- schedules ----

/// The time zone of a schedule that names none.
const DEFAULT_TIMEZONE: &str = "UTC";

/// How many coming slots a listed schedule shows.
const NEXT_SLOTS: usize = 3;

async fn list_schedules(State(s): State<AdminState>) -> ApiResult<Reply<api::ListSchedules>> {
    let now = now_millis();
    run(move || s.ctx.store.schedules().map_err(FerryError::from))
        .await
        .map(|list| Reply(list.into_iter().map(|s| with_next_slots(s, now)).collect()))
}

/// The schedule as the API shows it, with its next slots after `now`.
fn with_next_slots(schedule: Schedule, now: i64) -> api::Schedule {
    let slots = CronSlots::parse(&schedule.cron, &schedule.timezone).ok();
    let mut shown = api::Schedule::from(schedule);
    if let Some(slots) = slots {
        let mut cursor = now;
        while shown.next_slots.len() < NEXT_SLOTS {
            let Some(slot) = slots.next_after(cursor) else {
                break;
            };
            shown.next_slots.push(api::time(slot));
            cursor = slot;
        }
    }
    shown
}

async fn add_schedule(
    State(s): State<AdminState>,
    Json(body): Json<api::NewSchedule>,
) -> ApiResult<Reply<api::AddSchedule>> {
    check_name("schedule", &body.name)?;
    let timezone = body.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
    CronSlots::parse(&body.cron, &timezone)?;
    let max_attempts = body.max_attempts.unwrap_or(DEFAULT_ATTEMPTS);
    let retry_base_ms = body.retry_base_ms.unwrap_or(DEFAULT_RETRY_MS);
    check_attempts(max_attempts, retry_base_ms)?;
    let action: ScheduleAction = body.action.parse()?;
    let schedule = Schedule {
        name: body.name,
        cron: body.cron,
        timezone,
        action,
        catch_up: body.catch_up.unwrap_or(true),
        max_attempts,
        retry_base_ms,
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddSchedule(schedule.clone()))?;
        s.ctx.schedules_changed.notify_waiters();
        Ok(Reply(with_next_slots(schedule, now_millis())))
    })
    .await
}

async fn remove_schedule(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveSchedule>> {
    run(move || {
        s.ctx.apply(&Command::RemoveSchedule { name })?;
        s.ctx.schedules_changed.notify_waiters();
        Ok(())
    })
    .await?;
    Ok(done())
}

async fn list_firings(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListFirings>> {
    run(move || s.ctx.store.firings(&name, 1000).map_err(FerryError::from))
        .await
        .map(|firings| {
            Reply(
                firings
                    .into_iter()
                    .map(|f| api::Firing {
                        slot: api::time(f.slot),
                        fired_at: api::time(f.fired_at),
                        node: f.node,
                        event_id: f.event_id,
                    })
                    .collect(),
            )
        })
}

// ---- monitors ----

/// Defaults of a new folder monitor.
const DEFAULT_MATCH: &str = "*";
const DEFAULT_TARGET: &str = "/";
const DEFAULT_STABLE_MS: u64 = 5_000;

async fn list_monitors(State(s): State<AdminState>) -> ApiResult<Reply<api::ListMonitors>> {
    run(move || s.ctx.store.monitors().map_err(FerryError::from))
        .await
        .map(|list| Reply(list.into_iter().map(api::Monitor::from).collect()))
}

async fn add_monitor(
    State(s): State<AdminState>,
    Json(body): Json<api::NewMonitor>,
) -> ApiResult<Reply<api::AddMonitor>> {
    check_name("monitor", &body.name)?;
    let pattern = body.pattern.unwrap_or_else(|| DEFAULT_MATCH.to_owned());
    glob_matcher(&pattern)?;
    let dir = std::path::Path::new(&body.dir);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(FerryError::invalid(format!(
            "dir {:?} must be an existing absolute directory on the server",
            body.dir
        ))
        .into());
    }
    let target = VirtualPath::parse_absolute(body.target_dir.as_deref().unwrap_or(DEFAULT_TARGET))
        .map_err(FerryError::from)?;
    let monitor = Monitor {
        name: body.name,
        dir: body.dir,
        pattern,
        account: body.account,
        target_dir: target.to_string(),
        stable_ms: body.stable_ms.unwrap_or(DEFAULT_STABLE_MS).min(86_400_000),
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddMonitor(monitor.clone()))?;
        Ok(Reply(monitor.into()))
    })
    .await
}

async fn remove_monitor(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveMonitor>> {
    run(move || s.ctx.apply(&Command::RemoveMonitor { name })).await?;
    Ok(done())
}

// ---- events ----

async fn list_events(
    State(s): State<AdminState>,
    Query(q): Query<api::ListQuery>,
) -> ApiResult<Reply<api::ListEvents>> {
    let status = q
        .status
        .map(|v| v.parse::<EventStatus>())
        .transpose()
        .map_err(FerryError::invalid)?;
    let filter = EventFilter {
        status,
        account: q.account,
        partner: q.partner,
        since: q.since.as_ref().map(api::unix_ms),
        limit: q.limit,
    };
    run(move || s.ctx.store.events(&filter).map_err(FerryError::from))
        .await
        .map(|events| Reply(events.into_iter().map(api::Event::from).collect()))
}

fn detail(ctx: &crate::ServerCtx, event: Event) -> Result<api::EventDetail, FerryError> {
    let attempt_log = ctx
        .store
        .event_attempts(&event.id)
        .map_err(FerryError::from)?;
    Ok(api::EventDetail {
        event: event.into(),
        attempt_log: attempt_log.into_iter().map(Into::into).collect(),
    })
}

async fn show_event(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<api::ShowEvent>> {
    run(move || {
        let event = s
            .ctx
            .store
            .event(&id)
            .map_err(FerryError::from)?
            .ok_or_else(|| FerryError::not_found(format!("event {id} not found")))?;
        detail(&s.ctx, event)
    })
    .await
    .map(Reply)
}

async fn resubmit_event(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<api::ResubmitEvent>> {
    run(move || {
        let old = s
            .ctx
            .store
            .event(&id)
            .map_err(FerryError::from)?
            .ok_or_else(|| FerryError::not_found(format!("event {id} not found")))?;
        if matches!(old.status, EventStatus::Pending | EventStatus::Running) {
            return Err(FerryError::new(
                ferry_core::ErrorKind::Conflict,
                format!(
                    "event {id} is {}; only done or failed events can be resubmitted",
                    old.status
                ),
            ));
        }
        let now = now_millis();
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            // A notification sent again is still one (its workers claim it).
            kind: if old.kind == EventKind::Notify {
                EventKind::Notify
            } else {
                EventKind::Resubmit
            },
            status: EventStatus::Pending,
            attempts: 0,
            next_at: now,
            lease_node: None,
            lease_until: None,
            // Start over from the file as it arrived.
            steps_done: 0,
            current_path: old.path.clone(),
            created_at: now,
            updated_at: now,
            last_error: None,
            resubmit_of: Some(old.id.clone()),
            ..old
        };
        s.ctx.apply(&Command::EnqueueEvent(event.clone()))?;
        s.ctx.engine_wake.notify_waiters();
        Ok(Reply(event.into()))
    })
    .await
}

async fn show_transfer(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<api::ShowTransfer>> {
    run(move || {
        let transfer = s
            .ctx
            .store
            .transfer(&id)
            .map_err(FerryError::from)?
            .ok_or_else(|| FerryError::not_found(format!("transfer {id} not found")))?;
        let events = s
            .ctx
            .store
            .events_of_transfer(&id)
            .map_err(FerryError::from)?
            .into_iter()
            .map(|e| detail(&s.ctx, e))
            .collect::<Result<_, _>>()?;
        Ok(api::TransferDetail {
            transfer: transfer.into(),
            events,
        })
    })
    .await
    .map(Reply)
}
