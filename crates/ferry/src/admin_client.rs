//! Admin commands: talk to a server's admin API over HTTPS with the bearer token.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

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

/// A change whose outcome the server could not tell (exit code 3).
#[derive(Debug)]
pub(crate) struct OutcomeUnknown(pub(crate) String);

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutcomeUnknown {}

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
    /// Remove an account and its keys (its files stay).
    Remove {
        /// Login name.
        name: String,
    },
    /// Manage an account's public keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Manage an account's API tokens (HTTPS `Authorization: Bearer`).
    #[command(subcommand)]
    Token(TokenCmd),
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
    /// List an account's keys.
    List {
        /// Login name.
        name: String,
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
    /// The filter as an API query string (`?limit=…&…`).
    pub fn query(&self) -> anyhow::Result<String> {
        let mut query = format!("?limit={}", self.limit);
        for (key, value) in [
            ("account", &self.account),
            ("status", &self.status),
            ("partner", &self.partner),
        ] {
            if let Some(v) = value {
                query.push_str(&format!("&{key}={}", enc(v)));
            }
        }
        if let Some(s) = &self.since {
            query.push_str(&format!("&since={}", crate::engine_client::parse_since(s)?));
        }
        Ok(query)
    }
}

/// `ferry transfer …`
#[derive(Debug, Subcommand)]
pub enum TransferCmd {
    /// List transfer-log rows, newest first.
    List(#[command(flatten)] ListFilter),
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

    /// A request with the token, for callers that read the answer themselves.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let changes = method != reqwest::Method::GET;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if changes {
            req = req.header("idempotency-key", &self.idempotency_key);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            if value.get("code").and_then(Value::as_str) == Some("outcome_unknown") {
                return Err(OutcomeUnknown(format!(
                    "{message} (HTTP {}): the change may or may not have been made; run the same command with --idempotency-key {} to finish it or learn what happened",
                    status.as_u16(),
                    self.idempotency_key
                ))
                .into());
            }
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(value)
    }
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

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs an account command.
pub async fn account(args: AdminArgs, cmd: AccountCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    let admin = Admin::connect(args)?;
    match cmd {
        AccountCmd::Add {
            name,
            password_stdin,
            password_file,
            home,
        } => {
            let password = read_password(password_stdin, password_file)?;
            let body = serde_json::json!({ "name": name, "password": password, "home": home });
            admin
                .send(Method::POST, "/api/v1/accounts", Some(body))
                .await?;
            println!("Account {name} created.");
        }
        AccountCmd::List { json } => {
            let v = admin.send(Method::GET, "/api/v1/accounts", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<5} {:<8} HOME",
                    "NAME", "ENABLED", "KEYS", "PASSWORD"
                );
                for a in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<8} {:<5} {:<8} {}",
                        a["name"].as_str().unwrap_or_default(),
                        a["enabled"].as_bool().unwrap_or_default(),
                        a["keys"].as_u64().unwrap_or_default(),
                        if a["has_password"].as_bool().unwrap_or_default() {
                            "yes"
                        } else {
                            "no"
                        },
                        a["home"].as_str().unwrap_or_default(),
                    );
                }
            }
        }
        AccountCmd::Enable { name } => {
            admin
                .send(
                    Method::POST,
                    &format!("/api/v1/accounts/{}/enable", enc(&name)),
                    None,
                )
                .await?;
            println!("Account {name} enabled.");
        }
        AccountCmd::Disable { name } => {
            admin
                .send(
                    Method::POST,
                    &format!("/api/v1/accounts/{}/disable", enc(&name)),
                    None,
                )
                .await?;
            println!("Account {name} disabled.");
        }
        AccountCmd::Remove { name } => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/accounts/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("Account {name} removed (its files stay in the repository).");
        }
        AccountCmd::Key(KeyCmd::Add { name, file }) => {
            let line = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body = serde_json::json!({ "public_key": line.trim() });
            let v = admin
                .send(
                    Method::POST,
                    &format!("/api/v1/accounts/{}/keys", enc(&name)),
                    Some(body),
                )
                .await?;
            println!(
                "Key {} added to {name}.",
                v["fingerprint"].as_str().unwrap_or_default()
            );
        }
        AccountCmd::Token(TokenCmd::Add {
            name,
            label,
            expires_in_days,
        }) => {
            let body = serde_json::json!({ "label": label, "expires_in_days": expires_in_days });
            let v = admin
                .send(
                    Method::POST,
                    &format!("/api/v1/accounts/{}/tokens", enc(&name)),
                    Some(body),
                )
                .await?;
            eprintln!(
                "Token {} created for {name}. It is shown only now; store it safely.",
                v["id"].as_str().unwrap_or_default()
            );
            println!("{}", v["token"].as_str().unwrap_or_default());
        }
        AccountCmd::Token(TokenCmd::List { name, json }) => {
            let v = admin
                .send(
                    Method::GET,
                    &format!("/api/v1/accounts/{}/tokens", enc(&name)),
                    None,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for t in v.as_array().into_iter().flatten() {
                    let expires = t["expires_at"]
                        .as_i64()
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .map_or_else(|| "never".to_owned(), |d| d.to_rfc3339());
                    println!(
                        "{}  expires {expires}  {}",
                        t["id"].as_str().unwrap_or_default(),
                        t["label"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        AccountCmd::Token(TokenCmd::Remove { name, id }) => {
            admin
                .send(
                    Method::DELETE,
                    &format!("/api/v1/accounts/{}/tokens/{}", enc(&name), enc(&id)),
                    None,
                )
                .await?;
            println!("Token {id} of {name} revoked.");
        }
        AccountCmd::Key(KeyCmd::List { name }) => {
            let v = admin
                .send(
                    Method::GET,
                    &format!("/api/v1/accounts/{}/keys", enc(&name)),
                    None,
                )
                .await?;
            for k in v.as_array().into_iter().flatten() {
                println!(
                    "{} {}",
                    k["fingerprint"].as_str().unwrap_or_default(),
                    k["comment"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Runs a transfer command.
pub async fn transfer(args: AdminArgs, cmd: TransferCmd) -> anyhow::Result<()> {
    let admin = Admin::connect(args)?;
    let filter = match cmd {
        TransferCmd::Show { id, json } => {
            return crate::engine_client::show_transfer(&admin, &id, json).await
        }
        TransferCmd::List(filter) => filter,
    };
    let query = filter.query()?;
    let v = admin
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/transfers{query}"),
            None,
        )
        .await?;
    if filter.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<36} {:<20} {:<12} {:<9} {:<12} {:>12} {:>12} {:<10} PATH",
        "ID", "STARTED", "ACCOUNT", "DIRECTION", "STATUS", "SIZE", "MOVED", "SHA256"
    );
    for t in v.as_array().into_iter().flatten() {
        let started = chrono_like(t["started_at"].as_i64().unwrap_or_default());
        let mut path = t["path"].as_str().unwrap_or_default().to_owned();
        if let Some(p) = t["partner"].as_str() {
            path.push_str(&format!("  (partner {p})"));
        }
        let size = t["size"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{:<36} {:<20} {:<12} {:<9} {:<12} {:>12} {:>12} {:<10} {}",
            t["id"].as_str().unwrap_or_default(),
            started,
            t["account"].as_str().unwrap_or_default(),
            t["direction"].as_str().unwrap_or_default(),
            t["status"].as_str().unwrap_or_default(),
            size,
            t["bytes"].as_u64().unwrap_or_default(),
            t["sha256"]
                .as_str()
                .map(|s| &s[..s.len().min(10)])
                .unwrap_or("-"),
            path,
        );
    }
    Ok(())
}

pub(crate) fn chrono_like(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
