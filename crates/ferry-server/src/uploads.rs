//! Resumable uploads: the server half of tus.
//!
//! An upload is two files in the home's reserved `.ferry-uploads/` folder: the
//! data (`ID.data`) and a small JSON record (`ID.json`) holding the target
//! path, the total length and the offset received so far. Both live in the
//! repository, not in a server's memory or database, so any server that sees
//! the repository can continue an upload that another one started.
//!
//! The offset in the record is the truth: it moves forward only after the
//! data before it is on disk (and, with a checksum, verified). Bytes past it
//! are dropped when the upload is next opened. The file appears under its
//! final name, by rename, only when the offset reaches the length.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::{ErrorKind, FerryError, VirtualPath};
use ferry_proto::message::{Checksum, UploadInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::repository::{io_error, Home, Place};

/// The reserved folder of a home that holds its unfinished uploads.
pub const UPLOADS_DIR: &str = ".ferry-uploads";
/// Longest `Upload-Metadata` kept, in bytes.
pub const MAX_METADATA_LEN: usize = 4096;
/// Most unfinished uploads one account may have at once.
pub const MAX_UPLOADS_PER_ACCOUNT: usize = 100;

/// What is remembered about one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Upload id, 32 hex digits.
    pub id: String,
    /// Target path inside the home.
    pub path: String,
    /// Total length.
    pub length: u64,
    /// Bytes received, on disk and verified.
    pub offset: u64,
    /// The client's metadata, as given.
    pub metadata: String,
    /// Id of the transfer-log row written when the upload ends.
    pub transfer_id: String,
    /// Where the upload came from (first request).
    pub client_addr: String,
    /// When it was created (unix milliseconds).
    pub created_at: i64,
    /// When it expires unless more data arrives (unix milliseconds).
    pub expires_at: i64,
}

impl Record {
    /// The client-facing view.
    pub fn info(&self, sha256: Option<String>) -> UploadInfo {
        UploadInfo {
            id: self.id.clone(),
            path: self.path.clone(),
            length: self.length,
            offset: self.offset,
            metadata: self.metadata.clone(),
            expires_at: self.expires_at,
            sha256,
        }
    }
}

fn dir(home: &Home) -> PathBuf {
    home.root().join(UPLOADS_DIR)
}

fn checked_id(id: &str) -> Result<&str, FerryError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(id)
    } else {
        Err(FerryError::not_found("no such upload"))
    }
}

fn data_path(home: &Home, id: &str) -> PathBuf {
    dir(home).join(format!("{id}.data"))
}

fn record_path(home: &Home, id: &str) -> PathBuf {
    dir(home).join(format!("{id}.json"))
}

fn load(home: &Home, id: &str) -> Result<Record, FerryError> {
    let id = checked_id(id)?;
    let text = match fs::read(record_path(home, id)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FerryError::not_found("no such upload"))
        }
        Err(e) => return Err(io_error(e)),
    };
    serde_json::from_slice(&text)
        .map_err(|e| FerryError::internal(format!("upload record {id} is unreadable: {e}")))
}

/// Writes the record atomically (temporary file, fsync, rename).
fn save(home: &Home, record: &Record) -> Result<(), FerryError> {
    let path = record_path(home, &record.id);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(record)
        .map_err(|e| FerryError::internal(format!("cannot encode upload record: {e}")))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error)?;
    f.write_all(&text).map_err(io_error)?;
    f.sync_all().map_err(io_error)?;
    fs::rename(&tmp, &path).map_err(io_error)?;
    Ok(())
}

/// Checks that `path` can receive a file: its folder exists and it is not a
/// folder itself. Returns its place, the folder held open.
fn target(home: &Home, path: &VirtualPath) -> Result<Place, FerryError> {
    if path.is_root() {
        return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
    }
    let place = match home.place(path) {
        Ok(place) => place,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(FerryError::not_found("the target folder does not exist"))
        }
        Err(e) => return Err(e),
    };
    match place.kind()? {
        Some(rustix::fs::FileType::Directory) => {
            Err(FerryError::new(ErrorKind::WrongType, "is a directory"))
        }
        _ => Ok(place),
    }
}

