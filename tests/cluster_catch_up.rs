//! Catch-up at a real deployment's size, and no service from a server that
//! is behind. Three `ferry server` processes in active/active mode start
//! from the same store of more than 200 MB (hundreds of thousands of
//! transfer-log rows), an edge lists only `s3`, and OpenSSH `sftp` logs in
//! through it.
//!
//! * `s3` is stopped (SIGSTOP) while an account is disabled and the log
//!   moves on past what the leader keeps: when it wakes it needs the whole
//!   database as a snapshot, and until it has it, it must not let the
//!   disabled account in (nor anybody: it may have missed anything).
//! * `s3` is then wiped and restarted: it catches up from nothing, in
//!   chunks, without holding the database in memory, and serves again.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cluster::{join_token, ClusterSpec, TestCluster};
use common::*;

const NAMES: [&str; 3] = ["s1", "s2", "s3"];
/// The store every server starts from, in MB.
const STORE_MB: u64 = 210;

/// Transfer-log rows in server `i`'s store, read from its file.
fn rows(c: &TestCluster, i: usize) -> u64 {
    let db = c.servers[i].dir.join("state/ferry.db");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True); \
             print(c.execute('select count(*) from transfers').fetchone()[0])",
        )
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `ls` through the edge (in front of `s3`) as `user`.
fn sftp(c: &TestCluster, user: &str, key: &Path) -> Output {
    c.sftp(user, key, "ls\n", c.root.path())
}

/// Three servers sharing a seeded store of [`STORE_MB`], the cluster
/// initialised, and an edge in front of `s3` only.
fn seeded_cluster() -> TestCluster {
    // A snapshot every 50 entries, and 50 kept after it: a server 100
    // entries behind needs the snapshot.
    let mut c = TestCluster::new(ClusterSpec {
        snapshot_every: 50,
        alerts: false,
        ..ClusterSpec::active_active(&NAMES)
    });

    // One store, made by a server, filled, and given to all three: a
    // cluster formed from a restored backup.
    c.start_server(0);
    c.kill(0);
    let db = c.servers[0].dir.join("state/ferry.db");
    let seeded = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/seed_store.py"))
        .arg(&db)
        .arg(STORE_MB.to_string())
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    println!(
        "seeded store: {}",
        String::from_utf8_lossy(&seeded.stdout).trim()
    );
    for i in 1..3 {
        let state = c.servers[i].dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::copy(&db, state.join("ferry.db")).unwrap();
    }
    for i in 0..3 {
        c.start_server(i);
    }
    let init = c.init();
    let token = join_token(&init);
    write_private(&c.root.path().join("join.token"), &token);
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    c.start_edge(&[2]);
    c
}

