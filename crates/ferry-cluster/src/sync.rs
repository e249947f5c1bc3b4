//! `ferry sync`: the active server copies the tables and files its
//! manifests list to standbys, from one consistent snapshot and without
//! pausing service; each standby checks that it can take them, then applies
//! everything at once (one transaction, files renamed into place after it
//! commits) after keeping a backup of what it replaces. Anything short of
//! the final commit — a refused check, a broken connection, a bad row —
//! leaves the standby exactly as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::sync::{SqlValue, TableData, SYNC_FORMAT_VERSION};
use ferry_core::{ErrorKind, FerryError};
use ferry_proto::cluster::{
    ClusterRequest, ClusterResponse, NodeRole, PeerStatus, SyncBegin, SyncRecord, SyncReport,
    TableHeader,
};
use ferry_proto::message::{Request, Response};
use ferry_store::sync::SYNCABLE_TABLES;
use ferry_store::Store;
use serde::Serialize;
use sha2::Digest;

use crate::events::{now_ms, Severity};
use crate::manifest::Manifests;
use crate::node::Node;

/// Rows per message; a message stays well under the frame limit.
const ROWS_PER_CHUNK: usize = 2_000;
/// Bytes of row data per message, roughly.
const BYTES_PER_CHUNK: usize = 1 << 20;
/// Largest configuration file a sync carries.
pub const MAX_FILE_BYTES: u64 = 2 << 20;

/// A progress line of a running sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncProgress {
    /// The standby being synced.
    pub target: String,
    /// What is being sent.
    pub what: String,
    /// Rows or files sent so far.
    pub done: u64,
    /// Of how many.
    pub total: u64,
}

/// The outcome for one standby.
#[derive(Debug, Clone, Serialize)]
pub struct TargetOutcome {
    /// The standby.
    pub node: String,
    /// What changed (or would), when it worked.
    pub report: Option<SyncReport>,
    /// Why it did not, when it did not. The standby is unchanged then.
    pub error: Option<String>,
}

/// What the active server sends: taken once, sent to every target.
struct Payload {
    begin: SyncBegin,
    tables: Vec<TableData>,
    files: Vec<(String, Vec<u8>)>,
}

fn sync_error(message: impl Into<String>) -> FerryError {
    FerryError::new(ErrorKind::Conflict, message)
}

impl Node {
    fn sync_dir(&self) -> PathBuf {
        self.config_dir.join(&self.config.sync_dir)
    }

    /// The manifests of this server, validated.
    pub fn manifests(&self) -> Result<Manifests, FerryError> {
        Manifests::load(&self.sync_dir(), &self.own_config)
            .map_err(|e| FerryError::invalid(format!("sync manifest: {e}")))
    }

    /// `ferry sync`: sends the manifests' tables and files to `targets`
    /// (every standby when empty). Progress goes to `progress`.
    pub async fn sync(
        self: &Arc<Self>,
        targets: Vec<String>,
        dry_run: bool,
        progress: tokio::sync::mpsc::UnboundedSender<SyncProgress>,
    ) -> Result<Vec<TargetOutcome>, FerryError> {
        let view = self.view();
        if view.role != NodeRole::Active || !view.ready {
            return Err(sync_error(format!(
                "only the active server syncs, and this one is not serving as active ({}); run `ferry sync` on the active server",
                self.not_serving_reason().unwrap_or_else(|| "not active".into())
            )));
        }
        let standbys: Vec<&str> = self
            .peers
            .iter()
            .filter(|p| !p.config.witness)
            .map(|p| p.config.id.as_str())
            .collect();
        for t in &targets {
            if !standbys.contains(&t.as_str()) {
                return Err(FerryError::invalid(format!(
                    "{t:?} is not a server of this cluster (servers: {})",
                    standbys.join(", ")
                )));
            }
        }
        let targets: Vec<String> = if targets.is_empty() {
            standbys.iter().map(|s| (*s).to_owned()).collect()
        } else {
            targets
        };
        let _one_at_a_time = self.sync_lock.lock().await;
        let manifests = self.manifests()?;
        let node = self.clone();
        let payload = tokio::task::spawn_blocking(move || node.take_snapshot(&manifests, dry_run))
            .await
            .map_err(|e| FerryError::internal(format!("snapshot task: {e}")))??;
        let mut outcomes = Vec::new();
        for target in targets {
            let result = self.send_to(&target, &payload, &progress).await;
            match &result {
                Ok(report) => self.events.record(
                    Severity::Info,
                    "sync",
                    format!(
                        "{} {} to {target}: {}",
                        if dry_run { "compared sync" } else { "synced" },
                        payload.begin.sync_id,
                        summary(report)
                    ),
                ),
                Err(e) => self.events.record(
                    Severity::Alert,
                    "sync",
                    format!("sync {} to {target} failed: {e}", payload.begin.sync_id),
                ),
            }
            outcomes.push(match result {
                Ok(report) => TargetOutcome {
                    node: target,
                    report: Some(report),
                    error: None,
                },
                Err(e) => TargetOutcome {
                    node: target,
                    report: None,
                    error: Some(e),
                },
            });
        }
        Ok(outcomes)
    }

