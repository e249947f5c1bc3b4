//! Per-account caps on concurrent sessions: the sessions each account has
//! open on this server (SSH connections and HTTPS logins alike), and a
//! [`SessionSlot`] per session that gives its place back when the session
//! ends. Each server of a cluster counts its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_core::{ErrorKind, FerryError};

/// The sessions open on this server, by account.
#[derive(Debug, Default)]
pub struct SessionCounts(Arc<Mutex<HashMap<String, u64>>>);

/// One open session's place in its account's count; dropped, it frees it.
#[derive(Debug)]
pub struct SessionSlot {
    counts: Arc<Mutex<HashMap<String, u64>>>,
    account: String,
}

impl SessionCounts {
    /// Takes a place for a new session of `account`, or refuses it when
    /// the account has `cap` sessions open already.
    pub fn admit(&self, account: &str, cap: Option<u64>) -> Result<SessionSlot, FerryError> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let open = counts.entry(account.to_owned()).or_insert(0);
        if let Some(cap) = cap {
            if *open >= cap {
                return Err(FerryError::new(
                    ErrorKind::Busy,
                    format!("account {account} has {open} sessions open, its most"),
                ));
            }
        }
        *open += 1;
        Ok(SessionSlot {
            counts: self.0.clone(),
            account: account.to_owned(),
        })
    }

    /// How many sessions `account` has open here.
    pub fn open(&self, account: &str) -> u64 {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(account).copied().unwrap_or(0)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = counts.get_mut(&self.account) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_refuses_the_session_past_it_until_one_ends() {
        let counts = SessionCounts::default();
        let a = counts.admit("alice", Some(2)).unwrap();
        let _b = counts.admit("alice", Some(2)).unwrap();
        let refused = counts.admit("alice", Some(2)).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Busy);
        // Others are not counted against alice; no cap, no limit.
        let _c = counts.admit("bob", Some(1)).unwrap();
        let _d: Vec<_> = (0..10)
            .map(|_| counts.admit("carol", None).unwrap())
            .collect();
        drop(a);
        assert_eq!(counts.open("alice"), 1);
        let _e = counts.admit("alice", Some(2)).unwrap();
        assert_eq!(counts.open("carol"), 10);
    }
}
