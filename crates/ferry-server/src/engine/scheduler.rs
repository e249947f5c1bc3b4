//! The scheduler: fires each schedule's cron slots while this node is the
//! primary. A firing is the store's `FireSchedule` command, whose (schedule,
//! slot) key makes every slot fire at most once, whichever node fires it.
//!
//! Slots are instants (unix ms) computed from the cron expression in the
//! schedule's time zone. Across a DST change a wall-clock time that does not
//! exist is skipped and one that occurs twice fires once (at its first
//! occurrence), as classic cron does.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use ferry_core::{Event, EventKind, EventStatus, FerryError, Schedule};
use tokio::sync::watch;

use ferry_worker::Worker;

use super::{Clock, PrimaryRole};
use crate::ServerCtx;

/// A missed slot younger than this still fires when `catch_up` is off: it
/// is the slot being fired now, a little late (a failover takes a few
/// seconds; a slot due during one is late, not missed). A slot fires once
/// however late: its firing is recorded once per (schedule, slot) in the
/// one replicated store.
pub const MISFIRE_GRACE_MS: i64 = 10_000;

/// The grace in active/passive mode, where each server has its own store
/// and a newly active server cannot see a firing the old one made just
/// before it lost its place (slots within the old server's lease are left
/// to it: `Node::takeover_fence`).
pub const MISFIRE_GRACE_ACTIVE_PASSIVE_MS: i64 = 2_000;

/// How often the schedule table is re-read when no slot is due sooner
/// (changes made through this node's admin API wake it at once).
const RELOAD_MS: i64 = 30_000;

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSlots {
    cron: cron::Schedule,
    tz: Tz,
}

impl CronSlots {
    /// Parses `expr` (six or seven fields with seconds first, or the classic
    /// five, which fire at second 0) in the IANA zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, FerryError> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            _ => {
                return Err(FerryError::invalid(format!(
                    "cron expression {expr:?} has {fields} fields; expected 5 (min hour day month weekday) or 6-7 (with seconds first)"
                )))
            }
        };
        let cron = cron::Schedule::from_str(&full)
            .map_err(|e| FerryError::invalid(format!("cron expression {expr:?}: {e}")))?;
        let tz = Tz::from_str(tz).map_err(|_| {
            FerryError::invalid(format!(
                "unknown time zone {tz:?} (use an IANA name such as UTC or Europe/Berlin)"
            ))
        })?;
        Ok(Self { cron, tz })
    }

    /// The first slot strictly after `after` (unix ms), if the expression
    /// has one.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = self.tz.from_utc_datetime(&utc(after).naive_utc());
        // A wall-clock time that occurs twice (clocks going back) fires
        // once: its second occurrence is skipped.
        self.cron
            .after(&start)
            .map(|slot| (slot.with_timezone(&Utc).timestamp_millis(), slot))
            .find(|(ms, slot)| *ms > after && !self.is_repeat(slot))
            .map(|(ms, _)| ms)
    }

    /// Whether `slot` is the second occurrence of an ambiguous local time.
    fn is_repeat(&self, slot: &DateTime<Tz>) -> bool {
        match self.tz.from_local_datetime(&slot.naive_local()) {
            chrono::LocalResult::Ambiguous(first, _) => first != *slot,
            _ => false,
        }
    }

    /// The latest slot in `(after, upto]`, if any.
    pub fn latest_in(&self, after: i64, upto: i64) -> Option<i64> {
        self.due_in(after, upto).1
    }

    /// How many slots `(after, upto]` holds, and the latest of them.
    pub fn due_in(&self, after: i64, upto: i64) -> (u64, Option<i64>) {
        let (mut count, mut latest) = (0, None);
        let mut cursor = after;
        while let Some(slot) = self.next_after(cursor) {
            if slot > upto {
                break;
            }
            count += 1;
            latest = Some(slot);
            cursor = slot;
        }
        (count, latest)
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What the scheduler decides for one schedule at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The slot to fire now, if any.
    pub fire: Option<i64>,
    /// Slots up to here are settled (fired or deliberately skipped).
    pub settled_until: i64,
    /// The next slot after `now`, to sleep until.
    pub next: Option<i64>,
    /// Due slots that do not fire: skipped (no catch-up, past the grace)
    /// or folded into the one catch-up firing.
    pub missed: u64,
}

