//! The accepting side of server-to-server connections: heartbeats, votes,
//! status and history are answered concurrently; a sync is received in
//! order on its own connection and applied only on its final message.

use std::sync::Arc;

use ferry_core::sync::HistoryPage;
use ferry_core::FerryError;
use ferry_proto::cluster::{ClusterRequest, ClusterResponse};
use ferry_proto::message::{Frame, Request, Response};
use ferry_proto::server::ServerFramed;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::node::Node;
use crate::sync::Incoming;

/// Serves one connection from another server until it closes. A sync
/// that was not committed when the connection ends is dropped unapplied.
pub async fn serve_peer<S>(framed: ServerFramed<S>, node: Arc<Node>, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = framed.split();
    let (reply, writer) = spawn_writer(sink);
    let mut incoming: Option<Incoming> = None;
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "server connection ended");
                break;
            }
        };
        let id = frame.id;
        let Request::Cluster(request) = frame.body else {
            let _ = reply.send(Frame {
                id,
                body: Response::Error(FerryError::invalid(
                    "a server connection carries cluster requests only",
                )),
            });
            continue;
        };
        let answer = |r: Result<ClusterResponse, FerryError>| Frame {
            id,
            body: match r {
                Ok(r) => Response::Cluster(r),
                Err(e) => Response::Error(e),
            },
        };
        match request {
            ClusterRequest::SyncBegin(begin) => {
                let result = if incoming.is_some() {
                    Err(FerryError::invalid(
                        "a sync is already open on this connection",
                    ))
                } else {
                    let checking = node.clone();
                    let checked_begin = begin.clone();
                    match tokio::task::spawn_blocking(move || checking.check_begin(&checked_begin))
                        .await
                    {
                        Ok(Ok(manifests)) => {
                            tracing::info!(%peer, sync = %begin.sync_id, from = %begin.from, dry_run = begin.dry_run, "sync started");
                            incoming = Some(Incoming::new(begin, manifests));
                            Ok(ClusterResponse::SyncReceived)
                        }
                        Ok(Err(e)) => {
                            node.events.record(
                                crate::events::Severity::Alert,
                                "sync",
                                format!(
                                    "refused sync {} from {}: {}",
                                    begin.sync_id, begin.from, e.message
                                ),
                            );
                            Err(e)
                        }
                        Err(e) => Err(FerryError::internal(e.to_string())),
                    }
                };
                let _ = reply.send(answer(result));
            }
            ClusterRequest::SyncRows { table, rows } => {
                let result = match incoming.as_mut() {
                    Some(sync) => sync
                        .add_rows(&table, rows)
                        .map(|()| ClusterResponse::SyncReceived),
                    None => Err(FerryError::invalid("no sync is open on this connection")),
                };
                if result.is_err() {
                    incoming = None;
                }
                let _ = reply.send(answer(result));
            }
            ClusterRequest::SyncFile { path, data } => {
                let result = match incoming.as_mut() {
                    Some(sync) => sync
                        .add_file(path, data)
                        .map(|()| ClusterResponse::SyncReceived),
                    None => Err(FerryError::invalid("no sync is open on this connection")),
                };
                if result.is_err() {
                    incoming = None;
                }
                let _ = reply.send(answer(result));
            }
            ClusterRequest::SyncCommit => {
                let result = match incoming.take() {
                    Some(sync) => {
                        let applying = node.clone();
                        let _one_at_a_time = node.sync_lock.lock().await;
                        tokio::task::spawn_blocking(move || applying.finish_sync(sync))
                            .await
                            .unwrap_or_else(|e| Err(FerryError::internal(e.to_string())))
                            .map(ClusterResponse::SyncDone)
                    }
                    None => Err(FerryError::invalid("no sync is open on this connection")),
                };
                let _ = reply.send(answer(result));
            }
            other => {
                let (node, reply) = (node.clone(), reply.clone());
                tokio::spawn(async move {
                    let result = answer_request(&node, other).await;
                    let _ = reply.send(Frame {
                        id,
                        body: match result {
                            Ok(r) => Response::Cluster(r),
                            Err(e) => Response::Error(e),
                        },
                    });
                });
            }
        }
    }
    if let Some(sync) = incoming {
        tracing::warn!(%peer, sync = %sync.begin.sync_id, "connection closed before the sync was committed; nothing applied");
        node.events.record(
            crate::events::Severity::Alert,
            "sync",
            format!(
                "sync {} from {} broke off before its end; nothing applied",
                sync.begin.sync_id, sync.begin.from
            ),
        );
    }
    drop(reply);
    let _ = writer.await;
}

