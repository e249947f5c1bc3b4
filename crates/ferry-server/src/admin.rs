//! The admin API: HTTPS with a bearer token, on the server only (never
//! reachable through an edge). JSON in and out; errors are
//! `{"code": …, "message": …}` with a matching HTTP status.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use ferry_api as api;
use ferry_core::{
    Account, AccountKey, AccountUpdate, Command, ErrorKind, FerryError, FolderRule, TransferStatus,
    VirtualPath,
};
use ferry_store::TransferFilter;

use crate::transfer::now_millis;
use crate::ServerCtx;

/// State of the admin API.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) ctx: Arc<ServerCtx>,
    pub(crate) token_digest: [u8; 32],
    /// The admin console's open sessions.
    pub(crate) console: Arc<crate::console::Sessions>,
    /// How long a failed admin password login waits before its answer.
    pub(crate) login_failure_delay: std::time::Duration,
}

pub use ferry_http::{error_status as http_status, ApiError};

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router: the load-balancer endpoints and the OpenAPI document
/// without credentials, every other endpoint behind `admins::authenticate`.
pub fn router(state: AdminState) -> Router {
    let (public, api) = endpoints();
    let api =
        api.router
            .layer(middleware::from_fn(idempotency))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                crate::admins::authenticate,
            ));
    public
        .router
        .merge(crate::console::assets())
        .merge(api)
        .fallback(|| async { ApiError::from(FerryError::not_found("no such endpoint")) })
        .with_state(state)
}

/// (method, path) of every route the router serves.
pub fn routes() -> Vec<(api::Method, &'static str)> {
    let (public, api) = endpoints();
    public.routes.into_iter().chain(api.routes).collect()
}

/// The public endpoints and the token-protected ones.
fn endpoints() -> (Routes, Routes) {
    let public = crate::cluster_api::health_routes().add::<api::GetOpenApi, _, _>(openapi);
    let api = Routes::default()
        .add::<api::ListAccounts, _, _>(list_accounts)
        .add::<api::CreateAccount, _, _>(create_account)
        .add::<api::ShowAccount, _, _>(show_account)
        .add::<api::UpdateAccount, _, _>(update_account)
        .add::<api::RemoveAccount, _, _>(remove_account)
        .add::<api::EnableAccount, _, _>(enable_account)
        .add::<api::DisableAccount, _, _>(disable_account)
        .add::<api::ListKeys, _, _>(list_keys)
        .add::<api::AddKey, _, _>(add_key)
        .add::<api::RemoveKeys, _, _>(remove_keys)
        .add::<api::ListTokens, _, _>(list_tokens)
        .add::<api::AddToken, _, _>(add_token)
        .add::<api::RemoveToken, _, _>(remove_token)
        .add::<api::ListFolderRules, _, _>(list_folder_rules)
        .add::<api::SetFolderRule, _, _>(set_folder_rule)
        .add::<api::RemoveFolderRule, _, _>(remove_folder_rule)
        .add::<api::ListVirtualFolders, _, _>(list_virtual_folders)
        .add::<api::CreateVirtualFolder, _, _>(create_virtual_folder)
        .add::<api::RemoveVirtualFolder, _, _>(remove_virtual_folder)
        .add::<api::ListMounts, _, _>(list_mounts)
        .add::<api::MountFolder, _, _>(mount_folder)
        .add::<api::UnmountFolder, _, _>(unmount_folder)
        .add::<api::GetDenyList, _, _>(get_deny_list)
        .add::<api::SetDenyList, _, _>(set_deny_list)
        .add::<api::GetIdleLimit, _, _>(get_idle_limit)
        .add::<api::SetIdleLimit, _, _>(set_idle_limit)
        .add::<api::GetPasswordPolicy, _, _>(get_password_policy)
        .add::<api::SetPasswordPolicy, _, _>(set_password_policy)
        .add::<api::ListBans, _, _>(list_bans)
        .add::<api::AddBan, _, _>(add_ban)
        .add::<api::RemoveBan, _, _>(remove_ban)
        .add::<api::ListTransfers, _, _>(list_transfers)
        .merge(crate::admins::routes())
        .merge(crate::console::routes())
        .merge(crate::engine_api::routes())
        .merge(crate::notify_api::routes())
        .merge(crate::retention::routes())
        .merge(crate::cluster_api::routes());
    (public, api)
}

