//! The connecting side: one multiplexed connection to a server.
//!
//! [`Connection::call`] may be used by many tasks at once. Each request gets a
//! fresh id; a writer task feeds frames to the socket and flushes only when no
//! more are queued, and a reader task hands each reply to the caller waiting
//! for its id. Nothing serialises requests, so an SFTP client's 64 pipelined
//! reads travel as 64 requests in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::codec::FrameCodec;
use crate::message::{Frame, Hello, Request, Response, Role, Welcome, SUPPORTED_VERSIONS};
use crate::ProtoError;

/// A waiter for a reply, what to drop the moment the reply arrives, and
/// when the request was queued.
type Waiter = (
    oneshot::Sender<Response>,
    Option<Box<dyn Send>>,
    tokio::time::Instant,
);

/// Told how long each request took to be answered.
pub type LatencyObserver = Box<dyn Fn(Duration) + Send + Sync>;
type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

/// How long connecting and the handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with requests waiting that receives nothing at all for
/// this long is taken for dead (a paused or cut-off server, where no TCP
/// reset ever comes) and closed: every waiter gets an error and the next
/// session connects afresh. Longer than any one request takes (a close that
/// hashes and syncs a large file).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection watched by [`Connection::probe_with`] that has requests
/// waiting and has received nothing for this long sends a probe, which the
/// peer answers at once (not behind other requests).
pub const PROBE_AFTER: Duration = Duration::from_millis(500);

/// A watched connection with requests waiting that has received nothing,
/// not even the answer to a probe, for this long is taken for dead (a
/// paused or cut-off server) and closed: every waiter gets an error, so
/// the clients behind it are told at once instead of after
/// [`STALL_TIMEOUT`].
pub const DEAD_AFTER: Duration = Duration::from_secs(2);

