//! Retention policies: how long the transfer log, the event queue and the
//! files of a folder are kept, and when leftover partial files go.
//!
//! A policy is a replicated record ([`crate::Command::SetRetentionPolicy`]).
//! The primary's retention worker turns the history policies into
//! [`crate::Command::PurgeHistory`] commands, each carrying its cutoff time
//! and a batch limit, so every server deletes the same rows; files are not
//! replicated state and are removed (or archived) on the repository once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{FerryError, UnixMillis, VirtualPath};

/// What a retention policy removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionKind {
    /// Transfer-log rows that ended before the cutoff.
    Transfers,
    /// Done and failed events last changed before the cutoff, with their
    /// attempts.
    Events,
    /// Ended attempts of done and failed events (the events stay).
    Attempts,
    /// Files of one folder of an account's home, by modification time.
    Files,
    /// Partial uploads left behind (`.ferry-partial.*`, resumable uploads
    /// in `.ferry-uploads/`) and Ferry's own `.ferry-scratch.*` files.
    Partials,
}

impl RetentionKind {
    /// Every kind.
    pub const ALL: [RetentionKind; 5] = [
        RetentionKind::Transfers,
        RetentionKind::Events,
        RetentionKind::Attempts,
        RetentionKind::Files,
        RetentionKind::Partials,
    ];

    /// The name in the CLI, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionKind::Transfers => "transfers",
            RetentionKind::Events => "events",
            RetentionKind::Attempts => "attempts",
            RetentionKind::Files => "files",
            RetentionKind::Partials => "partials",
        }
    }

    /// Whether it removes rows of the replicated history (through
    /// [`crate::Command::PurgeHistory`]) rather than files.
    pub fn is_history(self) -> bool {
        matches!(
            self,
            RetentionKind::Transfers | RetentionKind::Events | RetentionKind::Attempts
        )
    }
}

impl fmt::Display for RetentionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RetentionKind {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RetentionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                FerryError::invalid(format!(
                    "unknown retention kind {s:?} (known: transfers, events, attempts, files, partials)"
                ))
            })
    }
}

/// What happens to a file of a `files` policy that is past its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    /// It is removed.
    Delete,
    /// It is moved into this folder of the same home (made if missing).
    Archive {
        /// Absolute inside the home, canonical.
        dir: String,
    },
}

impl fmt::Display for FileAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileAction::Delete => f.write_str("delete"),
            FileAction::Archive { dir } => write!(f, "archive:{dir}"),
        }
    }
}

impl FromStr for FileAction {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "delete" {
            return Ok(FileAction::Delete);
        }
        let bad = |why: &str| {
            FerryError::invalid(format!(
                "file action {s:?}: {why} (expected delete or archive:DIR)"
            ))
        };
        let Some(dir) = s.strip_prefix("archive:") else {
            return Err(bad("unknown action"));
        };
        let dir = VirtualPath::parse_absolute(dir).map_err(|e| bad(&e.to_string()))?;
        if dir.is_root() {
            return Err(bad("the archive folder must not be the home itself"));
        }
        Ok(FileAction::Archive {
            dir: dir.to_string(),
        })
    }
}

/// A retention policy, as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Unique name.
    pub name: String,
    /// What it removes.
    pub kind: RetentionKind,
    /// What is older than this (ms) is removed.
    pub older_than_ms: i64,
    /// `files`: the account whose home holds the folder; `partials`: only
    /// this account's home (`None`: the whole repository).
    pub account: Option<String>,
    /// `files`: the folder, absolute inside the home, canonical.
    pub folder: Option<String>,
    /// `files`: delete or archive.
    pub action: Option<FileAction>,
    /// When it was set.
    pub created_at: UnixMillis,
}

impl RetentionPolicy {
    /// Checks that the fields fit the kind: a `files` policy names an
    /// account, a folder and an action; history policies name none of them.
    pub fn check(&self) -> Result<(), FerryError> {
        crate::engine::check_name("retention policy", &self.name)?;
        if self.older_than_ms <= 0 {
            return Err(FerryError::invalid("the age must be more than 0"));
        }
        match self.kind {
            RetentionKind::Files => {
                if self.account.is_none() || self.folder.is_none() || self.action.is_none() {
                    return Err(FerryError::invalid(
                        "a files policy names an account, a folder and an action (delete or archive:DIR)",
                    ));
                }
                if let (Some(FileAction::Archive { dir }), Some(folder)) =
                    (&self.action, &self.folder)
                {
                    if dir == folder {
                        return Err(FerryError::invalid(
                            "the archive folder must not be the folder itself",
                        ));
                    }
                }
            }
            RetentionKind::Partials => {
                if self.folder.is_some() || self.action.is_some() {
                    return Err(FerryError::invalid(
                        "a partials policy takes no folder and no action (an account at most)",
                    ));
                }
            }
            _ => {
                if self.account.is_some() || self.folder.is_some() || self.action.is_some() {
                    return Err(FerryError::invalid(format!(
                        "a {} policy takes no account, folder or action",
                        self.kind
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Parses an age: a number and a unit, `s`, `m`, `h` or `d` (`90s`, `12h`,
/// `30d`), in ms.
pub fn parse_age(text: &str) -> Result<i64, FerryError> {
    let bad = || {
        FerryError::invalid(format!(
            "age {text:?}: give a number and a unit s, m, h or d (90s, 12h, 30d)"
        ))
    };
    let unit_at = text.char_indices().last().map(|(i, _)| i).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| FerryError::invalid(format!("age {text:?} is more than 100 years")))
}

/// An age in ms in the largest unit that divides it (`30d`, `36h`, `90s`).
pub fn format_age(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ages_parse_and_print_in_their_unit() {
        assert_eq!(parse_age("90s").unwrap(), 90_000);
        assert_eq!(parse_age("12h").unwrap(), 12 * 3_600_000);
        assert_eq!(parse_age("30d").unwrap(), 30 * 86_400_000);
        for bad in ["", "d", "0d", "-1d", "5", "5w", "1.5d", "99999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
        assert_eq!(format_age(30 * 86_400_000), "30d");
        assert_eq!(format_age(36 * 3_600_000), "36h");
        assert_eq!(format_age(90_000), "90s");
    }

    #[test]
    fn policies_are_checked_against_their_kind() {
        let mut p = RetentionPolicy {
            name: "outbox".into(),
            kind: RetentionKind::Files,
            older_than_ms: 1000,
            account: Some("acme".into()),
            folder: Some("/outbox".into()),
            action: Some("archive:/old".parse().unwrap()),
            created_at: 0,
        };
        p.check().unwrap();
        p.action = Some("archive:/outbox".parse().unwrap());
        assert!(p.check().is_err());
        p.action = None;
        assert!(p.check().is_err());
        p.kind = RetentionKind::Transfers;
        assert!(p.check().is_err());
        p.account = None;
        p.folder = None;
        p.check().unwrap();
        assert!("archive:/".parse::<FileAction>().is_err());
        assert!("archive:/a\0b".parse::<FileAction>().is_err());
        assert_eq!(
            "delete".parse::<FileAction>().unwrap().to_string(),
            "delete"
        );
    }
}
