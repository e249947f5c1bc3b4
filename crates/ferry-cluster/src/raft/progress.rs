//! How far the store has durably applied the log, shared by the state
//! machine (which moves it) and the log store (whose purge waits for it).
//!
//! The log (`raft.db`) and the store (`ferry.db`) are two databases, and
//! openraft orders nothing between them: on a follower that installs a
//! snapshot from the leader, openraft 0.9 hands the state machine the
//! snapshot and, in the same step, tells the log store to purge the log up
//! to the snapshot's last entry, without waiting for the install to finish
//! (`Command::PurgeLog` carries no condition, and the state machine runs
//! in a task of its own). Restoring a large database takes seconds; a
//! server killed meanwhile came back with its log purged past what its
//! store held, and openraft refused to start it (`purge_upto <=
//! snapshot_last_log_id`), since Ferry keeps no snapshot across a restart
//! and rebuilds it from the store.
//!
//! [`AppliedProgress`] closes that window: the log store's purge waits
//! until the store has committed (synchronous = FULL) an applied position
//! at or past the purge's end. Only an install in progress ever makes it
//! wait: every other purge openraft asks for ends inside a snapshot built
//! from the store, so at or before its applied position.

use std::sync::Arc;
use std::time::Duration;

use openraft::LogId;
use tokio::sync::watch;

use super::NodeId;

/// How often a purge that waits says so.
const WAIT_REPORT: Duration = Duration::from_secs(10);

/// What the state machine tells a waiting purge.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The position the store has durably applied.
    applied: Option<LogId<NodeId>>,
    /// Why the state machine stopped (a purge waiting for it gives up).
    failed: Option<String>,
}

/// The store's durably applied position; clones share it.
#[derive(Debug, Clone)]
pub struct AppliedProgress {
    tx: Arc<watch::Sender<Progress>>,
}

impl AppliedProgress {
    /// Starts at `applied`, the position the store holds on disk.
    pub fn new(applied: Option<LogId<NodeId>>) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Progress {
                applied,
                failed: None,
            })),
        }
    }

    /// The position the store has durably applied.
    pub fn applied(&self) -> Option<LogId<NodeId>> {
        self.tx.borrow().applied
    }

    /// Records that the store committed `applied` (called after the commit
    /// that wrote it returned, so it is on disk).
    pub fn set(&self, applied: Option<LogId<NodeId>>) {
        self.tx.send_modify(|p| p.applied = applied);
    }

    /// Records that the state machine failed: a purge waiting for it
    /// returns an error instead of waiting for ever (openraft stops on any
    /// storage error anyway).
    pub fn fail(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        self.tx.send_modify(|p| p.failed = Some(why));
    }

    /// Waits until the store has durably applied the entry at `upto`'s
    /// index (or a later one). An error when the state machine failed
    /// first.
    pub async fn wait_for(&self, upto: &LogId<NodeId>) -> Result<(), String> {
        let mut rx = self.tx.subscribe();
        let mut waited = Duration::ZERO;
        loop {
            {
                let now = rx.borrow_and_update();
                if let Some(why) = &now.failed {
                    return Err(format!(
                        "the log is not purged up to {upto}: the state machine failed ({why})"
                    ));
                }
                if now.applied.map(|a| a.index) >= Some(upto.index) {
                    return Ok(());
                }
            }
            match tokio::time::timeout(WAIT_REPORT, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // Unreachable while `self` holds the sender.
                    return Err(format!(
                        "the log is not purged up to {upto}: the state machine is gone"
                    ));
                }
                Err(_) => {
                    waited += WAIT_REPORT;
                    tracing::warn!(
                        upto = %upto,
                        applied = ?self.applied().map(|a| a.index),
                        waited_s = waited.as_secs(),
                        "the log purge waits for the store to apply (a snapshot install in progress)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, LogId};

    use super::AppliedProgress;

    fn at(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    #[tokio::test]
    async fn a_purge_waits_until_the_store_applied_its_end() {
        let progress = AppliedProgress::new(Some(at(5)));
        // Behind it or at it: no wait.
        progress.wait_for(&at(3)).await.unwrap();
        progress.wait_for(&at(5)).await.unwrap();
        let waiting = {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_for(&at(9)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a purge past the store went ahead");
        progress.set(Some(at(8)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a purge past the store went ahead");
        progress.set(Some(at(9)));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_state_machine_ends_the_wait_with_an_error() {
        let progress = AppliedProgress::new(None);
        let waiting = {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_for(&at(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress.fail("disk full");
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(got.unwrap_err().contains("disk full"));
    }
}
