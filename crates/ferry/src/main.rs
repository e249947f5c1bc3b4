//! The `ferry` binary: parse arguments, load config, build, run.

mod admin_client;
mod backup;
mod cluster_client;
mod engine_client;
mod notify_client;
mod retention_client;
mod up;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferry_core::logging::{LogConfig, LogFormat};

/// What the exit code of a command tells (`ferry --help` prints it).
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed (any other error: invalid input, refused, wrong token, …)
  2  usage error (unknown command or option, missing argument)
  3  not found (no such account, partner, route, event, …)
  4  conflict (exists already, in use, or in the wrong state)
  5  server unreachable, or unavailable (not ready, no majority, not the active server)
  6  outcome unknown: the change may or may not have been made; run the same
     command again with the --idempotency-key it printed to finish it";

/// Ferry: secure managed file transfer.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// `ferry server …` (besides running one).
#[derive(Debug, Subcommand)]
enum ServerCmd {
    /// Stop the server asked gracefully, as SIGTERM does: it takes nothing
    /// new (edges send new sessions to the other servers), transfers in
    /// flight get `drain_secs` to finish, its event leases are given back,
    /// then it stops. Waits until it has stopped. The step before
    /// replacing a server's binary in a rolling upgrade (docs/upgrade.md).
    Drain {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        /// How long to wait for the server to stop before giving up.
        #[arg(long, default_value_t = 600)]
        wait_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a back-end server (or, with `drain`, stop a running one
    /// gracefully).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Server {
        #[command(subcommand)]
        action: Option<ServerCmd>,
        /// The server's config file (see etc/server.toml).
        #[arg(long, required = true)]
        config: Option<PathBuf>,
        /// Run as a witness of an active/passive cluster: it votes in
        /// promotions and serves nothing (no repository needed).
        #[arg(long)]
        witness: bool,
        /// Check the config and what it names (certificates, keys, token,
        /// directories), print what was checked, and exit without
        /// starting: 0 if all is well.
        #[arg(long)]
        check_config: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run an edge gateway.
    Edge {
        /// The edge's config file (see etc/edge.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and what it names (certificates, host keys),
        /// print what was checked, and exit without starting: 0 if all is
        /// well.
        #[arg(long)]
        check_config: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run a server and an edge in one process on a local data directory.
    Up(up::UpArgs),
    /// Manage the cluster's certificate authority.
    #[command(subcommand)]
    Pki(PkiCmd),
    /// Manage accounts (through a server's admin API).
    Account {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::AccountCmd,
    },
    /// Named admins and their API tokens.
    Admin {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::AdminCmd,
    },
    /// The audit trail of the admin API.
    Audit {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::AuditCmd,
    },
    /// Banned client addresses (the defender's and the admins').
    Ban {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::BanCmd,
    },
    /// Virtual folders: repository directories mounted into several homes.
    Folder {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::FolderCmd,
    },
    /// The client networks no one may log in from.
    Network {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::NetworkCmd,
    },
    /// Read the transfer log (through a server's admin API).
    Transfer {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: admin_client::TransferCmd,
    },
    /// Manage partners: remote SFTP servers to push to and pull from.
    Partner {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: engine_client::PartnerCmd,
    },
    /// Manage notifications: webhooks and mail on failures, completions, bans.
    Notify {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: notify_client::NotifyCmd,
    },
    /// Manage routes: what happens to files that arrive.
    Route {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: engine_client::RouteCmd,
    },
    /// Manage schedules: pulls and pushes on cron slots.
    Schedule {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: engine_client::ScheduleCmd,
    },
    /// Manage folder monitors: directories whose files are ingested.
    Monitor {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: engine_client::MonitorCmd,
    },
    /// Inspect and resubmit queued events.
    Event {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: engine_client::EventCmd,
    },
    /// Retention policies: how long transfer-log rows, events and files
    /// are kept.
    Retention {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: retention_client::RetentionCmd,
    },
    /// Reports from the transfer log.
    Report {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: retention_client::ReportCmd,
    },
    /// Active/passive cluster: status, events, promotion.
    Cluster {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        #[command(subcommand)]
        command: cluster_client::ClusterCmd,
    },
    /// Back up a server's state while it runs: a consistent copy of its
    /// store, its config and the files beside it, into a new archive.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new or empty directory (never over files,
    /// never into a running server's).
    Restore(backup::RestoreArgs),
    /// Print the completion script of a shell (bash, zsh, fish, elvish,
    /// powershell) for ferry's commands and options.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages of ferry and of each of its commands (ferry.1,
    /// ferry-server.1, ferry-account-add.1, …) into DIR.
    Man {
        /// Where the pages go (e.g. /usr/local/share/man/man1); created if
        /// missing.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Copy the tables and files of sync/*.conf from the active server (the
    /// one asked) to standbys.
    Sync {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
        /// Only this standby (repeatable; default: every standby).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCmd {
    /// Create a new CA (ca.crt, ca.key) in DIR.
    Init(PkiInit),
    /// Issue a certificate for a node, signed by the CA in DIR.
    Issue(PkiIssue),
    /// Replace a node's key and certificate by new ones with the same role
    /// and names (plus --san): to add a name, or to change a key. The old
    /// pair is kept as NAME.crt.old and NAME.key.old; restart the node to
    /// use the new one.
    Renew(PkiRenew),
}

/// The CA a node's certificate is signed by, and where the node's files
/// are (`ferry pki issue`, `ferry pki renew`).
#[derive(Debug, Args)]
struct PkiDirs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long)]
    dir: PathBuf,
    /// Where NAME.crt and NAME.key are written (default: --dir).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl PkiDirs {
    /// The directory of the node's files.
    fn out(&self) -> &std::path::Path {
        self.out.as_deref().unwrap_or(&self.dir)
    }
}

#[derive(Debug, Args)]
struct PkiRenew {
    #[command(flatten)]
    dirs: PkiDirs,
    /// DNS names and IP addresses to add (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Renew even when no name is added and the certificate is far from
    /// its end (a new key).
    #[arg(long)]
    force: bool,
    /// The node's name (its file names).
    name: String,
}

#[derive(Debug, Args)]
struct PkiInit {
    /// Directory for the CA files.
    #[arg(long)]
    dir: PathBuf,
    /// A name for the cluster, put in the CA's subject.
    #[arg(long, default_value = "ferry")]
    cluster: String,
}

#[derive(Debug, Args)]
struct PkiIssue {
    #[command(flatten)]
    dirs: PkiDirs,
    /// DNS names and IP addresses the certificate is valid for (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// What the certificate may be used for: `server` (back-end servers,
    /// witnesses), `edge` (an edge's link to the servers) or `https` (a
    /// public HTTPS front, never accepted on the internal link).
    #[arg(long, value_enum)]
    role: PkiRole,
    /// The node's name (also its file names).
    name: String,
}

/// The roles of `ferry pki issue --role`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PkiRole {
    Server,
    Edge,
    Https,
}

impl From<PkiRole> for ferry_proto::pki::CertRole {
    fn from(role: PkiRole) -> Self {
        match role {
            PkiRole::Server => Self::Server,
            PkiRole::Edge => Self::Edge,
            PkiRole::Https => Self::Https,
        }
    }
}

/// How a service logs, over its config file's `[log]`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Log level: error, warn, info, debug, trace, or a filter with levels
    /// per module (`info,ferry_edge=debug`). Default: the config's
    /// `[log] level`, else the FERRY_LOG variable, else info.
    #[arg(long)]
    log_level: Option<String>,
    /// Log lines as `text` or `json` (one object a line). Default: the
    /// config's `[log] format`, else text.
    #[arg(long, value_parser = clap::value_parser!(LogFormatArg))]
    log_format: Option<LogFormatArg>,
}