async fn answer_request(
    node: &Arc<Node>,
    request: ClusterRequest,
) -> Result<ClusterResponse, FerryError> {
    match request {
        ClusterRequest::Heartbeat { epoch, node: from } => Ok(node.on_heartbeat(epoch, &from)),
        ClusterRequest::RequestVote {
            epoch,
            candidate,
            manual,
        } => Ok(node.on_vote(epoch, &candidate, manual)),
        ClusterRequest::Events { limit } => serde_json::to_vec(&node.recent_events(limit as usize))
            .map(ClusterResponse::Events)
            .map_err(|e| FerryError::internal(e.to_string())),
        ClusterRequest::Status => {
            let node = node.clone();
            tokio::task::spawn_blocking(move || ClusterResponse::Status(node.own_status(true)))
                .await
                .map_err(|e| FerryError::internal(e.to_string()))
        }
        ClusterRequest::PullHistory { after_seq, limit } => {
            if node.witness {
                return Ok(ClusterResponse::History(HistoryPage::default()));
            }
            let store = node.store.clone();
            let limit = limit.clamp(1, 10_000);
            tokio::task::spawn_blocking(move || store.export_history(after_seq, limit))
                .await
                .map_err(|e| FerryError::internal(e.to_string()))?
                .map(ClusterResponse::History)
                .map_err(FerryError::from)
        }
        ClusterRequest::Raft { .. }
        | ClusterRequest::Propose { .. }
        | ClusterRequest::RaftStatus
        | ClusterRequest::Join { .. }
        | ClusterRequest::Leave { .. }
        | ClusterRequest::ProbeMembers { .. } => Err(FerryError::invalid(
            "this server is in active/passive mode; Raft requests are not taken",
        )),
        ClusterRequest::SyncBegin(_)
        | ClusterRequest::SyncRows { .. }
        | ClusterRequest::SyncFile { .. }
        | ClusterRequest::SyncCommit => {
            Err(FerryError::internal("sync requests are handled in order"))
        }
    }
}

/// Serves one connection from another member of an active/active
/// cluster: every request (Raft RPCs, forwarded proposals, status) is
/// answered concurrently.
pub async fn serve_raft_peer<S>(
    framed: ServerFramed<S>,
    node: Arc<crate::raft::node::RaftNode>,
    peer: String,
    from: String,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = framed.split();
    let (reply, writer) = spawn_writer(sink);
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "server connection ended");
                break;
            }
        };
        let id = frame.id;
        let (node, reply, from) = (node.clone(), reply.clone(), from.clone());
        tokio::spawn(async move {
            let body = match frame.body {
                Request::Cluster(request) => match node.handle(request, &from).await {
                    Ok(r) => Response::Cluster(r),
                    Err(e) => Response::Error(e),
                },
                _ => Response::Error(FerryError::invalid(
                    "a server connection carries cluster requests only",
                )),
            };
            let _ = reply.send(Frame { id, body });
        });
    }
    drop(reply);
    let _ = writer.await;
}

/// Sends the answers queued on the returned channel, in order, until it
/// closes or the connection breaks.
fn spawn_writer<W>(
    mut sink: W,
) -> (
    mpsc::UnboundedSender<Frame<Response>>,
    tokio::task::JoinHandle<()>,
)
where
    W: futures::Sink<Frame<Response>> + Unpin + Send + 'static,
{
    let (reply, mut replies) = mpsc::unbounded_channel::<Frame<Response>>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = replies.recv().await {
            if sink.send(frame).await.is_err() {
                return;
            }
        }
    });
    (reply, writer)
}
