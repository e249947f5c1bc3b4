//! Folder permissions, end to end: rules set with the CLI are enforced by
//! the server for OpenSSH sftp and scp and for curl on the HTTPS file API
//! alike (one check), inherited by subfolders, and reach sessions already
//! logged in. A refusal is "permission denied" and changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Runs one `sftp -b` command; returns (succeeded, stderr).
fn sftp1(f: &Ferry, user: &str, key: &Path, cwd: &Path, command: &str) -> (bool, String) {
    let out = f.sftp_key(user, key, &format!("{command}\n"), cwd);
    (out.status.success(), stderr(&out))
}

/// A refused command: sftp prints the server's "Permission denied" (and
/// for all but `ls`, whose errors OpenSSH's batch mode does not count,
/// exits with failure).
fn denied(f: &Ferry, user: &str, key: &Path, cwd: &Path, command: &str) {
    let (ok, err) = sftp1(f, user, key, cwd, command);
    assert!(!ok || command.starts_with("ls"), "{command:?} was allowed");
    assert!(
        err.contains("Permission denied"),
        "{command:?} failed otherwise: {err}"
    );
}

fn allowed(f: &Ferry, user: &str, key: &Path, cwd: &Path, command: &str) {
    let (ok, err) = sftp1(f, user, key, cwd, command);
    assert!(ok, "{command:?} was refused: {err}");
}

#[test]
fn an_upload_only_account_can_put_but_not_list_get_remove_or_overwrite() {
    let f = Ferry::up();
    let key = f.account_with_key("drop");
    let home = f.repository.join("drop");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("secret.txt"), "not for the partner").unwrap();
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for name in ["a.dat", "b.dat", "c.dat"] {
        random_file(&work.join(name), 40_000);
    }

    let out = f.admin_ok(
        &["account", "permission", "set", "drop", "/", "upload-only"],
        None,
    );
    assert!(out.contains("upload"), "{out}");
    let rules: serde_json::Value = serde_json::from_str(
        &f.admin_ok(&["account", "permission", "list", "drop", "--json"], None),
    )
    .unwrap();
    assert_eq!(rules[0]["path"], "/");
    assert_eq!(rules[0]["allow"], serde_json::json!(["upload"]));

    // OpenSSH sftp: put works; nothing else does.
    allowed(&f, "drop", &key, &work, "put a.dat");
    assert_eq!(
        sha256_file(&home.join("a.dat")),
        sha256_file(&work.join("a.dat"))
    );
    denied(&f, "drop", &key, &work, "ls");
    // OpenSSH stats before it opens: without `list` it hears "not found".
    let (ok, _) = sftp1(&f, "drop", &key, &work, "get secret.txt got.txt");
    assert!(!ok && !work.join("got.txt").exists(), "get was allowed");
    denied(&f, "drop", &key, &work, "rm a.dat");
    denied(&f, "drop", &key, &work, "rename a.dat z.dat");
    denied(&f, "drop", &key, &work, "mkdir sub");
    // Sending a.dat again would replace what is there: overwrite.
    std::fs::write(work.join("a.dat"), "replacement").unwrap();
    denied(&f, "drop", &key, &work, "put a.dat");
    assert!(home.join("a.dat").exists() && home.join("secret.txt").exists());
    assert!(!home.join("z.dat").exists() && !home.join("sub").exists());
    assert_ne!(std::fs::read(home.join("a.dat")).unwrap(), b"replacement");

    // A client that uploads to a temporary name and renames it (WinSCP's
    // NAME.filepart) may rename what it just uploaded, and nothing else.
    random_file(&work.join("d.dat"), 30_000);
    allowed(
        &f,
        "drop",
        &key,
        &work,
        "put d.dat d.dat.filepart\nrename d.dat.filepart d.dat",
    );
    assert_eq!(
        sha256_file(&home.join("d.dat")),
        sha256_file(&work.join("d.dat"))
    );
    denied(&f, "drop", &key, &work, "rename d.dat e.dat");

    // scp: the same rules.
    let out = f.scp_key(&key, &work, &["b.dat", "drop@127.0.0.1:b.dat"]);
    assert_ok(&out);
    assert_eq!(
        sha256_file(&home.join("b.dat")),
        sha256_file(&work.join("b.dat"))
    );
    let out = f.scp_key(&key, &work, &["drop@127.0.0.1:secret.txt", "s.txt"]);
    assert!(!out.status.success(), "scp download was allowed");
    assert!(!work.join("s.txt").exists());

    // curl on the HTTPS file API: the same rules again.
    let c = f.curl().user("drop");
    let r = c.run(
        &["-T", work.join("c.dat").to_str().unwrap()],
        "/api/v1/files/c.dat",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for (args, path) in [
        (vec![], "/api/v1/files/secret.txt"),
        (vec![], "/api/v1/dirs/"),
        (vec!["-X", "DELETE"], "/api/v1/files/c.dat"),
        (vec!["-X", "POST"], "/api/v1/dirs/sub"),
    ] {
        let r = c.run(&args, path);
        assert_eq!(r.status, 403, "{args:?} {path}: {}", r.text());
    }
    assert!(home.join("c.dat").exists());

    // The log shows the three uploads and no download.
    let rows = f.transfers();
    let downloads = rows
        .iter()
        .filter(|r| r["direction"] == "download" && r["status"] == "completed")
        .count();
    assert_eq!(downloads, 0, "{rows:?}");

    // Removing the rule gives everything back.
    f.admin_ok(&["account", "permission", "remove", "drop", "/"], None);
    allowed(&f, "drop", &key, &work, "get secret.txt got.txt");
    assert!(work.join("got.txt").exists());
}

