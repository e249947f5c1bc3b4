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
    /// Audit records that were new here.
    #[serde(default)]
    pub audit: u64,
}

impl MergeCounts {
    /// Adds the counts of another merge to these.
    pub fn add(&mut self, other: &MergeCounts) {
        self.transfers += other.transfers;
        self.events += other.events;
        self.attempts += other.attempts;
        self.firings += other.firings;
        self.audit += other.audit;
    }

    /// Total rows written.
    pub fn total(&self) -> u64 {
        self.transfers + self.events + self.attempts + self.firings + self.audit
    }
}

/// One page of a server's history, as [`HistoryMark`] follows it: the rows
/// changed after a position in that server's store, and the position they
/// reach.
///
/// Positions are the store's change sequence: every insert or change of a
/// history row takes the next number, in commit order, from a counter of
/// that store alone. They mean nothing to another store, nor to the same
/// database after it was replaced or reopened, so a page names the store
/// instance it comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The exporting store instance: new whenever the store is opened or
    /// its contents are replaced (a restored snapshot).
    pub store_id: String,
    /// One table per history table, in merge order.
    pub tables: Vec<TableData>,
    /// Every row changed up to this position was in this page or an
    /// earlier one: ask for the rows after it next.
    pub last_seq: u64,
    /// More rows follow `last_seq` already.
    pub more: bool,
}

/// How far a server has merged one peer's history: the peer's store
/// instance and the last position merged from it. Starts at 0 (everything).
///
/// Pull with [`HistoryMark::after_seq`]; give the answer to
/// [`HistoryMark::accepts`]; merge its rows only if accepted, then
/// [`HistoryMark::advance`]. No clock is involved anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryMark {
    store_id: Option<String>,
    after_seq: u64,
}

impl HistoryMark {
    /// The position to ask for rows after.
    pub fn after_seq(&self) -> u64 {
        self.after_seq
    }

    /// Whether `page`, answered to [`HistoryMark::after_seq`], continues
    /// this mark. It does not when the peer's store is another instance
    /// than the one the mark was made against, or its position went back
    /// (both mean the positions are not comparable): the mark then starts
    /// again at 0 of that store, and the page must be dropped and asked
    /// for again.
    pub fn accepts(&mut self, page: &HistoryPage) -> bool {
        if self.after_seq == 0 {
            // Rows after 0 are every row of whatever store answered.
            return true;
        }
        if self.store_id.as_deref() == Some(page.store_id.as_str())
            && page.last_seq >= self.after_seq
        {
            return true;
        }
        self.store_id = Some(page.store_id.clone());
        self.after_seq = 0;
        false
    }

    /// Moves the mark past an accepted page whose rows were merged.
    pub fn advance(&mut self, page: &HistoryPage) {
        self.store_id = Some(page.store_id.clone());
        self.after_seq = page.last_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(store_id: &str, last_seq: u64) -> HistoryPage {
        HistoryPage {
            store_id: store_id.into(),
            last_seq,
            ..HistoryPage::default()
        }
    }

    #[test]
    fn a_mark_follows_one_store_and_restarts_on_another() {
        let mut mark = HistoryMark::default();
        assert_eq!(mark.after_seq(), 0);
        assert!(mark.accepts(&page("a", 5)));
        mark.advance(&page("a", 5));
        assert_eq!(mark.after_seq(), 5);
        // Nothing new: the same position again.
        assert!(mark.accepts(&page("a", 5)));
        mark.advance(&page("a", 9));
        assert_eq!(mark.after_seq(), 9);

        // The peer's store was replaced: start again from its beginning.
        assert!(!mark.accepts(&page("b", 20)));
        assert_eq!(mark.after_seq(), 0);
        assert!(mark.accepts(&page("b", 20)));
        mark.advance(&page("b", 20));

        // The same store id but a position that went back: not comparable.
        assert!(!mark.accepts(&page("b", 3)));
        assert_eq!(mark.after_seq(), 0);
    }
}