/// A router built from [`api::Endpoint`]s: each route's method and path
/// come from its endpoint type, and are recorded so that a test can hold
/// the router against the OpenAPI document.
#[derive(Default)]
pub(crate) struct Routes {
    router: Router<AdminState>,
    routes: Vec<(api::Method, &'static str)>,
}

impl Routes {
    /// Serves endpoint `E` with `handler`.
    pub(crate) fn add<E, H, T>(mut self, handler: H) -> Self
    where
        E: api::Endpoint,
        H: axum::handler::Handler<T, AdminState>,
        T: 'static,
    {
        let method = match E::METHOD {
            api::Method::Get => MethodFilter::GET,
            api::Method::Post => MethodFilter::POST,
            api::Method::Delete => MethodFilter::DELETE,
        };
        self.router = self.router.route(E::PATH, on(method, handler));
        self.routes.push((E::METHOD, E::PATH));
        self
    }

    /// Adds another set of routes.
    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }
}

/// The successful answer of endpoint `E`: its status, and its answer as
/// JSON (no body for 204).
pub(crate) struct Reply<E: api::Endpoint>(pub E::Answer);

impl<E: api::Endpoint> IntoResponse for Reply<E> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(E::STATUS).unwrap_or(StatusCode::OK);
        if status == StatusCode::NO_CONTENT {
            return status.into_response();
        }
        (status, Json(self.0)).into_response()
    }
}

/// The answer of a 204 endpoint.
pub(crate) fn done<E: api::Endpoint<Answer = api::NoContent>>() -> Reply<E> {
    Reply(api::NoContent {})
}

