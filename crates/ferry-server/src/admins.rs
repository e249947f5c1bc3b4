//! Who calls the admin API, what their role lets them do, and the audit
//! trail of every change.
//!
//! [`authenticate`] wraps every protected endpoint: it finds the caller
//! (the bootstrap token, a named admin's API token, a named admin's
//! password by HTTP Basic, throttled like account logins, or a console
//! session cookie with its CSRF token, see [`crate::console`]), refuses what
//! the caller's [`Role`] does not allow with 403, and writes an
//! [`AuditRecord`] for every request that is not a read, allowed or not,
//! after it was answered: who, with which role, from where, the request
//! with its body (secrets redacted), the status and the outcome.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use ferry_api as api;
use ferry_core::admins::redact;
use ferry_core::{Admin, AdminToken, AuditRecord, Command, ErrorKind, FerryError, Role, Secret};
use sha2::{Digest, Sha256};

use crate::admin::{done, run, AdminState, ApiError, Reply, Routes};
use crate::transfer::now_millis;

type ApiResult<T> = Result<T, ApiError>;

/// The name the bootstrap token acts under.
pub const BOOTSTRAP: &str = "bootstrap";

/// The most of a change's body the audit trail reads (the admin API takes
/// nothing larger).
const MAX_AUDITED_BODY: usize = 2 << 20;

/// The most of an answer read back for its outcome.
const MAX_AUDITED_ANSWER: usize = 64 << 20;

/// Who is making an admin request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// An admin's name, or [`BOOTSTRAP`].
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// The endpoints that manage admins and read the audit trail.
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::ListAdmins, _, _>(list_admins)
        .add::<api::CreateAdmin, _, _>(create_admin)
        .add::<api::RemoveAdmin, _, _>(remove_admin)
        .add::<api::ListAdminTokens, _, _>(list_admin_tokens)
        .add::<api::AddAdminToken, _, _>(add_admin_token)
        .add::<api::RemoveAdminToken, _, _>(remove_admin_token)
        .add::<api::ListAudit, _, _>(list_audit)
        .add::<api::WhoAmI, _, _>(who_am_i)
}

/// The middleware of every protected endpoint (see the module's doc).
pub(crate) async fn authenticate(
    State(state): State<AdminState>,
    req: Request,
    next: Next,
) -> Response {
    let client = req
        .extensions()
        .get::<ferry_http::ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let caller = match identify(&state, req.method(), req.headers(), &client).await {
        Ok(caller) => caller,
        Err(e) => {
            // Read what the client sends before answering: an HTTP/2
            // client whose body is cut off by a reset sees no answer.
            let _ = axum::body::to_bytes(req.into_body(), MAX_AUDITED_BODY).await;
            return ApiError::from(e).into_response();
        }
    };
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), ToString::to_string)
    );
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    // A request refused before it runs: audited, then answered.
    let refuse = |e: FerryError, line: String| async {
        let status = crate::admin::http_status(e.kind).0.as_u16();
        audit(
            &state,
            &caller,
            &client,
            line,
            String::new(),
            status,
            e.message.clone(),
            Default::default(),
        )
        .await;
        ApiError::from(e).into_response()
    };
    if !caller.role.may(req.method().as_str(), req.uri().path()) {
        let e = FerryError::denied(format!("the {} role may not {line}", caller.role));
        return refuse(e, line).await;
    }
    if reads {
        let mut req = req;
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_AUDITED_BODY).await else {
        return refuse(FerryError::invalid("the request body is too large"), line).await;
    };
    let shown = shown_body(&bytes);
    let path = parts.uri.path().to_owned();
    let state_now = || state_of(&state, path.clone(), bytes.clone());
    let before = state_now().await;
    let mut req = Request::from_parts(parts, Body::from(bytes.clone()));
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    let after = state_now().await;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let answer = axum::body::to_bytes(body, MAX_AUDITED_ANSWER)
        .await
        .unwrap_or_default();
    let outcome = if status < 400 {
        "ok".to_owned()
    } else {
        serde_json::from_slice::<api::ErrorBody>(&answer)
            .map_or_else(|_| format!("HTTP {status}"), |e| e.message)
    };
    audit(
        &state,
        &caller,
        &client,
        line,
        shown,
        status,
        outcome,
        (before, after),
    )
    .await;
    Response::from_parts(parts, Body::from(answer))
}

