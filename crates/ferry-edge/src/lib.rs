//! Ferry's edge gateway: terminates SFTP (russh) and HTTPS (rustls, axum) in the DMZ and forwards every
//! credential and file operation to a back-end server over the internal
//! protocol. It stores no file data and no secrets beyond its host key and
//! TLS key.
//!
//! * [`upstream`] — the servers this edge knows, and which one a session uses.
//! * [`ssh`] — the SSH server: algorithms, authentication and channel handling.
//! * [`host_keys`] — the SSH host keys (Ed25519, RSA, ECDSA), created on first start.
//! * [`sftp`] — the SFTP request loop: many requests in flight, replies in order.
//! * [`exec`] — SSH exec requests: legacy scp ([`scp`]) and `sha256sum`/`sha1sum`/`md5sum`.
//! * [`https`] — the HTTPS front: file API, tus uploads, browser client.

pub mod config;
pub mod exec;
pub mod host_keys;
pub mod https;
pub mod metrics;
pub mod scp;
pub mod sftp;
pub mod ssh;
pub mod upstream;

pub use config::EdgeConfig;

use std::net::SocketAddr;
use std::sync::Arc;

/// A running edge.
#[derive(Debug)]
pub struct RunningEdge {
    /// The SFTP listener's address, if SFTP is served.
    pub sftp_addr: Option<SocketAddr>,
    /// The HTTPS listener's address, if HTTPS is served.
    pub https_addr: Option<SocketAddr>,
    /// The metrics listener's address, if metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// The SSH host keys' fingerprints as clients show them (`ssh-ed25519
    /// SHA256:…`), for an operator to hand to partners; none without SFTP.
    pub host_key_fingerprints: Vec<String>,
    /// The client connections of both listeners.
    connections: ferry_worker::Connections,
}

/// How long cut client connections have to close.
const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl RunningEdge {
    /// Stops accepting client connections; the ones open go on.
    pub fn stop_accepting(&self) {
        self.connections.stop_accepting();
    }

    /// Shuts the edge down gracefully: no new client connection is taken,
    /// and the open ones get `drain` to end (a transfer in flight finishes;
    /// what is still open then is cut when the process exits, as a broken
    /// connection: the server keeps an unfinished upload for a resume).
    /// True if every connection ended in time.
    pub async fn shutdown(&self, drain: std::time::Duration) -> bool {
        self.stop_accepting();
        let open = self.connections.open();
        if open > 0 {
            tracing::info!(
                connections = open,
                drain_secs = drain.as_secs_f64(),
                "shutting down: waiting for the client connections to end"
            );
        }
        let drained = self.connections.drain(drain).await;
        if !drained {
            tracing::warn!(
                connections = self.connections.open(),
                "the drain deadline passed: closing the client connections still open"
            );
            if !self.connections.cut(CUT_GRACE).await {
                tracing::warn!(
                    connections = self.connections.open(),
                    "client connections did not close in time"
                );
            }
        }
        tracing::info!("edge stopped");
        drained
    }
}

/// Errors starting an edge.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Something in the setup is wrong; the message says what.
    #[error("{0}")]
    Setup(String),
    /// TLS material is missing or wrong.
    #[error(transparent)]
    Tls(#[from] ferry_proto::ProtoError),
}

/// Loads the host keys, binds the SFTP listener and starts serving.
pub async fn start(config: EdgeConfig) -> Result<RunningEdge, StartError> {
    let tls = ferry_proto::tls::internal_client_config(&config.upstream.tls)?;
    let upstreams =
        upstream::Upstreams::new(config.upstream.servers.clone(), tls, config.node_id.clone());
    start_with(config, Arc::new(upstreams)).await
}

