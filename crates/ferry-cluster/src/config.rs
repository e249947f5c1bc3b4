//! The `[cluster]` section of a server's configuration.

use serde::Deserialize;

/// How this server works with others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One server alone: always active.
    #[default]
    Single,
    /// One active server and standbys that serve nothing; configuration is
    /// copied on demand with `ferry sync`.
    ActivePassive,
    /// Every server serves; shared state is replicated through Raft, and
    /// the leader is the primary.
    ActiveActive,
}

/// Another server (or witness) of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its node id (its `node_id` setting).
    pub id: String,
    /// Its internal listener, `host:port`; its certificate must name `host`.
    pub address: String,
    /// A witness votes in promotions and serves nothing.
    #[serde(default)]
    pub witness: bool,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `single` (default) or `active-passive`.
    #[serde(default)]
    pub mode: Mode,
    /// Preference for becoming active: when the active server is gone, the
    /// standby with the highest priority asks first.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// The other servers and witnesses.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Heartbeats are sent this often: by the active server (default
    /// 500 ms), or by the Raft leader (default 150 ms). See
    /// [`ClusterConfig::heartbeat_ms`].
    #[serde(default, rename = "heartbeat_ms")]
    pub heartbeat_ms_setting: Option<u64>,
    /// A standby asks to become active when it has heard no heartbeat for
    /// this long; the active server stops serving when it has not heard
    /// from a majority for half of it.
    #[serde(default = "default_failover_after_ms")]
    pub failover_after_ms: u64,
    /// Promote automatically (needs a witness or a third server). When
    /// false, only `ferry cluster promote` changes the active server.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
    /// Where the sync manifests are, relative to the config directory.
    #[serde(default = "default_sync_dir")]
    pub sync_dir: String,
    /// Active/active: the address other servers reach this one at
    /// (`host:port` of its internal listener, as its certificate names it).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Active/active: a follower that hears no leader for this long (up to
    /// 1.5 times as long, at random, after a lease of 1.5 times) starts an
    /// election.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Active/active: a snapshot of the store is taken every this many
    /// log entries, and older entries are dropped.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Active/active: alert when a member is this many log entries behind
    /// the leader.
    #[serde(default = "default_lag_alert_entries")]
    pub lag_alert_entries: u64,
    /// Active/active: a follower that has not heard its leader for this
    /// long, or has not had applied the leader's commit index (as last
    /// heard) within this long (it is behind, or catching up from a
    /// snapshot), stops taking logins and writes (`/readyz` 503; edges
    /// skip it) until it has caught up. Default: `election_timeout_ms`
    /// plus two heartbeats.
    #[serde(default, rename = "stale_after_ms")]
    pub stale_after_ms_setting: Option<u64>,
    /// Alerts (role changes, quorum lost or regained, failed peers, lag)
    /// are also POSTed as JSON to this URL (`http://` or `https://`).
    #[serde(default)]
    pub alert_webhook: Option<String>,
    /// CA certificate (PEM) to verify an `https://` webhook with.
    #[serde(default)]
    pub alert_webhook_ca: Option<std::path::PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Single,
            priority: default_priority(),
            peers: Vec::new(),
            heartbeat_ms_setting: None,
            failover_after_ms: default_failover_after_ms(),
            auto_promote: true,
            sync_dir: default_sync_dir(),
            advertise: None,
            election_timeout_ms: default_election_timeout_ms(),
            snapshot_every: default_snapshot_every(),
            lag_alert_entries: default_lag_alert_entries(),
            stale_after_ms_setting: None,
            alert_webhook: None,
            alert_webhook_ca: None,
        }
    }
}

fn default_priority() -> u32 {
    100
}
fn default_failover_after_ms() -> u64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_election_timeout_ms() -> u64 {
    600
}
fn default_snapshot_every() -> u64 {
    5_000
}
fn default_lag_alert_entries() -> u64 {
    1_000
}
fn default_sync_dir() -> String {
    "sync".into()
}

impl ClusterConfig {
    /// The upper end of the random election timeout: a sixth above
    /// `election_timeout_ms` (700 ms by default). openraft makes a follower
    /// wait this (its leader lease) plus its random timeout before it
    /// stands, and twice this more after it lost an election to a longer
    /// log: 1.3–1.4 s of silence, at most 2.8 s, by default.
    pub fn election_timeout_max_ms(&self) -> u64 {
        self.election_timeout_ms * 7 / 6
    }

    /// How long a follower may go without hearing its leader and still
    /// serve: as set, or the election timeout plus two heartbeats.
    pub fn stale_after_ms(&self) -> u64 {
        self.stale_after_ms_setting
            .unwrap_or(self.election_timeout_ms + 2 * self.heartbeat_ms())
    }

