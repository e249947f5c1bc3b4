//! Every change to shared state is a [`Command`] applied by the store's one
//! `apply` function. Commands are plain data: they carry ids, hashes and
//! timestamps chosen by the proposer, so applying one is deterministic on any
//! node, whether directly (single node) or from a replicated log.

use serde::{Deserialize, Serialize};

use crate::model::{Account, AccountKey, AccountToken, TransferRecord};

/// Format version of [`Command`] as serialized. Bump it when a variant changes
/// shape; nodes refuse commands newer than they understand.
pub const COMMAND_FORMAT_VERSION: u16 = 1;

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
    /// Record a finished (completed, interrupted or failed) transfer.
    RecordTransfer(TransferRecord),
}

impl Command {
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
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Rows inserted, updated or deleted.
    pub rows_changed: usize,
}
