//! Operator commands of the transfer engine: `ferry partner|route|schedule|
//! monitor|event …` and `ferry transfer show`, through the admin API.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin_client::{chrono_like, enc, read_password, Admin, AdminArgs, ListFilter};

/// `ferry partner …`
// Parsed once per run; the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PartnerCmd {
    /// Add a partner SFTP server.
    Add {
        /// Partner name.
        name: String,
        /// Host name or address.
        #[arg(long)]
        host: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// User name on the partner's server.
        #[arg(long)]
        user: String,
        /// Read the password (or the key's passphrase) from standard input.
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read the password (or the key's passphrase) from a file.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// OpenSSH private key file to log in with.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The partner's host key: a known_hosts line, a .pub line, or
        /// `TYPE BASE64`. Any other key is refused.
        #[arg(long, conflicts_with = "host_key_file")]
        host_key: Option<String>,
        /// File holding the host key (known_hosts or .pub format, first key).
        #[arg(long)]
        host_key_file: Option<PathBuf>,
        /// Remote directory for pushes and pulls.
        #[arg(long, default_value = ".")]
        remote_dir: String,
        /// After a pull: keep, delete, or move:REMOTE_DIR.
        #[arg(long, default_value = "keep")]
        after_pull: String,
        /// Limit transfers with this partner to this many KiB/s.
        #[arg(long)]
        rate_limit_kib: Option<u64>,
    },
    /// List partners (never their credentials).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a partner (refused while a route or schedule uses it).
    Remove {
        /// Partner name.
        name: String,
    },
    /// Connect to the partner (checking its host key) and list its remote directory.
    Test {
        /// Partner name.
        name: String,
    },
}

/// `ferry route …`
#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Add a route: files arriving for ACCOUNT that match GLOB run the actions in order.
    Add {
        /// Route name.
        name: String,
        /// The account whose arriving files are matched.
        #[arg(long)]
        account: String,
        /// Glob matched against the file name (or, with a '/', the path in the home).
        #[arg(long = "match")]
        pattern: String,
        /// push:PARTNER[:REMOTE_DIR], copy:ACCOUNT[/DIR], archive:DIR or
        /// rename:PATTERN ({name} {stem} {ext} {date} {time} {yyyy} {mm} {dd});
        /// repeat to chain.
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// Attempts before the event is failed.
        #[arg(long, default_value_t = 5)]
        max_attempts: u32,
        /// Delay before the first retry in ms, doubled for each further one.
        #[arg(long, default_value_t = 30_000)]
        retry_base_ms: u64,
    },
    /// List routes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a route.
    Remove {
        /// Route name.
        name: String,
    },
}

/// `ferry schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Add a schedule.
    Add {
        /// Schedule name.
        name: String,
        /// Cron expression: 5 fields (min hour day month weekday) or 6-7 with seconds first.
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// pull:PARTNER[:REMOTE_GLOB]:ACCOUNT[/DIR] or push:PARTNER[:REMOTE_DIR]:ACCOUNT[/DIR].
        #[arg(long)]
        action: String,
        /// Slots missed while no node was primary do not fire on takeover.
        #[arg(long)]
        no_catch_up: bool,
        /// Attempts before a firing's event is failed.
        #[arg(long, default_value_t = 5)]
        max_attempts: u32,
        /// Delay before the first retry in ms, doubled for each further one.
        #[arg(long, default_value_t = 30_000)]
        retry_base_ms: u64,
    },
    /// List schedules.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule.
    Remove {
        /// Schedule name.
        name: String,
    },
    /// Show a schedule's firings, newest first.
    Firings {
        /// Schedule name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ferry monitor …`
#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Watch a directory on the server and ingest stable files into an account.
    Add {
        /// Monitor name.
        name: String,
        /// Absolute directory on the server.
        #[arg(long)]
        dir: String,
        /// Glob of file names to ingest.
        #[arg(long = "match", default_value = "*")]
        pattern: String,
        /// The account the files go to.
        #[arg(long)]
        account: String,
        /// Directory in the account's home.
        #[arg(long, default_value = "/")]
        target_dir: String,
        /// A file is ingested once its size and mtime stayed the same this long (ms).
        #[arg(long, default_value_t = 5_000)]
        stable_ms: u64,
    },
    /// List folder monitors.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a folder monitor.
    Remove {
        /// Monitor name.
        name: String,
    },
}

