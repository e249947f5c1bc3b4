//! Retention policies end to end: transfer-log rows, events and attempts
//! past their age go, except what an event still retrying needs; files of
//! a folder past their age are archived or deleted; partial uploads and
//! scratch files left behind go while a fresh one stays; a dry run lists
//! the same without removing anything; the run is counted in `/metrics`.
//!
//! Ages are given in seconds for the history (`--older-than 2s`: the
//! server's clock cannot be set from outside) and files are dated back
//! with their modification time. In an active/passive pair and an
//! active/active group, what one server deletes stays deleted everywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{random_file, wait_until, Ferry};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Writes `path` (and its folder) dated `days` days back.
fn old_file(path: &Path, days: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"old data\n").unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

fn events(f: &Ferry) -> Vec<Value> {
    json(&f.admin_ok(&["event", "list", "--json", "--limit", "1000"], None))
        .as_array()
        .unwrap()
        .clone()
}

/// The result of policy `name` in a run's JSON.
fn result<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == name)
        .unwrap_or_else(|| panic!("no result for {name}: {report}"))
}

fn items(r: &Value) -> Vec<String> {
    r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn old_rows_files_and_partials_go_but_what_a_retrying_event_needs_stays() {
    let f = Ferry::up_logged(&[]);
    let key = f.account_with_key("alice");
    f.add_account("bob");
    let home = f.repository.join("alice");

    // A partner nobody listens for: pushes to it fail and are retried
    // much later, so its event stays pending (retrying).
    let down = common::free_port().to_string();
    let host_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    f.admin_ok(
        &[
            "partner",
            "add",
            "gone",
            "--host",
            "127.0.0.1",
            "--port",
            &down,
            "--user",
            "x",
            "--password-stdin",
            "--host-key",
            host_key.trim(),
        ],
        Some("secret-password\n"),
    );
    let route = |name: &str, pattern: &str, action: &str| {
        f.admin_ok(
            &[
                "route",
                "add",
                name,
                "--account",
                "alice",
                "--match",
                pattern,
                "--action",
                action,
                "--max-attempts",
                "20",
                "--retry-base-ms",
                "600000",
            ],
            None,
        );
    };
    route("to-gone", "*.csv", "push:gone");
    route("to-bob", "*.txt", "copy:bob");

    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for name in ["kept.csv", "copied.txt", "plain.bin"] {
        random_file(&work.join(name), 5_000);
    }
    common::assert_ok(&f.sftp_key(
        "alice",
        &key,
        "put kept.csv\nput copied.txt\nput plain.bin\n",
        &work,
    ));
    // The push failed once and waits; the copy is done.
    assert!(wait_until(30, || {
        let e = events(&f);
        e.iter()
            .any(|e| e["route"] == "to-gone" && e["status"] == "pending" && e["attempts"] == 1)
            && e.iter()
                .any(|e| e["route"] == "to-bob" && e["status"] == "done")
    }));
    let all = events(&f);
    let retrying = all.iter().find(|e| e["route"] == "to-gone").unwrap();
    let retrying_id = retrying["id"].as_str().unwrap().to_owned();
    let kept_upload = retrying["transfer_id"].as_str().unwrap().to_owned();
    let done_id = all.iter().find(|e| e["route"] == "to-bob").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = f.transfers();
    let id_of = |path: &str| {
        before
            .iter()
            .find(|t| t["path"] == path && t["direction"] == "upload" && t["account"] == "alice")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (copied, plain) = (id_of("/copied.txt"), id_of("/plain.bin"));
    assert_eq!(id_of("/kept.csv"), kept_upload);

    // Files: an outbox archived, a drop folder emptied; partials.
    old_file(&home.join("outbox/old-1.dat"), 3);
    old_file(&home.join("outbox/old-2.dat"), 3);
    std::fs::write(home.join("outbox/new.dat"), b"fresh\n").unwrap();
    old_file(&home.join("drop/stale.dat"), 10);
    old_file(&home.join(".ferry-partial.cut.dat"), 2);
    old_file(&home.join("deep/er/.ferry-scratch.00112233aabbccdd"), 2);
    // A resumable (tus) upload over HTTPS left half done two days ago.
    let c = f.curl().user("alice");
    let r = c.run(
        &[
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 10000",
            "-H",
            // filename half.bin
            "Upload-Metadata: filename aGFsZi5iaW4=",
        ],
        "/api/v1/uploads/",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    let upload_id = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let half = work.join("half.bin");
    random_file(&half, 5_000);
    let r = c.run(
        &[
            "-X",
            "PATCH",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Content-Type: application/offset+octet-stream",
            "-H",
            "Upload-Offset: 0",
            "--data-binary",
            &format!("@{}", half.display()),
        ],
        &location,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let data = home.join(format!(".ferry-uploads/{upload_id}.data"));
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))
        .unwrap();
    std::fs::write(home.join(".ferry-partial.fresh.dat"), b"still coming").unwrap();

    let set = |args: &[&str]| {
        let mut all = vec!["retention", "set"];
        all.extend_from_slice(args);
        f.admin_ok(&all, None)
    };
    set(&["log", "--kind", "transfers", "--older-than", "2s"]);
    set(&["queue", "--kind", "events", "--older-than", "2s"]);
    set(&["tries", "--kind", "attempts", "--older-than", "2s"]);
    let out = set(&[
        "outbox",
        "--kind",
        "files",
        "--older-than",
        "1d",
        "--account",
        "alice",
        "--folder",
        "/outbox",
        "--action",
        "archive:/archive",
    ]);
    assert!(out.contains("older than 1d"), "{out}");
    set(&[
        "drop",
        "--kind",
        "files",
        "--older-than",
        "7d",
        "--account",
        "alice",
        "--folder",
        "/drop/",
        "--action",
        "delete",
    ]);
    set(&["leftovers", "--kind", "partials", "--older-than", "1d"]);
    // Refused: a files policy without its folder, an unknown kind, a bad age.
    for bad in [
        &[
            "x",
            "--kind",
            "files",
            "--older-than",
            "1d",
            "--account",
            "alice",
        ][..],
        &["x", "--kind", "logs", "--older-than", "1d"],
        &["x", "--kind", "transfers", "--older-than", "1w"],
    ] {
        let mut all = vec!["retention", "set"];
        all.extend_from_slice(bad);
        assert!(!f.admin(&all, None).status.success(), "{bad:?}");
    }
    let listed = json(&f.admin_ok(&["retention", "list", "--json"], None));
    assert_eq!(listed.as_array().unwrap().len(), 6, "{listed}");
    let table = f.admin_ok(&["retention", "list"], None);
    assert!(
        table.contains("files in alice:/outbox (archive:/archive)"),
        "{table}"
    );

    // Past the 2 s of the history policies.
    std::thread::sleep(Duration::from_millis(2_500));

    // The dry run lists, and removes nothing.
    let dry = json(&f.admin_ok(&["retention", "run", "--dry-run", "--json"], None));
    assert_eq!(dry["dry_run"], true);
    let log = items(result(&dry, "log"));
    assert!(log.contains(&copied) && log.contains(&plain), "{log:?}");
    assert!(!log.contains(&kept_upload), "{log:?}");
    assert!(
        !before
            .iter()
            .filter(|t| t["event_id"] == retrying_id.as_str())
            .any(|t| log.contains(&t["id"].as_str().unwrap().to_owned())),
        "a row of the retrying event's work is listed: {log:?}"
    );
    assert_eq!(items(result(&dry, "queue")), std::slice::from_ref(&done_id));
    assert_eq!(items(result(&dry, "tries")), [format!("{done_id}#1")]);
    assert_eq!(
        items(result(&dry, "outbox")),
        ["/outbox/old-1.dat", "/outbox/old-2.dat"]
    );
    assert_eq!(items(result(&dry, "drop")), ["/drop/stale.dat"]);
    assert_eq!(
        items(result(&dry, "leftovers")),
        [
            "alice/.ferry-partial.cut.dat".to_owned(),
            format!("alice/.ferry-uploads/{upload_id}"),
            "alice/deep/er/.ferry-scratch.00112233aabbccdd".to_owned(),
        ]
    );
    assert_eq!(f.transfers().len(), before.len());
    assert!(home.join("outbox/old-1.dat").exists() && home.join(".ferry-partial.cut.dat").exists());
    let human = f.admin_ok(&["retention", "run", "--dry-run"], None);
    assert!(human.contains("would remove"), "{human}");

    // The run.
    let run = json(&f.admin_ok(&["retention", "run", "--json"], None));
    assert_eq!(run["dry_run"], false);
    for r in run["results"].as_array().unwrap() {
        assert!(r["error"].is_null(), "{r}");
    }
    let removed_rows = result(&run, "log")["removed"].as_u64().unwrap();
    assert_eq!(removed_rows as usize, log.len());
    let after = f.transfers();
    let ids: Vec<&str> = after.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&kept_upload.as_str()), "{ids:?}");
    assert!(!ids.contains(&copied.as_str()) && !ids.contains(&plain.as_str()));
    for t in &after {
        let removed_upload = t["status"] == "interrupted"
            && t["error"]
                .as_str()
                .is_some_and(|e| e.contains("retention policy leftovers"));
        assert!(
            t["id"] == kept_upload.as_str()
                || t["event_id"] == retrying_id.as_str()
                || removed_upload,
            "kept a row nothing needs: {t}"
        );
    }
    // The resumable upload removed is logged, as an expired one is.
    assert!(
        after.iter().any(|t| t["status"] == "interrupted"
            && t["protocol"] == "https"
            && t["path"].as_str().is_some()),
        "{after:?}"
    );
    // The retrying event and its attempt stay; the done one is gone.
    let shown = json(&f.admin_ok(&["event", "show", &retrying_id, "--json"], None));
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(shown["attempt_log"].as_array().unwrap().len(), 1, "{shown}");
    let gone = f.admin(&["event", "show", &done_id], None);
    assert_eq!(gone.status.code(), Some(3));

    // Files: archived, deleted; the fresh ones stay.
    assert!(!home.join("outbox/old-1.dat").exists());
    assert!(home.join("archive/old-1.dat").exists() && home.join("archive/old-2.dat").exists());
    assert!(home.join("outbox/new.dat").exists());
    assert!(!home.join("drop/stale.dat").exists() && home.join("drop").is_dir());
    assert!(!home.join(".ferry-partial.cut.dat").exists());
    assert!(!home
        .join("deep/er/.ferry-scratch.00112233aabbccdd")
        .exists());
    assert!(!data.exists());
    assert!(!home
        .join(format!(".ferry-uploads/{upload_id}.json"))
        .exists());
    assert_eq!(
        c.run(&["-I", "-H", "Tus-Resumable: 1.0.0"], &location)
            .status,
        404
    );
    assert!(home.join(".ferry-partial.fresh.dat").exists());

    // Again: nothing left to remove.
    let again = json(&f.admin_ok(&["retention", "run", "--json"], None));
    for r in again["results"].as_array().unwrap() {
        assert_eq!(r["removed"], 0, "{r}");
    }

    // Metrics, the log line, the worker, the audit trail.
    let data = f.dir.path().join("data");
    let url = std::fs::read_to_string(data.join("admin.url")).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(data.join("pki/ca.crt"))
        .arg(format!("{}/metrics", url.trim()))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        metrics.contains(&format!(
            "ferry_retention_removed_total{{kind=\"transfers\"}} {removed_rows}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_retention_removed_total{kind=\"files\"} 3"));
    assert!(
        metrics.contains("ferry_retention_runs_total 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("ferry_retention_last_run_timestamp_seconds 0\n"));
    assert!(f.log().contains("retention run"));
    let status = f.admin_ok(&["cluster", "status"], None);
    assert!(status.contains("retention"), "{status}");
    let audit = f.admin_ok(&["audit", "list", "--json"], None);
    assert!(audit.contains("/api/v1/retention/run"), "{audit}");

    // A policy removed is gone from the list.
    f.admin_ok(&["retention", "remove", "drop"], None);
    assert_eq!(
        f.admin(&["retention", "remove", "drop"], None)
            .status
            .code(),
        Some(3)
    );
    let listed = json(&f.admin_ok(&["retention", "list", "--json"], None));
    assert_eq!(listed.as_array().unwrap().len(), 5);
}

/// Writes a transfer-log row straight into server `i`'s store (as its own
/// sessions would), ended at `ended_at`.
fn write_row(c: &common::cluster::TestCluster, i: usize, id: &str, ended_at: i64) {
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

/// The transfer ids server `i` lists.
fn ids(c: &common::cluster::TestCluster, i: usize) -> Vec<String> {
    c.transfer_ids(i).into_iter().map(|r| r.0).collect()
}

/// Whether server `i` lists every one of `want`.
fn holds(c: &common::cluster::TestCluster, i: usize, want: &[&str]) -> bool {
    let have = ids(c, i);
    want.iter().all(|w| have.iter().any(|h| h == w))
}

/// Whether server `i` lists none of `of`.
fn holds_none(c: &common::cluster::TestCluster, i: usize, of: &[&str]) -> bool {
    let have = ids(c, i);
    !of.iter().any(|w| have.iter().any(|h| h == w))
}

/// The value of metric `name` (a full sample name with labels) on server `i`.
fn metric(c: &common::cluster::TestCluster, i: usize, name: &str) -> Option<f64> {
    let (status, body) = c.get(i, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn active_passive_rows_deleted_on_the_active_server_do_not_come_back_and_a_standby_trims_its_own() {
    use common::cluster::{ClusterSpec, TestCluster};
    const S1: usize = 0;
    const S2: usize = 1;
    const W1: usize = 2;
    println!(
        "faults: SIGKILL of the active server right after a purge, restarted at once (its \
         history marks start again from 0 against a standby still holding the purged rows)"
    );
    let mut c = TestCluster::new(ClusterSpec::active_passive());
    // Retention every second, two rows a batch.
    for s in &c.servers {
        let path = s.dir.join("server.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "lease_secs = 6\n",
            "lease_secs = 6\nretention_interval_secs = 1\nretention_batch = 2\nretention_pause_ms = 50\n",
        );
        std::fs::write(&path, text).unwrap();
    }
    c.start_server(S1);
    c.start_server(W1);
    assert!(c.wait_role(S1, "active", true, 30));
    c.start_server(S2);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_hours_ago = now - 2 * 3_600_000;
    for id in ["old-1", "old-2", "old-3"] {
        write_row(&c, S1, id, two_hours_ago);
    }
    write_row(&c, S2, "old-s2", two_hours_ago);
    write_row(&c, S1, "fresh", now);
    let old = ["old-1", "old-2", "old-3", "old-s2"];
    let everything = ["old-1", "old-2", "old-3", "old-s2", "fresh"];
    assert!(wait_until(30, || holds(&c, S1, &everything)
        && holds(&c, S2, &everything)));

    // The policy on the active server only: its worker purges its store;
    // the standby, without the policy, keeps its copy.
    c.admin_ok(
        S1,
        &[
            "retention",
            "set",
            "log",
            "--kind",
            "transfers",
            "--older-than",
            "1h",
        ],
        None,
    );
    assert!(
        wait_until(30, || holds_none(&c, S1, &old)),
        "{:?}",
        ids(&c, S1)
    );
    assert!(holds(&c, S1, &["fresh"]));
    assert!(wait_until(10, || metric(
        &c,
        S1,
        "ferry_retention_removed_total{kind=\"transfers\"}"
    ) == Some(4.0)));
    assert!(holds(&c, S2, &everything), "{:?}", ids(&c, S2));

    // Restarted, the active server pulls the standby's history from the
    // start: the purged rows are offered again and not taken.
    c.kill(S1);
    c.start_server(S1);
    assert!(wait_until(60, || c.primary().is_some()));
    let active = c.primary().unwrap();
    println!("after the restart the active server is s{}", active + 1);
    write_row(&c, S2, "later", now);
    assert!(
        wait_until(30, || holds(&c, S1, &["later", "fresh"])),
        "{:?}",
        ids(&c, S1)
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        holds_none(&c, S1, &old),
        "purged rows came back: {:?}",
        ids(&c, S1)
    );
    // Its retention ran since, and found nothing to remove again.
    assert!(metric(&c, S1, "ferry_retention_runs_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        metric(&c, S1, "ferry_retention_removed_total{kind=\"transfers\"}").unwrap_or(0.0),
        0.0
    );

    // Once the standby has the policy too (a sync), it trims its own copy.
    if active == S1 {
        c.admin_ok(S1, &["sync"], None);
    } else {
        c.admin_ok(
            S2,
            &[
                "retention",
                "set",
                "log",
                "--kind",
                "transfers",
                "--older-than",
                "1h",
            ],
            None,
        );
    }
    assert!(
        wait_until(30, || holds_none(&c, S2, &old)),
        "{:?}",
        ids(&c, S2)
    );
    assert!(holds(&c, S2, &["fresh", "later"]));
    assert!(holds(&c, S1, &["fresh", "later"]));
}

#[test]
fn active_active_a_purge_deletes_the_same_rows_on_every_server_and_runs_on_the_leader_only() {
    use common::cluster::{ClusterSpec, TestCluster};
    println!("faults: none; three Raft servers, a purge asked of a follower");
    let c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(
        wait_until(20, || c.primary().is_some()),
        "no primary elected"
    );
    let primary = c.primary().unwrap();
    let follower = (0..3).find(|&i| i != primary).unwrap();
    let key = c.account_with_key(follower, "alice");
    let work = c.root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for name in ["a.bin", "b.bin", "c.bin"] {
        random_file(&work.join(name), 2_000);
    }
    common::assert_ok(&c.sftp("alice", &key, "put a.bin\nput b.bin\nput c.bin\n", &work));
    let rows = |i: usize| c.transfer_ids(i).len();
    assert!(wait_until(20, || (0..3).all(|i| rows(i) == 3)));

    // The worker waits on the followers: the leader alone runs retention.
    let status: Value =
        serde_json::from_str(&c.admin_ok(0, &["cluster", "status", "--json"], None)).unwrap();
    for m in status["members"].as_array().unwrap() {
        let retention = m["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "retention")
            .unwrap_or_else(|| panic!("no retention worker in {m}"));
        let state = retention["state"].as_str().unwrap();
        if m["primary"] == true {
            assert!(state == "idle" || state == "busy", "{m}");
        } else {
            assert_eq!(state, "standby", "{m}");
        }
    }

    c.admin_ok(
        follower,
        &[
            "retention",
            "set",
            "log",
            "--kind",
            "transfers",
            "--older-than",
            "1s",
        ],
        None,
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let run: Value =
        serde_json::from_str(&c.admin_ok(follower, &["retention", "run", "--json"], None)).unwrap();
    assert_eq!(result(&run, "log")["removed"], 3, "{run}");
    assert!(
        wait_until(20, || (0..3).all(|i| rows(i) == 0)),
        "{:?}",
        (0..3).map(rows).collect::<Vec<_>>()
    );
    // Every server has the same policy, and nothing more to remove.
    let other = (0..3).find(|&i| i != follower).unwrap();
    let dry: Value = serde_json::from_str(&c.admin_ok(
        other,
        &["retention", "run", "--dry-run", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(result(&dry, "log")["removed"], 0, "{dry}");
}
