//! Operator commands of the transfer engine: `ferry partner|route|schedule|
//! monitor|event …` and `ferry transfer show`, through the admin API.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use ferry_api as api;
use ferry_core::Secret;

use crate::admin_client::{read_password, show, when, Admin, AdminArgs, ListFilter};

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
        /// SSH port (default 22).
        #[arg(long)]
        port: Option<u16>,
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
        /// Remote directory for pushes and pulls (default: `.`, the login directory).
        #[arg(long)]
        remote_dir: Option<String>,
        /// After a pull: keep (default), delete, or move:REMOTE_DIR.
        #[arg(long)]
        after_pull: Option<String>,
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
        /// Attempts before the event is failed (default 5).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Delay before the first retry in ms, doubled for each further one
        /// (default 30000).
        #[arg(long)]
        retry_base_ms: Option<u64>,
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
        /// IANA time zone the expression is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// pull:PARTNER[:REMOTE_GLOB]:ACCOUNT[/DIR] or push:PARTNER[:REMOTE_DIR]:ACCOUNT[/DIR].
        #[arg(long)]
        action: String,
        /// Slots missed while no node was primary do not fire on takeover.
        #[arg(long)]
        no_catch_up: bool,
        /// Attempts before a firing's event is failed (default 5).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Delay before the first retry in ms, doubled for each further one
        /// (default 30000).
        #[arg(long)]
        retry_base_ms: Option<u64>,
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
        /// Glob of file names to ingest (default `*`).
        #[arg(long = "match")]
        pattern: Option<String>,
        /// The account the files go to.
        #[arg(long)]
        account: String,
        /// Directory in the account's home (default `/`).
        #[arg(long)]
        target_dir: Option<String>,
        /// A file is ingested once its size and mtime stayed the same this
        /// long, in ms (default 5000).
        #[arg(long)]
        stable_ms: Option<u64>,
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

/// The time of `--since`: an RFC 3339 time, or an age (`90s`, `30m`, `12h`, `7d`).
pub fn parse_since(text: &str) -> anyhow::Result<api::Time> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 =
        number.parse().ok().filter(|n| *n >= 0).with_context(|| {
            format!("--since {text:?}: use RFC 3339 or an age like 30m, 12h, 7d")
        })?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--since {text:?}: the unit must be s, m, h or d"),
    };
    let age = chrono::TimeDelta::try_seconds(n.saturating_mul(secs))
        .with_context(|| format!("--since {text:?}: too long ago"))?;
    Ok(chrono::Utc::now() - age)
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
            let password = read_password(password_stdin, password_file)?.map(Secret::new);
            let private_key = key_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))
                })
                .transpose()?
                .map(Secret::new);
            if password.is_none() && private_key.is_none() {
                bail!("give --password-stdin, --password-file or --key-file");
            }
            let body = api::NewPartner {
                name,
                host,
                port,
                username: user,
                password,
                private_key,
                host_key,
                remote_dir,
                after_pull,
                rate_limit: rate_limit_kib.map(|k| k.saturating_mul(1024)),
            };
            let p = admin.call(&api::AddPartner { body }).await?;
            println!(
                "Partner {} added ({}@{}:{}, host key {}).",
                p.name, p.username, p.host, p.port, p.host_key_fingerprint
            );
        }
        PartnerCmd::List { json } => {
            show(&admin, &api::ListPartners {}, json, |partners| {
                println!(
                    "{:<16} {:<28} {:<12} {:<8} {:<20} HOST KEY",
                    "NAME", "ADDRESS", "USER", "AUTH", "REMOTE DIR"
                );
                for p in partners {
                    println!(
                        "{:<16} {:<28} {:<12} {:<8} {:<20} {}",
                        p.name,
                        format!("{}:{}", p.host, p.port),
                        p.username,
                        p.auth,
                        p.remote_dir,
                        p.host_key_fingerprint
                    );
                }
            })
            .await?;
        }
        PartnerCmd::Remove { name } => {
            admin
                .call(&api::RemovePartner { name: name.clone() })
                .await?;
            println!("Partner {name} removed.");
        }
        PartnerCmd::Test { name } => {
            let t = admin.call(&api::TestPartner { name }).await?;
            println!(
                "Partner {}: connected, host key {} verified, {} entries in {}:",
                t.partner,
                t.host_key_fingerprint,
                t.entries.len(),
                t.remote_dir
            );
            for e in &t.entries {
                println!("  {e}");
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
            let body = api::NewRoute {
                name,
                account,
                pattern,
                actions,
                max_attempts,
                retry_base_ms,
            };
            let r = admin.call(&api::AddRoute { body }).await?;
            println!(
                "Route {} added: {}/{} → {}.",
                r.name,
                r.account,
                r.pattern,
                actions_text(&r.actions)
            );
        }
        RouteCmd::List { json } => {
            show(&admin, &api::ListRoutes {}, json, |routes| {
                println!("{:<16} {:<12} {:<16} ACTIONS", "NAME", "ACCOUNT", "MATCH");
                for r in routes {
                    println!(
                        "{:<16} {:<12} {:<16} {}",
                        r.name,
                        r.account,
                        r.pattern,
                        actions_text(&r.actions)
                    );
                }
            })
            .await?;
        }
        RouteCmd::Remove { name } => {
            admin.call(&api::RemoveRoute { name: name.clone() }).await?;
            println!("Route {name} removed.");
        }
    }
    Ok(())
}

