//! What a server remembers of the cluster across restarts, in
//! `cluster.json` beside its database (never synced, never replicated): the
//! newest epoch it knows, the epoch it last voted in, whether it was active,
//! and the last sync it applied. Written whole to a temporary file, flushed
//! and renamed, so a crash leaves the old or the new state, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_proto::cluster::SyncRecord;
use serde::{Deserialize, Serialize};

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The newest epoch this server knows. Each promotion starts a new one.
    pub epoch: u64,
    /// The newest epoch this server voted in (a server votes once per epoch).
    pub voted_epoch: u64,
    /// The active server of `epoch`, if known.
    pub active: Option<String>,
    /// The last sync applied here.
    pub last_sync: Option<SyncRecord>,
}

/// The file holding [`NodeState`].
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("cluster.json"),
        }
    }

    /// Reads the state; a missing file is a fresh server.
    pub fn load(&self) -> Result<NodeState, crate::ClusterError> {
        self.read().map_err(crate::ClusterError::State)
    }

    fn read(&self) -> Result<NodeState, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a cluster state file: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeState::default()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Replaces the state durably.
    pub fn save(&self, state: &NodeState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory:
/// flushed, renamed over `path`, and the directory flushed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ferry-tmp-{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path());
        assert_eq!(file.load().unwrap(), NodeState::default());
        let state = NodeState {
            epoch: 3,
            voted_epoch: 4,
            active: Some("b".into()),
            last_sync: None,
        };
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        std::fs::write(dir.path().join("cluster.json"), b"{nope").unwrap();
        assert!(file
            .load()
            .unwrap_err()
            .to_string()
            .contains("not a cluster state file"));
    }
}
