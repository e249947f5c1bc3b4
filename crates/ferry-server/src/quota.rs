//! Account quotas, in bytes and in files. What a home holds is counted on
//! the repository itself (shared by every server of an active/active
//! cluster, so the count is the cluster's), at most every
//! [`USAGE_FRESH_FOR`] per account; partial uploads count as bytes, not as
//! files. An upload is refused before any data when the length it
//! announced (scp, HTTP `Content-Length`, tus) does not fit, and its writes
//! are refused ("quota exceeded") once the file would pass what is left.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_core::{AccountPolicy, ErrorKind, FerryError, VirtualPath};

use crate::repository::Home;
use crate::ServerCtx;

/// How long a home's count is trusted.
const USAGE_FRESH_FOR: Duration = Duration::from_secs(2);

/// What a home holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of every regular file, partial uploads included.
    pub bytes: u64,
    /// Regular files a client can see (Ferry's own `.ferry-*` files are not
    /// counted).
    pub files: u64,
}

/// Counts of homes, by account, with when they were made.
#[derive(Debug, Default)]
pub struct UsageCache(Mutex<HashMap<String, (Instant, Usage)>>);

/// Counts what is under `root`, not following symlinks.
pub fn usage_of(root: &Path) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                usage.bytes = usage.bytes.saturating_add(entry.metadata()?.len());
                let ours = entry
                    .file_name()
                    .to_str()
                    .is_some_and(ferry_core::path::is_reserved);
                if !ours {
                    usage.files += 1;
                }
            }
        }
    }
    Ok(usage)
}

impl UsageCache {
    /// The usage of `account`'s home, counted again when older than
    /// [`USAGE_FRESH_FOR`]. Blocks.
    pub fn get(&self, account: &str, home: &Home) -> Result<Usage, FerryError> {
        if let Some((at, usage)) = self.lock().get(account) {
            if at.elapsed() < USAGE_FRESH_FOR {
                return Ok(*usage);
            }
        }
        let usage = usage_of(home.root()).map_err(crate::repository::io_error)?;
        let mut all = self.lock();
        if all.len() >= 100_000 {
            all.clear();
        }
        all.insert(account.to_owned(), (Instant::now(), usage));
        Ok(usage)
    }

    /// Forgets the count of `account` (after a change the next check must see).
    pub fn forget(&self, account: &str) {
        self.lock().remove(account);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Usage)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How full a home is: the larger of its byte and file shares of the
/// quota, in percent (at most 255).
pub fn percent_used(policy: &AccountPolicy, usage: Usage) -> u8 {
    let share = |used: u64, max: Option<u64>| match max {
        Some(max) if max > 0 => used.saturating_mul(100) / max,
        Some(_) => 100,
        None => 0,
    };
    let p = share(usage.bytes, policy.quota_bytes).max(share(usage.files, policy.quota_files));
    u8::try_from(p).unwrap_or(u8::MAX)
}

/// The highest quota percentage this server raised a notice for, per
/// account and day, so an upload proposes a notice only when the home got
/// fuller.
#[derive(Debug, Default)]
pub struct QuotaNotices(Mutex<HashMap<String, (i64, u8)>>);

/// Raises a `quota` notice (rules: `quota:PERCENT`) when the home is
/// fuller than this server last said today; the store keeps one notice
/// per rule, account and day. A failure to raise it fails no upload.
fn raise_quota_notice(ctx: &ServerCtx, policy: &AccountPolicy, account: &str, usage: Usage) {
    let percent = percent_used(policy, usage);
    if percent == 0 {
        return;
    }
    let now = ctx.clock.now_ms();
    let day = now.div_euclid(86_400_000);
    {
        let mut raised = ctx
            .quota_notices
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if raised.len() >= 100_000 {
            raised.clear();
        }
        match raised.get(account) {
            Some(&(d, p)) if d == day && p >= percent => return,
            _ => {}
        }
        raised.insert(account.to_owned(), (day, percent));
    }
    let wanted = ctx.store.notify_rules().map(|rules| {
        rules.iter().any(|r| {
            matches!(r.trigger, ferry_core::Trigger::Quota { percent: p } if p <= percent)
                && r.account.as_deref().is_none_or(|a| a == account)
        })
    });
    if !matches!(wanted, Ok(true)) {
        return;
    }
    let command = ferry_core::Command::RaiseNotice {
        kind: ferry_core::TriggerKind::Quota,
        key: format!("quota:{account}:{day}"),
        notice: ferry_core::Notice {
            at: now,
            summary: format!(
                "account {account} uses {percent} % of its quota ({} bytes, {} files)",
                usage.bytes, usage.files
            ),
            account: Some(account.to_owned()),
            bytes: Some(usage.bytes),
            quota_percent: Some(percent),
            ..ferry_core::Notice::default()
        },
    };
    if let Err(e) = ctx.apply(&command) {
        tracing::warn!(account, percent, error = %e, "cannot raise the quota notice");
    }
}

fn exceeded(what: String) -> FerryError {
    FerryError::new(ErrorKind::NoSpace, format!("quota exceeded: {what}"))
}

/// Checks an upload to `path` of `account` against its quota (`policy`,
/// as the session holds it): a new file
/// must fit the files quota, and `announced` bytes (when the client said)
/// the bytes left. Returns the largest size the file may reach (`None`: no
/// byte quota). Blocks.
pub(crate) fn check_upload(
    ctx: &ServerCtx,
    policy: &AccountPolicy,
    account: &str,
    home: &Home,
    path: &VirtualPath,
    announced: Option<u64>,
) -> Result<Option<u64>, FerryError> {
    if policy.quota_bytes.is_none() && policy.quota_files.is_none() {
        return Ok(None);
    }
    let usage = ctx.usage.get(account, home)?;
    raise_quota_notice(ctx, policy, account, usage);
    let existing = home.stat(path).ok().map(|st| st.size);
    if let Some(max) = policy.quota_files {
        if existing.is_none() && usage.files >= max {
            return Err(exceeded(format!("{} of {max} files", usage.files)));
        }
    }
    let Some(max) = policy.quota_bytes else {
        return Ok(None);
    };
    // What the upload may write: what is left, plus what it replaces (the
    // file under the name and its own partial data, both counted already).
    let partial = home
        .place(path)
        .ok()
        .and_then(|p| p.partial_stat())
        .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
    let left = max.saturating_sub(usage.bytes);
    let limit = left
        .saturating_add(existing.unwrap_or(0))
        .saturating_add(partial);
    if announced.is_some_and(|n| n > limit) {
        return Err(exceeded(format!(
            "{} bytes do not fit in the {left} left of {max}",
            announced.unwrap_or(0)
        )));
    }
    Ok(Some(limit))
}
