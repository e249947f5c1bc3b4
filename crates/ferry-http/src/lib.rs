//! HTTPS plumbing shared by the server's admin API and the edge's file API:
//! the TLS accept loop (with the client's address on every request, read
//! from a PROXY protocol header behind a trusted load balancer, caps on
//! connections overall and per address, deadlines for the handshake and
//! request headers, an idle timeout, and a minimum rate for request bodies)
//! and JSON errors with stable codes.

pub mod limits;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ferry_core::{ErrorKind, FerryError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::limits::{Activity, MinRate, Responding, Watched};

/// The client of a request: the TCP peer, or behind a trusted proxy the
/// source its PROXY protocol header names (never taken from an HTTP
/// header). Every request served by [`serve_tls`] carries it as an extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Limits of one HTTPS listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_connections_per_address: usize,
    /// Time a client has to finish the TLS handshake, and then each
    /// request's headers.
    pub header_timeout: Duration,
    /// A connection that moves no byte for this long while none of its
    /// requests is being handled is closed (HTTP/1 keep-alive and HTTP/2
    /// alike).
    pub idle_timeout: Duration,
    /// A request body that brings less than
    /// [`limits::MIN_BODY_BYTES_PER_WINDOW`] in this long, while its handler
    /// waits for it, fails and its connection is closed.
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_connections_per_address: 64,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` over TLS on `listener` until the process ends. `what`
/// names the listener in logs. A connection from a peer `proxy` trusts
/// starts with a PROXY protocol header, read before the caps count it: its
/// source is the client address from then on.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServeLimits,
    what: &'static str,
    connections: ferry_worker::Connections,
    proxy: proxy::ProxyProtocol,
) {
    let front = Front {
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        router,
        limits,
        what,
        cut: connections.clone(),
    };
    let caps = ferry_core::limits::AddressCaps::new(
        limits.max_connections,
        limits.max_connections_per_address,
    );
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = connections.stopped() => {
                tracing::info!(listener = what, "listener closed (shutting down)");
                return;
            }
        };
        let (mut tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let front = front.clone();
        if proxy.trusts(peer.ip()) {
            // The header comes first, in the connection's own task; then
            // the caps count the client it names.
            let (proxy, caps) = (proxy.clone(), caps.clone());
            connections.serve(async move {
                let client = match proxy.client(&mut tcp, peer).await {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!(listener = what, proxy = %peer, error = %e, "connection from a trusted proxy without a valid PROXY header; closed");
                        return;
                    }
                };
                tracing::debug!(listener = what, %client, proxy = %peer, "PROXY header read");
                if let Some(slot) = admit(&caps, client, what) {
                    front.serve(tcp, client, slot).await;
                }
            });
        } else if let Some(slot) = admit(&caps, peer, what) {
            connections.serve(front.serve(tcp, peer, slot));
        }
    }
}

/// A place for a connection from `client` under the caps, or none (logged).
fn admit(
    caps: &Arc<ferry_core::limits::AddressCaps>,
    client: SocketAddr,
    what: &'static str,
) -> Option<ferry_core::limits::Slot> {
    match caps.admit(client.ip()) {
        Ok(slot) => Some(slot),
        Err(why) => {
            tracing::warn!(listener = what, peer = %client, ?why, "too many connections; closed");
            None
        }
    }
}

/// What every connection of one TLS listener shares.
#[derive(Clone)]
struct Front {
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: ServeLimits,
    what: &'static str,
    cut: ferry_worker::Connections,
}

impl Front {
    /// Finishes the TLS handshake and serves the connection of `peer` (the
    /// client, the PROXY header's source behind a trusted proxy).
    async fn serve(
        self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: ferry_core::limits::Slot,
    ) {
        let _slot = slot;
        let Front {
            acceptor,
            router,
            limits,
            what,
            cut,
        } = self;
        let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await;
        let stream = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(listener = what, %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(listener = what, %peer, "TLS handshake timed out");
                return;
            }
        };
        tokio::select! {
            () = serve_connection(stream, router, peer, limits, what) => {}
            () = cut.cutting() => {
                tracing::debug!(listener = what, %peer, "connection closed (shutting down)");
            }
        }
    }
}

/// Serves one connection until it ends, goes idle, or a request body stalls.
async fn serve_connection<S>(
    stream: S,
    router: Router,
    peer: SocketAddr,
    limits: ServeLimits,
    what: &'static str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let watch = activity.clone();
    let body_timeout = limits.body_timeout;
    let router = router
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let handling = watch.handling();
                let activity = watch.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = axum::body::Body::new(MinRate::new(body, body_timeout));
                    let response = next
                        .run(axum::extract::Request::from_parts(parts, body))
                        .await;
                    let (parts, body) = response.into_parts();
                    let body = axum::body::Body::new(Responding::new(body, activity, handling));
                    axum::response::Response::from_parts(parts, body)
                }
            },
        ))
        .layer(axum::Extension(ClientAddr(peer)));
    let service = TowerToHyperService::new(router);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(
        TokioIo::new(Watched::new(stream, activity.clone())),
        service,
    );
    tokio::pin!(connection);
    loop {
        // Wake at the moment the connection would go idle, or now and then
        // while a request is being handled.
        let wake = activity
            .idle_at(limits.idle_timeout)
            .unwrap_or_else(|| tokio::time::Instant::now() + limits.idle_timeout);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(listener = what, %peer, error = %e, "connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                let idle = activity
                    .idle_at(limits.idle_timeout)
                    .is_some_and(|at| at <= tokio::time::Instant::now());
                if idle {
                    tracing::debug!(listener = what, %peer, "idle connection closed");
                    return;
                }
            }
        }
    }
}

/// The HTTP status and stable code of an error kind.
pub fn error_status(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
        ErrorKind::WrongType => (StatusCode::CONFLICT, "wrong_type"),
        ErrorKind::NotEmpty => (StatusCode::CONFLICT, "not_empty"),
        ErrorKind::AuthFailed => (StatusCode::UNAUTHORIZED, "unauthorized"),
        ErrorKind::NoSpace => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
        ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Busy => (StatusCode::CONFLICT, "busy"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorKind::ChecksumMismatch => (checksum_mismatch(), "checksum_mismatch"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        // The change may or may not have been made: neither a success nor
        // a failure, and not to be retried blindly.
        ErrorKind::OutcomeUnknown => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
    }
}

/// tus's status for a chunk whose checksum does not match (460).
pub fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

/// An error answered as JSON `{"code": …, "message": …}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (no real paths, no secrets).
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<FerryError> for ApiError {
    fn from(e: FerryError) -> Self {
        let (status, code) = error_status(e.kind);
        Self {
            status,
            code,
            message: e.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }
}
