//! The connecting side: one multiplexed connection to a server.
//!
//! [`Connection::call`] may be used by many tasks at once. Each request gets a
//! fresh id; a writer task feeds frames to the socket and flushes only when no
//! more are queued, and a reader task hands each reply to the caller waiting
//! for its id. Nothing serialises requests, so an SFTP client's 64 pipelined
//! reads travel as 64 requests in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A waiter for a reply, and what to drop the moment the reply arrives.
type Waiter = (oneshot::Sender<Response>, Option<Box<dyn Send>>);
type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;

/// How long connecting and the handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with requests waiting that receives nothing at all for
/// this long is taken for dead (a paused or cut-off server, where no TCP
/// reset ever comes) and closed: every waiter gets an error and the next
/// session connects afresh. Longer than any one request takes (a close that
/// hashes and syncs a large file).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A live connection to a server.
pub struct Connection {
    addr: String,
    peer_node_id: String,
    version: u16,
    next_id: AtomicU64,
    pending: Pending,
    out: mpsc::UnboundedSender<Frame<Request>>,
    closed: Arc<AtomicBool>,
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

        let conn = Arc::new(Self {
            addr: addr.to_owned(),
            peer_node_id,
            version,
            next_id: AtomicU64::new(1),
            pending: pending.clone(),
            out,
            closed: closed.clone(),
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
                let next = tokio::time::timeout(STALL_TIMEOUT / 4, reader.next()).await;
                let Ok(next) = next else {
                    if last_frame.elapsed() >= STALL_TIMEOUT && !lock(&pending).is_empty() {
                        tracing::warn!(server = %addr_for_log, "internal connection stalled: nothing received for {} s with requests waiting; closed", STALL_TIMEOUT.as_secs());
                        break;
                    }
                    continue;
                };
                if next.is_some() {
                    last_frame = tokio::time::Instant::now();
                }
                match next {
                    Some(Ok(frame)) => {
                        let waiter = lock(&pending).remove(&frame.id);
                        if let Some((waiter, guard)) = waiter {
                            drop(guard);
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
        lock(&self.pending).insert(id, (tx, guard));
        if self.is_closed() || self.out.send(Frame { id, body }).is_err() {
            lock(&self.pending).remove(&id);
            return Err(ProtoError::Closed(self.addr.clone()));
        }
        Ok(rx)
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
