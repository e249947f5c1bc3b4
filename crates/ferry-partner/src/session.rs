//! Connection set-up (pinned host key, login, SFTP start-up) and the small
//! SFTP operations. The transfers live in `transfer.rs`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, MethodKind, MethodSet};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, Packet, StatusCode};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::{
    key_fingerprint, parse_public_key, PartnerAuth, PartnerError, PartnerSpec, RemoteEntry,
};

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const LIMITS: &str = "limits@openssh.com";
/// How long one SFTP request may wait for its reply.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// Bytes per read/write request unless the server's limits say less.
const CHUNK: u64 = 64 * 1024;
/// Room for the request header when the server limits whole packets.
const PACKET_OVERHEAD: u64 = 1024;

/// An authenticated SFTP session with a partner.
pub struct PartnerSession {
    pub(crate) partner: String,
    addr: String,
    pub(crate) sftp: Arc<RawSftpSession>,
    ssh: Handle<PinnedHostKey>,
    pub(crate) posix_rename: bool,
    pub(crate) fsync: bool,
    pub(crate) read_chunk: u32,
    pub(crate) write_chunk: u32,
    pub(crate) rate_limit: Option<u64>,
}

/// russh client handler: accepts exactly the pinned key and remembers what
/// else was presented, for the error message.
struct PinnedHostKey {
    pinned: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (ok, shown) = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (
                key.key_data() == self.pinned.key_data(),
                key_fingerprint(key),
            ),
            PublicKeyOrCertificate::Certificate(cert) => (
                false,
                format!(
                    "a host certificate for {}",
                    cert.public_key().fingerprint(HashAlg::Sha256)
                ),
            ),
        };
        if !ok {
            *self
                .presented
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(shown);
        }
        Ok(ok)
    }
}

/// "host:port", with brackets for IPv6 literals.
fn display_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// russh settings: the pinned key's algorithm first, so that a server with
/// several host keys presents the pinned one.
fn ssh_config(pinned: &PublicKey) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let mut keys: Vec<Algorithm> = if pinned.algorithm().is_rsa() {
        vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]
    } else {
        vec![pinned.algorithm()]
    };
    for algorithm in preferred.key.iter() {
        if !keys.contains(algorithm) {
            keys.push(algorithm.clone());
        }
    }
    preferred.key = keys.into();
    client::Config {
        preferred,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        maximum_packet_size: 65535,
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    }
}

fn method_names(methods: &MethodSet) -> String {
    if methods.is_empty() {
        return "none".to_owned();
    }
    methods
        .iter()
        .map(<&str>::from)
        .collect::<Vec<_>>()
        .join(",")
}

/// The connection context used to build errors during set-up.
struct Ctx<'a> {
    spec: &'a PartnerSpec,
    addr: &'a str,
}

impl Ctx<'_> {
    fn unreachable(&self, reason: String) -> PartnerError {
        PartnerError::Unreachable {
            partner: self.spec.name.clone(),
            addr: self.addr.to_owned(),
            reason,
        }
    }

    fn auth_failed(&self, reason: String) -> PartnerError {
        PartnerError::AuthFailed {
            partner: self.spec.name.clone(),
            addr: self.addr.to_owned(),
            user: self.spec.username.clone(),
            reason,
        }
    }

    /// A russh error while `during`: transport trouble is `Unreachable`
    /// (transient), anything else a protocol error.
    fn ssh_error(&self, during: &str, e: russh::Error) -> PartnerError {
        match e {
            russh::Error::IO(_)
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::Elapsed(_) => {
                self.unreachable(format!("connection lost during {during}: {e}"))
            }
            other => PartnerError::Protocol(format!(
                "partner {} ({}): {during}: {other}",
                self.spec.name, self.addr
            )),
        }
    }

    fn protocol(&self, message: String) -> PartnerError {
        PartnerError::Protocol(format!(
            "partner {} ({}): {message}",
            self.spec.name, self.addr
        ))
    }
}

