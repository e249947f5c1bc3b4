//! `ferry cluster …` and `ferry sync`: active/passive operations through a
//! server's admin API.

use anyhow::{bail, Context};
use clap::Subcommand;
use ferry_api as api;
use ferry_core::Secret;
use serde_json::Value;

use crate::admin_client::{print_json, show, Admin, AdminArgs};

/// `ferry cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every server's role, epoch, health, last sync and what is out of date.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cluster's history: role changes, failed peers, syncs.
    Events {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many, newest last.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Active/active: make the server asked and its configured peers the
    /// Raft group (once, on one server). Prints the join token once.
    Init,
    /// Active/active: add the server asked to the group that the member at
    /// ADDR (host:port of its internal listener) belongs to.
    Join {
        /// A member's internal address.
        address: String,
        /// File holding the join token `ferry cluster init` printed.
        #[arg(long, env = "FERRY_JOIN_TOKEN_FILE")]
        join_token_file: std::path::PathBuf,
    },
    /// Active/active: remove the server asked from the group.
    Leave,
    /// Active/active: remove another member from the group, through the
    /// server asked: one that is gone for good, or whose state directory
    /// was lost (it joins again afterwards with `ferry cluster join`).
    Remove {
        /// The member's node id.
        name: String,
    },
    /// After every server was replaced by a new release: raise the
    /// cluster's feature level as far as every member's release can run,
    /// so the new release's changes may be used. Refused, naming them,
    /// while a member of an older release is left or does not answer.
    FinalizeUpgrade,
    /// Make the server asked (a standby) the active server. Needs votes from
    /// a majority of servers and witnesses.
    Promote {
        /// Promote without a majority: only when the active server is down
        /// for sure (two servers without a witness).
        #[arg(long)]
        force: bool,
    },
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// A server's workers on one line: `scheduler busy, queue-worker-0 idle…`.
fn workers(v: &Value) -> String {
    let list: Vec<String> = v["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{} {}", text(w, "name"), text(w, "state")))
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms ago"),
        Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
    }
}

fn last_sync(status: &Value) -> String {
    match status.get("last_sync") {
        Some(Value::Object(s)) => {
            let at = s.get("at").and_then(Value::as_i64).unwrap_or(0);
            let when = chrono::DateTime::from_timestamp_millis(at)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| at.to_string());
            format!(
                "{when} from {} ({})",
                s.get("from").and_then(Value::as_str).unwrap_or("?"),
                s.get("sync_id").and_then(Value::as_str).unwrap_or("?")
            )
        }
        _ => "never".into(),
    }
}

fn print_raft_status(v: &Value) {
    println!(
        "mode: active-active   term: {}   leader: {}   writable here: {}   feature level: {}",
        text(v, "term"),
        text(v, "leader"),
        text(v, "writable"),
        text(v, "feature_level")
    );
    println!(
        "{:<16} {:<22} {:<10} {:<7} {:<6} {:<9} {:<8} {:<6} VERSION",
        "NODE", "ADDRESS", "ROLE", "PRIMARY", "TERM", "LAST LOG", "APPLIED", "LAG"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<22} {:<10} {:<7} {:<6} {:<9} {:<8} {:<6} {}",
            text(m, "name"),
            text(m, "address"),
            text(m, "role"),
            text(m, "primary"),
            text(m, "term"),
            text(m, "last_log_index"),
            text(m, "applied_index"),
            text(m, "lag"),
            match m["supports_level"].as_u64() {
                Some(level) => format!("{} (up to level {level})", text(m, "version")),
                None => text(m, "version"),
            }
        );
        println!(
            "  {:<14} workers: {}; last contact: {}",
            "",
            workers(m),
            ago(m["last_contact_ms"].as_u64())
        );
        if let Some(e) = m["error"].as_str() {
            println!("  {}: {e}", text(m, "name"));
        }
    }
}

