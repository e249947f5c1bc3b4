//! The defender: scores failed logins per client address and bans an
//! address whose score within a window reaches the threshold. A failed
//! login of an account that exists scores `failed_login_score`, a probe
//! of a name that does not `unknown_user_score`. The ban is a replicated
//! [`Command::BanAddress`], so every server of the cluster refuses the
//! address (`auth::check_policy`) until it ends or an operator lifts it.
//! Scores are this server's own, in memory and bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_core::{Ban, Command, UnixMillis};
use serde::Deserialize;

use crate::ServerCtx;

/// The most addresses scored at once; beyond it the stalest is dropped.
const MAX_SCORED: usize = 65_536;

/// `[defender]` of the server's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderConfig {
    /// Score and ban at all.
    #[serde(default)]
    pub enabled: bool,
    /// The score at which an address is banned.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Failures older than this no longer count.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// How long a ban lasts.
    #[serde(default = "default_ban_secs")]
    pub ban_secs: u64,
    /// The score of a failed login of an existing account.
    #[serde(default = "one")]
    pub failed_login_score: u32,
    /// The score of a login as a name that is no account (a probe).
    #[serde(default = "two")]
    pub unknown_user_score: u32,
    /// The score of a client that broke the protocol before any credential
    /// (an SSH handshake that failed, no login within the grace time), as
    /// its edge reports it.
    #[serde(default = "one")]
    pub protocol_error_score: u32,
    /// Addresses never banned (CIDRs): monitoring, the office.
    #[serde(default)]
    pub safe_networks: Vec<String>,
}

fn default_threshold() -> u32 {
    15
}
fn default_window_secs() -> u64 {
    600
}
fn default_ban_secs() -> u64 {
    1800
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

impl Default for DefenderConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            threshold: default_threshold(),
            window_secs: default_window_secs(),
            ban_secs: default_ban_secs(),
            failed_login_score: 1,
            unknown_user_score: 2,
            protocol_error_score: 1,
            safe_networks: Vec::new(),
        }
    }
}

/// The scores of client addresses on this server.
#[derive(Debug)]
pub struct Defender {
    config: DefenderConfig,
    safe: Vec<ipnet::IpNet>,
    scores: Mutex<HashMap<IpAddr, Vec<(Instant, u32)>>>,
}

impl Defender {
    /// A defender with `config`; a safe network that does not parse is an
    /// error.
    pub fn new(config: DefenderConfig) -> Result<Self, ferry_core::FerryError> {
        let safe = ferry_core::network::parse_networks(&config.safe_networks.join(","))?;
        Ok(Self {
            config,
            safe,
            scores: Mutex::default(),
        })
    }

    /// Whether failed logins are scored at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Adds a failed login from `ip` to its score. Returns the ban to
    /// apply when the score reached the threshold (and forgets the score).
    pub fn failed(&self, ip: IpAddr, unknown_user: bool, now: UnixMillis) -> Option<Ban> {
        let score = if unknown_user {
            self.config.unknown_user_score
        } else {
            self.config.failed_login_score
        };
        self.add(ip, score, now)
    }

    /// Adds a protocol error of `ip` to its score; as [`Defender::failed`].
    pub fn protocol_error(&self, ip: IpAddr, now: UnixMillis) -> Option<Ban> {
        self.add(ip, self.config.protocol_error_score, now)
    }