    /// One consistent snapshot of the listed tables (SQLite's backup API
    /// copies the database while writers go on), and the listed files.
    fn take_snapshot(&self, manifests: &Manifests, dry_run: bool) -> Result<Payload, FerryError> {
        let sync_id = uuid::Uuid::now_v7().to_string();
        let file = self.state_dir.join(format!(".sync-snapshot-{sync_id}.db"));
        let taken = self
            .store
            .snapshot_to(&file)
            .map_err(|e| FerryError::internal(format!("cannot snapshot the store: {e}")));
        let tables: Vec<&str> = manifests.tables.iter().map(String::as_str).collect();
        let read = taken.and_then(|()| {
            ferry_store::sync::read_snapshot_tables(&file, &tables)
                .map_err(|e| FerryError::internal(format!("cannot read the snapshot: {e}")))
        });
        for leftover in [file.clone(), wal_of(&file, "-wal"), wal_of(&file, "-shm")] {
            let _ = std::fs::remove_file(leftover);
        }
        let tables = read?;
        let mut files = Vec::new();
        let names = manifests
            .matching_files(&self.config_dir)
            .map_err(|e| FerryError::internal(format!("cannot list the config directory: {e}")))?;
        for name in names {
            let path = self.config_dir.join(&name);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size > MAX_FILE_BYTES {
                return Err(FerryError::invalid(format!(
                    "{name} is {size} bytes; a sync carries configuration files up to {MAX_FILE_BYTES} bytes"
                )));
            }
            let data = std::fs::read(&path)
                .map_err(|e| FerryError::internal(format!("cannot read {name}: {e}")))?;
            files.push((name, data));
        }
        let begin = SyncBegin {
            sync_id,
            from: self.node_id.clone(),
            epoch: self.view().epoch,
            software: crate::SOFTWARE.into(),
            schema_version: self
                .store
                .schema_version()
                .map_err(|e| FerryError::internal(e.to_string()))?,
            sync_format: SYNC_FORMAT_VERSION,
            secret_key_id: self.secret_key_id.clone(),
            dry_run,
            tables: tables
                .iter()
                .map(|t| TableHeader {
                    name: t.name.clone(),
                    columns: t.columns.clone(),
                    rows: t.rows.len() as u64,
                })
                .collect(),
            files: files
                .iter()
                .map(|(n, d)| (n.clone(), d.len() as u64))
                .collect(),
        };
        Ok(Payload {
            begin,
            tables,
            files,
        })
    }

