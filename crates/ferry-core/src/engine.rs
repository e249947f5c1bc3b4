//! The transfer engine's records: partners, routes, schedules, folder
//! monitors, and the event queue they feed. Like every record they are plain
//! data, replicated by commands; the engine in the server acts on them.

use serde::{Deserialize, Serialize};

use crate::{FerryError, UnixMillis, VirtualPath};

/// A partner's SFTP server that Ferry pushes to and pulls from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Unique name, as routes and schedules refer to it.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// User name on the partner's server.
    pub username: String,
    /// Password, sealed with the node's secret key (never plaintext at rest).
    pub password_sealed: Option<String>,
    /// OpenSSH private key, sealed with the node's secret key.
    pub private_key_sealed: Option<String>,
    /// The pinned host key, `TYPE BASE64`. Any other key is refused.
    pub host_key: String,
    /// Directory on the partner's server that pushes go to and pulls read from.
    pub remote_dir: String,
    /// What a pull does with a remote file once the local copy is committed.
    pub after_pull: AfterPull,
    /// Bytes per second for transfers with this partner, if limited.
    pub rate_limit: Option<u64>,
    /// When the partner was added.
    pub created_at: UnixMillis,
}

/// What a pull does with the remote file after the local copy is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterPull {
    /// Leave it; it is not pulled again while its size and time stay the same.
    Keep,
    /// Delete it.
    Delete,
    /// Move it into this remote directory.
    Move(String),
}

impl std::fmt::Display for AfterPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AfterPull::Keep => f.write_str("keep"),
            AfterPull::Delete => f.write_str("delete"),
            AfterPull::Move(dir) => write!(f, "move:{dir}"),
        }
    }
}

impl std::str::FromStr for AfterPull {
    type Err = FerryError;
    fn from_str(s: &str) -> Result<Self, FerryError> {
        match s {
            "keep" => Ok(AfterPull::Keep),
            "delete" => Ok(AfterPull::Delete),
            _ => match s.strip_prefix("move:") {
                Some(dir) if !dir.is_empty() => Ok(AfterPull::Move(dir.to_owned())),
                _ => Err(FerryError::invalid(format!(
                    "after-pull {s:?} must be keep, delete or move:REMOTE_DIR"
                ))),
            },
        }
    }
}

/// A step of a route. Routes run their actions in order on the file that
/// arrived; `archive` and `rename` change which file later steps see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Upload the file to a partner: `push:PARTNER[:REMOTE_DIR]`.
    Push {
        /// Partner name.
        partner: String,
        /// Remote directory; the partner's own when absent.
        remote_dir: Option<String>,
    },
    /// Copy the file into another account's folder: `copy:ACCOUNT[/DIR]`.
    Copy {
        /// Target account.
        account: String,
        /// Directory in that account's home.
        dir: String,
    },
    /// Move the file into a folder of the same home: `archive:DIR`.
    Archive {
        /// Directory in the home.
        dir: String,
    },
    /// Rename the file in place: `rename:PATTERN` with `{name}`, `{stem}`,
    /// `{ext}`, `{date}` (YYYYMMDD), `{time}` (HHMMSS), `{yyyy}`, `{mm}`, `{dd}`.
    Rename {
        /// The pattern.
        pattern: String,
    },
}

