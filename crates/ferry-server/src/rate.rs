//! Per-account bandwidth limits, up and down: a token bucket per account
//! and direction on this server, shared by all the account's transfers
//! here. A file's actor takes from its bucket what each batch of reads or
//! writes moved and answers only when the bucket allows, so the client's
//! window of requests in flight sets the pace. Each server of a cluster
//! keeps its own buckets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most a bucket holds: this long at its rate (so a pause is not
/// followed by a burst).
const BURST: Duration = Duration::from_millis(100);

/// A bucket shared by the transfers it paces.
type Shared = Arc<Mutex<Bucket>>;

/// The buckets of this server, by account and direction (`true`: up).
#[derive(Debug, Default)]
pub struct Rates(Mutex<HashMap<(String, bool), Shared>>);

/// Bytes allowed at a rate, refilled as time passes.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    available: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            available: 0.0,
            at: Instant::now(),
        }
    }

    /// Takes `bytes`; returns how long to wait before they may pass.
    fn take(&mut self, bytes: u64) -> Duration {
        let rate = self.rate.max(1) as f64;
        let now = Instant::now();
        let burst = rate * BURST.as_secs_f64();
        self.available =
            (self.available + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        self.available -= bytes as f64;
        if self.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.available / rate)
        }
    }
}

/// Paces one open file's transfer.
#[derive(Debug, Clone)]
pub struct Pacer(Arc<Mutex<Bucket>>);

impl Pacer {
    /// Waits until `bytes` may have passed.
    pub async fn take(&self, bytes: u64) {
        let wait = self.0.lock().unwrap_or_else(|e| e.into_inner()).take(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Rates {
    /// The pacer of `account`'s uploads (`upload`) or downloads at `rate`
    /// bytes a second.
    pub fn pacer(&self, account: &str, upload: bool, rate: u64) -> Pacer {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= 100_000 {
            all.retain(|_, b| Arc::strong_count(b) > 1);
        }
        let bucket = all
            .entry((account.to_owned(), upload))
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(rate))))
            .clone();
        bucket.lock().unwrap_or_else(|e| e.into_inner()).rate = rate;
        Pacer(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_rate_through() {
        let mut b = Bucket::new(1000);
        // Empty at first: 500 bytes wait half a second.
        let wait = b.take(500);
        assert!((490..=510).contains(&wait.as_millis()), "{wait:?}");
        // What is owed accumulates.
        let wait = b.take(500);
        assert!((990..=1010).contains(&wait.as_millis()), "{wait:?}");
    }
}
