//! `ferry retention …` and `ferry report …`, through the admin API.

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use ferry_api as api;

use crate::admin_client::{print_json, show, when, Admin, AdminArgs};
use crate::engine_client::parse_since;

/// `ferry retention …`
#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Set a policy (replacing the one of that name): remove what is older
    /// than an age.
    Set {
        /// Policy name.
        name: String,
        /// transfers (transfer-log rows), events (done and failed events
        /// with their attempts), attempts (of done and failed events),
        /// files (of one folder of a home) or partials (partial uploads and
        /// scratch files left behind).
        #[arg(long)]
        kind: String,
        /// The age: a number and s, m, h or d (30d, 12h, 90s).
        #[arg(long)]
        older_than: String,
        /// files: the account whose home holds the folder; partials: only
        /// this account's home (default: the whole repository).
        #[arg(long)]
        account: Option<String>,
        /// files: the folder of the home (e.g. /outbox).
        #[arg(long)]
        folder: Option<String>,
        /// files: delete, or archive:DIR (a folder of the same home).
        #[arg(long)]
        action: Option<String>,
    },
    /// List the policies.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a policy.
    Remove {
        /// Policy name.
        name: String,
    },
    /// Run the policies now (the primary also runs them every
    /// `[engine] retention_interval_secs`).
    Run {
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ferry report …`
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Transfers per period and group: counts, failures (failed or
    /// interrupted) and bytes, from the transfer log.
    Transfers {
        /// Group by account, partner or route.
        #[arg(long, value_enum, default_value_t = By::Account)]
        by: By,
        /// Periods of a day or an hour (UTC).
        #[arg(long, value_enum, default_value_t = Per::Day)]
        per: Per,
        /// From: RFC 3339 or an age (12h, 7d; default 7d).
        #[arg(long)]
        since: Option<String>,
        /// Until: RFC 3339 or an age (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Print the API's JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV: period,group,transfers,completed,failures,bytes.
        #[arg(long)]
        csv: bool,
    },
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    /// The account.
    Account,
    /// The partner pushed to or pulled from.
    Partner,
    /// The route whose event made the transfer.
    Route,
}

/// A report's periods.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Per {
    /// Days (UTC).
    Day,
    /// Hours.
    Hour,
}

/// Runs a retention command.
pub async fn retention(args: AdminArgs, cmd: RetentionCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        RetentionCmd::Set {
            name,
            kind,
            older_than,
            account,
            folder,
            action,
        } => {
            let body = api::NewRetentionPolicy {
                name,
                kind,
                older_than,
                account,
                folder,
                action,
            };
            let p = admin.call(&api::SetRetentionPolicy { body }).await?;
            println!(
                "Retention policy {} set: {} older than {}.",
                p.name,
                what(&p),
                p.older_than
            );
        }
        RetentionCmd::List { json } => {
            show(&admin, &api::ListRetentionPolicies {}, json, |policies| {
                println!("{:<20} {:<10} {:>10}  WHAT", "NAME", "KIND", "OLDER THAN");
                for p in policies {
                    println!(
                        "{:<20} {:<10} {:>10}  {}",
                        p.name,
                        p.kind,
                        p.older_than,
                        what(p)
                    );
                }
            })
            .await?;
        }
        RetentionCmd::Remove { name } => {
            admin
                .call(&api::RemoveRetentionPolicy { name: name.clone() })
                .await?;
            println!("Retention policy {name} removed.");
        }
        RetentionCmd::Run { dry_run, json } => {
            let body = api::RetentionRun { dry_run };
            show(&admin, &api::RunRetention { body }, json, |report| {
                let verb = if report.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                for r in &report.results {
                    println!(
                        "{} ({}, before {}): {verb} {}{}",
                        r.policy,
                        r.kind,
                        when(&r.before),
                        r.removed,
                        r.error
                            .as_deref()
                            .map(|e| format!("; stopped: {e}"))
                            .unwrap_or_default()
                    );
                    for item in &r.items {
                        println!("  {item}");
                    }
                }
                if report.results.is_empty() {
                    println!("No retention policies.");
                }
            })
            .await?;
        }
    }
    Ok(())
}

/// What a policy removes, for people.
fn what(p: &api::RetentionPolicy) -> String {
    match p.kind.as_str() {
        "files" => format!(
            "files in {}:{} ({})",
            p.account.as_deref().unwrap_or_default(),
            p.folder.as_deref().unwrap_or_default(),
            p.action.as_deref().unwrap_or_default()
        ),
        "partials" => match &p.account {
            Some(a) => format!("partial uploads in {a}'s home"),
            None => "partial uploads in the repository".to_owned(),
        },
        "transfers" => "transfer-log rows".to_owned(),
        "events" => "done and failed events".to_owned(),
        "attempts" => "attempts of done and failed events".to_owned(),
        other => other.to_owned(),
    }
}

/// Runs a report command.
pub async fn report(args: AdminArgs, cmd: ReportCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let ReportCmd::Transfers {
        by,
        per,
        since,
        until,
        json,
        csv,
    } = cmd;
    let query = api::ReportQuery {
        by: Some(by.to_possible_value_name()),
        per: Some(per.to_possible_value_name()),
        since: Some(parse_since(since.as_deref().unwrap_or("7d"))?),
        until: until.as_deref().map(parse_since).transpose()?,
    };
    let report = admin.call(&api::ReportTransfers { query }).await?;
    if json {
        return print_json(&report);
    }
    let period = |t: &api::Time| match per {
        Per::Day => t.format("%Y-%m-%d").to_string(),
        Per::Hour => t.format("%Y-%m-%d %H:00").to_string(),
    };
    if csv {
        let mut out = csv::Writer::from_writer(std::io::stdout().lock());
        out.write_record([
            "period",
            "group",
            "transfers",
            "completed",
            "failures",
            "bytes",
        ])?;
        for l in &report.lines {
            out.write_record([
                l.period.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                l.group.clone(),
                l.transfers.to_string(),
                l.completed.to_string(),
                l.failures.to_string(),
                l.bytes.to_string(),
            ])?;
        }
        out.flush().context("cannot write the CSV")?;
        return Ok(());
    }
    println!(
        "Transfers by {} per {}, {} to {} (UTC)",
        report.by,
        report.per,
        when(&report.since),
        when(&report.until)
    );
    println!(
        "{:<16} {:<20} {:>9} {:>9} {:>8} {:>14}",
        "PERIOD",
        report.by.to_uppercase(),
        "TRANSFERS",
        "COMPLETED",
        "FAILURES",
        "BYTES"
    );
    for l in &report.lines {
        let group = if l.group.is_empty() { "-" } else { &l.group };
        println!(
            "{:<16} {:<20} {:>9} {:>9} {:>8} {:>14}",
            period(&l.period),
            group,
            l.transfers,
            l.completed,
            l.failures,
            l.bytes
        );
    }
    let (n, failures, bytes) = report.lines.iter().fold((0, 0, 0), |(n, f, b), l| {
        (n + l.transfers, f + l.failures, b + l.bytes)
    });
    println!("{n} transfers, {failures} failures, {bytes} bytes.");
    Ok(())
}

/// The name clap parses a [`ValueEnum`] value from.
trait ValueName {
    fn to_possible_value_name(&self) -> String;
}

impl<T: ValueEnum> ValueName for T {
    fn to_possible_value_name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}
