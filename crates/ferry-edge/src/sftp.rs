//! The SFTP request loop of the edge.
//!
//! The stock russh-sftp server answers one request at a time, which stalls
//! clients that pipeline (OpenSSH keeps 64 reads of up to 256 KiB in flight,
//! paramiko queues one read per 32 KiB of the whole file at once). Three
//! tasks serve a channel:
//!
//! * **intake** keeps draining the channel. russh hands channel data over
//!   from its connection loop, so a channel that is not read blocks the
//!   whole SSH connection, window adjustments included: a client then can
//!   take no more replies and the session hangs. Intake therefore never
//!   waits on the server; it decodes each request (a READ is ~40 bytes) and
//!   queues it. Past [`MAX_QUEUED_REQUESTS`] unanswered requests a request is
//!   refused with a FAILURE status saying so; intake only pauses for write
//!   data beyond [`MAX_QUEUED_WRITE_BYTES`] (which the server drains on its
//!   own) or for a client that reads no replies at all.
//! * **dispatch** sends queued requests to the server in arrival order,
//!   bounded by what is in flight to the server ([`MAX_IN_FLIGHT_BYTES`],
//!   given back when the server answers) and by replies not yet written to
//!   the client ([`MAX_UNWRITTEN_BYTES`]).
//! * **the writer** answers requests in arrival order as replies arrive. A
//!   client that takes no reply for the idle timeout is disconnected and
//!   logged, never left hanging.
//!
//! When the client ends the channel, the writer finishes and the channel
//! closes with exit-status 0, as OpenSSH's sftp-server does (`scp` and
//! `ssh -s` report that status).
//!
//! Packets are decoded and encoded with russh-sftp's protocol types.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::message::{
    DirEntry, FileKind, FileStat, FsOp, FsStats, OpenMode, Request, Response, SessionId, SetAttrs,
};
use russh::server::{Handle, Msg};
use russh::{Channel, Disconnect};
use russh_sftp::extensions::{LimitsExtension, Statvfs};
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, FileAttributes, Handle as SftpHandle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

/// Largest read or write served per request.
pub const MAX_IO_LEN: u32 = 256 * 1024;
/// Largest SFTP packet accepted from a client.
pub const MAX_PACKET_LEN: u32 = MAX_IO_LEN + 4096;
/// Bytes a session may have in flight to the server (request data plus
/// expected read data); given back as the server answers.
pub const MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of replies a session may hold that the client has not taken yet.
pub const MAX_UNWRITTEN_BYTES: usize = 16 * 1024 * 1024;
/// Unanswered requests a session may have; further ones are refused.
pub const MAX_QUEUED_REQUESTS: usize = 65_536;
/// Refusals a session may have unanswered before intake stops reading (the
/// client then reads no replies at all).
const MAX_REFUSED: usize = 4096;
/// Write data a session may have queued before intake waits for the server.
pub const MAX_QUEUED_WRITE_BYTES: usize = 32 * 1024 * 1024;
/// Cost charged for a request that moves no file data.
const SMALL_COST: usize = 1024;

/// A decoded request, waiting for dispatch.
enum Item {
    /// Answered already (a local error, INIT, limits).
    Ready(Bytes),
    /// To be sent to the server.
    Forward { id: u32, op: FsOp, expect: Expect },
}

/// What a queued request turns into once its reply arrives.
enum Pending {
    /// Already answered.
    Ready(Bytes),
    /// The connection to the server was found closed before the request
    /// could be sent: answered "failure", then the session ends.
    Lost { id: u32 },
    /// Waiting for the server's reply.
    Upstream {
        id: u32,
        expect: Expect,
        reply: oneshot::Receiver<Response>,
        /// The request may change something (`FsOp::changes`).
        changes: bool,
    },
}

/// How to translate a server reply into an SFTP packet.
#[derive(Clone, Copy)]
enum Expect {
    Status,
    Handle,
    Data,
    Attrs,
    Name,
    Path,
    Statvfs,
}

#[derive(Deserialize)]
struct TwoPaths {
    oldpath: String,
    newpath: String,
}

