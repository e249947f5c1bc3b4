//! The SFTP request loop of the edge.
//!
//! The stock russh-sftp server answers one request at a time, which stalls
//! clients that pipeline (OpenSSH keeps 64 reads of up to 256 KiB in flight).
//! Here intake keeps draining the channel: each request is decoded, turned
//! into an internal-protocol request and sent to the server at once, in
//! arrival order; a writer task answers them in the same order as their
//! replies arrive. What is in flight is bounded by bytes (request data plus
//! expected read data), not by count, so a slow server or client pushes back
//! through the SSH window instead of growing memory.
//!
//! Packets are decoded and encoded with russh-sftp's protocol types.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::message::{
    DirEntry, FileKind, FileStat, FsOp, FsStats, OpenMode, Request, Response, SessionId, SetAttrs,
};
use russh_sftp::extensions::{LimitsExtension, Statvfs};
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Largest read or write served per request.
pub const MAX_IO_LEN: u32 = 256 * 1024;
/// Largest SFTP packet accepted from a client.
pub const MAX_PACKET_LEN: u32 = MAX_IO_LEN + 4096;
/// Bytes a session may have in flight towards the server and back.
pub const MAX_IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;
/// Cost charged for a request that moves no file data.
const SMALL_COST: usize = 1024;

/// What a queued request turns into once its reply arrives.
enum Pending {
    /// Already answered (a local error, or INIT).
    Ready(Bytes),
    /// Waiting for the server's reply.
    Upstream {
        id: u32,
        expect: Expect,
        reply: oneshot::Receiver<Response>,
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

/// Serves one SFTP channel until the client closes it.
pub async fn serve<S>(stream: S, upstream: Arc<Connection>, session: SessionId, account: &str)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES));
    let (queue, pending) = mpsc::unbounded_channel::<(Pending, OwnedSemaphorePermit)>();
    let writer = tokio::spawn(write_replies(wr, pending, account.to_owned()));
    let ctx = Ctx { upstream, session };
    loop {
        let packet = match read_packet(&mut rd).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "sftp channel read failed");
                break;
            }
        };
        let cost = request_cost(&packet);
        let Ok(permit) = budget.clone().acquire_many_owned(cost as u32).await else {
            break;
        };
        let item = ctx.handle(packet);
        if queue.send((item, permit)).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
    // The channel is gone: end the server session so its open handles close
    // now (an unfinished upload keeps its partial data for a resume) rather
    // than when the SSH connection finally drops.
    let _ = ctx
        .upstream
        .call(Request::Logout {
            session: ctx.session,
        })
        .await;
}

struct Ctx {
    upstream: Arc<Connection>,
    session: SessionId,
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

/// What a raw packet costs against the in-flight budget.
fn request_cost(raw: &Bytes) -> usize {
    const SSH_FXP_READ: u8 = 5;
    let mut b = raw.clone();
    if b.first() == Some(&SSH_FXP_READ) && b.len() >= 9 {
        // type, id, handle (string), offset, len
        b.advance(5);
        let hlen = b.get_u32() as usize;
        if b.len() >= hlen + 12 {
            b.advance(hlen + 8);
            return (b.get_u32().min(MAX_IO_LEN) as usize).max(SMALL_COST) + SMALL_COST;
        }
    }
    raw.len().clamp(SMALL_COST, MAX_IN_FLIGHT_BYTES)
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
    /// Decodes one request and sends it upstream; never waits for the reply.
    fn handle(&self, raw: Bytes) -> Pending {
        let id = if raw.len() >= 5 {
            u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]])
        } else {
            0
        };
        let mut body = raw;
        let packet = match Packet::try_from(&mut body) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable sftp packet");
                return Pending::Ready(status(id, StatusCode::BadMessage, "malformed request"));
            }
        };
        match self.translate(packet) {
            Ok(Step::Reply(bytes)) => Pending::Ready(bytes),
            Ok(Step::Forward(id, op, expect)) => {
                match self.upstream.start_call(Request::Fs {
                    session: self.session,
                    op,
                }) {
                    Ok(reply) => Pending::Upstream { id, expect, reply },
                    Err(_) => Pending::Ready(status(
                        id,
                        StatusCode::Failure,
                        "connection to the server was lost",
                    )),
                }
            }
            Err(e) => Pending::Ready(error_status(id, &e)),
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
        (Expect::Handle, Response::Handle(h)) => encode(Packet::Handle(Handle {
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
        (Expect::Path, Response::Path(p)) => encode(Packet::Name(Name {
            id,
            files: vec![File {
                filename: p.clone(),
                longname: p,
                attrs: FileAttributes::empty(),
            }],
        })),
        (Expect::Statvfs, Response::FsStats(s)) => statvfs_reply(id, &s),
        (_, other) => {
            tracing::error!(reply = ?other, "unexpected reply from server");
            status(id, StatusCode::Failure, "unexpected reply from server")
        }
    }
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

async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut pending: mpsc::UnboundedReceiver<(Pending, OwnedSemaphorePermit)>,
    owner: String,
) {
    while let Some((item, permit)) = pending.recv().await {
        let bytes = match item {
            Pending::Ready(b) => b,
            Pending::Upstream { id, expect, reply } => match reply.await {
                Ok(r) => translate_reply(id, expect, r, &owner),
                Err(_) => status(id, StatusCode::Failure, "connection to the server was lost"),
            },
        };
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
        drop(permit);
        if pending.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
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
        let mut b = BytesMut::new();
        b.put_u8(5);
        b.put_u32(1);
        b.put_u32(1);
        b.put_slice(b"7");
        b.put_u64(0);
        b.put_u32(200_000);
        assert_eq!(request_cost(&b.freeze()), 200_000 + SMALL_COST);
    }
}
