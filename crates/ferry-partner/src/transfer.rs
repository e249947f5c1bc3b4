//! Uploads and downloads: several requests in flight, paced to the rate limit.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::time::Duration;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Data, FileAttributes, OpenFlags, StatusCode};
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{PartnerError, PartnerSession, PutOutcome};

/// Read or write requests kept in flight per transfer.
const IN_FLIGHT: usize = 32;
/// Smallest request when a low rate limit shrinks them.
const MIN_PACED_CHUNK: u64 = 4 * 1024;

impl PartnerSession {
    /// Atomic, idempotent upload of local file `local` (whose SHA-256 hex is
    /// `sha256`) to `dir/name`:
    ///  1. if `dir/name` exists with the same size and its content (read
    ///     back) hashes to `sha256`, returns [`PutOutcome::AlreadyPresent`]
    ///     without uploading;
    ///  2. otherwise writes to `dir/.<tag>.filepart` (created/truncated, so
    ///     a retry with the same tag overwrites a killed attempt's partial),
    ///     fsyncs it if the server supports fsync@openssh.com, closes it;
    ///  3. renames it to `dir/name`, replacing an existing file atomically
    ///     with posix-rename@openssh.com when advertised, else removing the
    ///     old `dir/name` and renaming.
    ///
    /// The data sent is hashed on the way; if it does not match `sha256`
    /// (the local file changed) nothing is renamed and a non-transient
    /// [`PartnerError::Local`] is returned. On any error after the temporary
    /// file was created, it is removed (best effort). `tag` (event id + step,
    /// chosen by the caller) may only contain `[A-Za-z0-9_-]`.
    pub async fn put_file(
        &self,
        local: &Path,
        dir: &str,
        name: &str,
        tag: &str,
        sha256: &str,
    ) -> Result<PutOutcome, PartnerError> {
        let file = std::fs::File::open(local).map_err(local_error("open", local))?;
        self.put_open_file(file, local, dir, name, tag, sha256)
            .await
    }

