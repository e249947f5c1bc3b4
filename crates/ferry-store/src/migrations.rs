//! Numbered schema migrations from the workspace's `schemas/` directory.
//!
//! The applied version lives in `PRAGMA user_version`; each pending migration
//! runs in its own transaction together with the version bump.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// The migrations, in order. Index + 1 is the schema version each produces.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../schemas/0001_initial.sql"),
    include_str!("../../../schemas/0002_account_tokens.sql"),
    include_str!("../../../schemas/0003_transfer_engine.sql"),
    include_str!("../../../schemas/0004_node_local.sql"),
    include_str!("../../../schemas/0005_settings.sql"),
    include_str!("../../../schemas/0006_transfer_size.sql"),
    include_str!("../../../schemas/0007_idempotency_keys.sql"),
    include_str!("../../../schemas/0008_history_change_seq.sql"),
    include_str!("../../../schemas/0009_folder_permissions.sql"),
    include_str!("../../../schemas/0010_account_policy.sql"),
    include_str!("../../../schemas/0011_bans.sql"),
    include_str!("../../../schemas/0012_admins_audit.sql"),
    include_str!("../../../schemas/0013_account_quota.sql"),
    include_str!("../../../schemas/0014_account_rates.sql"),
    include_str!("../../../schemas/0015_virtual_folders.sql"),
    include_str!("../../../schemas/0016_account_sessions.sql"),
    include_str!("../../../schemas/0017_audit_states.sql"),
    include_str!("../../../schemas/0018_password_lifecycle.sql"),
    include_str!("../../../schemas/0019_notifications.sql"),
    include_str!("../../../schemas/0020_retention.sql"),
];

/// The schema version this build produces.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            found: current,
            known: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}
