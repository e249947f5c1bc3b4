//! The vocabulary of the internal protocol.
//!
//! Every connection starts with [`Hello`] (client) and [`Welcome`] (server),
//! stating the protocol versions each side speaks, its role and node id. After
//! that the client sends [`Frame`]s of [`Request`] and the server answers with
//! frames of [`Response`] carrying the same id, in any order.

use ferry_core::{FerryError, Protocol, Secret};
use serde::{Deserialize, Serialize};

/// The protocol version this build prefers.
pub const PROTOCOL_VERSION: u16 = 1;
/// Every version this build can speak, oldest first.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];
/// Largest frame accepted, in bytes (a 256 KiB data chunk plus headers fits).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// What a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// An edge gateway forwarding client sessions.
    Edge,
    /// A back-end server.
    Server,
}

/// First frame from the connecting side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol versions the client speaks.
    pub versions: Vec<u16>,
    /// The client's role.
    pub role: Role,
    /// The client's node id.
    pub node_id: String,
    /// Software name and version, for logs.
    pub software: String,
}

/// The accepting side's answer to [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Welcome {
    /// Accepted, speaking `version`.
    Accepted {
        /// The version chosen (the highest both speak).
        version: u16,
        /// The server's role.
        role: Role,
        /// The server's node id.
        node_id: String,
        /// Software name and version.
        software: String,
    },
    /// Refused, with the reason.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A request or response with the id that pairs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame<T> {
    /// Chosen by the client, unique among its requests in flight.
    pub id: u64,
    /// The payload.
    pub body: T,
}

/// How a client proved who it is to the edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Credential {
    /// A password, checked against the account's argon2 hash.
    Password(Secret),
    /// A public key in OpenSSH one-line form whose signature the edge has
    /// verified (the SSH layer does that before asking).
    VerifiedPublicKey(String),
    /// An account API token (`fy_…`), checked against its stored SHA-256. The
    /// token names its account; the login name, if any, must match it.
    Token(Secret),
}

/// Id of a logged-in session on one server connection.
pub type SessionId = u64;
/// Id of an open file or directory within a session.
pub type HandleId = u64;

/// Requests from an edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Would this public key be accepted for `user`? (No session is created;
    /// the edge asks this before making the client sign.)
    KeyAcceptable {
        /// Login name.
        user: String,
        /// OpenSSH one-line public key.
        public_key: String,
        /// The client's address (`IP:PORT`): a client the login policy
        /// refuses (deny list, ban, the account's networks) hears no.
        client_addr: String,
    },
    /// Log in; answered with [`Response::LoggedIn`] or an `AuthFailed` error.
    Login {
        /// Login name.
        user: String,
        /// The proof.
        credential: Credential,
        /// The client's address as the edge saw it.
        client_addr: String,
        /// The protocol the client speaks.
        protocol: Protocol,
    },
    /// End a session: open handles are closed (uploads stay partial).
    Logout {
        /// The session.
        session: SessionId,
    },
    /// A file operation in a session.
    Fs {
        /// The session.
        session: SessionId,
        /// The operation.
        op: FsOp,
    },
    /// A server-to-server request (role [`Role::Server`] only).
    Cluster(crate::cluster::ClusterRequest),
    /// Does this server take writes now? Answered with
    /// [`Response::Writable`]; an edge prefers servers that do.
    Writable,
    /// Issue a browser-session credential for the account of `session` (a
    /// session this connection logged in with a password), valid for
    /// `lifetime_secs` (the server bounds it). Answered with
    /// [`Response::WebSession`]. The credential is held by the servers, so
    /// any edge accepts it as [`Credential::Token`] until it expires or is
    /// ended. (Added after `Writable`, like every addition, so that older
    /// peers keep decoding the others.)
    OpenWebSession {
        /// The logged-in session.
        session: SessionId,
        /// How long the credential lives.
        lifetime_secs: u64,
    },
    /// Revoke a browser-session credential (logout); answered with
    /// [`Response::Ok`], also when it was unknown or already ended.
    EndWebSession {
        /// The credential, as the client presented it.
        token: Secret,
    },
    /// A client broke the protocol before any credential reached a server
    /// (an SSH handshake that failed, no login within the grace time), for
    /// the server's defender to score. Answered with [`Response::Ok`].
    ClientMisbehaved {
        /// The client's address as the edge saw it.
        client_addr: String,
        /// What it did, for the log.
        what: String,
    },
    /// The account of `session` changes its own password: the server
    /// checks `current` (throttled like a login), holds `new` against the
    /// password policy, stores it and clears the must-change flag.
    /// Answered with [`Response::Ok`] or an error saying why not.
    ChangePassword {
        /// The logged-in session (any credential: the current password is
        /// proof enough).
        session: SessionId,
        /// The account's current password.
        current: Secret,
        /// The new one.
        new: Secret,
        /// The browser-session credential the request came with, if any:
        /// that browser session stays, the account's others end.
        keep_web_session: Option<Secret>,
    },
}

