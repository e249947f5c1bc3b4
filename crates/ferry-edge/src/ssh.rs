//! The SSH server of the edge.
//!
//! Authentication is decided by the back-end server: the edge forwards the
//! password, or the public key whose signature russh has verified. Every
//! rejection takes the same configured delay (russh enforces it) and attempts
//! are capped per connection. The `sftp` subsystem is offered, and exec
//! requests for legacy scp and the hash commands ([`crate::exec`]); a shell
//! request is answered with a message, and forwarding is refused.
//!
//! Before login a connection holds one of few places ([`PreAuth`]): a
//! grace time closes it, whatever stage it stopped at, and caps overall
//! (with random early drop) and per address keep a flood of connections
//! that never log in from shutting real clients out. Behind a trusted load
//! balancer, a connection's client is the source of its PROXY protocol
//! header ([`ferry_http::proxy`]), and these limits count that client.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_core::limits::{AddressCaps, ConnectionRate, Refused, Slot};
use ferry_core::{ErrorKind, FerryError, Protocol, Secret};
use ferry_http::proxy::ProxyProtocol;
use ferry_proto::client::Connection;
use ferry_proto::message::{Credential, Request, Response};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Handler, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::SftpConfig;
use crate::upstream::{SessionLease, Upstreams};

/// Key exchanges, best first: the post-quantum hybrid, then X25519, then
/// NIST ECDH for clients that lack both (older JSch). No SHA-1 exchange is
/// offered, and no finite-field Diffie-Hellman unless configured: its
/// big-number math costs the server far more than the client (the "DHEat"
/// denial of service).
const KEX_ORDER: &[russh::kex::Name] = &[
    russh::kex::MLKEM768X25519_SHA256,
    russh::kex::CURVE25519,
    russh::kex::CURVE25519_PRE_RFC_8731,
    russh::kex::ECDH_SHA2_NISTP256,
    russh::kex::ECDH_SHA2_NISTP384,
    russh::kex::ECDH_SHA2_NISTP521,
];

