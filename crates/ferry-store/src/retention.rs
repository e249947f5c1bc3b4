//! Retention: the policies, the deletion of old history rows that no
//! unfinished event needs, the horizon a history merge holds incoming rows
//! against, and the transfer report (counts per group and period).
//!
//! The rule of what an unfinished event (pending, running; a retrying
//! event is pending) needs is written once, as SQL below, and used by the
//! purge, its dry run and the merge alike.

use ferry_core::retention::{FileAction, RetentionKind, RetentionPolicy};
use ferry_core::sync::SqlValue;
use ferry_core::{Command, UnixMillis};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, Store, StoreError};

/// Statuses of an event that is not finished.
const UNFINISHED: &str = "('pending', 'running')";

/// A transfer row `t` an unfinished event needs: the row it was queued
/// for, or a row of its work.
fn transfer_needed(t: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM events u WHERE u.status IN {UNFINISHED}
                   AND (u.transfer_id = {t}.id OR u.id = {t}.event_id))"
    )
}

/// The rows of `kind` a purge with `before` may delete, oldest first: a
/// `SELECT` of their `rid` (rowid) and `shown` (an id to show).
fn candidates_sql(kind: RetentionKind) -> Result<String> {
    Ok(match kind {
        RetentionKind::Transfers => format!(
            "SELECT t.rowid AS rid, t.id AS shown FROM transfers t
             WHERE t.ended_at < ?1 AND NOT {}
             ORDER BY t.ended_at, t.id",
            transfer_needed("t")
        ),
        RetentionKind::Events => format!(
            "SELECT e.rowid AS rid, e.id AS shown FROM events e
             WHERE e.status IN ('done', 'failed') AND e.updated_at < ?1
               AND NOT EXISTS (SELECT 1 FROM events u WHERE u.status IN {UNFINISHED}
                                 AND u.resubmit_of = e.id)
             ORDER BY e.updated_at, e.id"
        ),
        RetentionKind::Attempts => "SELECT a.rowid AS rid, a.event_id || '#' || a.attempt AS shown
             FROM event_attempts a JOIN events e ON e.id = a.event_id
             WHERE a.ended_at IS NOT NULL AND a.ended_at < ?1
               AND e.status IN ('done', 'failed')
             ORDER BY a.ended_at, a.event_id, a.attempt"
            .to_owned(),
        other => {
            return Err(StoreError::Conflict(format!(
                "{other} is not a kind of history row"
            )))
        }
    })
}

/// The table a kind's rows are in.
fn table_of(kind: RetentionKind) -> &'static str {
    match kind {
        RetentionKind::Events => "events",
        RetentionKind::Attempts => "event_attempts",
        _ => "transfers",
    }
}

/// Applies a retention command inside `tx`; the rows it changed.
pub(crate) fn apply(tx: &Connection, command: &Command) -> Result<usize> {
    match command {
        Command::SetRetentionPolicy(p) => {
            p.check().map_err(|e| StoreError::Conflict(e.message))?;
            Ok(tx.execute(
                "INSERT INTO retention_policies
                   (name, kind, older_than_ms, account, folder, action, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(name) DO UPDATE SET kind = excluded.kind,
                   older_than_ms = excluded.older_than_ms, account = excluded.account,
                   folder = excluded.folder, action = excluded.action,
                   created_at = excluded.created_at",
                params![
                    p.name,
                    p.kind.as_str(),
                    p.older_than_ms,
                    p.account,
                    p.folder,
                    p.action.as_ref().map(ToString::to_string),
                    p.created_at
                ],
            )?)
        }
        Command::RemoveRetentionPolicy { name } => {
            let n = tx.execute("DELETE FROM retention_policies WHERE name = ?1", [name])?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("retention policy {name:?}")));
            }
            Ok(n)
        }
        Command::PurgeHistory {
            kind,
            before,
            limit,
        } => purge(tx, *kind, *before, *limit),
        other => Err(StoreError::Corrupt(format!(
            "command {} is not a retention command",
            other.name()
        ))),
    }
}

fn purge(tx: &Connection, kind: RetentionKind, before: UnixMillis, limit: u32) -> Result<usize> {
    let candidates = candidates_sql(kind)?;
    let table = table_of(kind);
    // An event's attempts go with it (ON DELETE CASCADE).
    let n = tx.execute(
        &format!(
            "DELETE FROM {table} WHERE rowid IN
               (SELECT rid FROM ({candidates} LIMIT ?2))"
        ),
        params![before, limit],
    )?;
    tx.execute(
        "INSERT INTO retention_horizons (kind, before) VALUES (?1, ?2)
         ON CONFLICT(kind) DO UPDATE SET before = max(before, excluded.before)",
        params![kind.as_str(), before],
    )?;
    Ok(n)
}

