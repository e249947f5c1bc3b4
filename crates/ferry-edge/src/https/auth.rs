//! Who is making an HTTP request.
//!
//! Three credentials lead to a server session ([`Lease`]): HTTP Basic (the
//! account's password), a bearer API token, and the browser client's session
//! cookie. Password and token logins are cached for a minute under a salted
//! digest of the credential, so a client sending Basic with every request
//! costs one argon2 check a minute, not one per request (`login_cache_secs`).
//!
//! The cookie holds no state of this edge: its value is a browser-session
//! credential that the servers issued at the password login and keep in
//! their replicated token table (`fw_…`), so any edge logs in with it as a
//! token, on every request and without caching — a logout through another
//! edge revokes it on the servers and it is refused everywhere at once.
//! The CSRF token is derived from the cookie ([`csrf_token`]), so any edge
//! checks it without state; the cookie is `HttpOnly`, so a foreign page can
//! neither read it nor compute the token.
//!
//! Failed logins are throttled per client address and per account name (the
//! same whether the account exists or not) and every failure is answered
//! after the same delay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method, StatusCode};
use base64::Engine;
use ferry_core::limits::NotYet;
use ferry_core::{ErrorKind, FerryError, Protocol, Secret};
use ferry_http::ApiError;
use ferry_proto::message::{Credential, Request, Response};
use sha2::{Digest, Sha256};

use super::lease::Lease;
use crate::config::HttpsConfig;
use crate::upstream::Upstreams;

/// Name of the browser client's session cookie.
pub const COOKIE: &str = "ferry_session";
/// Header carrying the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Domain label of the CSRF token's digest.
const CSRF_LABEL: &[u8] = b"ferry csrf token v1\0";
/// Prefix of a browser-session credential (the server's `fw_` tokens).
const COOKIE_PREFIX: &str = ferry_core::WEB_SESSION_TOKEN_PREFIX;

/// An authenticated request.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The server session.
    pub lease: Arc<Lease>,
}

struct Cached {
    lease: Arc<Lease>,
    since: Instant,
}

/// The CSRF token of the session whose cookie value is `cookie`: hex
/// SHA-256 over a fixed label and the value. Every edge computes the same.
pub fn csrf_token(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(CSRF_LABEL);
    h.update(cookie.as_bytes());
    hex::encode(h.finalize())
}

/// A new browser session: what the client is told.
pub struct WebSession {
    /// The cookie's value.
    pub cookie: Secret,
    /// Its CSRF token.
    pub csrf: String,
    /// The account's canonical name.
    pub account: String,
    /// Seconds the cookie lives (its `Max-Age`).
    pub lifetime_secs: u64,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
}

/// A login attempt in flight; it counts as failed only if marked so
/// (not when no server answered).
struct Attempt<'a> {
    auth: &'a Auth,
    keys: Vec<String>,
    failed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let window = self.auth.window();
        locked(&self.auth.failures).end(&self.keys, self.failed, window);
    }
}

/// The edge's HTTP authentication state.
pub struct Auth {
    upstreams: Arc<Upstreams>,
    config: HttpsConfig,
    salt: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    failures: Mutex<ferry_core::limits::Failures>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The 401 answer. Browsers get no `WWW-Authenticate` challenge when the
/// request comes from the browser client, so they do not pop up a dialog.
pub fn unauthorized(headers: &HeaderMap, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    let from_web_client = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"ferry-web");
    if !from_web_client {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Ferry\", charset=\"UTF-8\""),
        );
    }
    response
}

/// Why a request is not let through.
pub enum Refusal {
    /// 401 (with the challenge as [`unauthorized`] decides).
    Unauthorized(&'static str),
    /// 429 with `Retry-After`: too many failed logins.
    Throttled(u64),
    /// Any other error.
    Error(ApiError),
}

impl From<FerryError> for Refusal {
    fn from(e: FerryError) -> Self {
        Refusal::Error(e.into())
    }
}

impl Refusal {
    /// The answer.
    pub fn respond(self, headers: &HeaderMap) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self {
            Refusal::Unauthorized(message) => unauthorized(headers, message),
            Refusal::Throttled(secs) => {
                let mut r = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("too many failed logins; try again in {secs} s"),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
                r
            }
            Refusal::Error(e) => e.into_response(),
        }
    }
}

enum Presented {
    Basic { user: String, password: Secret },
    Bearer(Secret),
    Cookie(String),
}