#[derive(Deserialize)]
struct OnePath {
    path: String,
}

#[derive(Deserialize)]
struct OneHandle {
    handle: String,
}

#[derive(Deserialize)]
struct OneUser {
    username: String,
}

#[derive(Deserialize)]
struct CopyData {
    read_handle: String,
    read_offset: u64,
    length: u64,
    write_handle: String,
    write_offset: u64,
}

/// Who a channel serves, and how long it may wait on the client.
pub struct SftpSession {
    /// The server this session lives on.
    pub upstream: Arc<Connection>,
    /// The session on that server.
    pub session: SessionId,
    /// Keeps that session logged in while the channel runs; the last
    /// holder's drop logs it out.
    pub lease: Arc<crate::upstream::SessionLease>,
    /// The account, as the server named it (shown as owner in listings).
    pub account: String,
    /// The client's address, for logs.
    pub peer: SocketAddr,
    /// How long a client may leave replies untaken (or requests unsent
    /// while write data waits) before it is disconnected.
    pub idle: Duration,
    /// The SSH connection, to disconnect a client that reads nothing.
    pub ssh: Option<Handle>,
}

/// Counts shared by the three tasks of a channel.
#[derive(Default)]
struct Flow {
    /// Requests read and not yet answered to the client.
    unanswered: AtomicUsize,
    /// Write data read and not yet handed to the server.
    queued_write_bytes: AtomicUsize,
    /// Woken whenever either count goes down.
    drained: Notify,
}

