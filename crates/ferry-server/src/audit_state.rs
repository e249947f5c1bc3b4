//! What an admin change touched, as the audit trail keeps it before and
//! after the change: the stored state of the thing the request's path (or,
//! for a creation, its body's `name`) names, as JSON with every secret
//! replaced by `***` ([`ferry_core::admins::redact`]).
//!
//! An account's state takes in what hangs off it (keys by fingerprint,
//! token ids, folder rules, mounts), so a change to any of them shows as a
//! change of the account. A thing that does not exist is `null`; a request
//! that names nothing stored (cluster actions, `ferry sync`) has no state.

use ferry_core::admins::redact;
use ferry_store::Store;
use serde_json::{json, Value};

/// The state the change `path` (`/api/v1/…`, no query) with `body` acts on,
/// as redacted JSON text; empty when the request names nothing stored.
/// Blocks (store reads).
pub(crate) fn state_of(store: &Store, path: &str, body: &[u8]) -> String {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return String::new();
    };
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let mut kind = parts.next().unwrap_or_default();
    if kind == "retention" {
        // `retention/policies[/NAME]`; a run names nothing stored.
        if parts.next() != Some("policies") {
            return String::new();
        }
        kind = "retention/policies";
    }
    // A creation names its thing in the body.
    let name = parts.next().map(percent_decoded).or_else(|| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b.get("name").and_then(Value::as_str).map(str::to_owned))
    });
    let read = match (kind, name) {
        ("network", _) => store
            .setting(ferry_core::network::DENY_NETWORKS_SETTING)
            .map(|deny| json!({ "deny_networks": deny })),
        (_, None) => return String::new(),
        ("accounts", Some(name)) => account(store, &name),
        ("admins", Some(name)) => store.admin(&name).and_then(|admin| {
            let tokens = store.admin_tokens(&name)?;
            Ok(admin.map(|a| {
                json!({
                    "admin": a,
                    "tokens": tokens.iter().map(|t| json!({"id": t.id, "label": t.label}))
                        .collect::<Vec<_>>(),
                })
            }))
            .map(|v| v.unwrap_or(Value::Null))
        }),
        ("partners", Some(name)) => store.partner(&name).map(|p| json!(p)),
        ("routes", Some(name)) => store.route(&name).map(|r| json!(r)),
        ("schedules", Some(name)) => store.schedule(&name).map(|s| json!(s)),
        ("monitors", Some(name)) => store
            .monitors()
            .map(|all| json!(all.into_iter().find(|m| m.name == name))),
        ("events", Some(id)) => store.event(&id).map(|e| json!(e)),
        ("folders", Some(name)) => store.virtual_folders().and_then(|all| {
            let mounts: Vec<_> = store
                .mounts(None)?
                .into_iter()
                .filter(|(m, _)| m.folder == name)
                .map(|(m, _)| m)
                .collect();
            Ok(match all.into_iter().find(|f| f.name == name) {
                Some(f) => json!({ "folder": f, "mounts": mounts }),
                None => Value::Null,
            })
        }),
        ("retention/policies", Some(name)) => store
            .retention_policies()
            .map(|all| json!(all.into_iter().find(|p| p.name == name))),
        ("bans", Some(address)) => store
            .bans(0)
            .map(|all| json!(all.into_iter().find(|b| b.address == address))),
        _ => return String::new(),
    };
    match read {
        Ok(mut value) => {
            redact(&mut value);
            value.to_string()
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// An account and everything that hangs off it.
fn account(store: &Store, name: &str) -> ferry_store::Result<Value> {
    let Some(account) = store.account(name)? else {
        return Ok(Value::Null);
    };
    let keys: Vec<_> = store
        .account_keys(name)?
        .into_iter()
        .map(|k| json!({"fingerprint": k.fingerprint, "comment": k.comment}))
        .collect();
    let tokens: Vec<_> = store
        .account_tokens(name)?
        .into_iter()
        .map(|t| json!({"id": t.id, "label": t.label, "expires_at": t.expires_at}))
        .collect();
    let mounts: Vec<_> = store
        .mounts(Some(name))?
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    Ok(json!({
        "account": account,
        "policy": store.account_policy(name)?,
        "keys": keys,
        "tokens": tokens,
        "rules": store.folder_rules(name)?,
        "mounts": mounts,
    }))
}

/// A path segment with its `%XX` escapes decoded (names are ASCII; a
/// segment that does not decode is taken as it is).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Account, Command, Secret};

    #[test]
    fn an_account_before_and_after_hides_its_secrets() {
        let store = Store::open_in_memory().unwrap();
        let path = "/api/v1/accounts/alice/permissions";
        assert_eq!(state_of(&store, path, b""), "null");
        store
            .apply(&Command::CreateAccount(Account {
                id: "1".into(),
                name: "alice".into(),
                home: "alice".into(),
                password_hash: Some(Secret::new("$argon2id$v=19$secret-hash")),
                enabled: true,
                created_at: 0,
            }))
            .unwrap();
        let state = state_of(&store, path, b"");
        assert!(state.contains("\"name\":\"alice\""), "{state}");
        assert!(!state.contains("secret-hash"), "{state}");
        assert!(state.contains("\"password_hash\":\"***\""), "{state}");
        // A creation is named by its body; cluster actions by nothing.
        let created = state_of(&store, "/api/v1/accounts", br#"{"name":"alice"}"#);
        assert_eq!(created, state);
        assert_eq!(state_of(&store, "/api/v1/cluster/promote", b""), "");
        assert_eq!(percent_decoded("a%2Fb%zz"), "a/b%zz");
    }
}
