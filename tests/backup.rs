//! `ferry backup` and `ferry restore`, end to end with the real binary:
//! a backup of a running `ferry up` taken while accounts are created in a
//! loop holds exactly a prefix of them and the transfer log as it was,
//! and nothing changed after it; a restore refuses a tampered or cut
//! archive, a non-empty target and a running server's directory, writing
//! nothing; an active/active server restored with `--join` joins its
//! cluster and is sent only the entries that followed the backup, and one
//! restored with `--new-cluster` starts a cluster of its own.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{join_token, ClusterSpec, TestCluster};
use common::*;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The archive's entries: name → (offset of the data in the file, size).
fn archive_entries(archive: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.path().unwrap().to_str().unwrap().to_owned();
            (name, (e.raw_file_position(), e.size()))
        })
        .collect()
}

/// The archive's `manifest.json`.
fn manifest(archive: &Path) -> serde_json::Value {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut first = tar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_str().unwrap(), "manifest.json");
    let mut text = String::new();
    first.read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of `archive` at `copy` with one byte of entry `name` flipped.
fn tampered(archive: &Path, copy: &Path, name: &str) {
    let (offset, size) = archive_entries(archive)[name];
    let mut bytes = std::fs::read(archive).unwrap();
    let at = usize::try_from(offset + size / 2).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(copy, bytes).unwrap();
}

/// Every file beneath `dir`, as relative names.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// `account list --json` through `admin`: name → enabled.
fn accounts(admin: &[String]) -> BTreeMap<String, bool> {
    let out = run_ferry(&["account", "list", "--json"], admin, None);
    let text = assert_ok(&out);
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    list.iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["enabled"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The transfer log through `admin`, by id.
fn transfer_rows(admin: &[String]) -> BTreeMap<String, serde_json::Value> {
    let out = run_ferry(
        &["transfer", "list", "--json", "--limit", "1000"],
        admin,
        None,
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&assert_ok(&out)).unwrap();
    list.into_iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t))
        .collect()
}

