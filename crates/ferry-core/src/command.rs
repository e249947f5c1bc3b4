//! Every change to shared state is a [`Command`] applied by the store's one
//! `apply` function. Commands are plain data: they carry ids, hashes and
//! timestamps chosen by the proposer, so applying one is deterministic on any
//! node, whether directly (single node) or from a replicated log.

use serde::{Deserialize, Serialize};

use crate::admins::{Admin, AdminToken, AuditRecord};
use crate::engine::{AttemptResult, Event, Monitor, Partner, Route, Schedule};
use crate::folders::{Mount, VirtualFolder};
use crate::model::{Account, AccountKey, AccountToken, TransferRecord};
use crate::notify::{Notice, NotifyEndpoint, NotifyRule, TriggerKind};
use crate::permissions::FolderRule;
use crate::retention::{RetentionKind, RetentionPolicy};
use crate::secret::Secret;
use crate::UnixMillis;

/// Format version of [`Command`] as serialized. Bump it when a variant changes
/// shape; nodes refuse commands newer than they understand.
pub const COMMAND_FORMAT_VERSION: u16 = 4;

/// How long an idempotency key is remembered, in ms.
pub const IDEMPOTENCY_KEY_TTL_MS: UnixMillis = 24 * 60 * 60 * 1000;

/// A change to shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create an account (fails if the name is taken).
    CreateAccount(Account),
    /// Enable or disable an account.
    SetAccountEnabled {
        /// Account name.
        name: String,
        /// New state.
        enabled: bool,
    },
    /// Remove an account and its keys. Its files stay in the repository.
    RemoveAccount {
        /// Account name.
        name: String,
    },
    /// Authorise a public key for an account.
    AddAccountKey(AccountKey),
    /// Add an API token to an account.
    AddAccountToken(AccountToken),
    /// Revoke an API token.
    RemoveAccountToken {
        /// Account name.
        account: String,
        /// The token's public id.
        id: String,
    },
    /// Record a finished (completed, interrupted or failed) transfer. A
    /// completed arrival also queues one event per matching route, with ids
    /// derived from the transfer id and route name.
    RecordTransfer(TransferRecord),
    /// Add a partner (fails if the name is taken).
    AddPartner(Partner),
    /// Remove a partner (refused while a route or schedule uses it).
    RemovePartner {
        /// Partner name.
        name: String,
    },
    /// Add a route (fails if the name is taken).
    AddRoute(Route),
    /// Remove a route; its queued events fail when they run.
    RemoveRoute {
        /// Route name.
        name: String,
    },
    /// Add a schedule (fails if the name is taken).
    AddSchedule(Schedule),
    /// Remove a schedule and its firing history.
    RemoveSchedule {
        /// Schedule name.
        name: String,
    },
    /// Add a folder monitor (fails if the name is taken).
    AddMonitor(Monitor),
    /// Remove a folder monitor.
    RemoveMonitor {
        /// Monitor name.
        name: String,
    },
    /// Record that a schedule fired for a slot and queue its event. A slot
    /// that already fired changes nothing: each slot fires exactly once.
    FireSchedule {
        /// Schedule name.
        schedule: String,
        /// The slot, unix ms.
        slot: UnixMillis,
        /// The primary that fired it.
        node: String,
        /// The primary's term (checked by the cluster, 0 on a single node).
        term: u64,
        /// The event to queue.
        event: Event,
    },
    /// Queue an event (a resubmit).
    EnqueueEvent(Event),
    /// Claim an event for an attempt: pending and due, or running with an
    /// expired lease. Anything else is a conflict.
    ClaimEvent {
        /// Event id.
        id: String,
        /// Claiming node.
        node: String,
        /// The claimer's clock.
        now: UnixMillis,
        /// End of the lease.
        lease_until: UnixMillis,
    },
    /// Extend the lease of a running attempt.
    RenewLease {
        /// Event id.
        id: String,
        /// Node holding the lease.
        node: String,
        /// The attempt number.
        attempt: u32,
        /// New end of the lease.
        lease_until: UnixMillis,
    },
    /// Record that the first `steps_done` actions of an event are done.
    EventProgress {
        /// Event id.
        id: String,
        /// Node holding the lease.
        node: String,
        /// The attempt number.
        attempt: u32,
        /// Actions done so far.
        steps_done: u32,
        /// The file's path after them.
        current_path: Option<String>,
        /// When.
        now: UnixMillis,
    },
    /// End an attempt. Refused unless `node` still holds the lease for `attempt`.
    FinishAttempt {
        /// Event id.
        id: String,
        /// Node holding the lease.
        node: String,
        /// The attempt number.
        attempt: u32,
        /// When it ended.
        now: UnixMillis,
        /// How.
        result: AttemptResult,
    },
    /// A node started afresh: none of the leases it took before `now` can
    /// still be in use, so they end now and their events can be claimed
    /// again at once. Leases it took at or after `now` (this run's, when
    /// the release is applied late) stay.
    ReleaseNodeLeases {
        /// The node.
        node: String,
        /// Its clock when it started (or began its shutdown).
        now: UnixMillis,
    },
    /// Set a cluster-wide setting (for instance the join token's hash).
    SetSetting {
        /// Its name.
        key: String,
        /// Its value (never a secret in clear).
        value: String,
    },
    /// The session that uploaded a file under a temporary name
    /// ([`crate::path::is_temporary_upload_name`]) renamed it: the row moves
    /// to the final name, and the routes that match it queue their events
    /// now (none were queued for the temporary name). A row whose path is
    /// not temporary, or already moved, is left alone.
    RenameTransfer {
        /// The upload's transfer id.
        id: String,
        /// Its final path inside the home.
        path: String,
    },
    /// `command`, applied once per `key`: the same key again (a retry after
    /// an unknown outcome) gets the first answer back, success or error,
    /// and changes nothing. A key used for another kind of command is
    /// refused. Keys are forgotten after [`IDEMPOTENCY_KEY_TTL_MS`].
    Keyed {
        /// The caller's key (with the command's place in its request).
        key: String,
        /// When it was proposed (the proposer's clock).
        at: UnixMillis,
        /// The change.
        command: Box<Command>,
    },
    /// Set what an account may do in a folder of its home (replacing the
    /// folder's rule, if it had one).
    SetFolderRule(FolderRule),
    /// Remove the rule of a folder: the folder inherits its parent's.
    RemoveFolderRule {
        /// Account name.
        account: String,
        /// The folder, as the rule names it.
        path: String,
    },
    /// Create a virtual folder (a directory of the repository that can be
    /// mounted into homes).
    CreateVirtualFolder(VirtualFolder),
    /// Remove a virtual folder that no home mounts (its files stay).
    RemoveVirtualFolder {
        /// The folder's name.
        name: String,
    },
    /// Mount a virtual folder into an account's home (replacing the mount
    /// at that path, if there was one).
    MountFolder(Mount),
    /// Remove the mount at `path` of an account's home.
    UnmountFolder {
        /// Account name.
        account: String,
        /// The mount point, as the mount names it.
        path: String,
    },
    /// Change an account's password, expiry, allowed networks, quota,
    /// bandwidth limits, session cap or whether it must change its
    /// password (see [`AccountUpdate`]).
    UpdateAccount(AccountUpdate),
    /// Revoke one public key of an account, or all of them.
    RemoveAccountKey {
        /// Account name.
        account: String,
        /// The key's fingerprint; `None`: every key.
        fingerprint: Option<String>,
    },
    /// Refuse every login from a client address until a time (the
    /// defender, or an operator). Replaces a ban of that address; bans
    /// that ended are forgotten.
    BanAddress(Ban),
    /// Lift the ban of an address.
    UnbanAddress {
        /// The address, canonical.
        address: String,
    },
    /// Create a named admin (fails if the name is taken).
    CreateAdmin(Admin),
    /// Remove an admin and its tokens.
    RemoveAdmin {
        /// Its name.
        name: String,
    },
    /// Add an API token to an admin.
    AddAdminToken(AdminToken),
    /// Revoke an admin's API token.
    RemoveAdminToken {
        /// The admin.
        admin: String,
        /// The token's public id.
        id: String,
    },
    /// Record a change made (or refused) through the admin API. Records
    /// are written once (a second record with the same id changes nothing)
    /// and never changed.
    RecordAudit(AuditRecord),
    /// An account logged in at `at` (its last login moves forward only).
    RecordLogin {
        /// Account name.
        name: String,
        /// When (the server's clock).
        at: UnixMillis,
    },
    /// Add a notification endpoint (fails if the name is taken).
    AddNotifyEndpoint(NotifyEndpoint),
    /// Remove a notification endpoint (refused while a rule uses it).
    RemoveNotifyEndpoint {
        /// Endpoint name.
        name: String,
    },
    /// Add a notification rule (fails if the name is taken or its
    /// endpoint does not exist).
    AddNotifyRule(NotifyRule),
    /// Remove a notification rule.
    RemoveNotifyRule {
        /// Rule name.
        name: String,
    },
    /// Something a server saw happen (a role change, a quota passed):
    /// queues a notification per matching rule, with an id derived from
    /// the rule and `key`, so the same key raises each rule's notice once.
    RaiseNotice {
        /// What happened.
        kind: TriggerKind,
        /// Names the occurrence (`primary:TERM`, `quota:ACCOUNT:DAY`).
        key: String,
        /// What the notice says.
        notice: Notice,
    },
    /// Set a retention policy (replacing the one of that name, if any).
    SetRetentionPolicy(RetentionPolicy),
    /// Remove a retention policy.
    RemoveRetentionPolicy {
        /// Its name.
        name: String,
    },
    /// Delete at most `limit` history rows of `kind` (transfers, events
    /// with their attempts, or attempts) older than `before`, oldest first,
    /// that no unfinished event needs: an event that is pending or running
    /// (retrying included) keeps itself, its attempts, the transfer row it
    /// was queued for, the rows of its work and the event it resubmits.
    /// Deterministic: every server deletes the same rows. Also raises the
    /// store's horizon for `kind` to `before`, below which a history merge
    /// takes no row that nothing needs, so deleted rows do not come back
    /// from a peer. The rows changed are the rows of `kind` deleted.
    PurgeHistory {
        /// `transfers`, `events` or `attempts`.
        kind: RetentionKind,
        /// The cutoff (the proposer's clock minus the policy's age).
        before: UnixMillis,
        /// The most rows deleted by this command.
        limit: u32,
    },
}

