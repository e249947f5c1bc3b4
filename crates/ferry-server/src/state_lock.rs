//! The lock a running server holds on its state directory, so that a
//! second server (a unit started twice, an operator's test run) cannot
//! open the same store and Raft state beside it.
//!
//! An advisory `flock` on `ferry.lock` in the state directory, taken
//! without waiting: the kernel drops it when the process ends, however it
//! ends, so a crash never leaves a stale lock behind. The file holds the
//! holder's process id, for the refusal's message only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::StartError;

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "ferry.lock";

/// Held for as long as the server runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir`, or says which process holds it.
    pub fn take(state_dir: &Path) -> Result<Self, StartError> {
        let path = state_dir.join(LOCK_FILE);
        let cannot = |e: std::io::Error| {
            StartError::Setup(format!("cannot open the lock file {}: {e}", path.display()))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(cannot)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let holder = holder_named_in(&mut file);
                return Err(StartError::Setup(format!(
                    "the state directory {} is in use by {holder} (it holds {}): stop that \
                     server first, or give this one a state_dir of its own",
                    state_dir.display(),
                    path.display()
                )));
            }
            Err(e) => return Err(cannot(e.into())),
        }
        file.set_len(0).map_err(cannot)?;
        file.rewind().map_err(cannot)?;
        writeln!(file, "{}", std::process::id()).map_err(cannot)?;
        Ok(Self { _file: file })
    }
}

/// Who holds the lock file at `path` (`STATE_DIR/ferry.lock`), if a
/// process does: "process PID". Takes nothing: a lock free now is let go
/// at once. A missing file (or one that is no file) is held by nobody.
pub fn holder(path: &Path) -> std::io::Result<Option<String>> {
    let Ok(mut file) = File::open(path) else {
        return Ok(None);
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(None),
        Err(Errno::WOULDBLOCK) => Ok(Some(holder_named_in(&mut file))),
        Err(e) => Err(e.into()),
    }
}

/// The holder a held lock file names: the process id written in it.
fn holder_named_in(file: &mut File) -> String {
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    match pid.trim() {
        "" => "another process".to_owned(),
        pid => format!("process {pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::take(dir.path()).unwrap();
        let refused = StateLock::take(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("is in use by process"), "{refused}");
        assert!(
            refused.contains(&std::process::id().to_string()),
            "{refused}"
        );
        let held = holder(&dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(held, Some(format!("process {}", std::process::id())));
        drop(first);
        assert_eq!(holder(&dir.path().join(LOCK_FILE)).unwrap(), None);
        StateLock::take(dir.path()).unwrap();
    }
}
