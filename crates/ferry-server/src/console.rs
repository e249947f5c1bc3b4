//! The admin console: a browser UI on the admin listener, built on the
//! typed admin API only.
//!
//! Its three static files are compiled into the binary and served under
//! `/console/` with a strict Content-Security-Policy (no inline script, no
//! other origin, never framed). The console logs in by
//! `POST /api/v1/console/session` with a named admin's password (HTTP
//! Basic, so through [`crate::admins::authenticate`]: throttled, counted
//! and audited like every admin login); the answer sets a session cookie
//! (`HttpOnly; Secure; SameSite=Strict`) holding a random id, and carries
//! the session's CSRF token. From then on the cookie authenticates the
//! console's requests to every endpoint, as the admin it was opened by,
//! with that admin's current role; a request that changes something must
//! carry the CSRF token in `X-CSRF-Token`.
//!
//! Sessions live in this server's memory (the console talks to one
//! server), end after [`IDLE`] without a request or [`LIFETIME`] after the
//! login, at logout, and when their admin is removed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use ferry_api as api;
use ferry_core::{ErrorKind, FerryError, Role};
use sha2::{Digest, Sha256};

use crate::admin::{AdminState, ApiError, Routes};
use crate::admins::Caller;

/// Name of the console's session cookie.
pub const COOKIE: &str = "ferry_console";
/// Header carrying the CSRF token of a console session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions a server keeps; the oldest goes first beyond.
const MAX_SESSIONS: usize = 10_000;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
                   object-src 'none'";

/// One open console session.
struct Session {
    admin: String,
    csrf: String,
    opened: Instant,
    last_used: Instant,
}

impl Session {
    fn ends(&self) -> Instant {
        (self.last_used + IDLE).min(self.opened + LIFETIME)
    }

    fn live(&self) -> Live {
        Live {
            admin: self.admin.clone(),
            csrf: self.csrf.clone(),
            idle_until: self.ends(),
            expires_at: self.opened + LIFETIME,
        }
    }
}

/// What a live session tells.
struct Live {
    admin: String,
    csrf: String,
    idle_until: Instant,
    expires_at: Instant,
}

/// The open console sessions of this server, by the digest of their
/// cookie's value (the value itself is not kept).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session for `admin`: the cookie value and the session.
    fn open(&self, admin: &str) -> (String, Live) {
        let cookie = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut open = self.locked();
        open.retain(|_, s| s.ends() > now);
        if open.len() >= MAX_SESSIONS {
            let oldest = open.iter().min_by_key(|(_, s)| s.opened).map(|(k, _)| *k);
            if let Some(k) = oldest {
                open.remove(&k);
            }
        }
        let session = Session {
            admin: admin.to_owned(),
            csrf,
            opened: now,
            last_used: now,
        };
        let live = session.live();
        open.insert(digest(&cookie), session);
        (cookie, live)
    }

    /// A live session, marked used.
    fn touch(&self, cookie: &str) -> Option<Live> {
        self.touch_at(cookie, Instant::now())
    }

    fn touch_at(&self, cookie: &str, now: Instant) -> Option<Live> {
        let mut open = self.locked();
        let key = digest(cookie);
        let live = open.get(&key).is_some_and(|s| s.ends() > now);
        if !live {
            open.remove(&key);
            return None;
        }
        let s = open.get_mut(&key)?;
        s.last_used = now;
        Some(s.live())
    }

    fn close(&self, cookie: &str) {
        self.locked().remove(&digest(cookie));
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// The value of the console cookie in a request, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The caller of a request that carries a console cookie (and no
/// `Authorization`): the session's admin with its current role. A request
/// that changes something must carry the session's CSRF token.
pub(crate) async fn caller(
    state: &AdminState,
    cookie: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, FerryError> {
    let ended = || {
        FerryError::new(
            ErrorKind::AuthFailed,
            "the console session has ended: log in again",
        )
    };
    let Live {
        admin: name, csrf, ..
    } = state.console.touch(cookie).ok_or_else(ended)?;
    if !matches!(*method, Method::GET | Method::HEAD) {
        let sent = headers.get(CSRF_HEADER).map_or(&[][..], |v| v.as_bytes());
        if !ferry_core::secret::same_bytes(sent, csrf.as_bytes()) {
            return Err(FerryError::denied(
                "missing or wrong X-CSRF-Token header (console sessions send it with every change)",
            ));
        }
    }
    let store = state.ctx.store.clone();
    let wanted = name.clone();
    let admin =
        crate::session::blocking(move || store.admin(&wanted).map_err(FerryError::from)).await?;
    match admin {
        Some(admin) => Ok(Caller {
            name: admin.name,
            role: admin.role,
        }),
        None => {
            state.console.close(cookie);
            Err(ended())
        }
    }
}

/// The console's static files, served without credentials.
pub(crate) fn assets() -> Router<AdminState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// The session endpoints.
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::OpenConsoleSession, _, _>(open_session)
        .add::<api::ShowConsoleSession, _, _>(show_session)
        .add::<api::EndConsoleSession, _, _>(end_session)
}

fn session_view(live: Live, role: Role) -> api::ConsoleSession {
    let (now, now_ms) = (Instant::now(), crate::transfer::now_millis());
    let at = |t: Instant| {
        let ms = t.saturating_duration_since(now).as_millis();
        api::time(now_ms.saturating_add(i64::try_from(ms).unwrap_or(0)))
    };
    api::ConsoleSession {
        name: live.admin,
        role: role.as_str().to_owned(),
        csrf_token: live.csrf,
        idle_until: at(live.idle_until),
        expires_at: at(live.expires_at),
    }
}

fn cookie_header(value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .map_err(|_| ApiError::from(FerryError::internal("bad cookie")))
}

/// `POST /api/v1/console/session`: the caller (a named admin, by password
/// through the middleware) gets a new session.
async fn open_session(State(s): State<AdminState>, req: Request) -> Result<Response, ApiError> {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| FerryError::internal("no caller"))?;
    if caller.name == crate::admins::BOOTSTRAP {
        return Err(FerryError::denied(
            "the console is for named admins: create one with `ferry admin create`",
        )
        .into());
    }
    let (cookie, live) = s.console.open(&caller.name);
    let view = session_view(live, caller.role);
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie_header(&cookie, LIFETIME.as_secs())?,
    );
    Ok(response)
}