    /// [`PartnerSession::put_file`] of a file the caller has opened (read
    /// from its start); `label` names it in errors.
    pub async fn put_open_file(
        &self,
        file: std::fs::File,
        label: &Path,
        dir: &str,
        name: &str,
        tag: &str,
        sha256: &str,
    ) -> Result<PutOutcome, PartnerError> {
        let local = label;
        check_name(name)?;
        check_tag(tag)?;
        let expected = sha256.trim().to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PartnerError::InvalidArgument(format!(
                "{sha256:?} is not a SHA-256 in hex"
            )));
        }
        let target = join(dir, name);
        let temp = join(dir, &format!(".{tag}.filepart"));
        let size = file.metadata().map_err(local_error("stat", local))?.len();

        if let Some(attrs) = self.stat(&target).await? {
            if !attrs.is_dir() && attrs.size == Some(size) {
                let (_, present) = self.download(&target, None).await?;
                if present == expected {
                    tracing::debug!(partner = %self.partner, path = %target, "already present");
                    return Ok(PutOutcome::AlreadyPresent);
                }
            }
        }

        let uploaded = match self
            .upload(File::from_std(file), local, &temp, &expected)
            .await
        {
            Ok(bytes) => self.replace(&temp, &target).await.map(|()| bytes),
            Err(e) => Err(e),
        };
        match uploaded {
            Ok(bytes) => {
                tracing::debug!(partner = %self.partner, path = %target, bytes, "uploaded");
                Ok(PutOutcome::Uploaded { bytes })
            }
            Err(e) => {
                if let Err(cleanup) = self.sftp.remove(temp.as_str()).await {
                    tracing::debug!(partner = %self.partner, path = %temp, "temp file not removed: {cleanup}");
                }
                Err(e)
            }
        }
    }

    /// Downloads remote `path` into the local file `local` (created or
    /// truncated), fsyncs it, returns (bytes, SHA-256 hex). On error the local
    /// file may hold partial data.
    pub async fn get_file(&self, path: &str, local: &Path) -> Result<(u64, String), PartnerError> {
        let file = File::create(local)
            .await
            .map_err(local_error("create", local))?;
        self.get_into(path, file.into_std().await, local).await
    }

    /// [`PartnerSession::get_file`] into a file the caller has created
    /// (written from its current position); `label` names it in errors.
    pub async fn get_into(
        &self,
        path: &str,
        file: std::fs::File,
        label: &Path,
    ) -> Result<(u64, String), PartnerError> {
        let local = label;
        let mut file = File::from_std(file);
        let result = self.download(path, Some((&mut file, local))).await?;
        file.flush().await.map_err(local_error("write", local))?;
        file.sync_all().await.map_err(local_error("fsync", local))?;
        Ok(result)
    }

    /// Request size: the server's maximum, smaller under a low rate limit so
    /// that pacing stays smooth.
    fn chunk(&self, max: u32) -> u32 {
        match self.rate_limit {
            Some(rate) => {
                let paced = (rate / 8).max(MIN_PACED_CHUNK);
                u32::try_from(paced).map_or(max, |p| p.min(max))
            }
            None => max,
        }
    }

    /// Writes `local` to a created/truncated `temp`, checks the hash, fsyncs
    /// and closes. Returns the bytes sent.
    async fn upload(
        &self,
        mut file: File,
        local: &Path,
        temp: &str,
        expected: &str,
    ) -> Result<u64, PartnerError> {
        file.seek(io::SeekFrom::Start(0))
            .await
            .map_err(local_error("seek", local))?;
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let handle = self
            .sftp
            .open(temp, flags, FileAttributes::empty())
            .await
            .map_err(|e| self.remote("create", temp, e))?
            .handle;
        let mut result = self.send(&mut file, local, &handle, temp).await;
        if let Ok((_, sent)) = &result {
            if sent != expected {
                result = Err(PartnerError::Local {
                    op: "read",
                    path: local.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "content has SHA-256 {sent}, expected {expected} (was the file changed?)"
                        ),
                    ),
                });
            }
        }
        if result.is_ok() && self.fsync {
            if let Err(e) = self.sftp.fsync(handle.as_str()).await {
                result = Err(self.remote("fsync", temp, e));
            }
        }
        let closed = self.sftp.close(handle).await;
        let (bytes, _) = result?;
        closed.map_err(|e| self.remote("close", temp, e))?;
        Ok(bytes)
    }

    /// Sends the whole local file through `handle`; returns (bytes, sha256).
    async fn send(
        &self,
        file: &mut File,
        local: &Path,
        handle: &str,
        remote: &str,
    ) -> Result<(u64, String), PartnerError> {
        let chunk = self.chunk(self.write_chunk) as usize;
        let mut pacer = Pacer::new(self.rate_limit);
        let mut hasher = Sha256::new();
        let mut in_flight = InFlight::default();
        let mut offset = 0u64;
        loop {
            let mut buf = vec![0u8; chunk];
            let n = read_full(file, &mut buf)
                .await
                .map_err(local_error("read", local))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.update(&buf);
            if in_flight.0.len() >= IN_FLIGHT {
                if let Some((_, _, job)) = in_flight.0.pop_front() {
                    self.joined(job.await)
                        .and_then(|r| r.map_err(|e| self.remote("write", remote, e)))?;
                }
            }
            pacer.take(n as u64).await;
            let sftp = self.sftp.clone();
            let h = handle.to_owned();
            let at = offset;
            let job = tokio::spawn(async move { sftp.write(h, at, buf).await.map(drop) });
            in_flight.0.push_back((offset, n as u32, job));
            offset += n as u64;
        }
        while let Some((_, _, job)) = in_flight.0.pop_front() {
            self.joined(job.await)
                .and_then(|r| r.map_err(|e| self.remote("write", remote, e)))?;
        }
        Ok((offset, hex::encode(hasher.finalize())))
    }

    /// Reads remote `path` to the end, hashing it and writing it to `out` if
    /// given. Returns (bytes, sha256).
    async fn download(
        &self,
        path: &str,
        out: Option<(&mut File, &Path)>,
    ) -> Result<(u64, String), PartnerError> {
        let handle = self
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(|e| self.remote("open", path, e))?
            .handle;
        let result = self.receive(&handle, path, out).await;
        let closed = self.sftp.close(handle).await;
        let result = result?;
        closed.map_err(|e| self.remote("close", path, e))?;
        Ok(result)
    }

    async fn receive(
        &self,
        handle: &str,
        path: &str,
        mut out: Option<(&mut File, &Path)>,
    ) -> Result<(u64, String), PartnerError> {
        let chunk = self.chunk(self.read_chunk);
        let mut pacer = Pacer::new(self.rate_limit);
        let mut hasher = Sha256::new();
        let mut in_flight: InFlight<Data> = InFlight::default();
        let mut total = 0u64;
        let mut next = 0u64;
        let mut eof = false;
        loop {
            while !eof && in_flight.0.len() < IN_FLIGHT {
                pacer.take(u64::from(chunk)).await;
                let sftp = self.sftp.clone();
                let h = handle.to_owned();
                let at = next;
                let job = tokio::spawn(async move { sftp.read(h, at, chunk).await });
                in_flight.0.push_back((next, chunk, job));
                next += u64::from(chunk);
            }
            let Some((offset, len, job)) = in_flight.0.pop_front() else {
                break;
            };
            // Bytes of [offset, offset+len) received so far.
            let mut got = 0u64;
            let mut reply = self.joined(job.await)?;
            loop {
                match reply {
                    Ok(data) if !data.data.is_empty() => {
                        let n = data.data.len() as u64;
                        if got + n > u64::from(len) {
                            return Err(PartnerError::Protocol(format!(
                                "partner {}: read {path}: the server sent more data than asked for",
                                self.partner
                            )));
                        }
                        hasher.update(&data.data);
                        if let Some((file, local)) = out.as_mut() {
                            file.write_all(&data.data)
                                .await
                                .map_err(local_error("write", local))?;
                        }
                        got += n;
                        total += n;
                    }
                    Ok(_) => {
                        eof = true;
                        break;
                    }
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => {
                        eof = true;
                        break;
                    }
                    Err(e) => return Err(self.remote("read", path, e)),
                }
                if got == u64::from(len) {
                    break;
                }
                // A short read that is not the end: fetch the rest of this
                // range before using the later replies.
                let rest = u32::try_from(u64::from(len) - got).unwrap_or(len);
                reply = self.sftp.read(handle, offset + got, rest).await;
            }
            if eof {
                // Everything still in flight lies beyond the end; dropping
                // `in_flight` cancels it.
                break;
            }
        }
        Ok((total, hex::encode(hasher.finalize())))
    }

    /// Unwraps a finished request task.
    fn joined<T>(&self, r: Result<T, tokio::task::JoinError>) -> Result<T, PartnerError> {
        r.map_err(|e| {
            PartnerError::Protocol(format!(
                "partner {}: transfer task failed: {e}",
                self.partner
            ))
        })
    }
}