impl Flow {
    fn answered(&self) {
        self.unanswered.fetch_sub(1, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// May a request carrying `write_bytes` of data be taken now?
    fn has_room(&self, write_bytes: usize) -> bool {
        let queued = self.queued_write_bytes.load(Ordering::Acquire);
        self.unanswered.load(Ordering::Acquire) < MAX_QUEUED_REQUESTS + MAX_REFUSED
            && (write_bytes == 0 || queued == 0 || queued + write_bytes <= MAX_QUEUED_WRITE_BYTES)
    }

    /// Waits until a request carrying `write_bytes` may be taken, at most `idle`.
    async fn room(&self, write_bytes: usize, idle: Duration) -> bool {
        tokio::time::timeout(idle, async {
            loop {
                let drained = self.drained.notified();
                if self.has_room(write_bytes) {
                    return;
                }
                drained.await;
            }
        })
        .await
        .is_ok()
    }
}

/// How a channel's service ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed the channel (or it broke).
    Closed,
    /// The client stopped taking replies for the idle timeout.
    Stalled,
    /// The connection to the session's server was lost. The session lives
    /// on that server, so it cannot go on: it ends, and the client
    /// reconnects (to another server, if there is one) instead of getting
    /// failures for good. If a request that changes something (a CLOSE
    /// that commits an upload, a rename, a remove: `FsOp::changes`) was
    /// with the server (`change`), it may or may not have been done: SFTP
    /// has no status for "unknown", and a failure status would be a claim
    /// the edge cannot make, so that request is not answered at all.
    UpstreamLost {
        /// A change was in flight; its outcome is unknown.
        change: bool,
    },
}

/// Serves one SFTP channel until the client closes it, then closes the
/// channel with an exit status.
pub async fn serve(channel: Channel<Msg>, s: SftpSession) {
    let (mut read_half, write_half) = channel.split();
    let flow = Arc::new(Flow::default());
    let (to_dispatch, dispatch_rx) = mpsc::unbounded_channel::<Item>();
    let (to_writer, writer_rx) = mpsc::unbounded_channel::<(Pending, OwnedSemaphorePermit)>();
    let dispatcher = tokio::spawn(dispatch(
        dispatch_rx,
        to_writer,
        s.upstream.clone(),
        s.session,
        flow.clone(),
    ));
    let mut writer = tokio::spawn(write_replies(
        write_half.make_writer(),
        writer_rx,
        s.account.clone(),
        flow.clone(),
        s.idle,
    ));
    let ctx = Ctx {
        account: s.account.clone(),
    };
    let mut end = End::Closed;
    // Set when the writer ended first: the client left (keep reading what
    // it sent before it went) or took no reply for the idle timeout.
    let mut writer_end: Option<End> = None;
    {
        let mut rd = read_half.make_reader();
        loop {
            let read = tokio::select! {
                read = read_packet(&mut rd) => read,
                done = &mut writer, if writer_end.is_none() => {
                    let done = done.unwrap_or(End::Closed);
                    if done != End::Closed {
                        end = done;
                        break;
                    }
                    writer_end = Some(done);
                    continue;
                }
            };
            let packet = match read {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %s.peer, error = %e, "sftp channel read failed");
                    break;
                }
            };
            let write_bytes = write_len(&packet);
            if !flow.has_room(write_bytes) && !flow.room(write_bytes, s.idle).await {
                end = End::Stalled;
                break;
            }
            let queued = flow.unanswered.fetch_add(1, Ordering::AcqRel);
            let item = if queued >= MAX_QUEUED_REQUESTS {
                Item::Ready(status(
                    request_id(&packet),
                    StatusCode::Failure,
                    &format!(
                        "too many requests in flight (at most {MAX_QUEUED_REQUESTS}); request refused"
                    ),
                ))
            } else {
                let item = ctx.decode(packet);
                if let Item::Forward {
                    op: FsOp::Write { data, .. },
                    ..
                } = &item
                {
                    flow.queued_write_bytes
                        .fetch_add(data.len(), Ordering::AcqRel);
                }
                item
            };
            if to_dispatch.send(item).is_err() {
                break;
            }
        }
    }
    drop(to_dispatch);
    if end == End::Closed {
        let _ = dispatcher.await;
        if writer_end.is_none() && matches!(writer.await, Ok(End::Stalled)) {
            end = End::Stalled;
        }
    } else {
        dispatcher.abort();
        writer.abort();
    }
    // Nothing reads this channel any more: russh's loop must never wait on it.
    drop(read_half);
    match end {
        End::Closed => {
            let _ = write_half.exit_status(0).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        }
        End::UpstreamLost { change } => {
            let why = if change {
                tracing::warn!(
                    peer = %s.peer, account = %s.account,
                    "the server was lost with a change in flight; disconnected (its outcome is unknown)"
                );
                "Ferry: the connection to the server was lost; the outcome of the last request \
                 is unknown"
            } else {
                tracing::warn!(
                    peer = %s.peer, account = %s.account,
                    "the server was lost; disconnected so that the client reconnects"
                );
                "Ferry: the connection to the server was lost; reconnect"
            };
            if let Some(ssh) = &s.ssh {
                let _ = ssh
                    .disconnect(Disconnect::ByApplication, why.into(), String::new())
                    .await;
            }
        }
        End::Stalled => {
            tracing::warn!(
                peer = %s.peer, account = %s.account, idle_secs = s.idle.as_secs(),
                "sftp client took no replies for the idle timeout; disconnected"
            );
            if let Some(ssh) = &s.ssh {
                let _ = ssh
                    .disconnect(
                        Disconnect::ByApplication,
                        "Ferry: the client took no replies for the idle timeout".into(),
                        String::new(),
                    )
                    .await;
            }
        }
    }
    // The server session ends once the SSH connection and its other
    // channels are done too (`SessionLease`); an unfinished upload then
    // keeps its partial data for a resume, with an `interrupted` row.
    drop(s.lease);
}