/// Protocol extensions announced in the key-exchange list (ext-info, strict
/// kex), after the exchanges.
const KEX_EXTENSIONS: &[russh::kex::Name] = &[
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Host key signature algorithms, best first. RSA keys sign with SHA-2
/// only: `ssh-rsa` (SHA-1) is left out, unlike russh's default list.
const HOST_KEY_ORDER: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The channel window of a connection that arrives alone (see
/// [`SshConfigs::for_open_sessions`]).
const LARGEST_WINDOW: u32 = 16 << 20;
/// The least channel window any connection is given, however many are
/// open: twice what OpenSSH's sshd gives.
const SMALLEST_WINDOW: u32 = 4 << 20;

/// The russh settings of the SSH listener, one per channel window from
/// [`LARGEST_WINDOW`] down to [`SMALLEST_WINDOW`] by halves.
///
/// A large window is what lets one client fill a long link: OpenSSH's
/// `sftp` keeps 64 writes of up to 255 KiB in flight, and russh tops the
/// window up when half is used, so a 50 ms link carries about half the
/// window per round trip (8 MiB: 76 MB/s, 16 MiB: 109 MB/s in
/// `ferry-bench`). Many clients at once gain nothing from it — together
/// they fill the link or the disk anyway — and each client pays for the
/// window it is given in buffer copies: 16 OpenSSH clients with 16 MiB
/// each moved half as many bytes as with 4 MiB, their CPU spent on page
/// faults and `memmove` of their channel buffers. So the window shrinks
/// with the number of open connections.
pub struct SshConfigs {
    /// Windows larger than [`SMALLEST_WINDOW`], largest first.
    larger: Vec<(u32, Arc<russh::server::Config>)>,
    smallest: Arc<russh::server::Config>,
}

impl SshConfigs {
    /// The settings for `config` with `host_keys`, for every window.
    pub fn new(config: &SftpConfig, host_keys: Vec<PrivateKey>) -> Self {
        let mut larger = Vec::new();
        let mut window = LARGEST_WINDOW;
        while window > SMALLEST_WINDOW {
            let settings = russh_config(config, host_keys.clone(), window);
            larger.push((window, Arc::new(settings)));
            window /= 2;
        }
        let smallest = Arc::new(russh_config(config, host_keys, SMALLEST_WINDOW));
        Self { larger, smallest }
    }

    /// The settings of a connection that arrives while `open` SSH
    /// connections (itself included) are open: the largest window that
    /// fits `open` times in [`LARGEST_WINDOW`], else the smallest. It stays
    /// the connection's for its life.
    pub fn for_open_sessions(&self, open: usize) -> Arc<russh::server::Config> {
        let open = open.max(1) as u64;
        let fits = |(window, _): &&(u32, _)| u64::from(*window) * open <= u64::from(LARGEST_WINDOW);
        match self.larger.iter().find(fits) {
            Some((_, settings)) => settings.clone(),
            None => self.smallest.clone(),
        }
    }
}

/// russh settings: fast (nodelay, a channel window of `window` bytes, 64
/// KiB packets, AES-GCM first, no compression unless configured) and
/// strict (constant rejection delay, capped attempts, no SHA-1 key
/// exchange or signature).
pub fn russh_config(
    config: &SftpConfig,
    host_keys: Vec<PrivateKey>,
    window: u32,
) -> russh::server::Config {
    // Only the delayed form: nothing is decompressed before a login.
    let compression: &[russh::compression::Name] = if config.compression {
        &[russh::compression::ZLIB_LEGACY, russh::compression::NONE]
    } else {
        &[russh::compression::NONE]
    };
    // Group 14 (SHA-256) last, for partners whose clients know nothing else.
    let dh: &[russh::kex::Name] = if config.finite_field_dh {
        &[russh::kex::DH_G14_SHA256]
    } else {
        &[]
    };
    let kex = [KEX_ORDER, dh, KEX_EXTENSIONS].concat();
    let preferred = russh::Preferred {
        kex: Cow::Owned(kex),
        key: Cow::Borrowed(HOST_KEY_ORDER),
        cipher: Cow::Owned(vec![
            russh::cipher::AES_128_GCM,
            russh::cipher::AES_256_GCM,
            russh::cipher::CHACHA20_POLY1305,
            russh::cipher::AES_256_CTR,
            russh::cipher::AES_128_CTR,
        ]),
        compression: Cow::Borrowed(compression),
        ..Default::default()
    };
    let methods = MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]);
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-Ferry_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods,
        auth_rejection_time: Duration::from_millis(config.auth_failure_delay_ms),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: config.max_auth_attempts,
        keys: host_keys,
        // What a client may send ahead is also bounded by
        // `channel_buffer_size` packets.
        window_size: window,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        nodelay: true,
        inactivity_timeout: Some(Duration::from_secs(config.idle_timeout_secs)),
        keepalive_interval: Some(Duration::from_secs(60)),
        preferred,
        ..Default::default()
    }
}

/// Who may be connected without having logged in yet: a grace time, a
/// cap with random early drop, and a cap per address (OpenSSH's
/// `LoginGraceTime`, `MaxStartups`, `PerSourceMaxStartups`).
#[derive(Debug)]
pub struct PreAuth {
    grace: Duration,
    waiting: Arc<AddressCaps>,
    rate: ConnectionRate,
}

impl PreAuth {
    /// The limits of an SFTP listener.
    pub fn new(config: &SftpConfig) -> Self {
        Self {
            grace: Duration::from_secs(config.login_grace_secs.max(1)),
            waiting: AddressCaps::new(
                config.max_unauthenticated,
                config.max_unauthenticated_per_address,
            ),
            rate: ConnectionRate::new(
                config.new_connections_per_address_per_sec,
                config.new_connections_per_address_per_sec.saturating_mul(4),
            ),
        }
    }

