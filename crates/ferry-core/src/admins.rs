//! Named admins, their roles, and the audit trail of what they changed.
//!
//! Every request to the admin API is made by someone: a named admin (by
//! API token or password) or the bootstrap token of `ferry up` / `ferry
//! server` (the `bootstrap` identity, with the `admin` role). Every change
//! through the API, allowed or refused, is an [`AuditRecord`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{FerryError, Secret, UnixMillis};

/// What an admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Accounts, partners, routes, schedules, monitors, events, bans;
    /// neither admins nor the cluster.
    Operator,
    /// Reads only.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Auditor];

    /// The name used in the CLI, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role may make a request with `method` (upper case) to
    /// `path` (the request's path, `/api/v1/…`).
    pub fn may(self, method: &str, path: &str) -> bool {
        // Opening and ending one's own console session changes nothing
        // else: every role may.
        let reads = matches!(method, "GET" | "HEAD") || path == "/api/v1/console/session";
        match self {
            Role::Admin => true,
            Role::Auditor => reads,
            Role::Operator => {
                reads
                    || !(path.starts_with("/api/v1/admins")
                        || path.starts_with("/api/v1/cluster")
                        || path.starts_with("/api/v1/server")
                        || path.starts_with("/api/v1/sync"))
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                FerryError::invalid(format!(
                    "unknown role {s:?} (known: admin, operator, auditor)"
                ))
            })
    }
}

/// A named admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    /// Unique name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Argon2 PHC string; `None`: API tokens only.
    pub password_hash: Option<Secret>,
    /// When it was created.
    pub created_at: UnixMillis,
}

/// An API token of an admin. Only the SHA-256 of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    /// Public id (part of the token text, `fa_ID_SECRET`).
    pub id: String,
    /// The admin's name.
    pub admin: String,
    /// SHA-256 of the whole token string, hex.
    pub sha256: String,
    /// What it is for.
    pub label: String,
    /// When it was created.
    pub created_at: UnixMillis,
}

/// One change made (or refused) through the admin API. Written once,
/// never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id (UUID v7: ordered by time).
    pub id: String,
    /// When the request was answered.
    pub at: UnixMillis,
    /// Who: an admin's name, or `bootstrap` (the bootstrap token).
    pub admin: String,
    /// With which role.
    pub role: Role,
    /// From which address.
    pub client_addr: String,
    /// The request: method and path (`POST /api/v1/accounts`).
    pub request: String,
    /// Its body as JSON with every secret replaced by `***`; empty if none.
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// What happened: `ok`, or the error message.
    pub outcome: String,
    /// The server that served it.
    pub node: String,
    /// What the request acted on before it ran, as JSON with its secrets
    /// as `***` (`null`: it did not exist; empty: it names nothing stored).
    #[serde(default)]
    pub before: String,
    /// The same after it ran.
    #[serde(default)]
    pub after: String,
}

/// Replaces the value of every member whose name says it holds a secret
/// (`password`, `token`, `secret`, `private_key`, `passphrase`, …) by
/// `***`, at any depth.
pub fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            for (name, v) in members.iter_mut() {
                let lower = name.to_ascii_lowercase();
                let secret = [
                    "password",
                    "token",
                    "secret",
                    "private_key",
                    "passphrase",
                    "key_pem",
                ]
                .iter()
                .any(|s| lower.contains(s));
                if secret && (v.is_string() || v.is_object()) {
                    *v = serde_json::Value::String("***".to_owned());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_say() {
        assert!(Role::Admin.may("POST", "/api/v1/admins"));
        assert!(Role::Operator.may("POST", "/api/v1/accounts"));
        assert!(Role::Operator.may("GET", "/api/v1/admins"));
        assert!(!Role::Operator.may("POST", "/api/v1/admins"));
        assert!(!Role::Operator.may("DELETE", "/api/v1/admins/x"));
        assert!(!Role::Operator.may("POST", "/api/v1/cluster/promote"));
        assert!(Role::Auditor.may("GET", "/api/v1/audit"));
        assert!(!Role::Auditor.may("POST", "/api/v1/accounts"));
        // Stopping a server is the cluster's business, not an operator's.
        assert!(!Role::Operator.may("POST", "/api/v1/server/drain"));
        assert!(!Role::Auditor.may("POST", "/api/v1/server/drain"));
        assert!(Role::Admin.may("POST", "/api/v1/server/drain"));
        // Every role opens and ends its own console session, and only that.
        assert!(Role::Auditor.may("POST", "/api/v1/console/session"));
        assert!(Role::Auditor.may("DELETE", "/api/v1/console/session"));
        assert!(!Role::Auditor.may("POST", "/api/v1/console/session/x"));
        assert!(!Role::Auditor.may("DELETE", "/api/v1/bans/1.2.3.4"));
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = serde_json::json!({
            "name": "alice",
            "password": "hunter22",
            "auth": {"private_key": "-----BEGIN", "user": "u"},
            "list": [{"token": "fy_x"}],
            "remove_password": true
        });
        redact(&mut v);
        assert_eq!(v["password"], "***");
        assert_eq!(v["auth"]["private_key"], "***");
        assert_eq!(v["auth"]["user"], "u");
        assert_eq!(v["list"][0]["token"], "***");
        assert_eq!(v["name"], "alice");
        assert_eq!(v["remove_password"], true);
    }
}
