//! What can go wrong in ferry-cluster, by kind.

use ferry_core::{ErrorKind, FerryError};

/// An error of the cluster layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The `[cluster]` section is wrong; the message says what to change.
    #[error("{0}")]
    Config(String),
    /// This server's own cluster state (`cluster.json`, `raft.db`, the
    /// event log, the state machine's copy of the store) cannot be read or
    /// written.
    #[error("{0}")]
    State(String),
    /// A server connected as something it may not be.
    #[error("{0}")]
    Refused(String),
    /// openraft failed or did not stop in time.
    #[error("{0}")]
    Raft(String),
}

/// A result of the cluster layer.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

impl From<ClusterError> for FerryError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Config(m) => FerryError::invalid(m),
            ClusterError::Refused(m) => FerryError::new(ErrorKind::PermissionDenied, m),
            ClusterError::State(m) | ClusterError::Raft(m) => FerryError::internal(m),
        }
    }
}