/// Decides what to fire for a schedule whose slots up to `baseline` are
/// settled: the latest due slot fires if it is on time, or if `catch_up`
/// says missed slots fire (once, however many were missed).
pub fn decide(
    slots: &CronSlots,
    baseline: i64,
    now: i64,
    catch_up: bool,
    grace_ms: i64,
) -> Decision {
    let (due, latest) = slots.due_in(baseline, now);
    let fire = latest.filter(|&slot| catch_up || now - slot <= grace_ms);
    Decision {
        fire,
        settled_until: now.max(baseline),
        next: slots.next_after(now.max(baseline)),
        missed: due.saturating_sub(u64::from(fire.is_some())),
    }
}

/// Runs the scheduler for as long as the server runs: idle while this node
/// is not the primary, firing due slots while it is.
pub async fn run(
    ctx: Arc<ServerCtx>,
    clock: Clock,
    mut primary: watch::Receiver<PrimaryRole>,
    w: Worker,
) {
    loop {
        let role = *primary.borrow_and_update();
        let term = match role {
            PrimaryRole::Primary { term } => term,
            PrimaryRole::Secondary => {
                w.standby("another server is the primary");
                match w.until_stopped(primary.changed()).await {
                    Some(Ok(())) => continue,
                    None | Some(Err(_)) => return,
                }
            }
        };
        tracing::info!(term, "scheduler running (this node is the primary)");
        w.busy(format!("primary in term {term}"));
        tokio::select! {
            _ = serve_term(&ctx, &clock, term) => {}
            _ = primary.changed() => {
                tracing::info!("scheduler stopped (primary role changed)");
            }
            _ = w.stopping() => {
                tracing::info!("scheduler stopped (the server stops)");
                return;
            }
        }
    }
}

/// Fires slots for one term of primacy. Settled slots are remembered in
/// memory only: a new term starts from the store's record of firings.
async fn serve_term(ctx: &Arc<ServerCtx>, clock: &Clock, term: u64) {
    let mut settled: HashMap<String, i64> = HashMap::new();
    // Active/passive: the server active before may still fire slots until
    // its lease runs out, into its own store; those slots are its own, so
    // a slot fires once (never by both). Active/active needs no fence: a
    // firing is a replicated claim only the leader's log can hold.
    // (Epoch 1 had no server active before it.)
    let fenced_until = ctx.cluster.takeover_fence(term).map(|fence| {
        let until = clock.now_ms() + fence.as_millis() as i64;
        tracing::info!(
            until,
            "slots until the previous active server's lease runs out are left to it"
        );
        until
    });
    let mut parsed: HashMap<String, (String, String, CronSlots)> = HashMap::new();
    loop {
        let now = clock.now_ms();
        let schedules = match load(ctx).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot read schedules");
                tokio::time::sleep(Duration::from_millis(RELOAD_MS as u64)).await;
                continue;
            }
        };
        settled.retain(|name, _| schedules.iter().any(|(s, _)| &s.name == name));
        let mut wake = now + RELOAD_MS;
        for (schedule, last_fired) in schedules {
            let slots = match parsed.get(&schedule.name) {
                Some((cron, tz, slots)) if *cron == schedule.cron && *tz == schedule.timezone => {
                    slots.clone()
                }
                _ => match CronSlots::parse(&schedule.cron, &schedule.timezone) {
                    Ok(slots) => {
                        parsed.insert(
                            schedule.name.clone(),
                            (
                                schedule.cron.clone(),
                                schedule.timezone.clone(),
                                slots.clone(),
                            ),
                        );
                        slots
                    }
                    Err(e) => {
                        tracing::warn!(schedule = %schedule.name, error = %e, "bad schedule");
                        continue;
                    }
                },
            };
            let baseline = [
                Some(schedule.created_at - 1),
                last_fired,
                settled.get(&schedule.name).copied(),
                fenced_until,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now);
            let grace = if ctx.cluster.store_is_shared() {
                MISFIRE_GRACE_MS
            } else {
                MISFIRE_GRACE_ACTIVE_PASSIVE_MS
            };
            let decision = decide(&slots, baseline, now, schedule.catch_up, grace);
            if decision.missed > 0 {
                tracing::warn!(schedule = %schedule.name, missed = decision.missed, catch_up = schedule.catch_up, "schedule slots missed while no server was primary");
                ctx.metrics.missed(&schedule.name, decision.missed);
            }
            if let Some(slot) = decision.fire {
                if let Err(e) = fire(ctx, &schedule, slot, term, now).await {
                    // Not settled: the next pass tries again.
                    tracing::warn!(schedule = %schedule.name, slot, error = %e, "could not fire");
                    continue;
                }
            }
            settled.insert(schedule.name.clone(), decision.settled_until);
            if let Some(next) = decision.next {
                wake = wake.min(next);
            }
        }
        let sleep_ms = (wake - clock.now_ms()).max(1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
            _ = ctx.schedules_changed.notified() => {}
        }
    }
}

