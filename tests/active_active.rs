//! Active/active (Raft) end to end: three `ferry server` processes sharing
//! a repository, an edge listing all three, OpenSSH `sftp` as the client.
//! Faults are real: SIGKILL of the leader with uploads in flight, loss of
//! the majority (also under an open upload), restarts that must catch up.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::cluster::{join_token, ClusterSpec, Proxies, TestCluster};
use common::*;

const THREE: ClusterSpec = ClusterSpec::active_active(&["s1", "s2", "s3"]);

/// `sftp -b` as alice through the edge.
fn sftp(c: &TestCluster, key: &Path, batch: &str) -> Output {
    c.sftp("alice", key, batch, c.root.path())
}

/// The last log index server `i` holds, from its own status.
fn last_log_index(c: &TestCluster, i: usize) -> u64 {
    c.last_log_index(i, c.servers[i].name)
}

#[test]
fn three_servers_replicate_and_lose_nothing_when_the_leader_dies() {
    let mut c = TestCluster::start(THREE);
    let out = c.init();
    println!("{out}");
    assert!(
        wait_until(20, || c.primary().is_some()),
        "no primary elected"
    );
    // A second init is refused.
    let again = c.admin(1, &["cluster", "init"], None);
    assert!(!again.status.success());

    // Made through a follower, visible everywhere.
    let follower = (0..3).find(|&i| Some(i) != c.primary()).unwrap();
    let key = c.account_with_key(follower, "alice");
    for i in 0..3 {
        assert!(
            wait_until(10, || c
                .admin_ok(i, &["account", "list"], None)
                .contains("alice")),
            "{} lacks alice",
            c.servers[i].name
        );
    }
    let status = c.admin_ok(0, &["cluster", "status"], None);
    println!("{status}");
    assert!(
        status.contains("leader") && status.contains("follower"),
        "{status}"
    );
    // Every member lists its workers: the primary runs the scheduler, the
    // others hold it in standby; all run queue workers.
    let status: serde_json::Value =
        serde_json::from_str(&c.admin_ok(0, &["cluster", "status", "--json"], None)).unwrap();
    for m in status["members"].as_array().unwrap() {
        let workers = m["workers"].as_array().unwrap_or_else(|| panic!("{m}"));
        let state = |name: &str| {
            workers
                .iter()
                .find(|w| w["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in {m}"))["state"]
                .clone()
        };
        let scheduler = if m["primary"] == true {
            "busy"
        } else {
            "standby"
        };
        assert_eq!(state("scheduler"), scheduler, "{m}");
        assert_ne!(state("queue-worker-0"), "failed", "{m}");
        assert_eq!(state("raft-metrics"), "busy", "{m}");
    }

    // Each upload queues an event (a copy to bob): the events a killed
    // server held are claimed again by the others after their lease.
    c.admin_ok(
        follower,
        &["account", "add", "bob", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    c.admin_ok(
        follower,
        &[
            "route",
            "add",
            "to-bob",
            "--account",
            "alice",
            "--match",
            "*.bin",
            "--action",
            "copy:bob/in",
            "--retry-base-ms",
            "500",
        ],
        None,
    );

    // Uploads in flight while the leader is killed.
    let local = c.root.path().join("payload.bin");
    random_file(&local, 64 * 1024);
    let sha = sha256_file(&local);
    let results: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let leader = c.primary().unwrap();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (results, key, local) = (results.clone(), key.clone(), local.clone());
            let (port, root) = (c.sftp_port, c.root.path().to_owned());
            std::thread::spawn(move || {
                for n in 0..25 {
                    let name = format!("w{w}-{n}.bin");
                    let batch = format!("put {} {name}\n", local.display());
                    let out = sftp_with_key(port, &root, "alice", &key, &batch, &root);
                    results.lock().unwrap().push((name, out.status.success()));
                }
            })
        })
        .collect();
    assert!(wait_until(60, || results.lock().unwrap().len() >= 40));
    println!(
        "fault: SIGKILL {} (the leader) with uploads in flight",
        c.servers[leader].name
    );
    let killed = Instant::now();
    c.kill(leader);
    assert!(wait_until(20, || c.primary().is_some()), "no new primary");
    println!(
        "new primary {} after {:?}",
        c.servers[c.primary().unwrap()].name,
        killed.elapsed()
    );
    for w in workers {
        w.join().unwrap();
    }
    // The role change reached the alert webhook.
    assert!(
        wait_until(10, || c
            .alerts
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.contains("became the primary"))),
        "{:?}",
        c.alerts.lock().unwrap()
    );
    let results = results.lock().unwrap().clone();
    let ok: Vec<&String> = results.iter().filter(|r| r.1).map(|r| &r.0).collect();
    println!("{} of {} uploads succeeded", ok.len(), results.len());
    assert!(ok.len() >= 150, "{results:?}");
    // Failed uploads can be made again on the surviving servers.
    for (name, _) in results.iter().filter(|r| !r.1) {
        assert_ok(&sftp(
            &c,
            &key,
            &format!("put {} {name}\n", local.display()),
        ));
    }
    // Every upload is in the log of both survivors, with its hash.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    assert!(wait_until(20, || {
        let a = c.transfer_ids(survivors[0]);
        a == c.transfer_ids(survivors[1]) && a.len() >= 200
    }));
    let rows = c.transfer_ids(survivors[0]);
    assert!(rows.iter().all(|(_, _, s)| *s == sha), "{rows:?}");

    // No event stays with the dead server: all are done, by the survivors.
    let events_done = || {
        let v: serde_json::Value = serde_json::from_str(&c.admin_ok(
            survivors[0],
            &["event", "list", "--json", "--limit", "10000"],
            None,
        ))
        .unwrap();
        let all = v.as_array().unwrap();
        all.len() >= 200 && all.iter().all(|e| e["status"] == "done")
    };
    assert!(wait_until(60, events_done), "events left undone: {}", {
        let v: serde_json::Value = serde_json::from_str(&c.admin_ok(
            survivors[0],
            &["event", "list", "--json", "--limit", "10000"],
            None,
        ))
        .unwrap();
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for e in v.as_array().unwrap() {
            *by.entry(format!(
                "{} {} {}",
                e["status"], e["lease_node"], e["last_error"]
            ))
            .or_default() += 1;
        }
        format!("{by:?}")
    });
    // The log grows with work done, not with polling: idle, nothing is
    // proposed (no claim of an event another server won, again and again).
    let leader_now = c.primary().unwrap();
    let before = last_log_index(&c, leader_now);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let after = last_log_index(&c, leader_now);
    println!(
        "log: {before} entries for {} uploads ({:.1} per upload); {} more in 5 s idle",
        results.len(),
        before as f64 / results.len() as f64,
        after - before
    );
    assert!(
        after - before <= 3,
        "{} entries proposed while idle",
        after - before
    );
    let copied = std::fs::read_dir(c.root.path().join("repository/bob/in"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(copied >= 200, "{copied} files copied to bob");

    // The killed server comes back and catches up.
    println!("fault: {} restarted", c.servers[leader].name);
    c.start_server(leader);
    assert!(
        wait_until(30, || c.transfer_ids(leader)
            == c.transfer_ids(survivors[0])),
        "{} did not catch up",
        c.servers[leader].name
    );

    // Losing the majority: the last server may have missed changes made
    // by the others (a disabled account), so it stops taking logins and
    // writes.
    println!(
        "fault: SIGKILL {} and {}",
        c.servers[survivors[0]].name, c.servers[survivors[1]].name
    );
    c.kill(survivors[0]);
    c.kill(survivors[1]);
    assert!(wait_until(10, || c.role(leader).is_some_and(|r| !r.ready)));
    let out = sftp(&c, &key, "ls\n");
    assert!(!out.status.success());
    // The edge disconnects with that reason; OpenSSH may print the refusal
    // that russh sends just before the disconnect instead.
    assert!(
        stderr(&out).contains("no back-end server is available")
            || stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let refused = c.admin(
        leader,
        &["account", "add", "bob", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("cluster has no quorum: read-only"), "{err}");

    // Healed: writes work again and every log is the same.
    println!("fault: both restarted");
    c.start_server(survivors[0]);
    c.start_server(survivors[1]);
    assert!(wait_until(30, || c.primary().is_some()));
    let mut last = None;
    assert!(
        wait_until(30, || {
            let out = sftp(&c, &key, &format!("put {} healed.bin\n", local.display()));
            let ok = out.status.success();
            last = Some(out);
            ok
        }),
        "{}",
        stderr(last.as_ref().unwrap())
    );
    assert!(wait_until(30, || {
        let a = c.transfer_ids(0);
        a == c.transfer_ids(1) && a == c.transfer_ids(2)
    }));
    // What was uploaded before is there to download, and the download is
    // logged everywhere.
    let got = c.root.path().join("got.bin");
    assert_ok(&sftp(
        &c,
        &key,
        &format!("get w0-0.bin {}\n", got.display()),
    ));
    assert_eq!(sha256_file(&got), sha);
    for i in 0..3 {
        let has_row = || {
            let v: serde_json::Value = serde_json::from_str(&c.admin_ok(
                i,
                &["transfer", "list", "--json", "--limit", "10000"],
                None,
            ))
            .unwrap();
            v.as_array().unwrap().iter().any(|t| {
                t["direction"] == "download"
                    && t["path"].as_str().unwrap_or("").ends_with("w0-0.bin")
            })
        };
        assert!(
            wait_until(30, has_row),
            "{} lacks the download's row",
            c.servers[i].name
        );
    }
}

/// Alice and the every-2-s schedule `tick` that pulls into her home.
fn add_ticking_schedule(c: &TestCluster, i: usize) {
    c.admin_ok(
        i,
        &["account", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    c.add_ticking_schedule(i);
}

/// (slot, node, event id) of every firing of `tick`, as server `i` has them.
fn firings(c: &TestCluster, i: usize) -> Vec<(i64, String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&c.admin_ok(i, &["schedule", "firings", "tick", "--json"], None))
            .unwrap();
    let mut f: Vec<(i64, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                slot_ms(&f["slot"]),
                f["node"].as_str().unwrap_or("").to_owned(),
                f["event_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    f.sort();
    f
}

#[test]
fn schedule_slots_fire_exactly_once_across_five_leader_faults() {
    let mut c = TestCluster::start(THREE);
    c.init();
    assert!(wait_until(20, || c.primary().is_some()));
    add_ticking_schedule(&c, 0);
    assert!(wait_until(20, || firings(&c, 0).len() >= 2));
    for round in 0..5 {
        let leader = c.primary().unwrap();
        let name = c.servers[leader].name;
        if round % 2 == 0 {
            println!("fault {round}: SIGKILL {name} (leader), then restart");
            c.kill(leader);
            assert!(wait_until(20, || c.primary().is_some_and(|p| p != leader)));
            std::thread::sleep(std::time::Duration::from_secs(3));
            c.start_server(leader);
        } else {
            println!("fault {round}: SIGSTOP {name} (leader) past its lease, then SIGCONT");
            c.signal(leader, "-STOP");
            assert!(wait_until(20, || (0..3)
                .any(|i| i != leader && c.role(i).is_some_and(|r| r.primary))));
            std::thread::sleep(std::time::Duration::from_secs(3));
            c.signal(leader, "-CONT");
        }
        assert!(wait_until(20, || c.primary().is_some()));
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    // Let the last slots settle, then compare every server's history.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(wait_until(20, || {
        let a = firings(&c, 0);
        a == firings(&c, 1) && a == firings(&c, 2)
    }));
    let all = firings(&c, 0);
    let slots: Vec<i64> = all.iter().map(|f| f.0).collect();
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot fired twice: {all:?}");
    // No slot was skipped either: missed slots are caught up on takeover.
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], 2000, "a slot is missing: {all:?}");
    }
    let nodes: std::collections::BTreeSet<&str> = all.iter().map(|f| f.1.as_str()).collect();
    println!("{} slots fired once each, by {nodes:?}", slots.len());
    assert!(nodes.len() >= 2, "{all:?}");

    // `cluster events` is the cluster's history: asked through s1, it has
    // what s2 and s3 recorded too (it had only s1's own before).
    let events: serde_json::Value = serde_json::from_str(&c.admin_ok(
        0,
        &["cluster", "events", "--json", "--limit", "500"],
        None,
    ))
    .unwrap();
    let recorded_by: std::collections::BTreeSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"].as_str())
        .collect();
    assert_eq!(
        recorded_by,
        ["s1", "s2", "s3"].into_iter().collect(),
        "{events:#}"
    );
}

#[test]
fn two_servers_and_a_witness_survive_the_loss_of_either_server() {
    let mut c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "w1"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()));
    assert_ne!(c.primary(), Some(2), "the witness must never lead");
    assert_eq!(c.get(2, "/readyz").0, 503, "a witness is never ready");
    for victim in [0, 1] {
        let leader = c.primary().unwrap();
        let target = if victim == 0 { leader } else { 1 - leader };
        println!("fault: SIGKILL {}", c.servers[target].name);
        c.kill(target);
        let other = 1 - target;
        assert!(
            wait_until(20, || c.role(other).is_some_and(|r| r.primary)),
            "{} did not become primary",
            c.servers[other].name
        );
        c.admin_ok(
            other,
            &["account", "add", &format!("u{victim}"), "--password-stdin"],
            Some("Tangerine-Viaduct-47-Oslo\n"),
        );
        c.start_server(target);
        assert!(wait_until(20, || c
            .admin_ok(target, &["account", "list"], None)
            .contains(&format!("u{victim}"))));
    }
}

