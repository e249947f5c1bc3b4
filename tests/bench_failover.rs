//! Smoke test of the failover measurement: `ferry_bench::failover::measure`
//! with one run against this build of `ferry`. It asserts that a run was
//! recorded and the report written — never the 2 s goal (a slow machine
//! must not fail the suite).

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ferry_bench::failover::{self, FailoverReport};

#[test]
fn failover_benchmark_records_one_run_and_writes_its_report() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let report = failover::measure(env!("CARGO_BIN_EXE_ferry").as_ref(), work.path(), 1).unwrap();
    failover::write(&report, &out).unwrap();
    println!("{}", failover::markdown(&report));

    assert_eq!(report.runs_ms.len(), 1, "{report:?}");
    let ms = report.runs_ms[0];
    assert!(ms > 0.0 && ms < 30_000.0, "{ms} ms");
    assert_eq!(report.median_ms, ms);
    assert_eq!(report.goal_ms, 2000.0);
    assert_eq!(report.election_timeout_ms, 600);
    assert_eq!(report.heartbeat_ms, 150);

    let json = std::fs::read_to_string(out.join("failover.json")).unwrap();
    let back: FailoverReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.runs_ms.len(), 1);
    assert!((back.runs_ms[0] - ms).abs() < 0.01, "{json}");
    assert_eq!(back.met, report.met);
    let md = std::fs::read_to_string(out.join("failover.md")).unwrap();
    assert!(md.contains("| Runs (ms) |"), "{md}");
}
