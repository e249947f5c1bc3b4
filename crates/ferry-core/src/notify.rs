//! Notifications: where they go (endpoints), when they are raised (rules),
//! and what one says (a [`Notice`]).
//!
//! A notice is raised inside the store, in the same transaction as the
//! change that caused it (an event failing, a transfer completing, a ban),
//! and becomes an event of kind `notify` in the queue with an id derived
//! from the rule and its cause. So every replica raises it identically, a
//! replayed command raises nothing new, and sending it is a queued, leased,
//! retried job like any other — delivered once per event id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::engine::{check_name, Event, EventKind, EventStatus};
use crate::{FerryError, UnixMillis};

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyEndpoint {
    /// Unique name, as rules refer to it.
    pub name: String,
    /// Webhook or e-mail.
    pub target: NotifyTarget,
    /// The webhook's HMAC key or the SMTP password, sealed with the
    /// server's secret key.
    pub secret_sealed: Option<String>,
    /// PEM certificates trusted for this endpoint's TLS, besides the
    /// system's roots.
    pub ca_pem: Option<String>,
    /// Base URL of links to events in notifications, if any.
    pub link_base: Option<String>,
    /// Attempts before a notification is given up (`failed`).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub retry_base_ms: u64,
    /// When it was added.
    pub created_at: UnixMillis,
}

/// How an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotifyTarget {
    /// An HTTP(S) URL that receives a JSON POST, signed with HMAC-SHA256.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
    },
    /// Mail through an SMTP server.
    Email {
        /// SMTP server host name or address.
        host: String,
        /// SMTP port.
        port: u16,
        /// How the connection is secured.
        tls: SmtpTls,
        /// User name for SMTP AUTH, if the server needs it.
        username: Option<String>,
        /// The sender address.
        from: String,
        /// The recipients.
        to: Vec<String>,
    },
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP, upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or network.
    None,
}

crate::model::str_enum!(SmtpTls { Starttls => "starttls", Tls => "tls", None => "none" });

impl NotifyTarget {
    /// `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyTarget::Webhook { .. } => "webhook",
            NotifyTarget::Email { .. } => "email",
        }
    }

    /// Checks the target's fields.
    pub fn check(&self) -> Result<(), FerryError> {
        match self {
            NotifyTarget::Webhook { url } => {
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.len() > 2048
                    || url.chars().any(char::is_whitespace)
                {
                    return Err(FerryError::invalid(format!(
                        "webhook URL {url:?} must be an http:// or https:// URL"
                    )));
                }
                Ok(())
            }
            NotifyTarget::Email { host, from, to, .. } => {
                if host.is_empty() || host.chars().any(char::is_whitespace) {
                    return Err(FerryError::invalid("the SMTP host must not be empty"));
                }
                if to.is_empty() {
                    return Err(FerryError::invalid("give at least one recipient"));
                }
                for address in std::iter::once(from).chain(to) {
                    check_address(address)?;
                }
                Ok(())
            }
        }
    }
}

/// A plausibility check of a mail address, `local@domain` or
/// `Name <local@domain>`; the SMTP library parses it fully when a message
/// is built.
fn check_address(mailbox: &str) -> Result<(), FerryError> {
    let address = match mailbox.trim_end().strip_suffix('>') {
        Some(rest) => rest.rsplit_once('<').map_or(rest, |(_, a)| a),
        None => mailbox,
    };
    let ok = mailbox.len() <= 320
        && !mailbox.chars().any(char::is_control)
        && address.len() <= 254
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if ok {
        Ok(())
    } else {
        Err(FerryError::invalid(format!(
            "{mailbox:?} is not a mail address"
        )))
    }
}

/// When a rule raises a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// A route's or schedule's event failed for good.
    EventFailed,
    /// An event's attempt failed for the `after`-th time and it retries.
    EventRetrying {
        /// Failed attempts before the notice (at least 1).
        after: u32,
    },
    /// A transfer completed (an upload, a download, a push or pull).
    TransferDone,
    /// A client address was banned.
    LoginBan,
    /// A server became the primary.
    RoleChange,
    /// An account's usage passed this percentage of its quota.
    Quota {
        /// 1–100.
        percent: u8,
    },
}