    async fn send_to(
        &self,
        target: &str,
        payload: &Payload,
        progress: &tokio::sync::mpsc::UnboundedSender<SyncProgress>,
    ) -> Result<SyncReport, String> {
        let peer = self
            .peer(target)
            .ok_or_else(|| format!("{target} is not a peer"))?;
        // A connection of its own: heartbeats must not wait behind a sync.
        let conn = self.connect(peer, Duration::from_secs(10)).await?;
        let ask = |request: ClusterRequest| {
            let conn = conn.clone();
            async move {
                match tokio::time::timeout(
                    Duration::from_secs(120),
                    conn.call(Request::Cluster(request)),
                )
                .await
                {
                    Err(_) => Err(format!("{target} did not answer in time")),
                    Ok(Err(e)) => Err(format!("connection to {target} failed: {e}")),
                    Ok(Ok(Response::Cluster(r))) => Ok(r),
                    Ok(Ok(Response::Error(e))) => Err(format!("{target} refused: {}", e.message)),
                    Ok(Ok(other)) => Err(format!("{target}: unexpected answer {other:?}")),
                }
            }
        };
        ask(ClusterRequest::SyncBegin(payload.begin.clone())).await?;
        for table in &payload.tables {
            let total = table.rows.len() as u64;
            let mut sent = 0u64;
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            let mut rows = table.rows.iter().peekable();
            while let Some(row) = rows.next() {
                bytes += row.iter().map(value_size).sum::<usize>();
                chunk.push(row.clone());
                if chunk.len() >= ROWS_PER_CHUNK
                    || bytes >= BYTES_PER_CHUNK
                    || rows.peek().is_none()
                {
                    sent += chunk.len() as u64;
                    ask(ClusterRequest::SyncRows {
                        table: table.name.clone(),
                        rows: std::mem::take(&mut chunk),
                    })
                    .await?;
                    bytes = 0;
                    let _ = progress.send(SyncProgress {
                        target: target.to_owned(),
                        what: format!("table {}", table.name),
                        done: sent,
                        total,
                    });
                }
            }
        }
        let total = payload.files.len() as u64;
        for (i, (path, data)) in payload.files.iter().enumerate() {
            ask(ClusterRequest::SyncFile {
                path: path.clone(),
                data: data.clone(),
            })
            .await?;
            let _ = progress.send(SyncProgress {
                target: target.to_owned(),
                what: "files".into(),
                done: i as u64 + 1,
                total,
            });
        }
        match ask(ClusterRequest::SyncCommit).await? {
            ClusterResponse::SyncDone(report) => Ok(report),
            other => Err(format!("{target}: unexpected answer {other:?}")),
        }
    }

    // ---- the standby side --------------------------------------------

    /// Checks a sync's opening against this server; the error is the
    /// refusal the active server shows its operator.
    pub(crate) fn check_begin(&self, begin: &SyncBegin) -> Result<Manifests, FerryError> {
        let view = self.view();
        let state = self.state();
        if self.witness {
            return Err(sync_error(format!(
                "{} is a witness: it takes no sync",
                self.node_id
            )));
        }
        if view.role == NodeRole::Active {
            return Err(sync_error(format!(
                "{} is itself active (epoch {}); a sync goes from the active server to standbys",
                self.node_id, view.epoch
            )));
        }
        if begin.epoch < state.epoch {
            return Err(sync_error(format!(
                "{} is in epoch {}, but {} is active in epoch {}: a server that is no longer active cannot sync",
                begin.from,
                begin.epoch,
                state.active.as_deref().unwrap_or("another server"),
                state.epoch
            )));
        }
        if begin.sync_format != SYNC_FORMAT_VERSION {
            return Err(sync_error(format!(
                "incompatible releases: {} sends sync format {} ({}), {} reads format {} ({}); upgrade both to the same release",
                begin.from, begin.sync_format, begin.software, self.node_id, SYNC_FORMAT_VERSION, crate::SOFTWARE
            )));
        }
        let schema = self
            .store
            .schema_version()
            .map_err(|e| FerryError::internal(e.to_string()))?;
        if begin.schema_version != schema {
            return Err(sync_error(format!(
                "incompatible releases: {} has store schema {} ({}), {} has schema {} ({}); upgrade both to the same release",
                begin.from, begin.schema_version, begin.software, self.node_id, schema, crate::SOFTWARE
            )));
        }
        for table in &begin.tables {
            if !SYNCABLE_TABLES.contains(&table.name.as_str()) {
                return Err(sync_error(format!("table {} cannot be synced", table.name)));
            }
            let mine = self
                .store
                .table_columns(&table.name)
                .map_err(|e| sync_error(e.to_string()))?;
            if mine != table.columns {
                return Err(sync_error(format!(
                    "incompatible releases: table {} has columns [{}] on {} ({}) and [{}] on {} ({})",
                    table.name,
                    table.columns.join(", "),
                    begin.from,
                    begin.software,
                    mine.join(", "),
                    self.node_id,
                    crate::SOFTWARE
                )));
            }
        }
        if begin.tables.iter().any(|t| t.name == "partners")
            && begin.secret_key_id != self.secret_key_id
        {
            return Err(sync_error(format!(
                "{} seals partner credentials with another key than {}; copy the active server's secret key file to this server first (partner passwords would not open here)",
                self.node_id, begin.from
            )));
        }
        let manifests = self.manifests()?;
        for (path, size) in &begin.files {
            manifests
                .check_incoming_path(path)
                .map_err(|e| sync_error(format!("file {path:?}: {e}")))?;
            if *size > MAX_FILE_BYTES {
                return Err(sync_error(format!(
                    "file {path:?} is too large ({size} bytes)"
                )));
            }
        }
        Ok(manifests)
    }

