//! The HTTPS front: the file API, tus uploads, the browser client's login,
//! and the browser client itself. Every request is checked here (origin,
//! credentials, path) and then forwarded to a back-end server as the same
//! file operations SFTP uses. There is no admin endpoint on the edge.

pub mod auth;
mod files;
pub mod lease;
pub mod paths;
mod transfer;
mod tus;
mod web;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ferry_core::Secret;
use ferry_http::{ApiError, ClientAddr};
use serde::Deserialize;

use crate::config::HttpsConfig;
use crate::upstream::Upstreams;
use lease::Lease;

/// What every HTTP handler shares.
pub struct HttpState {
    /// Credentials and sessions.
    pub auth: auth::Auth,
    /// The listener's settings.
    pub config: HttpsConfig,
}

/// The client's address: the TCP peer (or the source of a trusted proxy's
/// PROXY protocol header), never an HTTP header.
pub(crate) fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ClientAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip())
}

/// An HTTP date (RFC 9110 IMF-fixdate) for unix milliseconds.
pub(crate) fn http_date_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Authenticates `req`'s sender; the error is the answer to send.
/// A session whose password must be changed gets `403`
/// `password_change_required` for everything but the change itself.
pub(crate) async fn files_login(state: &HttpState, parts: &Parts) -> Result<Arc<Lease>, Response> {
    let ip = client_ip(parts);
    let lease = state
        .auth
        .authenticate(&parts.method, &parts.headers, ip)
        .await
        .map(|a| a.lease)
        .map_err(|r| r.respond(&parts.headers))?;
    if lease.must_change_password() {
        return Err(password_change_required());
    }
    Ok(lease)
}

/// The answer to a request of a session whose password must be changed.
fn password_change_required() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "password_change_required",
        ferry_core::PASSWORD_CHANGE_REQUIRED,
    )
    .into_response()
}

/// Builds the router.
pub fn router(upstreams: Arc<Upstreams>, config: HttpsConfig) -> Router {
    let state = Arc::new(HttpState {
        auth: auth::Auth::new(upstreams, config.clone()),
        config,
    });
    Router::new()
        .route("/", get(web::index))
        .route("/index.html", get(web::index))
        .route("/app.js", get(web::script))
        .route("/style.css", get(web::style))
        .route(
            "/api/v1/session",
            get(session_show).post(session_open).delete(session_close),
        )
        .route(
            "/api/v1/files/{*path}",
            get(files::download)
                .head(files::download)
                .put(files::upload)
                .delete(files::delete_file),
        )
        .route("/api/v1/dirs", get(files::list_dir))
        .route("/api/v1/dirs/", get(files::list_dir))
        .route(
            "/api/v1/dirs/{*path}",
            get(files::list_dir)
                .post(files::make_dir)
                .delete(files::remove_dir),
        )
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/rename", post(files::rename))
        .route("/api/v1/uploads", post(tus::create).options(tus::options))
        .route("/api/v1/uploads/", post(tus::create).options(tus::options))
        .route(
            "/api/v1/uploads/{id}",
            put(method_not_allowed)
                .head(tus::upload)
                .patch(tus::upload)
                .delete(tus::upload)
                .options(tus::options),
        )
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(guard))
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed here",
    )
    .into_response()
}

/// Headers that only a proxy of ours may set; a client sending them is
/// ignored (they are removed before any handler runs).
fn internal_header(name: &str) -> bool {
    name.starts_with("x-ferry-")
        || name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded" | "x-real-ip" | "x-client-ip" | "true-client-ip"
        )
}

/// Is a state-changing request sent by another site?
fn cross_origin(req: &Request) -> bool {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    match host {
        Some(host) => !origin.eq_ignore_ascii_case(&format!("https://{host}")),
        None => true,
    }
}

