//! The servers an edge forwards to.
//!
//! Each server has at most one live connection, shared by all sessions sent
//! there (it multiplexes). A new session asks [`Upstreams::pick`], which starts
//! at the next server in turn and skips servers that do not answer, so
//! sessions spread over the servers and avoid a dead one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::message::{Request, Response, Role};
use tokio::sync::Mutex;

/// Opens a fresh in-memory link to a server in the same process.
pub type LocalLink = Arc<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>;

/// How the edge reaches its servers.
enum Link {
    /// Over TCP with mutual TLS.
    Tls(Arc<rustls::ClientConfig>),
    /// To the server of this process, in memory.
    InProcess(LocalLink),
}

/// The back-end servers of one edge.
pub struct Upstreams {
    servers: Vec<String>,
    conns: Vec<Mutex<Option<Arc<Connection>>>>,
    link: Link,
    node_id: String,
    next: AtomicUsize,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("servers", &self.servers)
            .field("in_process", &matches!(self.link, Link::InProcess(_)))
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// Upstreams for `servers` (host:port), reached with `tls`.
    pub fn new(servers: Vec<String>, tls: Arc<rustls::ClientConfig>, node_id: String) -> Self {
        Self::with_link(servers, Link::Tls(tls), node_id)
    }

    /// Upstreams that reach the one server of this process through `link`
    /// (`ferry up`); no socket, no TLS.
    pub fn in_process(link: LocalLink, node_id: String) -> Self {
        Self::with_link(vec!["in-process".into()], Link::InProcess(link), node_id)
    }

    fn with_link(servers: Vec<String>, link: Link, node_id: String) -> Self {
        let conns = servers.iter().map(|_| Mutex::new(None)).collect();
        Self {
            servers,
            conns,
            link,
            node_id,
            next: AtomicUsize::new(0),
        }
    }

    /// A live connection for a new session: the next server in turn that
    /// answers and takes writes; when none takes writes (a cluster without
    /// quorum), the first that answers, so reads still work.
    pub async fn pick(&self) -> Result<Arc<Connection>, FerryError> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut read_only = None;
        for i in 0..n {
            let index = (start + i) % n;
            let Some(conn) = self.live(index).await else {
                continue;
            };
            if n == 1 || takes_writes(&conn).await {
                return Ok(conn);
            }
            read_only.get_or_insert(conn);
        }
        read_only.ok_or_else(|| {
            FerryError::new(ErrorKind::Unavailable, "no back-end server is available")
        })
    }

    /// The connection to server `index`, made if needed; `None` if it does
    /// not answer.
    async fn live(&self, index: usize) -> Option<Arc<Connection>> {
        let (slot, addr) = (self.conns.get(index)?, self.servers.get(index)?);
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Some(conn.clone());
            }
        }
        let connected = match &self.link {
            Link::InProcess(link) => {
                Connection::over_stream(addr, link(), Role::Edge, &self.node_id).await
            }
            Link::Tls(tls) => {
                Connection::connect(addr, tls.clone(), Role::Edge, &self.node_id).await
            }
        };
        match connected {
            Ok(conn) => {
                tracing::info!(server = %addr, node = conn.peer_node_id(), "connected to server");
                *slot = Some(conn.clone());
                Some(conn)
            }
            Err(e) => {
                tracing::warn!(server = %addr, error = %e, "server unavailable");
                *slot = None;
                None
            }
        }
    }
}

/// Whether the server behind `conn` takes writes now (a cluster member
/// with a quorum). A server too old to say is taken to.
async fn takes_writes(conn: &Connection) -> bool {
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        conn.call(Request::Writable),
    )
    .await
    {
        Ok(Ok(Response::Writable(w))) => w,
        Ok(Ok(Response::Error(_))) => true,
        _ => false,
    }
}

/// A session logged in on a server, shared by the SSH connection and every
/// channel task that uses it: the server session ends (`Logout`) when the
/// last of them is done, so a request a channel still has to send (the
/// CLOSE that commits a file) is never overtaken by the logout.
#[derive(Debug)]
pub struct SessionLease {
    /// The session's id on that server.
    pub session: ferry_proto::message::SessionId,
    /// The server.
    pub upstream: Arc<Connection>,
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        let (session, upstream) = (self.session, self.upstream.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = upstream
                    .call(ferry_proto::message::Request::Logout { session })
                    .await;
            });
        }
    }
}