/// Starts an upload of `length` bytes to `path`.
pub fn create(
    home: &Home,
    path: &VirtualPath,
    length: u64,
    metadata: String,
    client_addr: &str,
    now: i64,
    expire_after_ms: i64,
) -> Result<Record, FerryError> {
    if metadata.len() > MAX_METADATA_LEN {
        return Err(FerryError::invalid("upload metadata is too long"));
    }
    target(home, path)?;
    let dir = dir(home);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    let unfinished = fs::read_dir(&dir)
        .map_err(io_error)?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .count();
    if unfinished >= MAX_UPLOADS_PER_ACCOUNT {
        return Err(FerryError::new(
            ErrorKind::Busy,
            format!(
                "too many unfinished uploads (at most {MAX_UPLOADS_PER_ACCOUNT}); finish or cancel some first"
            ),
        ));
    }
    // An announced length the volume cannot hold is refused now, not
    // after the disk has filled.
    let free = rustix::fs::statvfs(&dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .map_err(|e| io_error(e.into()))?;
    if length > free {
        return Err(FerryError::new(
            ErrorKind::NoSpace,
            format!("the upload ({length} bytes) is larger than the space left in the repository"),
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_path(home, &id))
        .map_err(io_error)?;
    let record = Record {
        id,
        path: path.to_string(),
        length,
        offset: 0,
        metadata,
        transfer_id: uuid::Uuid::now_v7().to_string(),
        client_addr: client_addr.to_owned(),
        created_at: now,
        expires_at: now + expire_after_ms,
    };
    save(home, &record)?;
    Ok(record)
}

/// The upload `id`, unless it is missing or expired.
pub fn status(home: &Home, id: &str, now: i64) -> Result<Record, FerryError> {
    let record = load(home, id)?;
    if record.expires_at <= now {
        return Err(FerryError::not_found("no such upload (it expired)"));
    }
    Ok(record)
}

/// One `PATCH`: bytes appended from the upload's offset through an open handle.
#[derive(Debug)]
pub struct Chunk {
    home: Home,
    record: Record,
    file: Arc<File>,
    written: u64,
    check: Option<(Checksum, ChunkHasher)>,
    failed: bool,
}

/// How a chunk ended.
#[derive(Debug)]
pub enum ChunkEnd {
    /// More data is needed; the record has the new offset.
    Progress(Record),
    /// The upload is complete and committed under its final name.
    Committed {
        /// The record as it was last.
        record: Record,
        /// SHA-256 of the whole file, hex.
        sha256: String,
    },
}

impl Chunk {
    /// Opens upload `id` for appending at `offset` (which must be the
    /// upload's offset). Only one chunk of an upload is open at a time.
    pub fn open(
        home: &Home,
        id: &str,
        offset: u64,
        expect: Option<Checksum>,
        now: i64,
        expire_after_ms: i64,
    ) -> Result<Self, FerryError> {
        let mut record = status(home, id, now)?;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(data_path(home, &record.id))
            .map_err(io_error)?;
        if file.try_lock().is_err() {
            return Err(FerryError::new(
                ErrorKind::Busy,
                "another request is writing to this upload",
            ));
        }
        if offset != record.offset {
            return Err(FerryError::new(
                ErrorKind::Conflict,
                format!("the upload's offset is {}, not {offset}", record.offset),
            ));
        }
        // Bytes past the offset were never acknowledged: drop them.
        file.set_len(record.offset).map_err(io_error)?;
        record.expires_at = now + expire_after_ms;
        save(home, &record)?;
        Ok(Self {
            home: home.clone(),
            record,
            file: Arc::new(file),
            written: 0,
            check: expect.map(|c| (c, ChunkHasher::new(&c))),
            failed: false,
        })
    }

    /// Accounts for `data` arriving at `offset`, which must follow the bytes
    /// written so far; returns the file to write it to. If that write fails,
    /// call [`Chunk::mark_failed`] so that none of the chunk is kept.
    pub fn reserve(&mut self, offset: u64, data: &[u8]) -> Result<Arc<File>, FerryError> {
        let at = self.record.offset + self.written;
        if offset != at {
            self.failed = true;
            return Err(FerryError::invalid(format!(
                "resumable uploads are written in order: expected offset {at}, got {offset}"
            )));
        }
        if at + data.len() as u64 > self.record.length {
            self.failed = true;
            return Err(FerryError::invalid("more data than the upload's length"));
        }
        if let Some((_, hasher)) = &mut self.check {
            hasher.update(data);
        }
        self.written += data.len() as u64;
        Ok(self.file.clone())
    }

    /// A write of this chunk failed: nothing of it will be kept.
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// Bytes written through this chunk.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The upload's record as it was when the chunk was opened.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Ends the chunk: checks the checksum, makes the new offset durable, and
    /// commits the file when it is complete.
    pub fn close(self, now: i64, expire_after_ms: i64) -> Result<ChunkEnd, FerryError> {
        let Chunk {
            home,
            mut record,
            file,
            written,
            check,
            failed,
        } = self;
        if failed {
            file.set_len(record.offset).map_err(io_error)?;
            return Err(FerryError::internal(
                "a write to the upload failed; none of this request's data was kept",
            ));
        }
        if let Some((expected, hasher)) = check {
            if !hasher.matches(&expected) {
                file.set_len(record.offset).map_err(io_error)?;
                return Err(FerryError::new(
                    ErrorKind::ChecksumMismatch,
                    "the data does not match its Upload-Checksum; none of it was kept",
                ));
            }
        }
        file.sync_data().map_err(io_error)?;
        record.offset += written;
        record.expires_at = now + expire_after_ms;
        if record.offset < record.length {
            save(&home, &record)?;
            return Ok(ChunkEnd::Progress(record));
        }
        let sha256 = hash_file(&file)?;
        let place = target(&home, &VirtualPath::parse_absolute(&record.path)?)?;
        place.receive(&data_path(&home, &record.id)).map_err(|e| {
            let err = io_error(e);
            FerryError::new(
                err.kind,
                format!("could not commit the upload: {}", err.message),
            )
        })?;
        // The file is committed; a leftover record only makes a later HEAD
        // answer "not found" sooner or later, so its removal may fail quietly.
        if let Err(e) = fs::remove_file(record_path(&home, &record.id)) {
            tracing::warn!(upload = %record.id, error = %e, "could not remove upload record");
        }
        Ok(ChunkEnd::Committed { record, sha256 })
    }

    /// Ends the chunk without the client saying it is done (broken
    /// connection): what arrived is kept, unless a checksum was expected.
    pub fn abort(self) -> Result<Record, FerryError> {
        let Chunk {
            home,
            mut record,
            file,
            written,
            check,
            failed,
            ..
        } = self;
        if check.is_some() || failed || written == 0 {
            file.set_len(record.offset).map_err(io_error)?;
            return Ok(record);
        }
        file.sync_data().map_err(io_error)?;
        record.offset += written;
        save(&home, &record)?;
        Ok(record)
    }
}

/// The running digest of one chunk, in the algorithm its client chose.
#[derive(Debug)]
enum ChunkHasher {
    Sha256(Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl ChunkHasher {
    fn new(checksum: &Checksum) -> Self {
        match checksum {
            Checksum::Sha256(_) => ChunkHasher::Sha256(Sha256::new()),
            Checksum::Sha1(_) => ChunkHasher::Sha1(sha1::Sha1::new()),
            Checksum::Md5(_) => ChunkHasher::Md5(md5::Md5::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            ChunkHasher::Sha256(h) => h.update(data),
            ChunkHasher::Sha1(h) => h.update(data),
            ChunkHasher::Md5(h) => h.update(data),
        }
    }

    /// Whether the bytes seen have `expected`'s digest (in its algorithm).
    fn matches(self, expected: &Checksum) -> bool {
        let got: Vec<u8> = match self {
            ChunkHasher::Sha256(h) => h.finalize().to_vec(),
            ChunkHasher::Sha1(h) => h.finalize().to_vec(),
            ChunkHasher::Md5(h) => h.finalize().to_vec(),
        };
        got == expected.digest()
    }
}

fn hash_file(file: &File) -> Result<String, FerryError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset).map_err(io_error)?;
        if n == 0 {
            break;
        }
        hasher.update(crate::transfer::filled(&buf, n).map_err(io_error)?);
        offset += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Removes upload `id` and its data (tus termination).
pub fn delete(home: &Home, id: &str) -> Result<Record, FerryError> {
    let record = load(home, id)?;
    remove(home, &record)?;
    Ok(record)
}

fn remove(home: &Home, record: &Record) -> Result<(), FerryError> {
    let data = data_path(home, &record.id);
    match File::open(&data) {
        Ok(f) => {
            if f.try_lock().is_err() {
                return Err(FerryError::new(
                    ErrorKind::Busy,
                    "a request is writing to this upload",
                ));
            }
            fs::remove_file(&data).map_err(io_error)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    match fs::remove_file(record_path(home, &record.id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// Removes the expired uploads of `home`, returning their records. Uploads
/// being written to are left for the next sweep.
pub fn sweep(home: &Home, now: i64) -> Vec<Record> {
    let dir = dir(home);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let record = match load(home, id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "skipping unreadable upload record");
                continue;
            }
        };
        if record.expires_at > now {
            continue;
        }
        match remove(home, &record) {
            Ok(()) => removed.push(record),
            Err(e) => tracing::debug!(upload = id, error = %e, "expired upload not removed yet"),
        }
    }
    removed
}

/// The resumable uploads of `home` whose data last changed before
/// `before_ms` (a retention policy's `partials`), removed with `remove`
/// (those being written to are left for the next sweep): their records.
pub fn idle_before(home: &Home, before_ms: i64, remove: bool) -> Vec<Record> {
    let Ok(entries) = fs::read_dir(dir(home)) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(record) = load(home, id) else {
            continue;
        };
        let changed_ms = fs::symlink_metadata(data_path(home, &record.id))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(record.created_at, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            });
        if changed_ms >= before_ms {
            continue;
        }
        if remove {
            if let Err(e) = self::remove(home, &record) {
                tracing::debug!(upload = %record.id, error = %e, "idle upload not removed yet");
                continue;
            }
        }
        found.push(record);
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// Removes expired resumable uploads of every account, logging each as an
/// interrupted transfer. Runs every minute, or more often for short expiries.
pub(crate) async fn expire_uploads(ctx: std::sync::Arc<crate::ServerCtx>, w: ferry_worker::Worker) {
    let every =
        std::time::Duration::from_millis((ctx.upload_expiry_ms / 2).clamp(500, 60_000) as u64);
    w.idle();
    while w.sleep(every).await {
        w.busy("sweeping expired resumable uploads");
        let sweep_ctx = ctx.clone();
        let expired = crate::session::blocking(move || {
            let accounts = sweep_ctx
                .store
                .accounts()
                .map_err(ferry_core::FerryError::from)?;
            let now = crate::transfer::now_millis();
            let mut expired = Vec::new();
            for account in accounts {
                // Only homes that have resumable uploads; opening a home
                // would create the homes of accounts that never logged in.
                let uploads_dir = sweep_ctx.repository.join(&account.home).join(UPLOADS_DIR);
                if !uploads_dir.is_dir() {
                    continue;
                }
                let Ok(home) = crate::repository::Home::open(&sweep_ctx.repository, &account.home)
                else {
                    continue;
                };
                for record in sweep(&home, now) {
                    expired.push((account.name.clone(), record));
                }
            }
            Ok(expired)
        })
        .await;
        match expired {
            Ok(expired) => {
                for (account, record) in expired {
                    tracing::info!(%account, upload = %record.id, "resumable upload expired");
                    let row = crate::rows::upload_row(
                        &ctx,
                        &account,
                        &record,
                        ferry_core::TransferStatus::Interrupted,
                        None,
                        Some("upload expired without being completed; its data was removed".into()),
                    );
                    let _ = crate::rows::log_transfer(&ctx, row).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not sweep expired uploads");
                w.error(e);
            }
        }
        w.done_one();
        w.idle();
    }
}