impl PartnerSession {
    /// Connects, verifies the server's host key EXACTLY equals the pinned key
    /// (anything else — unknown/changed key — refuses the connection with
    /// [`PartnerError::HostKeyMismatch`]), authenticates (password or key;
    /// failure → [`PartnerError::AuthFailed`]) and opens the sftp subsystem.
    /// Connection refused/timeout → [`PartnerError::Unreachable`] with the
    /// address and reason. `spec.connect_timeout` bounds the TCP connection
    /// and, separately, the SSH handshake + login + SFTP start-up.
    pub async fn connect(spec: &PartnerSpec) -> Result<Self, PartnerError> {
        let addr = display_addr(&spec.host, spec.port);
        let ctx = Ctx { spec, addr: &addr };
        let pinned = parse_public_key(&spec.host_key).map_err(|e| {
            PartnerError::InvalidKey(format!(
                "partner {} ({addr}): pinned host key: {e}",
                spec.name
            ))
        })?;

        let deadline = Instant::now() + spec.connect_timeout;
        let tcp = match timeout_at(
            deadline,
            TcpStream::connect((spec.host.as_str(), spec.port)),
        )
        .await
        {
            Err(_) => {
                return Err(ctx.unreachable(format!(
                    "no TCP connection within {}",
                    seconds(spec.connect_timeout)
                )))
            }
            Ok(Err(e)) => return Err(ctx.unreachable(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };

        let deadline = Instant::now() + spec.connect_timeout;
        match timeout_at(deadline, Self::establish(&ctx, pinned, tcp)).await {
            Ok(result) => result,
            Err(_) => Err(ctx.unreachable(format!(
                "SSH handshake, login and SFTP start-up did not finish within {}",
                seconds(spec.connect_timeout)
            ))),
        }
    }

    async fn establish(
        ctx: &Ctx<'_>,
        pinned: PublicKey,
        tcp: TcpStream,
    ) -> Result<Self, PartnerError> {
        let spec = ctx.spec;
        let presented = Arc::new(Mutex::new(None));
        let handler = PinnedHostKey {
            pinned: pinned.clone(),
            presented: presented.clone(),
        };
        let mut ssh =
            match client::connect_stream(Arc::new(ssh_config(&pinned)), tcp, handler).await {
                Ok(ssh) => ssh,
                Err(e) => {
                    let shown = presented
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    return Err(match shown {
                        Some(presented_fingerprint) => PartnerError::HostKeyMismatch {
                            partner: spec.name.clone(),
                            addr: ctx.addr.to_owned(),
                            expected_fingerprint: key_fingerprint(&pinned),
                            presented_fingerprint,
                        },
                        None => ctx.ssh_error("the SSH handshake", e),
                    });
                }
            };

        authenticate(ctx, &mut ssh).await?;

        let mut channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| ctx.ssh_error("opening a session channel", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| ctx.ssh_error("requesting the sftp subsystem", e))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(ctx.protocol("the server refused the sftp subsystem".to_owned()))
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(ctx.unreachable(
                        "the server closed the channel instead of starting sftp".to_owned(),
                    ))
                }
                Some(_) => {}
            }
        }

        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = sftp
            .init()
            .await
            .map_err(|e| ctx.protocol(format!("SFTP start-up failed: {e}")))?;
        let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");

