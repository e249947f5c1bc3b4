//! Ferry's worker runner: every long-running duty of a process (queue
//! workers, the scheduler, folder monitors, upload expiry, the pending-row
//! flush, cluster loops) runs as a [`Worker`] under one [`Runner`].
//!
//! The runner gives each worker a name and a status it keeps current
//! ([`WorkerStatus`], shown by `ferry cluster status`), one cancellation
//! signal for all of them, and a task tracker, so a shutdown can ask every
//! worker to stop and wait, with a bound, until they have.
//!
//! A worker's loop looks like this:
//!
//! ```ignore
//! runner.spawn("upload-expiry", |w| async move {
//!     while w.sleep(every).await {
//!         w.busy("sweeping");
//!         sweep().await;
//!         w.done_one();
//!         w.idle();
//!     }
//! });
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use ferry_core::worker::{WorkerState, WorkerStatus};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs the workers of one process; cheap to clone.
#[derive(Clone, Default)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stop: CancellationToken,
    tracker: TaskTracker,
    /// This runner's workers.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Every worker of the process, this runner's and its stages' (shown
    /// together by [`Runner::statuses`]).
    all: Arc<Mutex<Vec<Arc<Slot>>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("workers", &lock(&self.inner.slots).len())
            .field("stopping", &self.inner.stop.is_cancelled())
            .finish()
    }
}

struct Slot {
    name: String,
    now: Mutex<Now>,
    done: AtomicU64,
}

struct Now {
    state: WorkerState,
    detail: Option<String>,
    since: Instant,
    last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    fn set(&self, state: WorkerState, detail: Option<String>) {
        let mut now = lock(&self.now);
        // A worker that was asked to stop stays "stopping" until it ends.
        if now.state == WorkerState::Stopping
            && !matches!(state, WorkerState::Stopped | WorkerState::Failed)
        {
            return;
        }
        if now.state != state {
            now.since = Instant::now();
        }
        now.state = state;
        now.detail = detail;
    }

    fn status(&self) -> WorkerStatus {
        let now = lock(&self.now);
        WorkerStatus {
            name: self.name.clone(),
            state: now.state,
            detail: now.detail.clone(),
            for_secs: now.since.elapsed().as_secs(),
            done: self.done.load(Ordering::Relaxed),
            last_error: now.last_error.clone(),
        }
    }
}

