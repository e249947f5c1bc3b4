//! Admin API of the transfer engine: partners, routes, schedules, folder
//! monitors, the event queue, and one transfer with its events and attempts.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ferry_core::engine::{check_name, glob_matcher};
use ferry_core::{
    Action, AfterPull, Command, Event, EventAttempt, EventKind, EventStatus, FerryError, Monitor,
    Partner, Route, Schedule, ScheduleAction, Secret, TransferRecord, VirtualPath,
};
use ferry_store::EventFilter;
use serde::{Deserialize, Serialize};

use crate::admin::{run, AdminState, ApiError};
use crate::engine::scheduler::CronSlots;
use crate::transfer::now_millis;

type ApiResult<T> = Result<T, ApiError>;

/// The engine's routes, merged into the admin router (behind its token check).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/partners", get(list_partners).post(add_partner))
        .route("/api/v1/partners/{name}", delete(remove_partner))
        .route("/api/v1/partners/{name}/test", post(test_partner))
        .route("/api/v1/routes", get(list_routes).post(add_route))
        .route("/api/v1/routes/{name}", delete(remove_route))
        .route("/api/v1/schedules", get(list_schedules).post(add_schedule))
        .route("/api/v1/schedules/{name}", delete(remove_schedule))
        .route("/api/v1/schedules/{name}/firings", get(list_firings))
        .route("/api/v1/monitors", get(list_monitors).post(add_monitor))
        .route("/api/v1/monitors/{name}", delete(remove_monitor))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(show_event))
        .route("/api/v1/events/{id}/resubmit", post(resubmit_event))
        .route("/api/v1/transfers/{id}", get(show_transfer))
}

// ---- partners ----

/// Body of `POST /api/v1/partners`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPartner {
    name: String,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    username: String,
    password: Option<Secret>,
    private_key: Option<Secret>,
    host_key: String,
    #[serde(default = "default_remote_dir")]
    remote_dir: String,
    #[serde(default = "default_after_pull")]
    after_pull: String,
    rate_limit: Option<u64>,
}

fn default_port() -> u16 {
    22
}
fn default_remote_dir() -> String {
    ".".into()
}
fn default_after_pull() -> String {
    "keep".into()
}

/// A partner as the API shows it: credentials only as what kind they are.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartnerView {
    name: String,
    host: String,
    port: u16,
    username: String,
    auth: String,
    host_key: String,
    host_key_fingerprint: String,
    remote_dir: String,
    after_pull: String,
    rate_limit: Option<u64>,
    created_at: i64,
}

fn partner_view(p: Partner) -> PartnerView {
    PartnerView {
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
        created_at: p.created_at,
    }
}

async fn list_partners(State(s): State<AdminState>) -> ApiResult<Json<Vec<PartnerView>>> {
    run(move || {
        let partners = s.ctx.store.partners().map_err(FerryError::from)?;
        Ok(partners.into_iter().map(partner_view).collect())
    })
    .await
    .map(Json)
}

async fn add_partner(
    State(s): State<AdminState>,
    Json(body): Json<NewPartner>,
) -> ApiResult<(StatusCode, Json<PartnerView>)> {
    check_name("partner", &body.name)?;
    if body.host.is_empty() || body.username.is_empty() {
        return Err(FerryError::invalid("host and username must not be empty").into());
    }
    if body.password.is_none() && body.private_key.is_none() {
        return Err(FerryError::invalid("give a password or a private key").into());
    }
    let host_key = ferry_partner::parse_host_key(&body.host_key)
        .map_err(|e| FerryError::invalid(format!("host key: {e}")))?;
    let after_pull: AfterPull = body.after_pull.parse()?;
    if body.remote_dir.is_empty() || body.remote_dir.contains('\0') {
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
            port: body.port,
            username: body.username,
            host_key,
            remote_dir: body.remote_dir,
            after_pull,
            rate_limit: body.rate_limit.filter(|r| *r > 0),
            created_at: now_millis(),
        };
        ctx.apply(&Command::AddPartner(partner.clone()))?;
        Ok((StatusCode::CREATED, Json(partner_view(partner))))
    })
    .await
}

