//! Raft RPCs over the internal protocol: each RPC is one
//! [`ClusterRequest::Raft`] on a cached mutual-TLS connection to the
//! target, its body JSON-encoded as openraft defines it, except a snapshot
//! chunk's bytes, which travel as they are ([`encode_chunk`]). A peer that
//! cannot be reached is `Unreachable` (openraft backs off); a broken
//! exchange is a network error (retried).
//!
//! Each member has its own connection slot and lock: connecting to a
//! member that does not answer never holds up the calls to the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::FerryError;
use ferry_proto::client::Connection;
use ferry_proto::cluster::{ClusterRequest, ClusterResponse, RaftRpc};
use ferry_proto::message::{Request, Response, Role};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use super::{Member, NodeId, TypeConfig};

/// Connections to the other members; clones share them.
#[derive(Clone)]
pub struct Network {
    tls: Arc<rustls::ClientConfig>,
    self_name: String,
    /// How this server reaches a member, when its own configuration says
    /// otherwise than the address the member advertised (a NAT, a proxy).
    routes: Arc<HashMap<String, String>>,
    /// One slot per address, each behind its own lock.
    conns: Arc<std::sync::Mutex<HashMap<String, Slot>>>,
    /// When each member last answered.
    heard: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
    /// Per member: the last index it acknowledged to the leader of a vote.
    acknowledged: Arc<std::sync::Mutex<HashMap<NodeId, Acknowledged>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

/// The leader (by its vote) a member acknowledged entries to, and the last
/// index it acknowledged.
type Acknowledged = (Vote<NodeId>, u64);

/// The connection to one member, made on first use.
type Slot = Arc<Mutex<Option<Arc<Connection>>>>;

/// Why a call to a member failed.
#[derive(Debug)]
pub enum CallError {
    /// No connection could be made.
    Unreachable(String),
    /// The connection broke or the answer did not come in time.
    Broken(String),
    /// The member answered with an error.
    Refused(FerryError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) | CallError::Broken(e) => f.write_str(e),
            CallError::Refused(e) => write!(f, "{}", e.message),
        }
    }
}

impl std::error::Error for CallError {}

impl Network {
    /// A network for the member called `self_name`, reaching others with
    /// `tls`, at the addresses in `routes` (by name) or else the advertised one.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        self_name: String,
        routes: HashMap<String, String>,
    ) -> Self {
        Self {
            tls,
            self_name,
            routes: Arc::new(routes),
            conns: Arc::default(),
            heard: Arc::default(),
            acknowledged: Arc::default(),
        }
    }

    /// Milliseconds since `name` last answered, if it ever did.
    pub fn last_contact_ms(&self, name: &str) -> Option<u64> {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard
            .get(name)
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Forgets what `member` acknowledged: it was removed or is added again,
    /// and starts from nothing.
    pub fn forget(&self, member: NodeId) {
        self.acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&member);
    }

    /// The TLS client configuration (for a join, before membership).
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    async fn connection(&self, member: &Member) -> Result<Arc<Connection>, CallError> {
        let addr = self
            .routes
            .get(&member.name)
            .unwrap_or(&member.addr)
            .clone();
        let slot = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            Connection::connect(&addr, self.tls.clone(), Role::Server, &self.self_name),
        )
        .await
        .map_err(|_| CallError::Unreachable(format!("{} ({addr}) did not answer", member.name)))?
        .map_err(|e| CallError::Unreachable(format!("{} is unreachable: {e}", member.name)))?;
        if conn.peer_node_id() != member.name {
            return Err(CallError::Unreachable(format!(
                "{addr} answers as {:?}, expected {:?}",
                conn.peer_node_id(),
                member.name
            )));
        }
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// One request to `member`, answered within `ttl`.
    pub async fn call(
        &self,
        member: &Member,
        request: ClusterRequest,
        ttl: Duration,
    ) -> Result<ClusterResponse, CallError> {
        let conn = self.connection(member).await?;
        let answer = tokio::time::timeout(ttl, conn.call(Request::Cluster(request))).await;
        if matches!(answer, Ok(Ok(_))) {
            self.heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(member.name.clone(), std::time::Instant::now());
        }
        match answer {
            Err(_) => Err(CallError::Broken(format!(
                "{} did not answer in time",
                member.name
            ))),
            Ok(Err(e)) => Err(CallError::Broken(format!("{}: {e}", member.name))),
            Ok(Ok(Response::Cluster(r))) => Ok(r),
            Ok(Ok(Response::Error(e))) => Err(CallError::Refused(e)),
            Ok(Ok(other)) => Err(CallError::Broken(format!(
                "{}: unexpected answer {other:?}",
                member.name
            ))),
        }
    }

    /// Sends one Raft RPC and decodes openraft's `Result` from the answer.
    async fn rpc<Resp, E>(
        &self,
        target: NodeId,
        member: &Member,
        rpc: RaftRpc,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer = self
            .call(
                member,
                ClusterRequest::Raft { rpc, payload },
                option.hard_ttl(),
            )
            .await;
        let bytes = match answer {
            Ok(ClusterResponse::RaftReply(bytes)) => bytes,
            Ok(other) => {
                let e = CallError::Broken(format!("unexpected answer {other:?}"));
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Err(e @ CallError::Unreachable(_)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let result: Result<Resp, E> =
            serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(target, member.clone(), e))
        })
    }
}

