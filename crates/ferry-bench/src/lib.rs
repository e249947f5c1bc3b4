//! Ferry benchmark: Ferry beside OpenSSH's sshd and nginx on one machine,
//! driven by the same clients (OpenSSH `sftp`, curl), reported as ratios.
//!
//! [`run`] starts every server as a foreground child on loopback, measures
//! each workload (one warm-up, then the median of the runs), checks every
//! transferred file by SHA-256 and writes [`report`]s into `--out`.

mod bench;
mod clients;
pub mod model;
mod procs;
pub mod report;
mod targets;

pub use bench::{run, Options, CIPHERS};
