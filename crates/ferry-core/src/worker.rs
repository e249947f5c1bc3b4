//! What a long-running duty of a process (a queue worker, the scheduler, a
//! cluster loop) says about itself: the data behind `ferry cluster status`.
//! The runner that keeps these lives in `ferry-worker`.

use serde::{Deserialize, Serialize};

/// The state of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerState {
    /// Started, not yet at its loop.
    Starting,
    /// Waiting for work.
    Idle,
    /// Doing work (the detail says what).
    Busy,
    /// Not its turn on this server (a primary-only duty on a secondary,
    /// queue workers on a standby).
    Standby,
    /// Asked to stop; finishing what it was doing.
    Stopping,
    /// Ended.
    Stopped,
    /// Ended by a panic; the detail says where.
    Failed,
}

impl WorkerState {
    /// The state's name as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Standby => "standby",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
        }
    }
}

/// One worker as the status shows it. It travels in the internal
/// protocol (postcard): every field is always written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its name, unique within the process (`queue-worker-0`, `scheduler`).
    pub name: String,
    /// What it does now.
    pub state: WorkerState,
    /// What it works on or waits for, if it said.
    pub detail: Option<String>,
    /// Seconds in this state.
    pub for_secs: u64,
    /// Rounds of work done (events run, slots fired, files ingested…).
    pub done: u64,
    /// The last error it reported, if any.
    pub last_error: Option<String>,
}
