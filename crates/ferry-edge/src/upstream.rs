//! The servers an edge forwards to.
//!
//! Each server has at most one live connection, shared by all sessions sent
//! there (it multiplexes). A new session asks [`Upstreams::pick`] (or
//! [`Upstreams::login`]), which starts at the next server in turn and skips
//! servers that do not answer or say they do not serve (a follower behind
//! its leader), so sessions spread over the servers and avoid a dead or
//! stale one. A server skipped once is passed over for [`SHUN`], so one
//! that hangs costs one session a bounded wait, not every session. When no
//! server serves, the edge tries again for up to [`PICK_WAIT`] (a failover)
//! and then says "no back-end server is available".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::message::{Request, Response, Role};
use tokio::sync::Mutex;

/// How long a new session waits in all for a server that serves.
pub const PICK_WAIT: Duration = Duration::from_secs(4);
/// How long a server that did not answer or did not serve is passed over.
pub const SHUN: Duration = Duration::from_secs(1);
/// How long a server may take to say whether it serves.
const STANDING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a login may take on the server (its password hashing waits
/// up to 10 s for a thread).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The message of a session refused because no server serves.
pub const NO_SERVER: &str = "no back-end server is available";

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
    /// Per server: passed over until then.
    shunned: Vec<std::sync::Mutex<Option<Instant>>>,
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
    /// The servers configured, and those with an open connection now.
    pub fn counts(&self) -> (usize, usize) {
        let connected = self
            .conns
            .iter()
            .filter(|c| {
                c.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| !c.is_closed()))
                    // Held: a connection is being made or used.
                    .unwrap_or(true)
            })
            .count();
        (self.servers.len(), connected)
    }

    pub fn in_process(link: LocalLink, node_id: String) -> Self {
        Self::with_link(vec!["in-process".into()], Link::InProcess(link), node_id)
    }

    fn with_link(servers: Vec<String>, link: Link, node_id: String) -> Self {
        let conns = servers.iter().map(|_| Mutex::new(None)).collect();
        let shunned = servers
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        Self {
            servers,
            conns,
            shunned,
            link,
            node_id,
            next: AtomicUsize::new(0),
        }
    }

    /// A live connection for a new session: the next server in turn that
    /// answers, serves and takes writes; when none takes writes (a cluster
    /// without quorum), the first that serves, so reads still work. Waits
    /// up to [`PICK_WAIT`] for one.
    pub async fn pick(&self) -> Result<Arc<Connection>, FerryError> {
        let deadline = Instant::now() + PICK_WAIT;
        loop {
            if let Some(conn) = self.pick_once().await {
                return Ok(conn);
            }
            if Instant::now() + Duration::from_millis(250) >= deadline {
                return Err(FerryError::new(ErrorKind::Unavailable, NO_SERVER));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Logs in with `request` (a [`Request::Login`]) on a server that serves:
    /// a server that refuses because it does not serve now is passed over
    /// and the next is asked, within [`PICK_WAIT`] overall. The answer is
    /// the server's (a wrong password is the server's refusal).
    pub async fn login(&self, request: Request) -> Result<(Arc<Connection>, Response), FerryError> {
        let started = Instant::now();
        let result = self.login_anywhere(request).await;
        let outcome = match &result {
            Ok((_, Response::LoggedIn { .. })) => "ok",
            Ok((_, Response::Error(e))) if e.kind == ErrorKind::AuthFailed => "refused",
            Ok((_, Response::Error(e))) if e.kind == ErrorKind::Unavailable => "no_server",
            Err(e) if e.kind == ErrorKind::Unavailable => "no_server",
            _ => "error",
        };
        crate::metrics::METRICS.login(outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn login_anywhere(
        &self,
        request: Request,
    ) -> Result<(Arc<Connection>, Response), FerryError> {
        let deadline = Instant::now() + PICK_WAIT;
        loop {
            let conn = self.pick().await?;
            let answer = tokio::time::timeout(LOGIN_TIMEOUT, conn.call(request.clone()))
                .await
                .map_err(|_| {
                    FerryError::new(
                        ErrorKind::Unavailable,
                        "the back-end server did not answer the login in time",
                    )
                })?
                .map_err(|e| {
                    FerryError::new(
                        ErrorKind::Unavailable,
                        format!("the back-end server was lost during the login: {e}"),
                    )
                })?;
            match answer {
                Response::Error(e)
                    if e.kind == ErrorKind::Unavailable && Instant::now() < deadline =>
                {
                    tracing::info!(server = conn.addr(), reason = %e.message, "server does not serve now; trying another");
                    self.shun_connection(&conn);
                }
                answer => return Ok((conn, answer)),
            }
        }
    }

    fn shun(&self, index: usize) {
        if let Some(slot) = self.shunned.get(index) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + SHUN);
        }
    }

    fn shun_connection(&self, conn: &Connection) {
        if let Some(index) = self.servers.iter().position(|a| a == conn.addr()) {
            self.shun(index);
        }
    }

    fn is_shunned(&self, index: usize) -> bool {
        self.shunned.get(index).is_some_and(|slot| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| Instant::now() < until)
        })
    }

    /// One round over the servers: those not shunned first, then the rest.
    async fn pick_once(&self) -> Option<Arc<Connection>> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        let (fresh, shunned): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| !self.is_shunned(i));
        let mut read_only = None;
        for index in fresh.into_iter().chain(shunned) {
            let Some(conn) = self.live(index).await else {
                self.shun(index);
                continue;
            };
            match standing(&conn).await {
                Standing::Writable => return Some(conn),
                Standing::ReadOnly => {
                    read_only.get_or_insert(conn);
                }
                Standing::NotServing => self.shun(index),
            }
        }
        read_only
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
                conn.observe_latency(|took| {
                    crate::metrics::METRICS.upstream_request(took.as_secs_f64())
                });
                // A paused or cut-off server is found within
                // `DEAD_AFTER`: its sessions end and their clients log in
                // again, to a server that answers. `Writable` is answered
                // at once by the server's connection reader.
                conn.probe_with(|| Request::Writable);
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

/// What a server says when a session is to be placed on it.
enum Standing {
    /// It serves and takes writes.
    Writable,
    /// It serves reads only (its cluster has no quorum).
    ReadOnly,
    /// It does not serve now (behind its leader, a witness) or did not
    /// answer in time.
    NotServing,
}

async fn standing(conn: &Connection) -> Standing {
    match tokio::time::timeout(STANDING_TIMEOUT, conn.call(Request::Writable)).await {
        Ok(Ok(Response::Writable(true))) => Standing::Writable,
        Ok(Ok(Response::Writable(false))) => Standing::ReadOnly,
        Ok(Ok(Response::Error(e))) if e.kind == ErrorKind::Unavailable => Standing::NotServing,
        // A server too old to know the request takes writes.
        Ok(Ok(Response::Error(_))) => Standing::Writable,
        _ => Standing::NotServing,
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
