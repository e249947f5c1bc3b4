//! Active/active (Raft) end to end: three `ferry server` processes sharing
//! a repository, an edge listing all three, OpenSSH `sftp` as the client.
//! Faults are real: SIGKILL of the leader with uploads in flight, loss of
//! the majority, restarts that must catch up.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;

const TOKEN: &str = "raft-admin-token-0123456789";
const NAMES: [&str; 3] = ["s1", "s2", "s3"];

struct Server {
    dir: PathBuf,
    proc: Option<Proc>,
    admin: String,
}

struct Raft {
    root: tempfile::TempDir,
    servers: Vec<Server>,
    _edge: Option<Proc>,
    sftp_port: u16,
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

impl Raft {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let pki = r.join("pki");
        let p = pki.to_str().unwrap();
        ferry_ok(&["pki", "init", "--dir", p]);
        for name in NAMES.iter().chain(&["edge1-https"]) {
            ferry_ok(&["pki", "issue", "--dir", p, "--san", "127.0.0.1", name]);
        }
        ferry_ok(&["pki", "issue", "--dir", p, "edge1"]);
        write_private(&r.join("admin.token"), &format!("{TOKEN}\n"));
        write_private(&r.join("secret.key"), &format!("{}\n", "cd".repeat(32)));
        std::fs::create_dir_all(r.join("repository")).unwrap();
        let ports: Vec<u16> = NAMES.iter().map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let dir = r.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut peers = String::new();
            for (j, other) in NAMES.iter().enumerate() {
                if i != j {
                    peers.push_str(&format!(
                        "[[cluster.peers]]\nid = \"{other}\"\naddress = \"127.0.0.1:{}\"\n",
                        ports[j]
                    ));
                }
            }
            std::fs::write(
                dir.join("server.toml"),
                format!(
                    r#"node_id = "{name}"
state_dir = "state"
repository = "../repository"
[internal]
listen = "127.0.0.1:{port}"
ca = "../pki/ca.crt"
cert = "../pki/{name}.crt"
key = "../pki/{name}.key"
[admin]
listen = "127.0.0.1:0"
token_file = "../admin.token"
[engine]
secret_key_file = "../secret.key"
lease_secs = 6
[cluster]
mode = "active-active"
advertise = "127.0.0.1:{port}"
heartbeat_ms = 100
election_timeout_ms = 600
# Small, so a server that was down catches up from a snapshot.
snapshot_every = 20
{peers}"#,
                    port = ports[i]
                ),
            )
            .unwrap();
            servers.push(Server {
                dir,
                proc: None,
                admin: String::new(),
            });
        }
        let edge_cfg = r.join("edge.toml");
        let upstream: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        std::fs::write(
            &edge_cfg,
            format!(
                r#"node_id = "edge1"
[sftp]
listen = "127.0.0.1:0"
host_key = "edge_host_key"
auth_failure_delay_ms = 100
[upstream]
servers = [{}]
ca = "pki/ca.crt"
cert = "pki/edge1.crt"
key = "pki/edge1.key"
"#,
                upstream.join(", ")
            ),
        )
        .unwrap();
        let mut raft = Self {
            root,
            servers,
            _edge: None,
            sftp_port: 0,
        };
        for i in 0..NAMES.len() {
            raft.start_server(i);
        }
        let (edge, e) = Proc::start(&["edge", "--config", edge_cfg.to_str().unwrap()], &["sftp"]);
        raft._edge = Some(edge);
        raft.sftp_port = e[0].rsplit(':').next().unwrap().parse().unwrap();
        raft
    }

    fn start_server(&mut self, i: usize) {
        let config = self.servers[i].dir.join("server.toml");
        let (proc, v) = Proc::start(
            &["server", "--config", config.to_str().unwrap()],
            &["admin"],
        );
        self.servers[i].proc = Some(proc);
        self.servers[i].admin = v[0].clone();
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.servers[i].proc.take() {
            p.kill();
        }
    }

    fn admin_args(&self, i: usize) -> Vec<String> {
        let r = self.root.path();
        vec![
            "--admin".into(),
            self.servers[i].admin.clone(),
            "--token-file".into(),
            r.join("admin.token").to_str().unwrap().into(),
            "--ca-file".into(),
            r.join("pki/ca.crt").to_str().unwrap().into(),
        ]
    }

    fn admin(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Output {
        run_ferry(args, &self.admin_args(i), stdin)
    }

    fn admin_ok(&self, i: usize, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin(i, args, stdin);
        assert!(
            out.status.success(),
            "ferry {args:?} on {}: {}",
            NAMES[i],
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `/role` of server `i`, if it answers.
    fn role(&self, i: usize) -> Option<serde_json::Value> {
        self.servers[i].proc.as_ref()?;
        let out = Command::new("curl")
            .args(["-s", "--max-time", "3", "--cacert"])
            .arg(self.root.path().join("pki/ca.crt"))
            .arg(format!("{}/role", self.servers[i].admin))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The index of the primary, once exactly one server claims it.
    fn primary(&self) -> Option<usize> {
        let primaries: Vec<usize> = (0..NAMES.len())
            .filter(|&i| self.role(i).is_some_and(|r| r["primary"] == true))
            .collect();
        (primaries.len() == 1).then(|| primaries[0])
    }

    fn transfers(&self, i: usize) -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.admin_ok(
            i,
            &["transfer", "list", "--json", "--limit", "10000"],
            None,
        ))
        .unwrap();
        let mut rows: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["sha256"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn sftp(&self, key: &Path, batch: &str) -> Output {
        let file = self.root.path().join(format!("batch-{}", rand_suffix()));
        std::fs::write(&file, batch).unwrap();
        Command::new("sftp")
            .args(SSH_TEST_OPTS)
            .args([
                "-o",
                "ConnectTimeout=10",
                "-o",
                "IdentitiesOnly=yes",
                "-P",
                &self.sftp_port.to_string(),
                "-i",
            ])
            .arg(key)
            .arg("-b")
            .arg(&file)
            .arg("alice@127.0.0.1")
            .output()
            .unwrap()
    }
}

#[test]
fn three_servers_replicate_and_lose_nothing_when_the_leader_dies() {
    let mut c = Raft::start();
    let out = c.admin_ok(0, &["cluster", "init"], None);
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
    c.admin_ok(
        follower,
        &["account", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let key = client_key(c.root.path(), "alice_key");
    c.admin_ok(
        follower,
        &[
            "account",
            "key",
            "add",
            "alice",
            key.with_extension("pub").to_str().unwrap(),
        ],
        None,
    );
    for i in 0..3 {
        assert!(
            wait_until(10, || c
                .admin_ok(i, &["account", "list"], None)
                .contains("alice")),
            "{} lacks alice",
            NAMES[i]
        );
    }
    let status = c.admin_ok(0, &["cluster", "status"], None);
    println!("{status}");
    assert!(
        status.contains("leader") && status.contains("follower"),
        "{status}"
    );

    // Uploads in flight while the leader is killed.
    let local = c.root.path().join("payload.bin");
    random_file(&local, 256 * 1024);
    let sha = sha256_file(&local);
    let results: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let leader = c.primary().unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (results, key, local) = (results.clone(), key.clone(), local.clone());
            let (port, root) = (c.sftp_port, c.root.path().to_owned());
            std::thread::spawn(move || {
                for n in 0..10 {
                    let name = format!("w{w}-{n}.bin");
                    let batch = root.join(format!("b-{w}-{n}"));
                    std::fs::write(&batch, format!("put {} {name}\n", local.display())).unwrap();
                    let out = Command::new("sftp")
                        .args(SSH_TEST_OPTS)
                        .args(["-o", "IdentitiesOnly=yes", "-P", &port.to_string(), "-i"])
                        .arg(&key)
                        .arg("-b")
                        .arg(&batch)
                        .arg("alice@127.0.0.1")
                        .output()
                        .unwrap();
                    results.lock().unwrap().push((name, out.status.success()));
                }
            })
        })
        .collect();
    assert!(wait_until(60, || results.lock().unwrap().len() >= 8));
    println!(
        "fault: SIGKILL {} (the leader) with uploads in flight",
        NAMES[leader]
    );
    let killed = Instant::now();
    c.kill(leader);
    assert!(wait_until(20, || c.primary().is_some()), "no new primary");
    println!(
        "new primary {} after {:?}",
        NAMES[c.primary().unwrap()],
        killed.elapsed()
    );
    for w in workers {
        w.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let ok: Vec<&String> = results.iter().filter(|r| r.1).map(|r| &r.0).collect();
    println!("{} of {} uploads succeeded", ok.len(), results.len());
    assert!(ok.len() >= 30, "{results:?}");
    // Failed uploads can be made again on the surviving servers.
    for (name, _) in results.iter().filter(|r| !r.1) {
        assert_ok(&c.sftp(&key, &format!("put {} {name}\n", local.display())));
    }
    // Every upload is in the log of both survivors, with its hash.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    assert!(wait_until(20, || {
        let a = c.transfers(survivors[0]);
        a == c.transfers(survivors[1]) && a.len() >= 40
    }));
    let rows = c.transfers(survivors[0]);
    assert!(rows.iter().all(|(_, s)| *s == sha), "{rows:?}");

    // The killed server comes back and catches up.
    println!("fault: {} restarted", NAMES[leader]);
    c.start_server(leader);
    assert!(
        wait_until(30, || c.transfers(leader) == c.transfers(survivors[0])),
        "{} did not catch up",
        NAMES[leader]
    );

    // Losing the majority: the last server turns read-only.
    println!(
        "fault: SIGKILL {} and {}",
        NAMES[survivors[0]], NAMES[survivors[1]]
    );
    c.kill(survivors[0]);
    c.kill(survivors[1]);
    assert!(wait_until(10, || c
        .role(leader)
        .is_some_and(|r| r["ready"] == false)));
    let out = c.sftp(&key, &format!("put {} late.bin\n", local.display()));
    assert!(!out.status.success());
    let got = c.root.path().join("got.bin");
    assert_ok(&c.sftp(&key, &format!("ls\nget w0-0.bin {}\n", got.display())));
    assert_eq!(sha256_file(&got), sha);
    let refused = c.admin(
        leader,
        &["account", "add", "bob", "--password-stdin"],
        Some("pw-pw-pw-pw\n"),
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
            let out = c.sftp(&key, &format!("put {} healed.bin\n", local.display()));
            let ok = out.status.success();
            last = Some(out);
            ok
        }),
        "{}",
        stderr(last.as_ref().unwrap())
    );
    assert!(wait_until(30, || {
        let a = c.transfers(0);
        a == c.transfers(1) && a == c.transfers(2)
    }));
    // The download made without a quorum was logged after all, everywhere.
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
            "{} lacks the read-only download's row",
            NAMES[i]
        );
    }
}