#[test]
fn a_server_behind_serves_nobody_until_it_has_caught_up_from_a_large_snapshot() {
    let mut c = seeded_cluster();
    let seeded_rows = rows(&c, 0);
    let bob = c.account_with_key(0, "bob");
    let carol = c.account_with_key(0, "carol");
    // s3 is up to date: both log in through it.
    assert!(
        wait_until(20, || sftp(&c, "bob", &bob).status.success()),
        "bob cannot log in through s3"
    );
    assert_ok(&sftp(&c, "carol", &carol));

    let s3_index = c.last_log_index(0, "s3");
    println!("fault: SIGSTOP s3 at log index {s3_index}; bob disabled; changes made until the leader's log has moved past s3");
    c.signal(2, "-STOP");
    let leader = c.primary().expect("s1 or s2 leads");
    c.admin_ok(leader, &["account", "disable", "bob"], None);
    // (The status asks the stopped s3 too, and waits for it: checked
    // every 40 changes.)
    let mut changes = 0;
    while changes < 80 || c.first_log_index(leader) <= s3_index + 1 {
        assert!(
            changes < 1000,
            "the leader never dropped the entries s3 lacks"
        );
        for _ in 0..40 {
            c.admin_ok(
                leader,
                &["account", "add", &format!("filler{changes:03}")],
                None,
            );
            changes += 1;
        }
    }
    println!(
        "{changes} changes made; the leader's log starts at {}",
        c.first_log_index(leader)
    );
    println!("fault: SIGCONT s3");
    c.signal(2, "-CONT");
    let woke = Instant::now();
    // s3's /readyz, every 100 ms, while bob tries to log in through it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (stop, url, ca) = (
            stop.clone(),
            format!("{}/readyz", c.servers[2].admin_url),
            c.root.path().join("pki/ca.crt"),
        );
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args([
                        "-s",
                        "-o",
                        "/dev/null",
                        "--max-time",
                        "3",
                        "-w",
                        "%{http_code}",
                    ])
                    .arg("--cacert")
                    .arg(&ca)
                    .arg(&url)
                    .output()
                    .unwrap();
                codes.push(String::from_utf8_lossy(&out.stdout).into_owned());
                std::thread::sleep(Duration::from_millis(100));
            }
            codes
        })
    };
    let received = || {
        std::fs::read_dir(c.servers[2].dir.join("state/raft-snapshots"))
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("received-")
            })
    };
    let mut refusals = std::collections::BTreeMap::<String, usize>::new();
    let mut caught_up = None;
    while woke.elapsed() < Duration::from_secs(180) {
        let out = sftp(&c, "bob", &bob);
        assert!(
            !out.status.success(),
            "the disabled account logged in through s3 {:?} after it woke",
            woke.elapsed()
        );
        let err = stderr(&out);
        let kind = if err.contains("no back-end server is available") {
            "no server"
        } else if err.contains("Permission denied") {
            "permission denied"
        } else {
            "other"
        };
        *refusals.entry(kind.into()).or_default() += 1;
        // Caught up: the leader's snapshot is installed and s3 is ready.
        if received() && c.get(2, "/readyz").0 == 200 {
            caught_up = Some(woke.elapsed());
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let codes = poller.join().unwrap();
    let caught_up = caught_up.expect("s3 did not catch up within 180 s");
    let not_ready = codes.iter().filter(|c| *c == "503").count();
    println!(
        "s3 caught up after {caught_up:?}; /readyz 503 in {not_ready} of {} polls; bob refused: {refusals:?}",
        codes.len()
    );
    // It was behind, said so, and caught up by installing the leader's
    // snapshot, not from the log.
    assert!(not_ready > 0, "s3 was never reported not ready: {codes:?}");
    // Up to date: bob is refused as disabled, carol gets in, through s3.
    for _ in 0..3 {
        let out = sftp(&c, "bob", &bob);
        assert!(!out.status.success());
    }
    assert!(
        wait_until(10, || sftp(&c, "carol", &carol).status.success()),
        "carol cannot log in through s3 after it caught up"
    );

    println!("fault: s3 killed, its state directory wiped, restarted");
    c.kill(2);
    std::fs::remove_dir_all(c.servers[2].dir.join("state")).unwrap();
    c.start_server(2);
    // The others go on: a member that lost its log does not stop the
    // leader (openraft would), and it serves nothing.
    std::thread::sleep(Duration::from_secs(2));
    let leader = c.primary().expect("a leader after s3 came back empty");
    assert!(leader < 2);
    // Enough changes that the leader's log no longer starts at the
    // beginning: the rejoining server needs the snapshot.
    c.admin_ok(1 - leader, &["account", "add", "after-wipe"], None);
    println!("the leader's log starts at {}", c.first_log_index(leader));
    assert!(c.first_log_index(leader) > 1);
    assert_eq!(c.get(2, "/readyz").0, 503);
    // Removed, and joined again: it catches up from a snapshot.
    println!("s3 removed and joined again");
    c.admin_ok(leader, &["cluster", "remove", "s3"], None);
    let restarted = Instant::now();
    let member = format!("127.0.0.1:{}", c.servers[0].internal_port);
    let token = c.root.path().join("join.token");
    c.admin_ok(
        2,
        &[
            "cluster",
            "join",
            &member,
            "--join-token-file",
            token.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        wait_until(240, || c.get(2, "/readyz").0 == 200),
        "the wiped s3 did not catch up within 240 s"
    );
    let took = restarted.elapsed();
    // The restored pages may still sit in the write-ahead log.
    let size = |name: &str| {
        std::fs::metadata(c.servers[2].dir.join("state").join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let db_bytes = size("ferry.db") + size("ferry.db-wal");
    println!(
        "s3 rows {} / s1 rows {}; s3 snapshots {:?}",
        rows(&c, 2),
        rows(&c, 0),
        std::fs::read_dir(c.servers[2].dir.join("state/raft-snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let peak = proc_status_kib(c.pid(2), "VmHWM");
    println!(
        "wiped s3 caught up a store of more than {STORE_MB} MB in {took:?} ({} MB with its write-ahead log); its peak RSS {} MiB",
        db_bytes / 1_000_000,
        peak / 1024
    );
    assert!(db_bytes >= STORE_MB * 1_000_000, "{db_bytes}");
    assert_eq!(rows(&c, 2), rows(&c, 0));
    assert!(rows(&c, 2) >= seeded_rows);
    // The snapshot went through in chunks and files, not in memory.
    assert!(
        peak * 1024 < STORE_MB * 1_000_000,
        "peak RSS {peak} KiB for a store of more than {STORE_MB} MB"
    );
    assert!(
        wait_until(10, || sftp(&c, "carol", &carol).status.success()),
        "carol cannot log in through the rebuilt s3"
    );
    assert!(!sftp(&c, "bob", &bob).status.success());
}