/// Open-mode bits, as in SFTP v3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenMode {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Writes go to the end of the file.
    pub append: bool,
    /// Create the file if missing.
    pub create: bool,
    /// Truncate to zero length.
    pub truncate: bool,
    /// Fail if the file exists.
    pub exclusive: bool,
}

impl OpenMode {
    /// Whether the open may change the file (write, create, truncate or
    /// append): an upload.
    pub fn writes(&self) -> bool {
        self.write || self.create || self.truncate || self.append
    }
}

/// Attributes a client asks to set. Absent fields are left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttrs {
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New permission bits (masked to 0o777).
    pub permissions: Option<u32>,
    /// New access time, seconds since the epoch.
    pub atime: Option<u32>,
    /// New modification time, seconds since the epoch.
    pub mtime: Option<u32>,
    /// The client asked to change owner or group (always refused).
    pub chown: bool,
}

/// File type as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (shown, never opened).
    Other,
}

/// Attributes of a file as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// File type.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (0o777 mask).
    pub permissions: u32,
    /// Access time, seconds.
    pub atime: u32,
    /// Modification time, seconds.
    pub mtime: u32,
    /// Nanoseconds part of the modification time.
    pub mtime_nanos: u32,
    /// Inode number: a replaced file (every committed upload) gets a new one.
    pub inode: u64,
}

impl FileStat {
    /// A strong validator for HTTP: changes whenever the file is replaced or
    /// modified (size, modification time to the nanosecond, inode).
    pub fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}.{:x}-{:x}\"",
            self.size, self.mtime, self.mtime_nanos, self.inode
        )
    }
}

/// A digest the bytes of one request must have (tus `Upload-Checksum`):
/// the algorithm and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checksum {
    /// SHA-256.
    Sha256([u8; 32]),
    /// SHA-1: weak, but what stock tus clients (tuspy) send by default.
    Sha1([u8; 20]),
    /// MD5: weak, but common among tus clients.
    Md5([u8; 16]),
}

/// Why a client's checksum could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// An algorithm not in [`Checksum::ALGORITHMS`].
    #[error("unsupported checksum algorithm (this server supports {})", Checksum::ALGORITHMS.join(", "))]
    Unsupported,
    /// A digest of the wrong length for its algorithm.
    #[error("not a {0} digest")]
    BadDigest(&'static str),
}

impl Checksum {
    /// The algorithms' names as tus spells them, strongest first.
    pub const ALGORITHMS: &'static [&'static str] = &["sha256", "sha1", "md5"];

    /// The checksum of `algorithm` (a name in [`Checksum::ALGORITHMS`],
    /// any case) with `digest`.
    pub fn new(algorithm: &str, digest: &[u8]) -> Result<Self, ChecksumError> {
        let algorithm = algorithm.to_ascii_lowercase();
        let bad = |name| ChecksumError::BadDigest(name);
        match algorithm.as_str() {
            "sha256" => Ok(Checksum::Sha256(
                digest.try_into().map_err(|_| bad("SHA-256"))?,
            )),
            "sha1" => Ok(Checksum::Sha1(digest.try_into().map_err(|_| bad("SHA-1"))?)),
            "md5" => Ok(Checksum::Md5(digest.try_into().map_err(|_| bad("MD5"))?)),
            _ => Err(ChecksumError::Unsupported),
        }
    }

    /// The algorithm's name, as in [`Checksum::ALGORITHMS`].
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Sha1(_) => "sha1",
            Checksum::Md5(_) => "md5",
        }
    }

    /// The expected digest.
    pub fn digest(&self) -> &[u8] {
        match self {
            Checksum::Sha256(d) => d,
            Checksum::Sha1(d) => d,
            Checksum::Md5(d) => d,
        }
    }
}

/// State of a resumable (tus) upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// The upload's id (32 hex digits).
    pub id: String,
    /// Where the file goes when complete, inside the home.
    pub path: String,
    /// Total length in bytes.
    pub length: u64,
    /// Bytes received and kept so far.
    pub offset: u64,
    /// The client's `Upload-Metadata`, returned as given.
    pub metadata: String,
    /// When the upload expires if nothing more arrives (unix milliseconds).
    pub expires_at: i64,
    /// SHA-256 of the whole file, hex, once the upload is complete and committed.
    pub sha256: Option<String>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// Its attributes.
    pub stat: FileStat,
}