/// Requests in flight, oldest first: (offset, length, task). Dropping it
/// aborts whatever has not finished.
struct InFlight<T>(VecDeque<(u64, u32, Job<T>)>);

/// A spawned SFTP request.
type Job<T> = JoinHandle<Result<T, SftpError>>;

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self(VecDeque::with_capacity(IN_FLIGHT))
    }
}

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        for (_, _, job) in &self.0 {
            job.abort();
        }
    }
}

/// Spaces out requests so that on average at most `rate` bytes per second go.
struct Pacer {
    rate: Option<u64>,
    start: Instant,
    granted: u64,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Self {
        Self {
            rate,
            start: Instant::now(),
            granted: 0,
        }
    }

    /// Waits until `n` more bytes may go.
    async fn take(&mut self, n: u64) {
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = Duration::try_from_secs_f64(self.granted as f64 / rate as f64)
                .ok()
                .and_then(|d| self.start.checked_add(d));
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending::<()>().await,
            }
        }
        self.granted = self.granted.saturating_add(n);
    }
}

/// Fills `buf` as far as the file allows; returns the bytes read (0 at EOF).
async fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match file.read(rest).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn local_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PartnerError + 'a {
    move |source| PartnerError::Local {
        op,
        path: path.to_owned(),
        source,
    }
}

