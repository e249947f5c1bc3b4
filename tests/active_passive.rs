//! Active/passive mode end to end: two `ferry server` processes sharing a
//! repository, a witness, an edge that lists both servers, OpenSSH `sftp`
//! as the client. Faults are real: SIGKILL, SIGSTOP, a TCP proxy that cuts
//! a sync midway, a standby whose store differs, broken manifests.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

const S1: usize = 0;
const S2: usize = 1;
const W1: usize = 2;

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[key].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

fn upload(c: &TestCluster, key: &Path, local: &Path, remote: &str) -> std::process::Output {
    c.sftp(
        "alice",
        key,
        &format!("put {} {remote}\n", local.display()),
        c.root.path(),
    )
}

#[test]
fn sync_copies_what_the_manifests_list_and_refuses_what_it_must() {
    let mut c = TestCluster::start(ClusterSpec::active_passive());
    println!("faults: none until the manifest, incompatible-store and dead-standby steps");

    // Roles as a load balancer sees them.
    let (code, body) = c.get(S1, "/readyz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = c.get(S2, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("standby"), "{body}");
    let (code, _) = c.get(W1, "/readyz");
    assert_eq!(code, 503);
    assert_eq!(c.role(W1).unwrap().role, "witness");

    // Only a configured peer, with its own certificate, may speak as a
    // server: an edge's certificate (same CA) cannot push a sync or vote.
    println!("attack: the edge's certificate connects to s2 claiming to be server s1");
    // Refused for its role, before its name is even looked at.
    let refused = server_handshake(&c, "edge1", "s1");
    assert!(
        refused.contains("for the edge role, not server"),
        "{refused}"
    );
    let refused = server_handshake(&c, "s1", "s9");
    assert!(refused.contains("not a peer"), "{refused}");
    assert_eq!(server_handshake(&c, "s1", "s1"), "accepted");

    // Configuration made on the active server.
    c.account_with_key(S1, "alice");
    c.admin_ok(
        S1,
        &["account", "add", "bob", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    c.admin_ok(S1, &["account", "token", "add", "alice"], None);
    c.admin_ok(
        S1,
        &[
            "route",
            "add",
            "to-bob",
            "--account",
            "alice",
            "--match",
            "*.csv",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    let s1 = c.servers[S1].dir.clone();
    let s2 = c.servers[S2].dir.clone();
    std::fs::create_dir_all(s1.join("shared/local")).unwrap();
    std::fs::write(s1.join("shared/banner.txt"), "Authorised use only\n").unwrap();
    std::fs::write(s1.join("shared/local/note.txt"), "only on s1\n").unwrap();
    std::fs::write(s1.join("shared/partner.key"), "never copied\n").unwrap();
    let s2_config = std::fs::read_to_string(s2.join("server.toml")).unwrap();

    // The standby has none of it, and refuses changes made on it.
    let before = c.table_digests(S2);
    assert!(c
        .json(S2, &["account", "list", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    let out = c.admin(
        S2,
        &["account", "add", "carol", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("standby") && err.contains("s1"), "{err}");

    // A dry run reports and writes nothing.
    let dry = c.admin_ok(S1, &["sync", "--dry-run"], None);
    println!("{dry}");
    assert!(dry.contains("dry run, nothing written"), "{dry}");
    assert!(
        dry.contains("table accounts") && dry.contains("+2 added"),
        "{dry}"
    );
    assert!(dry.contains("shared/banner.txt"), "{dry}");
    assert_eq!(c.table_digests(S2), before);
    assert!(!s2.join("shared/banner.txt").exists());

    // The sync.
    let out = c.admin_ok(S1, &["sync"], None);
    println!("{out}");
    assert!(out.contains("s2: synced"), "{out}");
    assert_eq!(
        names(&c.json(S2, &["account", "list", "--json"]), "name"),
        ["alice", "bob"]
    );
    assert_eq!(
        names(&c.json(S2, &["route", "list", "--json"]), "name"),
        ["to-bob"]
    );
    let keys = c.admin_ok(S2, &["account", "key", "list", "alice"], None);
    assert_eq!(keys.matches("SHA256:").count(), 1, "{keys}");
    // Excluded: a table by sync.excl, files by sync.excl and by the built-in rules.
    assert!(c
        .json(S2, &["account", "token", "list", "alice", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        std::fs::read_to_string(s2.join("shared/banner.txt")).unwrap(),
        "Authorised use only\n"
    );
    assert!(!s2.join("shared/local/note.txt").exists());
    assert!(!s2.join("shared/partner.key").exists());
    assert_eq!(
        std::fs::read_to_string(s2.join("server.toml")).unwrap(),
        s2_config
    );
    let status = c.admin_ok(S1, &["cluster", "status"], None);
    println!("{status}");
    assert!(status.contains("s2 is up to date"), "{status}");
    // Each server lists its workers: the active one works, the standby
    // holds its queue workers and scheduler in standby.
    let status: serde_json::Value =
        serde_json::from_str(&c.admin_ok(S1, &["cluster", "status", "--json"], None)).unwrap();
    let state = |workers: &serde_json::Value, name: &str| {
        workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {workers}"))["state"]
            .clone()
    };
    assert_eq!(state(&status["this"]["workers"], "scheduler"), "busy");
    assert_eq!(
        state(&status["this"]["workers"], "cluster-heartbeat"),
        "busy"
    );
    let standby = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "s2")
        .unwrap();
    assert_eq!(state(&standby["status"]["workers"], "scheduler"), "standby");
    assert_eq!(
        state(&standby["status"]["workers"], "queue-worker-0"),
        "standby"
    );
    let events = c.admin_ok(S2, &["cluster", "events"], None);
    assert!(events.contains("applied sync"), "{events}");

    // A change on the active server shows as out of date.
    c.admin_ok(
        S1,
        &["account", "add", "dave", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    let status = c.admin_ok(S1, &["cluster", "status"], None);
    assert!(
        status.contains("s2 is out of date: table accounts"),
        "{status}"
    );
    let synced = c.table_digests(S2);

    // Broken manifests: refused with file and line, nothing sent.
    println!("fault: a path outside the config directory in sync.conf");
    std::fs::write(
        s1.join("sync/sync.conf"),
        format!("{SYNC_CONF}../outside.toml\n"),
    )
    .unwrap();
    let out = c.admin(S1, &["sync"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("sync.conf:4"), "{err}");
    println!("fault: an unknown table in sync_tables.conf");
    std::fs::write(s1.join("sync/sync.conf"), SYNC_CONF).unwrap();
    std::fs::write(
        s1.join("sync/sync_tables.conf"),
        format!("{SYNC_TABLES}acounts\n"),
    )
    .unwrap();
    let out = c.admin(S1, &["sync"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sync_tables.conf:16") && err.contains("unknown table `acounts`"),
        "{err}"
    );
    std::fs::write(s1.join("sync/sync_tables.conf"), SYNC_TABLES).unwrap();
    assert_eq!(c.table_digests(S2), synced);

    // A standby whose store is laid out differently (another release).
    println!("fault: s2's routes table gains a column (as a newer release would)");
    c.kill(S2);
    let db = s2.join("state/ferry.db");
    let st = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('ALTER TABLE routes ADD COLUMN priority INTEGER'); c.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(st.success());
    c.start_server(S2);
    assert!(c.wait_role(S2, "standby", false, 20));
    let before = c.table_digests(S2);
    let out = c.admin(S1, &["sync"], None);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    println!("{all}");
    assert!(
        all.contains("incompatible releases") && all.contains("table routes"),
        "{all}"
    );
    assert_eq!(c.table_digests(S2), before);

    // An unreachable standby.
    println!("fault: s2 killed");
    c.kill(S2);
    let out = c.admin(S1, &["sync"], None);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.contains("s2: NOT synced"), "{all}");
    assert!(
        all.contains("unreachable") || all.contains("did not answer"),
        "{all}"
    );
    let status = c.admin_ok(S1, &["cluster", "status"], None);
    assert!(status.contains("failed"), "{status}");
}

/// Opens an internal-protocol connection to s2 with `cert`'s certificate,
/// saying it is server `claims`; returns "accepted" or the refusal.
fn server_handshake(c: &TestCluster, cert: &str, claims: &str) -> String {
    let pki = c.root.path().join("pki");
    let files = ferry_proto::tls::TlsFiles {
        ca: pki.join("ca.crt"),
        cert: pki.join(format!("{cert}.crt")),
        key: pki.join(format!("{cert}.key")),
    };
    let tls = ferry_proto::tls::internal_client_config(&files).unwrap();
    let addr = format!("127.0.0.1:{}", c.servers[S2].internal_port);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        match ferry_proto::client::Connection::connect(
            &addr,
            tls,
            ferry_proto::message::Role::Server,
            claims,
        )
        .await
        {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        }
    })
}

#[test]
fn a_sync_of_10000_accounts_runs_beside_uploads_and_a_cut_sync_changes_nothing() {
    let c = TestCluster::start(ClusterSpec {
        proxies: Proxies::Link(S1, S2),
        ..ClusterSpec::active_passive()
    });
    let key = c.account_with_key(S1, "alice");
    // 10,000 more accounts, written straight into the active server's
    // database (hashing 10,000 passwords through the API would take minutes).
    let db = c.servers[S1].dir.join("state/ferry.db");
    let st = std::process::Command::new("python3")
        .args([
            "-c",
            r#"
import sqlite3, sys, uuid, time
c = sqlite3.connect(sys.argv[1], timeout=30)
h = c.execute("SELECT password_hash FROM accounts WHERE name='alice'").fetchone()[0]
now = int(time.time() * 1000)
c.executemany("INSERT INTO accounts (id, name, home, password_hash, enabled, created_at) VALUES (?,?,?,?,1,?)",
    [(str(uuid.uuid4()), "user%05d" % i, "user%05d" % i, h, now) for i in range(10000)])
c.commit()
"#,
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(st.success());
    let empty = c.table_digests(S2);

    // Cut the sync's connection after 300 KB.
    println!("fault: proxy cuts s1->s2 sync connection after 300000 bytes");
    let proxy = c.link(S1, S2);
    proxy.cut_after.store(300_000, Ordering::SeqCst);
    let out = c.admin(S1, &["sync"], None);
    proxy.cut_after.store(0, Ordering::SeqCst);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    println!("{all}");
    assert!(all.contains("s2: NOT synced"), "{all}");
    assert!(proxy.cuts.load(Ordering::SeqCst) >= 1);
    assert_eq!(c.table_digests(S2), empty, "a cut sync changed the standby");
    assert!(wait_until(10, || c
        .admin_ok(S2, &["cluster", "events"], None)
        .contains("nothing applied")));

    // Uploads go on while the whole table is synced.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let local = c.root.path().join("payload.bin");
    random_file(&local, 256 * 1024);
    let uploader = {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        let (sftp_port, root) = (c.sftp_port, c.root.path().to_owned());
        let (key, local) = (key.clone(), local.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let batch = format!("put {} during-{n}.bin\n", local.display());
                let out = sftp_with_key(sftp_port, &root, "alice", &key, &batch, &root);
                if out.status.success() {
                    done.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.lock().unwrap().push(stderr(&out));
                }
            }
        })
    };
    assert!(wait_until(30, || done.load(Ordering::SeqCst) >= 1));
    let started = Instant::now();
    let before_sync = done.load(Ordering::SeqCst);
    let synced = c.admin(S1, &["sync"], None);
    let took = started.elapsed();
    let progress = stderr(&synced);
    let out = assert_ok(&synced);
    // Progress for the large table, on stderr.
    assert!(
        progress.contains("s2: table accounts 2000/10001"),
        "{progress}"
    );
    assert!(
        progress.contains("s2: table accounts 10001/10001"),
        "{progress}"
    );
    let during = done.load(Ordering::SeqCst) - before_sync;
    assert!(wait_until(30, || done.load(Ordering::SeqCst) > before_sync + during));
    stop.store(true, Ordering::SeqCst);
    uploader.join().unwrap();
    println!("{out}");
    println!(
        "sync of 10,001 accounts took {took:?}; {during} uploads completed meanwhile, {} in all",
        done.load(Ordering::SeqCst)
    );
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    assert!(out.contains("+10001 added"), "{out}");
    assert_eq!(
        c.json(S2, &["account", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        10_001
    );
    // Every upload row reaches the standby too (history merge), with its hash.
    let uploads = done.load(Ordering::SeqCst);
    assert!(
        wait_until(30, || c.transfer_ids(S2).len() >= uploads),
        "s2 has {} transfer rows, {uploads} uploads done",
        c.transfer_ids(S2).len()
    );
    assert!(c
        .transfer_ids(S2)
        .iter()
        .all(|(_, node, sha)| node == "s1" && sha.len() == 64));
}

/// A transfer-log row written straight into server `i`'s store (a second
/// connection to its database), stamped `ended_at`.
fn write_row(c: &TestCluster, i: usize, id: &str, ended_at: i64) {
    let store = ferry_store::Store::open(&c.servers[i].dir.join("state").join("ferry.db")).unwrap();
    let row = ferry_core::TransferRecord {
        id: id.into(),
        account: "alice".into(),
        protocol: ferry_core::Protocol::Sftp,
        direction: ferry_core::Direction::Upload,
        path: format!("/{id}"),
        bytes: 1,
        size: Some(1),
        sha256: None,
        started_at: ended_at - 1,
        ended_at,
        status: ferry_core::TransferStatus::Completed,
        node: c.servers[i].name.into(),
        client_addr: "127.0.0.1:1".into(),
        error: None,
        partner: None,
        event_id: None,
    };
    store
        .apply(&ferry_core::Command::RecordTransfer(row))
        .unwrap();
}

#[test]
fn history_rows_stamped_an_hour_back_still_reach_the_other_server() {
    let c = TestCluster::start(ClusterSpec::active_passive());
    println!(
        "faults: none; rows stamped an hour behind the servers' clocks (a slow clock, \
         a late commit) are written into each server's store after the pulls began"
    );
    let has = |i: usize, ids: &[&str]| {
        let rows = c.transfer_ids(i);
        ids.iter().all(|id| rows.iter().any(|(r, _, _)| r == id))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // First rows stamped now, so both servers have pulled from each other.
    write_row(&c, S1, "now-s1", now);
    write_row(&c, S2, "now-s2", now);
    let both = ["now-s1", "now-s2"];
    assert!(wait_until(30, || has(S1, &both) && has(S2, &both)));
    // Then rows stamped an hour back: with a watermark of times they would
    // be behind it; by each store's change sequence they are new.
    write_row(&c, S1, "behind-s1", now - 3_600_000);
    write_row(&c, S2, "behind-s2", now - 3_600_000);
    let all = ["now-s1", "now-s2", "behind-s1", "behind-s2"];
    assert!(
        wait_until(30, || has(S1, &all) && has(S2, &all)),
        "s1 {:?}, s2 {:?}",
        c.transfer_ids(S1),
        c.transfer_ids(S2)
    );
}

#[test]
fn failover_promotes_the_standby_and_failback_keeps_both_transfer_logs() {
    let mut c = TestCluster::start(ClusterSpec::active_passive());
    let key = c.account_with_key(S1, "alice");
    // A partner nobody answers for, and a schedule pulling from it every 2 s:
    // its firings show which server runs the scheduler.
    c.add_ticking_schedule(S1);
    c.admin_ok(S1, &["sync"], None);
    // Partner credentials travel and rest sealed: the standby's database
    // files never hold the password.
    for name in ["ferry.db", "ferry.db-wal"] {
        let path = c.servers[S2].dir.join("state").join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            let needle = b"secret-partner-password";
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{name} holds the partner password in clear"
            );
        }
    }
    let partners = c.json(S2, &["partner", "list", "--json"]);
    assert_eq!(names(&partners, "name"), ["nobody"]);

    let local = c.root.path().join("a.bin");
    random_file(&local, 1 << 20);
    for i in 0..3 {
        assert_ok(&upload(&c, &key, &local, &format!("before-{i}.bin")));
    }
    println!("fault: SIGKILL s1 (the active server)");
    let killed = Instant::now();
    c.kill(S1);
    assert!(
        c.wait_role(S2, "active", true, 30),
        "s2 was not promoted: {:?}",
        c.role(S2)
    );
    println!(
        "s2 active and serving {:?} after s1 was killed",
        killed.elapsed()
    );
    // The edge moves new sessions to s2; files written before are there (shared repository).
    for i in 0..3 {
        let mut last = None;
        let ok = wait_until(30, || {
            let out = upload(&c, &key, &local, &format!("after-{i}.bin"));
            let ok = out.status.success();
            last = Some(out);
            ok
        });
        assert!(ok, "{}", stderr(last.as_ref().unwrap()));
    }
    let got = c.root.path().join("got.bin");
    assert_ok(&c.sftp(
        "alice",
        &key,
        &format!("get before-0.bin {}\n", got.display()),
        c.root.path(),
    ));
    assert_eq!(sha256_file(&got), sha256_file(&local));
    // s2 runs the scheduler now.
    let s2_firings = |c: &TestCluster| -> Vec<i64> {
        c.json(S2, &["schedule", "firings", "tick", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["node"] == "s2")
            .map(|f| slot_ms(&f["slot"]))
            .collect()
    };
    assert!(
        wait_until(20, || s2_firings(&c).len() >= 2),
        "s2 fired {:?}",
        s2_firings(&c)
    );

    // The old active server comes back and stays standby.
    println!("fault: s1 restarted");
    c.start_server(S1);
    let epoch2 = c.role(S2).unwrap().epoch;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if let Some(r) = c.role(S1) {
            assert!(!(r.role == "active" && r.ready), "s1 came back active");
        }
        sleep_ms(100);
    }
    let r = c.role(S1).unwrap();
    assert_eq!(
        (r.role.as_str(), r.ready, r.epoch),
        ("standby", false, epoch2)
    );
    assert!(c.role(S2).unwrap().ready);

    // Both transfer logs end up on both servers, with their hashes.
    assert!(
        wait_until(30, || {
            let (a, b) = (c.transfer_ids(S1), c.transfer_ids(S2));
            a == b && a.len() >= 7
        }),
        "s1 {:?}\ns2 {:?}",
        c.transfer_ids(S1),
        c.transfer_ids(S2)
    );
    let rows = c.transfer_ids(S1);
    assert!(rows.iter().filter(|r| r.1 == "s1").count() >= 3);
    assert!(rows.iter().filter(|r| r.1 == "s2").count() >= 4);
    let uploads: Vec<_> = c
        .json(S1, &["transfer", "list", "--json", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["direction"] == "upload" && t["status"] == "completed")
        .map(|t| t["sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uploads.len(), 6);
    assert!(uploads.iter().all(|s| *s == sha256_file(&local)));

    // Failback by hand: s1 takes over again, with everything s2 wrote.
    let out = c.admin_ok(S1, &["cluster", "promote"], None);
    println!("{out}");
    assert!(c.wait_role(S1, "active", true, 20));
    assert!(c.wait_role(S2, "standby", false, 20));
    let slots = c.json(S1, &["schedule", "firings", "tick", "--json"]);
    let mut seen: Vec<i64> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|f| slot_ms(&f["slot"]))
        .collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "a slot fired twice");
    let mut last = None;
    assert!(
        wait_until(30, || {
            let out = upload(&c, &key, &local, "back-on-s1.bin");
            let ok = out.status.success();
            last = Some(out);
            ok
        }),
        "{}",
        stderr(last.as_ref().unwrap())
    );
    assert!(wait_until(10, || c
        .transfer_ids(S1)
        .iter()
        .any(|r| r.1 == "s1" && c.transfer_ids(S1).len() >= 8)));
    let events = c.admin_ok(S1, &["cluster", "events", "--limit", "200"], None);
    println!("{events}");
    assert!(events.contains("active in epoch"), "{events}");
}

#[test]
fn a_paused_active_server_stops_serving_and_steps_down() {
    let c = TestCluster::start(ClusterSpec::active_passive());
    let epoch1 = c.role(S1).unwrap().epoch;
    println!("fault: SIGSTOP s1 (the active server) until s2 is promoted");
    c.signal(S1, "-STOP");
    assert!(
        c.wait_role(S2, "active", true, 30),
        "s2 not promoted: {:?}",
        c.role(S2)
    );
    let epoch2 = c.role(S2).unwrap().epoch;
    assert!(epoch2 > epoch1);
    println!("fault: SIGCONT s1");
    c.signal(S1, "-CONT");
    // Straight away, and until it has stepped down, s1 takes no writes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut samples = 0;
    while Instant::now() < deadline {
        let (code, body) = c.get(S1, "/readyz");
        if code != 0 {
            samples += 1;
            assert_eq!(code, 503, "s1 ready again after its pause: {body}");
        }
        let both = [c.role(S1), c.role(S2)]
            .iter()
            .filter(|r| matches!(r, Some(r) if r.role == "active" && r.ready))
            .count();
        assert!(both <= 1, "two active servers");
        sleep_ms(50);
    }
    assert!(samples > 10);
    let r = c.role(S1).unwrap();
    assert_eq!(
        (r.role.as_str(), r.ready, r.epoch),
        ("standby", false, epoch2)
    );
}

#[test]
fn two_servers_without_a_witness_are_refused_automatic_promotion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        r#"node_id = "a"
state_dir = "state"
repository = "repo"
[internal]
listen = "127.0.0.1:0"
ca = "ca.crt"
cert = "a.crt"
key = "a.key"
[admin]
listen = "127.0.0.1:0"
token_file = "t"
[cluster]
mode = "active-passive"
[[cluster.peers]]
id = "b"
address = "127.0.0.1:1"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("auto_promote needs a witness"), "{err}");
}
