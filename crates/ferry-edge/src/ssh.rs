//! The SSH server of the edge.
//!
//! Authentication is decided by the back-end server: the edge forwards the
//! password, or the public key whose signature russh has verified. Every
//! rejection takes the same configured delay (russh enforces it) and attempts
//! are capped per connection. The `sftp` subsystem is offered, and exec
//! requests for legacy scp and the hash commands ([`crate::exec`]); a shell
//! request is answered with a message, and forwarding is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_core::{ErrorKind, FerryError, Protocol, Secret};
use ferry_proto::client::Connection;
use ferry_proto::message::{Credential, Request, Response, SessionId};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Handler, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::SftpConfig;
use crate::upstream::Upstreams;
use crate::StartError;

/// Loads the host key, or creates an Ed25519 one (mode 0600) if the file is missing.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, StartError> {
    if path.exists() {
        ferry_proto::tls::check_private(path)?;
        return russh::keys::load_secret_key(path, None)
            .map_err(|e| StartError::Setup(format!("host key {}: {e}", path.display())));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| StartError::Setup(format!("cannot generate host key: {e}")))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| StartError::Setup(format!("cannot encode host key: {e}")))?;
    ferry_proto::pki::write_new(path, text.as_bytes(), true)?;
    tracing::info!(path = %path.display(), "created SSH host key");
    Ok(key)
}

/// russh settings: fast (nodelay, 8 MiB window, 64 KiB packets, AES-GCM
/// first) and strict (constant rejection delay, capped attempts).
pub fn russh_config(config: &SftpConfig, host_key: PrivateKey) -> russh::server::Config {
    let preferred = russh::Preferred {
        cipher: std::borrow::Cow::Owned(vec![
            russh::cipher::AES_128_GCM,
            russh::cipher::AES_256_GCM,
            russh::cipher::CHACHA20_POLY1305,
            russh::cipher::AES_256_CTR,
            russh::cipher::AES_128_CTR,
        ]),
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
        keys: vec![host_key],
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        nodelay: true,
        inactivity_timeout: Some(Duration::from_secs(config.idle_timeout_secs)),
        keepalive_interval: Some(Duration::from_secs(60)),
        preferred,
        ..Default::default()
    }
}

/// Accepts SSH connections until the process ends.
pub async fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    upstreams: Arc<Upstreams>,
    max_sessions: usize,
) {
    let limit = Arc::new(Semaphore::new(max_sessions.max(1)));
    loop {
        let (tcp, peer) = match listener.accept().await {
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
        let (config, upstreams) = (config.clone(), upstreams.clone());
        let idle = config.inactivity_timeout.unwrap_or(DEFAULT_IDLE);
        tokio::spawn(async move {
            let handle_slot: Arc<OnceLock<Handle>> = Arc::default();
            let handler = SshSession {
                upstreams,
                peer,
                idle,
                upstream: None,
                login: None,
                channels: HashMap::new(),
                handle: handle_slot.clone(),
            };
            match russh::server::run_stream(config, tcp, handler).await {
                Ok(running) => {
                    let _ = handle_slot.set(running.handle());
                    if let Err(e) = running.await {
                        tracing::debug!(%peer, error = %e, "ssh session ended with error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "ssh handshake failed"),
            }
            drop(permit);
        });
    }
}

/// The bound on waits inside exec channels when russh has no idle timeout.
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

struct SshSession {
    upstreams: Arc<Upstreams>,
    peer: SocketAddr,
    /// Every wait of an exec channel (client or server) is bounded by this.
    idle: Duration,
    upstream: Option<Arc<Connection>>,
    login: Option<(SessionId, String)>,
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
                tracing::warn!(peer = %self.peer, "login refused: no back-end server available");
                if let Some(handle) = self.handle.get().cloned() {
                    tokio::spawn(async move {
                        let _ = handle
                            .disconnect(
                                Disconnect::ServiceNotAvailable,
                                "Ferry: no back-end server is available, try again later".into(),
                                String::new(),
                            )
                            .await;
                    });
                }
                Err(e)
            }
        }
    }

    /// The channel `id` with what an exec or shell request needs, if the
    /// session is logged in; the channel is taken out of the waiting set.
    fn take_for_exec(&mut self, id: ChannelId) -> Option<(Channel<Msg>, crate::exec::ExecCtx)> {
        let (Some((session, account)), Some(upstream)) = (&self.login, &self.upstream) else {
            return None;
        };
        let ctx = crate::exec::ExecCtx {
            upstream: upstream.clone(),
            session: *session,
            account: account.clone(),
            idle: self.idle,
        };
        self.channels.remove(&id).map(|ch| (ch, ctx))
    }

    async fn login(&mut self, user: &str, credential: Credential) -> Auth {
        let Ok(conn) = self.upstream().await else {
            return Auth::reject();
        };
        let request = Request::Login {
            user: user.to_owned(),
            credential,
            client_addr: self.peer.to_string(),
            protocol: Protocol::Sftp,
        };
        match conn.call(request).await {
            Ok(Response::LoggedIn { session, account }) => {
                tracing::info!(peer = %self.peer, %account, "login");
                self.login = Some((session, account));
                Auth::Accept
            }
            Ok(Response::Error(e)) if e.kind == ErrorKind::AuthFailed => Auth::reject(),
            Ok(other) => {
                tracing::warn!(peer = %self.peer, reply = ?other, "login failed on the server");
                Auth::reject()
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "server lost during login");
                Auth::reject()
            }
        }
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let (Some((session, _)), Some(conn)) = (self.login.take(), self.upstream.take()) {
            tokio::spawn(async move {
                let _ = conn.call(Request::Logout { session }).await;
            });
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
        let request = Request::KeyAcceptable {
            user: user.to_owned(),
            public_key: key,
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
        let ready = match (
            name,
            self.channels.remove(&channel),
            &self.login,
            &self.upstream,
        ) {
            ("sftp", Some(ch), Some((sid, account)), Some(conn)) => {
                Some((ch, *sid, account.clone(), conn.clone()))
            }
            _ => None,
        };
        match ready {
            Some((ch, sid, account, conn)) => {
                session.channel_success(channel)?;
                let peer = self.peer;
                tokio::spawn(async move {
                    crate::sftp::serve(ch.into_stream(), conn, sid, &account).await;
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