/// `GET /api/v1/openapi.json`, without the token: the document describes
/// the API's shape only, is the same as `docs/admin-api.json` in the
/// source, and tools fetch it before they have a token.
async fn openapi() -> Reply<api::GetOpenApi> {
    Reply(serde_json::to_value(api::openapi::document()).unwrap_or_default())
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

fn view(ctx: &ServerCtx, a: Account) -> Result<api::Account, FerryError> {
    let keys = ctx
        .store
        .account_keys(&a.name)
        .map_err(FerryError::from)?
        .len();
    let policy = ctx
        .store
        .account_policy(&a.name)
        .map_err(FerryError::from)?
        .unwrap_or_default();
    let idle = crate::auth::idle_limit(&ctx.store)?
        .is_some_and(|limit| policy.is_idle(&limit, now_millis()));
    Ok(api::Account {
        idle,
        last_login_at: policy.last_login_at.map(api::time),
        has_password: a.password_hash.is_some(),
        name: a.name,
        home: a.home,
        enabled: a.enabled,
        keys,
        created_at: api::time(a.created_at),
        expires_at: policy.expires_at.map(api::time),
        allowed_networks: policy.allowed_networks,
        quota_bytes: policy.quota_bytes,
        quota_files: policy.quota_files,
        upload_rate: policy.upload_rate,
        download_rate: policy.download_rate,
        max_sessions: policy.max_sessions,
        must_change_password: policy.must_change_password,
        used_bytes: None,
        used_files: None,
    })
}

async fn list_accounts(State(s): State<AdminState>) -> ApiResult<Reply<api::ListAccounts>> {
    run(move || {
        let accounts = s.ctx.store.accounts().map_err(FerryError::from)?;
        accounts
            .into_iter()
            .map(|a| view(&s.ctx, a))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map(Reply)
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
) -> ApiResult<Reply<api::ShowAccount>> {
    run(move || {
        let a = existing_account(&s.ctx, &name)?;
        let home = crate::repository::Home::open(&s.ctx.repository, &a.home)?;
        let usage = crate::quota::usage_of(home.root()).map_err(crate::repository::io_error)?;
        let mut shown = view(&s.ctx, a)?;
        shown.used_bytes = Some(usage.bytes);
        shown.used_files = Some(usage.files);
        Ok(shown)
    })
    .await
    .map(Reply)
}

/// Checks an account name: letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit, at most 64 characters.
pub fn validate_account_name(name: &str) -> Result<(), FerryError> {
    ferry_core::engine::check_name("account", name)
}

async fn create_account(
    State(s): State<AdminState>,
    Json(body): Json<api::NewAccount>,
) -> ApiResult<Reply<api::CreateAccount>> {
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
            .map(|pw| crate::password::first_password(&s.ctx.store, &body.name, pw))
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
        if body.must_change_password {
            // A second command: Account has no such field. A login between
            // the two would find the flag unset; nothing else is lost.
            s.ctx.apply(&Command::UpdateAccount(AccountUpdate {
                must_change_password: Some(true),
                ..AccountUpdate::of(&account.name)
            }))?;
        }
        crate::repository::Home::open(&s.ctx.repository, &account.home)?;
        tracing::info!(account = %account.name, "account created");
        view(&s.ctx, account)
    })
    .await
    .map(Reply)
}

/// Enabling an account also starts its idle time afresh: an account the
/// idle limit refuses is let in again by `ferry account enable`.
async fn set_enabled(s: AdminState, name: String, enabled: bool) -> ApiResult<()> {
    run(move || {
        s.ctx.apply(&Command::SetAccountEnabled {
            name: name.clone(),
            enabled,
        })?;
        if enabled {
            s.ctx.apply(&Command::UpdateAccount(AccountUpdate {
                active_since: Some(now_millis()),
                ..AccountUpdate::of(name)
            }))?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

async fn enable_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::EnableAccount>> {
    set_enabled(s, name, true).await.map(|()| done())
}

async fn disable_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::DisableAccount>> {
    set_enabled(s, name, false).await.map(|()| done())
}

/// An expiry as the API takes it: an RFC 3339 time, a date (midnight
/// UTC) or `never`.
fn parse_expiry(text: &str) -> Result<Option<i64>, FerryError> {
    if text == "never" {
        return Ok(None);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.timestamp_millis()));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc().timestamp_millis()))
        .ok_or_else(|| {
            FerryError::invalid(format!(
                "expiry {text:?}: an RFC 3339 time, a date (YYYY-MM-DD) or \"never\""
            ))
        })
}

/// Networks as stored: canonical CIDRs.
fn canonical_networks(list: &[String]) -> Result<Vec<String>, FerryError> {
    Ok(ferry_core::network::parse_networks(&list.join(","))?
        .iter()
        .map(ToString::to_string)
        .collect())
}

async fn update_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::AccountChanges>,
) -> ApiResult<Reply<api::UpdateAccount>> {
    if body.password.is_some() && body.remove_password {
        return Err(FerryError::invalid("give a new password or remove it, not both").into());
    }
    let expires_at = body.expires_at.as_deref().map(parse_expiry).transpose()?;
    let allowed_networks = body
        .allowed_networks
        .as_deref()
        .map(canonical_networks)
        .transpose()?;
    run(move || {
        existing_account(&s.ctx, &name)?;
        let password_hash = match (&body.password, body.remove_password) {
            (Some(password), _) => Some(Some(crate::password::new_account_password(
                &s.ctx.store,
                &name,
                password,
            )?)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let quota = |n: Option<u64>| n.map(|n| (n > 0).then_some(n));
        s.ctx.apply(&Command::UpdateAccount(AccountUpdate {
            name: name.clone(),
            password_hash,
            expires_at,
            allowed_networks,
            quota_bytes: quota(body.quota_bytes),
            quota_files: quota(body.quota_files),
            upload_rate: quota(body.upload_rate),
            download_rate: quota(body.download_rate),
            max_sessions: quota(body.max_sessions),
            must_change_password: body.must_change_password,
            active_since: None,
        }))?;
        s.ctx.usage.forget(&name);
        tracing::info!(account = %name, "account changed");
        view(&s.ctx, existing_account(&s.ctx, &name)?)
    })
    .await
    .map(Reply)
}

/// The routes, schedules and monitors that use account `name` (as the
/// arrivals' account or a copy's target), as commands that remove them.
fn uses_of(ctx: &ServerCtx, name: &str) -> Result<Vec<(String, Command)>, FerryError> {
    let mut uses = Vec::new();
    for r in ctx.store.routes().map_err(FerryError::from)? {
        let targets = r
            .actions
            .iter()
            .any(|a| matches!(a, ferry_core::Action::Copy { account, .. } if account == name));
        if r.account == name || targets {
            uses.push((
                format!("route {}", r.name),
                Command::RemoveRoute { name: r.name },
            ));
        }
    }
    for sc in ctx.store.schedules().map_err(FerryError::from)? {
        if sc.action.account() == name {
            uses.push((
                format!("schedule {}", sc.name),
                Command::RemoveSchedule { name: sc.name },
            ));
        }
    }
    for m in ctx.store.monitors().map_err(FerryError::from)? {
        if m.account == name {
            uses.push((
                format!("monitor {}", m.name),
                Command::RemoveMonitor { name: m.name },
            ));
        }
    }
    Ok(uses)
}

async fn remove_account(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<api::RemoveAccountQuery>,
) -> ApiResult<Reply<api::RemoveAccount>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        let uses = uses_of(&s.ctx, &name)?;
        if !uses.is_empty() && query.with_uses != Some(true) {
            let names: Vec<&str> = uses.iter().map(|(what, _)| what.as_str()).collect();
            return Err(FerryError::new(
                ErrorKind::Conflict,
                format!(
                    "account {name:?} is used by {}; remove those first, or remove them with it (with_uses)",
                    names.join(", ")
                ),
            ));
        }
        for (what, command) in uses {
            match s.ctx.apply(&command) {
                // Removed meanwhile by someone else: as good.
                Err(e) if e.kind == ErrorKind::NotFound => {}
                other => {
                    other?;
                }
            }
            tracing::info!(account = %name, removed = %what, "removed with its account");
        }
        s.ctx.apply(&Command::RemoveAccount { name })
    })
    .await?;
    Ok(done())
}