/// The horizon of `kind` in this store: history rows of that kind from
/// before it that nothing needs were deleted here and are not merged back.
pub(crate) fn horizon(conn: &Connection, kind: RetentionKind) -> Result<Option<UnixMillis>> {
    Ok(conn
        .query_row(
            "SELECT before FROM retention_horizons WHERE kind = ?1",
            [kind.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Whether an unfinished event of this store needs the transfer row `id`
/// (made for event `event_id`, if any).
pub(crate) fn transfer_is_needed(
    conn: &Connection,
    id: &str,
    event_id: Option<&str>,
) -> Result<bool> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT 1 FROM events u WHERE u.status IN {UNFINISHED}
                   AND (u.transfer_id = ?1 OR u.id = ?2) LIMIT 1"
            ),
            params![id, event_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// What a purge would delete now ([`Store::purge_candidates`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeCandidates {
    /// How many rows.
    pub count: u64,
    /// The ids of the first of them (attempts as `EVENT#N`), oldest first.
    pub ids: Vec<String>,
}

/// Groups of the transfer report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportBy {
    /// The account.
    Account,
    /// The partner pushed to or pulled from ("" for others).
    Partner,
    /// The route whose event made the transfer ("" for others).
    Route,
}

/// One line of the transfer report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// Start of the period, unix ms (UTC).
    pub period: UnixMillis,
    /// The group ("" where the transfer has none).
    pub group: String,
    /// Transfers that started in the period.
    pub transfers: u64,
    /// Of them, completed.
    pub completed: u64,
    /// Of them, failed or interrupted.
    pub failures: u64,
    /// Bytes they moved.
    pub bytes: u64,
}

impl Store {
    /// Every retention policy, by name.
    pub fn retention_policies(&self) -> Result<Vec<RetentionPolicy>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, kind, older_than_ms, account, folder, action, created_at
             FROM retention_policies ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(1)?;
            let action: Option<String> = r.get(5)?;
            Ok(RetentionPolicy {
                name: r.get(0)?,
                kind: kind.parse().map_err(|e| crate::bad_text(1, e))?,
                older_than_ms: r.get(2)?,
                account: r.get(3)?,
                folder: r.get(4)?,
                action: action
                    .map(|a| a.parse::<FileAction>())
                    .transpose()
                    .map_err(|e| crate::bad_text(5, e))?,
                created_at: r.get(6)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The history rows of `kind` that [`Command::PurgeHistory`] with
    /// `before` would delete (all of them, over as many commands as it
    /// takes): their number and the ids of the first `show` (a dry run).
    pub fn purge_candidates(
        &self,
        kind: RetentionKind,
        before: UnixMillis,
        show: u32,
    ) -> Result<PurgeCandidates> {
        let candidates = candidates_sql(kind)?;
        let conn = self.conn();
        let count: i64 = conn.query_row(
            &format!("SELECT count(*) FROM ({candidates})"),
            [before],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!("{candidates} LIMIT ?2"))?;
        let ids = stmt
            .query_map(params![before, show], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(PurgeCandidates {
            count: u64::try_from(count).unwrap_or(0),
            ids,
        })
    }

    /// The transfer report: per period of `period_ms` (UTC, from the
    /// epoch) and group, the transfers that started in `[since, until)`,
    /// oldest period first, groups by name.
    pub fn transfer_report(
        &self,
        by: ReportBy,
        period_ms: i64,
        since: UnixMillis,
        until: UnixMillis,
    ) -> Result<Vec<ReportLine>> {
        let group = match by {
            ReportBy::Account => "t.account",
            ReportBy::Partner => "COALESCE(t.partner, '')",
            ReportBy::Route => {
                "COALESCE((SELECT e.route FROM events e WHERE e.id = t.event_id), '')"
            }
        };
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT t.started_at - (t.started_at % ?1) AS period, {group} AS grp,
                    count(*), sum(t.status = 'completed'), sum(t.status <> 'completed'),
                    sum(t.bytes)
             FROM transfers t
             WHERE t.started_at >= ?2 AND t.started_at < ?3
             GROUP BY period, grp ORDER BY period, grp"
        ))?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map(params![period_ms.max(1), since, until], |r| {
            Ok(ReportLine {
                period: r.get(0)?,
                group: r.get(1)?,
                transfers: count(r.get(2)?),
                completed: count(r.get(3)?),
                failures: count(r.get(4)?),
                bytes: count(r.get(5)?),
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }
}

/// The horizons of a store, for a history merge: which incoming rows were
/// deleted here by a purge and must not come back.
pub(crate) struct Horizons {
    transfers: Option<UnixMillis>,
    events: Option<UnixMillis>,
    attempts: Option<UnixMillis>,
    /// Transfer ids and event ids unfinished events of the incoming batch
    /// need (they are merged after the transfers).
    incoming_needs: std::collections::HashSet<String>,
}

fn text(v: Option<&SqlValue>) -> Option<&str> {
    match v {
        Some(SqlValue::Text(s)) => Some(s),
        _ => None,
    }
}

fn integer(v: Option<&SqlValue>) -> Option<i64> {
    match v {
        Some(SqlValue::Integer(i)) => Some(*i),
        _ => None,
    }
}

impl Horizons {
    /// This store's horizons, and what the incoming batch's unfinished
    /// events need.
    pub(crate) fn read(conn: &Connection, batch: &[crate::sync::Checked<'_>]) -> Result<Self> {
        let mut incoming_needs = std::collections::HashSet::new();
        if let Some(events) = batch.iter().find(|c| c.schema.table == "events") {
            let s = &events.schema;
            let (id, transfer, status) = (
                s.index_of("id")?,
                s.index_of("transfer_id")?,
                s.index_of("status")?,
            );
            for row in &events.data.rows {
                if matches!(text(row.get(status)), Some("pending" | "running")) {
                    incoming_needs.extend(text(row.get(id)).map(str::to_owned));
                    incoming_needs.extend(text(row.get(transfer)).map(str::to_owned));
                }
            }
        }
        Ok(Self {
            transfers: horizon(conn, RetentionKind::Transfers)?,
            events: horizon(conn, RetentionKind::Events)?,
            attempts: horizon(conn, RetentionKind::Attempts)?,
            incoming_needs,
        })
    }

    /// Whether the incoming `row` of `schema`'s table is one a purge
    /// deleted here (or would have): below the horizon of its kind, not
    /// here, and needed by no unfinished event. A row that is here is
    /// always merged as usual.
    pub(crate) fn expired(
        &self,
        conn: &Connection,
        schema: &crate::sync::Schema,
        row: &[SqlValue],
    ) -> Result<bool> {
        let col = |name: &str| -> Result<Option<&SqlValue>> { Ok(row.get(schema.index_of(name)?)) };
        let below = |at: Option<i64>, horizon: Option<UnixMillis>| matches!((at, horizon), (Some(at), Some(h)) if at < h);
        match schema.table {
            "transfers" => {
                let id = text(col("id")?).unwrap_or_default();
                let event = text(col("event_id")?);
                if !below(integer(col("ended_at")?), self.transfers)
                    || self.incoming_needs.contains(id)
                    || event.is_some_and(|e| self.incoming_needs.contains(e))
                {
                    return Ok(false);
                }
                let here = conn
                    .query_row("SELECT 1 FROM transfers WHERE id = ?1", [id], |_| Ok(()))
                    .optional()?
                    .is_some();
                Ok(!here && !transfer_is_needed(conn, id, event)?)
            }
            "events" => {
                if !below(integer(col("updated_at")?), self.events)
                    || !matches!(text(col("status")?), Some("done" | "failed"))
                {
                    return Ok(false);
                }
                let id = text(col("id")?).unwrap_or_default();
                let here = conn
                    .query_row("SELECT 1 FROM events WHERE id = ?1", [id], |_| Ok(()))
                    .optional()?
                    .is_some();
                Ok(!here)
            }
            "event_attempts" => {
                let ended = integer(col("ended_at")?);
                if !below(ended, self.attempts) && !below(ended, self.events) {
                    return Ok(false);
                }
                let event = text(col("event_id")?).unwrap_or_default();
                let attempt = integer(col("attempt")?).unwrap_or_default();
                let (here, event_status): (bool, Option<String>) = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM event_attempts
                                     WHERE event_id = ?1 AND attempt = ?2),
                            (SELECT status FROM events WHERE id = ?1)",
                    params![event, attempt],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok(!here
                    && match event_status.as_deref() {
                        // Its event went with its attempts (events are
                        // merged first: an event not here was not taken).
                        None => below(ended, self.events),
                        Some("done" | "failed") => below(ended, self.attempts),
                        Some(_) => false,
                    })
            }
            _ => Ok(false),
        }
    }
}
