//! Records as stored and replicated. Each carries what it needs to be applied
//! deterministically on any node (ids and timestamps chosen by the proposer).

use serde::{Deserialize, Serialize};

use crate::{Secret, UnixMillis};

/// An account that partners or internal systems log in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Stable id (UUID), never reused.
    pub id: String,
    /// Login name, unique.
    pub name: String,
    /// Home directory, relative to the repository root.
    pub home: String,
    /// Argon2 PHC string; `None` means password login is not possible.
    pub password_hash: Option<Secret>,
    /// Disabled accounts cannot log in.
    pub enabled: bool,
    /// When the account was created.
    pub created_at: UnixMillis,
}

/// An authorised public key of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountKey {
    /// The account's name.
    pub account: String,
    /// `SHA256:…` fingerprint, unique per account.
    pub fingerprint: String,
    /// The key in OpenSSH one-line form, without comment.
    pub public_key: String,
    /// The comment the key file had, if any.
    pub comment: String,
    /// When the key was added.
    pub added_at: UnixMillis,
}

/// What limits an account beyond its credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPolicy {
    /// From then on the account cannot log in.
    pub expires_at: Option<UnixMillis>,
    /// The client networks it may log in from, canonical CIDRs; empty:
    /// anywhere (but the cluster's deny list).
    pub allowed_networks: Vec<String>,
    /// The most bytes its home may hold (partial uploads included).
    pub quota_bytes: Option<u64>,
    /// The most files its home may hold.
    pub quota_files: Option<u64>,
    /// Its uploads together, in bytes a second (on each server).
    pub upload_rate: Option<u64>,
    /// Its downloads together, in bytes a second (on each server).
    pub download_rate: Option<u64>,
    /// The most sessions it may have open at once (on each server).
    pub max_sessions: Option<u64>,
    /// Its password was set by an admin and must be changed before the
    /// account does anything else (see [`crate::PASSWORD_CHANGE_REQUIRED`]).
    pub must_change_password: bool,
    /// When it was created.
    pub created_at: UnixMillis,
    /// Its last login, as recorded (at most once an hour).
    pub last_login_at: Option<UnixMillis>,
    /// When an admin last enabled it (its idle time counts from then).
    pub active_since: Option<UnixMillis>,
}

impl AccountPolicy {
    /// Since when the account has not been used, as the idle limit
    /// measures it: its last login, its creation, an admin enabling it, or
    /// the limit being set, whichever came last.
    pub fn unused_since(&self, limit: &IdleLimit) -> UnixMillis {
        [
            Some(self.created_at),
            self.last_login_at,
            self.active_since,
            Some(limit.since),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(limit.since)
    }

    /// Whether the idle limit refuses the account's logins at `now`.
    pub fn is_idle(&self, limit: &IdleLimit, now: UnixMillis) -> bool {
        let days = i64::from(limit.days);
        limit.days > 0 && now.saturating_sub(self.unused_since(limit)) > days * 86_400_000
    }
}

/// The setting that turns [`IdleLimit`] on (`ferry account idle-limit`).
pub const IDLE_LIMIT_SETTING: &str = "disable_after_idle_days";

/// Accounts unused for more than `days` days cannot log in; an account
/// is never held idle for the time before the limit was set (`since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleLimit {
    /// Days; 0 is off.
    pub days: u32,
    /// When the limit was set.
    pub since: UnixMillis,
}

impl IdleLimit {
    /// The setting's value: `DAYS SINCE_MS`; anything else (or 0 days)
    /// is no limit.
    pub fn parse(text: &str) -> Option<Self> {
        let (days, since) = text.split_once(' ')?;
        let limit = IdleLimit {
            days: days.parse().ok()?,
            since: since.parse().ok()?,
        };
        (limit.days > 0).then_some(limit)
    }

    /// The setting's value.
    pub fn to_setting(&self) -> String {
        format!("{} {}", self.days, self.since)
    }
}

/// How many of an account's passwords are remembered (as argon2 hashes,
/// the current one first) and may not be set again.
pub const PASSWORD_HISTORY_LEN: usize = 5;

/// What a session logged in with a password that must be changed is told
/// when it asks for anything but the change.
pub const PASSWORD_CHANGE_REQUIRED: &str =
    "the password must be changed first (POST /api/v1/me/password)";

/// An API token of an account, for the HTTPS API (`Authorization: Bearer`).
/// Only the SHA-256 of the secret part is stored; the token is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountToken {
    /// The account's name.
    pub account: String,
    /// Public id of the token (the part after `fy_`, before the secret).
    pub id: String,
    /// SHA-256 of the whole token string, hex.
    pub sha256: String,
    /// What the token is for, as the operator wrote it.
    pub label: String,
    /// When the token was created.
    pub created_at: UnixMillis,
    /// When it stops working, if ever.
    pub expires_at: Option<UnixMillis>,
}