/// [`crate::audit_state::state_of`] on a blocking thread.
async fn state_of(state: &AdminState, path: String, body: axum::body::Bytes) -> String {
    let store = state.ctx.store.clone();
    crate::session::blocking(move || Ok(crate::audit_state::state_of(&store, &path, &body)))
        .await
        .unwrap_or_else(|e| format!("(unreadable: {e})"))
}

/// The caller of a request, from its `Authorization` header or else its
/// console session cookie.
async fn identify(
    state: &AdminState,
    method: &Method,
    headers: &HeaderMap,
    client: &str,
) -> Result<Caller, FerryError> {
    let wrong = || FerryError::new(ErrorKind::AuthFailed, "missing or wrong admin credentials");
    if headers.get(header::AUTHORIZATION).is_none() {
        if let Some(cookie) = crate::console::cookie_of(headers) {
            return crate::console::caller(state, &cookie, method, headers).await;
        }
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(wrong)?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        let token = token.trim();
        // Digests on both sides: the comparison's timing says nothing.
        if Sha256::digest(token.as_bytes()).as_slice() == state.token_digest {
            return Ok(Caller {
                name: BOOTSTRAP.to_owned(),
                role: Role::Admin,
            });
        }
        if !token.starts_with(crate::auth::ADMIN_TOKEN_PREFIX) {
            return Err(wrong());
        }
        let (store, digest) = (state.ctx.store.clone(), crate::auth::token_digest(token));
        let admin = crate::session::blocking(move || {
            store.admin_by_token(&digest).map_err(FerryError::from)
        })
        .await?
        .ok_or_else(wrong)?;
        return Ok(Caller {
            name: admin.name,
            role: admin.role,
        });
    }
    let basic = value
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(wrong)?;
    let (name, password) = basic.split_once(':').ok_or_else(wrong)?;
    // Admins count their failures apart from accounts of the same name
    // (an account name has no ':'), so guessing at one locks out neither
    // the other.
    let attempt = state
        .ctx
        .login_throttle
        .begin(client, &format!("admin:{name}"))
        .await;
    let checked = match attempt {
        Ok(attempt) => {
            let checked = crate::auth::check_admin_password(
                state.ctx.store.clone(),
                name,
                Secret::new(password),
            )
            .await;
            attempt.end(
                checked
                    .as_ref()
                    .is_err_and(|e| e.kind == ErrorKind::AuthFailed),
            );
            checked
        }
        Err(e) => Err(e),
    };
    let admin = match checked {
        Ok(admin) => admin,
        Err(e) => {
            // Every refused password waits the same before its answer,
            // whether the name, the password or the throttle refused it.
            tokio::time::sleep(state.login_failure_delay).await;
            if e.kind == ErrorKind::AuthFailed {
                tracing::warn!(admin = %ferry_core::limits::loggable(name), client_addr = %client, "admin login failed");
                return Err(wrong());
            }
            return Err(e);
        }
    };
    Ok(Caller {
        name: admin.name,
        role: admin.role,
    })
}

/// A request body as the audit trail keeps it: JSON with its secrets
/// replaced, or a note of its size.
fn shown_body(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut value) => {
            redact(&mut value);
            value.to_string()
        }
        Err(_) => format!("({} bytes, not JSON)", bytes.len()),
    }
}

/// Writes an audit record through the cluster. One that cannot be written
/// (no quorum) is logged in full instead, at error level.
#[allow(clippy::too_many_arguments)] // the record's fields, each named at the call
async fn audit(
    state: &AdminState,
    caller: &Caller,
    client: &str,
    request: String,
    body: String,
    status: u16,
    outcome: String,
    (before, after): (String, String),
) {
    let record = AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: now_millis(),
        admin: caller.name.clone(),
        role: caller.role,
        client_addr: client.to_owned(),
        request,
        body,
        status,
        outcome,
        node: state.ctx.node_id.clone(),
        before,
        after,
    };
    tracing::info!(
        admin = %record.admin, role = %record.role, client_addr = %record.client_addr,
        request = %record.request, status, outcome = %record.outcome, "admin change"
    );
    let ctx = state.ctx.clone();
    let kept = record.clone();
    let written = crate::session::blocking(move || ctx.apply(&Command::RecordAudit(kept))).await;
    if let Err(e) = written {
        tracing::error!(error = %e, record = ?record, "an audit record could not be written");
    }
}