    /// The heartbeat interval in ms: as set, or 150 in active/active and
    /// 500 in active/passive mode.
    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_ms_setting.unwrap_or(match self.mode {
            Mode::ActiveActive => 150,
            _ => 500,
        })
    }

    /// Voting members: this server and every peer.
    pub fn voters(&self) -> usize {
        self.peers.len() + 1
    }

    /// Votes needed to become active: a strict majority of the voters.
    pub fn majority(&self) -> usize {
        self.voters() / 2 + 1
    }

    /// Checks what serde cannot; `node_id` is this server's id.
    pub fn validate(&self, node_id: &str) -> Result<(), crate::ClusterError> {
        self.check(node_id).map_err(crate::ClusterError::Config)
    }

    fn check(&self, node_id: &str) -> Result<(), String> {
        if let Some(url) = &self.alert_webhook {
            if url.starts_with("https://") {
                if self.alert_webhook_ca.is_none() {
                    return Err("[cluster] an https:// alert_webhook needs alert_webhook_ca (the CA that signed its certificate)".into());
                }
            } else if !url.starts_with("http://") {
                return Err(format!(
                    "[cluster] alert_webhook {url:?} must start with http:// or https://"
                ));
            }
        }
        if self.mode == Mode::Single {
            if !self.peers.is_empty() {
                return Err("[cluster] peers are listed but mode is \"single\"; set mode = \"active-passive\"".into());
            }
            return Ok(());
        }
        if self.mode == Mode::ActiveActive {
            let advertise = self.advertise.as_deref().unwrap_or("");
            if advertise
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err("[cluster] mode \"active-active\" needs `advertise = \"host:port\"`: the internal address other servers reach this one at".into());
            }
            if self.heartbeat_ms() == 0 || self.election_timeout_ms < 3 * self.heartbeat_ms() {
                return Err(format!(
                    "[cluster] election_timeout_ms ({}) must be at least 3 × heartbeat_ms ({})",
                    self.election_timeout_ms,
                    self.heartbeat_ms()
                ));
            }
            if self.snapshot_every == 0 {
                return Err("[cluster] snapshot_every must be above 0".into());
            }
        } else if self.peers.is_empty() {
            return Err(
                "[cluster] mode \"active-passive\" needs at least one entry in peers".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.peers {
            if peer.id == node_id {
                return Err(format!(
                    "[cluster] peers: {:?} is this server's own node_id",
                    peer.id
                ));
            }
            if !seen.insert(peer.id.as_str()) {
                return Err(format!("[cluster] peers: {:?} is listed twice", peer.id));
            }
            if peer
                .address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "[cluster] peers: address {:?} of {:?} is not host:port",
                    peer.address, peer.id
                ));
            }
        }
        if self.mode == Mode::ActiveActive {
            return Ok(());
        }
        if self.heartbeat_ms() == 0 || self.failover_after_ms < 4 * self.heartbeat_ms() {
            return Err(format!(
                "[cluster] failover_after_ms ({}) must be at least 4 × heartbeat_ms ({}), and heartbeat_ms above 0",
                self.failover_after_ms, self.heartbeat_ms()
            ));
        }
        if self.auto_promote && self.voters() < 3 {
            return Err("[cluster] auto_promote needs a witness or a third server: two servers alone cannot tell a dead peer from a cut link. Add a witness to peers, or set auto_promote = false and promote with `ferry cluster promote`".into());
        }
        if self.sync_dir.starts_with('/') || self.sync_dir.split('/').any(|c| c == "..") {
            return Err(format!(
                "[cluster] sync_dir {:?} must be a path inside the config directory",
                self.sync_dir
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClusterConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_single() {
        let c = ClusterConfig::default();
        assert_eq!(c.mode, Mode::Single);
        assert!(c.validate("a").is_ok());
    }

    #[test]
    fn two_servers_cannot_promote_automatically() {
        let c =
            parse("mode = \"active-passive\"\n[[peers]]\nid = \"b\"\naddress = \"127.0.0.1:1\"\n");
        assert!(c.validate("a").unwrap_err().to_string().contains("witness"));
        let c = parse("mode = \"active-passive\"\nauto_promote = false\n[[peers]]\nid = \"b\"\naddress = \"127.0.0.1:1\"\n");
        assert!(c.validate("a").is_ok());
        assert_eq!(c.majority(), 2);
    }

    #[test]
    fn rejects_bad_peers() {
        let c = parse("mode = \"active-passive\"\n[[peers]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[peers]]\nid = \"w\"\naddress = \"x:1\"\nwitness = true\n");
        assert!(c
            .validate("a")
            .unwrap_err()
            .to_string()
            .contains("own node_id"));
        let c = parse("mode = \"active-passive\"\n[[peers]]\nid = \"b\"\naddress = \"nowhere\"\n[[peers]]\nid = \"w\"\naddress = \"x:1\"\n");
        assert!(c
            .validate("a")
            .unwrap_err()
            .to_string()
            .contains("host:port"));
        let c = parse("mode = \"active-passive\"\n[[peers]]\nid = \"b\"\naddress = \"h:1\"\n[[peers]]\nid = \"b\"\naddress = \"x:1\"\n");
        assert!(c.validate("a").unwrap_err().to_string().contains("twice"));
    }
}
