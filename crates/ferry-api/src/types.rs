//! The bodies and answers of the admin API. Field names are the wire
//! names; optional fields of a request are left out when `None`, and the
//! server applies its defaults (the CLI keeps no copy of them).

use ferry_core::{
    Action, Direction, EventKind, EventStatus, Protocol, ScheduleAction, Secret, TransferStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::time;
use chrono::{DateTime, Utc};

// ---- accounts ----

/// An account (never its password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
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
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// From then on it cannot log in.
    pub expires_at: Option<DateTime<Utc>>,
    /// The client networks it may log in from; empty: anywhere (but the
    /// deny list).
    pub allowed_networks: Vec<String>,
    /// Its quota in bytes, if it has one.
    pub quota_bytes: Option<u64>,
    /// Its quota in files, if it has one.
    pub quota_files: Option<u64>,
    /// Its upload limit in bytes a second (on each server), if it has one.
    pub upload_rate: Option<u64>,
    /// Its download limit in bytes a second (on each server), if it has one.
    pub download_rate: Option<u64>,
    /// The most sessions it may have open at once (on each server), if
    /// capped.
    pub max_sessions: Option<u64>,
    /// Its password must be changed (over HTTPS) before it may do
    /// anything else with it.
    #[serde(default)]
    pub must_change_password: bool,
    /// Its last login (recorded at most once an hour), if any was recorded.
    #[serde(default)]
    pub last_login_at: Option<DateTime<Utc>>,
    /// The idle limit refuses its logins now (`ferry account enable` lets
    /// it in again for as many days).
    #[serde(default)]
    pub idle: bool,
    /// Bytes its home holds (partial uploads included); only when one
    /// account is shown.
    pub used_bytes: Option<u64>,
    /// Files its home holds; only when one account is shown.
    pub used_files: Option<u64>,
}

/// Body of `POST /api/v1/accounts/{name}`: what to change; an absent field
/// stays as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChanges {
    /// A new password (the same rules as at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
    /// `true`: no password login from now on (keys and tokens only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_password: bool,
    /// An RFC 3339 time, a date (`2027-01-31`, midnight UTC) or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Networks (CIDR) or addresses; an empty list: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_networks: Option<Vec<String>>,
    /// The most bytes the home may hold; 0: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// The most files the home may hold; 0: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_files: Option<u64>,
    /// Its uploads together, in bytes a second on each server; 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_rate: Option<u64>,
    /// Its downloads together, in bytes a second on each server; 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_rate: Option<u64>,
    /// The most sessions (SSH connections, HTTPS logins) it may have open at
    /// once on each server; 0: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u64>,
    /// `true`: the password must be changed at the next HTTPS login before
    /// anything else (SSH password logins are refused meanwhile);
    /// `false`: no longer. Cleared when the account changes its password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_change_password: Option<bool>,
}

/// Query of `DELETE /api/v1/accounts/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveAccountQuery {
    /// Also remove the routes, schedules and monitors that use the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_uses: Option<bool>,
}

/// Query of `DELETE /api/v1/accounts/{name}/keys`: one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// The key to revoke (`SHA256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Revoke every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

/// A console session, opened by a named admin's password: the session
/// cookie (HttpOnly, not in this answer) and the CSRF token that every
/// request of the session that changes something must carry in its
/// `X-CSRF-Token` header.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSession {
    /// The admin's name.
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    /// The CSRF token of the session.
    pub csrf_token: String,
    /// When the session ends unless it is used before (idle limit).
    pub idle_until: DateTime<Utc>,
    /// When the session ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// Who an admin request was made by.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    /// The admin's name, or `bootstrap` (the bootstrap token).
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
}