/// Sends queued requests to the server in order, within the budgets.
async fn dispatch(
    mut queue: mpsc::UnboundedReceiver<Item>,
    writer: mpsc::UnboundedSender<(Pending, OwnedSemaphorePermit)>,
    upstream: Arc<Connection>,
    session: SessionId,
    flow: Arc<Flow>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES));
    let unwritten = Arc::new(Semaphore::new(MAX_UNWRITTEN_BYTES));
    while let Some(item) = queue.recv().await {
        let (pending, taken) = match item {
            Item::Ready(bytes) => (
                Pending::Ready(bytes),
                unwritten.clone().acquire_many_owned(0).await,
            ),
            // Without a client to answer, reads are pointless; everything
            // else the client sent (a last WRITE, the CLOSE that commits)
            // still goes to the server.
            Item::Forward {
                op: FsOp::Read { .. },
                ..
            } if writer.is_closed() => continue,
            Item::Forward { id, op, expect } => {
                let (upstream_cost, reply_cost) = costs(&op);
                let taken = unwritten
                    .clone()
                    .acquire_many_owned(reply_cost as u32)
                    .await;
                let Ok(sent) = in_flight
                    .clone()
                    .acquire_many_owned(upstream_cost as u32)
                    .await
                else {
                    return;
                };
                if let FsOp::Write { data, .. } = &op {
                    flow.queued_write_bytes
                        .fetch_sub(data.len(), Ordering::AcqRel);
                    flow.drained.notify_waiters();
                }
                let changes = op.changes();
                let request = Request::Fs { session, op };
                let pending = match upstream.start_call_releasing(request, sent) {
                    Ok(reply) => Pending::Upstream {
                        id,
                        expect,
                        reply,
                        changes,
                    },
                    Err(_) => Pending::Lost { id },
                };
                (pending, taken)
            }
        };
        let Ok(taken) = taken else {
            return;
        };
        // A writer that is gone (the client left) drops the answer.
        let _ = writer.send((pending, taken));
    }
}

/// What decoding a request needs.
struct Ctx {
    account: String,
}

async fn read_packet<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<Bytes>> {
    let len = match rd.read_u32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len == 0 || len > MAX_PACKET_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("sftp packet of {len} bytes refused"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    rd.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// Decodes one SFTP request packet (without its length prefix) exactly as
/// a session does, and drops the result: the entry point of the fuzz
/// target `sftp_packet`.
#[doc(hidden)]
pub fn decode_for_fuzzing(raw: &[u8]) {
    let ctx = Ctx {
        account: "fuzz".to_owned(),
    };
    let _ = write_len(raw);
    let _ = ctx.decode(Bytes::copy_from_slice(raw));
}

/// The request id of a raw packet (0 if it is too short to have one).
fn request_id(raw: &[u8]) -> u32 {
    match raw.get(1..5) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Bytes of file data a raw WRITE packet carries (0 for other packets).
fn write_len(raw: &[u8]) -> usize {
    const SSH_FXP_WRITE: u8 = 6;
    if raw.first() == Some(&SSH_FXP_WRITE) {
        raw.len()
    } else {
        0
    }
}

/// What a decoded request costs: against the in-flight budget (data sent
/// plus data expected back) and against the unwritten-replies budget.
fn costs(op: &FsOp) -> (usize, usize) {
    match op {
        FsOp::Read { len, .. } => {
            let back = (*len as usize).max(SMALL_COST) + SMALL_COST;
            (back, back)
        }
        FsOp::Write { data, .. } => (data.len() + SMALL_COST, SMALL_COST),
        _ => (SMALL_COST, SMALL_COST),
    }
}

fn encode(packet: Packet) -> Bytes {
    Bytes::try_from(packet).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode sftp reply");
        Bytes::new()
    })
}

fn status(id: u32, code: StatusCode, message: &str) -> Bytes {
    encode(Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_owned(),
        language_tag: "en".to_owned(),
    }))
}

/// The one place an error kind becomes an SFTP status.
fn error_status(id: u32, e: &FerryError) -> Bytes {
    let code = match e.kind {
        ErrorKind::NotFound => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied | ErrorKind::AuthFailed => StatusCode::PermissionDenied,
        ErrorKind::Unsupported => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    status(id, code, &e.message)
}

fn mode_from(flags: OpenFlags) -> OpenMode {
    OpenMode {
        read: flags.contains(OpenFlags::READ),
        write: flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::APPEND),
        append: flags.contains(OpenFlags::APPEND),
        create: flags.contains(OpenFlags::CREATE),
        truncate: flags.contains(OpenFlags::TRUNCATE),
        exclusive: flags.contains(OpenFlags::EXCLUDE),
    }
}

