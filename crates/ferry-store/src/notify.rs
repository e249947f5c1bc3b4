//! Notification endpoints and rules, and raising notices: each rule that
//! matches a notice queues one `notify` event, with an id derived from the
//! rule and the notice's cause, inside the transaction of the change that
//! caused it. Replaying that change raises nothing new.

use crate::cached::Cached;
use ferry_core::engine::derived_id;
use ferry_core::{Command, Event, Notice, NotifyEndpoint, NotifyRule, TriggerKind, UnixMillis};
use rusqlite::{params, Connection};

use crate::engine::{ensure_absent, from_json, insert_event, json, require};
use crate::{Result, Store, StoreError};

/// Applies a notification command inside `tx`; `None` for any other command.
pub(crate) fn apply(tx: &Connection, command: &Command) -> Option<Result<usize>> {
    Some(match command {
        Command::AddNotifyEndpoint(e) => add_endpoint(tx, e),
        Command::RemoveNotifyEndpoint { name } => remove_endpoint(tx, name),
        Command::AddNotifyRule(r) => add_rule(tx, r),
        Command::RemoveNotifyRule { name } => {
            let n = tx.exec("DELETE FROM notify_rules WHERE name = ?1", [name]);
            match n {
                Ok(0) => Err(StoreError::NotFound(format!("notification rule {name:?}"))),
                Ok(n) => Ok(n),
                Err(e) => Err(e.into()),
            }
        }
        Command::RaiseNotice { kind, key, notice } => raise(tx, *kind, key, notice.clone()),
        _ => return None,
    })
}

fn add_endpoint(tx: &Connection, e: &NotifyEndpoint) -> Result<usize> {
    ensure_absent(tx, "notify_endpoints", "notification endpoint", &e.name)?;
    Ok(tx.exec(
        "INSERT INTO notify_endpoints (name, target, secret_sealed, ca_pem, link_base,
           max_attempts, retry_base_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.name,
            json(&e.target)?,
            e.secret_sealed,
            e.ca_pem,
            e.link_base,
            e.max_attempts,
            e.retry_base_ms as i64,
            e.created_at
        ],
    )?)
}

fn remove_endpoint(tx: &Connection, name: &str) -> Result<usize> {
    let users: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT name FROM notify_rules WHERE endpoint = ?1")?;
        let rows = stmt.query_map([name], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "notification endpoint {name:?} is used by rule(s) {}; remove those first",
            users.join(", ")
        )));
    }
    let n = tx.exec("DELETE FROM notify_endpoints WHERE name = ?1", [name])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "notification endpoint {name:?}"
        )));
    }
    Ok(n)
}

fn add_rule(tx: &Connection, r: &NotifyRule) -> Result<usize> {
    ensure_absent(tx, "notify_rules", "notification rule", &r.name)?;
    require(tx, "notify_endpoints", "notification endpoint", &r.endpoint)?;
    Ok(tx.exec(
        "INSERT INTO notify_rules (name, trigger, kind, account, route, partner, endpoint,
           created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            r.name,
            json(&r.trigger)?,
            r.trigger.kind().as_str(),
            r.account,
            r.route,
            r.partner,
            r.endpoint,
            r.created_at
        ],
    )?)
}

const RULE_COLUMNS: &str = "name, trigger, account, route, partner, endpoint, created_at";

fn row_to_rule(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotifyRule> {
    Ok(NotifyRule {
        name: r.get(0)?,
        trigger: from_json(&r.get::<_, String>(1)?)?,
        account: r.get(2)?,
        route: r.get(3)?,
        partner: r.get(4)?,
        endpoint: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "name, target, secret_sealed, ca_pem, link_base, max_attempts, retry_base_ms, created_at";

fn row_to_endpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotifyEndpoint> {
    Ok(NotifyEndpoint {
        name: r.get(0)?,
        target: from_json(&r.get::<_, String>(1)?)?,
        secret_sealed: r.get(2)?,
        ca_pem: r.get(3)?,
        link_base: r.get(4)?,
        max_attempts: r.get(5)?,
        retry_base_ms: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
    })
}

/// Queues one `notify` event for each rule of `kind` that matches `notice`.
/// The event's id is derived from the rule and `key` (which names the
/// cause), so raising the same cause again changes nothing.
pub(crate) fn raise(
    tx: &Connection,
    kind: TriggerKind,
    key: &str,
    notice: Notice,
) -> Result<usize> {
    let rules: Vec<(NotifyRule, u32, u64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT r.name, r.trigger, r.account, r.route, r.partner, r.endpoint, r.created_at,
                    e.max_attempts, e.retry_base_ms
             FROM notify_rules r JOIN notify_endpoints e ON e.name = r.endpoint
             WHERE r.kind = ?1 ORDER BY r.name",
        )?;
        let rows = stmt.query_map([kind.as_str()], |r| {
            Ok((row_to_rule(r)?, r.get(7)?, r.get::<_, i64>(8)? as u64))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut changed = 0;
    for (rule, max_attempts, retry_base_ms) in rules {
        if !rule.matches(kind, &notice) {
            continue;
        }
        let id = derived_id(&["notify", &rule.name, key]);
        if crate::engine::exists(tx, "SELECT 1 FROM events WHERE id = ?1", &id)? {
            continue;
        }
        let notice = Notice {
            trigger: rule.trigger.to_string(),
            rule: rule.name.clone(),
            endpoint: rule.endpoint.clone(),
            ..notice.clone()
        };
        let event = Event::notify(id, notice, max_attempts, retry_base_ms);
        changed += insert_event(tx, &event)?;
    }
    Ok(changed)
}

/// The notice an event's outcome raises: what it was about, and the error.
pub(crate) fn event_notice(event: &Event, now: UnixMillis, summary: String) -> Notice {
    Notice {
        at: now,
        summary,
        account: event.account.clone(),
        route: event.route.clone(),
        schedule: event.schedule.clone(),
        partners: event.partners.clone(),
        file: event.path.clone(),
        event_id: Some(event.id.clone()),
        transfer_id: event.transfer_id.clone(),
        error: event.last_error.clone(),
        attempts: Some(event.attempts),
        ..Notice::default()
    }
}

impl Store {
    /// Every notification endpoint, by name.
    pub fn notify_endpoints(&self) -> Result<Vec<NotifyEndpoint>> {
        self.all(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM notify_endpoints ORDER BY name"),
            [],
            row_to_endpoint,
        )
    }

    /// The notification endpoint called `name`.
    pub fn notify_endpoint(&self, name: &str) -> Result<Option<NotifyEndpoint>> {
        self.one(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM notify_endpoints WHERE name = ?1"),
            name,
            row_to_endpoint,
        )
    }

    /// Every notification rule, by name.
    pub fn notify_rules(&self) -> Result<Vec<NotifyRule>> {
        self.all(
            &format!("SELECT {RULE_COLUMNS} FROM notify_rules ORDER BY name"),
            [],
            row_to_rule,
        )
    }
}