/// A named admin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminView {
    /// Its name.
    pub name: String,
    /// `admin` (everything), `operator` (no admins, no cluster changes) or
    /// `auditor` (reads only).
    pub role: String,
    /// Whether it can log in with a password (HTTP Basic).
    pub has_password: bool,
    /// Number of API tokens.
    pub tokens: usize,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /api/v1/admins`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    /// Its name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    /// A password (8 characters or more); without one, API tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
}

/// Body of `POST /api/v1/admins/{name}/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminToken {
    /// What it is for.
    #[serde(default)]
    pub label: String,
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only since this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Only this admin's (`bootstrap` for the bootstrap token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// At most this many (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One change made or refused through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Unique id.
    pub id: String,
    /// When it was answered.
    pub at: DateTime<Utc>,
    /// Who: an admin's name, or `bootstrap`.
    pub admin: String,
    /// With which role.
    pub role: String,
    /// From which address.
    pub client_addr: String,
    /// Method, path and query.
    pub request: String,
    /// The request's body, secrets as `***`.
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// `ok`, or what went wrong.
    pub outcome: String,
    /// The server that answered.
    pub node: String,
    /// What the request acted on before it ran: JSON, secrets as `***`
    /// (`null`: it did not exist; empty: the request names nothing stored).
    pub before: String,
    /// The same after it ran.
    pub after: String,
}

impl From<ferry_core::AuditRecord> for AuditEntry {
    fn from(r: ferry_core::AuditRecord) -> Self {
        Self {
            id: r.id,
            at: crate::time(r.at),
            admin: r.admin,
            role: r.role.as_str().to_owned(),
            client_addr: r.client_addr,
            request: r.request,
            body: r.body,
            status: r.status,
            outcome: r.outcome,
            node: r.node,
            before: r.before,
            after: r.after,
        }
    }
}

/// A banned client address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    /// The IP address.
    pub address: String,
    /// When the ban ends.
    pub until: DateTime<Utc>,
    /// When it began.
    pub banned_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// The server whose defender banned it, or `admin`.
    pub by: String,
}

impl From<ferry_core::Ban> for Ban {
    fn from(b: ferry_core::Ban) -> Self {
        Self {
            address: b.address,
            until: crate::time(b.until),
            banned_at: crate::time(b.banned_at),
            reason: b.reason,
            by: b.by,
        }
    }
}

/// Body of `POST /api/v1/bans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    /// The IP address.
    pub address: String,
    /// How long, in minutes.
    pub minutes: u64,
    /// Why (kept with the ban).
    #[serde(default)]
    pub reason: String,
}

/// `GET`/`POST /api/v1/settings/password-policy`: what a new account
/// password must be beyond the fixed rules (a zxcvbn score of 3 or more,
/// none of the account's last 5 passwords).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    /// The fewest characters, 8 to 128 (default 8).
    pub min_length: u32,
}

/// `GET`/`POST /api/v1/settings/idle-limit`: accounts unused for more
/// than this many days cannot log in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdleLimit {
    /// Days without a login after which an account is refused; 0: off.
    pub disable_after_idle_days: u32,
    /// When the limit was set (answers only): no account is held idle
    /// for the time before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

/// A list of client networks (CIDR), canonical in answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Networks {
    /// The networks.
    pub networks: Vec<String>,
}

/// Body of `POST /api/v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Login name: letters, digits, `.`, `_`, `-`, starting with a letter
    /// or digit, at most 64 characters.
    pub name: String,
    /// Initial password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
    /// Home relative to the repository (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// The password must be changed at the first HTTPS login before
    /// anything else (see `AccountChanges`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_change_password: bool,
}

/// An authorised public key of an account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountKey {
    /// The account.
    pub account: String,
    /// `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// The key, OpenSSH format without comment.
    pub public_key: String,
    /// The comment of the key line.
    pub comment: String,
    /// When it was added.
    pub added_at: DateTime<Utc>,
}

impl From<ferry_core::AccountKey> for AccountKey {
    fn from(k: ferry_core::AccountKey) -> Self {
        Self {
            account: k.account,
            fingerprint: k.fingerprint,
            public_key: k.public_key,
            comment: k.comment,
            added_at: time(k.added_at),
        }
    }
}

/// Body of `POST /api/v1/accounts/{name}/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// What an account may do in one folder of its home and in the folders
/// below it that have no rule of their own.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FolderRule {
    /// The account.
    pub account: String,
    /// The folder, absolute inside the home (`/` is the home).
    pub path: String,
    /// What is allowed there: `list`, `download`, `upload`, `overwrite`,
    /// `delete`, `rename`, `create-dirs`.
    pub allow: Vec<String>,
}

