//! Login checks: argon2 password hashes and authorised public keys.
//!
//! Every failure looks the same to the caller ([`FerryError::auth_failed`]);
//! the reason goes to the log only. An unknown user costs the same argon2
//! verification as a known one, so timing does not tell them apart.
//!
//! Password checks run on the hashing threads ([`crate::hashing`]), after
//! the [`LoginThrottle`] has let them through.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::limits::{loggable, NotYet};
use ferry_core::{Account, FerryError, Secret, UnixMillis};
use ferry_store::Store;

use crate::hashing::HASH_WAIT;
use russh::keys::ssh_key::{HashAlg, PublicKey};

/// Shortest password accepted for an account.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 input is bounded to stop abuse).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes a new password with argon2id and a random salt, on the hashing
/// threads (see [`crate::hashing`]). Blocking.
pub fn hash_password(password: &Secret) -> Result<Secret, FerryError> {
    let pw = password.expose();
    if pw.len() < MIN_PASSWORD_LEN {
        return Err(FerryError::invalid(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(FerryError::invalid(format!(
            "password must be at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    crate::hashing::hash(password).map(Secret::new)
}

/// Checks an admin's password (HTTP Basic on the admin API), as
/// [`check_password`] does an account's: an unknown name costs the same.
pub async fn check_admin_password(
    store: Arc<Store>,
    name: &str,
    password: Secret,
) -> Result<ferry_core::Admin, FerryError> {
    let wanted = name.to_owned();
    let (admin, hash) = crate::session::blocking(move || {
        let admin = store.admin(&wanted).map_err(FerryError::from)?;
        let hash = admin.as_ref().and_then(|a| a.password_hash.clone());
        Ok((admin, hash))
    })
    .await?;
    match admin {
        Some(a) if verify_known(hash, password).await? => Ok(a),
        _ => refuse(name, "wrong admin name or password"),
    }
}

/// Whether `password` matches `hash`. Without a hash (no such account or
/// admin, or no password set) the check runs against a dummy hash and
/// answers no, so a name that does not exist costs what a wrong password
/// does; an overlong password is no without any check.
async fn verify_known(hash: Option<Secret>, password: Secret) -> Result<bool, FerryError> {
    if password.expose().len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    let known = hash.is_some();
    let against = hash.map(|h| h.expose().to_owned());
    Ok(crate::hashing::verify(against, password).await? && known)
}

/// Checks a password login: the account is read on a blocking thread, the
/// hash checked on the hashing threads.
pub async fn check_password(
    store: Arc<Store>,
    user: &str,
    password: Secret,
) -> Result<Account, FerryError> {
    let name = user.to_owned();
    // An unknown user costs the same check as a known one (see
    // `verify_known`).
    let (account, hash) = crate::session::blocking(move || {
        let account = store.account(&name).map_err(FerryError::from)?;
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        Ok((account, hash))
    })
    .await?;
    let ok = verify_known(hash, password).await?;
    match account {
        Some(a) if ok => enabled(a),
        Some(_) => refuse(user, "wrong password"),
        None => refuse(user, "unknown user"),
    }
}

/// Failed password logins allowed per client address, and per account,
/// within [`FAILURE_WINDOW`]; past them a password is refused without
/// being checked.
pub const MAX_PASSWORD_FAILURES: u32 = 20;

/// The window of [`MAX_PASSWORD_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The server's throttle of password logins, applied before any hashing.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<ferry_core::limits::Failures>,
}

/// A password attempt in flight; ended by [`Attempt::end`] (or, if dropped
/// unended, counted as failed).
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    keys: Vec<String>,
    ended: bool,
}

impl LoginThrottle {
    /// Starts an attempt from `client_addr` (an address, with or without a
    /// port) on `user`, or refuses it (with the answer of any failed login)
    /// if either has failed too often. While attempts in flight could take
    /// them past the limit, it waits for them (up to [`HASH_WAIT`]).
    pub async fn begin(&self, client_addr: &str, user: &str) -> Result<Attempt<'_>, FerryError> {
        let ip = client_addr
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| client_addr.to_owned());
        let keys = vec![format!("ip:{ip}"), format!("user:{user}")];
        let give_up = Instant::now() + HASH_WAIT;
        loop {
            let begun = self
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .begin(&keys, MAX_PASSWORD_FAILURES, FAILURE_WINDOW);
            match begun {
                Ok(()) => {
                    return Ok(Attempt {
                        throttle: self,
                        keys,
                        ended: false,
                    })
                }
                Err(NotYet::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(NotYet::Busy) => {
                    let user = loggable(user);
                    tracing::warn!(%user, %ip, "too many password checks in flight; refused without a check");
                    return Err(FerryError::auth_failed());
                }
                Err(NotYet::Blocked { retry_in_secs }) => {
                    let user = loggable(user);
                    tracing::warn!(%user, %ip, retry_in_secs, "too many failed passwords; refused without a check");
                    return Err(FerryError::auth_failed());
                }
            }
        }
    }
}

impl Attempt<'_> {
    /// Ends the attempt; `failed` counts it against the address and account.
    pub fn end(mut self, failed: bool) {
        self.finish(failed);
    }

    fn finish(&mut self, failed: bool) {
        if !self.ended {
            self.ended = true;
            self.throttle
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .end(&self.keys, failed, FAILURE_WINDOW);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// Checks that `public_key` (OpenSSH form) is authorised for `user`.
pub fn check_key(store: &Store, user: &str, public_key: &str) -> Result<Account, FerryError> {
    let Ok(key) = PublicKey::from_openssh(public_key) else {
        return refuse(user, "unparseable public key");
    };
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let Some(account) = store.account(user).map_err(FerryError::from)? else {
        return refuse(user, "unknown user");
    };
    let keys = store.account_keys(user).map_err(FerryError::from)?;
    if keys.iter().any(|k| k.fingerprint == fingerprint) {
        enabled(account)
    } else {
        refuse(user, "key not authorised")
    }
}

/// Prefix of every account API token.
pub const TOKEN_PREFIX: &str = "fy_";

/// A new API token: `(token, public id, hex SHA-256 of the token)`. The token
/// is `fy_ID_SECRET` with a 48-bit public id and a 256-bit secret.
pub fn new_token() -> (Secret, String, String) {
    new_token_with(TOKEN_PREFIX)
}

/// Prefix of every admin API token.
pub const ADMIN_TOKEN_PREFIX: &str = "fa_";

/// A new token `PREFIX` + `ID_SECRET`, as [`new_token`].
pub fn new_token_with(prefix: &str) -> (Secret, String, String) {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
    let id = hex::encode(id);
    let token = format!("{prefix}{id}_{}", hex::encode(secret));
    let digest = token_digest(&token);
    (Secret::new(token), id, digest)
}

/// The hex SHA-256 a token is stored as.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Prefix of every browser-session credential (the browser's cookie).
pub const WEB_SESSION_PREFIX: &str = ferry_core::WEB_SESSION_TOKEN_PREFIX;

/// What the token table says a browser session is for.
pub const WEB_SESSION_LABEL: &str = "browser session";

/// A new browser-session credential: `(token, stored id, hex SHA-256)`.
/// The token is `fw_ID_SECRET` as an API token is `fy_ID_SECRET`; it is
/// stored under the id [`ferry_core::WEB_SESSION_ID_PREFIX`] + `ID`, which
/// keeps it out of the account's API-token list.
pub fn new_web_session_token() -> (Secret, String, String) {
    let (token, id, digest) = new_token_with(WEB_SESSION_PREFIX);
    (
        token,
        format!("{}{id}", ferry_core::WEB_SESSION_ID_PREFIX),
        digest,
    )
}

/// The stored id an account API token (`fy_…`) or a browser-session
/// credential (`fw_…`) is kept under, if `text` has either form.
pub fn token_id(text: &str) -> Option<String> {
    let (web, rest) = match text.strip_prefix(TOKEN_PREFIX) {
        Some(rest) => (false, rest),
        None => (true, text.strip_prefix(WEB_SESSION_PREFIX)?),
    };
    let (id, _) = rest.split_once('_')?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(if web {
        format!("{}{id}", ferry_core::WEB_SESSION_ID_PREFIX)
    } else {
        id.to_owned()
    })
}

/// Checks an API token or a browser-session credential; `user`, when not
/// empty, must be its account.
pub fn check_token(
    store: &Store,
    user: &str,
    token: &Secret,
    now_millis: i64,
) -> Result<Account, FerryError> {
    let text = token.expose();
    let Some(id) = token_id(text) else {
        return refuse(user, "malformed token");
    };
    let Some(stored) = store.account_token(&id).map_err(FerryError::from)? else {
        return refuse(user, "unknown token");
    };
    // Both sides are digests, so comparing them leaks nothing about the token.
    if stored.sha256 != token_digest(text) {
        return refuse(&stored.account, "wrong token secret");
    }
    if stored.expires_at.is_some_and(|t| t <= now_millis) {
        return refuse(&stored.account, "token expired");
    }
    if !user.is_empty() && user != stored.account {
        return refuse(user, "token belongs to another account");
    }
    let Some(account) = store.account(&stored.account).map_err(FerryError::from)? else {
        return refuse(user, "token of a removed account");
    };
    enabled(account)
}

/// The checks a login passes before its credential is looked at, so that
/// a client from the wrong network learns nothing about the account: the
/// cluster's deny list and bans, then the account's expiry and allowed
/// networks.
/// Refused like a wrong password. Blocks (store reads).
pub fn check_policy(
    store: &Store,
    user: &str,
    client_addr: &str,
    now: UnixMillis,
) -> Result<(), FerryError> {
    use ferry_core::network::{client_ip, contains, parse_networks, DENY_NETWORKS_SETTING};
    let ip = client_ip(client_addr);
    let denied = store
        .setting(DENY_NETWORKS_SETTING)
        .map_err(FerryError::from)?
        .map(|text| parse_networks(&text))
        .transpose()?
        .unwrap_or_default();
    if !denied.is_empty() && ip.is_none_or(|ip| contains(&denied, ip)) {
        return refuse(user, "client network denied");
    }
    if let Some(ip) = ip {
        if store
            .ban(&ip.to_string(), now)
            .map_err(FerryError::from)?
            .is_some()
        {
            return refuse(user, "client address banned");
        }
    }
    let Some(policy) = store.account_policy(user).map_err(FerryError::from)? else {
        return Ok(());
    };
    if policy.expires_at.is_some_and(|at| at <= now) {
        return refuse(user, "account expired");
    }
    if let Some(limit) = idle_limit(store)? {
        if policy.is_idle(&limit, now) {
            let since = chrono::DateTime::from_timestamp_millis(policy.unused_since(&limit))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let reason = format!(
                "account unused for more than {} days (since {since})",
                limit.days
            );
            return refuse(user, &reason);
        }
    }
    if !policy.allowed_networks.is_empty() {
        let allowed = parse_networks(&policy.allowed_networks.join(","))?;
        if ip.is_none_or(|ip| !contains(&allowed, ip)) {
            return refuse(user, "client network not allowed");
        }
    }
    Ok(())
}

/// The cluster's idle limit (`ferry account idle-limit`), if one is set.
pub fn idle_limit(store: &Store) -> Result<Option<ferry_core::IdleLimit>, FerryError> {
    Ok(store
        .setting(ferry_core::IDLE_LIMIT_SETTING)
        .map_err(FerryError::from)?
        .and_then(|text| ferry_core::IdleLimit::parse(&text)))
}

/// How often an account's last login is written (a replicated change):
/// at most once an hour, which the idle limit's days do not notice.
pub const LOGIN_RECORD_INTERVAL_MS: UnixMillis = 60 * 60 * 1000;

fn enabled(account: Account) -> Result<Account, FerryError> {
    if account.enabled {
        Ok(account)
    } else {
        refuse(&account.name, "account disabled")
    }
}

fn refuse<T>(user: &str, reason: &str) -> Result<T, FerryError> {
    let user = loggable(user);
    tracing::info!(%user, reason, "login refused");
    Err(FerryError::auth_failed())
}

/// Parses an OpenSSH public key line; returns (key without comment,
/// fingerprint, comment).
pub fn parse_public_key(line: &str) -> Result<(String, String, String), FerryError> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|e| FerryError::invalid(format!("not an OpenSSH public key: {e}")))?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let comment = key.comment().to_string();
    let mut bare = key.clone();
    bare.set_comment("");
    let text = bare
        .to_openssh()
        .map_err(|e| FerryError::invalid(format!("cannot encode key: {e}")))?;
    Ok((text.trim().to_owned(), fingerprint, comment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{AccountKey, Command};

    fn store_with(name: &str, password: &str, enabled: bool) -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .apply(&Command::CreateAccount(Account {
                id: "1".into(),
                name: name.into(),
                home: name.into(),
                password_hash: Some(hash_password(&Secret::new(password)).unwrap()),
                enabled,
                created_at: 0,
            }))
            .unwrap();
        store
    }

    #[tokio::test]
    async fn passwords_verify_and_failures_look_alike() {
        let store = Arc::new(store_with("alice", "correct horse", true));
        let check = |user: &'static str, pw: &'static str| {
            check_password(store.clone(), user, Secret::new(pw))
        };
        assert!(check("alice", "correct horse").await.is_ok());
        let wrong = check("alice", "wrong").await.unwrap_err();
        let unknown = check("nobody", "correct horse").await.unwrap_err();
        assert_eq!(wrong, unknown);
        let disabled = Arc::new(store_with("bob", "correct horse", false));
        assert_eq!(
            check_password(disabled, "bob", Secret::new("correct horse"))
                .await
                .unwrap_err(),
            wrong
        );
        assert!(hash_password(&Secret::new("short")).is_err());
    }

    #[test]
    fn browser_sessions_are_tokens_of_their_own_id_space() {
        let store = store_with("alice", "correct horse", true);
        let (token, id, sha256) = new_web_session_token();
        assert!(token.expose().starts_with(WEB_SESSION_PREFIX));
        assert!(id.starts_with(ferry_core::WEB_SESSION_ID_PREFIX));
        assert_eq!(token_id(token.expose()).as_deref(), Some(id.as_str()));
        let (api, api_id, _) = new_token();
        assert_eq!(token_id(api.expose()), Some(api_id));
        assert_eq!(token_id("fw_xyz_abc"), None);
        assert_eq!(token_id("fx_000000000000_abc"), None);
        store
            .apply(&Command::AddAccountToken(ferry_core::AccountToken {
                account: "alice".into(),
                id,
                sha256,
                label: WEB_SESSION_LABEL.into(),
                created_at: 0,
                expires_at: Some(1000),
            }))
            .unwrap();
        assert_eq!(check_token(&store, "", &token, 999).unwrap().name, "alice");
        assert!(check_token(&store, "", &token, 1000).is_err());
        let other = Secret::new(format!("{}x", token.expose()));
        assert!(check_token(&store, "", &other, 999).is_err());
        assert!(store.account_tokens("alice").unwrap().is_empty());
    }

    #[test]
    fn keys_are_matched_by_fingerprint() {
        let store = store_with("alice", "correct horse", true);
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb4ObJ5XnTPJhkqG2eDp8nI+8E3r6tTtnMt6zZ6Ayvq me@host";
        let (bare, fingerprint, comment) = parse_public_key(line).unwrap();
        assert_eq!(comment, "me@host");
        assert!(check_key(&store, "alice", &bare).is_err());
        store
            .apply(&Command::AddAccountKey(AccountKey {
                account: "alice".into(),
                fingerprint,
                public_key: bare.clone(),
                comment,
                added_at: 0,
            }))
            .unwrap();
        assert!(check_key(&store, "alice", line).is_ok());
        assert!(check_key(&store, "mallory", line).is_err());
        assert!(parse_public_key("not a key").is_err());
    }
}