    /// Applies (or compares) a fully received sync.
    pub(crate) fn finish_sync(&self, incoming: Incoming) -> Result<SyncReport, FerryError> {
        let Incoming {
            begin,
            tables,
            files,
            ..
        } = incoming;
        for header in &begin.tables {
            let got = tables.get(&header.name).map_or(0, |t| t.rows.len() as u64);
            if got != header.rows {
                return Err(sync_error(format!(
                    "table {}: {} rows announced, {got} received; nothing applied",
                    header.name, header.rows
                )));
            }
        }
        if files.len() != begin.files.len() {
            return Err(sync_error(format!(
                "{} files announced, {} received; nothing applied",
                begin.files.len(),
                files.len()
            )));
        }
        let tables: Vec<TableData> = begin
            .tables
            .iter()
            .filter_map(|h| tables.get(&h.name).cloned())
            .collect();
        let mut files_changed = Vec::new();
        let mut files_unchanged = 0u64;
        for (path, data) in &files {
            match std::fs::read(self.config_dir.join(path)) {
                Ok(old) if &old == data => files_unchanged += 1,
                _ => files_changed.push(path.clone()),
            }
        }
        if begin.dry_run {
            let diffs = self
                .store
                .diff_tables(&tables)
                .map_err(|e| sync_error(e.to_string()))?;
            return Ok(SyncReport {
                node: self.node_id.clone(),
                sync_id: begin.sync_id,
                dry_run: true,
                tables: diffs,
                files_changed,
                files_unchanged,
                backup: None,
            });
        }
        let stamp = now_ms();
        let backup_dir = self
            .state_dir
            .join("sync-backups")
            .join(format!("{stamp}-{}", &begin.sync_id));
        std::fs::create_dir_all(&backup_dir).map_err(|e| {
            FerryError::internal(format!("cannot create {}: {e}", backup_dir.display()))
        })?;
        // Stage the files first: a full disk fails here, before anything changed.
        let mut staged = Vec::new();
        let staging = stage_files(
            &self.config_dir,
            &backup_dir,
            &files_changed,
            &files,
            &mut staged,
        );
        let applied = staging.and_then(|()| {
            self.store
                .apply_tables(&tables, &backup_dir.join("store.db"))
                .map_err(|e| sync_error(format!("nothing applied: {e}")))
        });
        let diffs = match applied {
            Ok(d) => d,
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                let _ = std::fs::remove_dir_all(&backup_dir);
                return Err(e);
            }
        };
        for (tmp, target) in &staged {
            if let Err(e) = std::fs::rename(tmp, target) {
                tracing::error!(file = %target.display(), error = %e, "cannot put a synced file in place");
            }
        }
        let record = SyncRecord {
            sync_id: begin.sync_id.clone(),
            from: begin.from.clone(),
            at: now_ms(),
            epoch: begin.epoch,
        };
        if let Err(e) = self.update_state(|s| {
            s.last_sync = Some(record.clone());
            if begin.epoch > s.epoch {
                s.epoch = begin.epoch;
                s.active = Some(begin.from.clone());
            }
        }) {
            tracing::error!(error = %e, "cannot record the sync");
        }
        let report = SyncReport {
            node: self.node_id.clone(),
            sync_id: begin.sync_id,
            dry_run: false,
            tables: diffs,
            files_changed,
            files_unchanged,
            backup: Some(backup_dir.display().to_string()),
        };
        self.events.record(
            Severity::Info,
            "sync",
            format!(
                "applied sync {} from {}: {}",
                report.sync_id,
                begin.from,
                summary(&report)
            ),
        );
        Ok(report)
    }
}

/// Writes each changed file beside its target under a temporary name, and
/// copies the file it will replace into the backup.
fn stage_files(
    config_dir: &Path,
    backup_dir: &Path,
    changed: &[String],
    files: &[(String, Vec<u8>)],
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), FerryError> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        FerryError::internal(format!(
            "nothing applied: cannot {what} {}: {e}",
            path.display()
        ))
    };
    for (path, data) in files {
        if !changed.contains(path) {
            continue;
        }
        let target = config_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
        }
        if target.exists() {
            let saved = backup_dir.join("files").join(path);
            if let Some(parent) = saved.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
            }
            std::fs::copy(&target, &saved).map_err(|e| fail("back up", &target, e))?;
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.ferry-sync"));
        crate::state::write_atomically(&tmp, data).map_err(|e| fail("write", &tmp, e))?;
        staged.push((tmp, target));
    }
    Ok(())
}

