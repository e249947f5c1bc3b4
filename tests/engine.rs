//! End-to-end tests of the transfer engine: routes pushing to a real OpenSSH
//! sshd and to a second Ferry, scheduled pulls, a folder monitor, retries
//! and resubmits, a wrong host key, and a node killed mid-delivery.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "common/sshd.rs"]
mod sshd;

use std::path::Path;
use std::process::Command;

use common::{random_file, sha256_file, slot_ms, wait_until, Ferry};
use serde_json::Value;

/// The host key line `ssh-keyscan` reports for a server on 127.0.0.1:PORT,
/// as an operator would fetch it (and check it with the partner).
fn keyscan(port: u16) -> String {
    for _ in 0..20 {
        let out = Command::new("ssh-keyscan")
            .args(["-t", "ed25519", "-p", &port.to_string(), "127.0.0.1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("ssh-ed25519")) {
            return line.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("ssh-keyscan found no key on port {port}");
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn events(f: &Ferry, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["event", "list", "--json", "--limit", "1000"];
    args.extend_from_slice(extra);
    json(&f.admin_ok(&args, None)).as_array().unwrap().clone()
}

/// Adds the sshd fixture as partner `name` with key authentication.
fn add_sshd_partner(f: &Ferry, name: &str, sshd: &sshd::Sshd, remote_dir: &Path, extra: &[&str]) {
    let port = sshd.port.to_string();
    let mut args = vec![
        "partner",
        "add",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        &sshd.user,
        "--key-file",
        sshd.client_key.to_str().unwrap(),
        "--host-key",
        &sshd.host_key_pub,
        "--remote-dir",
        remote_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    f.admin_ok(&args, None);
}

/// Uploads `local` as `name` into `account`'s home over SFTP.
fn upload(f: &Ferry, account: &str, key: &Path, local: &Path, remote: &str) {
    let out = f.sftp_key(
        account,
        key,
        &format!("put {} {remote}\n", local.display()),
        f.dir.path(),
    );
    common::assert_ok(&out);
}

/// Files in `dir` (names), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn routes_push_to_sshd_and_a_second_ferry_schedules_pull_and_a_monitor_ingests() {
    let sshd = sshd::start();
    let inbox = sshd.root.join("inbox");
    let outbox = sshd.root.join("outbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&outbox).unwrap();

    let a = Ferry::up_with(&["--monitor-rescan-secs", "1"]);
    let b = Ferry::up();
    let key = a.account_with_key("alice");
    a.add_account("bob");
    b.add_account("partnerin");

    // Partners: the sshd (key login, pinned key given as a .pub line) and
    // the second Ferry (password login, key as ssh-keyscan prints it).
    add_sshd_partner(&a, "acme", &sshd, &inbox, &[]);
    add_sshd_partner(&a, "acme-out", &sshd, &outbox, &["--after-pull", "delete"]);
    let b_key = keyscan(b.sftp_port);
    let b_port = b.sftp_port.to_string();
    a.admin_ok(
        &[
            "partner",
            "add",
            "ferry-b",
            "--host",
            "127.0.0.1",
            "--port",
            &b_port,
            "--user",
            "partnerin",
            "--password-stdin",
            "--host-key",
            &b_key,
            "--remote-dir",
            "/",
        ],
        Some(&format!("{}\n", common::PASSWORD)),
    );
    let listed = a.admin_ok(&["partner", "list"], None);
    assert!(
        listed.contains("acme") && listed.contains("ferry-b"),
        "{listed}"
    );
    assert!(!listed.contains(common::PASSWORD));
    std::fs::write(inbox.join("hello.txt"), "hi").unwrap();
    let tested = a.admin_ok(&["partner", "test", "acme"], None);
    assert!(tested.contains("hello.txt"), "{tested}");
    std::fs::remove_file(inbox.join("hello.txt")).unwrap();
    let tested = a.admin_ok(&["partner", "test", "ferry-b"], None);
    assert!(tested.contains("verified"), "{tested}");

    // A chained route: push to both partners, copy to bob, archive, rename.
    a.admin_ok(
        &[
            "route",
            "add",
            "csv-out",
            "--account",
            "alice",
            "--match",
            "*.csv",
            "--action",
            "push:acme",
            "--action",
            "push:ferry-b",
            "--action",
            "copy:bob/in",
            "--action",
            "archive:/archive",
            "--action",
            "rename:{date}-{name}",
        ],
        None,
    );
    let local = a.dir.path().join("report.csv");
    random_file(&local, 300_000);
    let sha = sha256_file(&local);
    upload(&a, "alice", &key, &local, "report.csv");
    // A file the route does not match stays where it is.
    let other = a.dir.path().join("notes.txt");
    std::fs::write(&other, "not routed").unwrap();
    upload(&a, "alice", &key, &other, "notes.txt");

    assert!(
        wait_until(60, || events(&a, &["--status", "done"]).len() == 1),
        "route event did not finish: {:?}",
        events(&a, &[])
    );
    assert_eq!(sha256_file(&inbox.join("report.csv")), sha);
    assert_eq!(names(&inbox), vec!["report.csv"], "no temporary file left");
    assert_eq!(
        sha256_file(&b.repository.join("partnerin").join("report.csv")),
        sha
    );
    assert_eq!(sha256_file(&a.repository.join("bob/in/report.csv")), sha);
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let archived = a
        .repository
        .join("alice/archive")
        .join(format!("{today}-report.csv"));
    assert_eq!(sha256_file(&archived), sha);
    assert!(!a.repository.join("alice/report.csv").exists());
    assert!(a.repository.join("alice/notes.txt").exists());

    // The transfer log: the upload, two pushes with SHA-256, the copy to
    // bob; `transfer show` lists the event and its attempt.
    let log = a.transfers();
    let upload_row = log
        .iter()
        .find(|t| t["path"] == "/report.csv" && t["direction"] == "upload")
        .unwrap();
    let pushes: Vec<&Value> = log.iter().filter(|t| t["direction"] == "push").collect();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert!(pushes.iter().all(|t| t["sha256"] == sha.as_str()));
    let shown = a.admin_ok(
        &["transfer", "show", upload_row["id"].as_str().unwrap()],
        None,
    );
    assert!(
        shown.contains("route csv-out") && shown.contains("attempt 1") && shown.contains("done"),
        "{shown}"
    );
    // The second Ferry logged the delivery as an upload by its account.
    assert!(b
        .transfers()
        .iter()
        .any(|t| t["account"] == "partnerin" && t["sha256"] == sha.as_str()));

    // A scheduled pull every 2 s: each remote file comes in once and is
    // deleted on the partner only after it is committed here.
    let pulled_a = outbox.join("a.txt");
    random_file(&pulled_a, 50_000);
    let sha_a = sha256_file(&pulled_a);
    std::fs::write(outbox.join("b.txt"), "bee").unwrap();
    std::fs::write(outbox.join("skip.bin"), "not matched").unwrap();
    a.admin_ok(
        &[
            "schedule",
            "add",
            "pull-out",
            "--cron",
            "*/2 * * * * *",
            "--action",
            "pull:acme-out:*.txt:alice/pulled",
        ],
        None,
    );
    let pulled = a.repository.join("alice/pulled");
    assert!(
        wait_until(30, || names(&pulled) == vec!["a.txt", "b.txt"]
            && names(&outbox) == vec!["skip.bin"]),
        "pulled {:?}, left on partner {:?}",
        names(&pulled),
        names(&outbox)
    );
    assert_eq!(sha256_file(&pulled.join("a.txt")), sha_a);
    // Let a few more slots fire: nothing is pulled twice.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let firings = json(&a.admin_ok(&["schedule", "firings", "pull-out", "--json"], None));
    let slots: Vec<i64> = firings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| slot_ms(&f["slot"]))
        .collect();
    assert!(slots.len() >= 3, "{slots:?}");
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot fired twice");
    assert!(slots.iter().all(|s| s % 2000 == 0), "{slots:?}");
    let pull_rows = a
        .transfers()
        .into_iter()
        .filter(|t| t["direction"] == "pull")
        .count();
    assert_eq!(pull_rows, 2);

    // A scheduled push of a folder: each file version goes out once.
    let outgoing = a.repository.join("alice/outgoing");
    std::fs::create_dir_all(&outgoing).unwrap();
    random_file(&outgoing.join("o1.bin"), 20_000);
    std::fs::write(outgoing.join("o2.bin"), "two").unwrap();
    a.admin_ok(
        &[
            "schedule",
            "add",
            "push-out",
            "--cron",
            "*/2 * * * * *",
            "--action",
            "push:acme:alice/outgoing",
        ],
        None,
    );
    assert!(
        wait_until(30, || inbox.join("o1.bin").exists()
            && inbox.join("o2.bin").exists()),
        "{:?}",
        names(&inbox)
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        sha256_file(&inbox.join("o1.bin")),
        sha256_file(&outgoing.join("o1.bin"))
    );
    let folder_pushes = a
        .transfers()
        .into_iter()
        .filter(|t| {
            t["direction"] == "push" && t["path"].as_str().unwrap().starts_with("/outgoing/")
        })
        .count();
    assert_eq!(folder_pushes, 2, "each file pushed once");
    a.admin_ok(&["schedule", "remove", "push-out"], None);

    // A folder monitor: a file is ingested once it is stable; others stay.
    let drop = a.dir.path().join("drop");
    std::fs::create_dir(&drop).unwrap();
    a.admin_ok(
        &[
            "monitor",
            "add",
            "drop",
            "--dir",
            drop.to_str().unwrap(),
            "--match",
            "*.dat",
            "--account",
            "bob",
            "--target-dir",
            "/dropped",
            "--stable-ms",
            "500",
        ],
        None,
    );
    random_file(&drop.join("f.dat"), 70_000);
    let sha_f = sha256_file(&drop.join("f.dat"));
    std::fs::write(drop.join("ignore.tmp"), "x").unwrap();
    let landed = a.repository.join("bob/dropped/f.dat");
    assert!(
        wait_until(30, || landed.exists() && !drop.join("f.dat").exists()),
        "monitor did not ingest: {:?}",
        names(&drop)
    );
    assert_eq!(sha256_file(&landed), sha_f);
    assert_eq!(names(&drop), vec!["ignore.tmp"]);
    assert!(a
        .transfers()
        .iter()
        .any(|t| t["protocol"] == "monitor" && t["sha256"] == sha_f.as_str()));
}

#[test]
fn a_down_partner_is_retried_then_failed_and_a_resubmit_delivers() {
    let mut sshd = sshd::start();
    let a = Ferry::up();
    let key = a.account_with_key("alice");
    add_sshd_partner(&a, "acme", &sshd, &sshd.root, &[]);
    a.admin_ok(
        &[
            "route",
            "add",
            "out",
            "--account",
            "alice",
            "--match",
            "*",
            "--action",
            "push:acme",
            "--max-attempts",
            "3",
            "--retry-base-ms",
            "300",
        ],
        None,
    );
    sshd.stop();
    let local = a.dir.path().join("data.bin");
    random_file(&local, 100_000);
    upload(&a, "alice", &key, &local, "data.bin");

    assert!(
        wait_until(60, || events(&a, &["--status", "failed"]).len() == 1),
        "{:?}",
        events(&a, &[])
    );
    let failed = &events(&a, &["--status", "failed"])[0];
    assert_eq!(failed["attempts"], 3);
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("acme"), "{error}");
    let id = failed["id"].as_str().unwrap().to_owned();
    let shown = a.admin_ok(&["event", "show", &id], None);
    assert_eq!(shown.matches("retry").count(), 2, "{shown}");
    assert!(
        shown.contains("attempt 3") && shown.contains("failed"),
        "{shown}"
    );
    // Filters: by partner and status.
    assert_eq!(events(&a, &["--partner", "acme"]).len(), 1);
    assert!(events(&a, &["--partner", "other"]).is_empty());
    assert!(events(&a, &["--status", "done"]).is_empty());
    let failed_pushes = a.admin_ok(
        &[
            "transfer",
            "list",
            "--partner",
            "acme",
            "--status",
            "failed",
            "--json",
        ],
        None,
    );
    assert_eq!(json(&failed_pushes).as_array().unwrap().len(), 3);

    // A running or pending event cannot be resubmitted; a failed one can.
    sshd.start_again();
    let out = a.admin_ok(&["event", "resubmit", &id], None);
    assert!(out.contains("resubmitted"), "{out}");
    assert!(
        wait_until(30, || events(&a, &["--status", "done"]).len() == 1),
        "{:?}",
        events(&a, &[])
    );
    assert_eq!(
        sha256_file(&sshd.root.join("data.bin")),
        sha256_file(&local)
    );
    let done = &events(&a, &["--status", "done"])[0];
    assert_eq!(done["kind"], "resubmit");
    assert_eq!(done["resubmit_of"], id.as_str());
    let again = a.admin(&["event", "resubmit", done["id"].as_str().unwrap()], None);
    assert!(
        again.status.success(),
        "a done event may be sent again on purpose"
    );
}

#[test]
fn a_wrong_partner_host_key_is_refused() {
    let sshd = sshd::start();
    let a = Ferry::up();
    let key = a.account_with_key("alice");
    let other = sshd::keygen(&a.dir.path().join("not_the_host_key"));
    let port = sshd.port.to_string();
    a.admin_ok(
        &[
            "partner",
            "add",
            "impostor",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            &sshd.user,
            "--key-file",
            sshd.client_key.to_str().unwrap(),
            "--host-key",
            &other,
            "--remote-dir",
            sshd.root.to_str().unwrap(),
        ],
        None,
    );
    let out = a.admin(&["partner", "test", "impostor"], None);
    // A failed partner is a failure (1), not an unavailable server (5).
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host key mismatch"), "{err}");

    // A delivery to it fails at once (no retry can fix a wrong key) and
    // nothing reaches the server.
    a.admin_ok(
        &[
            "route",
            "add",
            "out",
            "--account",
            "alice",
            "--match",
            "*",
            "--action",
            "push:impostor",
        ],
        None,
    );
    let local = a.dir.path().join("secret.bin");
    random_file(&local, 10_000);
    upload(&a, "alice", &key, &local, "secret.bin");
    assert!(wait_until(30, || events(&a, &["--status", "failed"]).len() == 1));
    let failed = &events(&a, &["--status", "failed"])[0];
    assert_eq!(failed["attempts"], 1);
    assert!(failed["last_error"]
        .as_str()
        .unwrap()
        .contains("host key mismatch"));
    assert!(names(&sshd.root).is_empty());

    // Bad input is refused with a clear message.
    let bad = a.admin(
        &[
            "partner",
            "add",
            "x",
            "--host",
            "h",
            "--user",
            "u",
            "--password-stdin",
            "--host-key",
            "ssh-ed25519 notbase64!",
        ],
        Some("pw\n"),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("host key"));
    let bad = a.admin(
        &[
            "route",
            "add",
            "r",
            "--account",
            "alice",
            "--match",
            "*",
            "--action",
            "exec:rm -rf /",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown action"));
    let bad = a.admin(
        &[
            "schedule",
            "add",
            "s",
            "--cron",
            "* * *",
            "--action",
            "pull:impostor:alice",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fields"));
}

#[test]
fn a_node_killed_mid_delivery_completes_the_event_exactly_once() {
    let sshd = sshd::start();
    let mut a = Ferry::up_with(&["--lease-secs", "3"]);
    let key = a.account_with_key("alice");
    // 512 KiB/s: the 3 MiB file takes about six seconds to push.
    add_sshd_partner(&a, "acme", &sshd, &sshd.root, &["--rate-limit-kib", "512"]);
    a.admin_ok(
        &[
            "route",
            "add",
            "out",
            "--account",
            "alice",
            "--match",
            "*.bin",
            "--action",
            "push:acme",
            "--retry-base-ms",
            "200",
        ],
        None,
    );
    let local = a.dir.path().join("big.bin");
    random_file(&local, 3 << 20);
    let sha = sha256_file(&local);
    upload(&a, "alice", &key, &local, "big.bin");

    // Kill the node once part of the file is on the partner.
    let partial_seen = wait_until(30, || {
        std::fs::read_dir(&sshd.root).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name != "big.bin" && e.metadata().map(|m| m.len() > 100_000).unwrap_or(false)
        })
    });
    assert!(
        partial_seen,
        "no partial upload appeared: {:?}",
        names(&sshd.root)
    );
    a.kill_and_restart(&["--lease-secs", "3"]);

    assert!(
        wait_until(60, || events(&a, &["--status", "done"]).len() == 1),
        "{:?}",
        events(&a, &[])
    );
    assert_eq!(names(&sshd.root), vec!["big.bin"], "one file, no partial");
    assert_eq!(sha256_file(&sshd.root.join("big.bin")), sha);
    let event = &events(&a, &[])[0];
    let shown = json(&a.admin_ok(
        &["event", "show", event["id"].as_str().unwrap(), "--json"],
        None,
    ));
    let attempts = shown["attempt_log"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts[0]["outcome"], "lease expired");
    assert_eq!(attempts.last().unwrap()["outcome"], "done");
    let pushes: Vec<Value> = a
        .transfers()
        .into_iter()
        .filter(|t| t["direction"] == "push" && t["status"] == "completed")
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
}
