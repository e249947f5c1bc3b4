//! Active/active: the servers form a Raft group (openraft) whose log carries
//! the store's [`Command`]s. Every server applies the same commands in the
//! same order to its own store; the leader is the primary.
//!
//! * [`log_store`] — the log and vote in `raft.db`.
//! * [`state_machine`] — applies entries to the store; snapshots are
//!   database copies in files, sent to a member that is behind in chunks
//!   of [`SNAPSHOT_CHUNK_BYTES`].
//! * [`progress`] — the store's durably applied position, which the log
//!   store's purge waits for ([`open_storage`] ties the two).
//! * [`network`] — Raft RPCs over the internal mutual-TLS protocol.
//! * [`node`] — start, initialise, write (forwarded to the leader), status.

// openraft's storage traits return its `StorageError`, which is large;
// the helpers here return it too rather than convert back and forth.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod node;
pub mod progress;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use ferry_core::{Command, FerryError, Outcome};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The size of one snapshot chunk on the wire. openraft sends a snapshot
/// chunk by chunk, each with its own deadline, so a database of any size
/// goes through; a chunk fits well inside one internal-protocol frame.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Raft's id of a server: derived from its `node_id` name.
pub type NodeId = u64;

/// A member of the Raft group as the log records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The server's `node_id`.
    pub name: String,
    /// Its internal listener, `host:port`.
    pub addr: String,
}

/// What the log carries: a command, with its format version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    /// [`ferry_core::COMMAND_FORMAT_VERSION`] of the proposer.
    pub format: u16,
    /// The change.
    pub command: Command,
}

/// What applying an entry gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    /// The store's answer (a refused command changes nothing anywhere).
    pub result: Result<Outcome, FerryError>,
}

openraft::declare_raft_types!(
    /// Ferry's Raft types.
    pub TypeConfig: D = Proposal, R = Applied, Node = Member,
        SnapshotData = tokio::fs::File
);

/// A node's Raft storage, ready for `Raft::new`.
pub struct Storage {
    /// The log and vote (`raft.db`), whose purge waits for the store.
    pub log: log_store::LogStore,
    /// The state machine over the store.
    pub state_machine: state_machine::StateMachine,
    /// What was repaired at opening: a log purged past the store (see
    /// [`log_store::LogStore::repair_purged_past`]).
    pub repaired: Option<String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("repaired", &self.repaired)
            .finish_non_exhaustive()
    }
}

/// Opens `state_dir/raft.db` and the state machine over `store`, with the
/// log's purge bound to the store's durably applied position, and repairs
/// a log that an earlier release purged past the store.
pub fn open_storage(
    state_dir: &Path,
    store: Arc<ferry_store::Store>,
    on_applied: Arc<dyn Fn() + Send + Sync>,
) -> Result<Storage, crate::ClusterError> {
    let state_machine = state_machine::StateMachine::new(store, state_dir.to_owned(), on_applied)?;
    let progress = state_machine.progress();
    let log = log_store::LogStore::open(&state_dir.join("raft.db"))?;
    let repaired = log.repair_purged_past(progress.applied())?;
    Ok(Storage {
        log: log.purge_after(progress),
        state_machine,
        repaired,
    })
}

/// An I/O error of the log store or state machine, as openraft wants it
/// (any such error stops the Raft instance).
pub(crate) fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> openraft::StorageError<NodeId> {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

/// The Raft id of the server called `name`: the first 8 bytes of its
/// SHA-256, so every server computes the same id from the configuration.
pub fn node_id_of(name: &str) -> NodeId {
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    for (to, from) in bytes.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod crash_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{NodeId, TypeConfig};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::open(&dir.path().join("raft.db")).unwrap();
            let store = Arc::new(ferry_store::Store::open(&dir.path().join("ferry.db")).unwrap());
            let sm = StateMachine::new(store, dir.path().to_owned(), Arc::new(|| {})).unwrap();
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(super::node_id_of("s1"), super::node_id_of("s1"));
        assert_ne!(super::node_id_of("s1"), super::node_id_of("s2"));
    }
}