fn attrs_from(a: &FileAttributes) -> SetAttrs {
    SetAttrs {
        size: a.size,
        permissions: a.permissions.map(|p| p & 0o7777),
        atime: a.atime,
        mtime: a.mtime,
        chown: a.uid.is_some() || a.gid.is_some() || a.user.is_some() || a.group.is_some(),
    }
}

fn attrs_to(s: &FileStat) -> FileAttributes {
    let kind_bits = match s.kind {
        FileKind::Dir => 0o040000,
        FileKind::File => 0o100000,
        FileKind::Other => 0,
    };
    FileAttributes {
        size: Some(s.size),
        uid: None,
        user: None,
        gid: None,
        group: None,
        permissions: Some(kind_bits | (s.permissions & 0o777)),
        atime: Some(s.atime),
        mtime: Some(s.mtime),
    }
}

fn parse_handle(h: &str) -> Result<u64, FerryError> {
    h.parse().map_err(|_| FerryError::invalid("invalid handle"))
}

impl Ctx {
    /// A path with a leading `~` or `~ACCOUNT` taken from the home (which
    /// clients see as `/`); another user's home is not known here.
    fn expand_home(&self, path: &str) -> Result<String, FerryError> {
        let Some(rest) = path.strip_prefix('~') else {
            return Ok(path.to_owned());
        };
        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if !user.is_empty() && user != self.account {
            return Err(FerryError::not_found(format!(
                "no home directory for {user:?}"
            )));
        }
        Ok(format!("/{tail}"))
    }