    /// A place for a new connection from `ip`, or why there is none. It is
    /// given back when the connection logs in or ends.
    fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        if !self.rate.allow(ip) {
            return Err("too many new connections from this address");
        }
        let max = self.waiting.max();
        // Random early drop: from half the cap on, refuse 30 % of new
        // connections, rising to all of them at the cap. (Half, not
        // OpenSSH's tenth: one address, held to its own cap, must not
        // start dropping everybody else's connections.)
        let start = max / 2;
        let early_drop = |total: usize| {
            if total < start {
                return true;
            }
            let span = (max - start).max(1) as f64;
            let p = 0.3 + 0.7 * (total - start) as f64 / span;
            rand::random::<f64>() >= p
        };
        self.waiting.admit_if(ip, early_drop).map_err(|r| match r {
            Refused::PerAddress => "too many connections from this address without a login",
            Refused::Total => "too many connections without a login",
            Refused::Policy => "too many connections without a login (early drop)",
        })
    }
}

/// Accepts SSH connections until the process ends. A connection from a
/// peer `proxy` trusts starts with a PROXY protocol header, read before
/// the pre-login limits count it: its source is the client from then on.
pub async fn serve(
    listener: TcpListener,
    configs: SshConfigs,
    upstreams: Arc<Upstreams>,
    max_sessions: usize,
    pre_auth: Arc<PreAuth>,
    connections: ferry_worker::Connections,
    proxy: ProxyProtocol,
) {
    let max_sessions = max_sessions.max(1);
    let limit = Arc::new(Semaphore::new(max_sessions));
    let front = Arc::new(Front {
        configs,
        upstreams,
        pre_auth,
        connections: connections.clone(),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = connections.stopped() => {
                tracing::info!("sftp listener closed (shutting down)");
                return;
            }
        };
        let (mut tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many sessions; connection refused");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let config = front
            .configs
            .for_open_sessions(max_sessions - limit.available_permits());
        let front = front.clone();
        if proxy.trusts(peer.ip()) {
            // The header comes first, in the connection's own task; then
            // the pre-login limits count the client it names.
            let proxy = proxy.clone();
            connections.serve(async move {
                let client = match proxy.client(&mut tcp, peer).await {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!(proxy = %peer, error = %e, "connection from a trusted proxy without a valid PROXY header; closed");
                        return;
                    }
                };
                tracing::debug!(%client, proxy = %peer, "PROXY header read");
                if let Some(slot) = front.admit(client) {
                    front.run(tcp, client, config, slot, permit).await;
                }
            });
        } else if let Some(slot) = front.admit(peer) {
            connections.serve(front.run(tcp, peer, config, slot, permit));
        }
    }
}

/// What every connection of the SSH listener shares.
struct Front {
    configs: SshConfigs,
    upstreams: Arc<Upstreams>,
    pre_auth: Arc<PreAuth>,
    connections: ferry_worker::Connections,
}

impl Front {
    /// A place among the connections not logged in for one from `peer`, or
    /// none (logged).
    fn admit(&self, peer: SocketAddr) -> Option<Slot> {
        match self.pre_auth.admit(peer.ip()) {
            Ok(slot) => Some(slot),
            Err(why) => {
                tracing::warn!(%peer, "{why}; connection refused");
                None
            }
        }
    }

