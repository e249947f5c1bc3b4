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
    let https_addr = match config.https.clone() {
        Some(https) => Some(https::start(upstreams.clone(), https).await?),
        None => None,
    };
    let sftp_addr = match &config.sftp {
        Some(sftp) => Some(start_sftp(sftp, upstreams).await?),
        None => None,
    };
    tracing::info!(node = %config.node_id, ?sftp_addr, ?https_addr, "edge started");
    Ok(RunningEdge {
        sftp_addr,
        https_addr,
    })
}

async fn start_sftp(
    sftp: &config::SftpConfig,
    upstreams: Arc<upstream::Upstreams>,
) -> Result<SocketAddr, StartError> {
    let host_keys = host_keys::load_or_create_all(sftp)?;
    let listener = tokio::net::TcpListener::bind(sftp.listen)
        .await
        .map_err(|e| StartError::Setup(format!("cannot listen on {} (sftp): {e}", sftp.listen)))?;
    let sftp_addr = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let ssh_config = Arc::new(ssh::russh_config(sftp, host_keys));
    tokio::spawn(ssh::serve(
        listener,
        ssh_config,
        upstreams,
        sftp.max_sessions,
        Arc::new(ssh::PreAuth::new(sftp)),
    ));
    Ok(sftp_addr)
}