/// Checks everything [`start`] would load of `config` without starting:
/// the certificate and key of the link to the servers, the SSH host keys
/// (a missing one would be created at the first start) and the HTTPS
/// certificate and key. The config file itself was checked by
/// [`EdgeConfig::load`]. Creates nothing. Returns what was checked, a
/// line each.
pub fn check_config(config: &EdgeConfig) -> Result<Vec<String>, StartError> {
    let mut checked = Vec::new();
    let tls = &config.upstream.tls;
    ferry_proto::tls::internal_client_config(tls)?;
    checked.push(format!(
        "certificate {} and key {}: load, signed by {}; servers: {}",
        tls.cert.display(),
        tls.key.display(),
        tls.ca.display(),
        config.upstream.servers.join(", ")
    ));
    if let Some(sftp) = &config.sftp {
        for (kind, path) in host_keys::files(sftp) {
            if path.exists() {
                let key = host_keys::load_or_create(kind, &path)?;
                checked.push(format!(
                    "host key {}: {}",
                    path.display(),
                    host_keys::fingerprint(&key)
                ));
            } else {
                checked.push(format!(
                    "host key {}: will be created at the first start",
                    path.display()
                ));
            }
        }
    }
    if let Some(https) = &config.https {
        ferry_proto::tls::plain_server_config(&https.cert, &https.key, &[b"h2", b"http/1.1"])?;
        checked.push(format!(
            "HTTPS certificate {} and key {}: load",
            https.cert.display(),
            https.key.display()
        ));
    }
    Ok(checked)
}

/// Like [`start`], but every session goes to the server of this process
/// through `link`; `config.upstream` is not used (`ferry up`).
pub async fn start_in_process(
    config: EdgeConfig,
    link: upstream::LocalLink,
) -> Result<RunningEdge, StartError> {
    let upstreams = upstream::Upstreams::in_process(link, config.node_id.clone());
    start_with(config, Arc::new(upstreams)).await
}

async fn start_with(
    config: EdgeConfig,
    upstreams: Arc<upstream::Upstreams>,
) -> Result<RunningEdge, StartError> {
    let connections = ferry_worker::Connections::new();
    // One for both listeners: they share the bound on headers awaited.
    let proxy = config.proxy_protocol.protocol();
    let https_addr = match config.https.clone() {
        Some(https) => {
            Some(https::start(upstreams.clone(), https, connections.clone(), proxy.clone()).await?)
        }
        None => None,
    };
    let metrics_addr = match &config.metrics {
        Some(m) => Some(metrics::start(m.listen, upstreams.clone()).await?),
        None => None,
    };
    let (sftp_addr, host_key_fingerprints) = match &config.sftp {
        Some(sftp) => {
            let (addr, fingerprints) =
                start_sftp(sftp, upstreams, connections.clone(), proxy).await?;
            (Some(addr), fingerprints)
        }
        None => (None, Vec::new()),
    };
    let shown = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(
        node = %config.node_id,
        sftp_addr = %shown(sftp_addr),
        https_addr = %shown(https_addr),
        metrics_addr = %shown(metrics_addr),
        "edge started"
    );
    if !config.proxy_protocol.trusted.is_empty() {
        let trusted = ferry_core::network::format_networks(&config.proxy_protocol.trusted);
        tracing::info!(%trusted, "PROXY protocol headers are read from these proxies");
    }
    Ok(RunningEdge {
        sftp_addr,
        https_addr,
        metrics_addr,
        host_key_fingerprints,
        connections,
    })
}

async fn start_sftp(
    sftp: &config::SftpConfig,
    upstreams: Arc<upstream::Upstreams>,
    connections: ferry_worker::Connections,
    proxy: ferry_http::proxy::ProxyProtocol,
) -> Result<(SocketAddr, Vec<String>), StartError> {
    let host_keys = host_keys::load_or_create_all(sftp)?;
    let fingerprints = host_keys.iter().map(host_keys::fingerprint).collect();
    let listener = tokio::net::TcpListener::bind(sftp.listen)
        .await
        .map_err(|e| StartError::Setup(format!("cannot listen on {} (sftp): {e}", sftp.listen)))?;
    let sftp_addr = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    tokio::spawn(ssh::serve(
        listener,
        ssh::SshConfigs::new(sftp, host_keys),
        upstreams,
        sftp.max_sessions,
        Arc::new(ssh::PreAuth::new(sftp)),
        connections,
        proxy,
    ));
    Ok((sftp_addr, fingerprints))
}
