//! The cluster's history for operators: role changes, promotions, peers
//! found dead or alive again, majority lost or regained, syncs. Each event
//! is logged, appended to `cluster-events.jsonl` in the state directory (so
//! `ferry cluster events` shows what happened before a restart too), and
//! kept in memory for status.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Expected (a sync, a planned promotion).
    Info,
    /// Needs an operator's attention (a peer failed, majority lost).
    Alert,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Unix ms.
    pub at: i64,
    /// The node that recorded it.
    pub node: String,
    /// Seriousness.
    pub severity: Severity,
    /// Short kind: `role`, `peer`, `majority`, `sync`, `promote`.
    pub kind: String,
    /// What happened.
    pub message: String,
}

const KEPT: usize = 500;

/// The event log of one node.
#[derive(Debug)]
pub struct EventLog {
    node: String,
    path: PathBuf,
    recent: Mutex<VecDeque<ClusterEvent>>,
    webhook: Option<(String, reqwest::Client)>,
}

impl EventLog {
    /// Opens the log in `state_dir`, loading its most recent events.
    pub fn open(state_dir: &std::path::Path, node: &str) -> Self {
        let path = state_dir.join("cluster-events.jsonl");
        let mut recent = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(event) = serde_json::from_str::<ClusterEvent>(line) {
                    if recent.len() == KEPT {
                        recent.pop_front();
                    }
                    recent.push_back(event);
                }
            }
        }
        Self {
            node: node.to_owned(),
            path,
            recent: Mutex::new(recent),
            webhook: None,
        }
    }

    /// Also POST every alert as JSON to `url`; `ca` verifies an https:// one.
    pub fn with_webhook(
        mut self,
        url: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, crate::ClusterError> {
        let Some(url) = url else {
            return Ok(self);
        };
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = ca {
            let tls = ferry_proto::tls::ca_client_config(ca).map_err(|e| {
                crate::ClusterError::Config(format!("[cluster] alert_webhook_ca: {e}"))
            })?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder
            .build()
            .map_err(|e| crate::ClusterError::Config(format!("[cluster] alert_webhook: {e}")))?;
        self.webhook = Some((url.to_owned(), client));
        Ok(self)
    }

    /// Records an event.
    pub fn record(&self, severity: Severity, kind: &str, message: String) {
        match severity {
            Severity::Info => tracing::info!(kind, "cluster: {message}"),
            Severity::Alert => tracing::warn!(kind, "cluster alert: {message}"),
        }
        let event = ClusterEvent {
            at: now_ms(),
            node: self.node.clone(),
            severity,
            kind: kind.to_owned(),
            message,
        };
        if let Ok(line) = serde_json::to_string(&event) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                tracing::warn!(error = %e, "cannot append to the cluster event log");
            }
        }
        if let (Severity::Alert, Some((url, client))) = (severity, &self.webhook) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (url, client, body) = (url.clone(), client.clone(), event.clone());
                runtime.spawn(async move {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => tracing::warn!(status = %r.status(), "the alert webhook refused an alert"),
                        Err(e) => tracing::warn!(error = %e, "cannot reach the alert webhook"),
                    }
                });
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The most recent `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<ClusterEvent> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let skip = recent.len().saturating_sub(limit);
        recent.iter().skip(skip).cloned().collect()
    }
}

/// The cluster's history from each member's own: `own` and the answers of
/// the others (`Err` names a member that did not answer, which is said
/// in an event of its own), merged by time, the newest `limit`.
pub fn merge(
    own: Vec<ClusterEvent>,
    others: Vec<(String, Result<Vec<ClusterEvent>, String>)>,
    asked_by: &str,
    limit: usize,
) -> Vec<ClusterEvent> {
    let mut all = own;
    for (member, answer) in others {
        match answer {
            Ok(events) => all.extend(events),
            Err(why) => all.push(ClusterEvent {
                at: now_ms(),
                node: asked_by.to_owned(),
                severity: Severity::Alert,
                kind: "events".into(),
                message: format!("{member}'s events are missing: {why}"),
            }),
        }
    }
    all.sort_by(|a, b| (a.at, &a.node).cmp(&(b.at, &b.node)));
    all.dedup();
    let skip = all.len().saturating_sub(limit);
    all.split_off(skip)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, node: &str) -> ClusterEvent {
        ClusterEvent {
            at,
            node: node.into(),
            severity: Severity::Info,
            kind: "role".into(),
            message: format!("{node} at {at}"),
        }
    }

    #[test]
    fn members_histories_merge_by_time_and_a_silent_member_is_named() {
        let merged = merge(
            vec![event(1, "s1"), event(4, "s1")],
            vec![
                ("s2".into(), Ok(vec![event(2, "s2"), event(5, "s2")])),
                ("s3".into(), Err("no answer in time".into())),
            ],
            "s1",
            4,
        );
        let order: Vec<(i64, &str)> = merged.iter().map(|e| (e.at, e.node.as_str())).collect();
        assert_eq!(&order[..3], &[(2, "s2"), (4, "s1"), (5, "s2")]);
        let last = &merged[3];
        assert_eq!(last.kind, "events");
        assert!(last.message.contains("s3's events are missing"), "{last:?}");
    }
}
