//! Error kinds shared by every crate.
//!
//! A [`FerryError`] carries a [`ErrorKind`] that decides the wire answer (SFTP status
//! code, HTTP status, internal-protocol error) and a message that is safe to show to
//! the peer: it never contains a real filesystem path or a secret.

use serde::{Deserialize, Serialize};

/// What went wrong, in terms a protocol front-end can translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The file, directory or record does not exist.
    NotFound,
    /// The caller may not do this (confinement, reserved name, disabled account).
    PermissionDenied,
    /// The target already exists.
    AlreadyExists,
    /// The request is malformed or names an invalid path.
    InvalidInput,
    /// A directory was expected and a file found, or the reverse.
    WrongType,
    /// The directory is not empty.
    NotEmpty,
    /// Credentials were not accepted. Deliberately carries no detail.
    AuthFailed,
    /// The repository has no space left.
    NoSpace,
    /// The operation is not supported.
    Unsupported,
    /// A back-end server or the repository is not available right now.
    Unavailable,
    /// The resource is busy (for instance an upload in progress elsewhere).
    Busy,
    /// The request does not fit the current state (a resumable upload's
    /// offset differs from the one the client sent).
    Conflict,
    /// Data did not match the checksum the client sent with it; none of it was kept.
    ChecksumMismatch,
    /// Anything else; the message says what.
    Internal,
    /// The change may or may not have been made (the cluster's answer was
    /// lost, or it did not come in time while the change was in its log):
    /// check, or retry with the same idempotency key.
    OutcomeUnknown,
}

/// An error with a kind and a message safe to show to a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct FerryError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// A human-readable explanation, without real paths or secrets.
    pub message: String,
}

impl FerryError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A missing file or record.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A refused operation.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Something needed is not reachable right now; a retry may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The one answer given for every failed login, whatever the reason.
    pub fn auth_failed() -> Self {
        Self::new(ErrorKind::AuthFailed, "authentication failed")
    }
}

impl From<crate::path::PathError> for FerryError {
    fn from(e: crate::path::PathError) -> Self {
        let kind = match e {
            crate::path::PathError::Reserved(_) => ErrorKind::PermissionDenied,
            _ => ErrorKind::InvalidInput,
        };
        Self::new(kind, e.to_string())
    }
}
