//! End-to-end tests of `ferry up` with OpenSSH's sftp client.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::process::{Command, Stdio};

#[test]
fn upload_and_download_20mib_with_sha256_in_the_log() {
    let f = Ferry::up();
    scenarios::roundtrip_20mib(&f, "server");
}

#[test]
fn reput_and_reget_after_a_killed_transfer() {
    let f = Ferry::up();
    scenarios::reput_after_kill(&f);
}

#[test]
fn every_sftp_operation_openssh_uses() {
    let f = Ferry::up();
    let key = f.account_with_key("carol");
    let work = f.dir.path().join("ops");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("a.txt"), "hello\n").unwrap();
    std::fs::write(work.join("b.txt"), "world\n").unwrap();
    let home = f.repository.join("carol");
    let batch = "\
pwd
mkdir in
cd in
pwd
put -p a.txt
put -f b.txt
ls -l
chmod 640 a.txt
rename a.txt renamed.txt
rename b.txt renamed.txt
ls -l
df
cd /
rmdir in
";
    // `rmdir in` must fail: it is not empty. Run it last and check the rest.
    let out = f.sftp_key("carol", &key, batch, &work);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success(),
        "rmdir of a non-empty directory succeeded"
    );
    assert!(stdout.contains("Remote working directory: /\n"), "{stdout}");
    assert!(
        stdout.contains("Remote working directory: /in\n"),
        "{stdout}"
    );
    // `put -p` of a 0644 file: at most 0640 (no access for others).
    assert!(
        stdout.contains("-rw-r-----    1 carol    carol           6 "),
        "ls -l long form: {stdout}"
    );
    assert!(
        stdout.contains("Size") && stdout.contains("Avail"),
        "df (statvfs): {stdout}"
    );
    // posix-rename replaced renamed.txt by b.txt; chmod applied before.
    assert_eq!(
        std::fs::read_to_string(home.join("in/renamed.txt")).unwrap(),
        "world\n"
    );
    assert!(!home.join("in/a.txt").exists() && !home.join("in/b.txt").exists());

    // put -p kept the mtime (setstat with times).
    let a_mtime = std::fs::metadata(work.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::write(work.join("c.txt"), "c\n").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(work.join("c.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_ok(&f.sftp_key("carol", &key, "put -p c.txt\nchmod 600 c.txt\n", &work));
    let meta = std::fs::metadata(home.join("c.txt")).unwrap();
    assert_eq!(meta.modified().unwrap(), old);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let _ = a_mtime;

    // rm, rmdir, and stat of a missing file.
    assert_ok(&f.sftp_key(
        "carol",
        &key,
        "rm in/renamed.txt\nrmdir in\nrm c.txt\n",
        &work,
    ));
    assert!(!home.join("in").exists());
    let out = f.sftp_key("carol", &key, "ls -l nothing-here\n", &work);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not found") || stderr(&out).contains("No such file"),
        "{}",
        stderr(&out)
    );

    // The log holds the uploads and nothing for listings.
    let log = f.transfers();
    assert!(log.iter().all(|t| t["account"] == "carol"));
    assert_eq!(
        log.iter().filter(|t| t["direction"] == "upload").count(),
        3,
        "{log:?}"
    );
}

#[test]
fn confinement_attacks_never_leave_home() {
    let f = Ferry::up();
    let key = f.account_with_key("dave");
    f.account_with_key("erin");
    let work = f.dir.path().join("conf");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("x.txt"), "x\n").unwrap();
    let home = f.repository.join("dave");
    std::fs::write(f.repository.join("erin/secret.txt"), "erin's\n").unwrap();
    // An operator-made symlink pointing out of the home.
    std::os::unix::fs::symlink("/etc", home.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(f.repository.join("erin"), home.join("erin-link")).unwrap();

    let attempts = [
        "get ../../../../etc/passwd p1",
        "get /etc/passwd p2",
        "get ../erin/secret.txt p3",
        "get etc-link/passwd p4",
        "get erin-link/secret.txt p5",
        "ls etc-link/",
        "cd ../../..",
        "ln -s /etc/passwd mylink",
        "put x.txt ../../escape.txt",
        "put x.txt ..\\\\escape2.txt",
        "put x.txt .ferry-partial.trick",
        "mkdir ../outside",
    ];
    for a in attempts {
        let out = f.sftp_key("dave", &key, &format!("{a}\n"), &work);
        let _ = out; // many of these fail; what matters is what they did
    }
    for p in ["p1", "p2", "p3", "p4", "p5"] {
        assert!(!work.join(p).exists(), "{p} was downloaded");
    }
    assert!(!f.repository.join("escape.txt").exists());
    assert!(!f.dir.path().join("escape.txt").exists());
    assert!(!f.repository.join("outside").exists());
    assert!(!home.join("mylink").exists(), "a symlink was created");
    assert!(!home.join(".ferry-partial.trick").exists());
    // `put x.txt ../../escape.txt` is clamped at the home root, as in a chroot.
    assert!(home.join("escape.txt").exists());
    // cd .. stops at /.
    let out = assert_ok(&f.sftp_key("dave", &key, "cd ../../..\npwd\n", &work));
    assert!(out.contains("Remote working directory: /\n"), "{out}");
    // The listing hides the outward links.
    let out = assert_ok(&f.sftp_key("dave", &key, "ls -1\n", &work));
    assert!(
        !out.contains("etc-link") && !out.contains("erin-link"),
        "{out}"
    );
}

#[test]
fn bad_logins_get_the_same_answer_and_nothing_else() {
    let f = Ferry::up();
    f.account_with_key("frank");

    let ok = f.sftp_password("frank", PASSWORD, "pwd\n");
    assert_ok(&ok);

    let t = std::time::Instant::now();
    let wrong = f.sftp_password("frank", "not the password", "pwd\n");
    let wrong_time = t.elapsed();
    let t = std::time::Instant::now();
    let unknown = f.sftp_password("nobody", PASSWORD, "pwd\n");
    let unknown_time = t.elapsed();
    assert!(!wrong.status.success() && !unknown.status.success());
    assert!(
        stderr(&wrong).contains("Permission denied"),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(
        stderr(&wrong).replace("frank", "USER"),
        stderr(&unknown).replace("nobody", "USER")
    );
    // The rejection delay (300 ms here) applies to both.
    assert!(wrong_time.as_millis() >= 300 && unknown_time.as_millis() >= 300);

    // Disabled accounts are refused like a wrong password; enabling restores access.
    f.admin_ok(&["account", "disable", "frank"], None);
    let disabled = f.sftp_password("frank", PASSWORD, "pwd\n");
    assert!(!disabled.status.success());
    assert!(stderr(&disabled).contains("Permission denied"));
    f.admin_ok(&["account", "enable", "frank"], None);
    assert_ok(&f.sftp_password("frank", PASSWORD, "pwd\n"));

    // Attempts are capped per connection.
    let askpass = f.dir.path().join("askpass-many");
    std::fs::write(&askpass, "#!/bin/sh\necho wrong-password\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("ssh")
        .args(SSH_TEST_OPTS)
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=20",
        ])
        .args([
            "-p",
            &f.sftp_port.to_string(),
            "-s",
            "frank@127.0.0.1",
            "sftp",
        ])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    // The connection ends with a refusal long before the client's 20 tries.
    assert!(
        err.contains("Permission denied") || err.contains("Too many authentication failures"),
        "{err}"
    );
    assert!(
        err.matches("Permission denied, please try again").count() <= 6,
        "{err}"
    );

    // Removed accounts cannot log in.
    f.admin_ok(&["account", "remove", "frank"], None);
    assert!(!f.sftp_password("frank", PASSWORD, "pwd\n").status.success());
    // A shell or command is never run.
    let out = Command::new("ssh")
        .args(SSH_TEST_OPTS)
        .args(["-o", "BatchMode=yes"])
        .args(["-p", &f.sftp_port.to_string(), "nobody@127.0.0.1", "id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn admin_cli_manages_accounts_and_refuses_bad_input() {
    let f = Ferry::up();
    f.admin_ok(
        &["account", "add", "gina", "--password-stdin"],
        Some("a fine password\n"),
    );
    let out = f.admin(
        &["account", "add", "gina", "--password-stdin"],
        Some("a fine password\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    for bad in ["../evil", "", "a b", "-x"] {
        let out = f.admin(
            &["account", "add", "--password-stdin", "--", bad],
            Some("a fine password\n"),
        );
        assert!(!out.status.success(), "{bad:?} accepted");
    }
    let out = f.admin(
        &["account", "add", "hank", "--password-stdin"],
        Some("short\n"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    let list = f.admin_ok(&["account", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "gina");
    assert!(
        !list.contains("argon2"),
        "the hash must not leave the server"
    );
    let out = f.admin(&["account", "key", "add", "gina", "/etc/hostname"], None);
    assert!(!out.status.success());
    // A wrong token is refused.
    let mut cmd = Command::new(BIN);
    let tok = f.dir.path().join("bad.token");
    std::fs::write(&tok, "0000000000000000000000").unwrap();
    let out = cmd
        .args(["account", "list", "--token-file", tok.to_str().unwrap()])
        .args(&f.admin_args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
}

#[test]
fn an_admin_change_sent_again_with_its_idempotency_key_gets_the_first_answer() {
    let f = Ferry::up();
    let first = f.admin(
        &["account", "add", "kim", "--idempotency-key", "op-17"],
        None,
    );
    assert_ok(&first);
    // The retry (after an unknown outcome, say) is answered as the first
    // time, not "already exists".
    let again = f.admin(
        &["account", "add", "kim", "--idempotency-key", "op-17"],
        None,
    );
    assert_ok(&again);
    assert_eq!(again.stdout, first.stdout);
    // Without the key it is a second request, refused.
    let plain = f.admin(&["account", "add", "kim"], None);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("already exists"),
        "{}",
        stderr(&plain)
    );
    // A key belongs to one kind of change.
    let misused = f.admin(
        &["account", "disable", "kim", "--idempotency-key", "op-17"],
        None,
    );
    assert!(!misused.status.success());
    assert!(
        stderr(&misused).contains("was used for"),
        "{}",
        stderr(&misused)
    );
    assert!(f.admin_ok(&["account", "list"], None).contains("kim"));
}

/// A server that died between renaming an upload into place and logging
/// its row (found by the nemesis test: a file in the home that no row
/// explains) logs the row at its next start, from the commit intent it
/// wrote before the rename. An intent whose rename never happened (the
/// partial file is still there) logs nothing: that client was never told
/// the upload succeeded.
#[test]
fn an_upload_renamed_just_before_a_crash_gets_its_row_at_the_next_start() {
    let mut f = Ferry::up();
    f.add_account("dave");
    // The server is killed outright; then the disk is left as a crash at
    // either side of the rename would leave it.
    for p in &mut f.procs {
        p.kill();
    }
    let home = f.repository.join("dave");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("renamed.dat"), b"committed before the crash\n").unwrap();
    std::fs::write(
        home.join(".ferry-partial.unrenamed.dat"),
        b"never committed\n",
    )
    .unwrap();
    let db = f.dir.path().join("data/state/ferry.db");
    assert!(db.is_file(), "no store at {}", db.display());
    let intent = |id: &str, path: &str, body: &[u8]| {
        serde_json::json!({
            "id": id, "account": "dave", "protocol": "sftp", "direction": "upload",
            "path": path, "bytes": body.len(), "size": body.len(),
            "sha256": sha256_hex(body), "started_at": 1, "ended_at": 2,
            "status": "completed", "node": "crashed", "client_addr": "127.0.0.1:1",
            "error": null,
        })
        .to_string()
    };
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.executemany('INSERT INTO node_local (key, value) VALUES (?, ?)', \
             [('upload-intent:'+sys.argv[2], sys.argv[3]), ('upload-intent:'+sys.argv[4], sys.argv[5])]); \
             c.commit()",
        ])
        .arg(&db)
        .args([
            "01a00000-0000-7000-8000-000000000001",
            &intent(
                "01a00000-0000-7000-8000-000000000001",
                "/renamed.dat",
                b"committed before the crash\n",
            ),
            "01a00000-0000-7000-8000-000000000002",
            &intent(
                "01a00000-0000-7000-8000-000000000002",
                "/unrenamed.dat",
                b"never committed\n",
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    f.kill_and_restart(&[]);
    let rows = |f: &Ferry| -> Vec<(String, String)> {
        f.transfers()
            .iter()
            .map(|t| {
                (
                    t["path"].as_str().unwrap().to_owned(),
                    t["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert!(
        wait_until(10, || rows(&f)
            .contains(&("/renamed.dat".to_owned(), "completed".to_owned()))),
        "{:?}",
        rows(&f)
    );
    let all = rows(&f);
    assert!(
        !all.iter().any(|(p, _)| p == "/unrenamed.dat"),
        "a row for an upload that was never renamed: {all:?}"
    );
    assert!(home.join(".ferry-partial.unrenamed.dat").exists());
    // Both intents are gone: a second start logs nothing again.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute(\"SELECT count(*) FROM node_local WHERE key LIKE 'upload-intent:%'\").fetchone()[0])",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The intent of an upload whose row is logged is removed with a later
/// commit, not at once. A server killed right after answering uploads
/// still holds those intents: its next start finds each file under its
/// name and logs its row again, which keeps one row per upload and queues
/// no route event twice; then the intents are gone.
#[test]
fn intents_left_by_a_kill_after_the_answer_log_no_row_twice() {
    let mut f = Ferry::up();
    let key = f.account_with_key("gail");
    f.add_account("hank");
    f.admin_ok(
        &[
            "route",
            "add",
            "to-hank",
            "--account",
            "gail",
            "--match",
            "*.csv",
            "--action",
            "copy:hank",
        ],
        None,
    );
    let work = f.dir.path().join("work-intents");
    std::fs::create_dir_all(&work).unwrap();
    let mut batch = String::new();
    for i in 0..5 {
        random_file(&work.join(format!("f{i}.csv")), 2000 + i);
        batch.push_str(&format!("put f{i}.csv\n"));
    }
    assert_ok(&f.sftp_key("gail", &key, &batch, &work));
    // Killed at once: the sweep (every 2 s) and the next upload's commit
    // have not removed the last intents.
    f.kill();
    let db = f.dir.path().join("data/state/ferry.db");
    let intents = || {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
                 print(c.execute(\"SELECT count(*) FROM node_local WHERE key LIKE 'upload-intent:%'\").fetchone()[0])",
            ])
            .arg(&db)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let left = intents();
    println!("intents left by the kill: {left}");
    assert!(left >= 1, "the kill came after every intent was removed");
    f.restart(&[]);
    let done = || {
        let out = f.admin_ok(&["event", "list", "--json", "--status", "done"], None);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 5
    };
    assert!(wait_until(30, done), "the route events did not finish");
    // Time for the recovered rows to be logged (once) and the intents swept.
    assert!(wait_until(10, || intents() == 0), "intents stay");
    let uploads: Vec<String> = f
        .transfers()
        .iter()
        .filter(|t| t["account"] == "gail")
        .map(|t| t["path"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = uploads.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(uploads.len(), 5, "{uploads:?}");
    assert_eq!(unique.len(), 5, "{uploads:?}");
    let events = f.admin_ok(&["event", "list", "--json"], None);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 5, "{events:#}");
}
