//! A rolling upgrade with clients working: a cluster of the release before
//! (tag `v0.1.0`, built by this test from the repository's history) is
//! replaced one server at a time by this build while OpenSSH `sftp`
//! uploads through an edge of the old release and a schedule fires every
//! 2 s. A checker then counts acknowledged uploads lost, logged twice or
//! changed, client errors outside the replacement windows, schedule slots
//! doubled or missed, and transfer logs that differ between servers.
//!
//! The old binary is built once (`git archive` of the tag into a scratch
//! directory, `cargo build` in its own target directory) and cached in
//! `target/old-release`, or `$FERRY_OLD_RELEASE_CACHE`.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::cluster::{join_token, ClusterSpec, TestCluster};
use common::*;

/// The release before this one.
const OLD_TAG: &str = "v0.1.0";
/// The commit the tag names, for a clone that did not fetch tags.
const OLD_COMMIT: &str = "a7d5dc37e59d9c22033ece4ce8aa7653a28ea8b9";

/// The `ferry` binary of [`OLD_TAG`], built once per cache.
fn old_release() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_old_release).clone()
}

fn build_old_release() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap()
    };
    let tagged = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{OLD_TAG}^{{commit}}"),
    ]);
    let commit = if tagged.status.success() {
        String::from_utf8(tagged.stdout).unwrap().trim().to_owned()
    } else {
        OLD_COMMIT.to_owned()
    };
    assert!(
        git(&["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .status
            .success(),
        "the history lacks {OLD_TAG} ({commit}): the upgrade test needs a full clone"
    );
    let cache = std::env::var_os("FERRY_OLD_RELEASE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/old-release"));
    std::fs::create_dir_all(&cache).unwrap();
    let bin = cache.join(format!("ferry-{commit}"));
    if bin.exists() {
        println!("old release: {OLD_TAG} ({commit}) from the cache");
        return bin;
    }
    let started = Instant::now();
    let src = cache.join(format!("src-{commit}"));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive --format=tar {commit} | tar -x -C '{}'",
            repo.display(),
            src.display()
        ))
        .status()
        .unwrap();
    assert!(archive.success(), "git archive {commit} failed");
    let target = cache.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "-p",
            "ferry",
            "--bin",
            "ferry",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&src)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(built.success(), "building {OLD_TAG} failed");
    let staged = cache.join(format!("ferry-{commit}.tmp"));
    std::fs::copy(target.join("debug/ferry"), &staged).unwrap();
    std::fs::rename(&staged, &bin).unwrap();
    let _ = std::fs::remove_dir_all(&src);
    println!(
        "old release: built {OLD_TAG} ({commit}) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    bin
}

/// One upload as the client saw it.
#[derive(Debug, Clone)]
struct Upload {
    name: String,
    sha256: String,
    acked: bool,
    started: Instant,
    ended: Instant,
    error: String,
}

