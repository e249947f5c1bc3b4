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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::admin::{AdminState, ApiError};

/// The load-balancer endpoints (no token).
pub fn health_routes() -> Router<AdminState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/role", get(role))
}

/// The token-protected cluster endpoints.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/cluster/status", get(status))
        .route("/api/v1/cluster/events", get(events))
        .route("/api/v1/cluster/promote", post(promote))
        .route("/api/v1/cluster/init", post(init))
        .route("/api/v1/cluster/join", post(join))
        .route("/api/v1/cluster/leave", post(leave))
        .route("/api/v1/cluster/remove", post(remove))
        .route("/api/v1/sync", post(sync))
}

/// Ready means serving writes: alone, always; active/passive, on the
/// serving active server; active/active, while a majority is reachable.
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

async fn role(State(s): State<AdminState>) -> Json<ferry_cluster::mode::RoleAnswer> {
    Json(s.ctx.cluster.role())
}

async fn status(State(s): State<AdminState>) -> Json<ferry_cluster::mode::ClusterStatus> {
    Json(s.ctx.cluster.clone().status().await)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn events(
    State(s): State<AdminState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<ferry_cluster::events::ClusterEvent>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(500);
    Ok(Json(s.ctx.cluster.events(limit).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    #[serde(default)]
    force: bool,
}

async fn promote(
    State(s): State<AdminState>,
    Json(req): Json<PromoteRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let message = s.ctx.cluster.clone().promote(req.force).await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

/// `ferry cluster init` (active/active): this server and its configured
/// peers become the Raft group.
async fn init(State(s): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let message = s.ctx.cluster.initialize().await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    address: String,
    token: ferry_core::Secret,
}

/// `ferry cluster join ADDR` (on the joining server).
async fn join(
    State(s): State<AdminState>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let message = s.ctx.cluster.join(&req.address, req.token).await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

/// `ferry cluster leave` (on the leaving server).
async fn leave(State(s): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let message = s.ctx.cluster.leave().await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveRequest {
    name: String,
}

/// `ferry cluster remove NAME` (on any member).
async fn remove(
    State(s): State<AdminState>,
    Json(req): Json<RemoveRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let message = s.ctx.cluster.remove(&req.name).await?;
    Ok(Json(serde_json::json!({ "message": message })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn sync(
    State(s): State<AdminState>,
    Json(req): Json<SyncRequest>,
) -> Result<Response, ApiError> {
    let cluster = s.ctx.cluster.clone();
    let (lines, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (progress, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = lines.clone();
    tokio::spawn(async move {
        while let Some(p) = progress_rx.recv().await {
            let line = serde_json::json!({ "progress": p }).to_string();
            if forward.send(line).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let outcome = cluster.sync(req.to, req.dry_run, progress).await;
        let line = match outcome {
            Ok(targets) => serde_json::json!({ "result": targets }),
            Err(e) => serde_json::json!({ "error": e.message }),
        };
        let _ = lines.send(line.to_string());
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