/// `ferry event …`
#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// List events, newest first.
    List(#[command(flatten)] ListFilter),
    /// Show one event with every attempt.
    Show {
        /// Event id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a done or failed event again, as a new event.
    Resubmit {
        /// Event id.
        id: String,
    },
}

/// Unix ms for `--since`: an RFC 3339 time, or an age (`90s`, `30m`, `12h`, `7d`).
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 =
        number.parse().ok().filter(|n| *n >= 0).with_context(|| {
            format!("--since {text:?}: use RFC 3339 or an age like 30m, 12h, 7d")
        })?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--since {text:?}: the unit must be s, m, h or d"),
    };
    Ok(chrono::Utc::now().timestamp_millis() - n.saturating_mul(ms))
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// Runs a partner command.
pub async fn partner(args: AdminArgs, cmd: PartnerCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        PartnerCmd::Add {
            name,
            host,
            port,
            user,
            password_stdin,
            password_file,
            key_file,
            host_key,
            host_key_file,
            remote_dir,
            after_pull,
            rate_limit_kib,
        } => {
            let host_key = match (host_key, host_key_file) {
                (Some(k), _) => k,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?
                    .lines()
                    .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .unwrap_or_default()
                    .to_owned(),
                (None, None) => bail!(
                    "give the partner's host key with --host-key or --host-key-file (e.g. from ssh-keyscan, checked with the partner)"
                ),
            };
            let password = read_password(password_stdin, password_file)?;
            let private_key = key_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))
                })
                .transpose()?;
            if password.is_none() && private_key.is_none() {
                bail!("give --password-stdin, --password-file or --key-file");
            }
            let body = json!({
                "name": name, "host": host, "port": port, "username": user,
                "password": password, "private_key": private_key, "host_key": host_key,
                "remote_dir": remote_dir, "after_pull": after_pull,
                "rate_limit": rate_limit_kib.map(|k| k * 1024),
            });
            let v = admin
                .send(Method::POST, "/api/v1/partners", Some(body))
                .await?;
            println!(
                "Partner {} added ({}@{}:{}, host key {}).",
                s(&v, "name"),
                s(&v, "username"),
                s(&v, "host"),
                v["port"],
                s(&v, "host_key_fingerprint")
            );
        }
        PartnerCmd::List { json } => {
            let v = admin.send(Method::GET, "/api/v1/partners", None).await?;
            if json {
                return print_json(&v);
            }
            println!(
                "{:<16} {:<28} {:<12} {:<8} {:<20} HOST KEY",
                "NAME", "ADDRESS", "USER", "AUTH", "REMOTE DIR"
            );
            for p in v.as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<28} {:<12} {:<8} {:<20} {}",
                    s(p, "name"),
                    format!("{}:{}", s(p, "host"), p["port"]),
                    s(p, "username"),
                    s(p, "auth"),
                    s(p, "remote_dir"),
                    s(p, "host_key_fingerprint")
                );
            }
        }
        PartnerCmd::Remove { name } => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/partners/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("Partner {name} removed.");
        }
        PartnerCmd::Test { name } => {
            let v = admin
                .send(
                    Method::POST,
                    &format!("/api/v1/partners/{}/test", enc(&name)),
                    None,
                )
                .await?;
            println!(
                "Partner {name}: connected, host key {} verified, {} entries in {}:",
                s(&v, "host_key_fingerprint"),
                v["entries"].as_array().map_or(0, Vec::len),
                s(&v, "remote_dir")
            );
            for e in v["entries"].as_array().into_iter().flatten() {
                println!("  {}", e.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// Runs a route command.
pub async fn route(args: AdminArgs, cmd: RouteCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        RouteCmd::Add {
            name,
            account,
            pattern,
            actions,
            max_attempts,
            retry_base_ms,
        } => {
            let body = json!({
                "name": name, "account": account, "match": pattern, "actions": actions,
                "max_attempts": max_attempts, "retry_base_ms": retry_base_ms,
            });
            admin
                .send(Method::POST, "/api/v1/routes", Some(body))
                .await?;
            println!(
                "Route {name} added: {account}/{pattern} → {}.",
                actions.join(" → ")
            );
        }
        RouteCmd::List { json } => {
            let v = admin.send(Method::GET, "/api/v1/routes", None).await?;
            if json {
                return print_json(&v);
            }
            println!("{:<16} {:<12} {:<16} ACTIONS", "NAME", "ACCOUNT", "MATCH");
            for r in v.as_array().into_iter().flatten() {
                let actions: Vec<String> = r["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Value::to_string)
                    .collect();
                println!(
                    "{:<16} {:<12} {:<16} {}",
                    s(r, "name"),
                    s(r, "account"),
                    s(r, "pattern"),
                    actions.join(" → ")
                );
            }
        }
        RouteCmd::Remove { name } => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/routes/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("Route {name} removed.");
        }
    }
    Ok(())
}

/// Runs a schedule command.
pub async fn schedule(args: AdminArgs, cmd: ScheduleCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        ScheduleCmd::Add {
            name,
            cron,
            timezone,
            action,
            no_catch_up,
            max_attempts,
            retry_base_ms,
        } => {
            let body = json!({
                "name": name, "cron": cron, "timezone": timezone, "action": action,
                "catch_up": !no_catch_up, "max_attempts": max_attempts,
                "retry_base_ms": retry_base_ms,
            });
            admin
                .send(Method::POST, "/api/v1/schedules", Some(body))
                .await?;
            println!("Schedule {name} added: {cron} ({timezone}) → {action}.");
        }
        ScheduleCmd::List { json } => {
            let v = admin.send(Method::GET, "/api/v1/schedules", None).await?;
            if json {
                return print_json(&v);
            }
            println!(
                "{:<16} {:<20} {:<16} {:<9} ACTION",
                "NAME", "CRON", "TIME ZONE", "CATCH-UP"
            );
            for r in v.as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<20} {:<16} {:<9} {}",
                    s(r, "name"),
                    s(r, "cron"),
                    s(r, "timezone"),
                    r["catch_up"],
                    r["action"]
                );
            }
        }
        ScheduleCmd::Remove { name } => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/schedules/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("Schedule {name} removed.");
        }
        ScheduleCmd::Firings { name, json } => {
            let v = admin
                .send(
                    Method::GET,
                    &format!("/api/v1/schedules/{}/firings", enc(&name)),
                    None,
                )
                .await?;
            if json {
                return print_json(&v);
            }
            println!("{:<20} {:<20} {:<12} EVENT", "SLOT", "FIRED", "NODE");
            for f in v.as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<20} {:<12} {}",
                    chrono_like(f["slot"].as_i64().unwrap_or_default()),
                    chrono_like(f["fired_at"].as_i64().unwrap_or_default()),
                    s(f, "node"),
                    s(f, "event_id")
                );
            }
        }
    }
    Ok(())
}

