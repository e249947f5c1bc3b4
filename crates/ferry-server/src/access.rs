//! The one permission check every file operation of a session passes,
//! whatever protocol it came in by (SFTP, SCP and HTTPS all reach the
//! server as [`FsOp`]s): which [`Permission`] an operation needs, and at
//! which path, from the account's folder rules
//! ([`ferry_core::permissions`]). A refusal is answered "permission denied"
//! and logged. Operations on an open handle were decided when it opened.
//!
//! [`Access`] also holds the account's limits ([`AccountPolicy`]: quota,
//! bandwidth), read with the rules and as fresh, for the opens that need
//! them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::{AccountPolicy, FerryError, Permission, Permissions, VirtualPath};
use ferry_proto::message::FsOp;
use ferry_store::Store;

use crate::repository::Home;
use crate::session::parse;

/// How long a session trusts the rules and limits it read: a change made
/// through the admin API reaches sessions already logged in within this
/// time.
const RULES_FRESH_FOR: Duration = Duration::from_secs(1);

/// What one session's account may do, and its limits, as read from the
/// store when they were.
struct Read {
    at: Instant,
    permissions: Arc<Permissions>,
    policy: Arc<AccountPolicy>,
}

impl Read {
    fn now(store: &Store, account: &str) -> Result<Self, FerryError> {
        let own = store.folder_rules(account).map_err(FerryError::from)?;
        let mounts: Vec<_> = store
            .mounts(Some(account))
            .map_err(FerryError::from)?
            .into_iter()
            .map(|(mount, _)| mount)
            .collect();
        let rules = ferry_core::folders::rules_with_mounts(&own, &mounts);
        let policy = store
            .account_policy(account)
            .map_err(FerryError::from)?
            .unwrap_or_default();
        Ok(Self {
            at: Instant::now(),
            permissions: Arc::new(Permissions::new(&rules)),
            policy: Arc::new(policy),
        })
    }
}

/// The permissions and limits of one session's account, reread from the
/// store when they are older than [`RULES_FRESH_FOR`].
pub(crate) struct Access {
    account: String,
    client_addr: String,
    read: Mutex<Read>,
}

impl Access {
    /// Reads the account's rules and limits (at login). Blocks.
    pub(crate) fn load(
        store: &Store,
        account: &str,
        client_addr: &str,
    ) -> Result<Self, FerryError> {
        Ok(Self {
            account: account.to_owned(),
            client_addr: client_addr.to_owned(),
            read: Mutex::new(Read::now(store, account)?),
        })
    }

    /// Whether the rules in hand are fresh and restrict nothing, so an
    /// operation needs no check (and no trip to a blocking thread).
    pub(crate) fn is_open(&self) -> bool {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        read.at.elapsed() < RULES_FRESH_FOR && read.permissions.unrestricted()
    }

