//! Ferry's domain types, without I/O.
//!
//! * [`path`] — the one place where client paths are canonicalised.
//! * [`admins`] — named admins, roles, the audit trail.
//! * [`command`] — every change to shared state, as a serializable value.
//! * [`model`] — accounts, keys and transfer records as stored and replicated.
//! * [`network`] — allowed and denied client networks.
//! * [`notify`] — notification endpoints, rules and what a notice says.
//! * [`permissions`] — what an account may do in each folder of its home.
//! * [`engine`] — partners, routes, schedules, monitors and queued events.
//! * [`error`] — the error kinds every crate maps onto its wire answers.
//! * [`secret`] — a newtype that never prints its content.
//! * [`sync`] — tables and history rows moved between active/passive servers.
//! * [`retention`] — how long history rows and files are kept.
//! * [`release`] — this release, and the cluster's feature level.

pub mod admins;
pub mod command;
pub mod engine;
pub mod error;
pub mod folders;
pub mod limits;
pub mod logging;
pub mod model;
pub mod network;
pub mod notify;
pub mod path;
pub mod permissions;
pub mod release;
pub mod retention;
pub mod secret;
pub mod sync;
pub mod worker;

pub use admins::{Admin, AdminToken, AuditRecord, Role};
pub use command::{
    AccountUpdate, Ban, Command, Outcome, COMMAND_FORMAT_VERSION, IDEMPOTENCY_KEY_TTL_MS,
};
pub use engine::{
    Action, AfterPull, AttemptResult, Event, EventAttempt, EventKind, EventStatus, Monitor,
    Partner, Route, Schedule, ScheduleAction,
};
pub use error::{ErrorKind, FerryError};
pub use folders::{Mount, VirtualFolder};
pub use model::{
    Account, AccountKey, AccountPolicy, AccountToken, Direction, IdleLimit, Protocol,
    TransferRecord, TransferStatus, IDLE_LIMIT_SETTING, PASSWORD_CHANGE_REQUIRED,
    PASSWORD_HISTORY_LEN, WEB_SESSION_ID_PREFIX, WEB_SESSION_TOKEN_PREFIX,
};
pub use notify::{Notice, NotifyEndpoint, NotifyRule, NotifyTarget, SmtpTls, Trigger, TriggerKind};
pub use path::{PathError, VirtualPath};
pub use permissions::{FolderRule, Permission, Permissions};
pub use retention::{FileAction, RetentionKind, RetentionPolicy};
pub use secret::Secret;

/// Milliseconds since the Unix epoch, the timestamp unit of every record.
pub type UnixMillis = i64;
