//! History across servers (active/passive): every change to a history
//! table takes the next number of this store's change sequence (schema
//! migration 8), [`Store::export_history`] hands out the rows changed after
//! a position in pages, and [`Store::merge_history`] merges a peer's rows by
//! id (transfer rows once, events by progress).

use ferry_core::sync::{HistoryPage, MergeCounts, SqlValue, TableData};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, params_from_iter, Connection, TransactionBehavior};

use crate::sync::*;
use crate::{Result, Store, StoreError};

/// The rank of an event status in SQL: further along is higher. Unknown
/// statuses are NULL, so they never win a comparison.
fn status_rank(table: &str) -> String {
    format!(
        "(CASE {table}.\"status\" WHEN 'pending' THEN 0 WHEN 'running' THEN 1 \
         WHEN 'done' THEN 2 WHEN 'failed' THEN 2 END)"
    )
}

/// Rows of one history table for a page, each with its change sequence.
struct TablePage {
    schema: Schema,
    rows: Vec<(i64, Vec<SqlValue>)>,
}

/// Runs `sql`, which selects a table's columns and then its change sequence.
fn sequenced_rows<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    n: usize,
) -> Result<Vec<(i64, Vec<SqlValue>)>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| {
        let values = (0..n)
            .map(|i| r.get::<_, Value>(i).map(from_sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((r.get::<_, i64>(n)?, values))
    })?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

impl Store {
    /// History rows this store inserted or changed after position
    /// `after_seq` of its change sequence, as four tables in
    /// [`HISTORY_TABLES`] order, each in sequence (commit) order, with the
    /// store's id ([`Store::store_id`]).
    ///
    /// At most `limit` rows per table (at least 1). When a table has more,
    /// the page ends at the position of its `limit`-th row (the earliest
    /// such end over the tables), every table holds exactly its rows up to
    /// that position, `last_seq` is it and `more` is set; else `last_seq`
    /// is the newest position this store has handed out. Asking next for the
    /// rows after `last_seq` therefore neither skips nor repeats a change,
    /// whatever the clocks of the servers say. A row changed again after it
    /// was sent comes again, once, at its new position.
    ///
    /// An event's attempts at or before `after_seq` come with it on top of
    /// `limit` (its whole history in one page): a puller that lacked the
    /// event skipped them when they came without it.
    pub fn export_history(&self, after_seq: u64, limit: u32) -> Result<HistoryPage> {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        // Read under `conn`: a restore replaces the id and the rows together.
        let store_id = self.current_store_id();
        let tx = conn.transaction()?;
        let newest: i64 = tx.query_row("SELECT seq FROM change_counter WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        let seq = quote(CHANGE_SEQ);
        let mut pages = Vec::with_capacity(HISTORY_TABLES.len());
        // Where the page ends when a table has more rows than `limit`.
        let mut end: Option<i64> = None;
        for &table in HISTORY_TABLES {
            let schema = Schema::read(&tx, table)?;
            let mut rows = sequenced_rows(
                &tx,
                &format!(
                    "SELECT {}, {seq} FROM {} WHERE {seq} > ?1 ORDER BY {seq} LIMIT ?2",
                    schema.column_list(),
                    quote(table)
                ),
                params![after, fetch],
                schema.columns.len(),
            )?;
            if rows.len() > limit {
                // Positions are unique: the first `limit` rows are exactly
                // this table's rows up to the `limit`-th one's position.
                rows.truncate(limit);
                let through = rows.last().map_or(after, |(s, _)| *s);
                end = Some(end.map_or(through, |e| e.min(through)));
            }
            pages.push(TablePage { schema, rows });
        }
        if let Some(end) = end {
            for page in &mut pages {
                page.rows.retain(|(s, _)| *s <= end);
            }
        }
        // Earlier attempts of the events returned, so a page carries each
        // event's whole history.
        let event_ids: Vec<&str> = pages
            .iter()
            .filter(|p| p.schema.table == "events")
            .flat_map(|p| {
                let id = p.schema.pk.first().copied().unwrap_or(0);
                p.rows.iter().filter_map(move |(_, r)| match r.get(id) {
                    Some(SqlValue::Text(s)) => Some(s.as_str()),
                    _ => None,
                })
            })
            .collect();
        let mut earlier = Vec::new();
        if let Some(attempts) = pages.iter().find(|p| p.schema.table == "event_attempts") {
            if !event_ids.is_empty() && after > 0 {
                let ids = serde_json::to_string(&event_ids)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let s = &attempts.schema;
                earlier = sequenced_rows(
                    &tx,
                    &format!(
                        "SELECT {}, {seq} FROM {} WHERE {seq} <= ?1
                           AND \"event_id\" IN (SELECT value FROM json_each(?2))
                         ORDER BY {seq}",
                        s.column_list(),
                        quote(s.table),
                    ),
                    params![after, ids],
                    s.columns.len(),
                )?;
            }
        }
        tx.commit()?;
        let tables = pages
            .into_iter()
            .map(|p| {
                let extra = if p.schema.table == "event_attempts" {
                    std::mem::take(&mut earlier)
                } else {
                    Vec::new()
                };
                TableData {
                    name: p.schema.table.to_owned(),
                    rows: extra.into_iter().chain(p.rows).map(|(_, r)| r).collect(),
                    columns: p.schema.columns,
                }
            })
            .collect();
        let last = end.unwrap_or(newest);
        Ok(HistoryPage {
            store_id,
            tables,
            last_seq: u64::try_from(last).unwrap_or(0),
            more: end.is_some(),
        })
    }

    /// Merges history rows from another server in one transaction, never
    /// losing a row, and counts the rows written:
    ///
    /// * transfers: inserted when the id is new; a row written by one node is
    ///   never overwritten;
    /// * events: inserted when the id is new; an existing row takes the
    ///   incoming columns only when the incoming row is further along (status
    ///   rank pending < running < done = failed is higher, or equal and its
    ///   `updated_at` is newer), so a done or failed event never goes back;
    /// * event attempts (after events): inserted when `(event_id, attempt)`
    ///   is new; an open local attempt (`ended_at` NULL) takes an ended
    ///   incoming copy; rows whose event does not exist here are skipped;
    /// * schedule firings: inserted when `(schedule, slot)` is new; rows
    ///   whose schedule does not exist here are skipped.
    ///
    /// Rows a retention purge deleted here do not come back: an incoming
    /// row that is not here, is older than this store's horizon for its
    /// kind ([`ferry_core::Command::PurgeHistory`]) and that no unfinished
    /// event (here or in the batch) needs is left out, as is an attempt
    /// whose event was left out that way.
    ///
    /// A row written here takes the next position of this store's change
    /// sequence (so it is passed on to whoever pulls from this server); a
    /// row left as it was takes none.
    ///
    /// Tables are checked as by [`Store::diff_tables`], against
    /// [`HISTORY_TABLES`]. Any error rolls back the whole batch.
    pub fn merge_history(&self, batch: &[TableData]) -> Result<MergeCounts> {
        let mut conn = self.conn();
        let checked = check_incoming(&conn, batch, HISTORY_TABLES, "history")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let horizons = crate::retention::Horizons::read(&tx, &checked)?;
        let mut counts = MergeCounts::default();
        let mut expired = 0u64;
        for c in &checked {
            let s = &c.schema;
            let table = quote(s.table);
            let update = s.update_from_excluded();
            let (sql, parent) = match (s.table, update) {
                ("events", Some(set)) => (
                    format!(
                        "{} DO UPDATE {set} WHERE {new} > {old}
                           OR ({new} = {old} AND excluded.\"updated_at\" > {table}.\"updated_at\")",
                        s.insert_on_conflict(),
                        new = status_rank("excluded"),
                        old = status_rank(&table),
                    ),
                    None,
                ),
                ("event_attempts", Some(set)) => (
                    format!(
                        "{} DO UPDATE {set} WHERE {table}.\"ended_at\" IS NULL
                           AND excluded.\"ended_at\" IS NOT NULL",
                        s.insert_on_conflict()
                    ),
                    Some((
                        s.index_of("event_id")?,
                        r#"SELECT 1 FROM "events" WHERE "id" = ?1"#,
                    )),
                ),
                ("schedule_firings", _) => (
                    format!("{} DO NOTHING", s.insert_on_conflict()),
                    Some((
                        s.index_of("schedule")?,
                        r#"SELECT 1 FROM "schedules" WHERE "name" = ?1"#,
                    )),
                ),
                ("transfers" | "audit", _) => {
                    (format!("{} DO NOTHING", s.insert_on_conflict()), None)
                }
                (other, _) => {
                    return Err(StoreError::Incompatible(format!(
                        "table {other} cannot be merged"
                    )))
                }
            };
            let mut insert = tx.prepare(&sql)?;
            let mut parent_check = match parent {
                Some((i, check)) => Some((i, tx.prepare(check)?)),
                None => None,
            };
            let mut written = 0u64;
            let mut skipped = 0u64;
            for row in &c.data.rows {
                if horizons.expired(&tx, s, row)? {
                    expired += 1;
                    continue;
                }
                if let Some((i, check)) = parent_check.as_mut() {
                    let key = row
                        .get(*i)
                        .map_or(ToSqlOutput::Borrowed(ValueRef::Null), to_sql);
                    if !check.exists([key])? {
                        skipped += 1;
                        continue;
                    }
                }
                let n = insert
                    .execute(params_from_iter(row.iter().map(to_sql)))
                    .map_err(|e| match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(
                            format!("table {}: {e}; nothing was merged", s.table),
                        ),
                        _ => StoreError::Sqlite(e),
                    })?;
                written += n as u64;
            }
            if skipped > 0 {
                tracing::warn!(
                    table = s.table,
                    skipped,
                    "history rows skipped: the row they belong to does not exist here"
                );
            }
            match s.table {
                "transfers" => counts.transfers += written,
                "events" => counts.events += written,
                "event_attempts" => counts.attempts += written,
                "audit" => counts.audit += written,
                _ => counts.firings += written,
            }
        }
        tx.commit()?;
        tracing::info!(
            transfers = counts.transfers,
            events = counts.events,
            attempts = counts.attempts,
            firings = counts.firings,
            expired,
            "merged history"
        );
        Ok(counts)
    }
}
