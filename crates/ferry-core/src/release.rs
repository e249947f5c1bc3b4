//! Releases and the cluster's feature level: what lets servers of two
//! releases run side by side during a rolling upgrade.
//!
//! Each release can run at the feature levels up to its own
//! [`FEATURE_LEVEL`]. A cluster runs at one level, kept as the replicated
//! setting [`FEATURE_LEVEL_SETTING`]; it is raised only by the operator
//! (`ferry cluster finalize-upgrade`) and only as far as every member's
//! release can run. A [`crate::Command`] carries the level of the release
//! that added it ([`crate::Command::feature_level`]) and is proposed only
//! when the cluster runs at that level or above, so a member of the
//! release before never meets a log entry it cannot read.
//!
//! The rules for a change that crosses a release (`docs/upgrade.md`):
//! * a new `Command` variant is added at the end, with the new level;
//! * a field added to a replicated value has a serde default, so the
//!   release before reads and writes it without knowing it;
//! * a schema migration expands first (a new column with a default, a new
//!   table) and contracts (drops, renames) only in a later release, once
//!   no member of a release that uses the old shape can be left;
//! * an internal-protocol request is added at the end of its enum and sent
//!   only to a peer whose level knows it.

/// This release's version.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The highest feature level this release can run at.
pub const FEATURE_LEVEL: u32 = 2;

/// The level of a cluster that never recorded one: what release 0.1.0,
/// which had no feature level, runs at.
pub const FIRST_FEATURE_LEVEL: u32 = 1;

/// The replicated setting that holds the cluster's feature level.
pub const FEATURE_LEVEL_SETTING: &str = "cluster.feature_level";

/// The highest level a server reporting `software` (`"ferry X.Y.Z"`, as in
/// `cluster status`) can run at; [`FIRST_FEATURE_LEVEL`] for 0.1.x and for
/// anything unreadable.
pub fn level_of_software(software: &str) -> u32 {
    let version = software.strip_prefix("ferry ").unwrap_or(software);
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(0), Some(0 | 1)) | (None, _) | (_, None) => FIRST_FEATURE_LEVEL,
        // 0.2 introduced level 2. From 0.2 on a server reports its own
        // level in its status ([`level_of_member`]); this is the fallback.
        (Some(_), Some(_)) => 2,
    }
}

/// The highest level a member can run at: the level it reported, or the
/// one its release string implies (0.1 reported none).
pub fn level_of_member(reported: Option<u32>, software: &str) -> u32 {
    reported.unwrap_or_else(|| level_of_software(software))
}

/// The cluster's level as stored: `None` (never set) is the first level.
pub fn parse_level(stored: Option<&str>) -> u32 {
    stored
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(FIRST_FEATURE_LEVEL)
}

/// Whether a command of `needed` level may be proposed in a cluster at
/// `cluster` level; the error says what the operator must do.
pub fn check_level(what: &str, needed: u32, cluster: u32) -> Result<(), crate::FerryError> {
    if needed <= cluster {
        return Ok(());
    }
    Err(crate::FerryError::new(
        crate::ErrorKind::Conflict,
        format!(
            "{what} needs feature level {needed}, and the cluster runs at level {cluster}: \
             upgrade every member, then run `ferry cluster finalize-upgrade`"
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_levels() {
        assert_eq!(level_of_software("ferry 0.1.0"), 1);
        assert_eq!(level_of_software("ferry 0.1.7"), 1);
        assert_eq!(level_of_software("ferry 0.2.0"), 2);
        assert_eq!(level_of_software("ferry 0.2.3"), 2);
        assert_eq!(level_of_software("nonsense"), 1);
        assert_eq!(
            level_of_software(&format!("ferry {RELEASE}")),
            FEATURE_LEVEL
        );
        assert_eq!(level_of_member(None, "ferry 0.1.0"), 1);
        assert_eq!(level_of_member(Some(3), "ferry 0.3.0"), 3);
    }

    #[test]
    fn the_stored_level_defaults_to_the_first() {
        assert_eq!(parse_level(None), 1);
        assert_eq!(parse_level(Some("2")), 2);
        assert_eq!(parse_level(Some("junk")), 1);
    }

    #[test]
    fn a_command_above_the_cluster_level_is_refused() {
        assert!(check_level("x", 1, 1).is_ok());
        assert!(check_level("x", 1, 2).is_ok());
        let e = check_level("take_leadership", 2, 1).unwrap_err();
        assert!(e.to_string().contains("finalize-upgrade"), "{e}");
    }
}