impl From<ferry_core::FolderRule> for FolderRule {
    fn from(r: ferry_core::FolderRule) -> Self {
        Self {
            account: r.account,
            path: r.path,
            allow: r.allow.iter().map(|p| p.as_str().to_owned()).collect(),
        }
    }
}

/// Body of `POST /api/v1/accounts/{name}/permissions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFolderRule {
    /// The folder, absolute inside the home (`/` is the home).
    pub path: String,
    /// Permissions and presets (`all`, `upload-only`, `download-only`,
    /// `none`), combined; an empty list allows nothing.
    pub allow: Vec<String>,
}

/// Query of `DELETE /api/v1/accounts/{name}/permissions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FolderQuery {
    /// The folder whose rule goes.
    pub path: String,
}

/// A virtual folder: a directory of the repository that homes mount.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VirtualFolder {
    /// Its name.
    pub name: String,
    /// The directory, relative to the repository.
    pub path: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The homes it is mounted into.
    pub mounts: Vec<Mount>,
}

/// Body of `POST /api/v1/folders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVirtualFolder {
    /// Its name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The directory, relative to the repository (made if missing).
    pub path: String,
}

/// A virtual folder mounted into an account's home.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Mount {
    /// The account.
    pub account: String,
    /// The virtual folder.
    pub folder: String,
    /// Where it appears, absolute inside the home.
    pub path: String,
    /// What the account may do in it (as in folder rules).
    pub allow: Vec<String>,
}

impl From<ferry_core::Mount> for Mount {
    fn from(m: ferry_core::Mount) -> Self {
        Self {
            account: m.account,
            folder: m.folder,
            path: m.path,
            allow: m.allow.iter().map(|p| p.as_str().to_owned()).collect(),
        }
    }
}

/// Body of `POST /api/v1/accounts/{name}/mounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMount {
    /// The virtual folder.
    pub folder: String,
    /// Where it appears, absolute inside the home (not `/`, not inside or
    /// above another mount).
    pub path: String,
    /// Permissions and presets, as in folder rules.
    pub allow: Vec<String>,
}

/// An API token as listed: everything but its digest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// Public id (the token text is `fy_ID_…`).
    pub id: String,
    /// What it is for.
    pub label: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// The token itself: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<ferry_core::AccountToken> for Token {
    fn from(t: ferry_core::AccountToken) -> Self {
        Self {
            id: t.id,
            label: t.label,
            created_at: time(t.created_at),
            expires_at: t.expires_at.map(time),
            token: None,
        }
    }
}

/// Body of `POST /api/v1/accounts/{name}/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (at most 200 printable characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Days until it stops working; none means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

// ---- transfers ----

/// One row of the transfer log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// Transfer id.
    pub id: String,
    /// The account.
    pub account: String,
    /// `sftp`, `scp`, `https`, …
    #[schema(value_type = String)]
    pub protocol: Protocol,
    /// `upload` or `download` (or `push`, `pull` for partner transfers).
    #[schema(value_type = String)]
    pub direction: Direction,
    /// Path in the account's home.
    pub path: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Size of the whole file, when known.
    pub size: Option<u64>,
    /// SHA-256 (hex) of the file, when it was moved whole.
    pub sha256: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: DateTime<Utc>,
    /// `completed`, `interrupted` or `failed`.
    #[schema(value_type = String)]
    pub status: TransferStatus,
    /// The server that recorded it.
    pub node: String,
    /// The client's address.
    pub client_addr: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The partner of a push or pull.
    pub partner: Option<String>,
    /// The event that made it.
    pub event_id: Option<String>,
}

