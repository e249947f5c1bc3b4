//! Smoke test of the benchmark: `ferry-bench --quick` against this build of
//! `ferry`, OpenSSH's sshd and nginx. It asserts that every row ran on every
//! side and every transferred file matched its SHA-256 (the run fails
//! otherwise) — never a speed.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ferry_bench::model::Report;

#[test]
fn quick_benchmark_runs_every_row_with_matching_checksums() {
    let out = tempfile::tempdir().unwrap();
    let opts = ferry_bench::Options {
        quick: true,
        out: out.path().to_path_buf(),
        ferry: env!("CARGO_BIN_EXE_ferry").into(),
        work: None,
        runs: None,
        only: Vec::new(),
    };
    let report = ferry_bench::run(&opts).unwrap();

    // 8 SFTP rows per cipher, idle memory, HTTPS up and down, and the
    // three rows through the emulated long link.
    assert_eq!(report.rows.len(), 8 * ferry_bench::CIPHERS.len() + 3 + 3);
    assert_eq!(
        report
            .rows
            .iter()
            .filter(|r| r.id.starts_with("wan-"))
            .count(),
        3
    );
    for row in &report.rows {
        for (side, m) in [
            ("single", &row.single),
            ("split", &row.split),
            ("peer", &row.peer),
        ] {
            let m = m
                .as_ref()
                .unwrap_or_else(|| panic!("{}: no {side} figure", row.id));
            assert_eq!(m.runs.len(), 1, "{}: {side}", row.id);
            assert!(
                m.median.is_finite() && m.median >= 0.0,
                "{}: {side} {}",
                row.id,
                m.median
            );
            if row.unit != "KiB/session" {
                assert!(m.median > 0.0, "{}: {side} measured nothing", row.id);
            }
        }
    }
    // Every file sent either way was read back and compared: large, small,
    // per-session and concurrent files on three targets per cipher, and HTTPS.
    assert!(
        report.checksums_verified > 600,
        "{}",
        report.checksums_verified
    );

    let json = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rows.len(), report.rows.len());
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("| Workload |"), "{md}");
    for row in &report.rows {
        let svg = std::fs::read_to_string(out.path().join(format!("{}.svg", row.id))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<rect"),
            "{}",
            row.id
        );
    }
    assert!(out.path().join("ratios.svg").is_file());
}
