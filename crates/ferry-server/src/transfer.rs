//! Per-handle transfer bookkeeping: bytes moved and the SHA-256 of the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use ferry_proto::message::HashAlgorithm;
use sha2::{Digest, Sha256};

/// Hashes a file as it is written or read in order; when access was not
/// sequential from offset 0, [`HashTracker::finish`] re-reads what is missing.
/// A file whose SHA-256 is already known (see [`cached_sha256`]) is not
/// hashed again.
#[derive(Debug, Default)]
pub struct HashTracker {
    hasher: Sha256,
    upto: u64,
    broken: bool,
    known: Option<String>,
}

impl HashTracker {
    /// Whether the SHA-256 was known from the start (nothing was hashed).
    pub fn is_known(&self) -> bool {
        self.known.is_some()
    }

    /// A tracker for a file whose SHA-256 is `sha`: nothing is hashed.
    pub fn known(sha: String) -> Self {
        Self {
            known: Some(sha),
            ..Self::default()
        }
    }

    /// Records that `data` was written at `offset`: anything but the next
    /// bytes in order makes the running hash unusable.
    pub fn record_write(&mut self, offset: u64, data: &[u8]) {
        if offset != self.upto {
            self.broken = true;
        }
        self.record_read(offset, data);
    }

    /// Records that `data` was read from `offset`. Re-reading bytes already
    /// hashed is harmless; a gap makes the running hash unusable.
    pub fn record_read(&mut self, offset: u64, data: &[u8]) {
        if self.broken || self.known.is_some() {
            return;
        }
        let end = offset + data.len() as u64;
        if offset == self.upto {
            self.hasher.update(data);
            self.upto = end;
        } else if end > self.upto || offset > self.upto {
            // A gap or an overwrite of hashed bytes: hash from the file at the end.
            self.broken = true;
        }
    }

    /// Marks the running hash unusable (the file was truncated or rewritten).
    pub fn invalidate(&mut self) {
        self.broken = true;
        self.known = None;
    }

    /// The SHA-256 of the whole of `file`, hex.
    pub fn finish(self, file: &File) -> io::Result<String> {
        if let Some(sha) = self.known {
            return Ok(sha);
        }
        let (mut hasher, mut offset) = if self.broken {
            (Sha256::new(), 0)
        } else {
            (self.hasher, self.upto)
        };
        let len = file.metadata()?.len();
        if offset > len {
            // The file shrank under us; start over.
            hasher = Sha256::new();
            offset = 0;
        }
        // Usually the hash followed every write and nothing is left to read:
        // no buffer then (a zeroed 1 MiB per close was a visible share of a
        // small-file upload's CPU).
        let mut buf = vec![0u8; read_buffer_len(len.saturating_sub(offset))];
        while offset < len {
            let n = file.read_at(&mut buf, offset)?;
            if n == 0 {
                break;
            }
            hasher.update(filled(&buf, n)?);
            offset += n as u64;
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Extended attribute that keeps a file's SHA-256 with the stamp of the file
/// it was computed for: "v1 SIZE MTIME_S.MTIME_NS INODE SHA256".
const SHA_XATTR: &str = "user.ferry.sha256";

/// What identifies a file's content for the SHA-256 cache: size,
/// modification time (ns) and inode. Any write changes the mtime; an upload
/// commits a new inode.
pub fn content_stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "v1 {} {}.{:09} {}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    )
}

/// The SHA-256 recorded on `file` when it was committed or last read in
/// full, if the file still has `stamp` (its [`content_stamp`] now).
/// Downloads of such a file are logged with it instead of hashing every
/// byte again.
pub fn cached_sha256(file: &File, stamp: &str) -> Option<String> {
    let mut buf = [0u8; 192];
    let n = rustix::fs::fgetxattr(file, SHA_XATTR, &mut buf).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    let (recorded, sha) = text.rsplit_once(' ')?;
    let valid = recorded == stamp && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| sha.to_owned())
}

/// Records `sha` as the SHA-256 of `file` with `stamp`, which the caller
/// took before the bytes were hashed and knows to be still current. Best
/// effort: where the file system keeps no user attributes, files are simply
/// hashed again.
pub fn cache_sha256(file: &File, stamp: &str, sha: &str) {
    let value = format!("{stamp} {sha}");
    let _ = rustix::fs::fsetxattr(
        file,
        SHA_XATTR,
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    );
}

/// The digest of the whole of `file`, lowercase hex, as `sha256sum`,
/// `sha1sum` or `md5sum` print it. A current cached SHA-256 (see
/// [`cached_sha256`]) is used as it is, and a SHA-256 computed here is
/// cached if the file did not change meanwhile; the other digests are always
/// computed, reading 1 MiB at a time.
pub fn file_digest(file: &File, algorithm: HashAlgorithm) -> io::Result<String> {
    match algorithm {
        HashAlgorithm::Sha256 => {
            let stamp = content_stamp(&file.metadata()?);
            if let Some(sha) = cached_sha256(file, &stamp) {
                return Ok(sha);
            }
            let sha = stream_digest::<Sha256>(file)?;
            if file.metadata().map(|m| content_stamp(&m)).ok().as_ref() == Some(&stamp) {
                cache_sha256(file, &stamp, &sha);
            }
            Ok(sha)
        }
        HashAlgorithm::Sha1 => stream_digest::<sha1::Sha1>(file),
        HashAlgorithm::Md5 => stream_digest::<md5::Md5>(file),
    }
}

/// A read buffer for `left` bytes: at most 1 MiB, none for nothing.
fn read_buffer_len(left: u64) -> usize {
    usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20)
}