    /// Decodes one request into what dispatch does with it.
    fn decode(&self, raw: Bytes) -> Item {
        let id = request_id(&raw);
        let mut body = raw;
        let packet = match Packet::try_from(&mut body) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable sftp packet");
                return Item::Ready(status(id, StatusCode::BadMessage, "malformed request"));
            }
        };
        match self.translate(packet) {
            Ok(Step::Reply(bytes)) => Item::Ready(bytes),
            Ok(Step::Forward(id, op, expect)) => Item::Forward { id, op, expect },
            Err(e) => Item::Ready(error_status(id, &e)),
        }
    }

    fn translate(&self, packet: Packet) -> Result<Step, FerryError> {
        use Expect as E;
        let fwd = |id, op, e| Ok(Step::Forward(id, op, e));
        match packet {
            Packet::Init(_) => {
                let mut v = Version::new();
                for (name, ver) in [
                    ("posix-rename@openssh.com", "1"),
                    ("statvfs@openssh.com", "2"),
                    ("fsync@openssh.com", "1"),
                    ("limits@openssh.com", "1"),
                    ("hardlink@openssh.com", "1"),
                    ("expand-path@openssh.com", "1"),
                    ("home-directory", "1"),
                    ("copy-data", "1"),
                ] {
                    v.extensions.insert(name.to_owned(), ver.to_owned());
                }
                Ok(Step::Reply(encode(Packet::Version(v))))
            }
            Packet::Open(o) => fwd(
                o.id,
                FsOp::Open {
                    path: o.filename,
                    mode: mode_from(o.pflags),
                    attrs: attrs_from(&o.attrs),
                    size: None,
                },
                E::Handle,
            ),
            Packet::Close(c) => fwd(
                c.id,
                FsOp::Close {
                    handle: parse_handle(&c.handle)?,
                },
                E::Status,
            ),
            Packet::Read(r) => fwd(
                r.id,
                FsOp::Read {
                    handle: parse_handle(&r.handle)?,
                    offset: r.offset,
                    len: r.len.min(MAX_IO_LEN),
                },
                E::Data,
            ),
            Packet::Write(w) => {
                if w.data.len() > MAX_IO_LEN as usize {
                    return Err(FerryError::invalid(
                        "write larger than the advertised limit",
                    ));
                }
                fwd(
                    w.id,
                    FsOp::Write {
                        handle: parse_handle(&w.handle)?,
                        offset: w.offset,
                        data: w.data,
                    },
                    E::Status,
                )
            }
            Packet::Lstat(s) => fwd(s.id, FsOp::Stat { path: s.path }, E::Attrs),
            Packet::Stat(s) => fwd(s.id, FsOp::Stat { path: s.path }, E::Attrs),
            Packet::Fstat(s) => fwd(
                s.id,
                FsOp::Fstat {
                    handle: parse_handle(&s.handle)?,
                },
                E::Attrs,
            ),
            Packet::SetStat(s) => fwd(
                s.id,
                FsOp::SetStat {
                    path: s.path,
                    attrs: attrs_from(&s.attrs),
                },
                E::Status,
            ),
            Packet::FSetStat(s) => fwd(
                s.id,
                FsOp::Fsetstat {
                    handle: parse_handle(&s.handle)?,
                    attrs: attrs_from(&s.attrs),
                },
                E::Status,
            ),
            Packet::OpenDir(d) => fwd(d.id, FsOp::OpenDir { path: d.path }, E::Handle),
            Packet::ReadDir(d) => fwd(
                d.id,
                FsOp::ReadDir {
                    handle: parse_handle(&d.handle)?,
                },
                E::Name,
            ),
            Packet::Remove(r) => fwd(r.id, FsOp::Remove { path: r.filename }, E::Status),
            Packet::MkDir(m) => fwd(
                m.id,
                FsOp::Mkdir {
                    path: m.path,
                    attrs: attrs_from(&m.attrs),
                },
                E::Status,
            ),
            Packet::RmDir(r) => fwd(r.id, FsOp::Rmdir { path: r.path }, E::Status),
            Packet::RealPath(r) => fwd(r.id, FsOp::RealPath { path: r.path }, E::Path),
            Packet::Rename(r) => fwd(
                r.id,
                FsOp::Rename {
                    from: r.oldpath,
                    to: r.newpath,
                    overwrite: false,
                },
                E::Status,
            ),
            Packet::ReadLink(r) => fwd(r.id, FsOp::ReadLink { path: r.path }, E::Path),
            Packet::Symlink(s) => Err(FerryError::denied(format!(
                "creating symbolic links is not allowed (request {})",
                s.id
            ))),
            Packet::Extended(x) => {
                let mut data = Bytes::from(x.data);
                let bad = |_| FerryError::invalid("malformed extended request");
                match x.request.as_str() {
                    "posix-rename@openssh.com" => {
                        let p: TwoPaths = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        fwd(
                            x.id,
                            FsOp::Rename {
                                from: p.oldpath,
                                to: p.newpath,
                                overwrite: true,
                            },
                            E::Status,
                        )
                    }
                    "statvfs@openssh.com" => {
                        let p: OnePath = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        fwd(x.id, FsOp::Statvfs { path: p.path }, E::Statvfs)
                    }
                    "fsync@openssh.com" => {
                        let h: OneHandle = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        fwd(
                            x.id,
                            FsOp::Fsync {
                                handle: parse_handle(&h.handle)?,
                            },
                            E::Status,
                        )
                    }
                    "hardlink@openssh.com" => {
                        let p: TwoPaths = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        fwd(
                            x.id,
                            FsOp::Hardlink {
                                from: p.oldpath,
                                to: p.newpath,
                            },
                            E::Status,
                        )
                    }
                    "expand-path@openssh.com" => {
                        let p: OnePath = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        let path = self.expand_home(&p.path)?;
                        fwd(x.id, FsOp::RealPath { path }, E::Path)
                    }
                    "home-directory" => {
                        let p: OneUser = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        self.expand_home(&format!("~{}", p.username))?;
                        Ok(Step::Reply(path_reply(x.id, "/".to_owned())))
                    }
                    "copy-data" => {
                        let c: CopyData = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                        fwd(
                            x.id,
                            FsOp::CopyData {
                                from: parse_handle(&c.read_handle)?,
                                from_offset: c.read_offset,
                                length: c.length,
                                to: parse_handle(&c.write_handle)?,
                                to_offset: c.write_offset,
                            },
                            E::Status,
                        )
                    }
                    "limits@openssh.com" => {
                        let limits = LimitsExtension {
                            max_packet_len: u64::from(MAX_PACKET_LEN),
                            max_read_len: u64::from(MAX_IO_LEN),
                            max_write_len: u64::from(MAX_IO_LEN),
                            max_open_handles: crate::sftp::MAX_OPEN_HANDLES,
                        };
                        let data = russh_sftp::ser::to_bytes(&limits)
                            .map_err(|e| FerryError::internal(e.to_string()))?;
                        Ok(Step::Reply(encode(Packet::ExtendedReply(ExtendedReply {
                            id: x.id,
                            data: data.to_vec(),
                        }))))
                    }
                    other => Err(FerryError::new(
                        ErrorKind::Unsupported,
                        format!("extension {other:?} is not supported"),
                    )),
                }
            }
            other => Err(FerryError::new(
                ErrorKind::Unsupported,
                format!("unexpected packet (request {})", other.get_request_id()),
            )),
        }
    }
}

