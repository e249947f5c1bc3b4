//! An active/passive cluster of real `ferry server` processes on loopback:
//! servers `s1` and `s2` (shared repository, one config directory each), a
//! witness `w1`, and an edge that lists both servers. A TCP proxy the test
//! controls can sit in front of `s2`, as `s1` reaches it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{client_key, ferry_ok, free_port, write_private, Proc, PASSWORD};

/// Heartbeat and failover times of test clusters (short, so tests are quick).
pub const HEARTBEAT_MS: u64 = 250;
/// See [`HEARTBEAT_MS`].
pub const FAILOVER_MS: u64 = 3_000;
const TOKEN: &str = "cluster-admin-token-0123456789";

/// One server or witness.
pub struct Node {
    pub name: String,
    /// Its config directory (server.toml, sync/, shared/).
    pub dir: PathBuf,
    pub internal_port: u16,
    pub proc: Option<Proc>,
    pub admin_url: String,
    pub witness: bool,
}

/// The cluster.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub edge: Option<Proc>,
    pub sftp_port: u16,
    pub proxy: Option<Proxy>,
}

/// The files a test site's servers share, in `root`: the cluster CA with a
/// certificate for each of `servers` and the edge, the admin token, the
/// secret key every server seals partner credentials with, the repository.
pub fn prepare_site(root: &Path, servers: &[&str]) {
    let pki = root.join("pki");
    let p = pki.to_str().unwrap();
    ferry_ok(&["pki", "init", "--dir", p]);
    for name in servers {
        ferry_ok(&[
            "pki",
            "issue",
            "--dir",
            p,
            "--role",
            "server",
            "--san",
            "127.0.0.1",
            name,
        ]);
    }
    ferry_ok(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--role",
        "https",
        "--san",
        "127.0.0.1",
        "edge1-https",
    ]);
    ferry_ok(&["pki", "issue", "--dir", p, "--role", "edge", "edge1"]);
    write_private(&root.join("admin.token"), &format!("{TOKEN}\n"));
    write_private(&root.join("secret.key"), &format!("{}\n", "ab".repeat(32)));
    std::fs::create_dir_all(root.join("repository")).unwrap();
}

/// The config of server `name` in `ROOT/NAME/server.toml`, listening on
/// `port`, with `cluster` as its `[cluster]` section.
pub fn server_toml(name: &str, port: u16, cluster: &str) -> String {
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
{cluster}"#
    )
}

/// Starts an edge whose upstream servers are on `ports`; returns it and
/// its SFTP port.
pub fn start_edge(root: &Path, ports: &[u16]) -> (Proc, u16) {
    let servers: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let path = root.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            r#"node_id = "edge1"
[sftp]
listen = "127.0.0.1:0"
host_key = "edge_host_key"
auth_failure_delay_ms = 100
[https]
listen = "127.0.0.1:0"
cert = "pki/edge1-https.crt"
key = "pki/edge1-https.key"
[upstream]
servers = [{}]
ca = "pki/ca.crt"
cert = "pki/edge1.crt"
key = "pki/edge1.key"
"#,
            servers.join(", ")
        ),
    )
    .unwrap();
    let (edge, e) = Proc::start(&["edge", "--config", path.to_str().unwrap()], &["sftp"]);
    let port = e[0].rsplit(':').next().unwrap().parse().unwrap();
    (edge, port)
}

/// Adds partner `nobody`: a port nothing listens on, password login, and
/// `host_key_pub` pinned. Schedules pulling from it show who fires them.
pub fn add_unreachable_partner(admin_ok: impl Fn(&[&str]), root: &Path, host_key_pub: &Path) {
    let pw = root.join("partner.pw");
    std::fs::write(&pw, "secret-partner-password\n").unwrap();
    admin_ok(&[
        "partner",
        "add",
        "nobody",
        "--host",
        "127.0.0.1",
        "--port",
        &free_port().to_string(),
        "--user",
        "x",
        "--password-file",
        pw.to_str().unwrap(),
        "--host-key-file",
        host_key_pub.to_str().unwrap(),
    ]);
}