async fn remove_keys(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<api::KeyQuery>,
) -> ApiResult<Reply<api::RemoveKeys>> {
    let fingerprint = match (query.fingerprint, query.all) {
        (Some(f), None | Some(false)) => Some(f),
        (None, Some(true)) => None,
        _ => {
            return Err(
                FerryError::invalid("name one key (fingerprint) or all of them (all=true)").into(),
            )
        }
    };
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.apply(&Command::RemoveAccountKey {
            account: name,
            fingerprint,
        })
    })
    .await?;
    Ok(done())
}

/// Whether `text` is one short line an operator wrote (a token's label, a
/// ban's reason): at most 200 bytes, no control characters.
fn is_short_line(text: &str) -> bool {
    text.len() <= 200 && !text.chars().any(char::is_control)
}

/// Refuses a token label that is not [`is_short_line`].
pub(crate) fn check_label(label: &str) -> Result<(), FerryError> {
    if is_short_line(label) {
        Ok(())
    } else {
        Err(FerryError::invalid(
            "label: at most 200 printable characters",
        ))
    }
}

/// A client address as bans name it: canonical, IPv4-mapped as IPv4.
fn ban_address(text: &str) -> Result<String, FerryError> {
    ferry_core::network::client_ip(text)
        .map(|ip| ip.to_string())
        .ok_or_else(|| FerryError::invalid(format!("{text:?} is not an IP address")))
}

async fn list_bans(State(s): State<AdminState>) -> ApiResult<Reply<api::ListBans>> {
    run(move || s.ctx.store.bans(now_millis()).map_err(FerryError::from))
        .await
        .map(|bans| Reply(bans.into_iter().map(Into::into).collect()))
}

async fn add_ban(
    State(s): State<AdminState>,
    Json(body): Json<api::NewBan>,
) -> ApiResult<Reply<api::AddBan>> {
    let address = ban_address(&body.address)?;
    if body.minutes == 0 || !is_short_line(&body.reason) {
        return Err(FerryError::invalid(
            "a ban lasts at least a minute; its reason is one short line",
        )
        .into());
    }
    let now = now_millis();
    let minutes = i64::try_from(body.minutes).unwrap_or(i64::MAX / 60_000);
    let ban = ferry_core::Ban {
        address,
        until: now.saturating_add(minutes.saturating_mul(60_000)),
        banned_at: now,
        reason: body.reason,
        by: "admin".to_owned(),
    };
    let stored = ban.clone();
    run(move || s.ctx.apply(&Command::BanAddress(stored))).await?;
    tracing::info!(address = %ban.address, until = ban.until, "address banned by an admin");
    Ok(Reply(ban.into()))
}