/// `GET /api/v1/console/session`: the session of the request's cookie.
async fn show_session(
    State(s): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<api::ConsoleSession>, ApiError> {
    let none = || FerryError::not_found("this request has no console session");
    let cookie = cookie_of(&headers).ok_or_else(none)?;
    let live = s.console.touch(&cookie).ok_or_else(none)?;
    let (store, name) = (s.ctx.store.clone(), live.admin.clone());
    let admin = crate::session::blocking(move || store.admin(&name).map_err(FerryError::from))
        .await?
        .ok_or_else(none)?;
    Ok(Json(session_view(live, admin.role)))
}

/// `DELETE /api/v1/console/session`: ends the session and clears the
/// cookie.
async fn end_session(
    State(s): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cookie = cookie_of(&headers)
        .ok_or_else(|| FerryError::not_found("this request has no console session"))?;
    s.console.close(&cookie);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie_header("", 0)?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_touch_and_close() {
        let sessions = Sessions::default();
        let (cookie, opened) = sessions.open("ann");
        assert_ne!(cookie, opened.csrf);
        let live = sessions.touch(&cookie).expect("live");
        assert_eq!((live.admin.as_str(), live.csrf), ("ann", opened.csrf));
        assert!(sessions.touch("nope").is_none());
        sessions.close(&cookie);
        assert!(sessions.touch(&cookie).is_none());
    }

    #[test]
    fn sessions_end_when_idle_and_at_their_lifetime() {
        let sessions = Sessions::default();
        let (cookie, _) = sessions.open("ann");
        let start = Instant::now();
        // Used every 20 minutes, it lives on, up to its lifetime.
        let mut at = start;
        while at + Duration::from_secs(20 * 60) < start + LIFETIME {
            at += Duration::from_secs(20 * 60);
            assert!(sessions.touch_at(&cookie, at).is_some(), "{:?}", at - start);
        }
        assert!(sessions
            .touch_at(&cookie, start + LIFETIME + Duration::from_secs(1))
            .is_none());
        assert!(
            sessions.touch(&cookie).is_none(),
            "an ended session is gone"
        );
        // Unused longer than the idle limit, it ends.
        let (idle, _) = sessions.open("ann");
        assert!(sessions
            .touch_at(&idle, Instant::now() + IDLE + Duration::from_secs(1))
            .is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_console=abc; b=2"),
        );
        assert_eq!(cookie_of(&h).as_deref(), Some("abc"));
        assert_eq!(cookie_of(&HeaderMap::new()), None);
    }
}
