//! The server's configuration file (`ferry server --config FILE`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_proto::tls::TlsFiles;
use serde::Deserialize;

/// Configuration of one back-end server. Relative paths are taken from the
/// directory of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id: recorded in every transfer-log row it writes.
    pub node_id: String,
    /// How it logs (`[log]`; the command line's flags win).
    #[serde(default)]
    pub log: ferry_core::logging::LogConfig,
    /// Node-local state: the SQLite database lives here.
    pub state_dir: PathBuf,
    /// The shared repository: one home directory per account. Must exist.
    pub repository: PathBuf,
    /// Flush each upload to stable storage before acknowledging its close.
    #[serde(default = "default_true")]
    pub fsync_uploads: bool,
    /// Seconds a shutdown (SIGTERM, SIGINT) waits for the transfers in
    /// flight to finish before it ends them (their partial data is kept).
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// The listener edges connect to (mutual TLS).
    pub internal: InternalConfig,
    /// The admin API listener (HTTPS, bearer token).
    pub admin: AdminConfig,
    /// Resumable (tus) uploads.
    #[serde(default)]
    pub uploads: UploadsConfig,
    /// The transfer engine: queue workers, leases, partner credentials.
    #[serde(default)]
    pub engine: crate::engine::EngineConfig,
    /// Banning client addresses that fail to log in too often.
    #[serde(default)]
    pub defender: crate::defender::DefenderConfig,
    /// Working with other servers (`single` by default).
    #[serde(default)]
    pub cluster: ferry_cluster::ClusterConfig,
    /// The config file this was read from (its directory is the config
    /// directory the sync manifests are relative to).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Run as a witness (`ferry server --witness`): votes in promotions,
    /// serves nothing, needs no repository.
    #[serde(skip)]
    pub witness: bool,
}

/// Resumable uploads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// An unfinished upload that receives nothing for this long is removed.
    #[serde(default = "default_upload_expiry")]
    pub expire_after_secs: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            expire_after_secs: default_upload_expiry(),
        }
    }
}

fn default_drain_secs() -> u64 {
    30
}

impl ServerConfig {
    /// The shutdown's drain deadline.
    pub fn drain(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_secs.min(86_400))
    }
}

fn default_upload_expiry() -> u64 {
    86_400
}

/// The internal-protocol listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// CA, certificate and key of this node.
    #[serde(flatten)]
    pub tls: TlsFiles,
    /// A connection that has not finished TLS within this many seconds is
    /// closed (the hello that follows has 10 s of its own).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Most internal connections at once that have not yet finished TLS
    /// and the hello (admitted edges and peers do not count).
    #[serde(default = "default_internal_max")]
    pub max_connections: usize,
    /// The same, from one address.
    #[serde(default = "default_internal_per_address")]
    pub max_connections_per_address: usize,
}

fn default_handshake_timeout() -> u64 {
    10
}

fn default_internal_max() -> usize {
    1024
}

fn default_internal_per_address() -> usize {
    128
}

/// The admin API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Keep it off the DMZ.
    pub listen: SocketAddr,
    /// File holding the bearer token (mode 0600).
    pub token_file: PathBuf,
    /// Delay of every failed admin password login (HTTP Basic, the
    /// console's login), in milliseconds: the same whatever was wrong.
    #[serde(default = "default_admin_failure_delay")]
    pub login_failure_delay_ms: u64,
}

fn default_admin_failure_delay() -> u64 {
    1000
}

fn default_true() -> bool {
    true
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

impl ServerConfig {
    /// Reads and validates `path`; relative paths inside are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_as(path, false)
    }

    /// [`ServerConfig::load`], for a witness when `witness` is set.
    pub fn load_as(path: &Path, witness: bool) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let mut config: ServerConfig = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.state_dir = base.join(&config.state_dir);
        config.repository = base.join(&config.repository);
        config.internal.tls = config.internal.tls.resolved(base);
        config.admin.token_file = base.join(&config.admin.token_file);
        config.engine.secret_key_file = config.engine.secret_key_file.map(|f| base.join(f));
        config.config_file = Some(path.to_owned());
        config.witness = witness;
        config.validate().map_err(error)?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "field `node_id`: {:?} must be non-empty letters, digits, '-', '_' or '.'",
                self.node_id
            ));
        }
        self.cluster
            .validate(&self.node_id)
            .map_err(|e| e.to_string())?;
        if self.witness {
            if self.cluster.mode == ferry_cluster::Mode::Single {
                return Err(
                    "--witness needs [cluster] mode = \"active-passive\" or \"active-active\", and its peers".into(),
                );
            }
            return Ok(());
        }
        if !self.repository.is_dir() {
            return Err(format!(
                "field `repository`: {} is not an existing directory",
                self.repository.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let server: ServerConfig =
            toml::from_str(include_str!("../../../etc/server.toml")).unwrap();
        assert_eq!(server.log.format, ferry_core::logging::LogFormat::Text);
        assert!(server.defender.enabled);
    }
}
