//! Server-to-server requests of active/passive mode: heartbeats and votes
//! that decide which server is active, status, `ferry sync`, and the history
//! merge after a failover. They travel as [`crate::message::Request::Cluster`]
//! on a connection whose handshake role is [`crate::message::Role::Server`].

use ferry_core::sync::{HistoryPage, SqlValue, TableDiff};
use serde::{Deserialize, Serialize};

/// What a server is in active/passive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Serves sessions and runs the workers.
    Active,
    /// Serves nothing; waits for a sync or a promotion.
    Standby,
    /// Votes in promotions; never serves.
    Witness,
}

impl NodeRole {
    /// Lower-case name for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Active => "active",
            NodeRole::Standby => "standby",
            NodeRole::Witness => "witness",
        }
    }
}

/// A table's name and columns, sent before its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableHeader {
    /// Table name.
    pub name: String,
    /// Column names in order.
    pub columns: Vec<String>,
    /// Rows that will follow.
    pub rows: u64,
}

/// Opens a sync: what the active server is about to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBegin {
    /// Id of this sync (UUID), in logs and status on both sides.
    pub sync_id: String,
    /// The sending node.
    pub from: String,
    /// The sender's epoch; a standby that knows a newer one refuses.
    pub epoch: u64,
    /// The sender's release, e.g. "ferry 0.1.0".
    pub software: String,
    /// The sender's store schema version.
    pub schema_version: i64,
    /// [`ferry_core::sync::SYNC_FORMAT_VERSION`] of the sender.
    pub sync_format: u16,
    /// Identifies the key that seals partner credentials (a hash, never the key).
    pub secret_key_id: String,
    /// Compare only: report what would change, write nothing.
    pub dry_run: bool,
    /// The tables that follow.
    pub tables: Vec<TableHeader>,
    /// The files that follow: path relative to the config directory, size.
    pub files: Vec<(String, u64)>,
}

/// Requests between servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// The active server is alive in `epoch`.
    Heartbeat {
        /// The sender's epoch.
        epoch: u64,
        /// The sender.
        node: String,
    },
    /// A server asks to become active in `epoch`.
    RequestVote {
        /// The epoch it would start.
        epoch: u64,
        /// The candidate.
        candidate: String,
        /// An operator asked for it (`ferry cluster promote`): granted even
        /// while the active server is alive, which then steps down.
        manual: bool,
    },
    /// How is this server? Answered with [`ClusterResponse::Status`].
    Status,
    /// Start a sync; tables and files follow, then [`ClusterRequest::SyncCommit`].
    SyncBegin(SyncBegin),
    /// Rows of a table announced in [`SyncBegin`].
    SyncRows {
        /// Table name.
        table: String,
        /// The rows.
        rows: Vec<Vec<SqlValue>>,
    },
    /// A file announced in [`SyncBegin`], whole.
    SyncFile {
        /// Path relative to the config directory.
        path: String,
        /// Its content.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Everything was sent: apply it (or compare, for a dry run).
    SyncCommit,
    /// History rows the answering server's store changed after position
    /// `after_seq` of its change sequence, in commit order; answered with
    /// [`ClusterResponse::History`]. The puller keeps the position per
    /// peer ([`ferry_core::sync::HistoryMark`]); no clock is compared.
    PullHistory {
        /// The last position merged from this store (0: everything).
        after_seq: u64,
        /// At most this many rows per table.
        limit: u32,
    },
    /// Active/active: a Raft RPC, serde-encoded (JSON) as openraft defines it.
    Raft {
        /// Which RPC.
        rpc: RaftRpc,
        /// The request.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Active/active: a command for the leader to propose (JSON of the
    /// proposal); answered with [`ClusterResponse::RaftReply`].
    Propose {
        /// The proposal.
        #[serde(with = "serde_bytes")]
        proposal: Vec<u8>,
    },
    /// Active/active: this node's Raft view, as JSON.
    RaftStatus,
    /// Either mode: this node's newest `limit` cluster events, answered
    /// with [`ClusterResponse::Events`] (so `ferry cluster events` shows
    /// the cluster's history, not only the answering server's).
    Events {
        /// At most this many, newest.
        limit: u32,
    },
    /// Active/active: add the sending server to the group.
    Join {
        /// Its `node_id` (its certificate must name it).
        name: String,
        /// The address the others reach it at.
        addr: String,
        /// The join token `ferry cluster init` printed.
        token: ferry_core::Secret,
    },
    /// Active/active: remove a server from the group.
    Leave {
        /// Its `node_id`.
        name: String,
    },
    /// Active/active, from the leader to a server asking to join, before
    /// the membership changes (release 0.2 on, feature level 2): can it
    /// reach each of these members? Answered with the problems found, as
    /// JSON (none: every member answered, even with a refusal).
    ProbeMembers {
        /// (node id, internal address) of every member.
        members: Vec<(String, String)>,
    },
}

/// The Raft RPCs carried by [`ClusterRequest::Raft`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    /// AppendEntries (also the heartbeat).
    AppendEntries,
    /// RequestVote.
    Vote,
    /// A snapshot chunk, all JSON, its bytes as a number array (what
    /// earlier builds sent; still understood).
    InstallSnapshot,
    /// A snapshot chunk with its bytes kept binary: a 4-byte big-endian
    /// length, that many bytes of the request as JSON with empty `data`,
    /// then the chunk's bytes.
    InstallSnapshotChunk,
}