/// Public ids of browser-session credentials start with this; an API
/// token's id is 12 hex digits, so the two never meet. Browser sessions
/// live in the token table (replicated like any token, so every server
/// checks them) but are not listed as the account's API tokens.
pub const WEB_SESSION_ID_PREFIX: &str = "web-";

/// Prefix of a browser-session credential's text (the cookie's value),
/// `fw_ID_SECRET`, as an API token's is `fy_`.
pub const WEB_SESSION_TOKEN_PREFIX: &str = "fw_";

impl AccountToken {
    /// Is this a browser session (not an API token)?
    pub fn is_web_session(&self) -> bool {
        self.id.starts_with(WEB_SESSION_ID_PREFIX)
    }
}

/// The protocol a transfer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SFTP through an edge.
    Sftp,
    /// HTTPS through an edge.
    Https,
    /// A folder monitor picked the file up from a local directory.
    Monitor,
    /// A route copied the file from another account's folder.
    Route,
}

/// Which way the data went, seen from Ferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to Ferry.
    Upload,
    /// Ferry to client.
    Download,
    /// Ferry to a partner's server (a route or scheduled push).
    Push,
    /// A partner's server to Ferry (a scheduled pull).
    Pull,
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    /// The client closed the file; for uploads the file is committed.
    Completed,
    /// The connection ended before the client closed the file. An upload keeps
    /// its partial data for a resume.
    Interrupted,
    /// The transfer failed on Ferry's side; `error` says why.
    Failed,
}

/// Implements `as_str`, `FromStr` and `Display` for a field-less enum.
macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The stable lower-case name used in the store and on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($s => Ok(Self::$v),)* other => Err(format!("unknown value {other:?}")) }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use str_enum;

str_enum!(Protocol { Sftp => "sftp", Https => "https", Monitor => "monitor", Route => "route" });
str_enum!(Direction { Upload => "upload", Download => "download", Push => "push", Pull => "pull" });
str_enum!(TransferStatus { Completed => "completed", Interrupted => "interrupted", Failed => "failed" });

/// One row of the transfer log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// Transfer id (UUID v7, so ids sort by start time).
    pub id: String,
    /// The account that transferred.
    pub account: String,
    /// SFTP or HTTPS.
    pub protocol: Protocol,
    /// Upload or download.
    pub direction: Direction,
    /// The path inside the account's home.
    pub path: String,
    /// Bytes moved in this transfer (a download that re-reads ranges moves
    /// more than the file has).
    pub bytes: u64,
    /// Size of the file when the transfer ended: the committed upload, the
    /// file downloaded. `None` where it is not known (older rows, failures).
    #[serde(default)]
    pub size: Option<u64>,
    /// SHA-256 of the whole file, hex, when the transfer completed.
    pub sha256: Option<String>,
    /// When the file was opened.
    pub started_at: UnixMillis,
    /// When the transfer ended.
    pub ended_at: UnixMillis,
    /// How it ended.
    pub status: TransferStatus,
    /// The node id of the server that served it.
    pub node: String,
    /// The client's address as the edge saw it.
    pub client_addr: String,
    /// What went wrong, for failed or interrupted transfers.
    pub error: Option<String>,
    /// The partner, for pushes and pulls.
    #[serde(default)]
    pub partner: Option<String>,
    /// The event whose work this transfer was.
    #[serde(default)]
    pub event_id: Option<String>,
}

impl TransferRecord {
    /// Whether this transfer brought a new file into an account's folder that
    /// routes should act on: a completed upload, monitor ingest or pull.
    /// Copies made by routes do not trigger routes again (no loops).
    pub fn triggers_routes(&self) -> bool {
        self.status == TransferStatus::Completed
            && matches!(self.direction, Direction::Upload | Direction::Pull)
            && self.protocol != Protocol::Route
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[test]
    fn the_idle_limit_counts_from_the_latest_sign_of_life() {
        assert_eq!(IdleLimit::parse(""), None);
        assert_eq!(IdleLimit::parse("0 5"), None);
        assert_eq!(IdleLimit::parse("x 5"), None);
        let limit = IdleLimit::parse("30 1000").unwrap();
        assert_eq!(
            limit,
            IdleLimit {
                days: 30,
                since: 1000
            }
        );
        assert_eq!(IdleLimit::parse(&limit.to_setting()), Some(limit));
        let day = 86_400_000;
        let policy = AccountPolicy {
            created_at: 500,
            ..AccountPolicy::default()
        };
        // Counted from when the limit was set, not from the creation.
        assert_eq!(policy.unused_since(&limit), 1000);
        assert!(!policy.is_idle(&limit, 1000 + 30 * day));
        assert!(policy.is_idle(&limit, 1001 + 30 * day));
        let logged_in = AccountPolicy {
            last_login_at: Some(40 * day),
            ..policy.clone()
        };
        assert!(!logged_in.is_idle(&limit, 41 * day));
        assert!(logged_in.is_idle(&limit, 71 * day));
        let enabled_again = AccountPolicy {
            active_since: Some(70 * day),
            ..logged_in
        };
        assert!(!enabled_again.is_idle(&limit, 71 * day));
    }
}