/// Runs around every request: drops internal headers, refuses cross-site
/// state changes, and sets the security headers of every answer.
async fn guard(mut req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_owned();
    let names: Vec<_> = req
        .headers()
        .keys()
        .filter(|n| internal_header(n.as_str()))
        .cloned()
        .collect();
    for name in names {
        req.headers_mut().remove(&name);
    }
    let mut response = if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && cross_origin(&req)
    {
        transfer::drain(req.into_body()).await;
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from other sites are refused",
        )
        .into_response()
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    let mut default = |name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    default(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    default(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    default(header::X_FRAME_OPTIONS, "DENY");
    default(header::REFERRER_POLICY, "no-referrer");
    default(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; sandbox",
    );
    default(header::CACHE_CONTROL, "no-store");
    crate::metrics::METRICS.https_request(
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Body of `POST /api/v1/session`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

fn session_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        auth::COOKIE
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("ferry_session=; Path=/; Max-Age=0"))
}

async fn session_open(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&parts);
    let headers = parts.headers;
    let bytes = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "body too large")
                .into_response()
        }
    };
    let body: LoginBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "send JSON {\"user\": …, \"password\": …}",
            )
            .into_response()
        }
    };
    match state
        .auth
        .open_web_session(&body.user, Secret::new(body.password), ip)
        .await
    {
        Ok(web) => {
            let mut r = Json(serde_json::json!({
                "account": web.account,
                "csrf": web.csrf,
                "must_change_password": web.must_change_password,
            }))
            .into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(web.cookie.expose(), web.lifetime_secs),
            );
            r
        }
        Err(refusal) => refusal.respond(&headers),
    }
}

async fn session_show(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let Some(cookie) = auth::cookie(&parts.headers) else {
        return auth::unauthorized(&parts.headers, "not logged in");
    };
    match state.auth.web_session(&cookie, client_ip(&parts)).await {
        Ok((csrf, account, must_change_password)) => Json(serde_json::json!({
            "account": account,
            "csrf": csrf,
            "must_change_password": must_change_password,
        }))
        .into_response(),
        Err(refusal) => refusal.respond(&parts.headers),
    }
}

async fn session_close(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let Some(cookie) = auth::cookie(&parts.headers) else {
        return auth::unauthorized(&parts.headers, "not logged in");
    };
    // Logging out changes state: the CSRF token is required like anywhere else.
    let authed = match state
        .auth
        .authenticate(&parts.method, &parts.headers, client_ip(&parts))
        .await
    {
        Ok(a) => a,
        Err(refusal) => return refusal.respond(&parts.headers),
    };
    // Revoked on the servers: every edge refuses the cookie from now on.
    if let Err(e) = state.auth.close_web_session(&authed.lease, &cookie).await {
        return ApiError::from(e).into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    r
}

/// Body of `POST /api/v1/me/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

/// `POST /api/v1/me/password`: the account changes its own password,
/// authenticated as any request (Basic, token, or the cookie with its
/// CSRF token). 204, or 400 (the policy's reason), 403 (a wrong current
/// password, or too many failed passwords of late).
async fn change_password(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "body too large")
                .into_response()
        }
    };
    let authed = match state
        .auth
        .authenticate(&parts.method, &parts.headers, client_ip(&parts))
        .await
    {
        Ok(a) => a,
        Err(refusal) => return refusal.respond(&parts.headers),
    };
    let Ok(body) = serde_json::from_slice::<PasswordChange>(&bytes) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "send JSON {\"current\": …, \"new\": …}",
        )
        .into_response();
    };
    // A cookie session keeps itself; the account's other browser
    // sessions end on the servers.
    let keep = auth::cookie(&parts.headers)
        .filter(|_| !parts.headers.contains_key(header::AUTHORIZATION))
        .map(Secret::new);
    let lease = authed.lease;
    match lease
        .change_password(Secret::new(body.current), Secret::new(body.new), keep)
        .await
    {
        Ok(()) => {
            state.auth.forget(lease.account());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Binds the HTTPS listener and starts serving.
pub async fn start(
    upstreams: Arc<Upstreams>,
    config: HttpsConfig,
    connections: ferry_worker::Connections,
    proxy: ferry_http::proxy::ProxyProtocol,
) -> Result<SocketAddr, crate::StartError> {
    let tls =
        ferry_proto::tls::plain_server_config(&config.cert, &config.key, &[b"h2", b"http/1.1"])?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            crate::StartError::Setup(format!("cannot listen on {} (https): {e}", config.listen))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::StartError::Setup(e.to_string()))?;
    let defaults = ferry_http::ServeLimits::default();
    let idle = std::time::Duration::from_secs(config.idle_timeout_secs.max(1));
    let limits = ferry_http::ServeLimits {
        max_connections: config.max_connections,
        max_connections_per_address: config.max_connections_per_address,
        header_timeout: defaults.header_timeout.min(idle),
        idle_timeout: idle,
        body_timeout: std::time::Duration::from_secs(config.body_timeout_secs.max(1)),
    };
    tokio::spawn(ferry_http::serve_tls(
        listener,
        tls,
        router(upstreams, config),
        limits,
        "https",
        connections,
        proxy,
    ));
    Ok(addr)
}
