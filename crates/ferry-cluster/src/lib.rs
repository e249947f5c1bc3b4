//! Ferry's cluster modes: a server alone, active/passive (one active server,
//! standbys that serve nothing, configuration copied with `ferry sync`) and
//! active/active (Raft).
//!
//! * [`mode`] — the [`Cluster`] trait a server holds, its three
//!   implementations side by side, and [`start`].
//! * [`error`] — [`ClusterError`].
//! * [`config`] — the `[cluster]` section of the server config.
//! * [`node`] — active/passive: which server is active: epochs, heartbeats,
//!   votes, promotion, status; `history.rs`: the pull and merge of history
//!   rows between servers.
//! * [`sync`] — `ferry sync`: snapshot, send, check, apply atomically.
//! * [`peer`] — the accepting side of server-to-server connections.
//! * [`manifest`] — `sync/sync.conf`, `sync/sync_tables.conf` and
//!   `sync/sync.excl`: what `ferry sync` copies, validated line by line.
//! * [`raft`] — active/active: the Raft group (openraft) carrying commands.
//! * [`state`] — what a server remembers across restarts (`cluster.json`).
//! * [`events`] — the cluster's event history and alerts.

pub mod config;
pub mod error;
pub mod events;
mod history;
pub mod manifest;
pub mod mode;
pub mod node;
pub mod peer;
pub mod raft;
pub mod state;
pub mod sync;

pub use config::{ClusterConfig, Mode, PeerConfig};
pub use error::ClusterError;
pub use mode::{start, Cluster, ClusterOptions, Duties, LogNumbers, RowPolicy};
pub use node::{Node, NodeOptions, RoleView};

/// This release, as peers see it.
pub const SOFTWARE: &str = concat!("ferry ", env!("CARGO_PKG_VERSION"));