fn print_status(v: &Value) {
    if v["mode"] == "active-active" {
        return print_raft_status(v);
    }
    let this = &v["this"];
    println!("mode: {}", text(v, "mode"));
    println!(
        "{:<16} {:<8} {:<6} {:<6} {:<8} {:<22} LAST SYNC",
        "NODE", "ROLE", "READY", "EPOCH", "HEALTH", "LAST CONTACT"
    );
    println!(
        "{:<16} {:<8} {:<6} {:<6} {:<8} {:<22} {}",
        format!("{} *", text(this, "node")),
        text(this, "role"),
        text(this, "ready"),
        text(this, "epoch"),
        "alive",
        "(this server)",
        last_sync(this)
    );
    let mut notes = vec![
        format!("{} runs {}", text(this, "node"), text(this, "software")),
        format!("{} workers: {}", text(this, "node"), workers(this)),
    ];
    for p in v["peers"].as_array().into_iter().flatten() {
        let status = &p["status"];
        let known = status.is_object();
        println!(
            "{:<16} {:<8} {:<6} {:<6} {:<8} {:<22} {}",
            text(p, "id"),
            if known {
                text(status, "role")
            } else {
                "?".into()
            },
            if known {
                text(status, "ready")
            } else {
                "?".into()
            },
            if known {
                text(status, "epoch")
            } else {
                "?".into()
            },
            text(p, "health"),
            ago(p["last_contact_ms"].as_u64()),
            if known { last_sync(status) } else { "-".into() },
        );
        if known {
            notes.push(format!(
                "{} runs {}",
                text(p, "id"),
                text(status, "software")
            ));
            notes.push(format!("{} workers: {}", text(p, "id"), workers(status)));
        }
        if let Some(e) = p["error"].as_str() {
            notes.push(format!("{}: {e}", text(p, "id")));
        }
        let stale: Vec<&str> = p["out_of_date"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !stale.is_empty() {
            notes.push(format!(
                "{} is out of date: {}",
                text(p, "id"),
                stale.join(", ")
            ));
        } else if known && status["role"] == "standby" && this["role"] == "active" {
            notes.push(format!("{} is up to date", text(p, "id")));
        }
    }
    for n in notes {
        println!("  {n}");
    }
}

fn print_events(events: &[api::ClusterEvent]) {
    for e in events {
        println!(
            "{}  {:<10} {:<5} {:<8} {}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.node,
            e.severity,
            e.kind,
            e.message
        );
    }
}

/// Runs a `ferry cluster` command.
pub async fn cluster(args: AdminArgs, cmd: ClusterCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let done = match cmd {
        ClusterCmd::Status { json } => {
            return show(&admin, &api::GetClusterStatus {}, json, |status| {
                print_status(&serde_json::to_value(status).unwrap_or_default())
            })
            .await
        }
        ClusterCmd::Events { json, limit } => {
            let query = api::ClusterEventsQuery { limit: Some(limit) };
            return show(&admin, &api::ListClusterEvents { query }, json, |events| {
                print_events(events)
            })
            .await;
        }
        ClusterCmd::Init => admin.call(&api::InitCluster {}).await?,
        ClusterCmd::Join {
            address,
            join_token_file: token_file,
        } => {
            let token = std::fs::read_to_string(&token_file)
                .with_context(|| format!("cannot read {}", token_file.display()))?;
            let token = token
                .split_whitespace()
                .find(|w| w.starts_with("fyj_"))
                .map(str::to_owned)
                .unwrap_or_else(|| token.trim().to_owned());
            let body = api::Join {
                address,
                token: Secret::new(token),
            };
            admin.call(&api::JoinCluster { body }).await?
        }
        ClusterCmd::Leave => admin.call(&api::LeaveCluster {}).await?,
        ClusterCmd::FinalizeUpgrade => admin.call(&api::FinalizeUpgrade {}).await?,
        ClusterCmd::Remove { name } => {
            let body = api::RemoveMember { name };
            admin.call(&api::RemoveClusterMember { body }).await?
        }
        ClusterCmd::Promote { force } => {
            let body = api::Promote { force };
            admin.call(&api::PromoteServer { body }).await?
        }
    };
    println!("{}", done.message);
    Ok(())
}

/// `ferry server drain`: asks the server to stop gracefully, then waits
/// (at most `wait_secs`) until its admin API no longer answers.
pub async fn drain(args: AdminArgs, wait_secs: u64) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let started = admin.call(&api::DrainServer {}).await?;
    println!("{}", started.message);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    let probe = std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if admin.start(&api::Healthz {}, Some(probe)).await.is_err() {
            println!("The server has stopped (its admin API no longer answers).");
            return Ok(());
        }
    }
    bail!("the server still answers after {wait_secs} s; it may still be draining its transfers")
}

/// `ferry sync`: runs on the active server; prints progress on stderr and a
/// report per standby. Fails if any standby was not synced.
pub async fn sync(
    args: AdminArgs,
    to: Vec<String>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let request = api::RunSync {
        body: api::Sync { to, dry_run },
    };
    let mut resp = admin
        .start(&request, Some(std::time::Duration::from_secs(3600)))
        .await?;
    let mut pending = String::new();
    let mut result = None;
    while let Some(chunk) = resp.chunk().await.context("the sync's answer broke off")? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Ok(line) = serde_json::from_str::<api::SyncLine>(line.trim()) else {
                continue;
            };
            if let Some(p) = line.progress {
                eprintln!(
                    "{}: {} {}/{}",
                    text(&p, "target"),
                    text(&p, "what"),
                    text(&p, "done"),
                    text(&p, "total")
                );
            } else if let Some(e) = line.error {
                bail!("sync failed: {e}");
            } else if let Some(r) = line.result {
                result = Some(r);
            }
        }
    }
    let Some(result) = result else {
        bail!("the sync's answer ended without a result; check `ferry cluster status`");
    };
    if json {
        print_json(&result)?;
    }
    let mut failed = Vec::new();
    for target in &result {
        let node = text(target, "node");
        if let Some(e) = target["error"].as_str() {
            if !json {
                println!("{node}: NOT synced: {e}");
            }
            failed.push(node);
            continue;
        }
        if json {
            continue;
        }
        let report = &target["report"];
        let verb = if dry_run { "would change" } else { "changed" };
        println!(
            "{node}: {}{}",
            if dry_run {
                "dry run, nothing written"
            } else {
                "synced"
            },
            report["backup"]
                .as_str()
                .map(|b| format!(" (replaced data kept in {b})"))
                .unwrap_or_default()
        );
        for t in report["tables"].as_array().into_iter().flatten() {
            println!(
                "  table {:<16} {verb}: +{} added, ~{} changed, -{} removed ({} unchanged)",
                text(t, "table"),
                text(t, "added"),
                text(t, "changed"),
                text(t, "removed"),
                text(t, "unchanged")
            );
        }
        let files: Vec<&str> = report["files_changed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "  files {verb}: {} ({} unchanged)",
            if files.is_empty() {
                "none".to_owned()
            } else {
                files.join(", ")
            },
            text(report, "files_unchanged")
        );
    }
    if !failed.is_empty() {
        bail!("not synced: {} (each is unchanged)", failed.join(", "));
    }
    Ok(())
}