impl From<ferry_core::TransferRecord> for Transfer {
    fn from(t: ferry_core::TransferRecord) -> Self {
        Self {
            id: t.id,
            account: t.account,
            protocol: t.protocol,
            direction: t.direction,
            path: t.path,
            bytes: t.bytes,
            size: t.size,
            sha256: t.sha256,
            started_at: time(t.started_at),
            ended_at: time(t.ended_at),
            status: t.status,
            node: t.node,
            client_addr: t.client_addr,
            error: t.error,
            partner: t.partner,
            event_id: t.event_id,
        }
    }
}

/// Query of `GET /api/v1/events` (and the CLI's transfer filters, see
/// [`TransferQuery`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only this status (transfers: completed, interrupted, failed;
    /// events: pending, running, done, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only since this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Only pushes to, pulls from or events involving this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// At most this many rows (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// What `GET /api/v1/transfers` lists: the filters of [`ListQuery`], and
/// a file name, protocol, end of the time range and a keyset cursor, so a
/// search stays fast however long the transfer log is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// Only this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only this status: completed, interrupted or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only transfers that started at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Only transfers that started before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
    /// Only pushes to and pulls from this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// Only this protocol (sftp, scp, https, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Only paths containing this text (ignoring ASCII case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Keyset paging: only rows after this one in the list's order (newest
    /// first). Pass the `started_at` of the last row of the previous page,
    /// with its id as `before_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub before: Option<DateTime<Utc>>,
    /// The id of the last row of the previous page (with `before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_id: Option<String>,
    /// At most this many rows (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl From<ListQuery> for TransferQuery {
    fn from(q: ListQuery) -> Self {
        TransferQuery {
            account: q.account,
            status: q.status,
            since: q.since,
            partner: q.partner,
            limit: q.limit,
            ..Default::default()
        }
    }
}

/// A transfer with the events it caused or belonged to, and their attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferDetail {
    /// The transfer.
    pub transfer: Transfer,
    /// Its events.
    pub events: Vec<EventDetail>,
}

// ---- partners ----

/// Body of `POST /api/v1/partners`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartner {
    /// Partner name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// User name on the partner's server.
    pub username: String,
    /// Password, or the private key's passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
    /// OpenSSH private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub private_key: Option<Secret>,
    /// The partner's host key: a known_hosts line, a .pub line, or
    /// `TYPE BASE64`.
    pub host_key: String,
    /// Remote directory for pushes and pulls (default `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_dir: Option<String>,
    /// After a pull: `keep` (default), `delete`, or `move:REMOTE_DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_pull: Option<String>,
    /// Bytes per second; none or 0 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u64>,
}

/// A partner: credentials only as what kind they are.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Partner {
    /// Partner name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// User name on the partner's server.
    pub username: String,
    /// `key` or `password`.
    pub auth: String,
    /// The pinned host key.
    pub host_key: String,
    /// Its `SHA256:…` fingerprint.
    pub host_key_fingerprint: String,
    /// Remote directory for pushes and pulls.
    pub remote_dir: String,
    /// After a pull: `keep`, `delete`, or `move:REMOTE_DIR`.
    pub after_pull: String,
    /// Bytes per second, if limited.
    pub rate_limit: Option<u64>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Answer of `POST /api/v1/partners/{name}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartnerTest {
    /// Partner name.
    pub partner: String,
    /// The directory listed.
    pub remote_dir: String,
    /// The verified host key's fingerprint.
    pub host_key_fingerprint: String,
    /// Entries of the directory, sorted; directories end in `/`.
    pub entries: Vec<String>,
}

// ---- routes ----

/// Body of `POST /api/v1/routes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoute {
    /// Route name.
    pub name: String,
    /// The account whose arriving files are matched.
    pub account: String,
    /// Glob matched against the file name (or, with a `/`, the path in the home).
    #[serde(rename = "match")]
    pub pattern: String,
    /// `push:PARTNER[:REMOTE_DIR]`, `copy:ACCOUNT[/DIR]`, `archive:DIR` or
    /// `rename:PATTERN`, run in order.
    pub actions: Vec<String>,
    /// Attempts before the event is failed (1-100, default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry in ms, doubled for each further one
    /// (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base_ms: Option<u64>,
}

