//! A cluster of real `ferry server` processes on loopback, in either mode:
//! active/passive (servers `s1` and `s2` with a witness `w1`) or
//! active/active (Raft: three servers, or two and a witness). The servers
//! share one site (CA, certificates, admin token, secret key, repository),
//! each has its own config directory, and an edge lists the serving ones.
//! TCP proxies the test controls can sit on server-to-server links, and a
//! webhook can collect the servers' alerts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{client_key, ferry_ok, free_port, write_private, Proc, PASSWORD};

/// Heartbeat and failover times of active/passive test clusters (short,
/// so tests are quick).
pub const HEARTBEAT_MS: u64 = 250;
/// See [`HEARTBEAT_MS`].
pub const FAILOVER_MS: u64 = 3_000;
const TOKEN: &str = "cluster-admin-token-0123456789";

/// The manifests every active/passive server starts with.
pub const SYNC_CONF: &str = "# test manifest\nsync/*\nshared/**\n";
pub const SYNC_TABLES: &str =
    "accounts\naccount_keys\naccount_tokens\nfolder_permissions\nvirtual_folders\nfolder_mounts\npartners\nroutes\nschedules\nmonitors\nnotify_endpoints\nnotify_rules\nadmins\nadmin_tokens\nretention_policies\n";
pub const SYNC_EXCL: &str = "table account_tokens\ntransfers\nshared/local/**\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One active server, standbys, a witness's vote for failover.
    ActivePassive,
    /// Raft: every server serves; `cluster init` forms the group.
    ActiveActive,
}

/// Which server-to-server links go through a [`Proxy`].
#[derive(Clone, Copy, Debug)]
pub enum Proxies {
    None,
    /// Server `.0` reaches server `.1` through a proxy.
    Link(usize, usize),
    /// Every link, each through its own proxy.
    All,
}

/// Who is in a test cluster, and how they are set up.
#[derive(Clone, Copy, Debug)]
pub struct ClusterSpec {
    pub mode: Mode,
    /// Names; a name starting with "w" is a witness.
    pub names: &'static [&'static str],
    pub proxies: Proxies,
    /// Active/active: the first this many servers form the group at
    /// `cluster init`; the others know them but join later.
    pub initial: usize,
    /// Active/active: Raft entries between snapshots.
    pub snapshot_every: u64,
    /// The servers POST alerts to a webhook the test reads
    /// ([`TestCluster::alerts`]).
    pub alerts: bool,
}

impl ClusterSpec {
    /// `s1` (priority 100), `s2` (priority 90) and the witness `w1`.
    pub const fn active_passive() -> Self {
        Self {
            mode: Mode::ActivePassive,
            names: &["s1", "s2", "w1"],
            proxies: Proxies::None,
            initial: 3,
            snapshot_every: 0,
            alerts: false,
        }
    }

    /// `names`, all founders, a snapshot every 20 entries (small, so a
    /// server that was down catches up from a snapshot), alerts collected.
    pub const fn active_active(names: &'static [&'static str]) -> Self {
        Self {
            mode: Mode::ActiveActive,
            names,
            proxies: Proxies::None,
            initial: names.len(),
            snapshot_every: 20,
            alerts: true,
        }
    }
}

/// One server or witness.
pub struct Server {
    pub name: &'static str,
    /// Its config directory (server.toml, state/, sync/, shared/).
    pub dir: PathBuf,
    pub internal_port: u16,
    pub proc: Option<Proc>,
    pub admin_url: String,
    pub witness: bool,
    /// The `ferry` binary it runs (this build unless the test says).
    pub bin: PathBuf,
}

/// A server's `/role`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub role: String,
    pub ready: bool,
    pub epoch: u64,
    pub primary: bool,
}

/// The cluster.
pub struct TestCluster {
    pub spec: ClusterSpec,
    pub root: tempfile::TempDir,
    pub servers: Vec<Server>,
    pub edge: Option<Proc>,
    pub sftp_port: u16,
    /// `links[i][j]`: the proxy server i reaches server j through.
    pub links: Vec<Vec<Option<Proxy>>>,
    /// Bodies of the alerts the servers POSTed to the test's webhook.
    pub alerts: Arc<Mutex<Vec<String>>>,
}