fn stream_digest<D: Digest>(file: &File) -> io::Result<String> {
    let mut hasher = D::new();
    // One byte more than the file holds now, so a file that grew since is
    // still read to its end (in several reads).
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; read_buffer_len(len.saturating_add(1))];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        offset += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The first `n` bytes of `buf`, as a read that returned `n` filled them;
/// an error, never a panic, if a reader claimed more than the buffer holds.
pub(crate) fn filled(buf: &[u8], n: usize) -> io::Result<&[u8]> {
    buf.get(..n).ok_or_else(|| {
        io::Error::other(format!(
            "a read returned {n} bytes into a buffer of {}",
            buf.len()
        ))
    })
}

/// Reads `len` bytes of `file` from `offset` into a new buffer, fewer only
/// where the file ends first. The buffer is not zeroed before the read
/// fills it (a client asks for up to 256 KiB per read, whatever the file's
/// size).
pub(crate) fn read_at_most(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)
            .map_err(io::Error::from)?;
        if n == 0 {
            break;
        }
    }
    // The allocator may have given more room than asked for.
    buf.truncate(len);
    Ok(buf)
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn reads_fill_what_was_asked_and_stop_at_the_end() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        f.write_all(&data).unwrap();
        let whole = read_at_most(&f, 0, 256 << 10).unwrap();
        assert_eq!(whole, data[..256 << 10]);
        let tail = read_at_most(&f, 290_000, 256 << 10).unwrap();
        assert_eq!(tail, data[290_000..]);
        assert!(read_at_most(&f, 300_000, 256 << 10).unwrap().is_empty());
        assert!(read_at_most(&f, 5, 0).unwrap().is_empty());
    }

    #[test]
    fn sequential_and_scattered_access_give_the_file_hash() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();

        let mut seq = HashTracker::default();
        seq.record_write(0, &data[..1000]);
        seq.record_write(1000, &data[1000..5000]);
        assert_eq!(seq.finish(&f).unwrap(), sha(&data));

        let mut scattered = HashTracker::default();
        scattered.record_read(5000, &data[5000..6000]);
        scattered.record_read(0, &data[..10]);
        assert_eq!(scattered.finish(&f).unwrap(), sha(&data));

        let mut reread = HashTracker::default();
        reread.record_read(0, &data[..100]);
        reread.record_read(0, &data[..50]); // a re-read inside the hashed prefix is harmless
        assert_eq!(reread.finish(&f).unwrap(), sha(&data));

        let mut rewrite = HashTracker::default();
        rewrite.record_write(0, &[9; 100]);
        rewrite.record_write(0, &data[..100]);
        assert_eq!(rewrite.finish(&f).unwrap(), sha(&data));
    }

    #[test]
    fn digests_match_the_coreutils_values() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"abc").unwrap();
        let cases = [
            (
                HashAlgorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlgorithm::Sha1,
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (HashAlgorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
        ];
        for (algorithm, want) in cases {
            assert_eq!(file_digest(&f, algorithm).unwrap(), want, "{algorithm:?}");
        }
        let empty = tempfile::tempfile().unwrap();
        assert_eq!(
            file_digest(&empty, HashAlgorithm::Md5).unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn cached_hash_is_used_only_while_the_file_is_unchanged() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"first content").unwrap();
        let file = File::open(&path).unwrap();
        let stamp_now = || content_stamp(&file.metadata().unwrap());
        let stamp = stamp_now();
        let sha = hex::encode(Sha256::digest(b"first content"));
        cache_sha256(&file, &stamp, &sha);
        if rustix::fs::fgetxattr(&file, SHA_XATTR, &mut [0u8; 192]).is_err() {
            eprintln!("this file system keeps no user xattrs; the cache is off here");
            return;
        }
        assert_eq!(
            cached_sha256(&file, &stamp_now()).as_deref(),
            Some(sha.as_str())
        );
        // After a write in place the recorded stamp no longer matches.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(b"FIRST").unwrap();
        drop(w);
        assert_ne!(stamp_now(), stamp, "a write changes the stamp");
        assert_eq!(
            cached_sha256(&file, &stamp_now()),
            None,
            "stale after a write in place"
        );
        cache_sha256(&file, &stamp, "0".repeat(64).as_str());
        assert_eq!(
            cached_sha256(&file, &stamp_now()),
            None,
            "a hash recorded for an old stamp is never served"
        );
        // A known hash skips hashing and finishes with it.
        let mut t = HashTracker::known(sha.clone());
        t.record_read(0, b"anything");
        assert!(t.is_known());
        assert_eq!(t.finish(&file).unwrap(), sha);
    }
}