/// A route: what happens to files that arrive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Route {
    /// Route name.
    pub name: String,
    /// The account whose arriving files are matched.
    pub account: String,
    /// The glob.
    pub pattern: String,
    /// The actions, in order: objects with a `type` (`push`, `copy`,
    /// `archive`, `rename`) and its fields.
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Action>,
    /// Attempts before the event is failed.
    pub max_attempts: u32,
    /// Delay before the first retry in ms.
    pub retry_base_ms: u64,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl From<ferry_core::Route> for Route {
    fn from(r: ferry_core::Route) -> Self {
        Self {
            name: r.name,
            account: r.account,
            pattern: r.pattern,
            actions: r.actions,
            max_attempts: r.max_attempts,
            retry_base_ms: r.retry_base_ms,
            created_at: time(r.created_at),
        }
    }
}

// ---- schedules ----

/// Body of `POST /api/v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// Schedule name.
    pub name: String,
    /// Cron expression: 5 fields, or 6-7 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `pull:PARTNER[:REMOTE_GLOB]:ACCOUNT[/DIR]` or
    /// `push:PARTNER[:REMOTE_DIR]:ACCOUNT[/DIR]`.
    pub action: String,
    /// Whether slots missed while no server was primary fire on takeover
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// Attempts before a firing's event is failed (1-100, default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry in ms (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base_ms: Option<u64>,
}

/// A schedule: pulls and pushes on cron slots.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// Schedule name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// What it does: an object with a `type` (`pull`, `push`) and its fields.
    #[schema(value_type = Object)]
    pub action: ScheduleAction,
    /// Whether missed slots fire on takeover.
    pub catch_up: bool,
    /// Attempts before a firing's event is failed.
    pub max_attempts: u32,
    /// Delay before the first retry in ms.
    pub retry_base_ms: u64,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Its next slots (up to 3), soonest first.
    #[serde(default)]
    pub next_slots: Vec<DateTime<Utc>>,
}

impl From<ferry_core::Schedule> for Schedule {
    fn from(s: ferry_core::Schedule) -> Self {
        Self {
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            action: s.action,
            catch_up: s.catch_up,
            max_attempts: s.max_attempts,
            retry_base_ms: s.retry_base_ms,
            created_at: time(s.created_at),
            next_slots: Vec::new(),
        }
    }
}

/// One firing of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Firing {
    /// The cron slot.
    pub slot: DateTime<Utc>,
    /// When it was fired.
    pub fired_at: DateTime<Utc>,
    /// The server that fired it.
    pub node: String,
    /// The event it queued.
    pub event_id: String,
}

// ---- monitors ----

/// Body of `POST /api/v1/monitors`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMonitor {
    /// Monitor name.
    pub name: String,
    /// Absolute directory on the server.
    pub dir: String,
    /// Glob of file names to ingest (default `*`).
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The account the files go to.
    pub account: String,
    /// Directory in the account's home (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dir: Option<String>,
    /// A file is ingested once its size and mtime stayed the same this
    /// long, in ms (default 5000, at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ms: Option<u64>,
}

/// A folder monitor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Monitor {
    /// Monitor name.
    pub name: String,
    /// Directory on the server.
    pub dir: String,
    /// Glob of file names.
    pub pattern: String,
    /// The account the files go to.
    pub account: String,
    /// Directory in the account's home.
    pub target_dir: String,
    /// Stability wait in ms.
    pub stable_ms: u64,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl From<ferry_core::Monitor> for Monitor {
    fn from(m: ferry_core::Monitor) -> Self {
        Self {
            name: m.name,
            dir: m.dir,
            pattern: m.pattern,
            account: m.account,
            target_dir: m.target_dir,
            stable_ms: m.stable_ms,
            created_at: time(m.created_at),
        }
    }
}

// ---- events ----