async fn remove_partner(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    run(move || s.ctx.apply(&Command::RemovePartner { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Result of `POST /api/v1/partners/{name}/test`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartnerTest {
    partner: String,
    remote_dir: String,
    host_key_fingerprint: String,
    entries: Vec<String>,
}

async fn test_partner(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PartnerTest>> {
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
    Ok(Json(PartnerTest {
        host_key_fingerprint: ferry_partner::fingerprint(&partner.host_key).unwrap_or_default(),
        partner: partner.name,
        remote_dir: partner.remote_dir,
        entries,
    }))
}

// ---- routes ----

/// Body of `POST /api/v1/routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoute {
    name: String,
    account: String,
    #[serde(rename = "match")]
    pattern: String,
    actions: Vec<String>,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_retry_ms")]
    retry_base_ms: u64,
}

fn default_attempts() -> u32 {
    5
}
fn default_retry_ms() -> u64 {
    30_000
}

fn check_attempts(max_attempts: u32, retry_base_ms: u64) -> Result<(), FerryError> {
    if !(1..=100).contains(&max_attempts) {
        return Err(FerryError::invalid("max_attempts must be 1-100"));
    }
    if !(10..=86_400_000).contains(&retry_base_ms) {
        return Err(FerryError::invalid("retry_base_ms must be 10 ms to a day"));
    }
    Ok(())
}

async fn list_routes(State(s): State<AdminState>) -> ApiResult<Json<Vec<Route>>> {
    run(move || s.ctx.store.routes().map_err(FerryError::from))
        .await
        .map(Json)
}

async fn add_route(
    State(s): State<AdminState>,
    Json(body): Json<NewRoute>,
) -> ApiResult<(StatusCode, Json<Route>)> {
    check_name("route", &body.name)?;
    glob_matcher(&body.pattern)?;
    check_attempts(body.max_attempts, body.retry_base_ms)?;
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
        max_attempts: body.max_attempts,
        retry_base_ms: body.retry_base_ms,
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddRoute(route.clone()))?;
        Ok((StatusCode::CREATED, Json(route)))
    })
    .await
}

async fn remove_route(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    run(move || s.ctx.apply(&Command::RemoveRoute { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- schedules ----

/// Body of `POST /api/v1/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    name: String,
    cron: String,
    #[serde(default = "default_tz")]
    timezone: String,
    action: String,
    #[serde(default = "default_true")]
    catch_up: bool,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_retry_ms")]
    retry_base_ms: u64,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_true() -> bool {
    true
}

async fn list_schedules(State(s): State<AdminState>) -> ApiResult<Json<Vec<Schedule>>> {
    run(move || s.ctx.store.schedules().map_err(FerryError::from))
        .await
        .map(Json)
}

async fn add_schedule(
    State(s): State<AdminState>,
    Json(body): Json<NewSchedule>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    check_name("schedule", &body.name)?;
    CronSlots::parse(&body.cron, &body.timezone)?;
    check_attempts(body.max_attempts, body.retry_base_ms)?;
    let action: ScheduleAction = body.action.parse()?;
    let schedule = Schedule {
        name: body.name,
        cron: body.cron,
        timezone: body.timezone,
        action,
        catch_up: body.catch_up,
        max_attempts: body.max_attempts,
        retry_base_ms: body.retry_base_ms,
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddSchedule(schedule.clone()))?;
        s.ctx.schedules_changed.notify_waiters();
        Ok((StatusCode::CREATED, Json(schedule)))
    })
    .await
}

async fn remove_schedule(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    run(move || {
        s.ctx.apply(&Command::RemoveSchedule { name })?;
        s.ctx.schedules_changed.notify_waiters();
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_firings(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ferry_store::Firing>>> {
    run(move || s.ctx.store.firings(&name, 1000).map_err(FerryError::from))
        .await
        .map(Json)
}

// ---- monitors ----

/// Body of `POST /api/v1/monitors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMonitor {
    name: String,
    dir: String,
    #[serde(rename = "match", default = "default_match")]
    pattern: String,
    account: String,
    #[serde(default = "default_target")]
    target_dir: String,
    #[serde(default = "default_stable_ms")]
    stable_ms: u64,
}

fn default_match() -> String {
    "*".into()
}
fn default_target() -> String {
    "/".into()
}
fn default_stable_ms() -> u64 {
    5_000
}

async fn list_monitors(State(s): State<AdminState>) -> ApiResult<Json<Vec<Monitor>>> {
    run(move || s.ctx.store.monitors().map_err(FerryError::from))
        .await
        .map(Json)
}

async fn add_monitor(
    State(s): State<AdminState>,
    Json(body): Json<NewMonitor>,
) -> ApiResult<(StatusCode, Json<Monitor>)> {
    check_name("monitor", &body.name)?;
    glob_matcher(&body.pattern)?;
    let dir = std::path::Path::new(&body.dir);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(FerryError::invalid(format!(
            "dir {:?} must be an existing absolute directory on the server",
            body.dir
        ))
        .into());
    }
    let target = VirtualPath::parse_absolute(&body.target_dir).map_err(FerryError::from)?;
    let monitor = Monitor {
        name: body.name,
        dir: body.dir,
        pattern: body.pattern,
        account: body.account,
        target_dir: target.to_string(),
        stable_ms: body.stable_ms.min(86_400_000),
        created_at: now_millis(),
    };
    run(move || {
        s.ctx.apply(&Command::AddMonitor(monitor.clone()))?;
        Ok((StatusCode::CREATED, Json(monitor)))
    })
    .await
}

async fn remove_monitor(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    run(move || s.ctx.apply(&Command::RemoveMonitor { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- events ----

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    status: Option<String>,
    account: Option<String>,
    partner: Option<String>,
    since: Option<i64>,
    limit: Option<u32>,
}

async fn list_events(
    State(s): State<AdminState>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let status = q
        .status
        .map(|v| v.parse::<EventStatus>())
        .transpose()
        .map_err(FerryError::invalid)?;
    let filter = EventFilter {
        status,
        account: q.account,
        partner: q.partner,
        since: q.since,
        limit: q.limit,
    };
    run(move || s.ctx.store.events(&filter).map_err(FerryError::from))
        .await
        .map(Json)
}

/// An event with every attempt.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventDetail {
    #[serde(flatten)]
    event: Event,
    attempt_log: Vec<EventAttempt>,
}

fn detail(ctx: &crate::ServerCtx, event: Event) -> Result<EventDetail, FerryError> {
    let attempt_log = ctx
        .store
        .event_attempts(&event.id)
        .map_err(FerryError::from)?;
    Ok(EventDetail { event, attempt_log })
}

async fn show_event(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventDetail>> {
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
    .map(Json)
}

async fn resubmit_event(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Event>)> {
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
            kind: EventKind::Resubmit,
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
        Ok((StatusCode::CREATED, Json(event)))
    })
    .await
}

/// A transfer with the events it caused or belonged to, and their attempts.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransferDetail {
    transfer: TransferRecord,
    events: Vec<EventDetail>,
}

async fn show_transfer(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TransferDetail>> {
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
        Ok(TransferDetail { transfer, events })
    })
    .await
    .map(Json)
}