/// `dir/name`; `dir` may be empty (the login directory) or end with '/'.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn check_name(name: &str) -> Result<(), PartnerError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(PartnerError::InvalidArgument(format!(
            "{name:?} is not a valid remote file name"
        )));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), PartnerError> {
    let ok = !tag.is_empty()
        && tag.len() <= 200
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(PartnerError::InvalidArgument(format!(
            "upload tag {tag:?} must be 1-200 characters of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "a.txt"), "a.txt");
        assert_eq!(join("/in", "a.txt"), "/in/a.txt");
        assert_eq!(join("/in/", "a.txt"), "/in/a.txt");
        assert_eq!(join("out", "a.txt"), "out/a.txt");
    }

    #[test]
    fn validates_names_and_tags() {
        assert!(check_name("a.txt").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_tag("evt-123_step2").is_ok());
        for bad in ["", "a b", "../x", "a.b", "ä"] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn pacer_spaces_requests() {
        let mut pacer = Pacer::new(Some(100_000));
        let start = Instant::now();
        for _ in 0..4 {
            pacer.take(5_000).await;
        }
        // The 4th request may go once 15 000 bytes' worth of time has passed.
        assert!(start.elapsed() >= Duration::from_millis(150));
        let mut free = Pacer::new(None);
        free.take(u64::MAX).await;
    }

    /// Servers without posix-rename@openssh.com: the plain SFTPv3 rename
    /// refuses to overwrite, so put_file removes the old file first.
    #[tokio::test]
    async fn put_file_replaces_without_posix_rename() {
        let sshd = crate::test_sshd::start();
        let spec = crate::test_spec(&sshd, "plain");
        let mut session = PartnerSession::connect(&spec).await.unwrap();
        assert!(
            session.posix_rename && session.fsync,
            "OpenSSH advertises both"
        );
        session.posix_rename = false;
        session.fsync = false;

        let root = sshd.root.to_str().unwrap();
        let target = sshd.root.join("t.txt");
        std::fs::write(&target, b"old").unwrap();
        std::fs::write(sshd.root.join("u.txt"), b"u").unwrap();
        // The public rename is a plain rename now: it refuses to overwrite.
        let err = session
            .rename(&format!("{root}/u.txt"), &format!("{root}/t.txt"))
            .await
            .unwrap_err();
        assert!(matches!(err, PartnerError::Remote { .. }), "{err:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"old");

        let local = tempfile::tempdir().unwrap();
        let path = local.path().join("new");
        std::fs::write(&path, b"new content").unwrap();
        let sha = hex::encode(Sha256::digest(b"new content"));
        let outcome = session
            .put_file(&path, root, "t.txt", "tag1", &sha)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Uploaded { bytes: 11 });
        assert_eq!(std::fs::read(&target).unwrap(), b"new content");
        assert!(!sshd.root.join(".tag1.filepart").exists());
        session.close().await;
    }

    /// The server shares sessions between tasks.
    #[test]
    fn session_and_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<PartnerSession>();
        send_sync::<PartnerError>();
        let spec = crate::PartnerSpec {
            name: String::new(),
            host: String::new(),
            port: 0,
            username: String::new(),
            auth: crate::PartnerAuth::Password(ferry_core::Secret::new("")),
            host_key: String::new(),
            connect_timeout: Duration::ZERO,
            rate_limit: None,
        };
        send(&PartnerSession::connect(&spec));
        let check = |s: &PartnerSession| {
            send(&s.put_file(Path::new(""), "", "", "", ""));
            send(&s.get_file("", Path::new("")));
            send(&s.list(""));
        };
        let _ = check;
    }
}