/// A queued unit of engine work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Event id.
    pub id: String,
    /// `upload`, `monitor`, `pull`, `schedule`, `resubmit` or `notify`.
    #[schema(value_type = String)]
    pub kind: EventKind,
    /// The route it runs.
    pub route: Option<String>,
    /// The schedule that fired it.
    pub schedule: Option<String>,
    /// The cron slot it was fired for.
    pub slot: Option<DateTime<Utc>>,
    /// The account.
    pub account: Option<String>,
    /// The file as it arrived.
    pub path: Option<String>,
    /// The transfer that caused it.
    pub transfer_id: Option<String>,
    /// Partners it talks to.
    pub partners: Vec<String>,
    /// `pending`, `running`, `done` or `failed`.
    #[schema(value_type = String)]
    pub status: EventStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts before it is failed.
    pub max_attempts: u32,
    /// Delay before the first retry in ms.
    pub retry_base_ms: u64,
    /// When it may run next.
    pub next_at: DateTime<Utc>,
    /// The server running it.
    pub lease_node: Option<String>,
    /// Until when that server holds it.
    pub lease_until: Option<DateTime<Utc>>,
    /// Actions done.
    pub steps_done: u32,
    /// The file's path now (after renames).
    pub current_path: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The event this one resubmits.
    pub resubmit_of: Option<String>,
    /// A notification: what it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<EventNotice>,
}

/// What a `notify` event sends, and where.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventNotice {
    /// The rule that raised it (`test` for a test notification).
    pub rule: String,
    /// Its trigger.
    pub trigger: String,
    /// The endpoint it goes to.
    pub endpoint: String,
    /// What happened, in one line.
    pub summary: String,
    /// The event it is about, if any.
    pub event_id: Option<String>,
}

impl From<ferry_core::Event> for Event {
    fn from(e: ferry_core::Event) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            route: e.route,
            schedule: e.schedule,
            slot: e.slot.map(time),
            account: e.account,
            path: e.path,
            transfer_id: e.transfer_id,
            partners: e.partners,
            status: e.status,
            attempts: e.attempts,
            max_attempts: e.max_attempts,
            retry_base_ms: e.retry_base_ms,
            next_at: time(e.next_at),
            lease_node: e.lease_node,
            lease_until: e.lease_until.map(time),
            steps_done: e.steps_done,
            current_path: e.current_path,
            created_at: time(e.created_at),
            updated_at: time(e.updated_at),
            last_error: e.last_error,
            resubmit_of: e.resubmit_of,
            notice: e.notice.map(|n| EventNotice {
                rule: n.rule,
                trigger: n.trigger,
                endpoint: n.endpoint,
                summary: n.summary,
                event_id: n.event_id,
            }),
        }
    }
}

/// One attempt at an event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventAttempt {
    /// The event.
    pub event_id: String,
    /// 1 for the first.
    pub attempt: u32,
    /// The server that made it.
    pub node: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, once it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// `done`, `retry`, `failed`, … (none while running).
    pub outcome: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

impl From<ferry_core::EventAttempt> for EventAttempt {
    fn from(a: ferry_core::EventAttempt) -> Self {
        Self {
            event_id: a.event_id,
            attempt: a.attempt,
            node: a.node,
            started_at: time(a.started_at),
            ended_at: a.ended_at.map(time),
            outcome: a.outcome,
            error: a.error,
        }
    }
}

/// An event with every attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventDetail {
    /// The event's fields.
    #[serde(flatten)]
    pub event: Event,
    /// Its attempts, oldest first.
    pub attempt_log: Vec<EventAttempt>,
}

// ---- notifications ----

/// Body of `POST /api/v1/notifications/endpoints`: a webhook (`webhook_url`)
/// or mail (`smtp_host`, `from`, `to`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNotifyEndpoint {
    /// Endpoint name.
    pub name: String,
    /// A webhook: the http:// or https:// URL that receives the JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Mail: the SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// SMTP port (default 587 with STARTTLS, 465 with TLS, 25 without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// `starttls` (default, required once asked for), `tls`, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_tls: Option<String>,
    /// User name for SMTP AUTH (the password is `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    /// The sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The webhook's HMAC-SHA256 key (made and returned once when absent),
    /// or the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub secret: Option<Secret>,
    /// PEM certificates to trust for this endpoint, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Base URL of links to events in notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_base: Option<String>,
    /// Attempts before a notification is given up (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Seconds before the second attempt, doubled for each further one
    /// (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base_secs: Option<u64>,
}