impl Action {
    /// The partner this action talks to, if any.
    pub fn partner(&self) -> Option<&str> {
        match self {
            Action::Push { partner, .. } => Some(partner),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Push {
                partner,
                remote_dir: None,
            } => write!(f, "push:{partner}"),
            Action::Push {
                partner,
                remote_dir: Some(d),
            } => write!(f, "push:{partner}:{d}"),
            Action::Copy { account, dir } if dir == "/" => write!(f, "copy:{account}"),
            Action::Copy { account, dir } => write!(f, "copy:{account}{dir}"),
            Action::Archive { dir } => write!(f, "archive:{dir}"),
            Action::Rename { pattern } => write!(f, "rename:{pattern}"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = FerryError;
    fn from_str(s: &str) -> Result<Self, FerryError> {
        let bad = |why: &str| {
            FerryError::invalid(format!(
                "action {s:?}: {why} (expected push:PARTNER[:REMOTE_DIR], copy:ACCOUNT[/DIR], archive:DIR or rename:PATTERN)"
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
        match kind {
            "push" => {
                let (partner, dir) = match rest.split_once(':') {
                    Some((p, d)) => (p, Some(d)),
                    None => (rest, None),
                };
                check_name("partner", partner).map_err(|e| bad(&e.message))?;
                if dir.is_some_and(|d| d.is_empty() || d.contains('\0')) {
                    return Err(bad("empty remote directory"));
                }
                Ok(Action::Push {
                    partner: partner.to_owned(),
                    remote_dir: dir.map(str::to_owned),
                })
            }
            "copy" => {
                let (account, dir) = split_account_dir(rest).map_err(|e| bad(&e.message))?;
                Ok(Action::Copy { account, dir })
            }
            "archive" => {
                let dir = VirtualPath::parse_absolute(rest).map_err(|e| bad(&e.to_string()))?;
                if dir.is_root() {
                    return Err(bad("the archive folder must not be the home itself"));
                }
                Ok(Action::Archive {
                    dir: dir.to_string(),
                })
            }
            "rename" => {
                check_rename_pattern(rest).map_err(|e| bad(&e.message))?;
                Ok(Action::Rename {
                    pattern: rest.to_owned(),
                })
            }
            _ => Err(bad("unknown action")),
        }
    }
}

/// Splits `ACCOUNT[/DIR]` into the account name and a canonical directory.
pub fn split_account_dir(text: &str) -> Result<(String, String), FerryError> {
    let (account, dir) = match text.split_once('/') {
        Some((a, d)) => (a, d),
        None => (text, ""),
    };
    check_name("account", account)?;
    let dir = VirtualPath::parse_absolute(dir).map_err(FerryError::from)?;
    Ok((account.to_owned(), dir.to_string()))
}

/// Checks a name of a partner, route, schedule, monitor or account: 1-64
/// letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn check_name(what: &str, name: &str) -> Result<(), FerryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FerryError::invalid(format!(
            "{what} name {name:?} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

const RENAME_FIELDS: &[&str] = &["name", "stem", "ext", "date", "time", "yyyy", "mm", "dd"];

fn check_rename_pattern(pattern: &str) -> Result<(), FerryError> {
    if pattern.is_empty() || pattern.contains('/') || pattern.contains('\0') {
        return Err(FerryError::invalid(
            "a rename pattern is one non-empty file name without '/'",
        ));
    }
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| FerryError::invalid("unclosed '{' in the rename pattern"))?;
        let field = &rest[open + 1..open + close];
        if !RENAME_FIELDS.contains(&field) {
            return Err(FerryError::invalid(format!(
                "unknown field {{{field}}} in the rename pattern (known: {})",
                RENAME_FIELDS.join(", ")
            )));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// Expands a rename pattern for the file called `name` at the given local
/// date and time (`yyyy, mm, dd, HH, MM, SS`). The name is inserted as data,
/// never interpreted. The result is checked to be one valid file name.
pub fn expand_rename(pattern: &str, name: &str, when: [u32; 6]) -> Result<String, FerryError> {
    check_rename_pattern(pattern)?;
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (name, ""),
    };
    let [y, mo, d, h, mi, s] = when;
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').unwrap_or(0);
        match &rest[open + 1..close] {
            "name" => out.push_str(name),
            "stem" => out.push_str(stem),
            "ext" => out.push_str(ext),
            "date" => out.push_str(&format!("{y:04}{mo:02}{d:02}")),
            "time" => out.push_str(&format!("{h:02}{mi:02}{s:02}")),
            "yyyy" => out.push_str(&format!("{y:04}")),
            "mm" => out.push_str(&format!("{mo:02}")),
            _ => out.push_str(&format!("{d:02}")),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    let checked = VirtualPath::parse_absolute(&out).map_err(FerryError::from)?;
    if checked.components().len() != 1 {
        return Err(FerryError::invalid(format!(
            "rename of {name:?} gives {out:?}, which is not one file name"
        )));
    }
    Ok(out)
}

/// A rule that acts on files arriving in an account's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Unique name.
    pub name: String,
    /// Files of this account are matched.
    pub account: String,
    /// Glob; with a `/` it is matched against the path in the home (without
    /// the leading `/`), otherwise against the file name.
    pub pattern: String,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// Attempts before the event is `failed`.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub retry_base_ms: u64,
    /// When the route was added.
    pub created_at: UnixMillis,
}

/// Builds the matcher of a route or monitor glob.
pub fn glob_matcher(pattern: &str) -> Result<globset::GlobMatcher, FerryError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| FerryError::invalid(format!("bad glob {pattern:?}: {e}")))
}

/// Whether `path` (a canonical path in a home, `/a/b.csv`) matches `pattern`
/// by the route rule: with a `/`, against the whole relative path; otherwise
/// against the file name.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let Ok(matcher) = glob_matcher(pattern) else {
        return false;
    };
    let relative = path.trim_start_matches('/');
    if pattern.contains('/') {
        matcher.is_match(relative)
    } else {
        matcher.is_match(relative.rsplit('/').next().unwrap_or(relative))
    }
}

/// What a schedule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScheduleAction {
    /// `pull:PARTNER[:REMOTE_GLOB]:ACCOUNT[/DIR]` — fetch matching files from
    /// the partner's remote directory into the account's folder.
    Pull {
        /// Partner name.
        partner: String,
        /// Glob of remote file names (all files when absent).
        glob: Option<String>,
        /// Target account.
        account: String,
        /// Directory in the account's home.
        dir: String,
    },
    /// `push:PARTNER[:REMOTE_DIR]:ACCOUNT[/DIR]` — send every file of the
    /// account's folder that was not sent yet in its current version (size
    /// and mtime); local files stay where they are.
    Push {
        /// Partner name.
        partner: String,
        /// Remote directory; the partner's own when absent.
        remote_dir: Option<String>,
        /// Source account.
        account: String,
        /// Directory in the account's home.
        dir: String,
    },
}

impl ScheduleAction {
    /// The partner this action talks to.
    pub fn partner(&self) -> &str {
        match self {
            ScheduleAction::Pull { partner, .. } | ScheduleAction::Push { partner, .. } => partner,
        }
    }