    /// The account's limits if those in hand are fresh: no store read, so
    /// no need of a blocking thread.
    pub(crate) fn fresh_policy(&self) -> Option<Arc<AccountPolicy>> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        (read.at.elapsed() < RULES_FRESH_FOR).then(|| read.policy.clone())
    }

    /// The account's limits (quota, bandwidth). Blocks when they are read
    /// again.
    pub(crate) fn policy(&self, store: &Store) -> Result<Arc<AccountPolicy>, FerryError> {
        self.current(store).map(|(_, policy)| policy)
    }

    fn current(&self, store: &Store) -> Result<(Arc<Permissions>, Arc<AccountPolicy>), FerryError> {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if read.at.elapsed() >= RULES_FRESH_FOR {
            *read = Read::now(store, &self.account)?;
        }
        Ok((read.permissions.clone(), read.policy.clone()))
    }

    /// `Ok` if the account may do `op`; else "permission denied". Blocks
    /// (a store read, a stat in the home). `own_upload(path)` says whether
    /// this session uploaded the file at `path` under a temporary name:
    /// renaming it to its final name needs only `upload` there, so a drop
    /// box takes uploads from clients that upload to a temporary name.
    pub(crate) fn authorize(
        &self,
        store: &Store,
        home: &Home,
        op: &FsOp,
        own_upload: impl Fn(&str) -> bool,
    ) -> Result<(), FerryError> {
        let (permissions, _) = self.current(store)?;
        let p = &*permissions;
        if p.unrestricted() {
            return Ok(());
        }
        let exists = |v: &VirtualPath| home.stat(v).is_ok();
        // Writing to a name that exists replaces (or appends to) a file.
        let write_at = |v: &VirtualPath| {
            if exists(v) {
                p.check(v, Permission::Overwrite)
            } else {
                p.check(v, Permission::Upload)
            }
        };
        let result = match op {
            FsOp::OpenDir { path } => p.check(&parse(path)?, Permission::List),
            // Attributes are what a listing shows, so they need `list` in
            // the folder holding the name. The home itself is no secret.
            FsOp::Stat { path } | FsOp::ReadLink { path } => {
                let v = parse(path)?;
                if v.is_root() {
                    Ok(())
                } else {
                    p.check(&v.parent(), Permission::List)
                }
            }
            FsOp::Open { path, mode, .. } => {
                let v = parse(path)?;
                let writes = mode.writes();
                if mode.read || !writes {
                    p.check(&v, Permission::Download)?;
                }
                if writes {
                    write_at(&v)
                } else {
                    Ok(())
                }
            }
            FsOp::UploadCreate { path, .. } => write_at(&parse(path)?),
            FsOp::SetStat { path, .. } => p.check(&parse(path)?, Permission::Overwrite),
            FsOp::Remove { path } | FsOp::Rmdir { path } => {
                p.check(&parse(path)?, Permission::Delete)
            }
            FsOp::Mkdir { path, .. } => p.check(&parse(path)?, Permission::CreateDirs),
            FsOp::Rename { from, to, .. } => {
                let (from_v, to_v) = (parse(from)?, parse(to)?);
                let replaces = exists(&to_v);
                if own_upload(&from_v.to_string()) && !replaces {
                    p.check(&to_v, Permission::Upload)
                } else {
                    p.check(&from_v, Permission::Rename)?;
                    p.check(&to_v, Permission::Rename)?;
                    if replaces {
                        p.check(&to_v, Permission::Overwrite)
                    } else {
                        Ok(())
                    }
                }
            }
            FsOp::Hardlink { from, to } => {
                p.check(&parse(from)?, Permission::Download)?;
                write_at(&parse(to)?)
            }
            FsOp::Hash { path, .. } => p.check(&parse(path)?, Permission::Download),
            // Nothing of a file's content or of a folder's names: a path
            // made canonical, the filesystem's sizes, and resumable uploads
            // the account created (allowed when created).
            FsOp::RealPath { .. }
            | FsOp::Statvfs { .. }
            | FsOp::UploadOpen { .. }
            | FsOp::UploadStatus { .. }
            | FsOp::UploadDelete { .. } => Ok(()),
            // Handle operations: decided when the handle was opened.
            FsOp::ReadDir { .. }
            | FsOp::Close { .. }
            | FsOp::Read { .. }
            | FsOp::Write { .. }
            | FsOp::Fstat { .. }
            | FsOp::Fsetstat { .. }
            | FsOp::Abort { .. }
            | FsOp::Fsync { .. }
            | FsOp::CopyData { .. } => Ok(()),
        };
        if let Err(e) = &result {
            tracing::warn!(
                account = %self.account, client_addr = %self.client_addr,
                op = op_name(op), error = %e.message,
                "permission denied"
            );
        }
        result
    }
}

/// The operation's name for the log.
fn op_name(op: &FsOp) -> &'static str {
    match op {
        FsOp::Open { .. } => "open",
        FsOp::OpenDir { .. } => "opendir",
        FsOp::Stat { .. } => "stat",
        FsOp::ReadLink { .. } => "readlink",
        FsOp::UploadCreate { .. } => "upload-create",
        FsOp::SetStat { .. } => "setstat",
        FsOp::Remove { .. } => "remove",
        FsOp::Rmdir { .. } => "rmdir",
        FsOp::Mkdir { .. } => "mkdir",
        FsOp::Rename { .. } => "rename",
        FsOp::Hardlink { .. } => "hardlink",
        FsOp::Hash { .. } => "hash",
        _ => "other",
    }
}
