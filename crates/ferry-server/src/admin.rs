//! The admin API: HTTPS with a bearer token, on the server only (never
//! reachable through an edge). JSON in and out; errors are
//! `{"code": …, "message": …}` with a matching HTTP status.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::{
    Account, AccountKey, Command, ErrorKind, FerryError, Secret, TransferStatus, VirtualPath,
};
use ferry_store::TransferFilter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::transfer::now_millis;
use crate::ServerCtx;

/// State of the admin API.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) ctx: Arc<ServerCtx>,
    pub(crate) token_digest: [u8; 32],
}

pub use ferry_http::{error_status as http_status, ApiError};

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/accounts", get(list_accounts).post(create_account))
        .route(
            "/api/v1/accounts/{name}",
            get(show_account).delete(remove_account),
        )
        .route("/api/v1/accounts/{name}/enable", post(enable_account))
        .route("/api/v1/accounts/{name}/disable", post(disable_account))
        .route("/api/v1/accounts/{name}/keys", get(list_keys).post(add_key))
        .route(
            "/api/v1/accounts/{name}/tokens",
            get(list_tokens).post(add_token),
        )
        .route(
            "/api/v1/accounts/{name}/tokens/{id}",
            axum::routing::delete(remove_token),
        )
        .route("/api/v1/transfers", get(list_transfers))
        .merge(crate::engine_api::routes())
        .merge(crate::cluster_api::routes())
        .layer(middleware::from_fn(idempotency))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    crate::cluster_api::health_routes()
        .merge(api)
        .fallback(|| async { ApiError::from(FerryError::not_found("no such endpoint")) })
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()));
    // Comparing digests keeps the comparison's timing independent of the token.
    match presented {
        Some(d) if d.as_slice() == state.token_digest => next.run(req).await,
        _ => ApiError::from(FerryError::new(
            ErrorKind::AuthFailed,
            "missing or wrong admin token",
        ))
        .into_response(),
    }
}

tokio::task_local! {
    /// The `Idempotency-Key` of the admin request being served.
    static IDEMPOTENCY_KEY: String;
}

/// Reads a request's `Idempotency-Key`: the changes it makes are applied
/// once per key (see [`ferry_core::Command::Keyed`]).
async fn idempotency(req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned));
    match key {
        None => next.run(req).await,
        Some(Ok(key))
            if !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            IDEMPOTENCY_KEY.scope(key, next.run(req)).await
        }
        Some(_) => ApiError::from(FerryError::invalid(
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        ))
        .into_response(),
    }
}

/// Runs `f` on the blocking pool; the changes it applies carry the
/// request's idempotency key, if it has one.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FerryError> + Send + 'static,
) -> ApiResult<T> {
    let key = IDEMPOTENCY_KEY.try_with(Clone::clone).ok();
    crate::session::blocking(move || {
        let _keyed = key.map(crate::KeyedChanges::enter);
        f()
    })
    .await
    .map_err(ApiError::from)
}

/// An account as the API shows it (no password hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// Login name.
    pub name: String,
    /// Home, relative to the repository.
    pub home: String,
    /// Whether login is allowed.
    pub enabled: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// Number of authorised keys.
    pub keys: usize,
    /// Creation time, unix ms.
    pub created_at: i64,
}

fn view(ctx: &ServerCtx, a: Account) -> Result<AccountView, FerryError> {
    let keys = ctx
        .store
        .account_keys(&a.name)
        .map_err(FerryError::from)?
        .len();
    Ok(AccountView {
        has_password: a.password_hash.is_some(),
        name: a.name,
        home: a.home,
        enabled: a.enabled,
        keys,
        created_at: a.created_at,
    })
}