    /// The account whose folder it reads or writes.
    pub fn account(&self) -> &str {
        match self {
            ScheduleAction::Pull { account, .. } | ScheduleAction::Push { account, .. } => account,
        }
    }
}

impl std::fmt::Display for ScheduleAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, partner, middle, account, dir) = match self {
            ScheduleAction::Pull {
                partner,
                glob,
                account,
                dir,
            } => ("pull", partner, glob, account, dir),
            ScheduleAction::Push {
                partner,
                remote_dir,
                account,
                dir,
            } => ("push", partner, remote_dir, account, dir),
        };
        write!(f, "{kind}:{partner}:")?;
        if let Some(m) = middle {
            write!(f, "{m}:")?;
        }
        if dir == "/" {
            write!(f, "{account}")
        } else {
            write!(f, "{account}{dir}")
        }
    }
}

impl std::str::FromStr for ScheduleAction {
    type Err = FerryError;
    fn from_str(s: &str) -> Result<Self, FerryError> {
        let bad = |why: &str| {
            FerryError::invalid(format!(
                "schedule action {s:?}: {why} (expected pull:PARTNER[:REMOTE_GLOB]:ACCOUNT[/DIR] or push:PARTNER[:REMOTE_DIR]:ACCOUNT[/DIR])"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (kind, partner, middle, target) = match parts.as_slice() {
            [k, p, t] => (*k, *p, None, *t),
            [k, p, m, t] => (*k, *p, Some(*m), *t),
            _ => return Err(bad("wrong number of ':'-separated parts")),
        };
        check_name("partner", partner).map_err(|e| bad(&e.message))?;
        if middle.is_some_and(|m| m.is_empty() || m.contains('\0')) {
            return Err(bad("empty middle part"));
        }
        let (account, dir) = split_account_dir(target).map_err(|e| bad(&e.message))?;
        match kind {
            "pull" => {
                if let Some(g) = middle {
                    if g.contains('/') {
                        return Err(bad("the remote glob names files, without '/'"));
                    }
                    glob_matcher(g).map_err(|e| bad(&e.message))?;
                }
                Ok(ScheduleAction::Pull {
                    partner: partner.to_owned(),
                    glob: middle.map(str::to_owned),
                    account,
                    dir,
                })
            }
            "push" => Ok(ScheduleAction::Push {
                partner: partner.to_owned(),
                remote_dir: middle.map(str::to_owned),
                account,
                dir,
            }),
            _ => Err(bad("unknown action")),
        }
    }
}

/// A cron schedule with its time zone and action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// Cron expression: `sec min hour day month weekday [year]`, or the
    /// classic five fields (`min hour day month weekday`, second 0).
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// What a firing does.
    pub action: ScheduleAction,
    /// Whether slots missed while no node was primary fire once on takeover.
    pub catch_up: bool,
    /// Attempts before a firing's event is `failed`.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub retry_base_ms: u64,
    /// When the schedule was added; no slot before it fires.
    pub created_at: UnixMillis,
}

/// A local directory watched for files to ingest into an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitor {
    /// Unique name.
    pub name: String,
    /// Absolute directory on the server (a shared mount in a cluster).
    pub dir: String,
    /// Glob of file names to ingest.
    pub pattern: String,
    /// The account the files go to.
    pub account: String,
    /// Directory in the account's home.
    pub target_dir: String,
    /// A file is ingested once its size and mtime stayed the same this long.
    pub stable_ms: u64,
    /// When the monitor was added.
    pub created_at: UnixMillis,
}

/// What caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A client's upload completed (SFTP or HTTPS).
    Upload,
    /// A folder monitor ingested a file.
    Monitor,
    /// A scheduled pull brought a file in.
    Pull,
    /// A schedule fired.
    Schedule,
    /// An operator resubmitted an earlier event.
    Resubmit,
    /// A notification to send (see [`crate::notify`]).
    Notify,
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Waiting for its next attempt (at `next_at`).
    Pending,
    /// Claimed by a node until its lease ends.
    Running,
    /// Every action succeeded.
    Done,
    /// The last attempt failed; it stays visible and can be resubmitted.
    Failed,
}

