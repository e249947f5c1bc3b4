//! The internal listener: edges and other servers connect here over
//! mutual TLS (or, in `ferry up`, through memory). Connections that have not
//! proved who they are are bounded per address; a certificate's role decides
//! what a peer may be; admitted edges are served by [`crate::session`] and
//! servers by the cluster ([`ferry_cluster::Cluster::serve_server`]).

use std::sync::Arc;

use ferry_proto::message::Role;
use tokio::net::TcpListener;

use crate::{session, InternalConfig, RunningServer, ServerCtx};

/// Buffer of each direction of an in-process link: enough for several
/// 255 KiB SFTP reads in flight without the writer waiting on the reader.
const IN_PROCESS_BUFFER: usize = 4 << 20;

impl RunningServer {
    /// Opens an in-memory link to this server for an edge in the same
    /// process (`ferry up`): the internal protocol, with its handshake and
    /// role check, but without a socket or TLS — there is no network to
    /// protect, and each byte would otherwise be encrypted and decrypted
    /// once more on its way to disk.
    pub fn in_process_link(&self) -> tokio::io::DuplexStream {
        let (edge_end, server_end) = tokio::io::duplex(IN_PROCESS_BUFFER);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match ferry_proto::server::accept(server_end, &ctx.node_id, &[Role::Edge]).await {
                Ok((hello, version, framed)) => {
                    tracing::info!(edge = %hello.node_id, version, "edge connected in process");
                    session::serve_connection(framed, ctx, "in-process".into()).await;
                }
                Err(e) => tracing::warn!(error = %e, "in-process handshake failed"),
            }
        });
        edge_end
    }
}

/// The internal listener's bounds on connections that have not proved
/// who they are.
pub(crate) struct InternalLimits {
    handshake: std::time::Duration,
    caps: Arc<ferry_core::limits::AddressCaps>,
}

impl InternalLimits {
    pub(crate) fn of(config: &InternalConfig) -> Self {
        Self {
            handshake: std::time::Duration::from_secs(config.handshake_timeout_secs.max(1)),
            caps: ferry_core::limits::AddressCaps::new(
                config.max_connections,
                config.max_connections_per_address,
            ),
        }
    }
}

pub(crate) async fn serve_internal(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: InternalLimits,
    ctx: Arc<ServerCtx>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.drain.began() => {
                tracing::info!("internal listener closed (shutting down)");
                return;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Held until the connection has proved who it is; refused
        // connections are closed at once.
        let slot = match limits.caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::warn!(%peer, ?why, "too many internal connections; refused");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        let handshake = limits.handshake;
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "internal TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "no internal TLS handshake in time; closed");
                    return;
                }
            };
            // The certificate names the node: a server must present its own
            // (an edge's certificate from the same CA must not push a sync
            // or vote). Active/passive admits configured peers only;
            // active/active checks each request (members, or a join with
            // the token).
            let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
            let cert_name = ferry_proto::tls::peer_common_name(certs);
            // The role comes from the certificate, never from the hello.
            let edge_refusal =
                ferry_proto::tls::role_refusal(certs, ferry_proto::pki::CertRole::Edge);
            let server_refusal =
                ferry_proto::tls::role_refusal(certs, ferry_proto::pki::CertRole::Server);
            let admit = |hello: &ferry_proto::message::Hello| match hello.role {
                Role::Edge if edge_refusal.is_some() => Err(format!(
                    "{peer} may not connect as an edge: {}",
                    edge_refusal.as_deref().unwrap_or_default()
                )),
                Role::Server if server_refusal.is_some() => Err(format!(
                    "{peer} may not connect as a server: {}",
                    server_refusal.as_deref().unwrap_or_default()
                )),
                Role::Edge => match ctx.not_serving_reason() {
                    None => Ok(()),
                    Some(why) => Err(format!(
                        "{} does not serve sessions now: {why}",
                        ctx.node_id
                    )),
                },
                Role::Server => ctx
                    .cluster
                    .admit_server(&hello.node_id, cert_name.as_deref())
                    .map_err(|why| format!("{peer}: {why}")),
            };
            let accepted = ferry_proto::server::accept_with(stream, &ctx.node_id, admit).await;
            // The caps are for connections that have not proved who they
            // are: an admitted edge or peer no longer takes a place.
            drop(slot);
            match accepted {
                Ok((hello, version, framed)) if hello.role == Role::Server => {
                    tracing::debug!(%peer, server = %hello.node_id, version, "server connected");
                    ctx.cluster
                        .clone()
                        .serve_server(framed, peer.to_string(), hello.node_id)
                        .await;
                }
                Ok((hello, version, framed)) => {
                    tracing::info!(%peer, edge = %hello.node_id, version, "edge connected");
                    let mut serving = ctx.serving.subscribe();
                    let node_id = ctx.node_id.clone();
                    tokio::select! {
                        _ = session::serve_connection(framed, ctx, peer.to_string()) => {}
                        _ = serving.wait_for(|s| !*s) => {
                            tracing::warn!(%peer, node = %node_id, "stopped serving: closed the edge connection");
                        }
                    }
                }
                Err(e) => tracing::info!(%peer, error = %e, "internal handshake refused or failed"),
            }
        });
    }
}
