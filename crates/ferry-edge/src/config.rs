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
    /// How it logs (`[log]`; the command line's flags win).
    #[serde(default)]
    pub log: ferry_core::logging::LogConfig,
    /// Prometheus metrics (`[metrics]`); left out: not served.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The SFTP front, if this edge serves SFTP.
    pub sftp: Option<SftpConfig>,
    /// The HTTPS front, if this edge serves HTTPS.
    pub https: Option<HttpsConfig>,
    /// The back-end servers.
    pub upstream: UpstreamConfig,
    /// The PROXY protocol from load balancers in front of both listeners.
    /// Left out: off, every connection is taken as it comes.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocolConfig,
    /// Seconds a shutdown (SIGTERM, SIGINT) waits for the open client
    /// connections to end before it closes them.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
}

fn default_drain_secs() -> u64 {
    30
}

impl EdgeConfig {
    /// The shutdown's drain deadline.
    pub fn drain(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_secs.min(86_400))
    }
}

/// Load balancers that open each connection with a PROXY protocol header
/// (HAProxy's `send-proxy` or `send-proxy-v2`), on the SFTP and the HTTPS
/// listener alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    /// Addresses or networks (CIDR) of the balancers. A connection from
    /// one of them must start with a header (v1 or v2), and the client
    /// address it names is the client's for everything after: caps per
    /// address, login throttles, the transfer log, logs. Connections from
    /// anywhere else are taken as they are, and a header they send is not
    /// believed (the SSH or TLS handshake fails on it). Empty, the
    /// default: off.
    #[serde(default, deserialize_with = "networks")]
    pub trusted: Vec<ipnet::IpNet>,
    /// Seconds a balancer has to send the header once it has connected
    /// (1 to 60).
    #[serde(default = "default_proxy_header_timeout")]
    pub header_timeout_secs: u64,
}

impl Default for ProxyProtocolConfig {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            header_timeout_secs: default_proxy_header_timeout(),
        }
    }
}

impl ProxyProtocolConfig {
    /// What the listeners read and believe.
    pub fn protocol(&self) -> ferry_http::proxy::ProxyProtocol {
        ferry_http::proxy::ProxyProtocol::new(
            self.trusted.clone(),
            std::time::Duration::from_secs(self.header_timeout_secs.clamp(1, 60)),
        )
    }
}

fn default_proxy_header_timeout() -> u64 {
    ferry_http::proxy::DEFAULT_HEADER_TIMEOUT.as_secs()
}

/// A list of addresses or CIDR networks, as `ferry_core::network` parses them.
fn networks<'de, D>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let entries = Vec::<String>::deserialize(deserializer)?;
    ferry_core::network::parse_networks(&entries.join(","))
        .map_err(|e| serde::de::Error::custom(e.message))
}

/// The SFTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// The SSH host keys, one file per algorithm (OpenSSH format, mode
    /// 0600), each created on first start if missing. Left out: all three,
    /// as `ssh_host_{ed25519,rsa,ecdsa}_key` beside the config file.
    #[serde(default)]
    pub host_keys: Option<HostKeyFiles>,
    /// The older single-key form: this one file is the only host key served
    /// (created as Ed25519 if missing). Not allowed with `host_keys`.
    #[serde(default)]
    pub host_key: Option<PathBuf>,
    /// Offer zlib compression (`zlib@openssh.com`, from the login on) besides `none`.
    /// Off by default: file data is mostly compressed already, and
    /// compression costs CPU on every packet.
    #[serde(default)]
    pub compression: bool,
    /// Also offer finite-field Diffie-Hellman (group 14, SHA-256) for
    /// partners whose clients know no elliptic-curve exchange. Off by
    /// default: its math is expensive for the server ("DHEat").
    #[serde(default)]
    pub finite_field_dh: bool,
    /// Delay of every failed login, in milliseconds (the same for all reasons).
    #[serde(default = "default_auth_delay")]
    pub auth_failure_delay_ms: u64,
    /// Authentication attempts allowed per connection.
    #[serde(default = "default_auth_attempts")]
    pub max_auth_attempts: usize,
    /// Idle sessions are closed after this many seconds, and so are
    /// sessions whose client takes no replies (or sends no data an exec
    /// command waits for) for as long.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Most concurrent SSH connections.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A connection that has not logged in after this many seconds is
    /// closed (OpenSSH's `LoginGraceTime`).
    #[serde(default = "default_login_grace")]
    pub login_grace_secs: u64,
    /// Most connections not yet logged in. From half of this on, new ones
    /// are dropped at random, 30 % rising to all at the limit (OpenSSH's
    /// `MaxStartups`, as 128:30:256 with the default).
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: usize,
    /// Most connections not yet logged in from one address
    /// (OpenSSH's `PerSourceMaxStartups`): a flood from one address never
    /// shuts out the others.
    #[serde(default = "default_max_unauthenticated_per_address")]
    pub max_unauthenticated_per_address: usize,
    /// New connections one address may open per second on average, in
    /// bursts of up to four times as many; more are closed at once (every
    /// key exchange costs the server a signature).
    #[serde(default = "default_new_connections_per_address")]
    pub new_connections_per_address_per_sec: u32,
}