        let (mut read_len, mut write_len) = (CHUNK, CHUNK);
        if has(LIMITS) {
            match sftp.limits().await {
                Ok(raw) => {
                    let limits = Limits::from(raw);
                    sftp.set_limits(limits);
                    if let Some(packet) = limits.packet_len {
                        let room = packet.saturating_sub(PACKET_OVERHEAD).max(1);
                        read_len = read_len.min(room);
                        write_len = write_len.min(room);
                    }
                    read_len = read_len.min(limits.read_len.unwrap_or(u64::MAX));
                    write_len = write_len.min(limits.write_len.unwrap_or(u64::MAX));
                }
                Err(e) => tracing::debug!(partner = %spec.name, "limits@openssh.com failed: {e}"),
            }
        }
        let session = Self {
            partner: spec.name.clone(),
            addr: ctx.addr.to_owned(),
            sftp: Arc::new(sftp),
            ssh,
            posix_rename: has(POSIX_RENAME),
            fsync: has(FSYNC),
            read_chunk: u32::try_from(read_len.max(1)).unwrap_or(u32::MAX),
            write_chunk: u32::try_from(write_len.max(1)).unwrap_or(u32::MAX),
            rate_limit: spec.rate_limit.filter(|r| *r > 0),
        };
        tracing::debug!(
            partner = %session.partner,
            addr = %session.addr,
            posix_rename = session.posix_rename,
            fsync = session.fsync,
            read_chunk = session.read_chunk,
            write_chunk = session.write_chunk,
            "partner sftp session ready"
        );
        Ok(session)
    }

    /// Files and dirs in `dir` (absolute or relative to the login dir),
    /// without "." and "..", in the server's order.
    pub async fn list(&self, dir: &str) -> Result<Vec<RemoteEntry>, PartnerError> {
        let handle = self
            .sftp
            .opendir(dir)
            .await
            .map_err(|e| self.remote("list", dir, e))?
            .handle;
        let mut entries = Vec::new();
        let result = loop {
            match self.sftp.readdir(handle.as_str()).await {
                Ok(name) => entries.extend(
                    name.files
                        .into_iter()
                        .filter(|f| f.filename != "." && f.filename != "..")
                        .map(|f| RemoteEntry {
                            size: f.attrs.size.unwrap_or(0),
                            mtime: f.attrs.mtime.map_or(0, i64::from),
                            is_file: f.attrs.is_regular(),
                            is_dir: f.attrs.is_dir(),
                            name: f.filename,
                        }),
                ),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(self.remote("list", dir, e)),
            }
        };
        let closed = self.sftp.close(handle).await;
        result?;
        closed.map_err(|e| self.remote("list", dir, e))?;
        Ok(entries)
    }

    /// Removes the remote file `path`.
    pub async fn remove(&self, path: &str) -> Result<(), PartnerError> {
        self.sftp
            .remove(path)
            .await
            .map(drop)
            .map_err(|e| self.remote("remove", path, e))
    }

    /// Renames `from` to `to`. Uses posix-rename@openssh.com when the server
    /// advertises it (an existing `to` is replaced atomically); otherwise a
    /// plain SFTPv3 rename, which typically fails if `to` exists.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), PartnerError> {
        let result = if self.posix_rename {
            self.posix_rename(from, to).await
        } else {
            self.sftp.rename(from, to).await.map(drop)
        };
        result.map_err(|e| self.remote("rename", &format!("{from} -> {to}"), e))
    }

    /// Creates `dir` and its missing parents; fine if they exist already.
    pub async fn mkdir_all(&self, dir: &str) -> Result<(), PartnerError> {
        if self.is_dir(dir).await? {
            return Ok(());
        }
        let mut path = if dir.starts_with('/') {
            "/".to_owned()
        } else {
            String::new()
        };
        for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if !path.is_empty() && !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
            if part == ".." || self.is_dir(&path).await? {
                continue;
            }
            if let Err(e) = self
                .sftp
                .mkdir(path.as_str(), FileAttributes::empty())
                .await
            {
                // Somebody else may have created it meanwhile.
                if !self.is_dir(&path).await? {
                    return Err(self.remote("mkdir", &path, e));
                }
            }
        }
        Ok(())
    }

    /// Ends the SFTP session and the SSH connection.
    pub async fn close(self) {
        let _ = self.sftp.close_session();
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Whether `path` exists and is a directory.
    async fn is_dir(&self, path: &str) -> Result<bool, PartnerError> {
        Ok(self.stat(path).await?.is_some_and(|a| a.is_dir()))
    }

    /// Attributes of `path`, `None` if it does not exist.
    pub(crate) async fn stat(&self, path: &str) -> Result<Option<FileAttributes>, PartnerError> {
        match self.sftp.stat(path).await {
            Ok(attrs) => Ok(Some(attrs.attrs)),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(self.remote("stat", path, e)),
        }
    }

    /// Renames `from` over `to`, replacing `to` if it exists: atomically with
    /// posix-rename, else (not advertised, or refused as unsupported) by
    /// removing `to` first when the plain rename fails.
    pub(crate) async fn replace(&self, from: &str, to: &str) -> Result<(), PartnerError> {
        let shown = || format!("{from} -> {to}");
        if self.posix_rename {
            match self.posix_rename(from, to).await {
                Ok(()) => return Ok(()),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::OpUnsupported => {}
                Err(e) => return Err(self.remote("rename", &shown(), e)),
            }
        }
        let Err(first) = self.sftp.rename(from, to).await else {
            return Ok(());
        };
        if self.stat(to).await?.is_none() {
            return Err(self.remote("rename", &shown(), first));
        }
        self.remove(to).await?;
        self.sftp
            .rename(from, to)
            .await
            .map(drop)
            .map_err(|e| self.remote("rename", &shown(), e))
    }

    async fn posix_rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            let len = u32::try_from(s.len())
                .map_err(|_| SftpError::UnexpectedBehavior("path too long".to_owned()))?;
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        match self.sftp.extended(POSIX_RENAME, data).await? {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(SftpError::Status(s)),
            _ => Err(SftpError::UnexpectedPacket),
        }
    }

    /// Turns an SFTP error into a [`PartnerError::Remote`].
    pub(crate) fn remote(&self, op: &'static str, path: &str, e: SftpError) -> PartnerError {
        let (message, transient) = match &e {
            SftpError::Status(s) => {
                let text = s.error_message.trim();
                let message =
                    if text.is_empty() || text.eq_ignore_ascii_case(&s.status_code.to_string()) {
                        s.status_code.to_string().to_lowercase()
                    } else {
                        format!("{} ({})", s.status_code.to_string().to_lowercase(), text)
                    };
                let transient = !matches!(
                    s.status_code,
                    StatusCode::NoSuchFile
                        | StatusCode::PermissionDenied
                        | StatusCode::OpUnsupported
                        | StatusCode::BadMessage
                );
                (message, transient)
            }
            SftpError::Timeout => (
                format!("no reply from the server within {REQUEST_TIMEOUT_SECS} s"),
                true,
            ),
            SftpError::Limited(m) => (format!("exceeds the server's limits: {m}"), false),
            other => (format!("connection lost or broken: {other}"), true),
        };
        PartnerError::Remote {
            partner: self.partner.clone(),
            op,
            path: path.to_owned(),
            message,
            transient,
        }
    }
}