/// SFTP uploads through the edge, one file per `sftp` run, until stopped.
struct Uploader {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Upload>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Uploader {
    fn start(c: &TestCluster, key: &Path, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done: Arc<Mutex<Vec<Upload>>> = Arc::default();
        let threads = (0..clients)
            .map(|n| {
                let (stop, done) = (stop.clone(), done.clone());
                let port = c.sftp_port;
                let key = key.to_owned();
                let work = c.root.path().join(format!("uploads-{n}"));
                std::fs::create_dir_all(&work).unwrap();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let name = format!("c{n}-{i:04}.bin");
                        random_file(&work.join(&name), 32 * 1024 + i * 97);
                        let sha256 = sha256_file(&work.join(&name));
                        let started = Instant::now();
                        let out = sftp_put(port, &key, &name, &work);
                        done.lock().unwrap().push(Upload {
                            name,
                            sha256,
                            acked: out.status.success(),
                            started,
                            ended: Instant::now(),
                            error: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                        });
                        // A partner's pace, below the edge's limit of new
                        // connections per address (20 a second).
                        std::thread::sleep(Duration::from_millis(150));
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            threads,
        }
    }

    fn finish(self) -> Vec<Upload> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let done = self.done.lock().unwrap().clone();
        done
    }
}

/// `sftp -b` with one `put`, bounded at 60 s.
fn sftp_put(port: u16, key: &Path, name: &str, cwd: &Path) -> Output {
    let batch = cwd.join(format!("{name}.batch"));
    std::fs::write(&batch, format!("put {name}\n")).unwrap();
    Command::new("timeout")
        .arg("60")
        .arg("sftp")
        .args(key_login_opts(key))
        .args(["-P", &port.to_string(), "-b"])
        .arg(&batch)
        .arg("alice@127.0.0.1")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Where a server was being replaced: a client error inside counts as a
/// session on the server being drained.
struct Windows(Vec<(Instant, Instant, String)>);

impl Windows {
    fn covers(&self, u: &Upload) -> bool {
        self.0
            .iter()
            .any(|(from, to, _)| u.started <= *to && u.ended >= *from)
    }
}

/// Waits (bounded) until the process of server `i` has exited.
fn wait_exit(c: &mut TestCluster, i: usize, secs: u64) {
    let name = c.servers[i].name;
    wait_child_exit(&mut c.servers[i].proc.as_mut().unwrap().child, name, secs);
    c.servers[i].proc = None;
}

/// Waits (bounded) until `child` has exited.
fn wait_child_exit(child: &mut std::process::Child, what: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{what} did not stop within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every member of the group answers and is within a few entries of the
/// leader, as `cluster status` on server `i` sees it.
fn group_healthy(c: &TestCluster, i: usize, members: usize) -> bool {
    let out = c.admin(i, &["cluster", "status", "--json"], None);
    if !out.status.success() {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let list = v["members"].as_array().cloned().unwrap_or_default();
    v["leader"].is_string()
        && list.len() == members
        && list
            .iter()
            .all(|m| m["error"].is_null() && m["lag"].as_u64().unwrap_or(0) < 50)
}

/// The leader's index, from server `i`'s status.
fn leader(c: &TestCluster, i: usize) -> usize {
    let v = c.status(i);
    let name = v["leader"].as_str().unwrap().to_owned();
    c.servers.iter().position(|s| s.name == name).unwrap()
}

/// The slots of `tick`'s firings, as server `i` has them.
fn firings(c: &TestCluster, i: usize) -> Vec<i64> {
    let v: serde_json::Value =
        serde_json::from_str(&c.admin_ok(i, &["schedule", "firings", "tick", "--json"], None))
            .unwrap();
    let mut slots: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| slot_ms(&f["slot"]))
        .collect();
    slots.sort();
    slots
}

/// (id, path, status, SHA-256) of every transfer-log row on server `i`.
fn transfer_log(c: &TestCluster, i: usize) -> Vec<(String, String, String, String)> {
    let v = c.json(i, &["transfer", "list", "--json", "--limit", "100000"]);
    let mut rows: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or("").to_owned();
            (s("id"), s("path"), s("status"), s("sha256"))
        })
        .collect();
    rows.sort();
    rows
}

/// What the checker counted.
#[derive(Debug, Default)]
struct Findings {
    acked: usize,
    failed_in_windows: Vec<String>,
    errors_outside_windows: Vec<String>,
    lost: Vec<String>,
    doubled: Vec<String>,
    changed: Vec<String>,
    slots: usize,
    slots_doubled: Vec<i64>,
    slots_missed: Vec<i64>,
    logs_differ: bool,
}

/// Counts what the clients were told against what every server has.
fn check(c: &TestCluster, servers: &[usize], uploads: &[Upload], windows: &Windows) -> Findings {
    let mut f = Findings::default();
    // The logs of every server converge on one.
    let first = servers[0];
    let same = wait_until(30, || {
        let a = transfer_log(c, first);
        servers[1..].iter().all(|&i| transfer_log(c, i) == a)
    });
    f.logs_differ = !same;
    let log = transfer_log(c, first);
    let mut completed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, path, status, sha) in &log {
        if status == "completed" {
            completed
                .entry(path.as_str())
                .or_default()
                .push(sha.as_str());
        }
    }
    let repository = c.root.path().join("repository/alice");
    for u in uploads {
        if !u.acked {
            if windows.covers(u) {
                f.failed_in_windows.push(format!("{}: {}", u.name, u.error));
            } else {
                f.errors_outside_windows
                    .push(format!("{}: {}", u.name, u.error));
            }
            continue;
        }
        f.acked += 1;
        let path = format!("/{}", u.name);
        match completed.get(path.as_str()).map(Vec::as_slice) {
            None => f.lost.push(format!("{}: no completed row", u.name)),
            Some([sha]) if *sha == u.sha256 => {}
            Some([_]) => f
                .changed
                .push(format!("{}: the row's SHA-256 differs", u.name)),
            Some(rows) => f.doubled.push(format!("{}: {} rows", u.name, rows.len())),
        }
        let stored = repository.join(&u.name);
        if !stored.exists() {
            f.lost.push(format!("{}: not in the repository", u.name));
        } else if sha256_file(&stored) != u.sha256 {
            f.changed
                .push(format!("{}: stored content differs", u.name));
        }
    }
    // Every slot once, none skipped (a new primary catches up the slots
    // missed while none stood), the same history on every server.
    let slots = firings(c, first);
    let same_slots = wait_until(20, || servers[1..].iter().all(|&i| firings(c, i) == slots));
    f.logs_differ |= !same_slots;
    f.slots = slots.len();
    for pair in slots.windows(2) {
        if pair[1] == pair[0] {
            f.slots_doubled.push(pair[0]);
        } else {
            let mut missing = pair[0] + 2000;
            while missing < pair[1] {
                f.slots_missed.push(missing);
                missing += 2000;
            }
        }
    }
    f
}