/// Default of [`SftpConfig::new_connections_per_address_per_sec`].
pub const DEFAULT_NEW_CONNECTIONS_PER_ADDRESS: u32 = 20;

fn default_new_connections_per_address() -> u32 {
    DEFAULT_NEW_CONNECTIONS_PER_ADDRESS
}

/// SSH host key files by algorithm; a field left out is not served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostKeyFiles {
    /// Ed25519 key, the one modern clients pick.
    pub ed25519: Option<PathBuf>,
    /// RSA key (3072 bits when created, at least 2048), signed with
    /// rsa-sha2-512 or rsa-sha2-256; SHA-1 `ssh-rsa` signatures are not offered.
    pub rsa: Option<PathBuf>,
    /// ECDSA key on NIST P-256.
    pub ecdsa: Option<PathBuf>,
}

impl HostKeyFiles {
    /// All three keys in `dir`, named as OpenSSH names its own.
    pub fn in_dir(dir: &Path) -> Self {
        HostKeyFiles {
            ed25519: Some(dir.join("ssh_host_ed25519_key")),
            rsa: Some(dir.join("ssh_host_rsa_key")),
            ecdsa: Some(dir.join("ssh_host_ecdsa_key")),
        }
    }

    fn resolved(self, base: &Path) -> Self {
        HostKeyFiles {
            ed25519: self.ed25519.map(|p| base.join(p)),
            rsa: self.rsa.map(|p| base.join(p)),
            ecdsa: self.ecdsa.map(|p| base.join(p)),
        }
    }
}

/// `[metrics]` of the edge's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (plain HTTP): keep it on loopback or
    /// a management network.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9101))
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
    /// Browser sessions (the cookie, a credential the servers hold) end
    /// this many seconds after the login, or at logout (the servers keep
    /// it between 60 s and 7 days).
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: u64,
    /// Most HTTPS connections open at once.
    #[serde(default = "default_max_sessions")]
    pub max_connections: usize,
    /// Most HTTPS connections open at once from one address.
    #[serde(default = "default_https_per_address")]
    pub max_connections_per_address: usize,
    /// A connection that moves no byte for this many seconds while none of
    /// its requests is being handled is closed; a TLS handshake must be done
    /// in this time too (at most 30 s).
    #[serde(default = "default_https_idle")]
    pub idle_timeout_secs: u64,
    /// A request body the server waits for must bring at least 1 KiB in
    /// each period of this many seconds, or the request fails and its
    /// connection is closed (a chunked upload that never ends, a trickle).
    #[serde(default = "default_https_idle")]
    pub body_timeout_secs: u64,
}

/// Default of [`HttpsConfig::idle_timeout_secs`] and
/// [`HttpsConfig::body_timeout_secs`].
pub const DEFAULT_HTTPS_IDLE_SECS: u64 = 60;

/// Default of [`HttpsConfig::max_connections_per_address`].
pub const DEFAULT_HTTPS_PER_ADDRESS: usize = 64;

fn default_https_idle() -> u64 {
    DEFAULT_HTTPS_IDLE_SECS
}