async fn remove_ban(
    State(s): State<AdminState>,
    Path(address): Path<String>,
) -> ApiResult<Reply<api::RemoveBan>> {
    let address = ban_address(&address)?;
    run(move || s.ctx.apply(&Command::UnbanAddress { address })).await?;
    Ok(done())
}

fn deny_list(ctx: &ServerCtx) -> Result<api::Networks, FerryError> {
    let text = ctx
        .store
        .setting(ferry_core::network::DENY_NETWORKS_SETTING)
        .map_err(FerryError::from)?
        .unwrap_or_default();
    Ok(api::Networks {
        networks: text
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

async fn get_deny_list(State(s): State<AdminState>) -> ApiResult<Reply<api::GetDenyList>> {
    run(move || deny_list(&s.ctx)).await.map(Reply)
}

async fn set_deny_list(
    State(s): State<AdminState>,
    Json(body): Json<api::Networks>,
) -> ApiResult<Reply<api::SetDenyList>> {
    let networks = canonical_networks(&body.networks)?;
    run(move || {
        s.ctx.apply(&Command::SetSetting {
            key: ferry_core::network::DENY_NETWORKS_SETTING.to_owned(),
            value: networks.join(","),
        })?;
        tracing::info!(networks = %networks.join(","), "deny list set");
        deny_list(&s.ctx)
    })
    .await
    .map(Reply)
}

fn password_policy_view(ctx: &ServerCtx) -> Result<api::PasswordPolicy, FerryError> {
    Ok(api::PasswordPolicy {
        min_length: u32::try_from(crate::password::min_length(&ctx.store)?).unwrap_or(u32::MAX),
    })
}

async fn get_password_policy(
    State(s): State<AdminState>,
) -> ApiResult<Reply<api::GetPasswordPolicy>> {
    run(move || password_policy_view(&s.ctx)).await.map(Reply)
}

async fn set_password_policy(
    State(s): State<AdminState>,
    Json(body): Json<api::PasswordPolicy>,
) -> ApiResult<Reply<api::SetPasswordPolicy>> {
    let (floor, most) = (
        crate::auth::MIN_PASSWORD_LEN,
        crate::password::MAX_MIN_LENGTH,
    );
    let min = usize::try_from(body.min_length).unwrap_or(usize::MAX);
    if !(floor..=most).contains(&min) {
        return Err(FerryError::invalid(format!(
            "the minimum length is {floor} to {most} characters"
        ))
        .into());
    }
    run(move || {
        s.ctx.apply(&Command::SetSetting {
            key: crate::password::MIN_LENGTH_SETTING.to_owned(),
            value: min.to_string(),
        })?;
        tracing::info!(min_length = min, "password policy set");
        password_policy_view(&s.ctx)
    })
    .await
    .map(Reply)
}

fn idle_limit_view(ctx: &ServerCtx) -> Result<api::IdleLimit, FerryError> {
    Ok(match crate::auth::idle_limit(&ctx.store)? {
        Some(limit) => api::IdleLimit {
            disable_after_idle_days: limit.days,
            since: Some(api::time(limit.since)),
        },
        None => api::IdleLimit::default(),
    })
}

async fn get_idle_limit(State(s): State<AdminState>) -> ApiResult<Reply<api::GetIdleLimit>> {
    run(move || idle_limit_view(&s.ctx)).await.map(Reply)
}

async fn set_idle_limit(
    State(s): State<AdminState>,
    Json(body): Json<api::IdleLimit>,
) -> ApiResult<Reply<api::SetIdleLimit>> {
    if body.disable_after_idle_days > 36_500 {
        return Err(FerryError::invalid("the idle limit is at most 36500 days").into());
    }
    run(move || {
        let value = match body.disable_after_idle_days {
            0 => String::new(),
            days => ferry_core::IdleLimit {
                days,
                since: now_millis(),
            }
            .to_setting(),
        };
        s.ctx.apply(&Command::SetSetting {
            key: ferry_core::IDLE_LIMIT_SETTING.to_owned(),
            value,
        })?;
        tracing::info!(days = body.disable_after_idle_days, "idle limit set");
        idle_limit_view(&s.ctx)
    })
    .await
    .map(Reply)
}

async fn add_key(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::NewKey>,
) -> ApiResult<Reply<api::AddKey>> {
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
    Ok(Reply(key.into()))
}

async fn list_keys(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListKeys>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.account_keys(&name).map_err(FerryError::from)
    })
    .await
    .map(|keys| Reply(keys.into_iter().map(Into::into).collect()))
}

async fn list_folder_rules(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListFolderRules>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.folder_rules(&name).map_err(FerryError::from)
    })
    .await
    .map(|rules| Reply(rules.into_iter().map(Into::into).collect()))
}