    /// Runs the SSH session of `peer` (the client, the PROXY header's
    /// source behind a trusted proxy) with `config` until it ends.
    async fn run(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        config: Arc<russh::server::Config>,
        slot: Slot,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        // A second handle on the socket, to shut it down after the grace time.
        let (tcp, socket) = match second_handle(tcp) {
            Ok((tcp, socket)) => (tcp, Some(socket)),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot set up the connection");
                return;
            }
        };
        let idle = config.inactivity_timeout.unwrap_or(DEFAULT_IDLE);
        let grace = self.pre_auth.grace;
        let _open = crate::metrics::METRICS.ssh_connection();
        let handle_slot: Arc<OnceLock<Handle>> = Arc::default();
        let logged_in = Arc::new(AtomicBool::new(false));
        let tried = Arc::new(AtomicBool::new(false));
        let handler = SshSession {
            tried: tried.clone(),
            upstreams: self.upstreams.clone(),
            peer,
            idle,
            upstream: None,
            login: None,
            pre_auth: Some(slot),
            logged_in: logged_in.clone(),
            channels: HashMap::new(),
            handle: handle_slot.clone(),
        };
        // What the client did wrong, if it broke the protocol.
        let session = async {
            match russh::server::run_stream(config, tcp, handler).await {
                Ok(running) => {
                    let _ = handle_slot.set(running.handle());
                    match running.await {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "ssh session ended with error");
                            protocol_error(&e).then(|| format!("ssh: {e}"))
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "ssh handshake failed");
                    protocol_error(&e).then(|| format!("ssh handshake: {e}"))
                }
            }
        };
        // A connection that has not logged in within the grace time is
        // dropped, whatever stage it stopped at (banner, key exchange,
        // authentication).
        let grace_over = async {
            tokio::time::sleep(grace).await;
            if logged_in.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        let cut = self.connections.cutting();
        let mut misbehaved = None;
        tokio::select! {
            what = session => misbehaved = what,
            () = cut => {
                tracing::info!(%peer, "connection closed (the edge stops)");
                if let Some(socket) = &socket {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            }
            () = grace_over => {
                tracing::warn!(%peer, grace_secs = grace.as_secs(), "no login within the grace time; connection closed");
                misbehaved = Some("no login within the grace time".to_owned());
                // Past its banner the session runs in a task of its own,
                // which may wait on the client in any state: shutting
                // the socket down ends it wherever it is.
                if let Some(socket) = &socket {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        drop(permit);
        // A client whose credentials reached a server was scored there.
        if let Some(what) = misbehaved {
            if !logged_in.load(Ordering::Acquire) && !tried.load(Ordering::Acquire) {
                crate::metrics::METRICS.protocol_error();
                self.report(peer, what).await;
            }
        }
    }

    /// Tells a server's defender that `peer` broke the protocol before any
    /// credential (bounded: a report that cannot be made is logged).
    async fn report(&self, peer: SocketAddr, what: String) {
        let request = Request::ClientMisbehaved {
            client_addr: peer.to_string(),
            what,
        };
        let sent = tokio::time::timeout(REPORT_WAIT, async {
            self.upstreams
                .pick()
                .await?
                .call(request)
                .await
                .map_err(|e| {
                    FerryError::new(ErrorKind::Unavailable, format!("the server was lost: {e}"))
                })
        })
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            tracing::debug!(%peer, "a protocol error could not be reported to a server");
        }
    }
}

/// How long reporting a client's protocol error may take.
const REPORT_WAIT: Duration = Duration::from_secs(5);

/// Whether an SSH session's error is the client breaking the protocol
/// (not a connection closed or timed out, which clients and health
/// checks do).
fn protocol_error(e: &russh::Error) -> bool {
    !matches!(
        e,
        russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::Elapsed(_)
            | russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::Join(_)
    )
}

/// The accepted socket, and a second handle on it (a duplicated descriptor)
/// that can shut it down while russh owns the first.
fn second_handle(
    tcp: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std = tcp.into_std()?;
    let second = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, second))
}

/// The bound on waits inside exec channels when russh has no idle timeout.
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

struct SshSession {
    upstreams: Arc<Upstreams>,
    peer: SocketAddr,
    /// How long a client may leave replies untaken (SFTP), and the bound
    /// of every wait of an exec channel (client or server).
    idle: Duration,
    upstream: Option<Arc<Connection>>,
    login: Option<(Arc<SessionLease>, String)>,
    /// This connection's place among those not logged in, until it logs in.
    pre_auth: Option<Slot>,
    /// Set once it has logged in (the grace timer reads it).
    logged_in: Arc<AtomicBool>,
    /// Set once a credential of it went to a server (which scores it).
    tried: Arc<AtomicBool>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    handle: Arc<OnceLock<Handle>>,
}

