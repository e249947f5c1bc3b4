//! Admin commands: talk to a server's admin API over HTTPS with the bearer token.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ferry_api::{self as api, Endpoint};
use ferry_core::Secret;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin API URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "FERRY_ADMIN_URL", global = true)]
    admin: Option<String>,
    /// File holding the admin token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate that signed the server's certificate.
    #[arg(long, env = "FERRY_ADMIN_CA", global = true)]
    ca_file: Option<PathBuf>,
    /// A `ferry up` data directory: URL, token and CA are read from it.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The key that makes a change happen once: a command run again with
    /// the key it printed after an unknown outcome gets the first answer
    /// (default: a new key for each run).
    #[arg(long, env = "FERRY_IDEMPOTENCY_KEY", global = true)]
    idempotency_key: Option<String>,
}

/// A failed admin command, with the exit code that tells its kind (see
/// [`crate::EXIT_CODES`]).
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process's exit code.
    pub(crate) exit_code: i32,
    /// What to print.
    pub(crate) message: String,
}

/// Not found.
const NOT_FOUND: i32 = 3;
/// Exists already, in use, or in the wrong state.
const CONFLICT: i32 = 4;
/// The server cannot be reached, or cannot serve now.
const UNAVAILABLE: i32 = 5;
/// The server could not tell whether the change was made.
const OUTCOME_UNKNOWN: i32 = 6;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// `ferry account …`
#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account.
    Add {
        /// Login name.
        name: String,
        /// Read the password from standard input (first line).
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read the password from a file (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Home directory relative to the repository (default: the name).
        #[arg(long)]
        home: Option<String>,
        /// The password is a temporary one: the account must change it at
        /// its first HTTPS login before anything else.
        #[arg(long)]
        must_change_password: bool,
    },
    /// List accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow an account to log in again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Stop an account from logging in.
    Disable {
        /// Login name.
        name: String,
    },
    /// Change an account's password, expiry or allowed client networks.
    Set {
        /// Login name.
        name: String,
        /// Read a new password from standard input (first line).
        #[arg(long, conflicts_with_all = ["password_file", "no_password"])]
        password_stdin: bool,
        /// Read a new password from a file (first line).
        #[arg(long, conflicts_with = "no_password")]
        password_file: Option<PathBuf>,
        /// No password login from now on (keys and tokens only).
        #[arg(long)]
        no_password: bool,
        /// When it stops logging in: an RFC 3339 time, a date (YYYY-MM-DD,
        /// midnight UTC) or `never`.
        #[arg(long)]
        expires: Option<String>,
        /// The client networks it may log in from, comma-separated CIDRs
        /// or addresses; `any` for anywhere.
        #[arg(long)]
        networks: Option<String>,
        /// The most its home may hold: bytes, or with K, M, G, T (powers
        /// of 1024); `none` for no quota.
        #[arg(long, value_parser = parse_quota)]
        quota: Option<u64>,
        /// The most files its home may hold; `none` for no quota.
        #[arg(long, value_parser = parse_quota)]
        quota_files: Option<u64>,
        /// Its uploads together, bytes a second (K, M, G as for --quota) on
        /// each server; `none` for no limit.
        #[arg(long, value_parser = parse_quota)]
        upload_rate: Option<u64>,
        /// Its downloads together, bytes a second; `none` for no limit.
        #[arg(long, value_parser = parse_quota)]
        download_rate: Option<u64>,
        /// The most sessions (SSH connections, HTTPS logins) it may have
        /// open at once on each server; `none` for no cap.
        #[arg(long, value_parser = parse_quota)]
        max_sessions: Option<u64>,
        /// The password must be changed at the next HTTPS login before
        /// anything else (SSH password logins are refused meanwhile).
        #[arg(long, conflicts_with = "no_must_change_password")]
        must_change_password: bool,
        /// Lift --must-change-password.
        #[arg(long)]
        no_must_change_password: bool,
    },
    /// Show an account: its settings, quota and what its home holds.
    Show {
        /// Login name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or set the password policy's minimum length (8 to 128; the
    /// strength and reuse rules are fixed).
    PasswordPolicy {
        /// The fewest characters a new password must have.
        #[arg(long)]
        min_length: Option<u32>,
    },
    /// Show or set the idle limit: accounts unused for more than DAYS
    /// days cannot log in (`ferry account enable` lets one in again).
    IdleLimit {
        /// Days, or `off`; without it, show the limit.
        days: Option<String>,
    },
    /// Remove an account and its keys (its files stay). Refused while
    /// routes, schedules or monitors use it, unless --with-uses.
    Remove {
        /// Login name.
        name: String,
        /// Remove the routes, schedules and monitors that use it too.
        #[arg(long)]
        with_uses: bool,
    },
    /// Manage an account's public keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Manage an account's API tokens (HTTPS `Authorization: Bearer`).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage what an account may do in each folder of its home.
    #[command(subcommand, visible_alias = "perm")]
    Permission(PermissionCmd),
}

/// `ferry account permission …`
#[derive(Debug, Subcommand)]
pub enum PermissionCmd {
    /// Set what NAME may do in FOLDER and the folders below it that have
    /// no rule of their own. ALLOW is a comma-separated list of list,
    /// download, upload, overwrite, delete, rename, create-dirs and the
    /// presets all, upload-only, download-only, none.
    Set {
        /// Login name.
        name: String,
        /// The folder, inside the home (`/` is the home).
        folder: String,
        /// What is allowed there.
        allow: String,
    },
    /// List an account's folder rules (none: it may do everything).
    List {
        /// Login name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a folder's rule; it inherits its parent's again.
    Remove {
        /// Login name.
        name: String,
        /// The folder.
        folder: String,
    },
}

/// `ferry account token …`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and stored only as a hash.
    Add {
        /// Login name.
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
        /// Days until the token stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List an account's tokens (ids and labels, never the tokens).
    List {
        /// Login name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token.
    Remove {
        /// Login name.
        name: String,
        /// The token's id (as listed).
        id: String,
    },
}

/// `ferry account key …`
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Authorise the public key in FILE (OpenSSH .pub format).
    Add {
        /// Login name.
        name: String,
        /// The .pub file.
        file: PathBuf,
    },
    /// List an account's keys: fingerprint and comment.
    List {
        /// Login name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its fingerprint (as listed), or every key.
    Remove {
        /// Login name.
        name: String,
        /// The key's fingerprint (`SHA256:…`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        fingerprint: Option<String>,
        /// Revoke every key of the account.
        #[arg(long)]
        all: bool,
    },
}

/// `ferry admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create a named admin.
    Add {
        /// Its name.
        name: String,
        /// admin (everything), operator (no admins, no cluster changes) or
        /// auditor (reads only).
        #[arg(long)]
        role: String,
        /// Read a password from standard input (first line); without one,
        /// the admin uses API tokens only.
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read a password from a file (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List the named admins.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an admin and its tokens.
    Remove {
        /// Its name.
        name: String,
    },
    /// Who this command runs as.
    Whoami,
    /// Manage an admin's API tokens (for --token-file or FERRY_ADMIN_TOKEN).
    #[command(subcommand)]
    Token(AdminTokenCmd),
}

/// `ferry admin token …`
#[derive(Debug, Subcommand)]
pub enum AdminTokenCmd {
    /// Create a token; it is printed once and stored only as a hash.
    Add {
        /// The admin.
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List an admin's tokens (ids and labels, never the tokens).
    List {
        /// The admin.
        name: String,
    },
    /// Revoke a token.
    Remove {
        /// The admin.
        name: String,
        /// The token's id.
        id: String,
    },
}

/// `ferry audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Every change made or refused through the admin API, newest first.
    List {
        /// Only since this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this admin's (`bootstrap`: the bootstrap token's).
        #[arg(long)]
        by: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Show what each change acted on, before and after.
        #[arg(long)]
        states: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ferry ban …`
#[derive(Debug, Subcommand)]
pub enum BanCmd {
    /// List the addresses banned now.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ban an address on every server.
    Add {
        /// The IP address.
        address: String,
        /// How long.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Remove {
        /// The IP address.
        address: String,
    },
}

/// `ferry network …`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Show the deny list: networks no client may log in from.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the deny list (comma-separated CIDRs or addresses; `none`
    /// empties it).
    Deny {
        /// The networks.
        networks: String,
    },
}

/// `ferry folder …`
#[derive(Debug, Subcommand)]
pub enum FolderCmd {
    /// Create a virtual folder: DIR (relative to the repository, made if
    /// missing) under the name NAME.
    Add {
        /// Its name.
        name: String,
        /// The directory, relative to the repository.
        dir: String,
    },
    /// List the virtual folders and the homes they are mounted into.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a virtual folder no home mounts (its files stay).
    Remove {
        /// Its name.
        name: String,
    },
    /// Mount the folder NAME into ACCOUNT's home at AT. ALLOW is what the
    /// account may do in it, as in `ferry account permission set` (default
    /// all).
    Mount {
        /// The folder.
        name: String,
        /// The account.
        account: String,
        /// Where it appears in the home (`/outbox`).
        at: String,
        /// What the account may do in it.
        #[arg(long, default_value = "all")]
        allow: String,
    },
    /// Remove the mount at AT from ACCOUNT's home.
    Unmount {
        /// The account.
        account: String,
        /// The mount point.
        at: String,
    },
}

/// Filters of `ferry transfer list` and `ferry event list`.
#[derive(Debug, Args)]
pub struct ListFilter {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this status (transfers: completed, interrupted, failed; events:
    /// pending, running, done, failed).
    #[arg(long)]
    pub status: Option<String>,
    /// Only pushes to, pulls from or events involving this partner.
    #[arg(long)]
    pub partner: Option<String>,
    /// Only since this time: RFC 3339, or an age such as 90s, 30m, 12h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

impl ListFilter {
    /// The filter as the API's query.
    pub fn query(&self) -> anyhow::Result<api::ListQuery> {
        Ok(api::ListQuery {
            account: self.account.clone(),
            status: self.status.clone(),
            since: self
                .since
                .as_deref()
                .map(crate::engine_client::parse_since)
                .transpose()?,
            partner: self.partner.clone(),
            limit: Some(self.limit),
        })
    }
}

/// `ferry transfer …`
#[derive(Debug, Subcommand)]
pub enum TransferCmd {
    /// List transfer-log rows, newest first.
    List {
        #[command(flatten)]
        filter: ListFilter,
        /// Only paths containing this text (ignoring ASCII case).
        #[arg(long)]
        name: Option<String>,
        /// Only this protocol: sftp, https, monitor or route.
        #[arg(long)]
        protocol: Option<String>,
        /// Only before this time: RFC 3339, or an age such as 30m, 12h, 7d.
        #[arg(long)]
        until: Option<String>,
    },
    /// Show one transfer with the events it caused and every attempt.
    Show {
        /// Transfer id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
    /// Sent with every change (`Idempotency-Key`).
    idempotency_key: String,
}

fn read_secret_line(path: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

impl Admin {
    pub(crate) fn connect(args: AdminArgs) -> anyhow::Result<Self> {
        let from_dir = |name: &str| args.data_dir.as_ref().map(|d| d.join(name));
        let url = match (&args.admin, from_dir("admin.url")) {
            (Some(u), _) => u.clone(),
            (None, Some(f)) => read_secret_line(&f)
                .with_context(|| "is `ferry up` running with this --data-dir?".to_owned())?,
            (None, None) => {
                bail!("say where the admin API is: --admin URL, FERRY_ADMIN_URL, or --data-dir DIR")
            }
        };
        let token = match (
            &args.token_file,
            std::env::var("FERRY_ADMIN_TOKEN").ok(),
            from_dir("admin.token"),
        ) {
            (Some(f), _, _) => read_secret_line(f)?,
            (None, Some(t), _) => t.trim().to_owned(),
            (None, None, Some(f)) => read_secret_line(&f)?,
            _ => bail!("no admin token: use --token-file F, FERRY_ADMIN_TOKEN, or --data-dir DIR"),
        };
        let ca = args
            .ca_file
            .clone()
            .or_else(|| from_dir("pki/ca.crt"))
            .context("no CA certificate: use --ca-file F, FERRY_ADMIN_CA, or --data-dir DIR")?;
        let tls = ferry_proto::tls::ca_client_config(&ca)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let idempotency_key = args.idempotency_key.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; 16];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
            hex::encode(bytes)
        });
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            token,
            http,
            idempotency_key,
        })
    }

    /// Calls endpoint `E`: sends the request (a change with the
    /// idempotency key), and reads the typed answer, or the error body as a
    /// [`Failure`] whose exit code tells its kind.
    pub(crate) async fn call<E: Endpoint>(&self, request: &E) -> anyhow::Result<E::Answer> {
        let resp = self.start(request, None).await?;
        let text = resp
            .text()
            .await
            .map_err(|e| self.no_answer(e, E::METHOD != api::Method::Get))?;
        if E::STATUS == 204 {
            return Ok(serde_json::from_str("{}")?);
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the answer of {} {} is not what the API says",
                E::METHOD.as_str(),
                E::PATH
            )
        })
    }

    /// Sends a request to endpoint `E` and returns the successful answer
    /// unread (for streamed answers); `timeout` replaces the usual one.
    pub(crate) async fn start<E: Endpoint>(
        &self,
        request: &E,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let method = match E::METHOD {
            api::Method::Get => reqwest::Method::GET,
            api::Method::Post => reqwest::Method::POST,
            api::Method::Delete => reqwest::Method::DELETE,
        };
        let changes = E::METHOD != api::Method::Get;
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, request.path()))
            .bearer_auth(&self.token);
        if changes {
            req = req.header("idempotency-key", &self.idempotency_key);
        }
        if let Some(query) = request.query() {
            req = req.query(query);
        }
        if let Some(body) = request.body() {
            req = req.json(body);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| self.no_answer(e, changes))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(self.failure(status, &text).into())
    }

    /// The failure of a request that got no answer: the server is
    /// unreachable, or, for a change that was sent, it may have been made.
    fn no_answer(&self, e: reqwest::Error, change: bool) -> Failure {
        if change && !e.is_connect() {
            return self.outcome_unknown(&format!("no answer from {}: {e}", self.url));
        }
        Failure {
            exit_code: UNAVAILABLE,
            message: format!("cannot reach the admin API at {}: {e}", self.url),
        }
    }

    fn outcome_unknown(&self, why: &str) -> Failure {
        Failure {
            exit_code: OUTCOME_UNKNOWN,
            message: format!(
                "{why}: the change may or may not have been made; run the same command with --idempotency-key {} to finish it or learn what happened",
                self.idempotency_key
            ),
        }
    }

    /// The failure an error answer tells of.
    fn failure(&self, status: reqwest::StatusCode, text: &str) -> Failure {
        let body = serde_json::from_str::<api::ErrorBody>(text).unwrap_or(api::ErrorBody {
            code: String::new(),
            message: if text.trim().is_empty() {
                "request failed".into()
            } else {
                text.trim().to_owned()
            },
        });
        let code = status.as_u16();
        if body.code == "outcome_unknown" {
            return self.outcome_unknown(&format!("{} (HTTP {code})", body.message));
        }
        let exit_code = match (code, body.code.as_str()) {
            (404, _) => NOT_FOUND,
            (409, _) => CONFLICT,
            // A partner that failed is not the server being unavailable.
            (_, "partner_error") => 1,
            (502..=504, _) => UNAVAILABLE,
            _ => 1,
        };
        Failure {
            exit_code,
            message: format!("{} (HTTP {code})", body.message),
        }
    }
}

/// Prints an answer as pretty JSON (`--json`).
pub(crate) fn print_json<T: serde::Serialize>(answer: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(answer)?);
    Ok(())
}

/// Calls `E` and prints its answer: as JSON with `json`, else with `human`.
pub(crate) async fn show<E: Endpoint>(
    admin: &Admin,
    request: &E,
    json: bool,
    human: impl FnOnce(&E::Answer),
) -> anyhow::Result<()> {
    let answer = admin.call(request).await?;
    if json {
        return print_json(&answer);
    }
    human(&answer);
    Ok(())
}

pub(crate) fn read_password(stdin: bool, file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let pw = if stdin {
        let input = std::io::stdin();
        if input.is_terminal() {
            eprint!("Password: ");
        }
        let mut line = String::new();
        input.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(f) = file {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        text.lines().next().unwrap_or_default().to_owned()
    } else {
        return Ok(None);
    };
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(Some(pw))
}

/// An account's password as the CLI shows it.
fn password_state(a: &api::Account) -> &'static str {
    match (a.has_password, a.must_change_password) {
        (true, true) => "set (must be changed at the next HTTPS login)",
        (true, false) => "set",
        (false, _) => "none",
    }
}

/// Runs an account command.
pub async fn account(args: AdminArgs, cmd: AccountCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        AccountCmd::Add {
            name,
            password_stdin,
            password_file,
            home,
            must_change_password,
        } => {
            let password = read_password(password_stdin, password_file)?.map(Secret::new);
            let body = api::NewAccount {
                name,
                password,
                home,
                must_change_password,
            };
            let a = admin.call(&api::CreateAccount { body }).await?;
            println!("Account {} created.", a.name);
        }
        AccountCmd::List { json } => {
            show(&admin, &api::ListAccounts {}, json, |accounts| {
                println!(
                    "{:<24} {:<8} {:<5} {:<8} HOME",
                    "NAME", "ENABLED", "KEYS", "PASSWORD"
                );
                for a in accounts {
                    let password = if a.has_password { "yes" } else { "no" };
                    println!(
                        "{:<24} {:<8} {:<5} {:<8} {}",
                        a.name, a.enabled, a.keys, password, a.home
                    );
                }
            })
            .await?;
        }
        AccountCmd::Enable { name } => {
            admin
                .call(&api::EnableAccount { name: name.clone() })
                .await?;
            println!("Account {name} enabled.");
        }
        AccountCmd::Disable { name } => {
            admin
                .call(&api::DisableAccount { name: name.clone() })
                .await?;
            println!("Account {name} disabled.");
        }
        AccountCmd::Set {
            name,
            password_stdin,
            password_file,
            no_password,
            expires,
            networks,
            quota,
            quota_files,
            upload_rate,
            download_rate,
            max_sessions,
            must_change_password,
            no_must_change_password,
        } => {
            let password = read_password(password_stdin, password_file)?.map(Secret::new);
            let body = api::AccountChanges {
                max_sessions,
                must_change_password: match (must_change_password, no_must_change_password) {
                    (true, _) => Some(true),
                    (false, true) => Some(false),
                    (false, false) => None,
                },
                quota_bytes: quota,
                quota_files,
                upload_rate,
                download_rate,
                password,
                remove_password: no_password,
                expires_at: expires,
                allowed_networks: networks.map(|n| {
                    if n == "any" {
                        Vec::new()
                    } else {
                        n.split(',').map(|w| w.trim().to_owned()).collect()
                    }
                }),
            };
            let a = admin.call(&api::UpdateAccount { name, body }).await?;
            let expires = a
                .expires_at
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
            let networks = if a.allowed_networks.is_empty() {
                "any".to_owned()
            } else {
                a.allowed_networks.join(",")
            };
            let quota = a
                .quota_bytes
                .map_or_else(|| "none".to_owned(), |n| format!("{n} bytes"));
            println!(
                "Account {} changed: password {}, expires {expires}, networks {networks}, quota {quota}.",
                a.name,
                password_state(&a)
            );
        }
        AccountCmd::Show { name, json } => {
            show(&admin, &api::ShowAccount { name }, json, |a| {
                let limit = |n: Option<u64>| n.map_or_else(|| "none".to_owned(), |n| n.to_string());
                println!("name        {}", a.name);
                println!("home        {}", a.home);
                println!("enabled     {}", a.enabled);
                println!("password    {}", password_state(a));
                println!("keys        {}", a.keys);
                println!(
                    "last login  {}{}",
                    a.last_login_at
                        .map_or_else(|| "none recorded".to_owned(), |t| t.to_rfc3339()),
                    if a.idle {
                        " (idle: refused until `ferry account enable`)"
                    } else {
                        ""
                    }
                );
                println!(
                    "expires     {}",
                    a.expires_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                );
                println!(
                    "networks    {}",
                    if a.allowed_networks.is_empty() {
                        "any".to_owned()
                    } else {
                        a.allowed_networks.join(",")
                    }
                );
                println!(
                    "bytes       {} used, quota {}",
                    a.used_bytes.unwrap_or(0),
                    limit(a.quota_bytes)
                );
                println!(
                    "files       {} used, quota {}",
                    a.used_files.unwrap_or(0),
                    limit(a.quota_files)
                );
                println!(
                    "rates       up {} B/s, down {} B/s",
                    limit(a.upload_rate),
                    limit(a.download_rate)
                );
                println!("sessions    at most {} at once", limit(a.max_sessions));
            })
            .await?;
        }
        AccountCmd::PasswordPolicy { min_length } => {
            let policy = match min_length {
                None => admin.call(&api::GetPasswordPolicy {}).await?,
                Some(min_length) => {
                    let body = api::PasswordPolicy { min_length };
                    admin.call(&api::SetPasswordPolicy { body }).await?
                }
            };
            println!(
                "Password policy: at least {} characters, zxcvbn score 3 or more, \
                 none of the account's last 5 passwords.",
                policy.min_length
            );
        }
        AccountCmd::IdleLimit { days } => {
            let limit = match days {
                None => admin.call(&api::GetIdleLimit {}).await?,
                Some(days) => {
                    let days = if days == "off" {
                        0
                    } else {
                        days.parse()
                            .map_err(|_| anyhow::anyhow!("{days:?}: a number of days or off"))?
                    };
                    let body = api::IdleLimit {
                        disable_after_idle_days: days,
                        since: None,
                    };
                    admin.call(&api::SetIdleLimit { body }).await?
                }
            };
            match (limit.disable_after_idle_days, limit.since) {
                (0, _) => println!("Idle limit: off."),
                (days, Some(since)) => println!(
                    "Idle limit: accounts unused for more than {days} days cannot log in \
                     (counted from {} at the earliest).",
                    since.to_rfc3339()
                ),
                (days, None) => println!("Idle limit: {days} days."),
            }
        }
        AccountCmd::Remove { name, with_uses } => {
            admin
                .call(&api::RemoveAccount {
                    name: name.clone(),
                    query: api::RemoveAccountQuery {
                        with_uses: with_uses.then_some(true),
                    },
                })
                .await?;
            println!("Account {name} removed (its files stay in the repository).");
        }
        AccountCmd::Key(KeyCmd::Add { name, file }) => {
            let line = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body = api::NewKey {
                public_key: line.trim().to_owned(),
            };
            let key = admin.call(&api::AddKey { name, body }).await?;
            println!("Key {} added to {}.", key.fingerprint, key.account);
        }
        AccountCmd::Key(KeyCmd::List { name, json }) => {
            show(&admin, &api::ListKeys { name }, json, |keys| {
                for k in keys {
                    println!("{} {}", k.fingerprint, k.comment);
                }
            })
            .await?;
        }
        AccountCmd::Key(KeyCmd::Remove {
            name,
            fingerprint,
            all,
        }) => {
            let request = api::RemoveKeys {
                name,
                query: api::KeyQuery {
                    fingerprint: fingerprint.clone(),
                    all: all.then_some(true),
                },
            };
            admin.call(&request).await?;
            match fingerprint {
                Some(f) => println!("Key {f} of {} revoked.", request.name),
                None => println!("Every key of {} revoked.", request.name),
            }
        }
        AccountCmd::Token(TokenCmd::Add {
            name,
            label,
            expires_in_days,
        }) => {
            let body = api::NewToken {
                label,
                expires_in_days,
            };
            let t = admin
                .call(&api::AddToken {
                    name: name.clone(),
                    body,
                })
                .await?;
            announce_token(&t, &name);
        }
        AccountCmd::Token(TokenCmd::List { name, json }) => {
            show(&admin, &api::ListTokens { name }, json, |tokens| {
                for t in tokens {
                    let expires = t
                        .expires_at
                        .map_or_else(|| "never".to_owned(), |d| d.to_rfc3339());
                    println!("{}  expires {expires}  {}", t.id, t.label);
                }
            })
            .await?;
        }
        AccountCmd::Permission(PermissionCmd::Set {
            name,
            folder,
            allow,
        }) => {
            let body = api::NewFolderRule {
                path: folder,
                allow: allow.split(',').map(|w| w.trim().to_owned()).collect(),
            };
            let rule = admin.call(&api::SetFolderRule { name, body }).await?;
            println!(
                "{} may now do in {}: {}.",
                rule.account,
                rule.path,
                allowed(&rule.allow)
            );
        }
        AccountCmd::Permission(PermissionCmd::List { name, json }) => {
            show(&admin, &api::ListFolderRules { name }, json, |rules| {
                if rules.is_empty() {
                    println!("No rules: the account may do everything.");
                }
                for r in rules {
                    println!("{:<32} {}", r.path, allowed(&r.allow));
                }
            })
            .await?;
        }
        AccountCmd::Permission(PermissionCmd::Remove { name, folder }) => {
            let request = api::RemoveFolderRule {
                name,
                query: api::FolderQuery { path: folder },
            };
            admin.call(&request).await?;
            println!(
                "The rule of {} for {} is removed.",
                request.name, request.query.path
            );
        }
        AccountCmd::Token(TokenCmd::Remove { name, id }) => {
            let request = api::RemoveToken { name, id };
            admin.call(&request).await?;
            println!("Token {} of {} revoked.", request.id, request.name);
        }
    }
    Ok(())
}

/// Runs an admin command.
pub async fn admins(args: AdminArgs, cmd: AdminCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        AdminCmd::Add {
            name,
            role,
            password_stdin,
            password_file,
        } => {
            let password = read_password(password_stdin, password_file)?.map(Secret::new);
            let body = api::NewAdmin {
                name,
                role,
                password,
            };
            let a = admin.call(&api::CreateAdmin { body }).await?;
            println!("Admin {} created with the {} role.", a.name, a.role);
        }
        AdminCmd::List { json } => {
            show(&admin, &api::ListAdmins {}, json, |admins| {
                println!("{:<24} {:<9} {:<8} TOKENS", "NAME", "ROLE", "PASSWORD");
                for a in admins {
                    let password = if a.has_password { "yes" } else { "no" };
                    println!("{:<24} {:<9} {:<8} {}", a.name, a.role, password, a.tokens);
                }
            })
            .await?;
        }
        AdminCmd::Remove { name } => {
            admin.call(&api::RemoveAdmin { name: name.clone() }).await?;
            println!("Admin {name} removed.");
        }
        AdminCmd::Whoami => {
            let me = admin.call(&api::WhoAmI {}).await?;
            println!("{} ({})", me.name, me.role);
        }
        AdminCmd::Token(AdminTokenCmd::Add { name, label }) => {
            let body = api::NewAdminToken { label };
            let t = admin
                .call(&api::AddAdminToken {
                    name: name.clone(),
                    body,
                })
                .await?;
            announce_token(&t, &format!("admin {name}"));
        }
        AdminCmd::Token(AdminTokenCmd::List { name }) => {
            for t in admin.call(&api::ListAdminTokens { name }).await? {
                println!("{}  {}", t.id, t.label);
            }
        }
        AdminCmd::Token(AdminTokenCmd::Remove { name, id }) => {
            let request = api::RemoveAdminToken { name, id };
            admin.call(&request).await?;
            println!("Token {} of admin {} revoked.", request.id, request.name);
        }
    }
    Ok(())
}

/// Prints a token just made: the note to stderr, the token alone to stdout
/// (so `… > file` keeps just the token).
fn announce_token(t: &api::Token, owner: &str) {
    eprintln!(
        "Token {} created for {owner}. It is shown only now; store it safely.",
        t.id
    );
    println!("{}", t.token.as_deref().unwrap_or_default());
}

/// Runs an audit command.
pub async fn audit(args: AdminArgs, cmd: AuditCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let AuditCmd::List {
        since,
        by,
        limit,
        states,
        json,
    } = cmd;
    let query = api::AuditQuery {
        since,
        admin: by,
        limit: Some(limit),
    };
    show(&admin, &api::ListAudit { query }, json, |records| {
        for r in records {
            println!(
                "{}  {} ({})  {}  {}  {} {}",
                r.at.to_rfc3339(),
                r.admin,
                r.role,
                r.client_addr,
                r.request,
                r.status,
                r.outcome
            );
            if states && !(r.before.is_empty() && r.after.is_empty()) {
                println!("    before {}", r.before);
                println!("    after  {}", r.after);
            }
        }
    })
    .await
}

/// Runs a ban command.
pub async fn ban(args: AdminArgs, cmd: BanCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        BanCmd::List { json } => {
            show(&admin, &api::ListBans {}, json, |bans| {
                if bans.is_empty() {
                    println!("No address is banned.");
                }
                for b in bans {
                    println!(
                        "{:<40} until {}  by {}  {}",
                        b.address,
                        b.until.to_rfc3339(),
                        b.by,
                        b.reason
                    );
                }
            })
            .await?;
        }
        BanCmd::Add {
            address,
            minutes,
            reason,
        } => {
            let body = api::NewBan {
                address,
                minutes,
                reason,
            };
            let b = admin.call(&api::AddBan { body }).await?;
            println!("{} is banned until {}.", b.address, b.until.to_rfc3339());
        }
        BanCmd::Remove { address } => {
            admin
                .call(&api::RemoveBan {
                    address: address.clone(),
                })
                .await?;
            println!("The ban of {address} is lifted.");
        }
    }
    Ok(())
}

/// Runs a virtual-folder command.
pub async fn folder(args: AdminArgs, cmd: FolderCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    match cmd {
        FolderCmd::Add { name, dir } => {
            let body = api::NewVirtualFolder { name, path: dir };
            let f = admin.call(&api::CreateVirtualFolder { body }).await?;
            println!("Virtual folder {} is the directory {}.", f.name, f.path);
        }
        FolderCmd::List { json } => {
            show(&admin, &api::ListVirtualFolders {}, json, |folders| {
                if folders.is_empty() {
                    println!("No virtual folders.");
                }
                for f in folders {
                    println!("{}  {}", f.name, f.path);
                    for m in &f.mounts {
                        println!("    {}:{}  {}", m.account, m.path, allowed(&m.allow));
                    }
                }
            })
            .await?;
        }
        FolderCmd::Remove { name } => {
            let request = api::RemoveVirtualFolder { name };
            admin.call(&request).await?;
            println!("Virtual folder {} removed (its files stay).", request.name);
        }
        FolderCmd::Mount {
            name,
            account,
            at,
            allow,
        } => {
            let body = api::NewMount {
                folder: name,
                path: at,
                allow: allow.split(',').map(|w| w.trim().to_owned()).collect(),
            };
            let m = admin
                .call(&api::MountFolder {
                    name: account,
                    body,
                })
                .await?;
            println!(
                "{} sees {} at {} and may do there: {}.",
                m.account,
                m.folder,
                m.path,
                allowed(&m.allow)
            );
        }
        FolderCmd::Unmount { account, at } => {
            let request = api::UnmountFolder {
                name: account,
                query: api::FolderQuery { path: at },
            };
            admin.call(&request).await?;
            println!(
                "{} no longer sees a folder at {}.",
                request.name, request.query.path
            );
        }
    }
    Ok(())
}

/// Runs a network command.
pub async fn network(args: AdminArgs, cmd: NetworkCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let print = |n: &api::Networks| {
        if n.networks.is_empty() {
            println!("The deny list is empty.");
        }
        for net in &n.networks {
            println!("{net}");
        }
    };
    match cmd {
        NetworkCmd::Show { json } => {
            show(&admin, &api::GetDenyList {}, json, print).await?;
        }
        NetworkCmd::Deny { networks } => {
            let networks = if networks == "none" {
                Vec::new()
            } else {
                networks.split(',').map(|w| w.trim().to_owned()).collect()
            };
            let body = api::Networks { networks };
            print(&admin.call(&api::SetDenyList { body }).await?);
        }
    }
    Ok(())
}

/// A quota as the CLI takes it: a number, optionally with K, M, G or T
/// (powers of 1024, an optional `iB`/`B` after it), or `none` (0: no quota).
fn parse_quota(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t == "none" {
        return Ok(0);
    }
    let t = t.trim_end_matches("iB").trim_end_matches('B');
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (t.get(..i).unwrap_or_default(), Some(c)),
        _ => (t, None),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: a number, with K, M, G or T, or none"))?;
    let shift = match unit.map(|c| c.to_ascii_uppercase()) {
        None => 0,
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some(_) => return Err(format!("{text:?}: the unit is K, M, G or T")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A rule's permissions for people: `nothing` for an empty list.
fn allowed(allow: &[String]) -> String {
    if allow.is_empty() {
        "nothing".to_owned()
    } else {
        allow.join(",")
    }
}

/// Runs a transfer command.
pub async fn transfer(args: AdminArgs, cmd: TransferCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let (filter, query) = match cmd {
        TransferCmd::Show { id, json } => {
            return crate::engine_client::show_transfer(&admin, id, json).await
        }
        TransferCmd::List {
            filter,
            name,
            protocol,
            until,
        } => {
            let mut query = api::TransferQuery::from(filter.query()?);
            query.name = name;
            query.protocol = protocol;
            query.until = until
                .as_deref()
                .map(crate::engine_client::parse_since)
                .transpose()?;
            (filter, query)
        }
    };
    let request = api::ListTransfers { query };
    show(&admin, &request, filter.json, |transfers| {
        println!(
            "{:<36} {:<20} {:<12} {:<9} {:<12} {:>12} {:>12} {:<10} PATH",
            "ID", "STARTED", "ACCOUNT", "DIRECTION", "STATUS", "SIZE", "MOVED", "SHA256"
        );
        for t in transfers {
            let mut path = t.path.clone();
            if let Some(p) = &t.partner {
                path.push_str(&format!("  (partner {p})"));
            }
            let size = t.size.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let sha = t
                .sha256
                .as_deref()
                .map_or("-", |s| s.get(..10).unwrap_or(s));
            println!(
                "{:<36} {:<20} {:<12} {:<9} {:<12} {:>12} {:>12} {:<10} {}",
                t.id,
                when(&t.started_at),
                t.account,
                t.direction.as_str(),
                t.status.as_str(),
                size,
                t.bytes,
                sha,
                path,
            );
        }
    })
    .await
}

/// A time for tables: `2026-01-02 03:04:05` (UTC).
pub(crate) fn when(t: &api::Time) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}
