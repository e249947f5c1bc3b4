//! Raft RPCs over the internal protocol: each RPC is one
//! [`ClusterRequest::Raft`] on a cached mutual-TLS connection to the
//! target, its body JSON-encoded as openraft defines it. A peer that cannot
//! be reached is `Unreachable` (openraft backs off); a broken exchange is a
//! network error (retried).

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
    conns: Arc<Mutex<HashMap<String, Arc<Connection>>>>,
    /// When each member last answered.
    heard: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

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
        }
    }

    /// Milliseconds since `name` last answered, if it ever did.
    pub fn last_contact_ms(&self, name: &str) -> Option<u64> {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard
            .get(name)
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
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
        let mut conns = self.conns.lock().await;
        if let Some(conn) = conns.get(&addr) {
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
        conns.insert(addr, conn.clone());
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
    async fn rpc<Req, Resp, E>(
        &self,
        target: NodeId,
        member: &Member,
        rpc: RaftRpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
        self.network
            .rpc(
                self.target,
                &self.member,
                RaftRpc::AppendEntries,
                &rpc,
                &option,
            )
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.network
            .rpc(self.target, &self.member, RaftRpc::Vote, &rpc, &option)
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
        self.network
            .rpc(
                self.target,
                &self.member,
                RaftRpc::InstallSnapshot,
                &rpc,
                &option,
            )
            .await
    }
}