    fn add(&self, ip: IpAddr, score: u32, now: UnixMillis) -> Option<Ban> {
        if !self.enabled() || score == 0 || ferry_core::network::contains(&self.safe, ip) {
            return None;
        }
        let window = Duration::from_secs(self.config.window_secs);
        let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        if scores.len() >= MAX_SCORED && !scores.contains_key(&ip) {
            let stalest = scores
                .iter()
                .min_by_key(|(_, hits)| hits.last().map(|(at, _)| *at))
                .map(|(ip, _)| *ip);
            if let Some(stalest) = stalest {
                scores.remove(&stalest);
            }
        }
        let hits = scores.entry(ip).or_default();
        hits.retain(|(at, _)| at.elapsed() < window);
        hits.push((Instant::now(), score));
        let total: u32 = hits.iter().map(|(_, s)| *s).sum();
        if total < self.config.threshold {
            return None;
        }
        scores.remove(&ip);
        let ban_ms = i64::try_from(self.config.ban_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Some(Ban {
            address: ip.to_string(),
            until: now.saturating_add(ban_ms),
            banned_at: now,
            reason: format!(
                "defender: score {total} within {} s (threshold {})",
                self.config.window_secs, self.config.threshold
            ),
            by: String::new(),
        })
    }
}

/// Scores a failed login from `client_addr` (as a name that is no account
/// when `unknown_user`), and bans the address through the cluster when it
/// reached the threshold. Blocks (a replicated write).
pub(crate) fn failed_login(
    ctx: &ServerCtx,
    client_addr: &str,
    unknown_user: bool,
    now: UnixMillis,
) {
    let Some(ip) = ferry_core::network::client_ip(client_addr) else {
        return;
    };
    apply_ban(ctx, ip, ctx.defender.failed(ip, unknown_user, now));
}

/// Scores a protocol error of `client_addr` (an edge's report), and bans
/// as [`failed_login`] does. Blocks.
pub(crate) fn protocol_error(ctx: &ServerCtx, client_addr: &str, now: UnixMillis) {
    let Some(ip) = ferry_core::network::client_ip(client_addr) else {
        return;
    };
    apply_ban(ctx, ip, ctx.defender.protocol_error(ip, now));
}

fn apply_ban(ctx: &ServerCtx, ip: IpAddr, ban: Option<Ban>) {
    let Some(mut ban) = ban else {
        return;
    };
    ban.by = ctx.node_id.clone();
    ctx.metrics.banned();
    tracing::warn!(address = %ban.address, until = ban.until, reason = %ban.reason, "defender bans a client address");
    if let Err(e) = ctx.apply(&Command::BanAddress(ban)) {
        tracing::error!(address = %ip, error = %e, "the defender could not record its ban");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defender(threshold: u32) -> Defender {
        Defender::new(DefenderConfig {
            enabled: true,
            threshold,
            safe_networks: vec!["10.9.0.0/16".into()],
            ..DefenderConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn protocol_errors_score_their_own_weight_and_zero_turns_them_off() {
        let d = defender(3);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(d.protocol_error(ip, 1).is_none());
        assert!(d.failed(ip, false, 1).is_none());
        assert!(d.protocol_error(ip, 1).is_some(), "1 + 1 + 1 bans");
        let off = Defender::new(DefenderConfig {
            enabled: true,
            threshold: 1,
            protocol_error_score: 0,
            ..DefenderConfig::default()
        })
        .unwrap();
        assert!(off.protocol_error(ip, 1).is_none());
        let safe: IpAddr = "10.9.1.1".parse().unwrap();
        assert!((0..10).all(|_| d.protocol_error(safe, 1).is_none()));
    }

    #[test]
    fn an_address_is_banned_at_the_threshold_and_probes_count_double() {
        let d = defender(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(d.failed(ip, false, 1_000).is_none());
        assert!(d.failed(other, false, 1_000).is_none());
        assert!(d.failed(ip, true, 1_000).is_none());
        let ban = d.failed(ip, true, 2_000).expect("score 5 bans");
        assert_eq!(ban.address, "192.0.2.1");
        assert_eq!(ban.until, 2_000 + 1_800_000);
        // The score starts again after a ban; the other address kept its own.
        assert!(d.failed(ip, false, 3_000).is_none());
        assert!(d.failed(other, true, 3_000).is_none());
    }

    #[test]
    fn safe_networks_and_a_disabled_defender_never_ban() {
        let d = defender(1);
        assert!(d.failed("10.9.3.4".parse().unwrap(), true, 0).is_none());
        assert!(d.failed("10.8.3.4".parse().unwrap(), true, 0).is_some());
        let off = Defender::new(DefenderConfig {
            threshold: 1,
            ..DefenderConfig::default()
        })
        .unwrap();
        assert!(off.failed("192.0.2.1".parse().unwrap(), true, 0).is_none());
    }
}