crate::model::str_enum!(EventKind { Upload => "upload", Monitor => "monitor", Pull => "pull", Schedule => "schedule", Resubmit => "resubmit", Notify => "notify" });
crate::model::str_enum!(EventStatus { Pending => "pending", Running => "running", Done => "done", Failed => "failed" });

/// One unit of work in the queue: run a route's actions on a file, or a
/// schedule's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event id (UUID).
    pub id: String,
    /// What caused it.
    pub kind: EventKind,
    /// The route whose actions run (file events).
    pub route: Option<String>,
    /// The schedule whose action runs (schedule events).
    pub schedule: Option<String>,
    /// The schedule slot (unix ms) this firing is for.
    pub slot: Option<UnixMillis>,
    /// The account the file belongs to.
    pub account: Option<String>,
    /// The file's path in the home when the event was created.
    pub path: Option<String>,
    /// The transfer that brought the file in.
    pub transfer_id: Option<String>,
    /// Partners involved, for filtering.
    pub partners: Vec<String>,
    /// Where it is.
    pub status: EventStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// First retry delay, doubled each time.
    pub retry_base_ms: u64,
    /// Earliest time of the next attempt.
    pub next_at: UnixMillis,
    /// Node holding the lease, while running.
    pub lease_node: Option<String>,
    /// When the lease ends.
    pub lease_until: Option<UnixMillis>,
    /// Actions already done (a retry starts after them).
    pub steps_done: u32,
    /// The file's path after the steps done (renames and archives move it).
    pub current_path: Option<String>,
    /// When the event was created.
    pub created_at: UnixMillis,
    /// When it last changed.
    pub updated_at: UnixMillis,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The event this one resubmits.
    pub resubmit_of: Option<String>,
    /// What a `notify` event sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<crate::notify::Notice>,
}