/// A client address no login is taken from until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The IP address, canonical (IPv4-mapped IPv6 as IPv4).
    pub address: String,
    /// When the ban ends.
    pub until: UnixMillis,
    /// When it began.
    pub banned_at: UnixMillis,
    /// Why: the defender's score, or the operator's words.
    pub reason: String,
    /// The server that banned it, or `admin`.
    pub by: String,
}

/// What an [`Command::UpdateAccount`] changes of one account; `None`
/// leaves a field as it is. A new password hash also goes to the front of
/// the account's password history (the last
/// [`crate::PASSWORD_HISTORY_LEN`] hashes, for the reuse check). Its
/// stored and wire form is the one the command had when these fields were
/// written in the variant itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdate {
    /// Account name.
    pub name: String,
    /// The new argon2 PHC string (`Some(None)`: no password login).
    pub password_hash: Option<Option<Secret>>,
    /// The new expiry (`Some(None)`: never).
    pub expires_at: Option<Option<UnixMillis>>,
    /// The networks it may log in from, canonical (empty: anywhere).
    pub allowed_networks: Option<Vec<String>>,
    /// The quota in bytes (`Some(None)`: none).
    pub quota_bytes: Option<Option<u64>>,
    /// The quota in files (`Some(None)`: none).
    pub quota_files: Option<Option<u64>>,
    /// The upload limit, bytes a second (`Some(None)`: none).
    pub upload_rate: Option<Option<u64>>,
    /// The download limit, bytes a second (`Some(None)`: none).
    pub download_rate: Option<Option<u64>>,
    /// The most sessions open at once (`Some(None)`: no cap).
    #[serde(default)]
    pub max_sessions: Option<Option<u64>>,
    /// Whether the password must be changed before the account does
    /// anything else. (Absent in commands made before it existed.)
    #[serde(default)]
    pub must_change_password: Option<bool>,
    /// Its idle time counts from then (an admin enabled it again).
    #[serde(default)]
    pub active_since: Option<UnixMillis>,
}

