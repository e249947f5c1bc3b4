//! The history checker of the nemesis runs: what the clients saw, what each
//! server holds after healing, and what the harness observed (roles,
//! disabled-account probes) go in; counts of everything that must not
//! happen come out, each with a few examples.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What a client saw of one upload attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server answered the close with success.
    Ok,
    /// The server answered with an SFTP error status.
    Failed,
    /// The connection broke before an answer: it may have happened.
    Unknown,
}

/// One line of a client's history (`tests/clients/nemesis_client.py`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// "upload" or "login".
    pub op: String,
    pub worker: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub outcome: Outcome,
    #[serde(default)]
    pub error: Option<String>,
}

/// A transfer-log row as `ferry transfer list --json` prints it (the
/// fields the checker reads).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub account: String,
    pub path: String,
    pub protocol: String,
    pub status: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// An event as `ferry event list --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub route: Option<String>,
    /// The schedule slot of a firing's event (unix ms; RFC 3339 in JSON).
    #[serde(default, with = "rfc3339_ms::option")]
    pub slot: Option<i64>,
    #[serde(default)]
    pub transfer_id: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A schedule firing as `ferry schedule firings --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Firing {
    /// Unix ms; RFC 3339 in JSON.
    #[serde(with = "rfc3339_ms")]
    pub slot: i64,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// The admin API's times (RFC 3339) as the unix milliseconds the checker
/// compares.
mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        chrono::DateTime::from_timestamp_millis(*ms)
            .unwrap_or_default()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        chrono::DateTime::<chrono::Utc>::deserialize(d).map(|t| t.timestamp_millis())
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => super::serialize(ms, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            Option::<chrono::DateTime<chrono::Utc>>::deserialize(d)
                .map(|t| t.map(|t| t.timestamp_millis()))
        }
    }
}

/// What one server holds after the run has healed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerState {
    pub name: String,
    pub transfers: Vec<Row>,
    pub events: Vec<EventRow>,
    pub firings: Vec<Firing>,
}

/// One poll of one server's `/role`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleSample {
    /// Wall-clock ms when the poll round started.
    pub at_ms: i64,
    pub server: String,
    pub primary: bool,
    pub ready: bool,
}

/// A login of a disabled account, tried through an edge that reaches one
/// server only, one second after the disable was acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisabledProbe {
    pub at_ms: i64,
    pub server: String,
    /// The login succeeded: the server served stale accounts.
    pub accepted: bool,
}

/// Everything the checker reads.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub history: Vec<Entry>,
    pub servers: Vec<ServerState>,
    /// Regular files of the uploading account's home: (name, SHA-256).
    pub home: BTreeMap<String, String>,
    /// Regular files of the route's target account's home: (name, SHA-256).
    pub copies: BTreeMap<String, String>,
    pub roles: Vec<RoleSample>,
    pub probes: Vec<DisabledProbe>,
    /// The schedule's period in ms.
    pub schedule_period_ms: i64,
    /// The misfire grace: a slot later than this after a takeover is
    /// skipped by design, not missed.
    pub schedule_grace_ms: i64,
    /// When the schedule was added, and when the run stopped firing it.
    pub schedule_window_ms: (i64, i64),
    /// Each fault: (name, when it began, when the next began) in ms.
    pub faults: Vec<(String, i64, i64)>,
}

/// How long one fault kept the cluster from serving.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub fault: String,
    /// Longest stretch without a ready primary from the fault's start to
    /// the next fault's.
    pub without_primary_ms: i64,
    /// Longest time between acknowledged uploads in that window (counted
    /// from the fault's start).
    pub without_writes_ms: i64,
}

/// Counts of what must not happen, with up to [`EXAMPLES`] examples each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    /// Acknowledged uploads with no completed row, or whose file is missing
    /// or different.
    pub lost: Finding,
    /// More than one completed row for one uploaded name.
    pub duplicate_rows: Finding,
    /// Rows, events or firings that differ between servers (by id).
    pub divergent: Finding,
    /// Files in the home without a completed row.
    pub files_without_row: Finding,
    /// Uploads the client saw fail that have a completed row or a file.
    pub failed_but_done: Finding,
    /// Completed uploads without exactly one route copy (row and file).
    pub route_copies_wrong: Finding,
    /// Slots fired more than once.
    pub slots_doubled: Finding,
    /// Slots not fired although one primary stood the whole time around them.
    pub slots_missed: Finding,
    /// Poll rounds in which two servers were both primary and ready.
    pub two_primaries: Finding,
    /// Route events not done at the end (pending, running or failed).
    pub events_not_done: Finding,
    /// Logins of a disabled account that succeeded.
    pub disabled_accepted: Finding,
}

/// How often something happened, and the first few cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub count: usize,
    pub examples: Vec<String>,
}

/// Examples kept per finding.
pub const EXAMPLES: usize = 5;

impl Finding {
    fn add(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example);
        }
    }
}

impl Findings {
    /// Every finding with its name, in a fixed order.
    pub fn all(&self) -> [(&'static str, &Finding); 11] {
        [
            ("lost acknowledged uploads", &self.lost),
            ("duplicate rows", &self.duplicate_rows),
            ("divergent between servers", &self.divergent),
            ("files without a completed row", &self.files_without_row),
            ("failed uploads that happened", &self.failed_but_done),
            ("route copies not exactly once", &self.route_copies_wrong),
            ("schedule slots fired twice", &self.slots_doubled),
            ("schedule slots missed with a primary", &self.slots_missed),
            ("two serving primaries", &self.two_primaries),
            ("events not done", &self.events_not_done),
            ("disabled account let in", &self.disabled_accepted),
        ]
    }

    /// Total of all counts: 0 is a clean run.
    pub fn total(&self) -> usize {
        self.all().iter().map(|(_, f)| f.count).sum()
    }
}

/// Client-side figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub uploads_ok: usize,
    pub uploads_failed: usize,
    pub uploads_unknown: usize,
    /// Failed and unknown attempts, in % of all.
    pub failed_attempts_pct: f64,
    pub logins_failed: usize,
    /// Longest time, in ms, between two acknowledged uploads (any worker).
    pub longest_write_outage_ms: i64,
    /// Longest run of poll rounds in which no server was a ready primary.
    pub longest_without_primary_ms: i64,
    /// Schedule slots fired.
    pub slots_fired: usize,
    /// Per fault, in order.
    pub outages: Vec<Outage>,
    /// Faults after which a primary or writes were missing for 3 s or more.
    pub outages_over_3s: usize,
}

/// Runs every check over `input`.
pub fn check(input: &Input) -> (Findings, Figures) {
    let mut f = Findings::default();
    let uploads: Vec<&Entry> = input.history.iter().filter(|e| e.op == "upload").collect();

    // The first server is the reference; every other must hold the same.
    let reference = input.servers.first().cloned().unwrap_or_default();
    for other in input.servers.iter().skip(1) {
        diverge(&mut f.divergent, &reference, other);
    }

    // Completed rows by file name: uploads land in the home's root, route
    // copies in a folder of the target account.
    let completed: BTreeMap<&str, Vec<&Row>> = reference
        .transfers
        .iter()
        .filter(|r| r.status == "completed")
        .fold(BTreeMap::new(), |mut m, r| {
            m.entry(r.path.rsplit('/').next().unwrap_or_default())
                .or_insert_with(Vec::new)
                .push(r);
            m
        });
    let uploaded = |name: &str| -> Vec<&Row> {
        completed
            .get(name)
            .map(|rows| {
                rows.iter()
                    .filter(|r| r.protocol != "route")
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    };

    for e in &uploads {
        let Some(name) = e.name.as_deref() else {
            continue;
        };
        let rows = uploaded(name);
        if rows.len() > 1 {
            f.duplicate_rows
                .add(format!("{name}: {} completed rows", rows.len()));
        }
        match e.outcome {
            Outcome::Ok => {
                let row_ok = rows.iter().any(|r| r.sha256 == e.sha256);
                let file_ok = input.home.get(name) == e.sha256.as_ref();
                if !row_ok || !file_ok {
                    f.lost.add(format!(
                        "{name}: acknowledged at {}, row {}, file {}",
                        e.end_ms,
                        if row_ok { "ok" } else { "missing or different" },
                        if file_ok {
                            "ok"
                        } else {
                            "missing or different"
                        }
                    ));
                }
            }
            Outcome::Failed => {
                if !rows.is_empty() || input.home.contains_key(name) {
                    f.failed_but_done.add(format!(
                        "{name}: client told {:?}, yet {} row(s), file {}",
                        e.error.as_deref().unwrap_or(""),
                        rows.len(),
                        input.home.contains_key(name)
                    ));
                }
            }
            Outcome::Unknown => {}
        }
    }

    for name in input.home.keys() {
        if uploaded(name).is_empty() {
            f.files_without_row.add(name.clone());
        }
    }

    // Every completed upload is copied once by the route: one completed
    // route row in the target account and the file with the same content.
    for (name, rows) in &completed {
        let Some(upload) = rows.iter().find(|r| r.protocol != "route") else {
            continue;
        };
        let copies = rows.iter().filter(|r| r.protocol == "route").count();
        let file = input.copies.get(*name);
        if copies != 1 || file != upload.sha256.as_ref() {
            f.route_copies_wrong.add(format!(
                "{name}: {copies} route row(s), copy {}",
                match file {
                    None => "missing",
                    Some(s) if Some(s) == upload.sha256.as_ref() => "ok",
                    Some(_) => "different",
                }
            ));
        }
    }

    // Route events must all end done; the schedule's pulls from a partner
    // nobody answers fail by design and are not counted.
    for ev in reference.events.iter().filter(|e| e.route.is_some()) {
        if ev.status != "done" {
            f.events_not_done.add(format!(
                "{} ({}): {}",
                ev.id,
                ev.status,
                ev.last_error.as_deref().unwrap_or("")
            ));
        }
    }

    // Schedules: each slot once; none missing while a primary stood.
    let mut by_slot: BTreeMap<i64, usize> = BTreeMap::new();
    for firing in &reference.firings {
        *by_slot.entry(firing.slot).or_default() += 1;
    }
    for (slot, n) in &by_slot {
        if *n > 1 {
            f.slots_doubled.add(format!("slot {slot}: fired {n} times"));
        }
    }
    let rounds = rounds(&input.roles);
    let period = input.schedule_period_ms.max(1);
    let (from, to) = input.schedule_window_ms;
    let mut slot = (from / period + 1) * period;
    while slot + input.schedule_grace_ms < to {
        let covered = primary_throughout(&rounds, slot - period, slot + input.schedule_grace_ms);
        if covered && !by_slot.contains_key(&slot) {
            f.slots_missed
                .add(format!("slot {slot}: not fired, a primary stood"));
        }
        slot += period;
    }

    for (at, round) in &rounds {
        let primaries: Vec<&str> = round
            .iter()
            .filter(|s| s.primary && s.ready)
            .map(|s| s.server.as_str())
            .collect();
        if primaries.len() > 1 {
            f.two_primaries.add(format!("at {at}: {primaries:?}"));
        }
    }

    for p in &input.probes {
        if p.accepted {
            f.disabled_accepted
                .add(format!("{} at {}: logged in", p.server, p.at_ms));
        }
    }

    let count = |o: Outcome| uploads.iter().filter(|e| e.outcome == o).count();
    let mut acked: Vec<i64> = uploads
        .iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .map(|e| e.end_ms)
        .collect();
    acked.sort_unstable();
    let outages: Vec<Outage> = input
        .faults
        .iter()
        .map(|(fault, from, to)| {
            let window: BTreeMap<i64, Vec<&RoleSample>> = rounds
                .range(*from..*to)
                .map(|(at, r)| (*at, r.clone()))
                .collect();
            let mut marks = vec![*from];
            marks.extend(acked.iter().copied().filter(|t| t > from && t < to));
            marks.push(*to);
            Outage {
                fault: fault.clone(),
                without_primary_ms: longest_without_primary(&window),
                without_writes_ms: marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
            }
        })
        .collect();
    let figures = Figures {
        outages_over_3s: outages
            .iter()
            .filter(|o| o.without_primary_ms >= 3000 || o.without_writes_ms >= 3000)
            .count(),
        outages,
        uploads_ok: count(Outcome::Ok),
        uploads_failed: count(Outcome::Failed),
        uploads_unknown: count(Outcome::Unknown),
        failed_attempts_pct: if uploads.is_empty() {
            0.0
        } else {
            100.0 * (uploads.len() - count(Outcome::Ok)) as f64 / uploads.len() as f64
        },
        logins_failed: input
            .history
            .iter()
            .filter(|e| e.op == "login" && e.outcome != Outcome::Ok)
            .count(),
        longest_write_outage_ms: acked.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
        longest_without_primary_ms: longest_without_primary(&rounds),
        slots_fired: by_slot.len(),
    };
    (f, figures)
}

/// Rows, events and firings of `b` that differ from `a`'s, by id.
fn diverge(finding: &mut Finding, a: &ServerState, b: &ServerState) {
    fn by_id<T: Clone + Ord>(items: &[T], id: impl Fn(&T) -> String) -> BTreeMap<String, T> {
        items.iter().map(|t| (id(t), t.clone())).collect()
    }
    fn compare<T: PartialEq + std::fmt::Debug>(
        finding: &mut Finding,
        what: &str,
        (an, a): (&str, &BTreeMap<String, T>),
        (bn, b): (&str, &BTreeMap<String, T>),
    ) {
        let ids: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for id in ids {
            match (a.get(id), b.get(id)) {
                (Some(x), Some(y)) if x == y => {}
                (x, y) => finding.add(format!("{what} {id}: {an} {x:?}, {bn} {y:?}")),
            }
        }
    }
    compare(
        finding,
        "transfer",
        (&a.name, &by_id(&a.transfers, |r| r.id.clone())),
        (&b.name, &by_id(&b.transfers, |r| r.id.clone())),
    );
    compare(
        finding,
        "event",
        (&a.name, &by_id(&a.events, |e| e.id.clone())),
        (&b.name, &by_id(&b.events, |e| e.id.clone())),
    );
    compare(
        finding,
        "firing",
        (&a.name, &by_id(&a.firings, |f| f.slot.to_string())),
        (&b.name, &by_id(&b.firings, |f| f.slot.to_string())),
    );
}

/// Samples grouped by poll round, in time order.
fn rounds(samples: &[RoleSample]) -> BTreeMap<i64, Vec<&RoleSample>> {
    let mut rounds: BTreeMap<i64, Vec<&RoleSample>> = BTreeMap::new();
    for s in samples {
        rounds.entry(s.at_ms).or_default().push(s);
    }
    rounds
}

fn has_primary(round: &[&RoleSample]) -> bool {
    round.iter().any(|s| s.primary && s.ready)
}

/// Whether one and the same server was the ready primary in every poll
/// round in `[from, to]` (and there was at least one round). Around a
/// change of primary a slot may rightly not fire: the new primary leaves
/// slots within the old one's lease to it.
fn primary_throughout(rounds: &BTreeMap<i64, Vec<&RoleSample>>, from: i64, to: i64) -> bool {
    let mut primary: Option<&str> = None;
    for round in rounds.range(from..=to).map(|(_, r)| r) {
        let mut ready = round.iter().filter(|s| s.primary && s.ready);
        let (Some(p), None) = (ready.next(), ready.next()) else {
            return false;
        };
        if primary.is_some_and(|q| q != p.server) {
            return false;
        }
        primary = Some(&p.server);
    }
    primary.is_some()
}

/// The longest stretch, in ms, from a round without a ready primary to the
/// next round with one.
fn longest_without_primary(rounds: &BTreeMap<i64, Vec<&RoleSample>>) -> i64 {
    let mut longest = 0;
    let mut since: Option<i64> = None;
    for (at, round) in rounds {
        if has_primary(round) {
            if let Some(start) = since.take() {
                longest = longest.max(at - start);
            }
        } else {
            since.get_or_insert(*at);
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str, sha: &str, outcome: Outcome, end: i64) -> Entry {
        Entry {
            op: "upload".into(),
            worker: 0,
            name: Some(name.into()),
            sha256: Some(sha.into()),
            start_ms: end - 10,
            end_ms: end,
            outcome,
            error: None,
        }
    }

    fn row(id: &str, path: &str, protocol: &str, sha: &str) -> Row {
        Row {
            id: id.into(),
            account: "x".into(),
            path: path.into(),
            protocol: protocol.into(),
            status: "completed".into(),
            sha256: Some(sha.into()),
            event_id: None,
        }
    }

    fn server(name: &str, transfers: Vec<Row>) -> ServerState {
        ServerState {
            name: name.into(),
            transfers,
            events: vec![],
            firings: vec![],
        }
    }

    fn clean() -> Input {
        let rows = vec![
            row("t1", "/a.dat", "sftp", "aa"),
            row("c1", "/in/a.dat", "route", "aa"),
        ];
        let mut input = Input {
            history: vec![
                upload("a.dat", "aa", Outcome::Ok, 1000),
                upload("b.dat", "bb", Outcome::Failed, 2000),
                upload("c.dat", "cc", Outcome::Unknown, 3000),
            ],
            servers: vec![server("s1", rows.clone()), server("s2", rows)],
            schedule_period_ms: 1000,
            ..Input::default()
        };
        input.home.insert("a.dat".into(), "aa".into());
        input.copies.insert("a.dat".into(), "aa".into());
        input
    }

    #[test]
    fn a_clean_history_has_no_findings() {
        let input = clean();
        let (f, fig) = check(&input);
        assert_eq!(f.total(), 0, "{f:?}");
        assert_eq!((fig.uploads_ok, fig.uploads_failed), (1, 1));
        assert_eq!(fig.uploads_unknown, 1);
    }

    #[test]
    fn each_violation_is_counted() {
        let mut input = clean();
        for s in &mut input.servers {
            // b.dat was told failed but has a row.
            s.transfers.push(row("t2", "/b.dat", "sftp", "bb"));
        }
        // s2 misses a row; a file appeared that no row explains; the
        // acknowledged upload's file is gone.
        input.servers[1].transfers.pop();
        input.home.insert("stray.dat".into(), "zz".into());
        input.home.remove("a.dat");
        input.probes.push(DisabledProbe {
            at_ms: 5,
            server: "s1".into(),
            accepted: true,
        });
        let (f, _) = check(&input);
        assert_eq!(f.lost.count, 1, "{f:?}");
        assert_eq!(f.failed_but_done.count, 1, "{f:?}");
        assert_eq!(f.divergent.count, 1, "{f:?}");
        assert_eq!(f.files_without_row.count, 1, "{f:?}");
        assert_eq!(f.disabled_accepted.count, 1, "{f:?}");
        // b.dat has no route copy either.
        assert_eq!(f.route_copies_wrong.count, 1, "{f:?}");
    }

    #[test]
    fn slots_are_missed_only_while_a_primary_stood() {
        let sample = |at: i64, primary: bool| RoleSample {
            at_ms: at,
            server: "s1".into(),
            primary,
            ready: true,
        };
        let mut input = Input {
            schedule_period_ms: 1000,
            schedule_grace_ms: 0,
            schedule_window_ms: (0, 6000),
            ..Input::default()
        };
        // A primary from 0 to 2.5 s, none until 4.5 s, then one again.
        for at in (0..6000).step_by(250) {
            input.roles.push(sample(at, !(2500..4500).contains(&at)));
        }
        input.servers.push(ServerState {
            name: "s1".into(),
            firings: [1000, 5000, 5000]
                .iter()
                .map(|&slot| Firing {
                    slot,
                    node: None,
                    event_id: None,
                })
                .collect(),
            ..ServerState::default()
        });
        let (f, fig) = check(&input);
        // 2000 stood under a primary and did not fire; 3000 and 4000 had
        // none; 5000 fired twice.
        assert_eq!(
            f.slots_missed.examples,
            ["slot 2000: not fired, a primary stood"]
        );
        assert_eq!(f.slots_doubled.count, 1);
        assert_eq!(fig.longest_without_primary_ms, 2000);
    }
}
