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

/// New connections per address: `rate` a second on average, `burst` at
/// once (a token bucket per address).
#[derive(Debug)]
pub struct ConnectionRate {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl ConnectionRate {
    /// `rate` new connections a second per address, with bursts of `burst`
    /// (both at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Whether a new connection from `ip` is within its rate (and counts it).
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget addresses whose bucket has refilled anyway.
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Longest client-chosen text (a user name tried at login) written to logs.
pub const MAX_LOGGED_LEN: usize = 64;

/// `text` as it may go into a log line: at most [`MAX_LOGGED_LEN`]
/// characters (then `…`), control and other invisible characters escaped,
/// so that a name chosen by a client can neither forge log lines nor fill
/// the log.
pub fn loggable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_LOGGED_LEN {
            out.push('…');
            break;
        }
        if c.is_control()
            || c.is_whitespace() && c != ' '
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{feff}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Failed logins per key (an address, an account name) within a window,
/// and the attempts whose outcome is not known yet.
#[derive(Debug, Default)]
pub struct Failures {
    by_key: HashMap<String, Count>,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failed: u32,
    since: Instant,
    in_flight: u32,
}

/// Why [`Failures::begin`] did not let an attempt start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// A key has failed too often: refuse, and say when to come back.
    Blocked {
        /// Seconds until the window ends.
        retry_in_secs: u64,
    },
    /// With the attempts in flight, a key could pass its limit: try again
    /// once some of them have ended.
    Busy,
}

impl Failures {
    fn current(&mut self, key: &str, window: Duration) -> Option<&mut Count> {
        let count = self.by_key.get_mut(key)?;
        if count.since.elapsed() >= window {
            count.failed = 0;
            count.since = Instant::now();
        }
        Some(count)
    }

    /// Starts an attempt on `keys` if none has failed `max` times in the
    /// window and the attempts already in flight could not take one past
    /// it; checking and counting are one step, so parallel attempts cannot
    /// all pass before the first failure is known. End it with
    /// [`Failures::end`].
    pub fn begin(&mut self, keys: &[String], max: u32, window: Duration) -> Result<(), NotYet> {
        let mut busy = false;
        for key in keys {
            if let Some(c) = self.current(key, window) {
                if c.failed >= max {
                    let left = window.saturating_sub(c.since.elapsed());
                    return Err(NotYet::Blocked {
                        retry_in_secs: left.as_secs().max(1),
                    });
                }
                busy |= c.failed + c.in_flight >= max;
            }
        }
        if busy {
            return Err(NotYet::Busy);
        }
        if self.by_key.len() > 100_000 {
            self.by_key
                .retain(|_, c| c.in_flight > 0 || c.since.elapsed() < window);
        }
        for key in keys {
            let c = self.by_key.entry(key.clone()).or_insert(Count {
                failed: 0,
                since: Instant::now(),
                in_flight: 0,
            });
            c.in_flight += 1;
        }
        Ok(())
    }

    /// Ends an attempt started by [`Failures::begin`]; `failed` counts it.
    pub fn end(&mut self, keys: &[String], failed: bool, window: Duration) {
        for key in keys {
            if let Some(c) = self.current(key, window) {
                c.in_flight = c.in_flight.saturating_sub(1);
                if failed {
                    c.failed += 1;
                }
            }
        }
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
    fn a_burst_passes_then_the_rate_holds() {
        let rate = ConnectionRate::new(1, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| rate.allow(a)));
        assert!(!rate.allow(a));
        assert!(rate.allow(b), "another address has its own bucket");
    }

    #[test]
    fn logged_names_are_short_and_visible() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(loggable("x\u{202e}y"), "x\\u{202e}y");
        let long = loggable(&"n".repeat(10_000));
        assert_eq!(long.chars().count(), MAX_LOGGED_LEN + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn attempts_in_flight_hold_back_others_and_failures_block() {
        let mut f = Failures::default();
        let keys = ["ip:a".to_owned(), "user:u".to_owned()];
        let window = Duration::from_secs(60);
        f.begin(&keys, 2, window).unwrap();
        f.begin(&keys, 2, window).unwrap();
        // Two in flight could make two failures: a third waits.
        assert_eq!(f.begin(&keys, 2, window), Err(NotYet::Busy));
        f.end(&keys, false, window);
        f.begin(&keys, 2, window).unwrap();
        f.end(&keys, true, window);
        f.end(&keys, true, window);
        assert!(matches!(
            f.begin(&keys, 2, window),
            Err(NotYet::Blocked { .. })
        ));
        // Another address and account are not held back.
        f.begin(&["ip:b".to_owned()], 2, window).unwrap();
    }
}
