//! Virtual folders, end to end: one directory of the repository mounted
//! into two homes at different paths with different permissions, used by
//! OpenSSH sftp and scp and by curl on the HTTPS file API, and replicated
//! across an active/active cluster.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::*;

/// Runs `sftp -b` commands as `user`; returns (succeeded, stdout, stderr).
fn sftp(f: &Ferry, user: &str, key: &Path, cwd: &Path, commands: &str) -> (bool, String, String) {
    let out = f.sftp_key(user, key, &format!("{commands}\n"), cwd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

fn denied(f: &Ferry, user: &str, key: &Path, cwd: &Path, command: &str) {
    let (ok, _, err) = sftp(f, user, key, cwd, command);
    assert!(!ok, "{user}: {command:?} was allowed");
    assert!(
        err.contains("Permission denied"),
        "{user}: {command:?} failed otherwise: {err}"
    );
}

fn allowed(f: &Ferry, user: &str, key: &Path, cwd: &Path, command: &str) -> String {
    let (ok, out, err) = sftp(f, user, key, cwd, command);
    assert!(ok, "{user}: {command:?} was refused: {err}");
    out
}

#[test]
fn a_folder_shared_by_two_accounts_with_different_permissions() {
    let f = Ferry::up();
    let acme = f.account_with_key("acme");
    let team = f.account_with_key("team");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("report.csv"), 70_000);
    random_file(&work.join("other.csv"), 10_000);

    let out = f.admin_ok(&["folder", "add", "acme-out", "shared/acme-out"], None);
    assert!(out.contains("shared/acme-out"), "{out}");
    // The partner may do everything in its outbox; the team may only
    // list and download, at a path of its own.
    f.admin_ok(&["folder", "mount", "acme-out", "acme", "/outbox"], None);
    let out = f.admin_ok(
        &[
            "folder",
            "mount",
            "acme-out",
            "team",
            "/partners/acme",
            "--allow",
            "download-only",
        ],
        None,
    );
    assert!(out.contains("list,download"), "{out}");
    let listed: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["folder", "list", "--json"], None)).unwrap();
    assert_eq!(listed[0]["name"], "acme-out");
    assert_eq!(listed[0]["mounts"].as_array().unwrap().len(), 2, "{listed}");

    // The partner puts a file into its outbox: it is stored once, in the
    // folder's directory, not in either home.
    allowed(&f, "acme", &acme, &work, "put report.csv outbox/report.csv");
    let shared = f.repository.join("shared/acme-out");
    assert_eq!(
        sha256_file(&shared.join("report.csv")),
        sha256_file(&work.join("report.csv"))
    );
    assert!(!f.repository.join("acme/outbox/report.csv").exists());

    // The team sees it at its own path and downloads it three ways.
    let out = allowed(&f, "team", &team, &work, "ls partners\nls -l partners/acme");
    assert!(out.contains("acme") && out.contains("report.csv"), "{out}");
    allowed(
        &f,
        "team",
        &team,
        &work,
        "get partners/acme/report.csv got1.csv",
    );
    let out = f.scp_key(
        &team,
        &work,
        &["team@127.0.0.1:partners/acme/report.csv", "got2.csv"],
    );
    assert_ok(&out);
    let c = f.curl().user("team");
    let r = c.get("/api/v1/files/partners/acme/report.csv");
    assert_eq!(r.status, 200);
    std::fs::write(work.join("got3.csv"), &r.body).unwrap();
    for got in ["got1.csv", "got2.csv", "got3.csv"] {
        assert_eq!(
            sha256_file(&work.join(got)),
            sha256_file(&work.join("report.csv")),
            "{got}"
        );
    }

    // ... and can change nothing there, by any protocol.
    denied(
        &f,
        "team",
        &team,
        &work,
        "put other.csv partners/acme/other.csv",
    );
    denied(&f, "team", &team, &work, "rm partners/acme/report.csv");
    denied(
        &f,
        "team",
        &team,
        &work,
        "rename partners/acme/report.csv partners/acme/x.csv",
    );
    denied(&f, "team", &team, &work, "mkdir partners/acme/sub");
    let out = f.scp_key(
        &team,
        &work,
        &["other.csv", "team@127.0.0.1:partners/acme/"],
    );
    assert!(!out.status.success(), "scp upload was allowed");
    let r = c.run(
        &["-T", work.join("other.csv").to_str().unwrap()],
        "/api/v1/files/partners/acme/other.csv",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names, ["report.csv"], "the folder changed");
    // The mount point itself cannot be removed or renamed away, even by
    // the partner who may do everything inside it.
    denied(&f, "acme", &acme, &work, "rmdir outbox");
    denied(&f, "acme", &acme, &work, "rename outbox elsewhere");

    // The team's own home is untouched by the folder's rule.
    allowed(&f, "team", &team, &work, "put other.csv mine.csv");
    assert!(f.repository.join("team/mine.csv").is_file());

    // The log records the paths the clients used.
    let rows = f.transfers();
    assert!(
        rows.iter().any(|r| r["account"] == "acme"
            && r["path"] == "/outbox/report.csv"
            && r["direction"] == "upload"
            && r["status"] == "completed"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["account"] == "team"
            && r["path"] == "/partners/acme/report.csv"
            && r["direction"] == "download"),
        "{rows:?}"
    );

    // The partner removes the file; the team no longer sees it.
    allowed(&f, "acme", &acme, &work, "rm outbox/report.csv");
    let out = allowed(&f, "team", &team, &work, "ls partners/acme");
    assert!(!out.contains("report.csv"), "{out}");

    // A mounted folder cannot be removed; unmounted, it can (its
    // directory stays).
    let out = f.admin(&["folder", "remove", "acme-out"], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("mounted"), "{}", stderr(&out));
    f.admin_ok(&["folder", "unmount", "team", "/partners/acme"], None);
    f.admin_ok(&["folder", "unmount", "acme", "/outbox"], None);
    f.admin_ok(&["folder", "remove", "acme-out"], None);
    assert!(shared.is_dir());
    let listed = f.admin_ok(&["folder", "list"], None);
    assert!(listed.contains("No virtual folders"), "{listed}");
}