/// Filesystem statistics for `statvfs@openssh.com`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStats {
    /// Block size.
    pub block_size: u64,
    /// Fragment size.
    pub fragment_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_avail: u64,
    /// Inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Inodes available to unprivileged users.
    pub files_avail: u64,
    /// Filesystem id.
    pub fs_id: u64,
    /// Mount flags.
    pub flags: u64,
    /// Longest file name.
    pub name_max: u64,
}

/// File operations. Paths are as the client sent them; the server
/// canonicalises them against the session's home.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FsOp {
    /// Open a file; answered with [`Response::Handle`].
    Open {
        /// Path.
        path: String,
        /// Mode.
        mode: OpenMode,
        /// Attributes for a new file.
        attrs: SetAttrs,
        /// For an upload: the length the client announced (scp's `C` line,
        /// HTTP `Content-Length`), held against the account's quota before
        /// any data is taken.
        size: Option<u64>,
    },
    /// Open a directory for listing; answered with [`Response::Handle`].
    OpenDir {
        /// Path.
        path: String,
    },
    /// Next batch of a directory listing; [`Response::Entries`] or [`Response::Eof`].
    ReadDir {
        /// Directory handle.
        handle: HandleId,
    },
    /// Close a file or directory. Closing an upload commits it and answers
    /// [`Response::Committed`].
    Close {
        /// Handle.
        handle: HandleId,
    },
    /// Read; [`Response::Data`] or [`Response::Eof`].
    Read {
        /// Handle.
        handle: HandleId,
        /// Offset.
        offset: u64,
        /// Most bytes to return.
        len: u32,
    },
    /// Write at an offset (ignored for append handles).
    Write {
        /// Handle.
        handle: HandleId,
        /// Offset.
        offset: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Attributes of an open handle.
    Fstat {
        /// Handle.
        handle: HandleId,
    },
    /// Set attributes of an open handle.
    Fsetstat {
        /// Handle.
        handle: HandleId,
        /// What to set.
        attrs: SetAttrs,
    },
    /// End a handle without committing: an upload keeps its partial data (a
    /// resumable upload keeps what arrived, unless a checksum was expected)
    /// and the transfer is logged as interrupted.
    Abort {
        /// Handle.
        handle: HandleId,
    },
    /// Start a resumable upload to `path`; [`Response::Upload`].
    UploadCreate {
        /// Target path.
        path: String,
        /// Total length.
        length: u64,
        /// The client's metadata, kept and returned as given.
        metadata: String,
    },
    /// State of a resumable upload; [`Response::Upload`].
    UploadStatus {
        /// Upload id.
        id: String,
    },
    /// Open a resumable upload for appending at `offset`, which must equal the
    /// upload's offset; [`Response::Handle`]. Writes must be sequential. The
    /// close answers [`Response::Upload`]; when the offset reaches the length
    /// the file is committed under its final name.
    UploadOpen {
        /// Upload id.
        id: String,
        /// Where the client resumes.
        offset: u64,
        /// The checksum the bytes written through this handle must have; on
        /// a mismatch (or an abort) none of them are kept.
        checksum: Option<Checksum>,
    },
    /// Abandon a resumable upload and remove its data.
    UploadDelete {
        /// Upload id.
        id: String,
    },
    /// Flush an open file to stable storage.
    Fsync {
        /// Handle.
        handle: HandleId,
    },
    /// Attributes of a path (symlinks inside home are followed).
    Stat {
        /// Path.
        path: String,
    },
    /// Set attributes of a path.
    SetStat {
        /// Path.
        path: String,
        /// What to set.
        attrs: SetAttrs,
    },
    /// Remove a file.
    Remove {
        /// Path.
        path: String,
    },
    /// Create a directory.
    Mkdir {
        /// Path.
        path: String,
        /// Attributes (permissions).
        attrs: SetAttrs,
    },
    /// Remove an empty directory.
    Rmdir {
        /// Path.
        path: String,
    },
    /// Rename; `overwrite` replaces an existing target (posix-rename).
    Rename {
        /// From.
        from: String,
        /// To.
        to: String,
        /// Replace an existing target.
        overwrite: bool,
    },
    /// A second name for a file (`hardlink@openssh.com`); both names
    /// inside the home, the new one must not exist.
    Hardlink {
        /// The existing file.
        from: String,
        /// The new name.
        to: String,
    },
    /// Copy bytes from one open file to another on the server (`copy-data`,
    /// sftp's `cp`). Sent to the handle being written.
    CopyData {
        /// Handle read from.
        from: HandleId,
        /// Offset read from.
        from_offset: u64,
        /// Bytes to copy; 0 copies to the end of the source.
        length: u64,
        /// Handle written to (open for writing).
        to: HandleId,
        /// Offset written to.
        to_offset: u64,
    },
    /// Canonical form of a path; [`Response::Path`].
    RealPath {
        /// Path.
        path: String,
    },
    /// Target of a symlink inside home; [`Response::Path`].
    ReadLink {
        /// Path.
        path: String,
    },
    /// Filesystem statistics; [`Response::FsStats`].
    Statvfs {
        /// Path.
        path: String,
    },
    /// Digest of a regular file, computed on the server; [`Response::Hash`].
    /// A read, not a transfer: nothing is logged.
    Hash {
        /// Path.
        path: String,
        /// Which digest.
        algorithm: HashAlgorithm,
    },
}

