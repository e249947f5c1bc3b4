//! The edge's configuration file (`ferry edge --config FILE`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_proto::tls::TlsFiles;
use serde::Deserialize;

/// Configuration of one edge. Relative paths are taken from the directory of
/// the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// This edge's id, sent to servers in the handshake.
    pub node_id: String,
    /// The SFTP front, if this edge serves SFTP.
    pub sftp: Option<SftpConfig>,
    /// The HTTPS front, if this edge serves HTTPS.
    pub https: Option<HttpsConfig>,
    /// The back-end servers.
    pub upstream: UpstreamConfig,
}

/// The SFTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// The SSH host key (OpenSSH format); created on first start if missing.
    pub host_key: PathBuf,
    /// Delay of every failed login, in milliseconds (the same for all reasons).
    #[serde(default = "default_auth_delay")]
    pub auth_failure_delay_ms: u64,
    /// Authentication attempts allowed per connection.
    #[serde(default = "default_auth_attempts")]
    pub max_auth_attempts: usize,
    /// Idle sessions are closed after this many seconds.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Most concurrent SSH connections.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

/// The HTTPS listener (file API, tus uploads, browser client).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Certificate chain shown to clients (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Largest upload accepted, in bytes (`PUT` body or tus `Upload-Length`).
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// Delay of every failed login, in milliseconds.
    #[serde(default = "default_auth_delay")]
    pub auth_failure_delay_ms: u64,
    /// Failed logins allowed per client address, and per account name, in
    /// one window before further attempts are refused (429).
    #[serde(default = "default_login_failures")]
    pub max_login_failures: u32,
    /// The window of `max_login_failures`, in seconds.
    #[serde(default = "default_login_window")]
    pub login_failure_window_secs: u64,
    /// A password or token login is reused for this many seconds (so a
    /// revoked token or changed password takes at most this long to bite).
    #[serde(default = "default_login_cache")]
    pub login_cache_secs: u64,
    /// Browser sessions end after this many seconds without a request.
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: u64,
    /// Most HTTPS connections open at once.
    #[serde(default = "default_max_sessions")]
    pub max_connections: usize,
}

fn default_max_upload() -> u64 {
    1 << 40
}
fn default_login_failures() -> u32 {
    10
}
fn default_login_window() -> u64 {
    300
}
fn default_login_cache() -> u64 {
    60
}
fn default_session_idle() -> u64 {
    1800
}

/// Where the servers are, and the TLS material to reach them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Servers' internal addresses (`host:port`); the host must be in the
    /// server's certificate. A new session goes to the next one that answers.
    pub servers: Vec<String>,
    /// CA, certificate and key of this edge.
    #[serde(flatten)]
    pub tls: TlsFiles,
}

fn default_auth_delay() -> u64 {
    1000
}
fn default_auth_attempts() -> usize {
    6
}
fn default_idle() -> u64 {
    3600
}
fn default_max_sessions() -> usize {
    1000
}

/// A config file that could not be used; the message names the file and field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl EdgeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let mut config: EdgeConfig = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(sftp) = &mut config.sftp {
            sftp.host_key = base.join(&sftp.host_key);
            if sftp.max_auth_attempts == 0 {
                return Err(error(
                    "field `sftp.max_auth_attempts`: must be at least 1".into(),
                ));
            }
        }
        if let Some(https) = &mut config.https {
            https.cert = base.join(&https.cert);
            https.key = base.join(&https.key);
            if https.max_login_failures == 0 {
                return Err(error(
                    "field `https.max_login_failures`: must be at least 1".into(),
                ));
            }
        }
        if config.sftp.is_none() && config.https.is_none() {
            return Err(error(
                "an edge needs an `[sftp]` or an `[https]` section (or both)".into(),
            ));
        }
        config.upstream.tls = config.upstream.tls.resolved(base);
        if config.upstream.servers.is_empty() {
            return Err(error(
                "field `upstream.servers`: at least one server is needed".into(),
            ));
        }
        for s in &config.upstream.servers {
            if s.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(error(format!(
                    "field `upstream.servers`: {s:?} is not host:port"
                )));
            }
        }
        Ok(config)
    }
}