/// The kind of a [`Trigger`] without its parameter: what the store looks
/// rules up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// See [`Trigger::EventFailed`].
    EventFailed,
    /// See [`Trigger::EventRetrying`].
    EventRetrying,
    /// See [`Trigger::TransferDone`].
    TransferDone,
    /// See [`Trigger::LoginBan`].
    LoginBan,
    /// See [`Trigger::RoleChange`].
    RoleChange,
    /// See [`Trigger::Quota`].
    Quota,
}

crate::model::str_enum!(TriggerKind {
    EventFailed => "event-failed",
    EventRetrying => "event-retrying",
    TransferDone => "transfer-done",
    LoginBan => "login-ban",
    RoleChange => "role-change",
    Quota => "quota",
});

impl Trigger {
    /// The kind, without the parameter.
    pub fn kind(self) -> TriggerKind {
        match self {
            Trigger::EventFailed => TriggerKind::EventFailed,
            Trigger::EventRetrying { .. } => TriggerKind::EventRetrying,
            Trigger::TransferDone => TriggerKind::TransferDone,
            Trigger::LoginBan => TriggerKind::LoginBan,
            Trigger::RoleChange => TriggerKind::RoleChange,
            Trigger::Quota { .. } => TriggerKind::Quota,
        }
    }

    /// Whether a notice passes this trigger's threshold, if it has one.
    pub fn passes(self, notice: &Notice) -> bool {
        match self {
            Trigger::EventRetrying { after } => notice.attempts.unwrap_or(0) >= after,
            Trigger::Quota { percent } => notice.quota_percent.unwrap_or(0) >= percent,
            _ => true,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::EventRetrying { after } => write!(f, "event-retrying:{after}"),
            Trigger::Quota { percent } => write!(f, "quota:{percent}"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

impl FromStr for Trigger {
    type Err = FerryError;
    fn from_str(s: &str) -> Result<Self, FerryError> {
        let bad = || {
            FerryError::invalid(format!(
                "trigger {s:?}: expected event-failed, event-retrying:N, transfer-done, login-ban, role-change or quota:PERCENT"
            ))
        };
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let kind: TriggerKind = name.parse().map_err(|_| bad())?;
        match (kind, arg) {
            (TriggerKind::EventFailed, None) => Ok(Trigger::EventFailed),
            (TriggerKind::TransferDone, None) => Ok(Trigger::TransferDone),
            (TriggerKind::LoginBan, None) => Ok(Trigger::LoginBan),
            (TriggerKind::RoleChange, None) => Ok(Trigger::RoleChange),
            (TriggerKind::EventRetrying, Some(n)) => match n.parse::<u32>() {
                Ok(after) if after >= 1 => Ok(Trigger::EventRetrying { after }),
                _ => Err(bad()),
            },
            (TriggerKind::Quota, Some(p)) => match p.trim_end_matches('%').parse::<u8>() {
                Ok(percent) if (1..=100).contains(&percent) => Ok(Trigger::Quota { percent }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// A rule: on a trigger, optionally only for one account, route or
/// partner, notify an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRule {
    /// Unique name.
    pub name: String,
    /// When it fires.
    pub trigger: Trigger,
    /// Only notices about this account.
    pub account: Option<String>,
    /// Only notices about this route.
    pub route: Option<String>,
    /// Only notices about this partner.
    pub partner: Option<String>,
    /// The endpoint notified.
    pub endpoint: String,
    /// When it was added.
    pub created_at: UnixMillis,
}

impl NotifyRule {
    /// Checks the names and that filters fit the trigger.
    pub fn check(&self) -> Result<(), FerryError> {
        check_name("rule", &self.name)?;
        check_name("endpoint", &self.endpoint)?;
        for (what, name) in [
            ("account", &self.account),
            ("route", &self.route),
            ("partner", &self.partner),
        ] {
            if let Some(name) = name {
                check_name(what, name)?;
            }
        }
        let file_filters = self.route.is_some() || self.partner.is_some();
        match self.trigger.kind() {
            TriggerKind::LoginBan | TriggerKind::RoleChange
                if file_filters || self.account.is_some() =>
            {
                Err(FerryError::invalid(format!(
                    "a {} rule takes no account, route or partner",
                    self.trigger.kind()
                )))
            }
            TriggerKind::Quota if file_filters => Err(FerryError::invalid(
                "a quota rule takes an account, not a route or partner",
            )),
            _ => Ok(()),
        }
    }

    /// Whether this rule raises `notice` (trigger kind, threshold, filters).
    pub fn matches(&self, kind: TriggerKind, notice: &Notice) -> bool {
        let filter = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        let partner = self
            .partner
            .as_ref()
            .is_none_or(|p| notice.partners.iter().any(|q| q == p));
        self.trigger.kind() == kind
            && self.trigger.passes(notice)
            && filter(&self.account, &notice.account)
            && filter(&self.route, &notice.route)
            && partner
    }
}

/// What a notification says: its cause, with every field that applies.
/// The webhook's JSON body and the mail's text are made from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The trigger, as the rule names it (`event-failed`, …); set by the store.
    #[serde(default)]
    pub trigger: String,
    /// The rule that raised it; set by the store.
    #[serde(default)]
    pub rule: String,
    /// The endpoint it goes to; set by the store.
    #[serde(default)]
    pub endpoint: String,
    /// When its cause happened (unix ms).
    pub at: UnixMillis,
    /// One line that says what happened.
    pub summary: String,
    /// The account concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The route concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The schedule concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Partners concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<String>,
    /// The file, as a path in the account's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The event concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The transfer concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
    /// The error, if something failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts made so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Bytes transferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The client address concerned (a ban).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The server concerned (a role change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The cluster term (a role change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Usage as a percentage of the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_percent: Option<u8>,
}

impl Event {
    /// A pending `notify` event that sends `notice`, due at the notice's
    /// time, with its endpoint's attempts and backoff. It names the
    /// notice's account, file, transfer and partners, so `ferry event list`
    /// filters find it.
    pub fn notify(id: String, notice: Notice, max_attempts: u32, retry_base_ms: u64) -> Self {
        let at = notice.at;
        Self {
            id,
            kind: EventKind::Notify,
            route: None,
            schedule: None,
            slot: None,
            account: notice.account.clone(),
            path: notice.file.clone(),
            transfer_id: notice.transfer_id.clone(),
            partners: notice.partners.clone(),
            status: EventStatus::Pending,
            attempts: 0,
            max_attempts,
            retry_base_ms,
            next_at: at,
            lease_node: None,
            lease_until: None,
            steps_done: 0,
            current_path: None,
            created_at: at,
            updated_at: at,
            last_error: None,
            resubmit_of: None,
            notice: Some(notice),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn triggers_parse_and_print_back() {
        for text in [
            "event-failed",
            "event-retrying:3",
            "transfer-done",
            "login-ban",
            "role-change",
            "quota:90",
        ] {
            assert_eq!(text.parse::<Trigger>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "event-failed:1",
            "event-retrying",
            "event-retrying:0",
            "quota:0",
            "quota:101",
            "quota",
            "nope",
        ] {
            assert!(bad.parse::<Trigger>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rules_match_by_kind_threshold_and_filters() {
        let rule = NotifyRule {
            name: "r".into(),
            trigger: Trigger::EventRetrying { after: 2 },
            account: None,
            route: Some("out".into()),
            partner: Some("acme".into()),
            endpoint: "ops".into(),
            created_at: 0,
        };
        let mut notice = Notice {
            route: Some("out".into()),
            partners: vec!["other".into(), "acme".into()],
            attempts: Some(2),
            ..Notice::default()
        };
        assert!(rule.matches(TriggerKind::EventRetrying, &notice));
        assert!(!rule.matches(TriggerKind::EventFailed, &notice));
        notice.attempts = Some(1);
        assert!(!rule.matches(TriggerKind::EventRetrying, &notice));
        notice.attempts = Some(5);
        notice.partners = vec!["other".into()];
        assert!(!rule.matches(TriggerKind::EventRetrying, &notice));
    }

    #[test]
    fn rules_refuse_filters_their_trigger_cannot_have() {
        let mut rule = NotifyRule {
            name: "r".into(),
            trigger: Trigger::LoginBan,
            account: Some("alice".into()),
            route: None,
            partner: None,
            endpoint: "ops".into(),
            created_at: 0,
        };
        assert!(rule.check().is_err());
        rule.account = None;
        rule.check().unwrap();
    }
}