impl FsOp {
    /// Whether the operation may change something others can see (a file
    /// under its name, a folder, a resumable upload, a transfer-log row).
    /// When the server is lost with such an operation in flight its
    /// outcome is unknown, and a front must not answer it as failed.
    /// Writes to an open upload are not such changes: its data shows only
    /// once a CLOSE commits it, and that CLOSE is itself a change.
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            FsOp::Open { .. }
                | FsOp::OpenDir { .. }
                | FsOp::ReadDir { .. }
                | FsOp::Read { .. }
                | FsOp::Write { .. }
                | FsOp::Fsync { .. }
                | FsOp::Abort { .. }
                | FsOp::Fstat { .. }
                | FsOp::UploadStatus { .. }
                | FsOp::Stat { .. }
                | FsOp::RealPath { .. }
                | FsOp::ReadLink { .. }
                | FsOp::Statvfs { .. }
                | FsOp::Hash { .. }
        )
    }
}

/// Digests [`FsOp::Hash`] computes (those of `sha256sum`, `sha1sum`, `md5sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlgorithm {
    /// SHA-256 (the one the transfer log keeps).
    Sha256,
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
}

/// Answers from a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// A session was created.
    LoggedIn {
        /// Its id on this connection.
        session: SessionId,
        /// The account's canonical name.
        account: String,
    },
    /// Answer to [`Request::KeyAcceptable`].
    KeyAcceptable(bool),
    /// A new handle.
    Handle(HandleId),
    /// Bytes read.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// End of file or of a directory listing.
    Eof,
    /// Attributes.
    Stat(FileStat),
    /// A batch of directory entries.
    Entries(Vec<DirEntry>),
    /// A path, as the client should see it.
    Path(String),
    /// Filesystem statistics.
    FsStats(FsStats),
    /// An upload was committed under its final name.
    Committed {
        /// Its size.
        size: u64,
        /// SHA-256 of the file, hex.
        sha256: String,
    },
    /// State of a resumable upload.
    Upload(UploadInfo),
    /// Answer to a [`Request::Cluster`].
    Cluster(crate::cluster::ClusterResponse),
    /// Answer to [`Request::Writable`].
    Writable(bool),
    /// The request failed.
    Error(FerryError),
    /// Answer to [`FsOp::Hash`]: the digest, lowercase hex. (Last, like
    /// every addition, so that older peers keep decoding the others.)
    Hash(String),
    /// Answer to [`Request::OpenWebSession`].
    WebSession {
        /// The credential (the browser's cookie value).
        token: Secret,
        /// How many seconds it lives.
        lifetime_secs: u64,
    },
    /// A session was created, but its password must be changed first
    /// (an admin set it with "must change"): the server refuses its file
    /// operations until [`Request::ChangePassword`] succeeds; it may open
    /// a browser session (to reach the form) and log out. Only HTTPS
    /// logins get this; an SSH password login is refused instead.
    LoggedInMustChangePassword {
        /// Its id on this connection.
        session: SessionId,
        /// The account's canonical name.
        account: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_changes_count_as_changes() {
        assert!(FsOp::Close { handle: 1 }.changes());
        assert!(FsOp::Remove { path: "/a".into() }.changes());
        assert!(!FsOp::Read {
            handle: 1,
            offset: 0,
            len: 10
        }
        .changes());
        assert!(!FsOp::Stat { path: "/a".into() }.changes());
    }
}
