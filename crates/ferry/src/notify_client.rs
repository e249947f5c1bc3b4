//! `ferry notify endpoint|rule …`: where notifications go and when they
//! are sent, through the admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ferry_api as api;
use ferry_core::Secret;

use crate::admin_client::{read_password, show, Admin, AdminArgs};

/// `ferry notify …`
#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Manage endpoints: webhooks and mail.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCmd,
    },
    /// Manage rules: which happenings notify which endpoint.
    Rule {
        #[command(subcommand)]
        command: RuleCmd,
    },
}

/// `ferry notify endpoint …`
// Parsed once per run; the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Add an endpoint: `--webhook URL`, or `--smtp HOST --from A --to B`.
    Add {
        /// Endpoint name.
        name: String,
        /// A webhook URL that receives each notification as a signed JSON POST.
        #[arg(long, conflicts_with = "smtp")]
        webhook: Option<String>,
        /// Read the webhook's HMAC key from a file (default: Ferry makes one
        /// and prints it once).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// An SMTP server that mails each notification.
        #[arg(long)]
        smtp: Option<String>,
        /// SMTP port (default 587, 465 with --tls tls, 25 with --tls none).
        #[arg(long)]
        port: Option<u16>,
        /// starttls (default; required), tls (from the first byte) or none.
        #[arg(long)]
        tls: Option<String>,
        /// User name for SMTP AUTH.
        #[arg(long)]
        user: Option<String>,
        /// Read the SMTP password from standard input.
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read the SMTP password from a file.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The sender address.
        #[arg(long)]
        from: Option<String>,
        /// A recipient (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// PEM file of certificates to trust for this endpoint's TLS (a
        /// private CA), besides the system's.
        #[arg(long)]
        tls_ca_file: Option<PathBuf>,
        /// Base URL of this server's admin API, for links to events.
        #[arg(long)]
        link_base: Option<String>,
        /// Attempts before a notification is given up (default 8).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Seconds before the second attempt, doubled for each further one (default 10).
        #[arg(long)]
        retry_base_secs: Option<u64>,
    },
    /// List endpoints (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint (refused while a rule uses it).
    Remove {
        /// Endpoint name.
        name: String,
    },
    /// Queue a test notification to the endpoint.
    Test {
        /// Endpoint name.
        name: String,
    },
}

/// `ferry notify rule …`
#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Add a rule: on TRIGGER (optionally only for an account, route or
    /// partner), notify ENDPOINT.
    Add {
        /// Rule name.
        name: String,
        /// event-failed, event-retrying:N, transfer-done, login-ban,
        /// role-change or quota:PERCENT.
        #[arg(long)]
        on: String,
        /// The endpoint notified.
        #[arg(long)]
        to: String,
        /// Only about this account.
        #[arg(long)]
        account: Option<String>,
        /// Only about this route.
        #[arg(long)]
        route: Option<String>,
        /// Only about this partner.
        #[arg(long)]
        partner: Option<String>,
    },
    /// List rules.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule.
    Remove {
        /// Rule name.
        name: String,
    },
}

fn read_file(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs a notify command.
pub async fn notify(args: AdminArgs, cmd: NotifyCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        NotifyCmd::Endpoint { command } => endpoint(&admin, command).await,
        NotifyCmd::Rule { command } => rule(&admin, command).await,
    }
}

async fn endpoint(admin: &Admin, cmd: EndpointCmd) -> anyhow::Result<()> {
    match cmd {
        EndpointCmd::Add {
            name,
            webhook,
            secret_file,
            smtp,
            port,
            tls,
            user,
            password_stdin,
            password_file,
            from,
            to,
            tls_ca_file,
            link_base,
            max_attempts,
            retry_base_secs,
        } => {
            let secret = match secret_file {
                Some(f) => Some(read_file(&f)?.trim().to_owned()),
                None => read_password(password_stdin, password_file)?,
            };
            let body = api::NewNotifyEndpoint {
                name,
                webhook_url: webhook,
                smtp_host: smtp,
                smtp_port: port,
                smtp_tls: tls,
                smtp_username: user,
                from,
                to,
                secret: secret.map(Secret::new),
                ca_pem: tls_ca_file.as_ref().map(read_file).transpose()?,
                link_base,
                max_attempts,
                retry_base_secs,
            };
            let e = admin.call(&api::AddNotifyEndpoint { body }).await?;
            println!("Notification endpoint {} added ({}).", e.name, target(&e));
            if let Some(secret) = e.generated_secret {
                println!(
                    "Webhook signing secret (shown once; the receiver checks X-Ferry-Signature with it):\n{}",
                    secret.expose()
                );
            }
        }
        EndpointCmd::List { json } => {
            show(admin, &api::ListNotifyEndpoints {}, json, |endpoints| {
                println!("{:<16} {:<8} {:<48} ATTEMPTS", "NAME", "KIND", "TARGET");
                for e in endpoints {
                    println!(
                        "{:<16} {:<8} {:<48} {}",
                        e.name,
                        e.kind,
                        target(e),
                        e.max_attempts
                    );
                }
            })
            .await?;
        }
        EndpointCmd::Remove { name } => {
            admin
                .call(&api::RemoveNotifyEndpoint { name: name.clone() })
                .await?;
            println!("Notification endpoint {name} removed.");
        }
        EndpointCmd::Test { name } => {
            let t = admin.call(&api::TestNotifyEndpoint { name }).await?;
            println!(
                "Test notification to {} queued as event {} (ferry event show {}).",
                t.endpoint, t.event_id, t.event_id
            );
        }
    }
    Ok(())
}

/// Where an endpoint sends, in one line.
fn target(e: &api::NotifyEndpoint) -> String {
    match (&e.webhook_url, &e.smtp_host) {
        (Some(url), _) => url.clone(),
        (None, Some(host)) => format!(
            "{} via {}:{} ({})",
            e.to.join(","),
            host,
            e.smtp_port.unwrap_or_default(),
            e.smtp_tls.as_deref().unwrap_or_default()
        ),
        (None, None) => String::new(),
    }
}

async fn rule(admin: &Admin, cmd: RuleCmd) -> anyhow::Result<()> {
    match cmd {
        RuleCmd::Add {
            name,
            on,
            to,
            account,
            route,
            partner,
        } => {
            let body = api::NewNotifyRule {
                name,
                on,
                endpoint: to,
                account,
                route,
                partner,
            };
            let r = admin.call(&api::AddNotifyRule { body }).await?;
            println!(
                "Notification rule {} added: on {} notify {}.",
                r.name, r.on, r.endpoint
            );
        }
        RuleCmd::List { json } => {
            show(admin, &api::ListNotifyRules {}, json, |rules| {
                println!(
                    "{:<16} {:<20} {:<16} {:<12} {:<12} PARTNER",
                    "NAME", "ON", "ENDPOINT", "ACCOUNT", "ROUTE"
                );
                for r in rules {
                    let any = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".into());
                    println!(
                        "{:<16} {:<20} {:<16} {:<12} {:<12} {}",
                        r.name,
                        r.on,
                        r.endpoint,
                        any(&r.account),
                        any(&r.route),
                        any(&r.partner)
                    );
                }
            })
            .await?;
        }
        RuleCmd::Remove { name } => {
            admin
                .call(&api::RemoveNotifyRule { name: name.clone() })
                .await?;
            println!("Notification rule {name} removed.");
        }
    }
    Ok(())
}