/// The manifests every test node starts with.
pub const SYNC_CONF: &str = "# test manifest\nsync/*\nshared/**\n";
pub const SYNC_TABLES: &str =
    "accounts\naccount_keys\naccount_tokens\npartners\nroutes\nschedules\nmonitors\n";
pub const SYNC_EXCL: &str = "table account_tokens\ntransfers\nshared/local/**\n";

impl Cluster {
    /// Starts s1 (priority 100), s2 (priority 90) and the witness; with
    /// `proxied`, s1 reaches s2 through a [`Proxy`]. Waits until s1 is active.
    pub fn start(proxied: bool) -> Self {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        prepare_site(r, &["s1", "s2", "w1"]);
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let proxy = proxied.then(|| Proxy::start(ports[1]));
        let mut nodes = Vec::new();
        for (i, name) in ["s1", "s2", "w1"].iter().enumerate() {
            let dir = r.join(name);
            std::fs::create_dir_all(dir.join("sync")).unwrap();
            std::fs::write(dir.join("sync/sync.conf"), SYNC_CONF).unwrap();
            std::fs::write(dir.join("sync/sync_tables.conf"), SYNC_TABLES).unwrap();
            std::fs::write(dir.join("sync/sync.excl"), SYNC_EXCL).unwrap();
            let mut peers = String::new();
            for (j, other) in ["s1", "s2", "w1"].iter().enumerate() {
                if i == j {
                    continue;
                }
                let port = match (&proxy, *name, *other) {
                    (Some(px), "s1", "s2") => px.port,
                    _ => ports[j],
                };
                peers.push_str(&format!(
                    "[[cluster.peers]]\nid = \"{other}\"\naddress = \"127.0.0.1:{port}\"\nwitness = {}\n",
                    *other == "w1"
                ));
            }
            let priority = if *name == "s1" { 100 } else { 90 };
            let config = server_toml(
                name,
                ports[i],
                &format!(
                    "mode = \"active-passive\"\npriority = {priority}\nheartbeat_ms = {HEARTBEAT_MS}\n\
                     failover_after_ms = {FAILOVER_MS}\n{peers}"
                ),
            );
            std::fs::write(dir.join("server.toml"), config).unwrap();
            nodes.push(Node {
                name: (*name).into(),
                dir,
                internal_port: ports[i],
                proc: None,
                admin_url: String::new(),
                witness: *name == "w1",
            });
        }
        let mut cluster = Self {
            root,
            nodes,
            edge: None,
            sftp_port: 0,
            proxy,
        };
        // s1 and the witness first: s1 is active before s2 can stand (when
        // all three started at once, s2 sometimes won the first election
        // on a loaded machine, and the tests expect s1 active).
        cluster.start_node(0);
        cluster.start_node(2);
        assert!(
            cluster.wait_role(0, "active", true, 30),
            "s1 did not become active: {:?}",
            cluster.role(0)
        );
        cluster.start_node(1);
        cluster.start_edge();
        cluster
    }

    fn start_edge(&mut self) {
        let (edge, port) = start_edge(
            self.root.path(),
            &[self.nodes[0].internal_port, self.nodes[1].internal_port],
        );
        self.sftp_port = port;
        self.edge = Some(edge);
    }

