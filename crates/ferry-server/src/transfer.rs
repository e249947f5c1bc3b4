//! Per-handle transfer bookkeeping: bytes moved and the SHA-256 of the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Hashes a file as it is written or read in order; when access was not
/// sequential from offset 0, [`HashTracker::finish`] re-reads what is missing.
#[derive(Debug, Default)]
pub struct HashTracker {
    hasher: Sha256,
    upto: u64,
    broken: bool,
}

impl HashTracker {
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
        if self.broken {
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
    }

    /// The SHA-256 of the whole of `file`, hex.
    pub fn finish(self, file: &File) -> io::Result<String> {
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
        let mut buf = vec![0u8; 1 << 20];
        while offset < len {
            let n = file.read_at(&mut buf, offset)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(hex::encode(hasher.finalize()))
    }
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
}