/// Logs in with the spec's credentials.
async fn authenticate(ctx: &Ctx<'_>, ssh: &mut Handle<PinnedHostKey>) -> Result<(), PartnerError> {
    let spec = ctx.spec;
    let user = spec.username.as_str();
    let during = "authentication";
    let (result, what) = match &spec.auth {
        PartnerAuth::Password(password) => {
            let result = ssh
                .authenticate_password(user, password.expose())
                .await
                .map_err(|e| ctx.ssh_error(during, e))?;
            match result {
                AuthResult::Failure {
                    remaining_methods, ..
                } if !remaining_methods.contains(&MethodKind::Password)
                    && remaining_methods.contains(&MethodKind::KeyboardInteractive) =>
                {
                    (
                        keyboard_interactive(ctx, ssh, password.expose()).await?,
                        "password (keyboard-interactive)".to_owned(),
                    )
                }
                other => (other, "password".to_owned()),
            }
        }
        PartnerAuth::PrivateKey {
            openssh_pem,
            passphrase,
        } => {
            let key = russh::keys::decode_secret_key(
                openssh_pem.expose(),
                passphrase.as_ref().map(|p| p.expose()),
            )
            .map_err(|e| {
                PartnerError::InvalidKey(format!(
                    "partner {} ({}): cannot use the configured private key: {e}",
                    spec.name, ctx.addr
                ))
            })?;
            let hash = if key.algorithm().is_rsa() {
                match ssh.best_supported_rsa_hash().await {
                    Ok(Some(hash)) => hash,
                    _ => Some(HashAlg::Sha256),
                }
            } else {
                None
            };
            let what = format!("key {}", key.public_key().fingerprint(HashAlg::Sha256));
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            let result = ssh
                .authenticate_publickey(user, key)
                .await
                .map_err(|e| ctx.ssh_error(during, e))?;
            (result, what)
        }
    };
    match result {
        AuthResult::Success => Ok(()),
        AuthResult::Failure { .. } if ssh.is_closed() => {
            Err(ctx
                .unreachable("the server closed the connection during authentication".to_owned()))
        }
        AuthResult::Failure {
            remaining_methods,
            partial_success: true,
        } => Err(ctx.auth_failed(format!(
            "{what} accepted, but the server demands more ({}), which Ferry does not do",
            method_names(&remaining_methods)
        ))),
        AuthResult::Failure {
            remaining_methods, ..
        } => Err(ctx.auth_failed(format!(
            "the server rejected the {what} (server accepts: {})",
            method_names(&remaining_methods)
        ))),
    }
}

/// Keyboard-interactive login answering every hidden prompt with the password.
async fn keyboard_interactive(
    ctx: &Ctx<'_>,
    ssh: &mut Handle<PinnedHostKey>,
    password: &str,
) -> Result<AuthResult, PartnerError> {
    let during = "keyboard-interactive authentication";
    let mut reply = ssh
        .authenticate_keyboard_interactive_start(ctx.spec.username.as_str(), None)
        .await
        .map_err(|e| ctx.ssh_error(during, e))?;
    for _ in 0..8 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(AuthResult::Success),
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            } => {
                return Ok(AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                })
            }
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if p.echo {
                            String::new()
                        } else {
                            password.to_owned()
                        }
                    })
                    .collect();
                reply = ssh
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(|e| ctx.ssh_error(during, e))?;
            }
        }
    }
    Err(ctx.auth_failed("keyboard-interactive login kept asking questions; giving up".to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A connection that breaks under an open session gives transient errors.
    #[tokio::test]
    async fn lost_connection_is_transient() {
        let sshd = crate::test_sshd::start();
        let spec = crate::test_spec(&sshd, "acme");
        let session = PartnerSession::connect(&spec).await.unwrap();
        let root = sshd.root.to_str().unwrap();
        session.list(root).await.unwrap();
        session
            .ssh
            .disconnect(russh::Disconnect::ConnectionLost, "", "en")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let err = session.list(root).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let local = tempfile::tempdir().unwrap();
        let err = session
            .get_file(&format!("{root}/x"), &local.path().join("x"))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("partner acme"), "{err}");
    }
}