async fn load(ctx: &Arc<ServerCtx>) -> Result<Vec<(Schedule, Option<i64>)>, FerryError> {
    let store = ctx.store.clone();
    crate::session::blocking(move || {
        let schedules = store.schedules().map_err(FerryError::from)?;
        schedules
            .into_iter()
            .map(|s| {
                let last = store.last_firing(&s.name).map_err(FerryError::from)?;
                Ok((s, last))
            })
            .collect()
    })
    .await
}

/// Records the firing of `slot` and queues its event (once per slot).
async fn fire(
    ctx: &Arc<ServerCtx>,
    schedule: &Schedule,
    slot: i64,
    term: u64,
    now: i64,
) -> Result<bool, FerryError> {
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        kind: EventKind::Schedule,
        route: None,
        schedule: Some(schedule.name.clone()),
        slot: Some(slot),
        account: Some(schedule.action.account().to_owned()),
        path: None,
        transfer_id: None,
        partners: vec![schedule.action.partner().to_owned()],
        status: EventStatus::Pending,
        attempts: 0,
        max_attempts: schedule.max_attempts,
        retry_base_ms: schedule.retry_base_ms,
        next_at: now,
        lease_node: None,
        lease_until: None,
        steps_done: 0,
        current_path: None,
        created_at: now,
        updated_at: now,
        last_error: None,
        resubmit_of: None,
        notice: None,
    };
    let command = ferry_core::Command::FireSchedule {
        schedule: schedule.name.clone(),
        slot,
        node: ctx.node_id.clone(),
        term,
        event,
    };
    let applied = {
        let ctx = ctx.clone();
        crate::session::blocking(move || ctx.apply(&command)).await?
    };
    let fired = applied.rows_changed > 0;
    if fired {
        tracing::info!(schedule = %schedule.name, slot = %utc(slot).to_rfc3339(), "schedule fired");
        ctx.metrics.fired(&schedule.name);
        ctx.engine_wake.notify_waiters();
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn all_in(slots: &CronSlots, from: i64, to: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = from;
        while let Some(s) = slots.next_after(cursor) {
            if s > to {
                break;
            }
            out.push(utc(s).to_rfc3339());
            cursor = s;
        }
        out
    }

    #[test]
    fn five_fields_mean_second_zero_and_bad_input_is_named() {
        let s = CronSlots::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T00:15:00Z"))
        );
        let e = CronSlots::parse("* * *", "UTC").unwrap_err();
        assert!(e.message.contains("3 fields"), "{e}");
        let e = CronSlots::parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.message.contains("unknown time zone"), "{e}");
        assert!(CronSlots::parse("0 99 * * *", "UTC").is_err());
    }

    #[test]
    fn time_zone_decides_the_instant() {
        let berlin = CronSlots::parse("0 0 9 * * *", "Europe/Berlin").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            berlin.next_after(at("2026-01-10T00:00:00Z")),
            Some(at("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(at("2026-07-10T00:00:00Z")),
            Some(at("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_skips_the_missing_hour_and_fall_back_fires_once() {
        // Europe/Berlin: 2026-03-29 02:00 → 03:00; 2026-10-25 03:00 → 02:00.
        let daily = CronSlots::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let spring = all_in(
            &daily,
            at("2026-03-28T00:00:00Z"),
            at("2026-03-31T00:00:00Z"),
        );
        assert_eq!(
            spring,
            vec!["2026-03-28T01:30:00+00:00", "2026-03-30T00:30:00+00:00"],
            "02:30 does not exist on the 29th"
        );
        let autumn = all_in(
            &daily,
            at("2026-10-24T00:00:00Z"),
            at("2026-10-27T00:00:00Z"),
        );
        assert_eq!(
            autumn,
            vec![
                "2026-10-24T00:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-26T01:30:00+00:00"
            ],
            "02:30 happens twice on the 25th and fires once"
        );
        // An every-15-minutes job keeps firing through the repeated hour
        // once per wall-clock slot, never twice for one.
        let quarter = CronSlots::parse("0 */15 * * * *", "Europe/Berlin").unwrap();
        let slots = all_in(
            &quarter,
            at("2026-10-25T00:00:00Z"),
            at("2026-10-25T02:00:00Z"),
        );
        let mut seen = std::collections::HashSet::new();
        assert!(slots.iter().all(|s| seen.insert(s.clone())));
        assert_eq!(slots.len(), 4, "{slots:?}");
    }

    #[test]
    fn catch_up_fires_one_missed_slot_and_no_catch_up_skips_them() {
        let every_min = CronSlots::parse("0 * * * * *", "UTC").unwrap();
        let baseline = at("2026-05-01T10:00:00Z");
        let now = at("2026-05-01T10:07:30Z");
        let d = decide(&every_min, baseline, now, true, MISFIRE_GRACE_MS);
        assert_eq!(
            d.fire,
            Some(at("2026-05-01T10:07:00Z")),
            "one catch-up firing"
        );
        assert_eq!(d.next, Some(at("2026-05-01T10:08:00Z")));
        assert_eq!(d.missed, 6, "seven slots due, one fired");
        let d = decide(&every_min, baseline, now, false, MISFIRE_GRACE_MS);
        assert_eq!(d.fire, None, "missed slots are skipped");
        assert_eq!(d.missed, 7);
        // On time (or a little late) fires either way.
        let d = decide(
            &every_min,
            baseline,
            at("2026-05-01T10:01:00.500Z"),
            false,
            MISFIRE_GRACE_MS,
        );
        assert_eq!(d.fire, Some(at("2026-05-01T10:01:00Z")));
        // Nothing due.
        let d = decide(
            &every_min,
            baseline,
            at("2026-05-01T10:00:30Z"),
            true,
            MISFIRE_GRACE_MS,
        );
        assert_eq!(d.fire, None);
    }

    // ---- the running scheduler, on paused tokio time ----

    use crate::engine::{Clock, EngineConfig, PrimaryRole};
    use crate::ServerCtx;
    use ferry_core::{Account, AfterPull, Command, Partner};
    use ferry_store::Store;

    struct Rig {
        ctx: Arc<ServerCtx>,
        role: watch::Sender<PrimaryRole>,
        _dir: tempfile::TempDir,
    }

    /// A server context on an in-memory store with one schedule, its clock
    /// at `start`.
    fn rig(start: &str, cron: &str, tz: &str, catch_up: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().unwrap();
        store
            .apply(&Command::CreateAccount(Account {
                id: "a".into(),
                name: "alice".into(),
                home: "alice".into(),
                password_hash: None,
                enabled: true,
                created_at: 0,
            }))
            .unwrap();
        store
            .apply(&Command::AddPartner(Partner {
                name: "acme".into(),
                host: "127.0.0.1".into(),
                port: 1,
                username: "u".into(),
                password_sealed: Some("x".into()),
                private_key_sealed: None,
                host_key: "ssh-ed25519 AAAA".into(),
                remote_dir: ".".into(),
                after_pull: AfterPull::Keep,
                rate_limit: None,
                created_at: 0,
            }))
            .unwrap();
        let start_ms = at(start);
        store
            .apply(&Command::AddSchedule(Schedule {
                name: "s".into(),
                cron: cron.into(),
                timezone: tz.into(),
                action: "pull:acme:alice".parse().unwrap(),
                catch_up,
                max_attempts: 1,
                retry_base_ms: 1000,
                created_at: start_ms,
            }))
            .unwrap();
        let (role, _) = watch::channel(PrimaryRole::Primary { term: 1 });
        let store = Arc::new(store);
        let ctx = Arc::new(ServerCtx {
            login_throttle: crate::auth::LoginThrottle::default(),
            logged_intents: Default::default(),
            usage: crate::quota::UsageCache::default(),
            quota_notices: crate::quota::QuotaNotices::default(),
            notices_sending: crate::notices::SendingTo::default(),
            rates: crate::rate::Rates::default(),
            sessions: crate::session_caps::SessionCounts::default(),
            metrics: crate::metrics::Metrics::default(),
            defender: crate::defender::Defender::new(crate::defender::DefenderConfig::default())
                .unwrap(),
            node_id: "n1".into(),
            store: store.clone(),
            repository: dir.path().to_owned(),
            fsync_uploads: false,
            upload_expiry_ms: 1000,
            engine: EngineConfig::default(),
            secrets: crate::secrets::SecretKey::load_or_create(&dir.path().join("k")).unwrap(),
            engine_wake: tokio::sync::Notify::new(),
            schedules_changed: tokio::sync::Notify::new(),
            primary: tokio::sync::watch::Sender::new(PrimaryRole::Primary { term: 1 }),
            clock: Clock::starting_at(start_ms),
            open_uploads: Default::default(),
            claiming: Default::default(),
            cluster: Arc::new(ferry_cluster::mode::Single::new(
                "n1".into(),
                store,
                ferry_worker::Runner::new(),
            )),
            serving: tokio::sync::watch::Sender::new(true),
            workers: ferry_worker::Runner::new(),
            drain: Default::default(),
            drain_deadline: std::time::Duration::from_secs(1),
            retention_running: tokio::sync::Mutex::new(()),
        });
        Rig {
            ctx,
            role,
            _dir: dir,
        }
    }

    impl Rig {
        fn start(&self) {
            let (ctx, role) = (self.ctx.clone(), self.role.subscribe());
            self.ctx.workers.spawn("scheduler", |w| {
                run(ctx.clone(), ctx.clock.clone(), role, w)
            });
        }

        fn slots(&self) -> Vec<String> {
            let mut slots: Vec<String> = self
                .ctx
                .store
                .firings("s", 100_000)
                .unwrap()
                .into_iter()
                .map(|f| utc(f.slot).to_rfc3339())
                .collect();
            slots.sort();
            slots
        }
    }

    async fn pass(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn every_slot_fires_exactly_once_even_with_two_schedulers() {
        let rig = rig("2026-05-01T10:00:00Z", "*/10 * * * * *", "UTC", true);
        rig.start();
        // A second scheduler over the same store (a deposed primary that has
        // not noticed yet): the store still lets each slot fire once.
        rig.start();
        pass(305).await;
        let slots = rig.slots();
        // The slot at the schedule's creation counts: 10:00:00 … 10:05:00.
        assert_eq!(slots.len(), 31, "{slots:?}");
        assert_eq!(slots[0], "2026-05-01T10:00:00+00:00");
        assert_eq!(slots[30], "2026-05-01T10:05:00+00:00");
        let events = rig.ctx.store.events(&Default::default()).unwrap();
        assert_eq!(events.len(), 31, "one event per firing");
    }

    #[tokio::test(start_paused = true)]
    async fn missed_slots_fire_once_on_takeover_with_catch_up() {
        let rig = rig("2026-05-01T10:00:00Z", "0 * * * * *", "UTC", true);
        rig.start();
        pass(150).await; // 10:02:30 — fired 10:00, 10:01 and 10:02
        rig.role.send_replace(PrimaryRole::Secondary);
        pass(300).await; // 10:07:30 — 10:03 … 10:07 missed
        assert_eq!(rig.slots().len(), 3);
        rig.role.send_replace(PrimaryRole::Primary { term: 2 });
        pass(45).await; // 10:08:15
        assert_eq!(
            rig.slots(),
            vec![
                "2026-05-01T10:00:00+00:00",
                "2026-05-01T10:01:00+00:00",
                "2026-05-01T10:02:00+00:00",
                "2026-05-01T10:07:00+00:00",
                "2026-05-01T10:08:00+00:00",
            ],
            "one catch-up firing for the five missed slots, then on time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn missed_slots_are_skipped_without_catch_up() {
        let rig = rig("2026-05-01T10:00:00Z", "0 * * * * *", "UTC", false);
        rig.role.send_replace(PrimaryRole::Secondary);
        rig.start();
        pass(200).await; // 10:03:20, nothing fired
        assert!(rig.slots().is_empty());
        rig.role.send_replace(PrimaryRole::Primary { term: 1 });
        pass(60).await; // 10:04:20
        assert_eq!(rig.slots(), vec!["2026-05-01T10:04:00+00:00"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_due_during_a_failover_fires_late_without_catch_up() {
        let rig = rig("2026-05-01T10:00:00Z", "0 * * * * *", "UTC", false);
        rig.start();
        pass(30).await; // 10:00:30 — fired 10:00
        rig.role.send_replace(PrimaryRole::Secondary);
        pass(35).await; // 10:01:05 — no primary when 10:01 was due
        rig.role.send_replace(PrimaryRole::Primary { term: 2 });
        pass(1).await; // 10:01:06 — taken over 6 s late
        assert_eq!(
            rig.slots(),
            vec!["2026-05-01T10:00:00+00:00", "2026-05-01T10:01:00+00:00"],
            "a slot a failover made 6 s late is late, not missed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn daily_job_across_both_dst_changes_in_berlin() {
        // Autumn: 02:30 happens twice on 2026-10-25 and fires once.
        let rig = rig("2026-10-24T20:00:00Z", "30 2 * * *", "Europe/Berlin", true);
        rig.start();
        pass(30 * 3600).await; // to 2026-10-26T02:00Z
        assert_eq!(
            rig.slots(),
            vec!["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
        // Spring: 02:30 does not exist on 2026-03-29.
        let rig = rig_spring();
        rig.start();
        pass(30 * 3600).await;
        assert_eq!(rig.slots(), vec!["2026-03-30T00:30:00+00:00"]);
    }

    fn rig_spring() -> Rig {
        rig("2026-03-28T20:00:00Z", "30 2 * * *", "Europe/Berlin", true)
    }
}