/// A folder as rules name it: absolute and canonical, so `/in/`, `in` and
/// `/in/./` are one rule.
fn rule_folder(path: &str) -> Result<String, FerryError> {
    VirtualPath::parse(path, &VirtualPath::root())
        .map(|v| v.to_string())
        .map_err(|e| FerryError::invalid(format!("folder {path:?}: {e}")))
}

async fn set_folder_rule(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::NewFolderRule>,
) -> ApiResult<Reply<api::SetFolderRule>> {
    let allow = ferry_core::permissions::parse_permissions(&body.allow.join(","))?;
    let rule = FolderRule {
        account: name,
        path: rule_folder(&body.path)?,
        allow,
    };
    let stored = rule.clone();
    run(move || s.ctx.apply(&Command::SetFolderRule(stored))).await?;
    Ok(Reply(rule.into()))
}

async fn remove_folder_rule(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<api::FolderQuery>,
) -> ApiResult<Reply<api::RemoveFolderRule>> {
    let path = rule_folder(&query.path)?;
    run(move || {
        s.ctx.apply(&Command::RemoveFolderRule {
            account: name,
            path,
        })
    })
    .await?;
    Ok(done())
}

async fn list_virtual_folders(
    State(s): State<AdminState>,
) -> ApiResult<Reply<api::ListVirtualFolders>> {
    let (folders, mounts) = run(move || {
        let folders = s.ctx.store.virtual_folders().map_err(FerryError::from)?;
        let mounts = s.ctx.store.mounts(None).map_err(FerryError::from)?;
        Ok((folders, mounts))
    })
    .await?;
    Ok(Reply(
        folders
            .into_iter()
            .map(|f| api::VirtualFolder {
                mounts: mounts
                    .iter()
                    .filter(|(m, _)| m.folder == f.name)
                    .map(|(m, _)| m.clone().into())
                    .collect(),
                name: f.name,
                path: f.path,
                created_at: api::time(f.created_at),
            })
            .collect(),
    ))
}

async fn create_virtual_folder(
    State(s): State<AdminState>,
    Json(body): Json<api::NewVirtualFolder>,
) -> ApiResult<Reply<api::CreateVirtualFolder>> {
    ferry_core::engine::check_name("virtual folder", &body.name)?;
    let dir = VirtualPath::parse_absolute(&body.path).map_err(FerryError::from)?;
    if dir.is_root() {
        return Err(FerryError::invalid("a virtual folder cannot be the repository root").into());
    }
    let folder = ferry_core::VirtualFolder {
        name: body.name,
        path: dir.to_string().trim_start_matches('/').to_owned(),
        created_at: now_millis(),
    };
    let stored = folder.clone();
    run(move || {
        s.ctx.apply(&Command::CreateVirtualFolder(stored.clone()))?;
        // Made here; every server makes it again when it first opens it.
        crate::repository::Home::open(&s.ctx.repository, &stored.path)?;
        tracing::info!(folder = %stored.name, path = %stored.path, "virtual folder created");
        Ok(())
    })
    .await?;
    Ok(Reply(api::VirtualFolder {
        name: folder.name,
        path: folder.path,
        created_at: api::time(folder.created_at),
        mounts: Vec::new(),
    }))
}

async fn remove_virtual_folder(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveVirtualFolder>> {
    run(move || s.ctx.apply(&Command::RemoveVirtualFolder { name })).await?;
    Ok(done())
}

async fn list_mounts(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListMounts>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.mounts(Some(&name)).map_err(FerryError::from)
    })
    .await
    .map(|mounts| Reply(mounts.into_iter().map(|(m, _)| m.into()).collect()))
}