fn assert_clean(label: &str, f: &Findings, uploads: usize) {
    println!(
        "{label} checker: {uploads} uploads, {} acknowledged; lost {}, logged twice {}, changed {}; \
         client errors in replacement windows {}, outside {}; {} slots, doubled {}, missed {}; \
         transfer logs differ: {}",
        f.acked,
        f.lost.len(),
        f.doubled.len(),
        f.changed.len(),
        f.failed_in_windows.len(),
        f.errors_outside_windows.len(),
        f.slots,
        f.slots_doubled.len(),
        f.slots_missed.len(),
        f.logs_differ
    );
    for e in f.failed_in_windows.iter().take(5) {
        println!("{label}   in a replacement window: {e}");
    }
    assert!(f.acked > 20, "too few uploads to judge: {f:?}");
    assert!(f.lost.is_empty(), "lost: {:?}", f.lost);
    assert!(f.doubled.is_empty(), "logged twice: {:?}", f.doubled);
    assert!(f.changed.is_empty(), "changed: {:?}", f.changed);
    assert!(
        f.errors_outside_windows.is_empty(),
        "client errors outside the replacement windows: {:?}",
        f.errors_outside_windows
    );
    assert!(f.slots >= 5, "too few slots to judge: {f:?}");
    assert!(f.slots_doubled.is_empty(), "{:?}", f.slots_doubled);
    assert!(f.slots_missed.is_empty(), "{:?}", f.slots_missed);
    assert!(!f.logs_differ, "the servers' logs differ");
}

/// The seed of the order followers are replaced in: `FERRY_TEST_SEED`, or
/// the clock's.
fn seed() -> u64 {
    std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        })
}