/// Runs a monitor command.
pub async fn monitor(args: AdminArgs, cmd: MonitorCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        MonitorCmd::Add {
            name,
            dir,
            pattern,
            account,
            target_dir,
            stable_ms,
        } => {
            let body = json!({
                "name": name, "dir": dir, "match": pattern, "account": account,
                "target_dir": target_dir, "stable_ms": stable_ms,
            });
            admin
                .send(Method::POST, "/api/v1/monitors", Some(body))
                .await?;
            println!("Monitor {name} added: {dir}/{pattern} → {account}:{target_dir}.");
        }
        MonitorCmd::List { json } => {
            let v = admin.send(Method::GET, "/api/v1/monitors", None).await?;
            if json {
                return print_json(&v);
            }
            println!(
                "{:<16} {:<32} {:<12} {:<12} TARGET",
                "NAME", "DIR", "MATCH", "ACCOUNT"
            );
            for m in v.as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<32} {:<12} {:<12} {}",
                    s(m, "name"),
                    s(m, "dir"),
                    s(m, "pattern"),
                    s(m, "account"),
                    s(m, "target_dir")
                );
            }
        }
        MonitorCmd::Remove { name } => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/monitors/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("Monitor {name} removed.");
        }
    }
    Ok(())
}

fn event_line(e: &Value) -> String {
    let what = match (e["route"].as_str(), e["schedule"].as_str()) {
        (Some(r), _) => format!("route {r}"),
        (_, Some(sch)) => format!("schedule {sch}"),
        _ => "-".into(),
    };
    format!(
        "{:<36} {:<20} {:<9} {:<8} {:>3}/{:<3} {:<20} {}",
        s(e, "id"),
        chrono_like(e["created_at"].as_i64().unwrap_or_default()),
        s(e, "kind"),
        s(e, "status"),
        e["attempts"],
        e["max_attempts"],
        what,
        e["current_path"]
            .as_str()
            .or(e["path"].as_str())
            .unwrap_or("")
    )
}