impl AccountUpdate {
    /// A change of account `name` that changes nothing yet.
    pub fn of(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl Command {
    /// The feature level of the release that added this command
    /// ([`crate::release`]): it is proposed only in a cluster that runs at
    /// that level, so no member of an older release meets it.
    pub fn feature_level(&self) -> u32 {
        match self {
            Command::Keyed { command, .. } => command.feature_level(),
            // Every command so far came with release 0.1. A new variant
            // names the level of the release that adds it here.
            _ => crate::release::FIRST_FEATURE_LEVEL,
        }
    }

    /// A short name for logs and audit rows; never includes secrets.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateAccount(_) => "create_account",
            Command::SetAccountEnabled { .. } => "set_account_enabled",
            Command::RemoveAccount { .. } => "remove_account",
            Command::AddAccountKey(_) => "add_account_key",
            Command::AddAccountToken(_) => "add_account_token",
            Command::RemoveAccountToken { .. } => "remove_account_token",
            Command::RecordTransfer(_) => "record_transfer",
            Command::AddPartner(_) => "add_partner",
            Command::RemovePartner { .. } => "remove_partner",
            Command::AddRoute(_) => "add_route",
            Command::RemoveRoute { .. } => "remove_route",
            Command::AddSchedule(_) => "add_schedule",
            Command::RemoveSchedule { .. } => "remove_schedule",
            Command::AddMonitor(_) => "add_monitor",
            Command::RemoveMonitor { .. } => "remove_monitor",
            Command::FireSchedule { .. } => "fire_schedule",
            Command::EnqueueEvent(_) => "enqueue_event",
            Command::ClaimEvent { .. } => "claim_event",
            Command::RenewLease { .. } => "renew_lease",
            Command::EventProgress { .. } => "event_progress",
            Command::FinishAttempt { .. } => "finish_attempt",
            Command::ReleaseNodeLeases { .. } => "release_node_leases",
            Command::SetSetting { .. } => "set_setting",
            Command::RenameTransfer { .. } => "rename_transfer",
            Command::Keyed { command, .. } => command.name(),
            Command::SetFolderRule(_) => "set_folder_rule",
            Command::RemoveFolderRule { .. } => "remove_folder_rule",
            Command::UpdateAccount(_) => "update_account",
            Command::RemoveAccountKey { .. } => "remove_account_key",
            Command::BanAddress(_) => "ban_address",
            Command::UnbanAddress { .. } => "unban_address",
            Command::CreateAdmin(_) => "create_admin",
            Command::RemoveAdmin { .. } => "remove_admin",
            Command::AddAdminToken(_) => "add_admin_token",
            Command::RemoveAdminToken { .. } => "remove_admin_token",
            Command::RecordAudit(_) => "record_audit",
            Command::CreateVirtualFolder(_) => "create_virtual_folder",
            Command::RemoveVirtualFolder { .. } => "remove_virtual_folder",
            Command::MountFolder(_) => "mount_folder",
            Command::UnmountFolder { .. } => "unmount_folder",
            Command::RecordLogin { .. } => "record_login",
            Command::AddNotifyEndpoint(_) => "add_notify_endpoint",
            Command::RemoveNotifyEndpoint { .. } => "remove_notify_endpoint",
            Command::AddNotifyRule(_) => "add_notify_rule",
            Command::RemoveNotifyRule { .. } => "remove_notify_rule",
            Command::RaiseNotice { .. } => "raise_notice",
            Command::SetRetentionPolicy(_) => "set_retention_policy",
            Command::RemoveRetentionPolicy { .. } => "remove_retention_policy",
            Command::PurgeHistory { .. } => "purge_history",
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Rows inserted, updated or deleted.
    pub rows_changed: usize,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_account_update_keeps_the_stored_form_of_the_variant() {
        // As written before its fields moved into `AccountUpdate`, and
        // before the session cap and password lifecycle added theirs.
        let old = r#"{"UpdateAccount":{"name":"a","password_hash":null,"expires_at":null,"allowed_networks":null,"quota_bytes":null,"quota_files":null,"upload_rate":null,"download_rate":2048}}"#;
        let read: Command = serde_json::from_str(old).unwrap();
        assert_eq!(
            read,
            Command::UpdateAccount(AccountUpdate {
                download_rate: Some(Some(2048)),
                ..AccountUpdate::of("a")
            })
        );
        let written = serde_json::to_string(&read).unwrap();
        assert!(written.starts_with(r#"{"UpdateAccount":{"name":"a","password_hash":null,"#));
        assert!(written.contains(r#""max_sessions":null"#), "{written}");
    }
}
