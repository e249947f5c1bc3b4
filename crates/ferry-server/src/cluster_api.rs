//! Cluster endpoints of the admin API.
//!
//! Unauthenticated, for load balancers: `GET /healthz` (the process is up),
//! `GET /readyz` (200 while this server serves sessions and takes writes,
//! 503 with the reason otherwise) and `GET /role` (JSON: node, role, ready,
//! epoch). With the admin token: `GET /api/v1/cluster/status`,
//! `GET /api/v1/cluster/events`, `POST /api/v1/cluster/promote` and
//! `POST /api/v1/sync`, which streams progress as JSON lines and ends with
//! a `{"result": …}` or `{"error": …}` line.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_api as api;
use ferry_core::FerryError;

use crate::admin::{AdminState, ApiError, Reply, Routes};

/// The load-balancer endpoints (no token).
pub(crate) fn health_routes() -> Routes {
    Routes::default()
        .add::<api::Healthz, _, _>(|| async { "ok\n" })
        .add::<api::GetMetrics, _, _>(metrics)
        .add::<api::Readyz, _, _>(readyz)
        .add::<api::GetRole, _, _>(role)
}

/// The token-protected cluster endpoints.
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::GetClusterStatus, _, _>(status)
        .add::<api::ListClusterEvents, _, _>(events)
        .add::<api::PromoteServer, _, _>(promote)
        .add::<api::InitCluster, _, _>(init)
        .add::<api::JoinCluster, _, _>(join)
        .add::<api::LeaveCluster, _, _>(leave)
        .add::<api::RemoveClusterMember, _, _>(remove)
        .add::<api::FinalizeUpgrade, _, _>(finalize_upgrade)
        .add::<api::DrainServer, _, _>(drain)
        .add::<api::RunSync, _, _>(sync)
}

/// Ready means serving writes: alone, always; active/passive, on the
/// serving active server; active/active, while a majority is reachable.
async fn metrics(State(s): State<AdminState>) -> Response {
    let ctx = s.ctx.clone();
    match crate::session::blocking(move || Ok(crate::metrics::render(&ctx))).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let why = s
        .ctx
        .not_serving_reason()
        .or_else(|| s.ctx.check_writable().err().map(|e| e.message));
    match why {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn role(State(s): State<AdminState>) -> Reply<api::GetRole> {
    let r = s.ctx.cluster.role();
    Reply(api::Role {
        node: r.node,
        mode: r.mode.into(),
        role: r.role,
        primary: r.primary,
        ready: r.ready,
        writable: r.writable,
        epoch: r.epoch,
    })
}

/// The status of each mode, as its cluster reports it, under the typed
/// `mode` of [`api::ClusterStatus`].
async fn status(State(s): State<AdminState>) -> Result<Reply<api::GetClusterStatus>, ApiError> {
    let status = s.ctx.cluster.clone().status().await;
    serde_json::to_value(status)
        .and_then(serde_json::from_value)
        .map(Reply)
        .map_err(|e| ApiError::from(FerryError::internal(e.to_string())))
}

fn cluster_event(e: ferry_cluster::events::ClusterEvent) -> api::ClusterEvent {
    let severity = match e.severity {
        ferry_cluster::events::Severity::Info => "info",
        ferry_cluster::events::Severity::Alert => "alert",
    };
    api::ClusterEvent {
        at: api::time(e.at),
        node: e.node,
        severity: severity.into(),
        kind: e.kind,
        message: e.message,
    }
}

async fn events(
    State(s): State<AdminState>,
    Query(q): Query<api::ClusterEventsQuery>,
) -> Result<Reply<api::ListClusterEvents>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(500);
    let events = s.ctx.cluster.events(limit).await?;
    Ok(Reply(events.into_iter().map(cluster_event).collect()))
}

fn message(message: String) -> api::Message {
    api::Message { message }
}

async fn promote(
    State(s): State<AdminState>,
    Json(req): Json<api::Promote>,
) -> Result<Reply<api::PromoteServer>, ApiError> {
    let done = s.ctx.cluster.clone().promote(req.force).await?;
    Ok(Reply(message(done)))
}

/// `ferry cluster init` (active/active): this server and its configured
/// peers become the Raft group.
async fn init(State(s): State<AdminState>) -> Result<Reply<api::InitCluster>, ApiError> {
    Ok(Reply(message(s.ctx.cluster.initialize().await?)))
}

/// `ferry cluster join ADDR` (on the joining server).
async fn join(
    State(s): State<AdminState>,
    Json(req): Json<api::Join>,
) -> Result<Reply<api::JoinCluster>, ApiError> {
    Ok(Reply(message(
        s.ctx.cluster.join(&req.address, req.token).await?,
    )))
}

/// `ferry cluster leave` (on the leaving server).
async fn leave(State(s): State<AdminState>) -> Result<Reply<api::LeaveCluster>, ApiError> {
    Ok(Reply(message(s.ctx.cluster.leave().await?)))
}

/// `ferry cluster remove NAME` (on any member).
async fn remove(
    State(s): State<AdminState>,
    Json(req): Json<api::RemoveMember>,
) -> Result<Reply<api::RemoveClusterMember>, ApiError> {
    Ok(Reply(message(s.ctx.cluster.remove(&req.name).await?)))
}

/// `ferry cluster finalize-upgrade` (on any member).
async fn finalize_upgrade(
    State(s): State<AdminState>,
) -> Result<Reply<api::FinalizeUpgrade>, ApiError> {
    Ok(Reply(message(s.ctx.cluster.finalize_upgrade().await?)))
}

/// `ferry server drain`: the shutdown SIGTERM starts. It begins after the
/// answer is on its way, since the admin listener closes with the rest.
async fn drain(State(s): State<AdminState>) -> Result<Reply<api::DrainServer>, ApiError> {
    if s.ctx.drain.stop_requested() {
        return Ok(Reply(message(format!(
            "{} is draining already",
            s.ctx.node_id
        ))));
    }
    let ctx = s.ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        ctx.drain.request_stop();
    });
    Ok(Reply(message(format!(
        "{} is draining: it takes nothing new, transfers in flight get up to {} s, then it stops",
        s.ctx.node_id,
        s.ctx.drain_deadline.as_secs()
    ))))
}

async fn sync(
    State(s): State<AdminState>,
    Json(req): Json<api::Sync>,
) -> Result<Response, ApiError> {
    let cluster = s.ctx.cluster.clone();
    let (lines, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (progress, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = lines.clone();
    tokio::spawn(async move {
        while let Some(p) = progress_rx.recv().await {
            let line = sync_line(api::SyncLine {
                progress: Some(serde_json::to_value(p).unwrap_or_default()),
                ..Default::default()
            });
            if forward.send(line).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let outcome = cluster.sync(req.to, req.dry_run, progress).await;
        let line = match outcome {
            Ok(targets) => api::SyncLine {
                result: Some(
                    targets
                        .iter()
                        .map(|t| serde_json::to_value(t).unwrap_or_default())
                        .collect(),
                ),
                ..Default::default()
            },
            Err(e) => api::SyncLine {
                error: Some(e.message),
                ..Default::default()
            },
        };
        let _ = lines.send(sync_line(line));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(format!("{line}\n")), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One line of the sync's answer, without its newline.
fn sync_line(line: api::SyncLine) -> String {
    serde_json::to_string(&line).unwrap_or_default()
}