/// JSON of an RPC request, as openraft defines it.
fn json<Req: Serialize, E: std::error::Error>(
    request: &Req,
) -> Result<Vec<u8>, RPCError<NodeId, Member, E>> {
    serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// The payload of [`RaftRpc::InstallSnapshotChunk`]: the request without
/// its bytes as JSON, behind its 4-byte big-endian length, then the bytes.
pub fn encode_chunk(
    mut request: InstallSnapshotRequest<TypeConfig>,
) -> Result<Vec<u8>, serde_json::Error> {
    let data = std::mem::take(&mut request.data);
    let header = serde_json::to_vec(&request)?;
    let mut payload = Vec::with_capacity(4 + header.len() + data.len());
    let length = u32::try_from(header.len()).unwrap_or(u32::MAX);
    payload.extend_from_slice(&length.to_be_bytes());
    payload.extend_from_slice(&header);
    payload.extend_from_slice(&data);
    Ok(payload)
}

/// Reads what [`encode_chunk`] wrote.
pub fn decode_chunk(payload: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    let (length, rest) = payload
        .split_first_chunk::<4>()
        .ok_or("snapshot chunk shorter than its header length")?;
    let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|e| e.to_string())?;
    if length > rest.len() {
        return Err(format!(
            "snapshot chunk header of {length} bytes in a payload of {}",
            rest.len()
        ));
    }
    let (header, data) = rest.split_at(length);
    let mut request: InstallSnapshotRequest<TypeConfig> =
        serde_json::from_slice(header).map_err(|e| e.to_string())?;
    request.data = data.to_vec();
    Ok(request)
}

/// The client side for one target member.
pub struct Client {
    target: NodeId,
    member: Member,
    network: Network,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Client {
        Client {
            target,
            member: node.clone(),
            network: self.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let vote = rpc.vote;
        let prev = rpc.prev_log_id.map(|l| l.index);
        let last = rpc.entries.last().map(|e| e.log_id.index).or(prev);
        let answer = self
            .network
            .rpc(
                self.target,
                &self.member,
                RaftRpc::AppendEntries,
                json(&rpc)?,
                &option,
            )
            .await;
        let mut acknowledged = self
            .network
            .acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let known = acknowledged
            .get(&self.target)
            .filter(|(v, _)| *v == vote)
            .map(|(_, index)| *index);
        match &answer {
            Ok(AppendEntriesResponse::Success) => {
                if let Some(last) = last {
                    acknowledged.insert(self.target, (vote, known.unwrap_or(0).max(last)));
                }
            }
            Ok(AppendEntriesResponse::PartialSuccess(Some(l))) => {
                acknowledged.insert(self.target, (vote, known.unwrap_or(0).max(l.index)));
            }
            // A member that now lacks an entry it acknowledged lost its log
            // (its state directory was emptied or restored from a backup).
            // openraft stops the leader on that; it is kept from seeing it,
            // and the member stays unreachable until it is removed and
            // joins again.
            Ok(AppendEntriesResponse::Conflict) => {
                if let (Some(prev), Some(known)) = (prev, known) {
                    if prev <= known {
                        let why = format!(
                            "{} lacks log entry {prev} it had acknowledged (up to {known}): its state was lost; \
                             run `ferry cluster remove {}` on a member, then `ferry cluster join` on it",
                            self.member.name, self.member.name
                        );
                        tracing::error!("{why}");
                        return Err(RPCError::Unreachable(Unreachable::new(
                            &CallError::Unreachable(why),
                        )));
                    }
                }
            }
            _ => {}
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.network
            .rpc(
                self.target,
                &self.member,
                RaftRpc::Vote,
                json(&rpc)?,
                &option,
            )
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let payload = encode_chunk(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.network
            .rpc(
                self.target,
                &self.member,
                RaftRpc::InstallSnapshotChunk,
                payload,
                &option,
            )
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::{SnapshotMeta, Vote};

    use super::*;

    #[test]
    fn snapshot_chunks_keep_their_bytes_binary() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            meta: SnapshotMeta::default(),
            offset: 5 << 20,
            data: data.clone(),
            done: false,
        };
        let payload = encode_chunk(request).unwrap();
        // A megabyte as JSON numbers would be 3.6 MB; binary, it stays one.
        assert!(payload.len() < data.len() + 1024, "{}", payload.len());
        let back = decode_chunk(&payload).unwrap();
        assert_eq!(back.data, data);
        assert_eq!(back.offset, 5 << 20);
        assert!(!back.done);
        assert!(decode_chunk(&payload[..3]).is_err());
        assert!(decode_chunk(&[0, 0, 1, 0, b'{']).is_err());
    }
}
