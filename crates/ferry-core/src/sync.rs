//! Plain data moved between servers in active/passive mode: whole tables for
//! `ferry sync`, and history rows (transfer log, events) merged after a
//! failover. Rows travel as SQL values with their column names, so the
//! receiving side can check that both releases store the table the same way
//! before it applies anything.

use serde::{Deserialize, Serialize};

/// Format version of a sync or merge payload. Bump it when the framing of
/// [`TableData`] changes; a standby refuses a payload it does not understand.
pub const SYNC_FORMAT_VERSION: u16 = 1;

/// One SQLite value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The rows of one table, with its column names in table order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableData {
    /// Table name.
    pub name: String,
    /// Column names, in the order of each row's values.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<SqlValue>>,
}

/// What applying a table would change, or changed, on the receiving side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDiff {
    /// Table name.
    pub table: String,
    /// Rows whose key is new.
    pub added: u64,
    /// Rows whose key exists with other values.
    pub changed: u64,
    /// Rows whose key is no longer sent.
    pub removed: u64,
    /// Rows equal on both sides.
    pub unchanged: u64,
}

impl TableDiff {
    /// Whether applying the table changes anything.
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.changed == 0 && self.removed == 0
    }
}

/// What merging history rows did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeCounts {
    /// Transfer-log rows that were new here.
    pub transfers: u64,
    /// Events that were new here, or newer than the copy here.
    pub events: u64,
    /// Event attempts that were new here.
    pub attempts: u64,
    /// Schedule firings that were new here.
    pub firings: u64,
}

impl MergeCounts {
    /// Adds the counts of another merge to these.
    pub fn add(&mut self, other: &MergeCounts) {
        self.transfers += other.transfers;
        self.events += other.events;
        self.attempts += other.attempts;
        self.firings += other.firings;
    }

    /// Total rows written.
    pub fn total(&self) -> u64 {
        self.transfers + self.events + self.attempts + self.firings
    }
}