fn default_https_per_address() -> usize {
    DEFAULT_HTTPS_PER_ADDRESS
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
/// Default of [`SftpConfig::login_grace_secs`].
pub const DEFAULT_LOGIN_GRACE_SECS: u64 = 60;
/// Default of [`SftpConfig::max_unauthenticated`].
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 256;
/// Default of [`SftpConfig::max_unauthenticated_per_address`]: room for a
/// burst of logins from one address (a NAT, a proxy), while one address
/// alone never reaches the early drop of the overall cap.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 64;

fn default_login_grace() -> u64 {
    DEFAULT_LOGIN_GRACE_SECS
}
fn default_max_unauthenticated() -> usize {
    DEFAULT_MAX_UNAUTHENTICATED
}
fn default_max_unauthenticated_per_address() -> usize {
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
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
            match (sftp.host_key.take(), sftp.host_keys.take()) {
                (Some(_), Some(_)) => {
                    return Err(error(
                        "`sftp.host_key` and `sftp.host_keys` both given: use `[sftp.host_keys]` \
                         (ed25519, rsa, ecdsa) alone"
                            .into(),
                    ))
                }
                (Some(one), None) => sftp.host_key = Some(base.join(one)),
                (None, Some(keys)) => {
                    let keys = keys.resolved(base);
                    if keys.ed25519.is_none() && keys.rsa.is_none() && keys.ecdsa.is_none() {
                        return Err(error(
                            "field `sftp.host_keys`: name at least one of ed25519, rsa, ecdsa"
                                .into(),
                        ));
                    }
                    sftp.host_keys = Some(keys);
                }
                (None, None) => sftp.host_keys = Some(HostKeyFiles::in_dir(base)),
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_configs_parse() {
        let edge: EdgeConfig = toml::from_str(include_str!("../../../etc/edge.toml")).unwrap();
        assert_eq!(edge.log.format, ferry_core::logging::LogFormat::Text);
        let json: ferry_core::logging::LogConfig =
            toml::from_str("level = \"debug\"\nformat = \"json\"\n").unwrap();
        assert_eq!(json.format, ferry_core::logging::LogFormat::Json);
        assert!(toml::from_str::<ferry_core::logging::LogConfig>("format = \"xml\"\n").is_err());
    }

    fn load(sftp: &str) -> (tempfile::TempDir, Result<EdgeConfig, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        let text = format!(
            "node_id = \"e\"\n[sftp]\nlisten = \"127.0.0.1:0\"\n{sftp}\n\
             [upstream]\nservers = [\"s:7401\"]\nca = \"ca.crt\"\ncert = \"e.crt\"\nkey = \"e.key\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let config = EdgeConfig::load(&path);
        (dir, config)
    }

    #[test]
    fn without_host_key_settings_all_three_keys_sit_beside_the_config() {
        let (dir, config) = load("");
        let sftp = config.unwrap().sftp.unwrap();
        assert!(sftp.host_key.is_none());
        let keys = sftp.host_keys.unwrap();
        assert_eq!(keys.rsa.unwrap(), dir.path().join("ssh_host_rsa_key"));
        assert_eq!(keys.ecdsa.unwrap(), dir.path().join("ssh_host_ecdsa_key"));
        assert_eq!(
            keys.ed25519.unwrap(),
            dir.path().join("ssh_host_ed25519_key")
        );
        assert!(!sftp.compression);
    }

    #[test]
    fn the_single_host_key_form_still_loads_and_serves_one_key() {
        let (dir, config) = load("host_key = \"old_key\"");
        let sftp = config.unwrap().sftp.unwrap();
        assert_eq!(sftp.host_key.unwrap(), dir.path().join("old_key"));
        assert!(sftp.host_keys.is_none());
    }

    #[test]
    fn a_partial_table_serves_only_what_it_names() {
        let (dir, config) = load("[sftp.host_keys]\necdsa = \"k\"");
        let keys = config.unwrap().sftp.unwrap().host_keys.unwrap();
        assert_eq!(keys.ecdsa.unwrap(), dir.path().join("k"));
        assert!(keys.rsa.is_none() && keys.ed25519.is_none());
    }

    #[test]
    fn proxy_protocol_is_off_unless_networks_are_given() {
        let (_d, config) = load("");
        let config = config.unwrap();
        assert!(config.proxy_protocol.trusted.is_empty());
        assert!(!config.proxy_protocol.protocol().is_on());
        let (_d, config) = load(
            "[proxy_protocol]\ntrusted = [\"10.0.0.5\", \"10.1.0.9/24\"]\nheader_timeout_secs = 3",
        );
        let proxy = config.unwrap().proxy_protocol;
        let trusted: Vec<String> = proxy.trusted.iter().map(ToString::to_string).collect();
        assert_eq!(trusted, ["10.0.0.5/32", "10.1.0.0/24"]);
        assert_eq!(proxy.header_timeout_secs, 3);
        assert!(proxy.protocol().trusts("10.1.0.200".parse().unwrap()));
        let (_d, bad) = load("[proxy_protocol]\ntrusted = [\"lb.example.net\"]");
        let err = bad.unwrap_err().to_string();
        assert!(err.contains("is not a network"), "{err}");
    }

    #[test]
    fn both_forms_or_an_empty_table_are_refused_clearly() {
        let (_d, both) = load("host_key = \"a\"\n[sftp.host_keys]\nrsa = \"b\"");
        let err = both.unwrap_err().to_string();
        assert!(
            err.contains("`sftp.host_key` and `sftp.host_keys`"),
            "{err}"
        );
        let (_d, empty) = load("[sftp.host_keys]");
        let err = empty.unwrap_err().to_string();
        assert!(err.contains("name at least one"), "{err}");
        let (_d, typo) = load("[sftp.host_keys]\ndsa = \"x\"");
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
    }
}