fn print_attempts(e: &Value) {
    for a in e["attempt_log"].as_array().into_iter().flatten() {
        println!(
            "    attempt {} on {} at {}: {}{}",
            a["attempt"],
            s(a, "node"),
            chrono_like(a["started_at"].as_i64().unwrap_or_default()),
            a["outcome"].as_str().unwrap_or("running"),
            a["error"]
                .as_str()
                .map(|err| format!(" — {err}"))
                .unwrap_or_default()
        );
    }
}

/// Runs an event command.
pub async fn event(args: AdminArgs, cmd: EventCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        EventCmd::List(filter) => {
            let query = filter.query()?;
            let v = admin
                .send(Method::GET, &format!("/api/v1/events{query}"), None)
                .await?;
            if filter.json {
                return print_json(&v);
            }
            println!(
                "{:<36} {:<20} {:<9} {:<8} {:>7} {:<20} FILE",
                "ID", "CREATED", "KIND", "STATUS", "TRIES", "FOR"
            );
            for e in v.as_array().into_iter().flatten() {
                println!("{}", event_line(e));
                if let Some(err) = e["last_error"].as_str() {
                    println!("    last error: {err}");
                }
            }
        }
        EventCmd::Show { id, json } => {
            let v = admin
                .send(Method::GET, &format!("/api/v1/events/{}", enc(&id)), None)
                .await?;
            if json {
                return print_json(&v);
            }
            println!("{}", event_line(&v));
            print_attempts(&v);
        }
        EventCmd::Resubmit { id } => {
            let v = admin
                .send(
                    Method::POST,
                    &format!("/api/v1/events/{}/resubmit", enc(&id)),
                    None,
                )
                .await?;
            println!("Event {id} resubmitted as {}.", s(&v, "id"));
        }
    }
    Ok(())
}

/// `ferry transfer show ID`.
pub async fn show_transfer(admin: &Admin, id: &str, json: bool) -> anyhow::Result<()> {
    let v = admin
        .send(Method::GET, &format!("/api/v1/transfers/{}", enc(id)), None)
        .await?;
    if json {
        return print_json(&v);
    }
    let t = &v["transfer"];
    println!("Transfer {}", s(t, "id"));
    println!("  account:   {}", s(t, "account"));
    println!(
        "  what:      {} {} {}",
        s(t, "protocol"),
        s(t, "direction"),
        s(t, "path")
    );
    if let Some(p) = t["partner"].as_str() {
        println!("  partner:   {p}");
    }
    println!("  status:    {}", s(t, "status"));
    println!("  bytes:     {}", t["bytes"]);
    println!("  sha256:    {}", s(t, "sha256"));
    println!(
        "  time:      {} → {}",
        chrono_like(t["started_at"].as_i64().unwrap_or_default()),
        chrono_like(t["ended_at"].as_i64().unwrap_or_default())
    );
    println!(
        "  node:      {}  client: {}",
        s(t, "node"),
        s(t, "client_addr")
    );
    if let Some(err) = t["error"].as_str() {
        println!("  error:     {err}");
    }
    let events = v["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        println!("  no events");
    }
    for e in &events {
        println!("  event {}", event_line(e));
        print_attempts(e);
    }
    Ok(())
}