async fn list_accounts(State(s): State<AdminState>) -> ApiResult<Json<Vec<AccountView>>> {
    run(move || {
        let accounts = s.ctx.store.accounts().map_err(FerryError::from)?;
        accounts
            .into_iter()
            .map(|a| view(&s.ctx, a))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map(Json)
}

/// The account called `name`, or a not-found error naming it.
pub(crate) fn existing_account(ctx: &ServerCtx, name: &str) -> Result<Account, FerryError> {
    ctx.store
        .account(name)
        .map_err(FerryError::from)?
        .ok_or_else(|| FerryError::not_found(format!("account {name:?} not found")))
}

async fn show_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Json<AccountView>> {
    run(move || {
        let a = existing_account(&s.ctx, &name)?;
        view(&s.ctx, a)
    })
    .await
    .map(Json)
}

/// Body of `POST /api/v1/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Login name.
    pub name: String,
    /// Initial password.
    pub password: Option<Secret>,
    /// Home relative to the repository (default: the name).
    pub home: Option<String>,
}

/// Checks an account name: letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit, at most 64 characters.
pub fn validate_account_name(name: &str) -> Result<(), FerryError> {
    ferry_core::engine::check_name("account", name)
}

async fn create_account(
    State(s): State<AdminState>,
    Json(body): Json<NewAccount>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    validate_account_name(&body.name)?;
    let home = VirtualPath::parse_absolute(body.home.as_deref().unwrap_or(&body.name))
        .map_err(FerryError::from)?;
    if home.is_root() {
        return Err(FerryError::invalid("home must not be the repository root").into());
    }
    let home = home.to_string().trim_start_matches('/').to_owned();
    run(move || {
        let password_hash = body
            .password
            .as_ref()
            .map(crate::auth::hash_password)
            .transpose()?;
        let account = Account {
            id: uuid::Uuid::new_v4().to_string(),
            name: body.name.clone(),
            home,
            password_hash,
            enabled: true,
            created_at: now_millis(),
        };
        s.ctx.apply(&Command::CreateAccount(account.clone()))?;
        crate::repository::Home::open(&s.ctx.repository, &account.home)?;
        tracing::info!(account = %account.name, "account created");
        view(&s.ctx, account)
    })
    .await
    .map(|v| (StatusCode::CREATED, Json(v)))
}

async fn set_enabled(s: AdminState, name: String, enabled: bool) -> ApiResult<StatusCode> {
    run(move || s.ctx.apply(&Command::SetAccountEnabled { name, enabled })).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    set_enabled(s, name, true).await
}

async fn disable_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    set_enabled(s, name, false).await
}

async fn remove_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    run(move || s.ctx.apply(&Command::RemoveAccount { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/accounts/{name}/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

async fn add_key(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<NewKey>,
) -> ApiResult<(StatusCode, Json<AccountKey>)> {
    let (public_key, fingerprint, comment) = crate::auth::parse_public_key(&body.public_key)?;
    let key = AccountKey {
        account: name,
        fingerprint,
        public_key,
        comment,
        added_at: now_millis(),
    };
    let stored = key.clone();
    run(move || s.ctx.apply(&Command::AddAccountKey(stored))).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn list_keys(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<AccountKey>>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.account_keys(&name).map_err(FerryError::from)
    })
    .await
    .map(Json)
}

/// Body of `POST /api/v1/accounts/{name}/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for.
    #[serde(default)]
    pub label: String,
    /// Days until it stops working; none means never.
    pub expires_in_days: Option<u32>,
}

/// A token as listed: everything but its digest.
#[derive(Debug, Serialize)]
pub struct TokenView {
    /// Public id (the token text is `fy_ID_…`).
    pub id: String,
    /// Label.
    pub label: String,
    /// Created (unix milliseconds).
    pub created_at: i64,
    /// Expiry (unix milliseconds), if any.
    pub expires_at: Option<i64>,
    /// The token itself: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<ferry_core::AccountToken> for TokenView {
    fn from(t: ferry_core::AccountToken) -> Self {
        Self {
            id: t.id,
            label: t.label,
            created_at: t.created_at,
            expires_at: t.expires_at,
            token: None,
        }
    }
}

async fn add_token(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    if body.label.len() > 200 || body.label.chars().any(char::is_control) {
        return Err(FerryError::invalid("label: at most 200 printable characters").into());
    }
    let (token, id, sha256) = crate::auth::new_token();
    let created_at = now_millis();
    let record = ferry_core::AccountToken {
        account: name,
        id,
        sha256,
        label: body.label,
        created_at,
        expires_at: body
            .expires_in_days
            .map(|d| created_at + i64::from(d) * 86_400_000),
    };
    let stored = record.clone();
    run(move || s.ctx.apply(&Command::AddAccountToken(stored))).await?;
    let mut view = TokenView::from(record);
    view.token = Some(token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_tokens(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TokenView>>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.account_tokens(&name).map_err(FerryError::from)
    })
    .await
    .map(|tokens| Json(tokens.into_iter().map(TokenView::from).collect()))
}

async fn remove_token(
    State(s): State<AdminState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    run(move || {
        s.ctx
            .apply(&Command::RemoveAccountToken { account: name, id })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/transfers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferQuery {
    account: Option<String>,
    status: Option<String>,
    since: Option<i64>,
    partner: Option<String>,
    limit: Option<u32>,
}

async fn list_transfers(
    State(s): State<AdminState>,
    Query(q): Query<TransferQuery>,
) -> ApiResult<Json<Vec<ferry_core::TransferRecord>>> {
    let status = q
        .status
        .map(|v| v.parse::<TransferStatus>())
        .transpose()
        .map_err(FerryError::invalid)?;
    let filter = TransferFilter {
        account: q.account,
        status,
        since: q.since,
        partner: q.partner,
        limit: q.limit,
    };
    run(move || {
        s.ctx
            .store
            .list_transfers(&filter)
            .map_err(FerryError::from)
    })
    .await
    .map(Json)
}
