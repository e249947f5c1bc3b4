//! `ferry report transfers`: two accounts upload over SFTP (OpenSSH
//! `sftp -b`) and HTTPS (curl), one upload fails (past a quota), and the
//! report counts transfers, failures and bytes per account and period in
//! its table, JSON and CSV.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{random_file, Ferry};
use serde_json::Value;

#[test]
fn transfers_are_counted_per_account_and_period_with_failures_and_bytes() {
    let f = Ferry::up();
    let alice = f.account_with_key("alice");
    let bob = f.account_with_key("bob");
    // bob may keep 50 KB: his second upload fails.
    f.admin_ok(&["account", "set", "bob", "--quota", "50000"], None);

    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("a1.bin"), 10_000);
    random_file(&work.join("a2.bin"), 20_000);
    random_file(&work.join("b1.bin"), 30_000);
    random_file(&work.join("b2.bin"), 40_000);
    common::assert_ok(&f.sftp_key("alice", &alice, "put a1.bin\nput a2.bin\n", &work));
    common::assert_ok(&f.sftp_key("bob", &bob, "put b1.bin\n", &work));
    let out = f.sftp_key("bob", &bob, "put b2.bin\n", &work);
    assert!(!out.status.success(), "an upload past the quota succeeded");
    // And one more of alice's, over HTTPS.
    let r = f.curl().user("alice").run(
        &["-T", work.join("b1.bin").to_str().unwrap()],
        "/api/v1/files/h.bin",
    );
    assert_eq!(r.status, 201);

    // What the transfer log holds, to check the report against.
    let log = f.transfers();
    let sum = |account: &str, what: &dyn Fn(&Value) -> bool| -> (u64, u64, u64) {
        log.iter()
            .filter(|t| t["account"] == account && what(t))
            .fold((0, 0, 0), |(n, bad, bytes), t| {
                (
                    n + 1,
                    bad + u64::from(t["status"] != "completed"),
                    bytes + t["bytes"].as_u64().unwrap(),
                )
            })
    };
    let (a_n, a_bad, a_bytes) = sum("alice", &|_| true);
    let (b_n, b_bad, b_bytes) = sum("bob", &|_| true);
    assert_eq!((a_n, a_bad, a_bytes), (3, 0, 60_000), "{log:?}");
    assert_eq!((b_n, b_bad), (2, 1), "{log:?}");
    assert!(b_bytes >= 30_000, "{log:?}");

    // JSON: one line per account today.
    let report: Value = serde_json::from_str(&f.admin_ok(
        &[
            "report",
            "transfers",
            "--by",
            "account",
            "--per",
            "day",
            "--since",
            "7d",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(report["by"], "account");
    assert_eq!(report["per"], "day");
    let lines = report["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{report}");
    let line = |account: &str| lines.iter().find(|l| l["group"] == account).unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%dT00:00:00").to_string();
    for (account, n, bad, bytes) in [("alice", a_n, a_bad, a_bytes), ("bob", b_n, b_bad, b_bytes)] {
        let l = line(account);
        assert!(l["period"].as_str().unwrap().starts_with(&today), "{l}");
        assert_eq!(l["transfers"], n, "{l}");
        assert_eq!(l["failures"], bad, "{l}");
        assert_eq!(l["completed"], n - bad, "{l}");
        assert_eq!(l["bytes"], bytes, "{l}");
    }

    // CSV: a header and the same numbers.
    let csv = f.admin_ok(
        &[
            "report",
            "transfers",
            "--by",
            "account",
            "--per",
            "hour",
            "--csv",
        ],
        None,
    );
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0], "period,group,transfers,completed,failures,bytes",
        "{csv}"
    );
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string();
    let prev = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let total = |account: &str| -> (u64, u64, u64, u64) {
        rows[1..]
            .iter()
            .map(|r| r.split(',').collect::<Vec<_>>())
            .filter(|c| c[1] == account)
            .inspect(|c| assert!(c[0] == hour || c[0] == prev, "{c:?}"))
            .fold((0, 0, 0, 0), |t, c| {
                let n = |i: usize| c[i].parse::<u64>().unwrap();
                (t.0 + n(2), t.1 + n(3), t.2 + n(4), t.3 + n(5))
            })
    };
    assert_eq!(total("alice"), (a_n, a_n - a_bad, a_bad, a_bytes), "{csv}");
    assert_eq!(total("bob"), (b_n, b_n - b_bad, b_bad, b_bytes), "{csv}");

    // The table, and the other groupings: no partner, no route here.
    let table = f.admin_ok(&["report", "transfers"], None);
    assert!(
        table.contains("ACCOUNT") && table.contains("alice"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "{} transfers, {} failures",
            a_n + b_n,
            a_bad + b_bad
        )),
        "{table}"
    );
    let by_partner: Value = serde_json::from_str(
        &f.admin_ok(&["report", "transfers", "--by", "partner", "--json"], None),
    )
    .unwrap();
    let lines = by_partner["lines"].as_array().unwrap();
    assert!(lines.iter().all(|l| l["group"] == ""), "{by_partner}");
    // A window that holds nothing.
    let empty: Value = serde_json::from_str(&f.admin_ok(
        &[
            "report",
            "transfers",
            "--since",
            "2020-01-01T00:00:00Z",
            "--until",
            "2020-01-02T00:00:00Z",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert!(empty["lines"].as_array().unwrap().is_empty());
    // A bad grouping is a usage error.
    assert_eq!(
        f.admin(&["report", "transfers", "--by", "nobody"], None)
            .status
            .code(),
        Some(2)
    );
}