/// A sync being received on one connection.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) begin: SyncBegin,
    pub(crate) manifests: Manifests,
    pub(crate) tables: BTreeMap<String, TableData>,
    pub(crate) files: Vec<(String, Vec<u8>)>,
}

impl Incoming {
    pub(crate) fn new(begin: SyncBegin, manifests: Manifests) -> Self {
        let tables = begin
            .tables
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    TableData {
                        name: h.name.clone(),
                        columns: h.columns.clone(),
                        rows: Vec::new(),
                    },
                )
            })
            .collect();
        Self {
            begin,
            manifests,
            tables,
            files: Vec::new(),
        }
    }

    pub(crate) fn add_rows(
        &mut self,
        table: &str,
        rows: Vec<Vec<SqlValue>>,
    ) -> Result<(), FerryError> {
        let announced = self
            .begin
            .tables
            .iter()
            .find(|h| h.name == table)
            .map(|h| h.rows)
            .ok_or_else(|| {
                sync_error(format!("rows for table {table}, which was not announced"))
            })?;
        let data = self.tables.get_mut(table).ok_or_else(|| {
            sync_error(format!("rows for table {table}, which was not announced"))
        })?;
        if rows.iter().any(|r| r.len() != data.columns.len()) {
            return Err(sync_error(format!(
                "table {table}: a row has the wrong number of values"
            )));
        }
        if data.rows.len() as u64 + rows.len() as u64 > announced {
            return Err(sync_error(format!(
                "table {table}: more rows than announced"
            )));
        }
        data.rows.extend(rows);
        Ok(())
    }

    pub(crate) fn add_file(&mut self, path: String, data: Vec<u8>) -> Result<(), FerryError> {
        let announced = self
            .begin
            .files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| *s)
            .ok_or_else(|| sync_error(format!("file {path:?} was not announced")))?;
        if announced != data.len() as u64 || self.files.iter().any(|(p, _)| *p == path) {
            return Err(sync_error(format!(
                "file {path:?}: size differs from the announcement or sent twice"
            )));
        }
        self.manifests
            .check_incoming_path(&path)
            .map_err(|e| sync_error(format!("file {path:?}: {e}")))?;
        self.files.push((path, data));
        Ok(())
    }
}

fn value_size(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(t) => t.len() + 4,
        SqlValue::Blob(b) => b.len() + 4,
        _ => 9,
    }
}

fn wal_of(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn summary(report: &SyncReport) -> String {
    let mut parts: Vec<String> = report
        .tables
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| format!("{} +{} ~{} -{}", d.table, d.added, d.changed, d.removed))
        .collect();
    if !report.files_changed.is_empty() {
        parts.push(format!(
            "files changed: {}",
            report.files_changed.join(", ")
        ));
    }
    if parts.is_empty() {
        "already up to date".into()
    } else {
        parts.join("; ")
    }
}

/// Digest of each syncable table.
pub(crate) fn table_digests(store: &Store) -> Vec<(String, String)> {
    SYNCABLE_TABLES
        .iter()
        .filter_map(|t| store.digest_tables(&[t]).ok().map(|d| ((*t).to_owned(), d)))
        .collect()
}

/// Digest of each configuration file this node's manifests select.
pub(crate) fn file_digests(node: &Node) -> Vec<(String, String)> {
    let Ok(manifests) = node.manifests() else {
        return Vec::new();
    };
    let Ok(names) = manifests.matching_files(&node.config_dir) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|n| {
            std::fs::read(node.config_dir.join(&n))
                .ok()
                .map(|data| (n, hex::encode(sha2::Sha256::digest(&data))))
        })
        .collect()
}

/// What a standby lacks compared with the active server's status: the
/// tables its manifests sync (all, when they cannot be read) and files.
pub(crate) fn out_of_date(
    active: &PeerStatus,
    standby: &PeerStatus,
    synced_tables: Option<&[String]>,
) -> Vec<String> {
    let theirs = |list: &[(String, String)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone())
    };
    let mut out = Vec::new();
    for (name, digest) in &active.table_digests {
        if synced_tables.is_some_and(|t| !t.contains(name)) {
            continue;
        }
        if theirs(&standby.table_digests, name).as_ref() != Some(digest) {
            out.push(format!("table {name}"));
        }
    }
    for (name, digest) in &active.file_digests {
        if theirs(&standby.file_digests, name).as_ref() != Some(digest) {
            out.push(format!("file {name}"));
        }
    }
    out
}
