//! Nemesis tests, one per cluster mode: a real cluster with an edge, SFTP
//! clients (paramiko) uploading unique files and recording every outcome,
//! a route and a 2-second schedule, and at least 25 seeded faults in about
//! two and a half minutes — SIGKILL of the primary and of any server, SIGSTOP, real
//! partitions (network namespaces and blackhole routes; SIGSTOP where the
//! machine cannot make namespaces), edge kills, and in active/passive
//! promotions and `ferry sync` runs. Afterwards the history checker of
//! `ferry_bench::nemesis::check` must find nothing: no lost or duplicated
//! upload, no divergence between servers, no file without its row, no
//! failure that happened, route copies and schedule slots exactly once, one
//! serving primary, every event done, a disabled account refused.
//!
//! `FERRY_NEMESIS_SECS` and `FERRY_NEMESIS_SEED` repeat or lengthen a run;
//! the seed is printed first. `FERRY_NEMESIS_KEEP=1` keeps the run's files
//! (logs, histories, roles, every server's dump) even when it passes.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Mutex;
use std::time::Duration;

use ferry_bench::nemesis::{self, Mode, Options};

/// The two runs share two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn nemesis(mode: Mode) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let secs: u64 = std::env::var("FERRY_NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let seed: u64 = std::env::var("FERRY_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("nemesis {mode:?}: seed {seed} (FERRY_NEMESIS_SEED={seed} repeats it)");
    let work = tempfile::tempdir().unwrap();
    let opts = Options {
        mode,
        seed,
        duration: Duration::from_secs(secs),
        // The floor for one run; a slow machine runs a little longer.
        min_faults: if secs >= 150 { 25 } else { 0 },
        workers: 3,
        idle_watch: Duration::from_secs(15),
    };
    let report = nemesis::run(env!("CARGO_BIN_EXE_ferry").as_ref(), work.path(), &opts);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            // Keep the logs of a run that could not finish.
            let kept = work.keep();
            panic!(
                "nemesis {mode:?} (seed {seed}) failed: {e:#}; files in {}",
                kept.display()
            );
        }
    };
    println!("{}", nemesis::markdown(&report));
    for (f, o) in report.faults.iter().zip(&report.figures.outages) {
        println!(
            "  {:>6.1} s  {} {} ({} ms): {:.1} s without a primary, {:.1} s without writes",
            f.at_s,
            f.kind,
            f.target,
            f.held_ms,
            o.without_primary_ms as f64 / 1000.0,
            o.without_writes_ms as f64 / 1000.0
        );
    }
    if report.findings.total() > 0 {
        let kept = work.keep();
        panic!(
            "nemesis {mode:?} (seed {seed}) found {} violations; files in {}",
            report.findings.total(),
            kept.display()
        );
    }
    if std::env::var_os("FERRY_NEMESIS_KEEP").is_some() {
        println!("files kept in {}", work.keep().display());
        return;
    }
    if secs >= 150 {
        assert!(report.faults.len() >= 25, "{} faults", report.faults.len());
    }
    assert!(report.figures.uploads_ok > 0, "no upload was acknowledged");
}

#[test]
fn active_active_survives_the_nemesis() {
    nemesis(Mode::ActiveActive);
}

#[test]
fn active_passive_survives_the_nemesis() {
    nemesis(Mode::ActivePassive);
}