impl Runner {
    /// A runner with no workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `work` as the worker `name`. It is told to stop through the
    /// [`Worker`] it is given; when it returns its state is `stopped`, and
    /// if it panics, `failed` (the process goes on).
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, work: F)
    where
        F: FnOnce(Worker) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slot = Arc::new(Slot {
            name: name.into(),
            now: Mutex::new(Now {
                state: WorkerState::Starting,
                detail: None,
                since: Instant::now(),
                last_error: None,
            }),
            done: AtomicU64::new(0),
        });
        lock(&self.inner.slots).push(slot.clone());
        lock(&self.inner.all).push(slot.clone());
        let worker = Worker {
            slot: slot.clone(),
            stop: self.inner.stop.clone(),
        };
        let work = work(worker);
        self.inner.tracker.spawn(async move {
            match AssertUnwindSafe(work).catch_unwind().await {
                Ok(()) => slot.set(WorkerState::Stopped, None),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(worker = %slot.name, panic = %what, "worker failed");
                    lock(&slot.now).last_error = Some(what.clone());
                    slot.set(WorkerState::Failed, Some(what));
                }
            }
        });
    }

    /// A runner for duties that must stop later than this one's (a
    /// server's cluster loops outlive its queue workers in a shutdown). Its
    /// workers are listed with this runner's, and are told to stop by
    /// either runner's [`Runner::stop`].
    pub fn stage(&self) -> Runner {
        Runner {
            inner: Arc::new(Inner {
                stop: self.inner.stop.child_token(),
                tracker: TaskTracker::new(),
                slots: Mutex::default(),
                all: self.inner.all.clone(),
            }),
        }
    }

    /// The status of every worker of the process (this runner's, its
    /// stages' and its parent's), in the order they were started.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        lock(&self.inner.all).iter().map(|s| s.status()).collect()
    }

    /// The signal every worker watches; also for tasks that are not
    /// workers but must end with them.
    pub fn stop_signal(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Whether [`Runner::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Tells this runner's workers (and its stages') to stop. Returns at
    /// once; see [`Runner::wait`].
    pub fn stop(&self) {
        for slot in lock(&self.inner.slots).iter() {
            let mut now = lock(&slot.now);
            if !matches!(now.state, WorkerState::Stopped | WorkerState::Failed) {
                now.state = WorkerState::Stopping;
                now.since = Instant::now();
            }
        }
        self.inner.stop.cancel();
        self.inner.tracker.close();
    }

    /// Waits until this runner's workers have ended, for at most `within`;
    /// the names of the ones still running then are the error.
    pub async fn wait(&self, within: Duration) -> Result<(), Vec<String>> {
        self.inner.tracker.close();
        if tokio::time::timeout(within, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return Ok(());
        }
        Err(lock(&self.inner.slots)
            .iter()
            .map(|s| s.status())
            .filter(|s| !matches!(s.state, WorkerState::Stopped | WorkerState::Failed))
            .map(|s| s.name)
            .collect())
    }
}

/// What a running worker holds: its status to keep, and the stop signal.
#[derive(Clone)]
pub struct Worker {
    slot: Arc<Slot>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.slot.name)
            .finish()
    }
}

impl Worker {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// Waiting for work.
    pub fn idle(&self) {
        self.slot.set(WorkerState::Idle, None);
    }

    /// Working on `what`.
    pub fn busy(&self, what: impl Into<String>) {
        self.slot.set(WorkerState::Busy, Some(what.into()));
    }

    /// Not its turn on this server, because `why`.
    pub fn standby(&self, why: impl Into<String>) {
        self.slot.set(WorkerState::Standby, Some(why.into()));
    }

    /// One round of work done.
    pub fn done_one(&self) {
        self.slot.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps `error` as the last error (the worker goes on).
    pub fn error(&self, error: impl std::fmt::Display) {
        lock(&self.slot.now).last_error = Some(error.to_string());
    }

    /// Whether the worker was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when the worker is told to stop.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    /// Sleeps for `period`; false (at once) when told to stop meanwhile.
    pub async fn sleep(&self, period: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(period) => true,
        }
    }

    /// Runs `work` unless told to stop first: `None` when stopped.
    pub async fn until_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.stop.cancelled() => None,
            out = work => Some(out),
        }
    }

    /// The stop signal, for tasks this worker starts.
    pub fn stop_signal(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// The connections a listener serves, and the signal to stop accepting
/// new ones: what a listener needs to take part in a drain. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    stop: CancellationToken,
    cut: CancellationToken,
    tracker: TaskTracker,
}

impl Connections {
    /// A set that accepts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves one accepted connection as a tracked task.
    pub fn serve<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(connection);
    }

    /// Resolves when the listener must stop accepting.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Whether the listener must stop accepting.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.tracker.len()
    }

    /// Tells the listener to stop accepting; served connections go on.
    pub fn stop_accepting(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Waits, for at most `within`, until every served connection ended;
    /// true if they did.
    pub async fn drain(&self, within: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Resolves when the served connections must close now.
    pub async fn cutting(&self) {
        self.cut.cancelled().await
    }

    /// Tells every served connection to close now, and waits for at most
    /// `within` until they did; true if they did.
    pub async fn cut(&self, within: Duration) -> bool {
        self.stop_accepting();
        self.cut.cancel();
        self.drain(within).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_report_their_state_and_stop_together() {
        let runner = Runner::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let tx = tx.clone();
            runner.spawn(format!("w{i}"), |w| async move {
                w.busy("counting");
                w.done_one();
                w.idle();
                let _ = tx.send(());
                while w.sleep(Duration::from_secs(3600)).await {}
            });
        }
        for _ in 0..3 {
            rx.recv().await.unwrap();
        }
        let statuses = runner.statuses();
        assert_eq!(statuses.len(), 3);
        assert!(statuses
            .iter()
            .all(|s| s.state == WorkerState::Idle && s.done == 1));
        runner.stop();
        runner.wait(Duration::from_secs(5)).await.unwrap();
        assert!(runner
            .statuses()
            .iter()
            .all(|s| s.state == WorkerState::Stopped));
    }

    #[tokio::test]
    async fn a_worker_that_ignores_the_signal_is_named_and_a_panic_is_failed() {
        let runner = Runner::new();
        runner.spawn("stubborn", |_w| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        runner.spawn("broken", |_w| async move {
            panic!("boom");
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        runner.stop();
        let left = runner.wait(Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(left, vec!["stubborn".to_string()]);
        let broken = runner
            .statuses()
            .into_iter()
            .find(|s| s.name == "broken")
            .unwrap();
        assert_eq!(broken.state, WorkerState::Failed);
        assert_eq!(broken.last_error.as_deref(), Some("boom"));
    }

    #[tokio::test]
    async fn a_stage_outlives_its_parent_until_stopped_itself() {
        let runner = Runner::new();
        let later = runner.stage();
        for (r, name) in [(&runner, "first"), (&later, "second")] {
            r.spawn(name, |w| async move {
                while w.sleep(Duration::from_secs(3600)).await {}
            });
        }
        assert_eq!(runner.statuses().len(), 2);
        assert_eq!(later.statuses().len(), 2);
        later.stop();
        later.wait(Duration::from_secs(5)).await.unwrap();
        let state = |name: &str| {
            runner
                .statuses()
                .into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .state
        };
        assert_eq!(state("second"), WorkerState::Stopped);
        assert_ne!(state("first"), WorkerState::Stopped);
        runner.stop();
        runner.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(state("first"), WorkerState::Stopped);
    }
}