#[test]
fn the_deepest_folder_rule_decides_and_a_change_reaches_a_logged_in_session() {
    let f = Ferry::up();
    let key = f.account_with_key("team");
    let home = f.repository.join("team");
    std::fs::create_dir_all(home.join("in/open")).unwrap();
    std::fs::write(home.join("report.csv"), "a,b\n").unwrap();
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("x.dat"), 10_000);

    std::fs::create_dir_all(home.join("catalog")).unwrap();
    std::fs::write(home.join("catalog/prices.csv"), "1,2\n").unwrap();
    for (folder, allow) in [
        ("/", "download-only"),
        ("/catalog", "list"),
        ("in/", "upload,create-dirs"),
        ("/in/./open", "all"),
    ] {
        f.admin_ok(&["account", "perm", "set", "team", folder, allow], None);
    }
    // Folders are stored canonical: one rule each.
    let rules: serde_json::Value = serde_json::from_str(
        &f.admin_ok(&["account", "permission", "list", "team", "--json"], None),
    )
    .unwrap();
    let paths: Vec<_> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["/", "/catalog", "/in", "/in/open"]);

    allowed(&f, "team", &key, &work, "ls");
    allowed(&f, "team", &key, &work, "get report.csv");
    denied(&f, "team", &key, &work, "put x.dat");
    // Seen in its folder's listing, but not to be read.
    allowed(&f, "team", &key, &work, "ls catalog");
    denied(&f, "team", &key, &work, "get catalog/prices.csv");
    assert!(!work.join("prices.csv").exists());
    allowed(&f, "team", &key, &work, "put x.dat in/x.dat");
    denied(&f, "team", &key, &work, "ls in");
    allowed(&f, "team", &key, &work, "mkdir in/deeper");
    allowed(&f, "team", &key, &work, "put x.dat in/deeper/x.dat");
    // Everything in /in/open, inherited by its new subfolder.
    allowed(&f, "team", &key, &work, "mkdir in/open/sub");
    allowed(&f, "team", &key, &work, "put x.dat in/open/sub/x.dat");
    allowed(&f, "team", &key, &work, "ls in/open/sub");
    allowed(&f, "team", &key, &work, "rm in/open/sub/x.dat");

    // A session that listed fine loses the right while logged in: its
    // next listing, after the change, is refused.
    let batch = work.join("batch");
    std::fs::write(&batch, "ls\n!sleep 4\nls\n").unwrap();
    let child = Command::new("sftp")
        .args(SSH_TEST_OPTS)
        .args([
            "-P",
            &f.sftp_port.to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&key)
        .arg("-b")
        .arg(&batch)
        .arg("team@127.0.0.1")
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    f.admin_ok(&["account", "perm", "set", "team", "/", "download"], None);
    let out = child.wait_with_output().unwrap();
    let out_text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out_text.contains("report.csv"),
        "the first listing failed: {out_text}"
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rules_are_checked_by_the_api_and_removed_with_their_account() {
    let f = Ferry::up();
    f.add_account("rita");
    let bad = f.admin(&["account", "perm", "set", "rita", "/", "read,write"], None);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("unknown permission"),
        "{}",
        stderr(&bad)
    );
    let missing = f.admin(&["account", "perm", "set", "nobody", "/", "all"], None);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    let outside = f.admin(&["account", "perm", "remove", "rita", "/never"], None);
    assert_eq!(outside.status.code(), Some(3), "{}", stderr(&outside));

    f.admin_ok(&["account", "perm", "set", "rita", "/", "none"], None);
    let out = f.admin_ok(&["account", "perm", "list", "rita"], None);
    assert!(out.contains("nothing"), "{out}");
    f.admin_ok(&["account", "remove", "rita"], None);
    f.add_account("rita");
    let out = f.admin_ok(&["account", "perm", "list", "rita"], None);
    assert!(out.contains("may do everything"), "{out}");
}

#[test]
fn rules_are_replicated_and_enforced_by_every_server_of_an_active_active_cluster() {
    use common::cluster::{ClusterSpec, TestCluster};
    let c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    let follower = (0..3).find(|&i| Some(i) != c.primary()).unwrap();
    let key = c.account_with_key(follower, "partner");
    c.admin_ok(
        follower,
        &["account", "perm", "set", "partner", "/", "upload-only"],
        None,
    );
    for i in 0..3 {
        assert!(
            wait_until(10, || c
                .admin_ok(i, &["account", "perm", "list", "partner"], None)
                .contains("upload")),
            "{} lacks the rule",
            c.servers[i].name
        );
    }
    let work = c.root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("in.dat"), 20_000);
    // Whichever server the edge picks for each session enforces the rule.
    for round in 0..3 {
        let name = format!("in-{round}.dat");
        let out = c.sftp("partner", &key, &format!("put in.dat {name}\n"), &work);
        assert_ok(&out);
        let out = c.sftp("partner", &key, &format!("get {name} back.dat\n"), &work);
        assert!(!out.status.success(), "round {round}: get was allowed");
        assert!(!work.join("back.dat").exists());
    }
    assert!(c.root.path().join("repository/partner/in-2.dat").exists());
}