/// `--log-format`'s values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl LogArgs {
    /// `config` with these flags put over it.
    fn over(&self, config: &LogConfig) -> LogConfig {
        let format = self.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        });
        config.overridden(self.log_level.as_deref(), format)
    }
}

/// Installs the log subscriber: to standard error, coloured only when
/// that is a terminal, as `config` says. A level that does not parse is an
/// error.
fn init_logging(config: &LogConfig) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match &config.level {
        Some(level) => EnvFilter::try_new(level)
            .with_context(|| format!("log level {level:?} does not parse"))?,
        None => EnvFilter::try_from_env("FERRY_LOG")
            .unwrap_or_else(|_| EnvFilter::new(ferry_core::logging::DEFAULT_FILTER)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    // Everything Ferry creates (state, keys, repository, uploads) is private
    // to its user unless made otherwise on purpose.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let service = matches!(
        cli.command,
        Cmd::Server { .. } | Cmd::Edge { .. } | Cmd::Up(_)
    );
    if let Err(e) = run(cli).await {
        eprintln!("ferry: error: {e:#}");
        let code = e
            .downcast_ref::<admin_client::Failure>()
            .map_or(1, |f| f.exit_code);
        std::process::exit(code);
    }
    if service {
        // The graceful shutdown is done. Leave now: dropping the runtime
        // would wait for blocking-pool work that may still hold a thread
        // (a proposal waiting for a quorum, a read of a stuck disk).
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Server {
            action: Some(ServerCmd::Drain { admin, wait_secs }),
            ..
        } => cluster_client::drain(admin, wait_secs).await,
        Cmd::Server {
            action: None,
            config: path,
            witness,
            check_config,
            log,
        } => {
            let path = path.context("--config is required")?;
            let config = ferry_server::ServerConfig::load_as(&path, witness)?;
            if check_config {
                let checked = ferry_server::check_config(&config)?;
                print_checked(&path, &checked);
                return Ok(());
            }
            init_logging(&log.over(&config.log))?;
            let node = config.node_id.clone();
            let drain = config.drain();
            let server = ferry_server::start(config).await?;
            say(&format!(
                "Ferry server {node} is running.\n  internal: {}\n  admin: https://{}",
                server.internal_addr, server.admin_addr
            ));
            tokio::select! {
                signal = wait_for_shutdown() => signal?,
                () = server.ctx.drain.stop_requested_wait() => {
                    tracing::info!("shutting down: an operator asked for a drain");
                }
            }
            report_shutdown(server.shutdown(drain).await);
            Ok(())
        }
        Cmd::Edge {
            config: path,
            check_config,
            log,
        } => {
            let config = ferry_edge::EdgeConfig::load(&path)?;
            if check_config {
                let checked = ferry_edge::check_config(&config)?;
                print_checked(&path, &checked);
                return Ok(());
            }
            init_logging(&log.over(&config.log))?;
            let node = config.node_id.clone();
            let config_drain = config.drain();
            let edge = ferry_edge::start(config).await?;
            say(&format!("Ferry edge {node} is running."));
            if let Some(addr) = edge.sftp_addr {
                say(&format!("  sftp: {addr}"));
            }
            for fingerprint in &edge.host_key_fingerprints {
                say(&format!("  host key: {fingerprint}"));
            }
            if let Some(addr) = edge.https_addr {
                say(&format!("  https: https://{addr}"));
            }
            if let Some(addr) = edge.metrics_addr {
                say(&format!("  metrics: http://{addr}/metrics"));
            }
            wait_for_shutdown().await?;
            edge.shutdown(config_drain).await;
            say("Ferry edge stopped.");
            Ok(())
        }
        Cmd::Up(args) => {
            init_logging(&args.log.over(&LogConfig::default()))?;
            up::run(args).await
        }
        Cmd::Pki(PkiCmd::Init(a)) => {
            std::fs::create_dir_all(&a.dir)
                .with_context(|| format!("cannot create {}", a.dir.display()))?;
            ferry_proto::pki::create_ca(&a.dir, &a.cluster)?;
            println!(
                "Created CA in {}: ca.crt (share it), ca.key (keep it secret).",
                a.dir.display()
            );
            Ok(())
        }
        Cmd::Pki(PkiCmd::Issue(a)) => {
            let out = a.dirs.out();
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            ferry_proto::pki::issue(&a.dirs.dir, out, &a.name, &a.sans, a.role.into())?;
            println!("Issued {0}.crt and {0}.key in {1}.", a.name, out.display());
            Ok(())
        }
        Cmd::Pki(PkiCmd::Renew(a)) => {
            let out = a.dirs.out();
            let names = ferry_proto::pki::renew(&a.dirs.dir, out, &a.name, &a.sans, a.force)?;
            println!(
                "Renewed {0}.crt and {0}.key in {1} for {2} (the old pair: {0}.crt.old, {0}.key.old). \
                 Restart the node to use them.",
                a.name,
                out.display(),
                names.join(", ")
            );
            Ok(())
        }
        Cmd::Account { admin, command } => admin_client::account(admin, command).await,
        Cmd::Folder { admin, command } => admin_client::folder(admin, command).await,
        Cmd::Network { admin, command } => admin_client::network(admin, command).await,
        Cmd::Ban { admin, command } => admin_client::ban(admin, command).await,
        Cmd::Admin { admin, command } => admin_client::admins(admin, command).await,
        Cmd::Audit { admin, command } => admin_client::audit(admin, command).await,
        Cmd::Transfer { admin, command } => admin_client::transfer(admin, command).await,
        Cmd::Partner { admin, command } => engine_client::partner(admin, command).await,
        Cmd::Notify { admin, command } => notify_client::notify(admin, command).await,
        Cmd::Route { admin, command } => engine_client::route(admin, command).await,
        Cmd::Schedule { admin, command } => engine_client::schedule(admin, command).await,
        Cmd::Monitor { admin, command } => engine_client::monitor(admin, command).await,
        Cmd::Event { admin, command } => engine_client::event(admin, command).await,
        Cmd::Retention { admin, command } => retention_client::retention(admin, command).await,
        Cmd::Report { admin, command } => retention_client::report(admin, command).await,
        Cmd::Cluster { admin, command } => cluster_client::cluster(admin, command).await,
        Cmd::Sync {
            admin,
            to,
            dry_run,
            json,
        } => cluster_client::sync(admin, to, dry_run, json).await,
        Cmd::Backup(args) => backup::backup(args),
        Cmd::Restore(args) => backup::restore(args),
        Cmd::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "ferry", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            println!("Wrote the man pages into {}.", dir.display());
            Ok(())
        }
    }
}

/// Prints what `--check-config` checked of the config file `path`.
fn print_checked(path: &std::path::Path, checked: &[String]) {
    println!("{}: the config is valid", path.display());
    for line in checked {
        println!("  {line}");
    }
}

/// Prints a status line of a long-running command. A closed stdout (the
/// supervisor stopped reading) must not stop the service, so errors are ignored.
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Says how a server's shutdown went. A shutdown that had to cut
/// something short still stopped: the exit status stays 0, the log says
/// what (a supervisor restarting on failure must not loop on it).
fn report_shutdown(stopped: Result<(), Vec<String>>) {
    match stopped {
        Ok(()) => say("Ferry server stopped."),
        Err(problems) => say(&format!("Ferry server stopped; {}.", problems.join("; "))),
    }
}