/// A notification endpoint (its secret only as whether it has one).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotifyEndpoint {
    /// Endpoint name.
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// The webhook URL.
    pub webhook_url: Option<String>,
    /// The SMTP server.
    pub smtp_host: Option<String>,
    /// The SMTP port.
    pub smtp_port: Option<u16>,
    /// `starttls`, `tls` or `none`.
    pub smtp_tls: Option<String>,
    /// User name for SMTP AUTH.
    pub smtp_username: Option<String>,
    /// The sender address.
    pub from: Option<String>,
    /// The recipients.
    pub to: Vec<String>,
    /// Whether a secret (HMAC key or SMTP password) is set.
    pub has_secret: bool,
    /// Whether extra CA certificates are set.
    pub has_ca: bool,
    /// Base URL of links to events.
    pub link_base: Option<String>,
    /// Attempts before a notification is given up.
    pub max_attempts: u32,
    /// Seconds before the second attempt.
    pub retry_base_secs: u64,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// The webhook secret Ferry made, in the answer that created it only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password)]
    pub generated_secret: Option<Secret>,
}

/// Answer of `POST /api/v1/notifications/endpoints/{name}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotifyTest {
    /// Endpoint name.
    pub endpoint: String,
    /// The queued notification: an event (`ferry event show ID`).
    pub event_id: String,
}

/// Body of `POST /api/v1/notifications/rules`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNotifyRule {
    /// Rule name.
    pub name: String,
    /// `event-failed`, `event-retrying:N`, `transfer-done`, `login-ban`,
    /// `role-change` or `quota:PERCENT`.
    pub on: String,
    /// The endpoint notified.
    pub endpoint: String,
    /// Only about this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only about this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only about this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
}

/// A notification rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotifyRule {
    /// Rule name.
    pub name: String,
    /// Its trigger.
    pub on: String,
    /// The endpoint notified.
    pub endpoint: String,
    /// Only about this account.
    pub account: Option<String>,
    /// Only about this route.
    pub route: Option<String>,
    /// Only about this partner.
    pub partner: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

// ---- cluster ----

/// Answer of `GET /role` (no token: for load balancers).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Role {
    /// This server's node id.
    pub node: String,
    /// `single`, `active-passive` or `active-active`.
    pub mode: String,
    /// `active`, `standby`, `primary`, `follower`, ….
    pub role: String,
    /// Whether this server runs the primary-only duties (scheduler,
    /// folder monitors).
    pub primary: bool,
    /// Whether it serves sessions.
    pub ready: bool,
    /// Whether a write made here now would be kept.
    pub writable: bool,
    /// Active/passive epoch, or the Raft term.
    pub epoch: u64,
}

/// Answer of `GET /api/v1/cluster/status`: the `mode`, and the mode's own
/// fields (`this`, `peers`, `majority`, `events` in active/passive;
/// `term`, `leader`, `writable`, `members` in active/active).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// `single`, `active-passive` or `active-active`.
    pub mode: String,
    /// The mode's fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Query of `GET /api/v1/cluster/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClusterEventsQuery {
    /// How many, newest last (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One event of the cluster's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The server that recorded it.
    pub node: String,
    /// `info` or `alert`.
    pub severity: String,
    /// `role`, `peer`, `majority`, `sync`, `promote`, ….
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Body of `POST /api/v1/cluster/promote`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// Promote without a majority.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /api/v1/cluster/join`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// A member's internal address (host:port).
    pub address: String,
    /// The join token `ferry cluster init` printed.
    #[schema(value_type = String, format = Password)]
    pub token: Secret,
}

/// Body of `POST /api/v1/cluster/remove`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveMember {
    /// The member's node id.
    pub name: String,
}

/// The answer of a cluster action: what was done.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// What was done, for people.
    pub message: String,
}

