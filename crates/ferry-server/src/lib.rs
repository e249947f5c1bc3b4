//! Ferry's back-end server.
//!
//! It owns the state (the [`ferry_store::Store`]) and the account homes in the
//! repository, serves edge connections over the internal protocol
//! ([`session`]), and exposes the admin API ([`admin`]).

pub mod admin;
pub mod auth;
pub mod config;
pub mod repository;
pub mod session;
pub mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::{Command, FerryError, Outcome};
use ferry_proto::message::Role;
use ferry_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use sha2::Digest;
use tokio::net::TcpListener;

pub use config::{AdminConfig, ConfigError, InternalConfig, ServerConfig};

/// What every part of the server shares.
#[derive(Debug)]
pub struct ServerCtx {
    /// This node's id.
    pub node_id: String,
    /// The store.
    pub store: Arc<Store>,
    /// The repository root.
    pub repository: PathBuf,
    /// Flush uploads before acknowledging their close.
    pub fsync_uploads: bool,
}

impl ServerCtx {
    /// Applies a command to shared state. The single write path: on a single
    /// node it goes straight to the store.
    pub fn apply(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.store.apply(command).map_err(FerryError::from)
    }
}

/// A running server and the addresses it listens on.
#[derive(Debug)]
pub struct RunningServer {
    /// The internal-protocol listener.
    pub internal_addr: SocketAddr,
    /// The admin API listener.
    pub admin_addr: SocketAddr,
    /// Shared state.
    pub ctx: Arc<ServerCtx>,
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or directory could not be used.
    #[error("{0}")]
    Setup(String),
    /// The store could not be opened.
    #[error("store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        source: ferry_store::StoreError,
    },
    /// TLS material is missing or wrong.
    #[error(transparent)]
    Tls(#[from] ferry_proto::ProtoError),
}

/// Opens the store, binds both listeners and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        StartError::Setup(format!(
            "cannot create state_dir {}: {e}",
            config.state_dir.display()
        ))
    })?;
    let db = config.state_dir.join("ferry.db");
    let store = Store::open(&db).map_err(|source| StartError::Store {
        path: db.display().to_string(),
        source,
    })?;
    ferry_proto::tls::check_private(&config.admin.token_file)?;
    let token = std::fs::read_to_string(&config.admin.token_file).map_err(|e| {
        StartError::Setup(format!(
            "cannot read admin token {}: {e}",
            config.admin.token_file.display()
        ))
    })?;
    let token = token.trim();
    if token.len() < 16 {
        return Err(StartError::Setup(format!(
            "admin token in {} is shorter than 16 characters",
            config.admin.token_file.display()
        )));
    }
    let internal_tls = ferry_proto::tls::internal_server_config(&config.internal.tls)?;
    let admin_tls = ferry_proto::tls::plain_server_config(
        &config.internal.tls.cert,
        &config.internal.tls.key,
        &[b"h2", b"http/1.1"],
    )?;

    let ctx = Arc::new(ServerCtx {
        node_id: config.node_id.clone(),
        store: Arc::new(store),
        repository: config.repository.clone(),
        fsync_uploads: config.fsync_uploads,
    });

    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Setup(format!("cannot listen on {addr} ({what}): {e}")))
    };
    let internal = bind(config.internal.listen, "internal").await?;
    let admin = bind(config.admin.listen, "admin").await?;
    let internal_addr = internal
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;

    tokio::spawn(serve_internal(internal, internal_tls, ctx.clone()));
    let state = admin::AdminState {
        ctx: ctx.clone(),
        token_digest: sha2::Sha256::digest(token.as_bytes()).into(),
    };
    tokio::spawn(serve_admin(admin, admin_tls, admin::router(state)));
    tracing::info!(node = %config.node_id, %internal_addr, %admin_addr, "server started");
    Ok(RunningServer {
        internal_addr,
        admin_addr,
        ctx,
    })
}

async fn serve_internal(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<ServerCtx>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "internal TLS handshake failed");
                    return;
                }
            };
            match ferry_proto::server::accept(stream, &ctx.node_id, &[Role::Edge]).await {
                Ok((hello, version, framed)) => {
                    tracing::info!(%peer, edge = %hello.node_id, version, "edge connected");
                    session::serve_connection(framed, ctx, peer.to_string()).await;
                }
                Err(e) => tracing::warn!(%peer, error = %e, "internal handshake failed"),
            }
        });
    }
}

async fn serve_admin(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: axum::Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "admin TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(router);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            }
        });
    }
}