fn view(ctx: &crate::ServerCtx, a: Admin) -> Result<api::AdminView, FerryError> {
    let tokens = ctx
        .store
        .admin_tokens(&a.name)
        .map_err(FerryError::from)?
        .len();
    Ok(api::AdminView {
        name: a.name,
        role: a.role.as_str().to_owned(),
        has_password: a.password_hash.is_some(),
        tokens,
        created_at: api::time(a.created_at),
    })
}

fn existing_admin(ctx: &crate::ServerCtx, name: &str) -> Result<Admin, FerryError> {
    ctx.store
        .admin(name)
        .map_err(FerryError::from)?
        .ok_or_else(|| FerryError::not_found(format!("admin {name:?} not found")))
}

async fn list_admins(State(s): State<AdminState>) -> ApiResult<Reply<api::ListAdmins>> {
    run(move || {
        let admins = s.ctx.store.admins().map_err(FerryError::from)?;
        admins.into_iter().map(|a| view(&s.ctx, a)).collect()
    })
    .await
    .map(Reply)
}

async fn create_admin(
    State(s): State<AdminState>,
    Json(body): Json<api::NewAdmin>,
) -> ApiResult<Reply<api::CreateAdmin>> {
    ferry_core::engine::check_name("admin", &body.name)?;
    if body.name == BOOTSTRAP {
        return Err(FerryError::invalid("\"bootstrap\" is the bootstrap token's name").into());
    }
    let role: Role = body.role.parse()?;
    run(move || {
        let password_hash = body
            .password
            .as_ref()
            .map(crate::auth::hash_password)
            .transpose()?;
        let admin = Admin {
            name: body.name,
            role,
            password_hash,
            created_at: now_millis(),
        };
        s.ctx.apply(&Command::CreateAdmin(admin.clone()))?;
        view(&s.ctx, admin)
    })
    .await
    .map(Reply)
}

async fn remove_admin(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveAdmin>> {
    run(move || s.ctx.apply(&Command::RemoveAdmin { name })).await?;
    Ok(done())
}

async fn list_admin_tokens(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListAdminTokens>> {
    run(move || {
        existing_admin(&s.ctx, &name)?;
        s.ctx.store.admin_tokens(&name).map_err(FerryError::from)
    })
    .await
    .map(|tokens| Reply(tokens.into_iter().map(token_view).collect()))
}

fn token_view(t: AdminToken) -> api::Token {
    api::Token {
        id: t.id,
        label: t.label,
        created_at: api::time(t.created_at),
        expires_at: None,
        token: None,
    }
}

async fn add_admin_token(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::NewAdminToken>,
) -> ApiResult<Reply<api::AddAdminToken>> {
    crate::admin::check_label(&body.label)?;
    let (token, id, sha256) = crate::auth::new_token_with(crate::auth::ADMIN_TOKEN_PREFIX);
    let record = AdminToken {
        id,
        admin: name,
        sha256,
        label: body.label,
        created_at: now_millis(),
    };
    let stored = record.clone();
    run(move || s.ctx.apply(&Command::AddAdminToken(stored))).await?;
    let mut view = token_view(record);
    view.token = Some(token.expose().to_owned());
    Ok(Reply(view))
}

async fn remove_admin_token(
    State(s): State<AdminState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Reply<api::RemoveAdminToken>> {
    run(move || s.ctx.apply(&Command::RemoveAdminToken { admin: name, id })).await?;
    Ok(done())
}

async fn list_audit(
    State(s): State<AdminState>,
    Query(query): Query<api::AuditQuery>,
) -> ApiResult<Reply<api::ListAudit>> {
    let limit = query.limit.unwrap_or(1000).min(100_000);
    run(move || {
        s.ctx
            .store
            .audit(
                query.since.map(|t| t.timestamp_millis()),
                query.admin.as_deref(),
                limit,
            )
            .map_err(FerryError::from)
    })
    .await
    .map(|records| Reply(records.into_iter().map(Into::into).collect()))
}

async fn who_am_i(req: Request) -> ApiResult<Reply<api::WhoAmI>> {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| FerryError::internal("no caller"))?;
    Ok(Reply(api::Identity {
        name: caller.name,
        role: caller.role.as_str().to_owned(),
    }))
}