/// A live connection to a server.
pub struct Connection {
    addr: String,
    peer_node_id: String,
    version: u16,
    next_id: AtomicU64,
    pending: Pending,
    out: mpsc::UnboundedSender<Frame<Request>>,
    closed: Arc<AtomicBool>,
    /// When the last frame arrived, in ms since `born`.
    last_frame_ms: Arc<AtomicU64>,
    born: tokio::time::Instant,
    /// Tells the reader the peer is dead: it stops and fails every waiter.
    dead: Arc<tokio::sync::Notify>,
    /// Told each answered request's latency, once set.
    observer: Arc<OnceLock<LatencyObserver>>,
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("peer_node_id", &self.peer_node_id)
            .field("version", &self.version)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), verifies the server's certificate
    /// for `host`, and runs the handshake as `role`/`node_id`.
    pub async fn connect(
        addr: &str,
        tls: Arc<rustls::ClientConfig>,
        role: Role,
        node_id: &str,
    ) -> Result<Arc<Self>, ProtoError> {
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            Self::connect_inner(addr, tls, role, node_id),
        )
        .await
        .map_err(|_| ProtoError::Handshake(format!("{addr}: timed out")))?
    }

    async fn connect_inner(
        addr: &str,
        tls: Arc<rustls::ClientConfig>,
        role: Role,
        node_id: &str,
    ) -> Result<Arc<Self>, ProtoError> {
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| ProtoError::Handshake(format!("{addr}: expected host:port")))?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ProtoError::Handshake(format!("{addr}: bad host name: {e}")))?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        // Only a server's certificate may answer for a server: not an
        // edge's or an HTTPS front's key from the same CA.
        let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
        if let Some(why) = crate::tls::role_refusal(certs, crate::pki::CertRole::Server) {
            return Err(ProtoError::Handshake(format!(
                "{addr} is not a Ferry server: {why}"
            )));
        }
        Self::over_stream(addr, stream, role, node_id).await
    }

    /// Runs the handshake as `role`/`node_id` over an already authenticated
    /// byte stream and starts the connection on it. `addr` names the peer
    /// in messages. [`Connection::connect`] uses it after mTLS; `ferry up`
    /// uses it over an in-memory link to the server in the same process.
    pub async fn over_stream<S>(
        addr: &str,
        stream: S,
        role: Role,
        node_id: &str,
    ) -> Result<Arc<Self>, ProtoError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let mut hs_write = FramedWrite::new(wr, FrameCodec::<Hello, ()>::default());
        hs_write
            .send(Hello {
                versions: SUPPORTED_VERSIONS.to_vec(),
                role,
                node_id: node_id.to_owned(),
                software: concat!("ferry ", env!("CARGO_PKG_VERSION")).to_owned(),
            })
            .await?;
        let mut hs_read = FramedRead::new(rd, FrameCodec::<(), Welcome>::default());
        let welcome = hs_read
            .next()
            .await
            .ok_or_else(|| ProtoError::Handshake(format!("{addr}: closed during handshake")))??;
        let (version, peer_node_id) = match welcome {
            Welcome::Accepted {
                version,
                node_id,
                role: Role::Server,
                ..
            } => (version, node_id),
            Welcome::Accepted { role, .. } => {
                return Err(ProtoError::Handshake(format!(
                    "{addr}: peer is a {role:?}, not a server"
                )))
            }
            Welcome::Refused { reason } => {
                return Err(ProtoError::Handshake(format!("{addr} refused: {reason}")))
            }
        };

        let mut reader = hs_read.map_decoder(|_| FrameCodec::<(), Frame<Response>>::default());
        let mut writer = hs_write.map_encoder(|_| FrameCodec::<Frame<Request>, ()>::default());
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (out, mut out_rx) = mpsc::unbounded_channel::<Frame<Request>>();
        let last_frame_ms = Arc::new(AtomicU64::new(0));
        let born = tokio::time::Instant::now();
        let dead = Arc::new(tokio::sync::Notify::new());
        let observer: Arc<OnceLock<LatencyObserver>> = Arc::default();

        let conn = Arc::new(Self {
            addr: addr.to_owned(),
            peer_node_id,
            version,
            next_id: AtomicU64::new(1),
            pending: pending.clone(),
            out,
            closed: closed.clone(),
            last_frame_ms: last_frame_ms.clone(),
            born,
            dead: dead.clone(),
            observer: observer.clone(),
        });

        let writer_closed = closed.clone();
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if writer.feed(frame).await.is_err() {
                    break;
                }
                // Batch whatever else is queued before paying for a flush.
                while let Ok(frame) = out_rx.try_recv() {
                    if writer.feed(frame).await.is_err() {
                        writer_closed.store(true, Ordering::SeqCst);
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
            writer_closed.store(true, Ordering::SeqCst);
        });

        let addr_for_log = addr.to_owned();
        tokio::spawn(async move {
            let mut last_frame = tokio::time::Instant::now();
            loop {
                // Dropping a pending `next` loses nothing: the codec keeps
                // what it has read.
                let next = tokio::select! {
                    next = tokio::time::timeout(STALL_TIMEOUT / 4, reader.next()) => next,
                    () = dead.notified() => {
                        tracing::warn!(server = %addr_for_log, "internal connection dead: nothing received for {} ms with requests waiting, not even the answer to a probe; closed", DEAD_AFTER.as_millis());
                        break;
                    }
                };
                let Ok(next) = next else {
                    if last_frame.elapsed() >= STALL_TIMEOUT && !lock(&pending).is_empty() {
                        tracing::warn!(server = %addr_for_log, "internal connection stalled: nothing received for {} s with requests waiting; closed", STALL_TIMEOUT.as_secs());
                        break;
                    }
                    continue;
                };
                if next.is_some() {
                    last_frame = tokio::time::Instant::now();
                    last_frame_ms.store(born.elapsed().as_millis() as u64, Ordering::Release);
                }
                match next {
                    Some(Ok(frame)) => {
                        let waiter = lock(&pending).remove(&frame.id);
                        if let Some((waiter, guard, sent)) = waiter {
                            drop(guard);
                            if let Some(observe) = observer.get() {
                                observe(sent.elapsed());
                            }
                            let _ = waiter.send(frame.body);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(server = %addr_for_log, error = %e, "internal connection failed");
                        break;
                    }
                    None => break,
                }
            }
            closed.store(true, Ordering::SeqCst);
            // Dropping the senders wakes every waiter with an error.
            lock(&pending).clear();
        });

        Ok(conn)
    }

    /// Has `observe` told how long each request from now on took to be
    /// answered (from queueing to the reply's arrival). Set once; later
    /// calls change nothing.
    pub fn observe_latency(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(observe));
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&self, body: Request) -> Result<Response, ProtoError> {
        let waiting = self.start_call(body)?;
        waiting
            .await
            .map_err(|_| ProtoError::Closed(self.addr.clone()))
    }

    /// Queues one request now and returns the receiver of its reply.
    /// Requests are sent in the order of `start_call` calls, which is what
    /// keeps a session's writes and the close after them in order; the
    /// caller bounds how much it has in flight.
    pub fn start_call(&self, body: Request) -> Result<oneshot::Receiver<Response>, ProtoError> {
        self.queue(body, None)
    }

    /// Like [`Connection::start_call`], and drops `guard` as soon as the
    /// reply arrives (or the connection fails), however late the caller
    /// takes the reply: what a caller charges against its in-flight budget
    /// is given back when the server has answered, not when the answer has
    /// been passed on.
    pub fn start_call_releasing<G: Send + 'static>(
        &self,
        body: Request,
        guard: G,
    ) -> Result<oneshot::Receiver<Response>, ProtoError> {
        self.queue(body, Some(Box::new(guard)))
    }

    fn queue(
        &self,
        body: Request,
        guard: Option<Box<dyn Send>>,
    ) -> Result<oneshot::Receiver<Response>, ProtoError> {
        if self.is_closed() {
            return Err(ProtoError::Closed(self.addr.clone()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, (tx, guard, tokio::time::Instant::now()));
        if self.is_closed() || self.out.send(Frame { id, body }).is_err() {
            lock(&self.pending).remove(&id);
            return Err(ProtoError::Closed(self.addr.clone()));
        }
        Ok(rx)
    }

    /// Watches the connection for as long as it lives: while requests wait
    /// and nothing arrives, `probe()` is sent after [`PROBE_AFTER`] (the
    /// peer must answer it at once, whatever else it is doing), and after
    /// [`DEAD_AFTER`] without a frame the connection is closed. For
    /// connections whose peer may pause or vanish without a TCP reset
    /// while clients wait on it: an edge's connections to its servers.
    pub fn probe_with(self: &Arc<Self>, probe: fn() -> Request) {
        let conn = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_probe: Option<tokio::time::Instant> = None;
            // Since when requests have been waiting (as seen by this task).
            let mut busy_since: Option<Duration> = None;
            loop {
                tokio::time::sleep(PROBE_AFTER / 4).await;
                let Some(conn) = conn.upgrade() else {
                    return;
                };
                if conn.is_closed() {
                    return;
                }
                let now = conn.born.elapsed();
                if lock(&conn.pending).is_empty() {
                    last_probe = None;
                    busy_since = None;
                    continue;
                }
                // Quiet time counts from the last frame, or from when the
                // requests began to wait on an idle connection.
                let last = Duration::from_millis(conn.last_frame_ms.load(Ordering::Acquire))
                    .max(*busy_since.get_or_insert(now));
                let quiet = now.saturating_sub(last);
                if quiet >= DEAD_AFTER {
                    conn.dead.notify_one();
                    return;
                }
                let probed_lately = last_probe.is_some_and(|at| at.elapsed() < PROBE_AFTER);
                if quiet >= PROBE_AFTER && !probed_lately {
                    // The answer only needs to arrive; nobody waits for it.
                    let _ = conn.start_call(probe());
                    last_probe = Some(tokio::time::Instant::now());
                }
            }
        });
    }

    /// True once the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's node id, from the handshake.
    pub fn peer_node_id(&self) -> &str {
        &self.peer_node_id
    }

    /// The protocol version agreed in the handshake.
    pub fn version(&self) -> u16 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;

    /// A server over an in-memory link that completes the handshake and
    /// then answers only the requests `answers` accepts (the rest wait
    /// forever, as behind a paused process).
    async fn server(answers: fn(&Request) -> bool) -> Arc<Connection> {
        let (near, far) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let (rd, wr) = tokio::io::split(far);
            let mut hello = FramedRead::new(rd, FrameCodec::<(), Hello>::default());
            let mut welcome = FramedWrite::new(wr, FrameCodec::<Welcome, ()>::default());
            let _ = hello.next().await;
            let _ = welcome
                .send(Welcome::Accepted {
                    version: 1,
                    role: Role::Server,
                    node_id: "s1".into(),
                    software: "test".into(),
                })
                .await;
            let mut requests = hello.map_decoder(|_| FrameCodec::<(), Frame<Request>>::default());
            let mut replies = welcome.map_encoder(|_| FrameCodec::<Frame<Response>, ()>::default());
            while let Some(Ok(frame)) = requests.next().await {
                if answers(&frame.body) {
                    let reply = Frame {
                        id: frame.id,
                        body: Response::Writable(true),
                    };
                    if replies.send(reply).await.is_err() {
                        return;
                    }
                }
            }
        });
        Connection::over_stream("test", near, Role::Edge, "edge1")
            .await
            .unwrap()
    }

    fn logout() -> Request {
        Request::Logout { session: 1 }
    }

    #[tokio::test]
    async fn a_peer_that_answers_nothing_is_dead_after_the_bound() {
        let conn = server(|_| false).await;
        conn.probe_with(|| Request::Writable);
        let started = tokio::time::Instant::now();
        let waiting = conn.start_call(logout()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "the waiter was not failed within 10 s"
        );
        let took = started.elapsed();
        assert!(took >= DEAD_AFTER, "closed too early: {took:?}");
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn a_peer_that_answers_probes_is_alive_through_a_long_request() {
        let conn = server(|r| matches!(r, Request::Writable)).await;
        conn.probe_with(|| Request::Writable);
        let mut waiting = conn.start_call(logout()).unwrap();
        let outcome = tokio::time::timeout(DEAD_AFTER * 2, &mut waiting).await;
        assert!(outcome.is_err(), "the request ended: {outcome:?}");
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn an_unwatched_connection_waits() {
        let conn = server(|_| false).await;
        let mut waiting = conn.start_call(logout()).unwrap();
        let outcome = tokio::time::timeout(DEAD_AFTER * 2, &mut waiting).await;
        assert!(outcome.is_err(), "the request ended: {outcome:?}");
        assert!(!conn.is_closed());
    }
}