#[test]
fn active_active_cluster_upgraded_one_server_at_a_time_under_load() {
    let old = old_release();
    let seed = seed();
    println!("seed {seed} (FERRY_TEST_SEED={seed} repeats the order)");
    // s1..s3 form the group; s4 knows them and tries to join at the end.
    let mut c = TestCluster::new(ClusterSpec {
        initial: 3,
        ..ClusterSpec::active_active(&["s1", "s2", "s3", "s4"])
    });
    for i in 0..4 {
        c.servers[i].bin = old.clone();
    }
    for i in 0..3 {
        c.start_server(i);
    }
    let init = c.init();
    let token = join_token(&init);
    let token_file = c.root.path().join("join.token");
    write_private(&token_file, &token);
    assert!(wait_until(30, || group_healthy(&c, 0, 3)), "no group");
    let edge_port = free_port();
    let (edge, e) = c.edge_with_bin(&old, &[0, 1, 2], edge_port, "", &["sftp"]);
    c.edge = Some(edge);
    c.sftp_port = e[0].rsplit(':').next().unwrap().parse().unwrap();

    let status = c.status(0);
    assert_eq!(
        status["feature_level"],
        serde_json::Value::Null,
        "0.1.0 has no level"
    );
    let key = c.account_with_key(0, "alice");
    c.add_ticking_schedule(0);
    let uploader = Uploader::start(&c, &key, 2);
    std::thread::sleep(Duration::from_secs(4));

    // Followers in the seed's order, the leader last.
    let lead = leader(&c, 0);
    let mut order: Vec<usize> = (0..3).filter(|&i| i != lead).collect();
    if seed % 2 == 1 {
        order.reverse();
    }
    order.push(lead);
    let mut windows = Windows(Vec::new());
    for (step, &i) in order.iter().enumerate() {
        let name = c.servers[i].name;
        if step == 2 {
            // One member of 0.1.0 left: the level cannot be raised.
            let asked = (i + 1) % 3;
            let out = c.admin(asked, &["cluster", "finalize-upgrade"], None);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{err}");
            assert!(err.contains(name) && err.contains("ferry 0.1.0"), "{err}");
            println!(
                "finalize-upgrade with {name} still on 0.1.0: refused ({})",
                err.trim()
            );
        }
        let from = Instant::now();
        println!(
            "fault {step}: SIGTERM {name}{} (0.1.0), start it as this build",
            if i == lead { " (leader)" } else { "" }
        );
        replace_with_this_build(&mut c, i);
        assert!(
            wait_until(60, || group_healthy(&c, i, 3)),
            "{name} did not rejoin its group"
        );
        let to = Instant::now() + Duration::from_secs(1);
        println!("  {name} replaced in {:.1} s", from.elapsed().as_secs_f64());
        windows.0.push((from, to, name.to_owned()));
        std::thread::sleep(Duration::from_secs(3));
        if step == 0 {
            // Before the level is raised, going back is allowed: the first
            // server replaced is put back on 0.1.0, then forward again.
            let from = Instant::now();
            println!("fault {step}b: SIGTERM {name} (this build), start it as 0.1.0 again");
            c.signal(i, "-TERM");
            wait_exit(&mut c, i, 60);
            c.servers[i].bin = old.clone();
            c.start_server(i);
            assert!(
                wait_until(60, || group_healthy(&c, i, 3)),
                "{name} on 0.1.0 again did not rejoin its group"
            );
            let back = c.status(i);
            let me = back["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap();
            assert_eq!(me["version"], "ferry 0.1.0", "{back:#}");
            std::thread::sleep(Duration::from_secs(3));
            println!("fault {step}c: SIGTERM {name} (0.1.0), start it as this build again");
            replace_with_this_build(&mut c, i);
            assert!(
                wait_until(60, || group_healthy(&c, i, 3)),
                "{name} did not rejoin its group"
            );
            windows.0.push((
                from,
                Instant::now() + Duration::from_secs(1),
                name.to_owned(),
            ));
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    // Every member runs this release: the level can be raised.
    let status = c.status(0);
    assert_eq!(status["feature_level"], 1, "{status:#}");
    for m in status["members"].as_array().unwrap() {
        assert_eq!(
            m["version"],
            format!("ferry {}", env!("CARGO_PKG_VERSION")),
            "{m}"
        );
        assert_eq!(m["supports_level"], 2, "{m}");
    }
    let raised = c.admin_ok(1, &["cluster", "finalize-upgrade"], None);
    assert!(raised.contains("raised from 1 to 2"), "{raised}");
    println!("{}", raised.trim());
    assert!(wait_until(10, || (0..3).all(|i| c.status(i)["feature_level"] == 2)));
    let shown = c.admin_ok(2, &["cluster", "status"], None);
    assert!(shown.contains("feature level: 2"), "{shown}");

    // The drain of this release: a follower, then the leader.
    let lead = leader(&c, 0);
    let follower = (lead + 1) % 3;
    for i in [follower, lead] {
        let name = c.servers[i].name;
        let from = Instant::now();
        println!("fault: ferry server drain {name}, then start it again");
        let said = c.admin_ok(i, &["server", "drain"], None);
        assert!(said.contains("has stopped"), "{said}");
        wait_exit(&mut c, i, 30);
        c.start_server(i);
        let other = (i + 1) % 3;
        assert!(
            wait_until(60, || group_healthy(&c, other, 3)),
            "{name} did not come back"
        );
        windows.0.push((
            from,
            Instant::now() + Duration::from_secs(1),
            name.to_owned(),
        ));
        std::thread::sleep(Duration::from_secs(3));
    }

    // Last, the edge: stopped as systemd stops it (SIGTERM: it takes no new
    // client and lets its sessions end) and started as this build on the
    // same port; the clients reconnect.
    println!("fault: SIGTERM the edge (0.1.0), start it as this build on its port");
    let from = Instant::now();
    {
        let edge = c.edge.as_mut().unwrap();
        let pid = edge.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        wait_child_exit(&mut edge.child, "the edge", 60);
    }
    let (edge, _) = c.edge_with_bin(Path::new(BIN), &[0, 1, 2], edge_port, "", &["sftp"]);
    c.edge = Some(edge);
    windows.0.push((
        from,
        Instant::now() + Duration::from_secs(1),
        "edge".to_owned(),
    ));
    println!("  edge replaced in {:.1} s", from.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(4));
    let uploads = uploader.finish();
    let late = uploads
        .iter()
        .filter(|u| u.acked && u.started > from + Duration::from_secs(1))
        .count();
    assert!(late > 0, "no upload went through the new edge");

    // A server of the release before may no longer join.
    c.start_server(3);
    let out = c.admin(
        3,
        &[
            "cluster",
            "join",
            &format!("127.0.0.1:{}", c.servers[0].internal_port),
            "--join-token-file",
            token_file.to_str().unwrap(),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a 0.1.0 server joined a level-2 cluster"
    );
    assert!(
        err.contains("feature level 2") && err.contains("nothing was changed"),
        "{err}"
    );
    println!("s4 (0.1.0) asked to join: refused ({})", err.trim());
    assert_eq!(c.status(0)["members"].as_array().unwrap().len(), 3);

    let f = check(&c, &[0, 1, 2], &uploads, &windows);
    assert_clean("[a/a]", &f, uploads.len());
}

/// SIGTERM server `i` (as systemd stops it), wait until it has exited, start
/// it again as this build.
fn replace_with_this_build(c: &mut TestCluster, i: usize) {
    c.signal(i, "-TERM");
    wait_exit(c, i, 60);
    c.servers[i].bin = PathBuf::from(BIN);
    c.start_server(i);
}

#[test]
fn active_passive_pair_upgraded_standby_first_then_switched_over() {
    const S1: usize = 0;
    const S2: usize = 1;
    const W1: usize = 2;
    let old = old_release();
    let mut c = TestCluster::new(ClusterSpec::active_passive());
    for i in 0..3 {
        c.servers[i].bin = old.clone();
    }
    c.start_server(S1);
    c.start_server(W1);
    assert!(c.wait_role(S1, "active", true, 30), "s1 is not active");
    c.start_server(S2);
    assert!(c.wait_role(S2, "standby", false, 30));
    let (edge, e) = c.edge_with_bin(&old, &[S1, S2], 0, "", &["sftp"]);
    c.edge = Some(edge);
    c.sftp_port = e[0].rsplit(':').next().unwrap().parse().unwrap();
    let key = c.account_with_key(S1, "alice");
    c.add_ticking_schedule(S1);
    // The standby gets the configuration by `ferry sync` (both 0.1.0 now).
    let synced = c.admin_ok(S1, &["sync"], None);
    println!("[a/p] {}", synced.trim());
    let uploader = Uploader::start(&c, &key, 2);
    std::thread::sleep(Duration::from_secs(4));
    let mut windows = Windows(Vec::new());

    // The witness and the standby: nothing they serve is interrupted.
    for i in [W1, S2] {
        let name = c.servers[i].name;
        println!("[a/p] fault: SIGTERM {name} (0.1.0), start it as this build");
        let from = Instant::now();
        replace_with_this_build(&mut c, i);
        if i == S2 {
            assert!(c.wait_role(S2, "standby", false, 30));
        }
        windows.0.push((
            from,
            Instant::now() + Duration::from_secs(1),
            name.to_owned(),
        ));
        std::thread::sleep(Duration::from_secs(4));
    }
    let status = c.status(S1);
    let peers = status["peers"].as_array().unwrap();
    let s2 = peers.iter().find(|p| p["id"] == "s2").unwrap();
    assert_eq!(
        s2["status"]["software"],
        format!("ferry {}", env!("CARGO_PKG_VERSION")),
        "{status:#}"
    );
    assert_eq!(status["this"]["software"], "ferry 0.1.0");

    // The switch-over: the upgraded standby becomes active.
    println!("[a/p] fault: cluster promote s2 (this build); s1 (0.1.0) steps down");
    let from = Instant::now();
    let promoted = c.admin_ok(S2, &["cluster", "promote"], None);
    println!("[a/p] {}", promoted.trim());
    assert!(c.wait_role(S2, "active", true, 30), "s2 did not take over");
    assert!(c.wait_role(S1, "standby", false, 30));
    windows.0.push((
        from,
        Instant::now() + Duration::from_secs(1),
        "switch-over".into(),
    ));
    std::thread::sleep(Duration::from_secs(4));

    println!("[a/p] fault: SIGTERM s1 (0.1.0, standby), start it as this build");
    let from = Instant::now();
    replace_with_this_build(&mut c, S1);
    assert!(
        c.wait_role(S1, "standby", false, 30),
        "s1 must stay standby"
    );
    assert!(c.wait_role(S2, "active", true, 5));
    windows
        .0
        .push((from, Instant::now() + Duration::from_secs(1), "s1".into()));
    std::thread::sleep(Duration::from_secs(4));
    let uploads = uploader.finish();

    let said = c.admin_ok(S2, &["cluster", "finalize-upgrade"], None);
    assert!(said.contains("no cluster-wide level"), "{said}");
    let f = check(&c, &[S2, S1], &uploads, &windows);
    assert_clean("[a/p]", &f, uploads.len());
}

#[test]
fn release_and_level_show_in_status_and_a_new_cluster_starts_at_its_level() {
    let mut c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    let init = c.init();
    assert!(init.contains("feature level 2"), "{init}");
    assert!(wait_until(30, || group_healthy(&c, 0, 3)));
    let raised = c.admin_ok(0, &["cluster", "finalize-upgrade"], None);
    assert!(raised.contains("already"), "{raised}");
    // A stopped member's release is unknown: the level is not raised past it.
    c.kill(2);
    let out = c.admin(0, &["cluster", "finalize-upgrade"], None);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3") && err.contains("did not answer"),
        "{err}"
    );
    // A server alone has no level to raise, and says so.
    let f = Ferry::up();
    let alone = f.admin_ok(&["cluster", "finalize-upgrade"], None);
    assert!(alone.contains("no cluster-wide level"), "{alone}");
}