    /// Starts (or restarts) node `i`.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let config = node.dir.join("server.toml");
        let mut args = vec!["server", "--config", config.to_str().unwrap()];
        if node.witness {
            args.push("--witness");
        }
        let (proc, v) = Proc::start(&args, &["admin"]);
        node.admin_url = v[0].clone();
        node.proc = Some(proc);
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
        }
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].proc.as_ref().unwrap().child.id().to_string();
        let st = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success());
    }

    pub fn admin_args(&self, i: usize) -> Vec<String> {
        let r = self.root.path();
        vec![
            "--admin".into(),
            self.nodes[i].admin_url.clone(),
            "--token-file".into(),
            r.join("admin.token").to_str().unwrap().into(),
            "--ca-file".into(),
            r.join("pki/ca.crt").to_str().unwrap().into(),
        ]
    }

    /// Runs `ferry ARGS` against node `i`'s admin API.
    pub fn admin(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Output {
        super::run_ferry(args, &self.admin_args(i), stdin)
    }

    pub fn admin_ok(&self, i: usize, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin(i, args, stdin);
        assert!(
            out.status.success(),
            "ferry {args:?} on {} failed: {}{}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, i: usize, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.admin_ok(i, args, None)).unwrap()
    }

    /// GET on node `i`'s admin listener without a token: (status, body).
    pub fn get(&self, i: usize, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.root.path().join("pki/ca.crt"))
            .arg(format!("{}{path}", self.nodes[i].admin_url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// (role, ready, epoch) from `/role`, or None if it does not answer.
    pub fn role(&self, i: usize) -> Option<(String, bool, u64)> {
        let (status, body) = self.get(i, "/role");
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((
            v["role"].as_str()?.to_owned(),
            v["ready"].as_bool()?,
            v["epoch"].as_u64()?,
        ))
    }

    pub fn wait_role(&self, i: usize, role: &str, ready: bool, secs: u64) -> bool {
        super::wait_until(secs, || {
            self.role(i)
                .is_some_and(|(r, rd, _)| r == role && rd == ready)
        })
    }

    /// Digest of node `i`'s syncable tables, from its own status.
    pub fn table_digests(&self, i: usize) -> serde_json::Value {
        self.json(i, &["cluster", "status", "--json"])["this"]["table_digests"].clone()
    }

    /// Creates an account with [`PASSWORD`] and a key on node `i`; returns the key.
    pub fn account_with_key(&self, i: usize, name: &str) -> PathBuf {
        self.admin_ok(
            i,
            &["account", "add", name, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
        let key = client_key(self.root.path(), &format!("{name}_key"));
        self.admin_ok(
            i,
            &[
                "account",
                "key",
                "add",
                name,
                key.with_extension("pub").to_str().unwrap(),
            ],
            None,
        );
        key
    }

    /// An `sftp -b` batch through the edge with key login.
    pub fn sftp(&self, user: &str, key: &Path, batch: &str, cwd: &Path) -> Output {
        super::sftp_with_key(self.sftp_port, self.root.path(), user, key, batch, cwd)
    }

    /// Transfer-log ids (with their SHA-256) on node `i`.
    pub fn transfer_ids(&self, i: usize) -> Vec<(String, String, String)> {
        let v = self.json(i, &["transfer", "list", "--json", "--limit", "10000"]);
        let mut rows: Vec<(String, String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["node"].as_str().unwrap_or("").to_owned(),
                    t["sha256"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

/// A TCP proxy on loopback that the test can tell to cut connections.
pub struct Proxy {
    pub port: u16,
    /// When non-zero, connections opened from now on are cut after this
    /// many bytes from the client.
    pub cut_after: Arc<AtomicU64>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
    /// While set, every connection is dropped and new ones are closed at
    /// once: a network partition.
    pub blocked: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_after = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let (armed, counted, wall) = (cut_after.clone(), cuts.clone(), blocked.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if wall.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let budget = armed.load(Ordering::SeqCst);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (counted, wall1, wall2) = (counted.clone(), wall.clone(), wall.clone());
                std::thread::spawn(move || pump(client, server, budget, counted, wall1));
                std::thread::spawn(move || pump(s2, c2, 0, Arc::default(), wall2));
            }
        });
        Self {
            port,
            cut_after,
            cuts,
            blocked,
        }
    }

    /// Partitions (true) or heals (false) the link.
    pub fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: u64,
    cuts: Arc<AtomicU64>,
    blocked: Arc<AtomicBool>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        if blocked.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        if blocked.load(Ordering::SeqCst) {
            break;
        }
        let n = if budget > 0 && sent + n as u64 >= budget {
            let rest = (budget - sent) as usize;
            let _ = to.write_all(&buf[..rest]);
            cuts.fetch_add(1, Ordering::SeqCst);
            break;
        } else {
            n
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Waits `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