/// Handles a session may hold open (the server enforces the same number).
pub const MAX_OPEN_HANDLES: u64 = 256;

enum Step {
    Reply(Bytes),
    Forward(u32, FsOp, Expect),
}

fn longname(name: &str, s: &FileStat, owner: &str) -> String {
    let kind = match s.kind {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (s.permissions >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let mtime = chrono::DateTime::from_timestamp(i64::from(s.mtime), 0).unwrap_or_default();
    let six_months = chrono::Duration::days(182);
    let when = if (chrono::Utc::now() - mtime).abs() < six_months {
        mtime.format("%b %e %H:%M")
    } else {
        mtime.format("%b %e  %Y")
    };
    format!(
        "{kind}{perms}    1 {owner:<8} {owner:<8} {:>8} {when} {name}",
        s.size
    )
}

fn dir_entries(id: u32, entries: Vec<DirEntry>, owner: &str) -> Bytes {
    let files = entries
        .into_iter()
        .map(|e| File {
            longname: longname(&e.name, &e.stat, owner),
            attrs: attrs_to(&e.stat),
            filename: e.name,
        })
        .collect();
    encode(Packet::Name(Name { id, files }))
}

/// Encodes a DATA reply directly: the hot path of every download.
fn data_packet(id: u32, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 13);
    b.put_u32(data.len() as u32 + 9);
    b.put_u8(103); // SSH_FXP_DATA
    b.put_u32(id);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

fn translate_reply(id: u32, expect: Expect, reply: Response, owner: &str) -> Bytes {
    match (expect, reply) {
        (_, Response::Error(e)) => error_status(id, &e),
        (Expect::Status, Response::Ok | Response::Committed { .. }) => {
            status(id, StatusCode::Ok, "ok")
        }
        (Expect::Handle, Response::Handle(h)) => encode(Packet::Handle(SftpHandle {
            id,
            handle: h.to_string(),
        })),
        (Expect::Data, Response::Data(d)) => data_packet(id, &d),
        (Expect::Data | Expect::Name, Response::Eof) => status(id, StatusCode::Eof, "end of file"),
        (Expect::Attrs, Response::Stat(s)) => encode(Packet::Attrs(Attrs {
            id,
            attrs: attrs_to(&s),
        })),
        (Expect::Name, Response::Entries(e)) => dir_entries(id, e, owner),
        (Expect::Path, Response::Path(p)) => path_reply(id, p),
        (Expect::Statvfs, Response::FsStats(s)) => statvfs_reply(id, &s),
        (_, other) => {
            tracing::error!(reply = ?other, "unexpected reply from server");
            status(id, StatusCode::Failure, "unexpected reply from server")
        }
    }
}

/// A NAME reply with one path (REALPATH, READLINK, expand-path).
fn path_reply(id: u32, path: String) -> Bytes {
    encode(Packet::Name(Name {
        id,
        files: vec![File {
            filename: path.clone(),
            longname: path,
            attrs: FileAttributes::empty(),
        }],
    }))
}

fn statvfs_reply(id: u32, s: &FsStats) -> Bytes {
    let v = Statvfs {
        block_size: s.block_size,
        fragment_size: s.fragment_size,
        blocks: s.blocks,
        blocks_free: s.blocks_free,
        blocks_avail: s.blocks_avail,
        inodes: s.files,
        inodes_free: s.files_free,
        inodes_avail: s.files_avail,
        fs_id: s.fs_id,
        flags: s.flags,
        name_max: s.name_max,
    };
    match russh_sftp::ser::to_bytes(&v) {
        Ok(data) => encode(Packet::ExtendedReply(ExtendedReply {
            id,
            data: data.to_vec(),
        })),
        Err(e) => status(id, StatusCode::Failure, &e.to_string()),
    }
}

/// Answers request `id` "failure" (it changed nothing, and the server that
/// held the session is gone), then ends the session so the client
/// reconnects.
async fn answer_lost<W: AsyncWrite + Unpin>(wr: &mut W, id: u32, idle: Duration) -> End {
    let failed = status(id, StatusCode::Failure, "connection to the server was lost");
    let written = tokio::time::timeout(idle, async {
        wr.write_all(&failed).await?;
        wr.flush().await
    })
    .await;
    match written {
        Ok(Ok(())) => End::UpstreamLost { change: false },
        Ok(Err(_)) => End::Closed,
        Err(_) => End::Stalled,
    }
}

/// Writes replies in request order as they arrive. A client that takes no
/// reply for `idle` ends the session as [`End::Stalled`].
async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut pending: mpsc::UnboundedReceiver<(Pending, OwnedSemaphorePermit)>,
    owner: String,
    flow: Arc<Flow>,
    idle: Duration,
) -> End {
    while let Some((item, permit)) = pending.recv().await {
        let bytes = match item {
            Pending::Ready(b) => b,
            Pending::Lost { id } => return answer_lost(&mut wr, id, idle).await,
            Pending::Upstream {
                id,
                expect,
                reply,
                changes,
            } => match reply.await {
                Ok(r) => translate_reply(id, expect, r, &owner),
                Err(_) if changes => return End::UpstreamLost { change: true },
                Err(_) => return answer_lost(&mut wr, id, idle).await,
            },
        };
        match tokio::time::timeout(idle, wr.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return End::Closed,
            Err(_) => return End::Stalled,
        }
        drop(permit);
        flow.answered();
        if pending.is_empty() {
            match tokio::time::timeout(idle, wr.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return End::Closed,
                Err(_) => return End::Stalled,
            }
        }
    }
    match tokio::time::timeout(idle, wr.flush()).await {
        Err(_) => End::Stalled,
        Ok(_) => End::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Data;

    #[test]
    fn data_packets_match_the_library_encoding() {
        let data = vec![7u8; 1000];
        let ours = data_packet(42, &data);
        let theirs = encode(Packet::Data(Data { id: 42, data }));
        assert_eq!(ours, theirs);
    }

    #[test]
    fn longname_looks_like_ls() {
        let s = FileStat {
            kind: FileKind::File,
            size: 1234,
            permissions: 0o640,
            atime: 0,
            mtime: 0,
            mtime_nanos: 0,
            inode: 1,
        };
        let l = longname("report.csv", &s, "alice");
        assert!(
            l.starts_with("-rw-r-----    1 alice    alice        1234 "),
            "{l}"
        );
        assert!(l.ends_with(" report.csv"));
    }

    #[test]
    fn read_cost_counts_the_requested_length() {
        let read = FsOp::Read {
            handle: 7,
            offset: 0,
            len: 200_000,
        };
        assert_eq!(costs(&read), (200_000 + SMALL_COST, 200_000 + SMALL_COST));
        let write = FsOp::Write {
            handle: 7,
            offset: 0,
            data: vec![0; 4000],
        };
        assert_eq!(costs(&write), (4000 + SMALL_COST, SMALL_COST));
    }

    #[test]
    fn request_ids_and_write_lengths_come_from_raw_packets() {
        assert_eq!(request_id(&[5, 0, 0, 1, 2, 9]), 258);
        assert_eq!(request_id(&[5, 0]), 0);
        assert_eq!(write_len(&[6, 0, 0, 0, 1, 0, 0]), 7);
        assert_eq!(write_len(&[5, 0, 0, 0, 1]), 0);
    }
}
