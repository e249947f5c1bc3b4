//! Ferry benchmark: Ferry beside OpenSSH's sshd and nginx on one machine,
//! driven by the same clients (OpenSSH `sftp`, curl), reported as ratios.
//!
//! [`run`] starts every server as a foreground child on loopback, measures
//! each workload (one warm-up, then the median of the runs), checks every
//! transferred file by SHA-256 and writes [`report`]s into `--out`.
//! [`failover`] measures the active/active failover time instead: the Raft
//! leader of three servers killed with SIGKILL, until another is primary.

// The benchmark and the nemesis harness index their own fixed tables (the
// servers of a run, the rows of a report); an index out of range there is a
// bug of the bench, found by its tests, not a fault a client can cause.
#![allow(clippy::indexing_slicing)]

mod bench;
mod clients;
pub mod failover;
pub mod model;
pub mod nemesis;
mod procs;
pub mod report;
mod targets;
mod wan;

pub use bench::{run, Options, CIPHERS};