impl SshSession {
    /// The server this session sticks to, chosen on first use.
    async fn upstream(&mut self) -> Result<Arc<Connection>, FerryError> {
        if let Some(c) = &self.upstream {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        match self.upstreams.pick().await {
            Ok(c) => {
                self.upstream = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                self.no_server();
                Err(e)
            }
        }
    }

    /// Ends the connection telling the client no server can take it, so a
    /// failover does not look like a wrong password.
    fn no_server(&self) {
        tracing::warn!(peer = %self.peer, "login refused: no back-end server available");
        if let Some(handle) = self.handle.get().cloned() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        Disconnect::ServiceNotAvailable,
                        format!("Ferry: {}, try again later", crate::upstream::NO_SERVER),
                        String::new(),
                    )
                    .await;
            });
        }
    }

    /// The channel `id` with what an exec or shell request needs, if the
    /// session is logged in; the channel is taken out of the waiting set.
    fn take_for_exec(&mut self, id: ChannelId) -> Option<(Channel<Msg>, crate::exec::ExecCtx)> {
        let Some((lease, account)) = &self.login else {
            return None;
        };
        let ctx = crate::exec::ExecCtx {
            upstream: lease.upstream.clone(),
            session: lease.session,
            lease: lease.clone(),
            account: account.clone(),
            idle: self.idle,
        };
        self.channels.remove(&id).map(|ch| (ch, ctx))
    }

    async fn login(&mut self, user: &str, credential: Credential) -> Auth {
        self.tried.store(true, Ordering::Release);
        let request = Request::Login {
            user: user.to_owned(),
            credential,
            client_addr: self.peer.to_string(),
            protocol: Protocol::Sftp,
        };
        match self.upstreams.login(request).await {
            Ok((conn, Response::LoggedIn { session, account })) => {
                tracing::info!(peer = %self.peer, %account, "login");
                self.upstream = Some(conn.clone());
                let lease = SessionLease {
                    session,
                    upstream: conn,
                };
                self.login = Some((Arc::new(lease), account));
                self.logged_in.store(true, Ordering::Release);
                self.pre_auth = None;
                Auth::Accept
            }
            Ok((_, Response::Error(e))) if e.kind == ErrorKind::AuthFailed => Auth::reject(),
            Ok((_, Response::Error(e))) if e.kind == ErrorKind::Unavailable => {
                self.no_server();
                Auth::reject()
            }
            Ok((_, other)) => {
                tracing::warn!(peer = %self.peer, reply = ?other, "login failed on the server");
                Auth::reject()
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "no server took the login");
                self.no_server();
                Auth::reject()
            }
        }
    }
}