/// Body of `POST /api/v1/sync`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Only these standbys (default: every standby).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Show what would change; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One line of the answer of `POST /api/v1/sync` (JSON lines): progress
/// lines, then one `result` or `error` line. Each line has one field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SyncLine {
    /// How far a standby's sync is (`target`, `what`, `done`, `total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
    /// The report of every standby (`node`, and `report` or `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub result: Option<Vec<serde_json::Value>>,
    /// Why the sync did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---- retention ----

/// A retention policy: what is removed once it is older than an age.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionPolicy {
    /// Its name.
    pub name: String,
    /// `transfers`, `events`, `attempts`, `files` or `partials`.
    pub kind: String,
    /// The age, in its unit (`30d`, `12h`, `90s`).
    pub older_than: String,
    /// The age in ms.
    pub older_than_ms: i64,
    /// `files`: the account whose home holds the folder; `partials`: only
    /// this home (absent: the whole repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `files`: the folder, absolute inside the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// `files`: `delete` or `archive:DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

impl From<ferry_core::RetentionPolicy> for RetentionPolicy {
    fn from(p: ferry_core::RetentionPolicy) -> Self {
        Self {
            name: p.name,
            kind: p.kind.to_string(),
            older_than: ferry_core::retention::format_age(p.older_than_ms),
            older_than_ms: p.older_than_ms,
            account: p.account,
            folder: p.folder,
            action: p.action.map(|a| a.to_string()),
            created_at: time(p.created_at),
        }
    }
}

/// Body of `POST /api/v1/retention/policies`: a policy, replacing the one
/// of that name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRetentionPolicy {
    /// Its name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// `transfers` (transfer-log rows), `events` (done and failed events
    /// with their attempts), `attempts` (of done and failed events),
    /// `files` (of one folder of a home) or `partials` (partial uploads
    /// and scratch files left behind).
    pub kind: String,
    /// The age: a number and a unit `s`, `m`, `h` or `d` (`30d`, `12h`, `90s`).
    pub older_than: String,
    /// `files`: the account; `partials`: only this account's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `files`: the folder of the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// `files`: `delete` or `archive:DIR` (a folder of the same home).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Body of `POST /api/v1/retention/run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRun {
    /// List what would be removed; remove nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// What a retention run removed (or, dry, would remove).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// When it ran (the ages count back from then).
    pub at: DateTime<Utc>,
    /// One result per policy, by policy name.
    pub results: Vec<RetentionResult>,
}

/// What one policy removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionResult {
    /// The policy.
    pub policy: String,
    /// Its kind.
    pub kind: String,
    /// What is older than this goes.
    pub before: DateTime<Utc>,
    /// How many rows or files were (or would be) removed or archived.
    pub removed: u64,
    /// Which (at most 1,000): transfer and event ids, attempts as
    /// `EVENT#N` (dry runs only), files as paths in the home, partials as
    /// paths in the home or the repository.
    pub items: Vec<String>,
    /// Why the policy did not finish, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---- reports ----

/// Query of `GET /api/v1/reports/transfers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Group by `account` (default), `partner` or `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Periods of a `day` (default) or an `hour`, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// Transfers that started at or after this time (RFC 3339; default:
    /// 7 days ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// And before this time (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
}

/// Transfers counted per period and group, from the transfer log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferReport {
    /// `account`, `partner` or `route`.
    pub by: String,
    /// `day` or `hour`.
    pub per: String,
    /// The transfers counted started at or after this time…
    pub since: DateTime<Utc>,
    /// …and before this one.
    pub until: DateTime<Utc>,
    /// Oldest period first, groups by name; only groups with transfers.
    pub lines: Vec<ReportLine>,
}

/// One period and group of a [`TransferReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportLine {
    /// Start of the period (UTC).
    pub period: DateTime<Utc>,
    /// The account, partner or route; empty for transfers with none (an
    /// upload has no partner; only transfers an event of a route made
    /// have a route).
    pub group: String,
    /// Transfers that started in the period.
    pub transfers: u64,
    /// Of them, completed.
    pub completed: u64,
    /// Of them, failed or interrupted.
    pub failures: u64,
    /// Bytes they moved.
    pub bytes: u64,
}