fn actions_text(actions: &[ferry_core::Action]) -> String {
    let texts: Vec<String> = actions.iter().map(ToString::to_string).collect();
    texts.join(" → ")
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
            let body = api::NewSchedule {
                name,
                cron,
                timezone,
                action,
                catch_up: no_catch_up.then_some(false),
                max_attempts,
                retry_base_ms,
            };
            let s = admin.call(&api::AddSchedule { body }).await?;
            println!(
                "Schedule {} added: {} ({}) → {}.",
                s.name, s.cron, s.timezone, s.action
            );
        }
        ScheduleCmd::List { json } => {
            show(&admin, &api::ListSchedules {}, json, |schedules| {
                println!(
                    "{:<16} {:<20} {:<16} {:<9} {:<20} ACTION",
                    "NAME", "CRON", "TIME ZONE", "CATCH-UP", "NEXT SLOT"
                );
                for s in schedules {
                    let next = s.next_slots.first().map(when).unwrap_or_default();
                    println!(
                        "{:<16} {:<20} {:<16} {:<9} {:<20} {}",
                        s.name, s.cron, s.timezone, s.catch_up, next, s.action
                    );
                }
            })
            .await?;
        }
        ScheduleCmd::Remove { name } => {
            admin
                .call(&api::RemoveSchedule { name: name.clone() })
                .await?;
            println!("Schedule {name} removed.");
        }
        ScheduleCmd::Firings { name, json } => {
            show(&admin, &api::ListFirings { name }, json, |firings| {
                println!("{:<20} {:<20} {:<12} EVENT", "SLOT", "FIRED", "NODE");
                for f in firings {
                    println!(
                        "{:<20} {:<20} {:<12} {}",
                        when(&f.slot),
                        when(&f.fired_at),
                        f.node,
                        f.event_id
                    );
                }
            })
            .await?;
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
            let body = api::NewMonitor {
                name,
                dir,
                pattern,
                account,
                target_dir,
                stable_ms,
            };
            let m = admin.call(&api::AddMonitor { body }).await?;
            println!(
                "Monitor {} added: {}/{} → {}:{}.",
                m.name, m.dir, m.pattern, m.account, m.target_dir
            );
        }
        MonitorCmd::List { json } => {
            show(&admin, &api::ListMonitors {}, json, |monitors| {
                println!(
                    "{:<16} {:<32} {:<12} {:<12} TARGET",
                    "NAME", "DIR", "MATCH", "ACCOUNT"
                );
                for m in monitors {
                    println!(
                        "{:<16} {:<32} {:<12} {:<12} {}",
                        m.name, m.dir, m.pattern, m.account, m.target_dir
                    );
                }
            })
            .await?;
        }
        MonitorCmd::Remove { name } => {
            admin
                .call(&api::RemoveMonitor { name: name.clone() })
                .await?;
            println!("Monitor {name} removed.");
        }
    }
    Ok(())
}

fn event_line(e: &api::Event) -> String {
    let what = match (&e.route, &e.schedule) {
        (Some(r), _) => format!("route {r}"),
        (_, Some(sch)) => format!("schedule {sch}"),
        _ => "-".into(),
    };
    format!(
        "{:<36} {:<20} {:<9} {:<8} {:>3}/{:<3} {:<20} {}",
        e.id,
        when(&e.created_at),
        e.kind.as_str(),
        e.status.as_str(),
        e.attempts,
        e.max_attempts,
        what,
        e.current_path
            .as_deref()
            .or(e.path.as_deref())
            .unwrap_or("")
    )
}

fn print_attempts(e: &api::EventDetail) {
    for a in &e.attempt_log {
        println!(
            "    attempt {} on {} at {}: {}{}",
            a.attempt,
            a.node,
            when(&a.started_at),
            a.outcome.as_deref().unwrap_or("running"),
            a.error
                .as_deref()
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
            let request = api::ListEvents {
                query: filter.query()?,
            };
            show(&admin, &request, filter.json, |events| {
                println!(
                    "{:<36} {:<20} {:<9} {:<8} {:>7} {:<20} FILE",
                    "ID", "CREATED", "KIND", "STATUS", "TRIES", "FOR"
                );
                for e in events {
                    println!("{}", event_line(e));
                    if let Some(err) = &e.last_error {
                        println!("    last error: {err}");
                    }
                }
            })
            .await?;
        }
        EventCmd::Show { id, json } => {
            show(&admin, &api::ShowEvent { id }, json, |e| {
                println!("{}", event_line(&e.event));
                print_attempts(e);
            })
            .await?;
        }
        EventCmd::Resubmit { id } => {
            let e = admin.call(&api::ResubmitEvent { id: id.clone() }).await?;
            println!("Event {id} resubmitted as {}.", e.id);
        }
    }
    Ok(())
}

/// `ferry transfer show ID`.
pub async fn show_transfer(admin: &Admin, id: String, json: bool) -> anyhow::Result<()> {
    show(admin, &api::ShowTransfer { id }, json, |v| {
        let t = &v.transfer;
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!("Transfer {}", t.id);
        println!("  account:   {}", t.account);
        println!("  what:      {} {} {}", t.protocol, t.direction, t.path);
        if let Some(p) = &t.partner {
            println!("  partner:   {p}");
        }
        println!("  status:    {}", t.status);
        println!("  bytes:     {}", t.bytes);
        println!("  sha256:    {}", or_dash(&t.sha256));
        println!(
            "  time:      {} → {}",
            when(&t.started_at),
            when(&t.ended_at)
        );
        println!("  node:      {}  client: {}", t.node, t.client_addr);
        if let Some(err) = &t.error {
            println!("  error:     {err}");
        }
        if v.events.is_empty() {
            println!("  no events");
        }
        for e in &v.events {
            println!("  event {}", event_line(&e.event));
            print_attempts(e);
        }
    })
    .await
}