/// One attempt at an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAttempt {
    /// The event.
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The node that made it.
    pub node: String,
    /// When it was claimed.
    pub started_at: UnixMillis,
    /// When it ended (absent while running).
    pub ended_at: Option<UnixMillis>,
    /// `done`, `retry`, `failed` or `lease expired`.
    pub outcome: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttemptResult {
    /// Every action succeeded.
    Done,
    /// Failed; try again at `next_at`.
    Retry {
        /// Earliest next attempt.
        next_at: UnixMillis,
        /// Why it failed.
        error: String,
    },
    /// Failed for good (attempts used up, or an error a retry cannot fix).
    Failed {
        /// Why.
        error: String,
    },
}

/// The delay before attempt `attempt + 1` after `attempt` failed:
/// `base · 2^(attempt-1)`, at most an hour.
pub fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    let factor = 1u64 << attempt.saturating_sub(1).min(20);
    base_ms.saturating_mul(factor).min(3_600_000)
}

/// A deterministic id (UUID v5) from parts, for records every node must
/// derive identically (the events of a transfer, a monitor's ingest of one
/// version of a file).
pub fn derived_id(parts: &[&str]) -> String {
    let joined = parts.join("\u{1f}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, joined.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn actions_parse_and_print_back() {
        for text in [
            "push:acme",
            "push:acme:/in/bound",
            "copy:bob",
            "copy:bob/in",
            "archive:/archive",
            "rename:{date}-{name}",
        ] {
            let a: Action = text.parse().unwrap();
            let again: Action = a.to_string().parse().unwrap();
            assert_eq!(a, again, "{text}");
        }
        // Directories are canonical paths inside the home.
        assert_eq!(
            "copy:bob/x/../y".parse::<Action>().unwrap(),
            Action::Copy {
                account: "bob".into(),
                dir: "/y".into()
            }
        );
        for bad in [
            "push:",
            "push:a b",
            "copy:../x",
            "archive:/",
            "rename:a/b",
            "rename:{evil}",
            "rename:{name",
            "exec:rm",
            "nocolon",
        ] {
            assert!(bad.parse::<Action>().is_err(), "{bad}");
        }
    }

    #[test]
    fn schedule_actions_parse() {
        let a: ScheduleAction = "pull:acme:*.csv:alice/in".parse().unwrap();
        assert_eq!(
            a,
            ScheduleAction::Pull {
                partner: "acme".into(),
                glob: Some("*.csv".into()),
                account: "alice".into(),
                dir: "/in".into()
            }
        );
        assert_eq!(a.to_string(), "pull:acme:*.csv:alice/in");
        let b: ScheduleAction = "push:acme:alice".parse().unwrap();
        assert_eq!(b.to_string(), "push:acme:alice");
        assert!("pull:acme".parse::<ScheduleAction>().is_err());
        assert!("pull:acme:a/b:alice".parse::<ScheduleAction>().is_err());
        assert!("pull:acme:x:y:alice".parse::<ScheduleAction>().is_err());
    }

    #[test]
    fn rename_inserts_the_name_as_data() {
        let when = [2026, 3, 9, 7, 5, 1];
        assert_eq!(
            expand_rename("{date}_{stem}.{ext}", "a.b.csv", when).unwrap(),
            "20260309_a.b.csv"
        );
        assert_eq!(
            expand_rename("{yyyy}-{mm}-{dd}T{time}-{name}", ".profile", when).unwrap(),
            "2026-03-09T070501-.profile"
        );
        // A name full of braces is copied, not expanded again.
        assert_eq!(
            expand_rename("x-{name}", "{date}", when).unwrap(),
            "x-{date}"
        );
        assert!(expand_rename("{name}", "..", when).is_err());
    }

    #[test]
    fn globs_match_names_or_paths() {
        assert!(glob_matches("*.csv", "/in/a.csv"));
        assert!(!glob_matches("*.csv", "/in/a.txt"));
        assert!(glob_matches("in/*.csv", "/in/a.csv"));
        assert!(!glob_matches("in/*.csv", "/out/a.csv"));
        assert!(!glob_matches("*.csv", "/a.csv/b"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1000, 1), 1000);
        assert_eq!(backoff_ms(1000, 2), 2000);
        assert_eq!(backoff_ms(1000, 4), 8000);
        assert_eq!(backoff_ms(1000, 60), 3_600_000);
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derived_id(&["a", "b"]), derived_id(&["a", "b"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["ab"]));
    }
}
