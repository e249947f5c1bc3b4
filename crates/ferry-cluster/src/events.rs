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
    ) -> Result<Self, String> {
        let Some(url) = url else {
            return Ok(self);
        };
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = ca {
            let tls = ferry_proto::tls::ca_client_config(ca)
                .map_err(|e| format!("[cluster] alert_webhook_ca: {e}"))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder
            .build()
            .map_err(|e| format!("[cluster] alert_webhook: {e}"))?;
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