#[test]
fn a_partitioned_leader_turns_read_only_and_never_shares_a_term() {
    let c = TestCluster::start(ClusterSpec {
        proxies: Proxies::All,
        ..THREE
    });
    c.init();
    assert!(wait_until(20, || c.primary().is_some()));
    let key = c.account_with_key(0, "alice");
    let old = c.primary().unwrap();
    let name = c.servers[old].name;
    println!(
        "fault: partition {name} (the leader) from the others (TCP proxies blocked both ways)"
    );
    c.isolate(old, true);
    // Sample every role while partitioned: at most one primary per term.
    let mut primaries: std::collections::BTreeMap<u64, std::collections::BTreeSet<usize>> =
        Default::default();
    let deadline = Instant::now() + std::time::Duration::from_secs(6);
    while Instant::now() < deadline {
        for i in 0..3 {
            if let Some(r) = c.role(i) {
                if r.primary {
                    primaries.entry(r.epoch).or_default().insert(i);
                }
            }
        }
    }
    println!("primaries by term: {primaries:?}");
    assert!(primaries.values().all(|p| p.len() == 1), "{primaries:?}");
    let new = c.primary().expect("the majority elects a leader");
    assert_ne!(new, old);
    // The minority serves nothing. A change made through the old leader
    // enters its log but no majority can confirm it: the answer is that
    // the outcome is unknown (exit code 6, its own: neither "not found"
    // nor simply "unavailable"), not a failure, with the key to retry it
    // with.
    assert!(!c.role(old).unwrap().ready);
    let out = c.admin(
        old,
        &[
            "account",
            "add",
            "bob",
            "--password-stdin",
            "--idempotency-key",
            "add-bob-1",
        ],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("outcome unknown") && stderr(&out).contains("add-bob-1"),
        "{}",
        stderr(&out)
    );
    // The majority takes writes, including uploads through the edge.
    c.admin_ok(
        new,
        &["account", "add", "carol", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    let local = c.root.path().join("p.bin");
    random_file(&local, 64 * 1024);
    // The edge reaches all three, and sends each new session to a server
    // that takes writes: every upload succeeds at the first try.
    for n in 0..6 {
        assert_ok(&sftp(
            &c,
            &key,
            &format!("put {} during-{n}.bin\n", local.display()),
        ));
    }
    println!("fault: heal the partition");
    c.isolate(old, false);
    // Every node ends with the same transfer log and event queue.
    let digest = |i: usize| {
        let t = c.admin_ok(i, &["transfer", "list", "--json", "--limit", "10000"], None);
        let e = c.admin_ok(i, &["event", "list", "--json", "--limit", "10000"], None);
        let a = c.admin_ok(i, &["account", "list"], None);
        sha256_hex(&format!("{t}{e}{a}"))
    };
    assert!(
        wait_until(30, || {
            let d = digest(0);
            d == digest(1) && d == digest(2)
        }),
        "logs differ after healing"
    );
    assert!(c
        .admin_ok(old, &["account", "list"], None)
        .contains("carol"));
    // The old leader's entry was replaced by the majority's log: bob does
    // not exist. The same command with its key makes him, once; run again,
    // it answers the same.
    assert!(!c.admin_ok(old, &["account", "list"], None).contains("bob"));
    for _ in 0..2 {
        let out = c.admin(
            new,
            &[
                "account",
                "add",
                "bob",
                "--password-stdin",
                "--idempotency-key",
                "add-bob-1",
            ],
            Some("Tangerine-Viaduct-47-Oslo\n"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(wait_until(10, || c
        .admin_ok(old, &["account", "list"], None)
        .contains("bob")));
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn a_server_joins_with_the_token_and_another_leaves() {
    let c = TestCluster::start(ClusterSpec {
        initial: 2,
        ..THREE
    });
    let out = c.init();
    println!("{out}");
    let token = join_token(&out);
    assert!(wait_until(20, || c.primary().is_some()));
    c.admin_ok(
        0,
        &["account", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let s1_addr = format!("127.0.0.1:{}", c.servers[0].internal_port);
    // A wrong token is refused, and s3 stays outside.
    let bad = c.root.path().join("bad.token");
    std::fs::write(&bad, "fyj_0000\n").unwrap();
    let out = c.admin(
        2,
        &[
            "cluster",
            "join",
            &s1_addr,
            "--join-token-file",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong join token"),
        "{}",
        stderr(&out)
    );
    // With the token, s3 joins, catches up and takes writes.
    let good = c.root.path().join("join.token");
    std::fs::write(&good, format!("{token}\n")).unwrap();
    let out = c.admin_ok(
        2,
        &[
            "cluster",
            "join",
            &s1_addr,
            "--join-token-file",
            good.to_str().unwrap(),
        ],
        None,
    );
    println!("{out}");
    assert!(out.contains("s3 joined"), "{out}");
    assert!(wait_until(20, || c
        .admin_ok(2, &["account", "list"], None)
        .contains("alice")));
    c.admin_ok(
        2,
        &["account", "add", "bob", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    assert!(wait_until(20, || c
        .admin_ok(1, &["account", "list"], None)
        .contains("bob")));
    let status = c.admin_ok(0, &["cluster", "status"], None);
    println!("{status}");
    let release = format!("ferry {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(status.matches(&release).count(), 3, "{status}");
    // s2 leaves: the group is s1 and s3, and still takes writes.
    let out = c.admin_ok(1, &["cluster", "leave"], None);
    println!("{out}");
    assert!(out.contains("s2 left"), "{out}");
    c.admin_ok(
        2,
        &["account", "add", "carol", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    let status = c.admin_ok(0, &["cluster", "status", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let names: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"s2") && names.contains(&"s1") && names.contains(&"s3"),
        "{names:?}"
    );

    // s2 comes back on a new port that s1's peer list does not know: the
    // leader's entries could not reach it, so the leader refuses the join
    // before it changes the membership, instead of "joined" with a member
    // that cannot replicate.
    let mut c = c;
    c.kill(1);
    let config_path = c.servers[1].dir.join("server.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let moved = free_port();
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("advertise = ") {
                format!("advertise = \"127.0.0.1:{moved}\"\n")
            } else if l.starts_with("listen = \"127.0.0.1:") && !l.ends_with(":0\"") {
                format!("listen = \"127.0.0.1:{moved}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&config_path, config).unwrap();
    std::fs::remove_dir_all(c.servers[1].dir.join("state")).unwrap();
    c.start_server(1);
    let out = c.admin(
        1,
        &[
            "cluster",
            "join",
            &s1_addr,
            "--join-token-file",
            good.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !out.status.success(),
        "a join that cannot replicate succeeded"
    );
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach it") && err.contains("nothing was changed"),
        "{err}"
    );
    println!("{err}");
    let names = c.member_names(0);
    assert_eq!(
        names.len(),
        2,
        "the refused join changed the group: {names:?}"
    );
    c.admin_ok(
        0,
        &["account", "add", "dave", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
}

#[test]
fn a_join_is_refused_before_any_change_when_the_new_server_cannot_reach_a_member() {
    // s3 reaches s2 through a proxy the test cuts; the leader reaches s3.
    let c = TestCluster::start(ClusterSpec {
        initial: 2,
        proxies: Proxies::Link(2, 1),
        ..THREE
    });
    let out = c.init();
    let token = join_token(&out);
    let token_file = c.root.path().join("join.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    assert!(wait_until(20, || c.primary().is_some()));
    let s1_addr = format!("127.0.0.1:{}", c.servers[0].internal_port);
    let join = [
        "cluster",
        "join",
        &s1_addr,
        "--join-token-file",
        token_file.to_str().unwrap(),
    ];

    c.link(2, 1).block(true);
    let out = c.admin(2, &join, None);
    let err = stderr(&out);
    println!("{err}");
    assert!(!out.status.success(), "s3 joined without reaching s2");
    assert!(
        err.contains("s3 cannot reach s2") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        c.member_names(0).len(),
        2,
        "the refused join changed the group"
    );

    // Healed, the same join goes through.
    c.link(2, 1).block(false);
    let out = c.admin_ok(2, &join, None);
    assert!(out.contains("s3 joined"), "{out}");
    assert!(wait_until(20, || c.member_names(0).len() == 3));
}

/// A paramiko client through the edge at `port`: opens `name` for writing,
/// writes 64 KiB, says "written", waits for a line on stdin, then closes
/// the file and says "closed" or "close failed: …".
const SLOW_CLOSE: &str = r#"
import sys, paramiko
port, key, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t = paramiko.Transport(("127.0.0.1", port))
t.connect(username="alice", pkey=paramiko.Ed25519Key.from_private_key_file(key))
sftp = paramiko.SFTPClient.from_transport(t)
f = sftp.open(name, "wb")
f.write(b"x" * 65536)
f.flush()
print("written", flush=True)
sys.stdin.readline()
try:
    f.close()
    print("closed", flush=True)
except Exception as e:
    print("close failed:", e, flush=True)
"#;

#[test]
fn an_upload_closed_without_a_quorum_is_kept_and_logged_and_routed_later() {
    use std::io::{BufRead, BufReader, Write};
    let mut c = TestCluster::start(THREE);
    c.init();
    assert!(wait_until(20, || c.primary().is_some()));
    let key = c.account_with_key(0, "alice");
    c.admin_ok(
        0,
        &["account", "add", "bob", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    c.admin_ok(
        0,
        &[
            "route",
            "add",
            "to-bob",
            "--account",
            "alice",
            "--match",
            "*.bin",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    // A second edge in front of s1 alone: the session is on s1.
    let (_edge2, edge2_port) = c.edge_to(&[0]);
    let mut client = Command::new("python3")
        .args(["-c", SLOW_CLOSE, &edge2_port.to_string()])
        .arg(&key)
        .arg("late.bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "written");

    println!("fault: SIGKILL s2 and s3 while alice's upload on s1 is open");
    c.kill(1);
    c.kill(2);
    assert!(wait_until(10, || c.role(0).is_some_and(|r| !r.ready)));
    writeln!(client.stdin.as_mut().unwrap(), "close").unwrap();
    let said = lines.next().unwrap().unwrap();
    assert!(client.wait().unwrap().success());
    // The file is committed under its name, so the client is told so.
    assert_eq!(said, "closed", "the client was told: {said}");
    let stored = c.root.path().join("repository/alice/late.bin");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), 65536);

    println!("fault: s2 and s3 restarted");
    c.start_server(1);
    c.start_server(2);
    assert!(wait_until(30, || c.primary().is_some()));
    // Its row reaches every server once, and its route runs.
    let late_rows = |i: usize| {
        let v: serde_json::Value = serde_json::from_str(&c.admin_ok(
            i,
            &["transfer", "list", "--json", "--limit", "10000"],
            None,
        ))
        .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["account"] == "alice"
                    && t["direction"] == "upload"
                    && t["status"] == "completed"
                    && t["path"].as_str().unwrap_or("").ends_with("late.bin")
            })
            .count()
    };
    assert!(
        wait_until(30, || (0..3).all(|i| late_rows(i) == 1)),
        "rows for late.bin: {:?}",
        (0..3).map(late_rows).collect::<Vec<_>>()
    );
    assert!(
        wait_until(30, || c
            .root
            .path()
            .join("repository/bob/in/late.bin")
            .exists()),
        "the route did not copy late.bin to bob"
    );
}