impl Handler for SshSession {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self
            .login(user, Credential::Password(Secret::new(password)))
            .await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let Ok(key) = offer.public_key.to_openssh() else {
            return Ok(Auth::reject());
        };
        let Ok(conn) = self.upstream().await else {
            return Ok(Auth::reject());
        };
        self.tried.store(true, Ordering::Release);
        let request = Request::KeyAcceptable {
            user: user.to_owned(),
            public_key: key,
            client_addr: self.peer.to_string(),
        };
        Ok(match conn.call(request).await {
            Ok(Response::KeyAcceptable(true)) => Auth::Accept,
            _ => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Ok(text) = key.public_key.to_openssh() else {
            return Ok(Auth::reject());
        };
        Ok(self.login(user, Credential::VerifiedPublicKey(text)).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login.is_some() && self.channels.len() < 8 {
            self.channels.insert(channel.id(), channel);
            reply.accept().await;
        } else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ready = match (name, self.channels.remove(&channel), &self.login) {
            ("sftp", Some(ch), Some((lease, account))) => {
                Some((ch, lease.clone(), account.clone()))
            }
            _ => None,
        };
        match ready {
            Some((ch, lease, account)) => {
                session.channel_success(channel)?;
                let sftp = crate::sftp::SftpSession {
                    upstream: lease.upstream.clone(),
                    session: lease.session,
                    lease,
                    account,
                    peer: self.peer,
                    idle: self.idle,
                    ssh: self.handle.get().cloned(),
                };
                tokio::spawn(async move {
                    let (peer, account) = (sftp.peer, sftp.account.clone());
                    crate::sftp::serve(ch, sftp).await;
                    tracing::debug!(%peer, %account, "sftp channel closed");
                });
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.take_for_exec(channel) {
            Some((ch, ctx)) => {
                session.channel_success(channel)?;
                tokio::spawn(crate::exec::refuse_shell(ch, ctx.idle));
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.take_for_exec(channel) {
            Some((ch, ctx)) => {
                session.channel_success(channel)?;
                let command = data.to_vec();
                tokio::spawn(crate::exec::serve(ch, command, ctx));
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_auth_caps_each_address_and_gives_places_back() {
        let mut config = sftp_config(false);
        config.max_unauthenticated_per_address = 2;
        let pre = Arc::new(PreAuth::new(&config));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = pre.admit(a).unwrap();
        let _second = pre.admit(a).unwrap();
        assert!(pre.admit(a).is_err(), "a third from one address");
        let _other = pre.admit(b).expect("another address still gets in");
        drop(first);
        assert!(pre.admit(a).is_ok(), "a place given back is free again");
    }

    fn sftp_config(compression: bool) -> SftpConfig {
        SftpConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            host_keys: None,
            host_key: None,
            compression,
            finite_field_dh: false,
            auth_failure_delay_ms: 0,
            max_auth_attempts: 1,
            idle_timeout_secs: 1,
            max_sessions: 1,
            login_grace_secs: 60,
            max_unauthenticated: 256,
            max_unauthenticated_per_address: 64,
            new_connections_per_address_per_sec: 20,
        }
    }

    #[test]
    fn the_window_shrinks_with_the_open_connections() {
        let configs = SshConfigs::new(&sftp_config(false), Vec::new());
        let window = |open| configs.for_open_sessions(open).window_size >> 20;
        assert_eq!(window(0), 16);
        assert_eq!(window(1), 16);
        assert_eq!(window(2), 8);
        assert_eq!(window(3), 4);
        assert_eq!(window(16), 4);
        assert_eq!(window(10_000), 4);
    }

    #[test]
    fn compression_is_offered_only_when_configured() {
        let names = |c: bool| -> Vec<String> {
            russh_config(&sftp_config(c), Vec::new(), LARGEST_WINDOW)
                .preferred
                .compression
                .iter()
                .map(|n| n.as_ref().to_owned())
                .collect()
        };
        assert_eq!(names(false), ["none"]);
        assert!(names(true).contains(&"zlib@openssh.com".to_owned()));
        // Never the form that inflates data before a login.
        assert!(!names(true).contains(&"zlib".to_owned()));
        assert!(names(true).contains(&"none".to_owned()));
    }

    #[test]
    fn the_post_quantum_exchange_comes_first_and_sha1_never() {
        let config = russh_config(&sftp_config(false), Vec::new(), LARGEST_WINDOW);
        let kex: Vec<&str> = config.preferred.kex.iter().map(|n| n.as_ref()).collect();
        assert_eq!(kex.first(), Some(&"mlkem768x25519-sha256"));
        assert!(kex.iter().all(|k| !k.contains("sha1")), "{kex:?}");
        assert!(
            kex.iter().all(|k| !k.starts_with("diffie-hellman")),
            "{kex:?}"
        );
        let mut with_dh = sftp_config(false);
        with_dh.finite_field_dh = true;
        let config = russh_config(&with_dh, Vec::new(), LARGEST_WINDOW);
        let dh: Vec<&str> = config
            .preferred
            .kex
            .iter()
            .map(|n| n.as_ref())
            .filter(|k| k.starts_with("diffie-hellman"))
            .collect();
        assert_eq!(dh, ["diffie-hellman-group14-sha256"]);
        let keys: Vec<&str> = config.preferred.key.iter().map(|a| a.as_str()).collect();
        assert!(!keys.contains(&"ssh-rsa"), "{keys:?}");
    }
}