fn presented(headers: &HeaderMap) -> Result<Option<Presented>, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| Refusal::Unauthorized("malformed Authorization header"))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Refusal::Unauthorized("malformed Basic credentials"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or(Refusal::Unauthorized("malformed Basic credentials"))?;
            return Ok(Some(Presented::Basic {
                user: user.to_owned(),
                password: Secret::new(password),
            }));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(Presented::Bearer(Secret::new(rest.trim()))));
        }
        return Err(Refusal::Unauthorized(
            "unsupported authorization scheme (use Basic or Bearer)",
        ));
    }
    Ok(cookie(headers).map(Presented::Cookie))
}

/// The value of the session cookie, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Auth {
    /// Authentication for an edge with these upstreams and settings.
    pub fn new(upstreams: Arc<Upstreams>, config: HttpsConfig) -> Self {
        let mut salt = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
        Self {
            upstreams,
            config,
            salt,
            cache: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.login_failure_window_secs)
    }

    /// Refuses early when the address or the account name has failed too
    /// often; otherwise starts an attempt. While attempts in flight could
    /// take either past its limit, waits for them (at most 10 s), so that
    /// parallel attempts cannot all pass before the first failure is known.
    async fn begin_attempt(&self, ip: IpAddr, user: &str) -> Result<Attempt<'_>, Refusal> {
        let (max, window) = (self.config.max_login_failures, self.window());
        let mut keys = vec![format!("ip:{ip}")];
        if !user.is_empty() {
            keys.push(format!("user:{user}"));
        }
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let begun = locked(&self.failures).begin(&keys, max, window);
            match begun {
                Ok(()) => {
                    return Ok(Attempt {
                        auth: self,
                        keys,
                        failed: false,
                    })
                }
                Err(NotYet::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(NotYet::Busy) => return Err(Refusal::Throttled(1)),
                Err(NotYet::Blocked { retry_in_secs }) => {
                    return Err(Refusal::Throttled(retry_in_secs))
                }
            }
        }
    }

    async fn failed(&self, mut attempt: Attempt<'_>) -> Refusal {
        attempt.failed = true;
        drop(attempt);
        tokio::time::sleep(Duration::from_millis(self.config.auth_failure_delay_ms)).await;
        Refusal::Unauthorized("authentication failed")
    }

    /// Logs in with a session cookie, on the servers and without a cache:
    /// a cookie revoked through any edge is refused at once. A refusal is
    /// delayed like any other but not counted against the address: the
    /// cookie's 256-bit secret cannot be guessed, and counting would gate
    /// every request of the browsers behind one balancer address.
    async fn login_cookie(&self, value: &str, ip: IpAddr) -> Result<Arc<Lease>, Refusal> {
        let lease = if value.starts_with(COOKIE_PREFIX) {
            self.login("", Credential::Token(Secret::new(value)), ip)
                .await?
        } else {
            None
        };
        match lease {
            Some(lease) => Ok(lease),
            None => {
                tokio::time::sleep(Duration::from_millis(self.config.auth_failure_delay_ms)).await;
                Err(Refusal::Unauthorized("session expired; log in again"))
            }
        }
    }

    /// Logs in on a server; `Ok(None)` means the credential was refused.
    async fn login(
        &self,
        user: &str,
        credential: Credential,
        ip: IpAddr,
    ) -> Result<Option<Arc<Lease>>, FerryError> {
        let request = Request::Login {
            user: user.to_owned(),
            credential,
            client_addr: ip.to_string(),
            protocol: Protocol::Https,
        };
        match self.upstreams.login(request).await? {
            (conn, Response::LoggedIn { session, account }) => {
                Ok(Some(Lease::new(conn, session, account, false)))
            }
            (conn, Response::LoggedInMustChangePassword { session, account }) => {
                Ok(Some(Lease::new(conn, session, account, true)))
            }
            (_, Response::Error(e)) if e.kind == ErrorKind::AuthFailed => Ok(None),
            (_, Response::Error(e)) => Err(e),
            (_, other) => Err(super::lease::unexpected("login", &other)),
        }
    }

    /// Logs in with a password or token, reusing a recent login.
    async fn login_cached(
        &self,
        user: &str,
        credential: Credential,
        ip: IpAddr,
    ) -> Result<Arc<Lease>, Refusal> {
        let key = match &credential {
            Credential::Password(p) => {
                self.digest(&[b"basic", user.as_bytes(), p.expose().as_bytes()])
            }
            Credential::Token(t) => self.digest(&[b"bearer", t.expose().as_bytes()]),
            Credential::VerifiedPublicKey(_) => {
                return Err(Refusal::Unauthorized("unsupported credential"))
            }
        };
        let ttl = Duration::from_secs(self.config.login_cache_secs);
        {
            let mut cache = locked(&self.cache);
            if let Some(c) = cache.get(&key) {
                if c.since.elapsed() < ttl && c.lease.is_alive() {
                    return Ok(c.lease.clone());
                }
                cache.remove(&key);
            }
        }
        let attempt = self.begin_attempt(ip, user).await?;
        match self.login(user, credential, ip).await? {
            Some(lease) => {
                let mut cache = locked(&self.cache);
                cache.retain(|_, c| c.since.elapsed() < ttl && c.lease.is_alive());
                cache.insert(
                    key,
                    Cached {
                        lease: lease.clone(),
                        since: Instant::now(),
                    },
                );
                Ok(lease)
            }
            None => Err(self.failed(attempt).await),
        }
    }

    /// Authenticates a request. Cookie sessions must carry their CSRF token
    /// on requests that change something.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Authed, Refusal> {
        let lease = match presented(headers)? {
            None => return Err(Refusal::Unauthorized("authentication required")),
            Some(Presented::Basic { user, password }) => {
                self.login_cached(&user, Credential::Password(password), ip)
                    .await?
            }
            Some(Presented::Bearer(token)) => {
                self.login_cached("", Credential::Token(token), ip).await?
            }
            Some(Presented::Cookie(value)) => {
                if changes_state(method) {
                    let sent = headers.get(CSRF_HEADER).map_or(&[][..], |v| v.as_bytes());
                    if !ferry_core::secret::same_bytes(sent, csrf_token(&value).as_bytes()) {
                        return Err(Refusal::Error(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "csrf",
                            "missing or wrong X-CSRF-Token header",
                        )));
                    }
                }
                self.login_cookie(&value, ip).await?
            }
        };
        Ok(Authed { lease })
    }

    /// Logs in with a password for the browser client: the servers issue
    /// a browser-session credential (the cookie) for the account, living
    /// `session_idle_secs`; the password session itself ends here.
    pub async fn open_web_session(
        &self,
        user: &str,
        password: Secret,
        ip: IpAddr,
    ) -> Result<WebSession, Refusal> {
        let attempt = self.begin_attempt(ip, user).await?;
        let Some(lease) = self.login(user, Credential::Password(password), ip).await? else {
            return Err(self.failed(attempt).await);
        };
        drop(attempt);
        let (cookie, lifetime_secs) = lease
            .open_web_session(self.config.session_idle_secs)
            .await?;
        Ok(WebSession {
            csrf: csrf_token(cookie.expose()),
            cookie,
            account: lease.account().to_owned(),
            lifetime_secs,
            must_change_password: lease.must_change_password(),
        })
    }

    /// The CSRF token, account and must-change flag of a live cookie
    /// session (checked on the servers).
    pub async fn web_session(
        &self,
        value: &str,
        ip: IpAddr,
    ) -> Result<(String, String, bool), Refusal> {
        let lease = self.login_cookie(value, ip).await?;
        Ok((
            csrf_token(value),
            lease.account().to_owned(),
            lease.must_change_password(),
        ))
    }

    /// Forgets the cached logins of `account` (after its password
    /// changed: a client still sending the old password must log in again
    /// here; other edges forget theirs within `login_cache_secs`).
    pub fn forget(&self, account: &str) {
        locked(&self.cache).retain(|_, c| c.lease.account() != account);
    }

    /// Ends a cookie session on the servers, through a session of its own
    /// (`lease`, from [`Auth::authenticate`] with the cookie).
    pub async fn close_web_session(&self, lease: &Lease, value: &str) -> Result<(), FerryError> {
        lease.end_web_session(Secret::new(value)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::secret::same_bytes;

    #[test]
    fn csrf_token_is_bound_to_the_cookie() {
        let a = csrf_token("fw_000000000001_aa");
        assert_eq!(a, csrf_token("fw_000000000001_aa"));
        assert_ne!(a, csrf_token("fw_000000000001_ab"));
        assert_eq!(a.len(), 64);
        assert!(same_bytes(a.as_bytes(), a.as_bytes()));
        assert!(!same_bytes(a.as_bytes(), &a.as_bytes()[1..]));
    }
}