async fn mount_folder(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::NewMount>,
) -> ApiResult<Reply<api::MountFolder>> {
    let allow = ferry_core::permissions::parse_permissions(&body.allow.join(","))?;
    let mount = run(move || {
        existing_account(&s.ctx, &name)?;
        let wanted = rule_folder(&body.path)?;
        // Other mounts of the account, but the one this replaces.
        let others: Vec<String> = s
            .ctx
            .store
            .mounts(Some(&name))
            .map_err(FerryError::from)?
            .into_iter()
            .map(|(m, _)| m.path)
            .filter(|p| *p != wanted)
            .collect();
        let mount = ferry_core::Mount {
            account: name,
            folder: body.folder,
            path: ferry_core::folders::check_mount_path(&wanted, &others)?,
            allow,
        };
        s.ctx.apply(&Command::MountFolder(mount.clone()))?;
        Ok(mount)
    })
    .await?;
    Ok(Reply(mount.into()))
}

async fn unmount_folder(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<api::FolderQuery>,
) -> ApiResult<Reply<api::UnmountFolder>> {
    let path = rule_folder(&query.path)?;
    run(move || {
        s.ctx.apply(&Command::UnmountFolder {
            account: name,
            path,
        })
    })
    .await?;
    Ok(done())
}

async fn add_token(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Json(body): Json<api::NewToken>,
) -> ApiResult<Reply<api::AddToken>> {
    check_label(&body.label)?;
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
    let mut view = api::Token::from(record);
    view.token = Some(token.expose().to_owned());
    Ok(Reply(view))
}

async fn list_tokens(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::ListTokens>> {
    run(move || {
        existing_account(&s.ctx, &name)?;
        s.ctx.store.account_tokens(&name).map_err(FerryError::from)
    })
    .await
    .map(|tokens| Reply(tokens.into_iter().map(api::Token::from).collect()))
}

async fn remove_token(
    State(s): State<AdminState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Reply<api::RemoveToken>> {
    run(move || {
        s.ctx
            .apply(&Command::RemoveAccountToken { account: name, id })
    })
    .await?;
    Ok(done())
}

async fn list_transfers(
    State(s): State<AdminState>,
    Query(q): Query<api::TransferQuery>,
) -> ApiResult<Reply<api::ListTransfers>> {
    let status = q
        .status
        .map(|v| v.parse::<TransferStatus>())
        .transpose()
        .map_err(FerryError::invalid)?;
    let before = match (q.before, q.before_id) {
        (Some(at), Some(id)) => Some((api::unix_ms(&at), id)),
        (None, None) => None,
        _ => {
            return Err(
                FerryError::invalid("before and before_id go together (the last row's)").into(),
            )
        }
    };
    let protocol = q.protocol.filter(|p| !p.is_empty());
    if let Some(p) = &protocol {
        serde_json::from_value::<ferry_core::Protocol>(serde_json::Value::String(p.clone()))
            .map_err(|_| {
                FerryError::invalid(format!("protocol {p:?}: use sftp, https, monitor or route"))
            })?;
    }
    let filter = TransferFilter {
        account: q.account,
        status,
        since: q.since.as_ref().map(api::unix_ms),
        partner: q.partner,
        until: q.until.as_ref().map(api::unix_ms),
        protocol,
        name: q.name.filter(|n| !n.is_empty()),
        before,
        limit: q.limit,
    };
    run(move || {
        s.ctx
            .store
            .list_transfers(&filter)
            .map_err(FerryError::from)
    })
    .await
    .map(|rows| Reply(rows.into_iter().map(api::Transfer::from).collect()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every route the router serves is in the OpenAPI document (and so in
    /// `docs/admin-api.json`, which a ferry-api test holds to it), and the
    /// document has no endpoint that the router lacks.
    #[test]
    fn router_and_openapi_document_agree() {
        let doc = serde_json::to_value(ferry_api::openapi::document()).unwrap_or_default();
        let served: BTreeSet<(String, String)> = super::routes()
            .into_iter()
            .map(|(m, p)| (m.as_str().to_ascii_lowercase(), p.to_owned()))
            .collect();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(method, _)| (method.clone(), path.clone()))
            })
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "served but not in the document: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
        assert_eq!(super::routes().len(), served.len(), "a route twice");
    }
}
