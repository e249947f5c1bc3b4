//! Caps on connections, overall and per client address, shared by every
//! listener (SFTP before login, HTTPS, the internal protocol), and the
//! count of failed logins behind the login throttles.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts open connections overall and per address, within two caps.
#[derive(Debug)]
pub struct AddressCaps {
    max: usize,
    per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address has its share already.
    PerAddress,
    /// The listener is full.
    Total,
    /// The caller's own rule (given the count so far) said no.
    Policy,
}

/// A connection's place, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<AddressCaps>,
    ip: IpAddr,
}

impl AddressCaps {
    /// At most `max` connections, `per_address` of them from one address
    /// (both at least 1).
    pub fn new(max: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            per_address: per_address.max(1),
            open: Mutex::default(),
        })
    }

    /// The overall cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for a connection from `ip`, within both caps.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        self.admit_if(ip, |_| true)
    }

    /// A place for a connection from `ip`, within both caps, if `accept`
    /// (given how many are open now) agrees; used for random early drop.
    pub fn admit_if(
        self: &Arc<Self>,
        ip: IpAddr,
        accept: impl FnOnce(usize) -> bool,
    ) -> Result<Slot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let from_ip = open.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.per_address {
            return Err(Refused::PerAddress);
        }
        if total >= self.max {
            return Err(Refused::Total);
        }
        if !accept(total) {
            return Err(Refused::Policy);
        }
        *open.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            caps: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Failed logins per key (an address, an account name) within a window.
#[derive(Debug, Default)]
pub struct Failures {
    by_key: HashMap<String, (u32, Instant)>,
}

impl Failures {
    /// Seconds until `key` may try again, if it has failed `max` times in
    /// the current window.
    pub fn blocked(&mut self, key: &str, max: u32, window: Duration) -> Option<u64> {
        let (count, first) = *self.by_key.get(key)?;
        let elapsed = first.elapsed();
        if elapsed >= window {
            self.by_key.remove(key);
            return None;
        }
        (count >= max).then(|| (window - elapsed).as_secs().max(1))
    }

    /// Counts one failure of `key`.
    pub fn record(&mut self, key: String, window: Duration) {
        if self.by_key.len() > 100_000 {
            self.by_key.retain(|_, (_, first)| first.elapsed() < window);
        }
        let entry = self.by_key.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Takes back one failure of `key`: an attempt counted before its
    /// outcome was known that succeeded, or never reached a check.
    pub fn forgive(&mut self, key: &str) {
        if let Some(entry) = self.by_key.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// If none of `keys` is blocked, counts a failure of each (taken back
    /// with [`Failures::forgive`] when the attempt succeeds); otherwise the
    /// seconds until they may try again. Checking and counting in one step
    /// keeps parallel attempts from all passing before the first fails.
    pub fn begin(&mut self, keys: &[String], max: u32, window: Duration) -> Result<(), u64> {
        if let Some(secs) = keys
            .iter()
            .filter_map(|k| self.blocked(k, max, window))
            .max()
        {
            return Err(secs);
        }
        for k in keys {
            self.record(k.clone(), window);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_places_come_back() {
        let caps = AddressCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refused::PerAddress);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(c).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(caps.admit_if(c, |n| n < 2).unwrap_err(), Refused::Policy);
        let _c1 = caps.admit(c).unwrap();
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn attempts_count_before_their_outcome() {
        let mut f = Failures::default();
        let keys = ["ip:a".to_owned(), "user:u".to_owned()];
        let window = Duration::from_secs(60);
        assert!(f.begin(&keys, 2, window).is_ok());
        assert!(f.begin(&keys, 2, window).is_ok());
        // Two in flight: a third waits, whatever their outcome will be.
        assert!(f.begin(&keys, 2, window).is_err());
        for k in &keys {
            f.forgive(k);
        }
        assert!(f.begin(&keys, 2, window).is_ok());
    }
}