/// A server's view of itself, for status and failover decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Node id.
    pub node: String,
    /// Its role now.
    pub role: NodeRole,
    /// Whether it serves sessions and accepts writes now.
    pub ready: bool,
    /// Its epoch.
    pub epoch: u64,
    /// The active server it knows of, if any.
    pub active: Option<String>,
    /// Its release.
    pub software: String,
    /// Store schema version (0 for a witness).
    pub schema_version: i64,
    /// The last sync it applied.
    pub last_sync: Option<SyncRecord>,
    /// Digest of each syncable table, to tell what is out of date.
    pub table_digests: Vec<(String, String)>,
    /// Digest of each synced configuration file it holds.
    pub file_digests: Vec<(String, String)>,
    /// Its workers and what each does.
    pub workers: Vec<ferry_core::worker::WorkerStatus>,
}

/// A sync applied on a standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// Sync id.
    pub sync_id: String,
    /// The node that sent it.
    pub from: String,
    /// When it was applied (unix ms).
    pub at: i64,
    /// Epoch of the sender.
    pub epoch: u64,
}

/// What a sync changed, or would change, on one standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The standby.
    pub node: String,
    /// Sync id.
    pub sync_id: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// Per table.
    pub tables: Vec<TableDiff>,
    /// Files that are new or different, relative to the config directory.
    pub files_changed: Vec<String>,
    /// Files equal on both sides.
    pub files_unchanged: u64,
    /// Where the standby keeps what the sync replaced.
    pub backup: Option<String>,
}

/// Answers between servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// Answer to a heartbeat: the receiver's epoch and role.
    HeartbeatAck {
        /// Receiver's epoch after the heartbeat.
        epoch: u64,
        /// Receiver's role.
        role: NodeRole,
    },
    /// Answer to a vote request.
    Vote {
        /// Granted?
        granted: bool,
        /// The voter's epoch.
        epoch: u64,
        /// Why not, when refused.
        reason: String,
    },
    /// Answer to [`ClusterRequest::Status`].
    Status(PeerStatus),
    /// Answer to [`ClusterRequest::Events`]: the events as JSON.
    Events(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The part of a sync was received.
    SyncReceived,
    /// The sync was applied (or compared).
    SyncDone(SyncReport),
    /// History rows, the store they come from, the position they reach,
    /// and whether more remain after them.
    History(HistoryPage),
    /// Active/active: a serde-encoded (JSON) answer to a Raft request.
    RaftReply(#[serde(with = "serde_bytes")] Vec<u8>),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ferry_core::worker::{WorkerState, WorkerStatus};

    /// postcard is not self-describing: a status with optional fields
    /// left out or filled in comes back as it went.
    #[test]
    fn a_peer_status_with_workers_survives_the_wire() {
        let status = PeerStatus {
            node: "s1".into(),
            role: NodeRole::Active,
            ready: true,
            epoch: 3,
            active: Some("s1".into()),
            software: "ferry 0.1.0".into(),
            schema_version: 7,
            last_sync: None,
            table_digests: vec![("accounts".into(), "ab".into())],
            file_digests: Vec::new(),
            workers: vec![
                WorkerStatus {
                    name: "scheduler".into(),
                    state: WorkerState::Busy,
                    detail: Some("primary in term 3".into()),
                    for_secs: 12,
                    done: 4,
                    last_error: None,
                },
                WorkerStatus {
                    name: "queue-worker-0".into(),
                    state: WorkerState::Idle,
                    detail: None,
                    for_secs: 0,
                    done: 0,
                    last_error: Some("no quorum".into()),
                },
            ],
        };
        let bytes = postcard::to_stdvec(&ClusterResponse::Status(status.clone())).unwrap();
        let back: ClusterResponse = postcard::from_bytes(&bytes).unwrap();
        let ClusterResponse::Status(back) = back else {
            panic!("{back:?}")
        };
        assert_eq!(back, status);
    }
}