#[test]
fn mounts_are_checked_by_the_api() {
    let f = Ferry::up();
    f.add_account("acme");
    f.admin_ok(&["folder", "add", "out", "shared/out"], None);
    f.admin_ok(&["folder", "add", "in", "shared/in"], None);
    // One directory, one name.
    let out = f.admin(&["folder", "add", "out2", "shared/out"], None);
    assert!(!out.status.success());
    // Not the repository, not out of it.
    assert!(!f
        .admin(&["folder", "add", "root", "/"], None)
        .status
        .success());
    f.admin_ok(&["folder", "mount", "out", "acme", "/a/out"], None);
    for (folder, at) in [
        ("in", "/"),         // the home itself
        ("in", "/a/out/in"), // inside another mount
        ("in", "/a"),        // above another mount
        ("nope", "/in"),     // no such folder
    ] {
        let out = f.admin(&["folder", "mount", folder, "acme", at], None);
        assert!(!out.status.success(), "{folder} at {at} was mounted");
    }
    let out = f.admin(&["folder", "mount", "in", "nobody", "/in"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A mount at the same path replaces the old one.
    f.admin_ok(
        &[
            "folder",
            "mount",
            "in",
            "acme",
            "/a/out",
            "--allow",
            "upload-only",
        ],
        None,
    );
    let listed: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["folder", "list", "--json"], None)).unwrap();
    let inbox = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "in")
        .unwrap();
    assert_eq!(inbox["mounts"][0]["allow"], serde_json::json!(["upload"]));
    // Removing the account removes its mounts.
    f.admin_ok(&["account", "remove", "acme"], None);
    f.admin_ok(&["folder", "remove", "in"], None);
}

#[test]
fn a_folder_is_replicated_and_served_by_every_server_of_an_active_active_cluster() {
    use common::cluster::{ClusterSpec, TestCluster};
    let c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    let follower = (0..3).find(|&i| Some(i) != c.primary()).unwrap();
    let key = c.account_with_key(follower, "partner");
    c.admin_ok(follower, &["folder", "add", "drop", "shared/drop"], None);
    c.admin_ok(
        follower,
        &[
            "folder",
            "mount",
            "drop",
            "partner",
            "/drop",
            "--allow",
            "upload-only",
        ],
        None,
    );
    for i in 0..3 {
        assert!(
            wait_until(10, || c
                .admin_ok(i, &["folder", "list"], None)
                .contains("partner:/drop")),
            "{} lacks the mount",
            c.servers[i].name
        );
    }
    let work = c.root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("in.dat"), 20_000);
    // Whichever server the edge picks for each session serves the folder
    // and enforces its permissions.
    for round in 0..3 {
        let name = format!("drop/in-{round}.dat");
        let out = c.sftp("partner", &key, &format!("put in.dat {name}\n"), &work);
        assert_ok(&out);
        let out = c.sftp("partner", &key, &format!("get {name} back.dat\n"), &work);
        assert!(!out.status.success(), "round {round}: get was allowed");
        assert!(!work.join("back.dat").exists());
    }
    assert!(c
        .root
        .path()
        .join("repository/shared/drop/in-2.dat")
        .exists());
    assert!(!c
        .root
        .path()
        .join("repository/partner/drop/in-2.dat")
        .exists());
}