impl TestCluster {
    /// Writes the site and every server's config; starts nothing.
    pub fn new(spec: ClusterSpec) -> Self {
        let names = spec.names;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        prepare_site(r, names);
        let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let alerts: Arc<Mutex<Vec<String>>> = Arc::default();
        let hook_port = spec.alerts.then(|| webhook(alerts.clone()));
        let links: Vec<Vec<Option<Proxy>>> = (0..names.len())
            .map(|i| {
                (0..names.len())
                    .map(|j| {
                        let on = match spec.proxies {
                            Proxies::None => false,
                            Proxies::Link(a, b) => (a, b) == (i, j),
                            Proxies::All => i != j,
                        };
                        on.then(|| Proxy::start(ports[j]))
                    })
                    .collect()
            })
            .collect();
        let mut servers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let dir = r.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut peers = String::new();
            for (j, other) in names.iter().enumerate() {
                // Active/active: founders list each other; a joiner lists
                // the founders.
                if i == j || (spec.mode == Mode::ActiveActive && j >= spec.initial) {
                    continue;
                }
                let port = links[i][j].as_ref().map_or(ports[j], |px| px.port);
                peers.push_str(&format!(
                    "[[cluster.peers]]\nid = \"{other}\"\naddress = \"127.0.0.1:{port}\"\n"
                ));
                if spec.mode == Mode::ActivePassive {
                    peers.push_str(&format!("witness = {}\n", other.starts_with('w')));
                }
            }
            let cluster = match spec.mode {
                Mode::ActivePassive => {
                    std::fs::create_dir_all(dir.join("sync")).unwrap();
                    std::fs::write(dir.join("sync/sync.conf"), SYNC_CONF).unwrap();
                    std::fs::write(dir.join("sync/sync_tables.conf"), SYNC_TABLES).unwrap();
                    std::fs::write(dir.join("sync/sync.excl"), SYNC_EXCL).unwrap();
                    let priority = if i == 0 { 100 } else { 90 };
                    format!(
                        "mode = \"active-passive\"\npriority = {priority}\n\
                         heartbeat_ms = {HEARTBEAT_MS}\nfailover_after_ms = {FAILOVER_MS}\n"
                    )
                }
                Mode::ActiveActive => {
                    let hook = hook_port.map_or(String::new(), |p| {
                        format!("alert_webhook = \"http://127.0.0.1:{p}/alerts\"\n")
                    });
                    format!(
                        "mode = \"active-active\"\nadvertise = \"127.0.0.1:{}\"\n\
                         heartbeat_ms = 100\nelection_timeout_ms = 600\n\
                         snapshot_every = {}\n{hook}",
                        ports[i], spec.snapshot_every
                    )
                }
            };
            std::fs::write(
                dir.join("server.toml"),
                server_toml(name, ports[i], &format!("{cluster}{peers}")),
            )
            .unwrap();
            servers.push(Server {
                name,
                dir,
                internal_port: ports[i],
                proc: None,
                admin_url: String::new(),
                witness: name.starts_with('w'),
                bin: PathBuf::from(super::BIN),
            });
        }
        Self {
            spec,
            root,
            servers,
            edge: None,
            sftp_port: 0,
            links,
            alerts,
        }
    }

    /// [`TestCluster::new`], then starts every server and an edge that
    /// lists the servers (witnesses serve no sessions). Active/passive:
    /// `s1` and the witness first, and waits until `s1` is active (when
    /// all three started at once, s2 sometimes won the first election on a
    /// loaded machine, and the tests expect s1 active). Active/active: all
    /// at once; the test runs `cluster init`.
    pub fn start(spec: ClusterSpec) -> Self {
        let mut c = Self::new(spec);
        let n = c.servers.len();
        let (witnesses, serving): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| c.servers[i].witness);
        match spec.mode {
            Mode::ActivePassive => {
                c.start_server(0);
                for &i in &witnesses {
                    c.start_server(i);
                }
                assert!(
                    c.wait_role(0, "active", true, 30),
                    "s1 did not become active: {:?}",
                    c.role(0)
                );
                for &i in &serving[1..] {
                    c.start_server(i);
                }
            }
            Mode::ActiveActive => {
                for i in 0..n {
                    c.start_server(i);
                }
            }
        }
        c.start_edge(&serving);
        c
    }

    /// Starts the cluster's edge, listing `servers`.
    pub fn start_edge(&mut self, servers: &[usize]) {
        let (edge, port) = self.edge_to(servers);
        self.edge = Some(edge);
        self.sftp_port = port;
    }

    /// Starts another edge whose upstream servers are `servers`; returns
    /// it and its SFTP port.
    pub fn edge_to(&self, servers: &[usize]) -> (Proc, u16) {
        let (edge, e) = self.edge_with(servers, "", &["sftp"]);
        let port = e[0].rsplit(':').next().unwrap().parse().unwrap();
        (edge, port)
    }

    /// Starts another edge whose upstream servers are `servers`, with
    /// `extra` appended to its config; returns it and the values of the
    /// `keys` it printed.
    pub fn edge_with(&self, servers: &[usize], extra: &str, keys: &[&str]) -> (Proc, Vec<String>) {
        self.edge_with_bin(Path::new(super::BIN), servers, 0, extra, keys)
    }

    /// [`TestCluster::edge_with`], the edge run by the binary `bin`, its
    /// SFTP listener on `sftp_port` (0: any).
    pub fn edge_with_bin(
        &self,
        bin: &Path,
        servers: &[usize],
        sftp_port: u16,
        extra: &str,
        keys: &[&str],
    ) -> (Proc, Vec<String>) {
        let servers: Vec<String> = servers
            .iter()
            .map(|&i| format!("\"127.0.0.1:{}\"", self.servers[i].internal_port))
            .collect();
        let path = self.root.path().join("edge.toml");
        std::fs::write(
            &path,
            format!(
                r#"node_id = "edge1"
[sftp]
listen = "127.0.0.1:{}"
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
{}"#,
                sftp_port,
                servers.join(", "),
                extra
            ),
        )
        .unwrap();
        Proc::start_bin(
            bin,
            &["edge", "--config", path.to_str().unwrap()],
            keys,
            std::process::Stdio::inherit(),
        )
    }

    /// Starts (or restarts) server `i`.
    pub fn start_server(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let config = server.dir.join("server.toml");
        let mut args = vec!["server", "--config", config.to_str().unwrap()];
        if server.witness {
            args.push("--witness");
        }
        let (proc, v) = Proc::start_bin(
            &server.bin,
            &args,
            &["admin"],
            std::process::Stdio::inherit(),
        );
        server.admin_url = v[0].clone();
        server.proc = Some(proc);
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.servers[i].proc.take() {
            p.kill();
        }
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.servers[i].proc.as_ref().unwrap().child.id()
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.pid(i).to_string();
        let st = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success(), "kill {sig} {}", self.servers[i].name);
    }

    pub fn admin_args(&self, i: usize) -> Vec<String> {
        let r = self.root.path();
        vec![
            "--admin".into(),
            self.servers[i].admin_url.clone(),
            "--token-file".into(),
            r.join("admin.token").to_str().unwrap().into(),
            "--ca-file".into(),
            r.join("pki/ca.crt").to_str().unwrap().into(),
        ]
    }

    /// Runs `ferry ARGS` against server `i`'s admin API.
    pub fn admin(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Output {
        super::run_ferry(args, &self.admin_args(i), stdin)
    }

    pub fn admin_ok(&self, i: usize, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin(i, args, stdin);
        assert!(
            out.status.success(),
            "ferry {args:?} on {} failed: {}{}",
            self.servers[i].name,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, i: usize, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.admin_ok(i, args, None)).unwrap()
    }

    /// `cluster status --json` of server `i`.
    pub fn status(&self, i: usize) -> serde_json::Value {
        self.json(i, &["cluster", "status", "--json"])
    }

    /// Active/active: `cluster init` on `s1`; what it printed (with the
    /// join token).
    pub fn init(&self) -> String {
        self.admin_ok(0, &["cluster", "init"], None)
    }

    /// GET on server `i`'s admin listener without a token: (status, body).
    pub fn get(&self, i: usize, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "3", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.root.path().join("pki/ca.crt"))
            .arg(format!("{}{path}", self.servers[i].admin_url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Server `i`'s `/role`, or None if it is not running or does not answer.
    pub fn role(&self, i: usize) -> Option<Role> {
        self.servers[i].proc.as_ref()?;
        let (status, body) = self.get(i, "/role");
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(Role {
            role: v["role"].as_str()?.to_owned(),
            ready: v["ready"].as_bool()?,
            epoch: v["epoch"].as_u64()?,
            primary: v["primary"] == true,
        })
    }

    pub fn wait_role(&self, i: usize, role: &str, ready: bool, secs: u64) -> bool {
        super::wait_until(secs, || {
            self.role(i)
                .is_some_and(|r| r.role == role && r.ready == ready)
        })
    }

    /// The index of the primary, once exactly one server claims it.
    pub fn primary(&self) -> Option<usize> {
        let primaries: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.role(i).is_some_and(|r| r.primary))
            .collect();
        (primaries.len() == 1).then(|| primaries[0])
    }

    /// Active/passive: digest of server `i`'s syncable tables, from its own
    /// status.
    pub fn table_digests(&self, i: usize) -> serde_json::Value {
        self.status(i)["this"]["table_digests"].clone()
    }

    /// Active/active: the last log index of member `name`, as server `i`
    /// sees it.
    pub fn last_log_index(&self, i: usize, name: &str) -> u64 {
        let status = self.status(i);
        let members = status["members"].as_array().unwrap();
        let member = members.iter().find(|m| m["name"] == name).unwrap();
        member["last_log_index"].as_u64().unwrap()
    }

    /// Active/active: the first entry server `i` still keeps in its log.
    pub fn first_log_index(&self, i: usize) -> u64 {
        let kept = self.status(i)["log_entries_kept"].as_u64().unwrap();
        self.last_log_index(i, self.servers[i].name) + 1 - kept
    }

    /// The proxy server `from` reaches server `to` through.
    pub fn link(&self, from: usize, to: usize) -> &Proxy {
        self.links[from][to].as_ref().expect("a proxied link")
    }

    /// Cuts (or heals) every proxied link to and from server `i`.
    pub fn isolate(&self, i: usize, on: bool) {
        for (a, row) in self.links.iter().enumerate() {
            for (b, link) in row.iter().enumerate() {
                if a == i || b == i {
                    if let Some(px) = link {
                        px.block(on);
                    }
                }
            }
        }
    }

    /// Creates an account with [`PASSWORD`] and a key through server `i`;
    /// returns the key.
    pub fn account_with_key(&self, i: usize, name: &str) -> PathBuf {
        self.admin_ok(
            i,
            &["account", "add", name, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
        let key = client_key(self.root.path(), &format!("{name}_key"));
        let public = key.with_extension("pub");
        self.admin_ok(
            i,
            &["account", "key", "add", name, public.to_str().unwrap()],
            None,
        );
        key
    }

    /// An `sftp -b` batch through the edge with key login, in `cwd`.
    pub fn sftp(&self, user: &str, key: &Path, batch: &str, cwd: &Path) -> Output {
        super::sftp_with_key(self.sftp_port, self.root.path(), user, key, batch, cwd)
    }

    /// The members `cluster status` on server `i` lists (active/active).
    pub fn member_names(&self, i: usize) -> Vec<String> {
        self.status(i)["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Adds, through server `i`, a partner nobody answers for and the
    /// schedule `tick` pulling from it every 2 s into `alice/in`: its
    /// firings show which server runs the scheduler, and when.
    pub fn add_ticking_schedule(&self, i: usize) {
        let key = client_key(self.root.path(), "hostkey");
        add_unreachable_partner(
            |args| {
                self.admin_ok(i, args, None);
            },
            self.root.path(),
            &key.with_extension("pub"),
        );
        self.admin_ok(
            i,
            &[
                "schedule",
                "add",
                "tick",
                "--cron",
                "*/2 * * * * *",
                "--action",
                "pull:nobody:*.txt:alice/in",
            ],
            None,
        );
    }

    /// Transfer-log rows (id, node, SHA-256) on server `i`, sorted.
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

/// The join token in what `ferry cluster init` printed.
pub fn join_token(init: &str) -> String {
    init.split_whitespace()
        .find(|w| w.starts_with("fyj_"))
        .unwrap_or_else(|| panic!("init prints the join token: {init}"))
        .to_owned()
}

/// The files a test site's servers share, in `root`: the cluster CA with a
/// certificate for each of `servers` and the edge, the admin token, the
/// secret key every server seals partner credentials with, the repository.
fn prepare_site(root: &Path, servers: &[&str]) {
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
fn server_toml(name: &str, port: u16, cluster: &str) -> String {
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

/// A minimal HTTP endpoint that keeps every request body in `bodies` and
/// answers 204; returns its port.
fn webhook(bodies: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = bodies.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    let mut out = &stream;
                    if out
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
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