/// The `host key:` lines a `ferry up` printed at start.
fn host_keys(lines: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("host key: ").map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// One account creation of the writer loop: its number, when it was
/// sent and when it was answered.
struct Write {
    n: usize,
    sent: Instant,
    done: Instant,
}

#[test]
fn a_backup_taken_while_writing_restores_what_was_there_and_nothing_later() {
    let ferry = Ferry::up();
    let data = ferry.dir.path().join("data");
    let scratch = ferry.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // Two uploads before the backup: two transfer-log rows.
    let key = ferry.account_with_key("alice");
    random_file(&scratch.join("a.bin"), 100_000);
    random_file(&scratch.join("b.bin"), 3_000);
    assert_ok(&ferry.sftp_key("alice", &key, "put a.bin\nput b.bin\n", &scratch));
    let before = transfer_rows(&ferry.admin_args);
    assert_eq!(before.len(), 2, "{before:?}");

    // Accounts w000, w001, … are created one after the other while the
    // backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let admin = ferry.admin_args.clone();
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut writes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        for n in 0..400 {
            if flag.load(Ordering::SeqCst) || Instant::now() > deadline {
                break;
            }
            let sent = Instant::now();
            let out = run_ferry(
                &["account", "add", &format!("w{n:03}"), "--password-stdin"],
                &admin,
                Some(&format!("{PASSWORD}\n")),
            );
            assert_ok(&out);
            writes.push(Write {
                n,
                sent,
                done: Instant::now(),
            });
        }
        writes
    });
    assert!(
        wait_until(60, || accounts(&ferry.admin_args).len() >= 6),
        "the writer does not write"
    );
    let archive = ferry.dir.path().join("backup.tar");
    let started = Instant::now();
    let out = ferry_bounded(&["backup", "--data-dir", s(&data), "--to", s(&archive)], 60);
    let ended = Instant::now();
    let printed = assert_ok(&out);
    println!("{printed}");
    println!("the backup took {:?}", ended - started);
    // The writer goes on for a while after it, then stops.
    assert!(wait_until(60, || accounts(&ferry.admin_args)
        .keys()
        .filter(|n| n.starts_with('w'))
        .count()
        >= 12));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();

    // The archive: a new private file, never overwritten.
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive's mode");
    let digest = sha256_file(&archive);
    let again = ferry_bounded(&["backup", "--data-dir", s(&data), "--to", s(&archive)], 60);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    assert_eq!(sha256_file(&archive), digest, "the archive was overwritten");
    let m = manifest(&archive);
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["mode"], "single");
    assert_eq!(m["kind"], "up");
    assert!(m["ferry_version"].as_str().unwrap().starts_with("0."));
    let entries = m["entries"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "state/ferry.db",
        "admin.token",
        "pki/server.key",
        "ssh_host_ed25519_key",
    ] {
        assert!(names.contains(&name), "{name} is not in {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("secret.key") || n.contains("raft")),
        "without --with-secret-key: {names:?}"
    );

    // Changes after the backup: an account, an upload, an account disabled.
    ferry.add_account("late");
    ferry.admin_ok(&["account", "disable", "w000"], None);
    random_file(&scratch.join("c.bin"), 5_000);
    assert_ok(&ferry.sftp_key("alice", &key, "put c.bin\n", &scratch));
    let after = transfer_rows(&ferry.admin_args);
    assert_eq!(after.len(), 3);

    // Restored elsewhere, before it starts: every file as the manifest says.
    let restored = ferry.dir.path().join("restored");
    let out = ferry_bounded(
        &["restore", "--from", s(&archive), "--to", s(&restored)],
        60,
    );
    println!("{}", assert_ok(&out));
    for e in entries {
        let name = e["name"].as_str().unwrap();
        assert_eq!(
            sha256_file(&restored.join(name)),
            e["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    assert!(!restored.join("secret.key").exists());
    assert_eq!(
        std::fs::read(restored.join("admin.token")).unwrap(),
        std::fs::read(data.join("admin.token")).unwrap()
    );
    let (up, _) = Proc::start(
        &Ferry::up_args(&restored)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &["sftp", "admin", "https"],
    );
    let admin = vec!["--data-dir".to_owned(), s(&restored).to_owned()];

    // The accounts are a prefix of the writer's: all it had finished when
    // the backup started, none it began after the backup ended.
    let got = accounts(&admin);
    let written: Vec<usize> = got
        .keys()
        .filter_map(|n| n.strip_prefix('w'))
        .map(|n| n.parse().unwrap())
        .collect();
    let k = written.len();
    assert_eq!(written, (0..k).collect::<Vec<_>>(), "not a prefix");
    let finished_before = writes.iter().filter(|w| w.done < started).count();
    let begun_after = writes.iter().find(|w| w.sent > ended).map(|w| w.n);
    println!(
        "restored w000..w{:03}: {finished_before} finished before the backup, the first begun \
         after it was w{:03}; {} written in all",
        k.saturating_sub(1),
        begun_after.unwrap_or(0),
        writes.len()
    );
    assert!(
        k >= finished_before,
        "a write done before the backup is missing"
    );
    let begun_after = begun_after.expect("writes went on after the backup");
    assert!(k <= begun_after, "a write begun after the backup is there");
    assert!(got.contains_key("alice"));
    assert!(!got.contains_key("late"), "the account added later");
    assert_eq!(got.get("w000"), Some(&true), "w000 was disabled later");
    // The transfer log as it was: the same rows, and not the later one.
    assert_eq!(transfer_rows(&admin), before);
    // The edge's host keys came back: clients see the same server.
    assert_eq!(host_keys(&up.lines), host_keys(&ferry.procs[0].lines));
    assert_eq!(host_keys(&up.lines).len(), 3);
    drop(up);
}

#[test]
fn a_restore_refuses_a_tampered_archive_a_non_empty_target_and_a_running_server() {
    let ferry = Ferry::up();
    ferry.add_account("alice");
    let data = ferry.dir.path().join("data");
    let root = ferry.dir.path();
    let archive = root.join("backup.tar");
    assert_ok(&ferry_bounded(
        &[
            "backup",
            "--data-dir",
            s(&data),
            "--to",
            s(&archive),
            "--with-secret-key",
        ],
        60,
    ));
    let m = manifest(&archive);
    let key = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "secret.key")
        .expect("--with-secret-key archives secret.key");
    assert_eq!(
        key["sha256"].as_str().unwrap(),
        sha256_file(&data.join("secret.key"))
    );

    // One byte changed, in the store or in the last entry: refused, and
    // nothing written (not even the entries before it).
    let entries = archive_entries(&archive);
    let last = entries
        .iter()
        .max_by_key(|(_, (offset, _))| *offset)
        .map(|(n, _)| n.clone())
        .unwrap();
    for name in ["state/ferry.db", last.as_str()] {
        let bad = root.join("bad.tar");
        tampered(&archive, &bad, name);
        let target = root.join("from-bad");
        let out = ferry_bounded(&["restore", "--from", s(&bad), "--to", s(&target)], 60);
        assert!(!out.status.success(), "a tampered {name} was restored");
        assert!(
            stderr(&out).contains(&format!("{name} differs from the manifest")),
            "{}",
            stderr(&out)
        );
        assert!(!target.exists(), "a refused restore wrote {target:?}");
        std::fs::remove_file(&bad).unwrap();
    }
    // Cut in the middle: refused, nothing written.
    let cut = root.join("cut.tar");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let target = root.join("from-cut");
    let out = ferry_bounded(&["restore", "--from", s(&cut), "--to", s(&target)], 60);
    assert!(!out.status.success(), "a cut archive was restored");
    println!("cut: {}", stderr(&out));
    assert!(!target.exists());

    // A target with a file in it: refused, the file untouched.
    let full = root.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let out = ferry_bounded(&["restore", "--from", s(&archive), "--to", s(&full)], 60);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert_eq!(files_below(&full), ["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "mine"
    );

    // The running server's directory: refused, naming the process.
    let pid = ferry.procs[0].child.id();
    let listed = files_below(&data.join("pki"));
    let out = ferry_bounded(&["restore", "--from", s(&archive), "--to", s(&data)], 60);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by a running server")
            && stderr(&out).contains(&format!("process {pid}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(files_below(&data.join("pki")), listed);
    ferry.add_account("bob");

    // The same archive, whole, into an empty directory: restored, with
    // the secret key.
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_ok(&ferry_bounded(
        &["restore", "--from", s(&archive), "--to", s(&empty)],
        60,
    ));
    assert_eq!(
        sha256_file(&empty.join("secret.key")),
        sha256_file(&data.join("secret.key"))
    );
    let mode = std::fs::metadata(empty.join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the restored key is private");
}

/// Active/active: `applied_index` of member `name` as server `i` sees it.
fn applied_index(c: &TestCluster, i: usize, name: &str) -> u64 {
    let status = c.status(i);
    let member = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap();
    member["applied_index"].as_u64().unwrap()
}

fn add_account(c: &TestCluster, i: usize, name: &str) {
    c.admin_ok(
        i,
        &["account", "add", name, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
}

#[test]
fn an_active_active_server_restored_with_join_is_sent_only_what_followed_the_backup() {
    let spec = ClusterSpec {
        initial: 2,
        // No snapshot, no purge: what the joiner is sent shows in its log.
        snapshot_every: 1000,
        alerts: false,
        ..ClusterSpec::active_active(&["s1", "s2", "s3"])
    };
    let mut c = TestCluster::new(spec);
    c.start_server(0);
    c.start_server(1);
    let out = c.init();
    let token = join_token(&out);
    assert!(wait_until(20, || c.primary().is_some()));
    for n in 0..10 {
        add_account(&c, 0, &format!("a{n:02}"));
    }
    let applied_before = applied_index(&c, 0, "s1");
    let s1_config = c.servers[0].dir.join("server.toml");
    let archive = c.root.path().join("s1.tar");
    let out = ferry_bounded(
        &["backup", "--config", s(&s1_config), "--to", s(&archive)],
        60,
    );
    let printed = assert_ok(&out);
    println!("{printed}");
    // The site's CA, certificates, token and key sit outside s1's config
    // directory (../pki, ../admin.token): named, not archived.
    assert!(
        printed.contains("Not in the archive") && printed.contains("pki/s1.key"),
        "{printed}"
    );
    let m = manifest(&archive);
    assert_eq!(m["mode"], "active-active");
    assert_eq!(m["node_id"], "s1");
    let names: Vec<&str> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["state/ferry.db", "server.toml"],
        "raft.db stays out"
    );

    // After the backup: more accounts, and one disabled.
    for n in 0..5 {
        add_account(&c, 0, &format!("b{n:02}"));
    }
    c.admin_ok(0, &["account", "disable", "a00"], None);

    let s3_config = c.servers[2].dir.join("server.toml");
    // An active/active backup needs to be told what to do with its Raft
    // position.
    let out = ferry_bounded(
        &["restore", "--from", s(&archive), "--config", s(&s3_config)],
        60,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--join"), "{}", stderr(&out));
    // Never into the state directory of a running server.
    let out = ferry_bounded(
        &[
            "restore",
            "--from",
            s(&archive),
            "--config",
            s(&s1_config),
            "--join",
        ],
        60,
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by a running server"),
        "{}",
        stderr(&out)
    );
    // s3 (a new server, its own config) from s1's backup, then joined.
    let out = ferry_bounded(
        &[
            "restore",
            "--from",
            s(&archive),
            "--config",
            s(&s3_config),
            "--join",
        ],
        60,
    );
    println!("{}", assert_ok(&out));
    c.start_server(2);
    let token_file = c.root.path().join("join.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let s1_addr = format!("127.0.0.1:{}", c.servers[0].internal_port);
    let out = c.admin_ok(
        2,
        &[
            "cluster",
            "join",
            &s1_addr,
            "--join-token-file",
            s(&token_file),
        ],
        None,
    );
    println!("{out}");
    assert!(out.contains("s3 joined"), "{out}");
    let want = accounts(&c.admin_args(0));
    assert_eq!(want.len(), 15);
    assert_eq!(want.get("a00"), Some(&false));
    assert!(
        wait_until(30, || accounts(&c.admin_args(2)) == want),
        "s3 has {:?}, s1 {want:?}",
        accounts(&c.admin_args(2))
    );
    // Its log begins after what the backup held: the entries before were
    // not sent again, and no snapshot was.
    let first = c.first_log_index(2);
    println!("s1 had applied {applied_before} at the backup; s3's log begins at {first}");
    assert!(
        first > applied_before,
        "s3 was sent entries the backup held (its log begins at {first})"
    );
    let snapshots = c.servers[2].dir.join("state/raft-snapshots");
    let received: Vec<String> = std::fs::read_dir(&snapshots)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
                .filter(|n| n.starts_with("received"))
                .collect()
        })
        .unwrap_or_default();
    assert!(received.is_empty(), "s3 received a snapshot: {received:?}");
    // And it serves as a member: a write through s3 reaches s1.
    add_account(&c, 2, "c00");
    assert!(wait_until(20, || accounts(&c.admin_args(0)).contains_key("c00")));

    // The same backup, --new-cluster, as the seed of a new cluster: `cluster
    // init` works, with the accounts as they were at the backup.
    let mut fresh = TestCluster::new(ClusterSpec {
        alerts: false,
        ..ClusterSpec::active_active(&["n1"])
    });
    let n1_config = fresh.servers[0].dir.join("server.toml");
    assert_ok(&ferry_bounded(
        &[
            "restore",
            "--from",
            s(&archive),
            "--config",
            s(&n1_config),
            "--new-cluster",
        ],
        60,
    ));
    fresh.start_server(0);
    let out = fresh.init();
    assert!(out.contains("cluster initialised"), "{out}");
    assert!(wait_until(20, || fresh.primary().is_some()));
    let got = accounts(&fresh.admin_args(0));
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(got.get("a00"), Some(&true));
    add_account(&fresh, 0, "n00");

    // Restored with --join instead, the position is kept: such a server
    // is part of a cluster already and refuses to found another.
    let mut kept = TestCluster::new(ClusterSpec {
        alerts: false,
        ..ClusterSpec::active_active(&["j1"])
    });
    let j1_config = kept.servers[0].dir.join("server.toml");
    assert_ok(&ferry_bounded(
        &[
            "restore",
            "--from",
            s(&archive),
            "--config",
            s(&j1_config),
            "--join",
        ],
        60,
    ));
    kept.start_server(0);
    let out = kept.admin(0, &["cluster", "init"], None);
    assert!(!out.status.success(), "a --join restore founded a cluster");
    assert!(
        stderr(&out).contains("initialised already"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_backup_names_its_files_by_their_place_beside_the_config() {
    // A site laid out as the README's: everything beside server.toml.
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("repository")).unwrap();
    let pki = site.join("pki");
    ferry_ok(&["pki", "init", "--dir", s(&pki)]);
    ferry_ok(&[
        "pki",
        "issue",
        "--dir",
        s(&pki),
        "--role",
        "server",
        "--san",
        "127.0.0.1",
        "server-1",
    ]);
    write_private(&site.join("admin.token"), "site-admin-token-0123456789\n");
    std::fs::write(
        site.join("server.toml"),
        "node_id = \"server-1\"\nstate_dir = \"state\"\nrepository = \"repository\"\n\
         [internal]\nlisten = \"127.0.0.1:0\"\nca = \"pki/ca.crt\"\n\
         cert = \"pki/server-1.crt\"\nkey = \"pki/server-1.key\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
         [engine]\nsecret_key_file = \"secret.key\"\n",
    )
    .unwrap();
    let config = site.join("server.toml");
    let (server, v) = Proc::start(&["server", "--config", s(&config)], &["admin"]);
    let admin = |url: &str| {
        vec![
            "--admin".to_owned(),
            url.to_owned(),
            "--token-file".to_owned(),
            s(&site.join("admin.token")).to_owned(),
            "--ca-file".to_owned(),
            s(&pki.join("ca.crt")).to_owned(),
        ]
    };
    let before = admin(&v[0]);
    assert_ok(&run_ferry(
        &["account", "add", "alice", "--password-stdin"],
        &before,
        Some(&format!("{PASSWORD}\n")),
    ));
    // As the README says it, in the site's directory.
    let archive = dir.path().join("site.tar");
    assert_ok(&ferry_bounded_in(
        &site,
        &[
            "backup",
            "--config",
            "server.toml",
            "--to",
            "../site.tar",
            "--with-secret-key",
        ],
        60,
    ));
    let m = manifest(&archive);
    let mut names: Vec<&str> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "admin.token",
            "pki/ca.crt",
            "pki/server-1.crt",
            "pki/server-1.key",
            "secret.key",
            "server.toml",
            "state/ferry.db",
        ],
        "the CA's key is not named by the config, so not archived"
    );
    assert!(m["not_included"].as_array().unwrap().is_empty());
    drop(server);

    // Restored into a new directory, the site runs as it was once the
    // repository is there.
    let restored = dir.path().join("restored");
    assert_ok(&ferry_bounded_in(
        dir.path(),
        &["restore", "--from", "site.tar", "--to", "restored"],
        60,
    ));
    std::fs::create_dir(restored.join("repository")).unwrap();
    let check = ferry_bounded(
        &[
            "server",
            "--config",
            s(&restored.join("server.toml")),
            "--check-config",
        ],
        30,
    );
    assert_ok(&check);
    let (_server, v) = Proc::start(
        &["server", "--config", s(&restored.join("server.toml"))],
        &["admin"],
    );
    let mut after = admin(&v[0]);
    after[3] = s(&restored.join("admin.token")).to_owned();
    after[5] = s(&restored.join("pki/ca.crt")).to_owned();
    assert!(accounts(&after).contains_key("alice"));
}
