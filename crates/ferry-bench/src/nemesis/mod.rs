//! Nemesis runs: a real cluster (active/active: three servers; active/
//! passive: two servers and a witness), an edge, SFTP clients uploading
//! unique files and recording every outcome, a route copying each upload
//! to a second account, a schedule firing every 2 s, and seeded faults
//! while they work: SIGKILL of the primary and of any server, SIGSTOP,
//! network partitions (each server in its own network namespace, cut off
//! with blackhole routes), edge kills, and in active/passive promotions and
//! `ferry sync` runs. Afterwards everything is healed and [`check`] counts
//! what must never happen.
//!
//! `tests/nemesis.rs` runs it for about two and a half minutes per mode;
//! `ferry-bench --nemesis --minutes 15` runs it long and writes the figures
//! into the bench report.

pub mod check;
mod net;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::procs::{ferry_ok, free_port, server_role, write_private, Daemon};
use check::{DisabledProbe, Figures, Findings, Input, RoleSample, ServerState};
use net::Net;

/// The uploader, written into the work directory at the start of a run.
const CLIENT: &str = include_str!("../../../../tests/clients/nemesis_client.py");
const TOKEN: &str = "nemesis-admin-token-0123456789abcdef";
const PASSWORD: &str = "nemesis correct horse battery";
/// The schedule fires every this many ms.
const SCHEDULE_PERIOD_MS: i64 = 2000;
/// Ferry's misfire grace (a slot later than this is skipped, not fired
/// late), in active/active and in active/passive mode.
const MISFIRE_GRACE_MS: [i64; 2] = [10_000, 2_000];
/// Longest any admin command may take before it counts as failed.
const ADMIN_LIMIT: Duration = Duration::from_secs(20);
/// How often the harness asks every server's `/role`.
const ROLE_POLL: Duration = Duration::from_millis(250);

/// Which cluster a run builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Three servers in one Raft group.
    ActiveActive,
    /// Two servers and a witness; one active, manual sync.
    ActivePassive,
}

impl Mode {
    fn servers(self) -> &'static [&'static str] {
        match self {
            Mode::ActiveActive => &["s1", "s2", "s3"],
            Mode::ActivePassive => &["s1", "s2", "w1"],
        }
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Seeds the faults and the clients' data; printed, so a run can be
    /// repeated.
    pub seed: u64,
    /// How long faults are injected (setup and checking come on top).
    pub duration: Duration,
    /// Faults go on past `duration` until there were at least this many.
    pub min_faults: usize,
    /// Concurrent uploading clients.
    pub workers: usize,
    /// How long the Raft log is watched with no clients at the end.
    pub idle_watch: Duration,
}

/// One fault, as it was injected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// Seconds since the faults began.
    pub at_s: f64,
    /// Wall-clock ms when it began.
    pub at_ms: i64,
    pub kind: String,
    pub target: String,
    /// How long it lasted, in ms.
    pub held_ms: u64,
}

/// The outcome of a run: figures, faults and findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NemesisReport {
    pub mode: Mode,
    pub seed: u64,
    pub seconds: u64,
    /// Partitions were real (network namespaces); otherwise SIGSTOP stood
    /// in for them, and `why_not_real` says why.
    pub real_partitions: bool,
    pub why_not_real: Option<String>,
    pub faults: Vec<Fault>,
    pub figures: Figures,
    pub findings: Findings,
    /// Raft log entries added per minute with no clients (active/active).
    pub idle_log_entries_per_min: Option<f64>,
    pub machine: String,
}

impl NemesisReport {
    /// Faults by kind.
    pub fn fault_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for f in &self.faults {
            *m.entry(f.kind.clone()).or_default() += 1;
        }
        m
    }
}

/// One server's process and addresses.
struct Server {
    name: &'static str,
    config: PathBuf,
    witness: bool,
    daemon: Option<Daemon>,
    admin: String,
    starts: usize,
    stopped: bool,
}

/// An edge: listens on a fixed port on loopback so clients find it again
/// after a restart.
struct Edge {
    name: String,
    config: PathBuf,
    port: u16,
    daemon: Option<Daemon>,
    starts: usize,
}

/// The cluster under test and everything around it.
struct Site {
    ferry: PathBuf,
    mode: Mode,
    dir: PathBuf,
    net: Net,
    servers: Vec<Server>,
    /// The edge the clients use (every server behind it).
    edge: Edge,
    /// One edge per serving server, each reaching only that one: the
    /// disabled-account probes.
    pinned: Vec<Edge>,
    started: Instant,
}

/// Runs one nemesis run in `work` and checks it (see the module
/// documentation). Prints its seed and every fault as it goes.
pub fn run(ferry: &Path, work: &Path, opts: &Options) -> anyhow::Result<NemesisReport> {
    let dir = work.join(match opts.mode {
        Mode::ActiveActive => "nemesis-active-active",
        Mode::ActivePassive => "nemesis-active-passive",
    });
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    // Edges run in the site's directory: the binary's path must not be relative.
    let ferry = &ferry
        .canonicalize()
        .with_context(|| format!("{} not found", ferry.display()))?;
    eprintln!(
        "nemesis {:?}: seed {} ({} s of faults, {} clients); files in {}",
        opts.mode,
        opts.seed,
        opts.duration.as_secs(),
        opts.workers,
        dir.display()
    );
    let (net, why_not_real) = Net::create(opts.mode.servers().len());
    match &why_not_real {
        None => eprintln!("nemesis: each server in its own network namespace"),
        Some(why) => {
            eprintln!("nemesis: no network namespaces ({why}); SIGSTOP stands in for partitions")
        }
    }
    let mut site = Site::create(ferry, opts.mode, &dir, net)?;
    site.form()?;
    site.setup_workload()?;
    let schedule_from = now_ms();

    // The role poller runs from now until the end of the checks.
    let roles: Arc<Mutex<Vec<RoleSample>>> = Arc::default();
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let targets: Vec<(String, String)> = site
            .servers
            .iter()
            .filter(|s| !s.witness)
            .map(|s| (s.name.to_owned(), s.admin.clone()))
            .collect();
        let ca = site.dir.join("pki/ca.crt");
        let (roles, polling, mode) = (roles.clone(), polling.clone(), site.mode);
        std::thread::spawn(move || poll_roles(&ca, &targets, mode, &roles, &polling))
    };

    let stop_file = dir.join("stop-clients");
    let client = dir.join("nemesis_client.py");
    fs::write(&client, CLIENT)?;
    let mut workers = Vec::new();
    for w in 0..opts.workers {
        let log = fs::File::create(dir.join(format!("client-{w}.log")))?;
        let child = Command::new("python3")
            .arg(&client)
            .args([
                &site.edge.port.to_string(),
                "alice",
                PASSWORD,
                &w.to_string(),
            ])
            .arg(dir.join(format!("history-{w}.jsonl")))
            .arg(&stop_file)
            .arg(opts.seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start python3 nemesis_client.py (paramiko)")?;
        workers.push(child);
    }

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let faults_from = Instant::now();
    let mut faults = Vec::new();
    let mut probes = Vec::new();
    let mut next_probe = Instant::now() + Duration::from_secs(10);
    while faults_from.elapsed() < opts.duration || faults.len() < opts.min_faults {
        let fault = site.inject(&mut rng, faults_from)?;
        eprintln!(
            "nemesis: fault {:>3} at {:>6.1} s: {} {} for {} ms",
            faults.len() + 1,
            fault.at_s,
            fault.kind,
            fault.target,
            fault.held_ms
        );
        faults.push(fault);
        // Let the cluster settle between faults, so each outage is the
        // outage of one fault.
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..3000)));
        if Instant::now() >= next_probe {
            probes.extend(site.disabled_probe(&mut rng)?);
            next_probe = Instant::now() + Duration::from_secs(20);
        }
    }

    let faults_to = now_ms();
    eprintln!("nemesis: healing");
    site.heal_all()?;
    fs::write(&stop_file, "")?;
    for mut w in workers {
        wait_child(&mut w, Duration::from_secs(60));
    }
    site.wait_stable(Duration::from_secs(60))?;
    probes.extend(site.disabled_probe(&mut rng)?);
    site.wait_events_settled(Duration::from_secs(120))?;
    let idle = if site.mode == Mode::ActiveActive {
        Some(site.idle_log_growth(opts.idle_watch)?)
    } else {
        None
    };
    let schedule_to = now_ms();
    polling.store(false, Ordering::SeqCst);
    let _ = poller.join();
    let (servers, cut) = site.dump_all()?;
    fs::write(
        dir.join("servers.json"),
        serde_json::to_string_pretty(&servers)? + "\n",
    )?;

    let mut history = Vec::new();
    for w in 0..opts.workers {
        let path = dir.join(format!("history-{w}.jsonl"));
        let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if let Ok(e) = serde_json::from_str(&line) {
                history.push(e);
            }
        }
    }
    let fault_windows = faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let next = faults.get(i + 1).map_or(faults_to, |n| n.at_ms);
            (
                format!("{:.1} s {} {}", f.at_s, f.kind, f.target),
                f.at_ms,
                next,
            )
        })
        .collect();
    let roles = std::mem::take(&mut *roles.lock().unwrap_or_else(|e| e.into_inner()));
    let mut lines = String::new();
    for r in &roles {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    fs::write(dir.join("roles.jsonl"), lines)?;
    let input = Input {
        faults: fault_windows,
        history,
        servers,
        home: files_of(&dir.join("repository/alice"))?,
        copies: files_of(&dir.join("repository/bob/in"))?,
        roles,
        probes,
        schedule_period_ms: SCHEDULE_PERIOD_MS,
        schedule_grace_ms: MISFIRE_GRACE_MS[(opts.mode == Mode::ActivePassive) as usize],
        schedule_window_ms: (schedule_from, schedule_to.min(cut)),
    };
    let (findings, figures) = check::check(&input);
    let report = NemesisReport {
        mode: opts.mode,
        seed: opts.seed,
        seconds: opts.duration.as_secs(),
        real_partitions: site.net.real(),
        why_not_real,
        faults,
        figures,
        findings,
        idle_log_entries_per_min: idle,
        machine: crate::failover::machine(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    fs::write(dir.join("report.json"), json + "\n")?;
    drop(site);
    Ok(report)
}

/// Writes `nemesis-MODE.json` and `.md` into `out_dir`.
pub fn write(report: &NemesisReport, out_dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(out_dir)?;
    let name = match report.mode {
        Mode::ActiveActive => "nemesis-active-active",
        Mode::ActivePassive => "nemesis-active-passive",
    };
    fs::write(
        out_dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    fs::write(out_dir.join(format!("{name}.md")), markdown(report))?;
    Ok(())
}

/// The report as markdown: figures, faults by kind, findings.
pub fn markdown(r: &NemesisReport) -> String {
    let f = &r.figures;
    let mut s = format!(
        "## Nemesis, {}\n\nSeed {}, {} s of faults ({}), partitions {}. Machine: {}.\n\n\
         | Figure | Value |\n|---|---|\n\
         | uploads acknowledged / failed / unknown | {} / {} / {} |\n\
         | failed or unknown attempts | {:.1} % |\n\
         | failed logins | {} |\n\
         | longest time between acknowledged uploads | {:.1} s |\n\
         | longest time without a ready primary | {:.1} s |\n\
         | schedule slots fired | {} |\n\
         | faults followed by 3 s or more without a primary or writes | {} of {} |\n",
        match r.mode {
            Mode::ActiveActive => "active/active (3 servers)",
            Mode::ActivePassive => "active/passive (2 servers + witness)",
        },
        r.seed,
        r.seconds,
        r.fault_counts()
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        if r.real_partitions {
            "real (network namespaces, blackhole routes)"
        } else {
            "replaced by SIGSTOP"
        },
        r.machine,
        f.uploads_ok,
        f.uploads_failed,
        f.uploads_unknown,
        f.failed_attempts_pct,
        f.logins_failed,
        f.longest_write_outage_ms as f64 / 1000.0,
        f.longest_without_primary_ms as f64 / 1000.0,
        f.slots_fired,
        f.outages_over_3s,
        f.outages.len(),
    );
    if let Some(idle) = r.idle_log_entries_per_min {
        s.push_str(&format!(
            "| Raft log entries per idle minute (schedule every 2 s) | {idle:.0} |\n"
        ));
    }
    s.push_str("\n| Must be 0 | Count | Examples |\n|---|---|---|\n");
    for (name, finding) in r.findings.all() {
        s.push_str(&format!(
            "| {name} | {} | {} |\n",
            finding.count,
            finding.examples.join("; ").replace('|', "/")
        ));
    }
    s.push_str(
        "\n| Fault | Held | Without a ready primary | Without an acknowledged upload |\n\
         |---|---|---|---|\n",
    );
    for (fault, outage) in r.faults.iter().zip(&f.outages) {
        s.push_str(&format!(
            "| {:.1} s {} {} | {:.1} s | {:.1} s | {:.1} s |\n",
            fault.at_s,
            fault.kind,
            fault.target,
            fault.held_ms as f64 / 1000.0,
            outage.without_primary_ms as f64 / 1000.0,
            outage.without_writes_ms as f64 / 1000.0
        ));
    }
    s
}

impl Site {
    fn create(ferry: &Path, mode: Mode, dir: &Path, net: Net) -> anyhow::Result<Self> {
        let names = mode.servers();
        let pki = dir.join("pki");
        let p = pki.to_string_lossy().into_owned();
        ferry_ok(ferry, &["pki", "init", "--dir", &p])?;
        for (n, name) in names.iter().enumerate() {
            let ip = net.server_ip(n).to_string();
            ferry_ok(
                ferry,
                &[
                    "pki", "issue", "--dir", &p, "--role", "server", "--san", &ip, name,
                ],
            )?;
        }
        let edge_names: Vec<String> = std::iter::once("edge".to_owned())
            .chain(
                names
                    .iter()
                    .filter(|n| !n.starts_with('w'))
                    .map(|n| format!("edge-{n}")),
            )
            .collect();
        for e in &edge_names {
            ferry_ok(ferry, &["pki", "issue", "--dir", &p, "--role", "edge", e])?;
        }
        write_private(&dir.join("admin.token"), &format!("{TOKEN}\n"))?;
        write_private(&dir.join("secret.key"), &format!("{}\n", "6e".repeat(32)))?;
        fs::create_dir_all(dir.join("repository"))?;
        ferry_ok(
            ferry,
            &[
                "pki",
                "issue",
                "--dir",
                &p,
                "--role",
                "https",
                "--san",
                "127.0.0.1",
                "edge-https",
            ],
        )?;
        let ssh_key = dir.join("edge_host_key");
        let internal: Vec<u16> = names
            .iter()
            .map(|_| free_port())
            .collect::<Result<_, _>>()?;
        let mut servers = Vec::new();
        for (n, name) in names.iter().enumerate() {
            let ip = net.server_ip(n);
            let node = dir.join(name);
            fs::create_dir_all(node.join("sync"))?;
            let mut peers = String::new();
            for (m, other) in names.iter().enumerate().filter(|(m, _)| *m != n) {
                peers.push_str(&format!(
                    "[[cluster.peers]]\nid = \"{other}\"\naddress = \"{}:{}\"\n",
                    net.server_ip(m),
                    internal[m]
                ));
                if mode == Mode::ActivePassive {
                    peers.push_str(&format!("witness = {}\n", other.starts_with('w')));
                }
            }
            let cluster = match mode {
                Mode::ActiveActive => format!(
                    "mode = \"active-active\"\nadvertise = \"{ip}:{}\"\nsnapshot_every = 500\n",
                    internal[n]
                ),
                Mode::ActivePassive => {
                    fs::write(node.join("sync/sync.conf"), "sync/*\n")?;
                    fs::write(
                        node.join("sync/sync_tables.conf"),
                        "accounts\naccount_keys\npartners\nroutes\nschedules\nmonitors\n",
                    )?;
                    fs::write(node.join("sync/sync.excl"), "transfers\n")?;
                    format!(
                        "mode = \"active-passive\"\npriority = {}\nheartbeat_ms = 250\n\
                         failover_after_ms = 1500\n",
                        if n == 0 { 100 } else { 99 }
                    )
                }
            };
            let config = node.join("server.toml");
            fs::write(
                &config,
                format!(
                    "node_id = \"{name}\"\nstate_dir = \"state\"\nrepository = \"../repository\"\n\
                     [internal]\nlisten = \"{ip}:{port}\"\nca = \"../pki/ca.crt\"\n\
                     cert = \"../pki/{name}.crt\"\nkey = \"../pki/{name}.key\"\n\
                     [admin]\nlisten = \"{ip}:{admin}\"\ntoken_file = \"../admin.token\"\n\
                     [engine]\nsecret_key_file = \"../secret.key\"\nlease_secs = 6\n\
                     [cluster]\n{cluster}{peers}",
                    port = internal[n],
                    admin = free_port()?,
                ),
            )?;
            servers.push(Server {
                name,
                config,
                witness: name.starts_with('w'),
                daemon: None,
                admin: String::new(),
                starts: 0,
                stopped: false,
            });
        }
        let upstream = |n: usize| format!("\"{}:{}\"", net.server_ip(n), internal[n]);
        let serving: Vec<usize> = (0..names.len())
            .filter(|&n| !names[n].starts_with('w'))
            .collect();
        let edge_config = |name: &str, ups: &[usize]| -> anyhow::Result<Edge> {
            let port = free_port()?;
            let config = dir.join(format!("{name}.toml"));
            let list: Vec<String> = ups.iter().map(|&n| upstream(n)).collect();
            fs::write(
                &config,
                format!(
                    "node_id = \"{name}\"\n[sftp]\nlisten = \"127.0.0.1:{port}\"\n\
                     host_key = \"{}\"\nauth_failure_delay_ms = 100\n\
                     [https]\nlisten = \"127.0.0.1:0\"\ncert = \"pki/edge-https.crt\"\n\
                     key = \"pki/edge-https.key\"\n\
                     [upstream]\nservers = [{}]\nca = \"pki/ca.crt\"\n\
                     cert = \"pki/{name}.crt\"\nkey = \"pki/{name}.key\"\n",
                    ssh_key.display(),
                    list.join(", ")
                ),
            )?;
            Ok(Edge {
                name: name.to_owned(),
                config,
                port,
                daemon: None,
                starts: 0,
            })
        };
        let edge = edge_config("edge", &serving)?;
        let pinned = serving
            .iter()
            .map(|&n| edge_config(&format!("edge-{}", names[n]), &[n]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Site {
            ferry: ferry.to_path_buf(),
            mode,
            dir: dir.to_path_buf(),
            net,
            servers,
            edge,
            pinned,
            started: Instant::now(),
        })
    }

    /// Starts every server and edge and forms the cluster.
    fn form(&mut self) -> anyhow::Result<()> {
        // Active/passive: s1 and the witness first, so s1 is active.
        let order: Vec<usize> = match self.mode {
            Mode::ActiveActive => (0..self.servers.len()).collect(),
            Mode::ActivePassive => vec![0, 2, 1],
        };
        for n in order {
            self.start_server(n)?;
            if self.mode == Mode::ActivePassive && n == 2 {
                self.wait_for(Duration::from_secs(30), "s1 active", |s| {
                    s.role(0).is_some_and(|r| r.0 && r.1)
                })?;
            }
        }
        if self.mode == Mode::ActiveActive {
            self.admin(0, &["cluster", "init"], None)?;
        }
        self.wait_stable(Duration::from_secs(60))?;
        start_edge(&self.ferry, &self.dir, &mut self.edge)?;
        for e in &mut self.pinned {
            start_edge(&self.ferry, &self.dir, e)?;
        }
        Ok(())
    }

    /// Accounts alice (uploads), bob (route target) and carol (the
    /// disabled-account probes), the route alice → bob, an unreachable
    /// partner and a schedule pulling from it every 2 s.
    fn setup_workload(&mut self) -> anyhow::Result<()> {
        let p = self.primary().context("no primary after forming")?;
        for name in ["alice", "bob", "carol"] {
            self.admin(
                p,
                &["account", "add", name, "--password-stdin"],
                Some(PASSWORD),
            )?;
        }
        self.admin(
            p,
            &[
                "route",
                "add",
                "fanout",
                "--account",
                "alice",
                "--match",
                "*.dat",
                "--action",
                "copy:bob/in",
                "--max-attempts",
                "20",
                "--retry-base-ms",
                "250",
            ],
            None,
        )?;
        let pw = self.dir.join("partner.pw");
        fs::write(&pw, "partner-password\n")?;
        let host_key = self.dir.join("partner_host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .stdin(Stdio::null())
            .output()
            .context("run ssh-keygen")?;
        if !out.status.success() {
            bail!("ssh-keygen failed");
        }
        let port = free_port()?.to_string();
        self.admin(
            p,
            &[
                "partner",
                "add",
                "nobody",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--user",
                "x",
                "--password-file",
                &pw.to_string_lossy(),
                "--host-key-file",
                &host_key.with_extension("pub").to_string_lossy(),
            ],
            None,
        )?;
        self.admin(
            p,
            &[
                "schedule",
                "add",
                "tick",
                "--cron",
                "*/2 * * * * *",
                "--action",
                "pull:nobody:*.txt:alice/in",
                "--max-attempts",
                "1",
            ],
            None,
        )?;
        if self.mode == Mode::ActivePassive {
            self.admin(p, &["sync"], None)?;
        }
        Ok(())
    }

    fn start_server(&mut self, n: usize) -> anyhow::Result<()> {
        let s = &mut self.servers[n];
        s.starts += 1;
        let mut cmd = self.net.command(n, &self.ferry);
        cmd.arg("server").arg("--config").arg(&s.config);
        if s.witness {
            cmd.arg("--witness");
        }
        let log = self.dir.join(format!("{}.{}.log", s.name, s.starts));
        let (daemon, values) =
            Daemon::start_reporting(&format!("ferry server {}", s.name), cmd, &log, &["admin"])?;
        s.admin = values.into_iter().next().context("no admin address")?;
        s.daemon = Some(daemon);
        s.stopped = false;
        Ok(())
    }

    fn signal(&mut self, n: usize, sig: &str) -> anyhow::Result<()> {
        let pid = self.servers[n]
            .daemon
            .as_ref()
            .map(Daemon::pid)
            .context("signal to a server that is not running")?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {pid} failed");
        }
        self.servers[n].stopped = sig == "-STOP";
        Ok(())
    }

    fn kill(&mut self, n: usize) -> anyhow::Result<()> {
        if self.servers[n].stopped {
            self.signal(n, "-CONT")?;
        }
        self.signal(n, "-KILL")?;
        // Reaps it: the Drop of a dead child returns at once.
        self.servers[n].daemon = None;
        Ok(())
    }

    /// (primary, ready) of server `n`, if it answers within 0.5 s.
    fn role(&self, n: usize) -> Option<(bool, bool)> {
        let s = &self.servers[n];
        if s.daemon.is_none() || s.stopped {
            return None;
        }
        let v = server_role(&self.dir.join("pki/ca.crt"), &s.admin, ROLE_LIMIT)?;
        Some(primary_of(self.mode, &v))
    }

    /// The ready primary, if exactly one server is.
    fn primary(&self) -> Option<usize> {
        let p: Vec<usize> = (0..self.servers.len())
            .filter(|&n| !self.servers[n].witness)
            .filter(|&n| self.role(n).is_some_and(|(p, r)| p && r))
            .collect();
        (p.len() == 1).then(|| p[0])
    }

    fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut ok: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if ok(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "waited {} s for {what}; logs in {}",
            limit.as_secs(),
            self.dir.display()
        )
    }

    /// One ready primary, and (active/active) every server ready.
    fn wait_stable(&self, limit: Duration) -> anyhow::Result<()> {
        self.wait_for(limit, "one ready primary and every server ready", |s| {
            s.primary().is_some()
                && (s.mode == Mode::ActivePassive
                    || (0..s.servers.len()).all(|n| s.role(n).is_some_and(|r| r.1)))
        })
    }

    /// Runs `ferry ARGS` against server `n`'s admin API (stdin: `input`).
    fn admin(&self, n: usize, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
        let out = self.admin_raw(n, args, input)?;
        if !out.0 {
            bail!(
                "ferry {} on {}: {}",
                args.join(" "),
                self.servers[n].name,
                out.1
            );
        }
        Ok(out.1)
    }

    /// (success, stdout or stderr) of `ferry ARGS` against server `n`.
    fn admin_raw(
        &self,
        n: usize,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<(bool, String)> {
        let mut cmd = Command::new(&self.ferry);
        cmd.args(args)
            .arg("--admin")
            .arg(&self.servers[n].admin)
            .arg("--token-file")
            .arg(self.dir.join("admin.token"))
            .arg("--ca-file")
            .arg(self.dir.join("pki/ca.crt"));
        bounded(cmd, input, ADMIN_LIMIT)
    }

    /// One seeded fault, held and healed; returns what it was.
    fn inject(&mut self, rng: &mut StdRng, t0: Instant) -> anyhow::Result<Fault> {
        let serving: Vec<usize> = (0..self.servers.len())
            .filter(|&n| !self.servers[n].witness)
            .collect();
        let primary = self.primary();
        let random = serving[rng.random_range(0..serving.len())];
        let leader = primary.unwrap_or(random);
        let kinds: &[&str] = match self.mode {
            Mode::ActiveActive => &[
                "kill-primary",
                "kill-any",
                "stop-any",
                "partition-primary",
                "partition-any",
                "kill-edge",
            ],
            Mode::ActivePassive => &[
                "kill-primary",
                "stop-primary",
                "partition-primary",
                "kill-any",
                "kill-edge",
                "promote-standby",
                "sync",
            ],
        };
        let mut kind = kinds[rng.random_range(0..kinds.len())].to_owned();
        if kind.starts_with("partition") && !self.net.real() {
            kind = kind.replace("partition", "stop");
        }
        let target = match kind.as_str() {
            "kill-primary" | "stop-primary" | "partition-primary" => leader,
            "promote-standby" => serving.iter().copied().find(|&n| n != leader).unwrap_or(0),
            _ => random,
        };
        let at_s = t0.elapsed().as_secs_f64();
        let at_ms = now_ms();
        let held = Duration::from_millis(rng.random_range(1000..5000));
        let started = Instant::now();
        let name = self.servers[target].name.to_owned();
        let target_name = match kind.as_str() {
            "kill-edge" => self.edge.name.clone(),
            "sync" => format!("from {}", self.servers[leader].name),
            _ => name,
        };
        match kind.as_str() {
            "kill-primary" | "kill-any" => {
                self.kill(target)?;
                std::thread::sleep(held);
                self.start_server(target)?;
            }
            "stop-primary" | "stop-any" => {
                self.signal(target, "-STOP")?;
                std::thread::sleep(held);
                self.signal(target, "-CONT")?;
            }
            "partition-primary" | "partition-any" => {
                self.net.isolate(target, true)?;
                std::thread::sleep(held);
                self.net.isolate(target, false)?;
            }
            "kill-edge" => {
                if let Some(d) = &self.edge.daemon {
                    let _ = Command::new("kill")
                        .args(["-KILL", &d.pid().to_string()])
                        .status();
                }
                self.edge.daemon = None;
                start_edge(&self.ferry, &self.dir, &mut self.edge)?;
            }
            "promote-standby" => {
                // The operator's switch-over: the standby asks for votes.
                let _ = self.admin_raw(target, &["cluster", "promote"], None)?;
            }
            "sync" => {
                let _ = self.admin_raw(leader, &["sync"], None)?;
            }
            other => bail!("unknown fault {other}"),
        }
        Ok(Fault {
            at_s: (at_s * 10.0).round() / 10.0,
            at_ms,
            kind,
            target: target_name,
            held_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Heals every fault still standing: partitions, stopped and killed
    /// servers, the edge.
    fn heal_all(&mut self) -> anyhow::Result<()> {
        for n in 0..self.servers.len() {
            if self.net.real() {
                // Only what `inject` left behind would be there; a route
                // that is not there is not an error worth stopping for.
                let _ = self.net.isolate(n, false);
            }
            if self.servers[n].stopped {
                self.signal(n, "-CONT")?;
            }
            if self.servers[n].daemon.is_none() {
                self.start_server(n)?;
            }
        }
        if self.edge.daemon.is_none() {
            start_edge(&self.ferry, &self.dir, &mut self.edge)?;
        }
        Ok(())
    }

    /// Enables carol, disables her through the primary (and, active/
    /// passive, syncs the standby as an operator would), then tries her
    /// login one second later through each server's own edge.
    fn disabled_probe(&mut self, rng: &mut StdRng) -> anyhow::Result<Vec<DisabledProbe>> {
        let Some(p) = self.primary() else {
            return Ok(Vec::new());
        };
        let key = format!("probe-{}", rng.random::<u64>());
        let enabled = self.admin_raw(p, &["account", "enable", "carol"], None)?;
        let disabled = self.admin_raw(
            p,
            &["account", "disable", "carol", "--idempotency-key", &key],
            None,
        )?;
        if !enabled.0 || !disabled.0 {
            // A fault hit the change; no claim to check.
            return Ok(Vec::new());
        }
        if self.mode == Mode::ActivePassive && !self.admin_raw(p, &["sync"], None)?.0 {
            return Ok(Vec::new());
        }
        std::thread::sleep(Duration::from_secs(1));
        let client = self.dir.join("nemesis_client.py");
        let mut probes = Vec::new();
        for (i, edge) in self.pinned.iter().enumerate() {
            let mut cmd = Command::new("python3");
            cmd.arg(&client)
                .args(["login", &edge.port.to_string(), "carol", PASSWORD]);
            let (_, text) = bounded(cmd, None, Duration::from_secs(40))?;
            let server = self.pinned_server(i);
            let accepted = text.trim() == "accepted";
            if accepted {
                eprintln!("nemesis: disabled carol logged in through {server}!");
            }
            probes.push(DisabledProbe {
                at_ms: now_ms(),
                server,
                accepted,
            });
        }
        Ok(probes)
    }

    fn pinned_server(&self, i: usize) -> String {
        self.servers
            .iter()
            .filter(|s| !s.witness)
            .nth(i)
            .map_or_else(String::new, |s| s.name.to_owned())
    }

    /// Waits until no route event is pending or running on the primary.
    fn wait_events_settled(&self, limit: Duration) -> anyhow::Result<()> {
        self.wait_for(limit, "every route event to finish", |s| {
            let Some(p) = s.primary() else {
                return false;
            };
            ["pending", "running"].iter().all(|status| {
                s.admin(
                    p,
                    &[
                        "event",
                        "list",
                        "--json",
                        "--status",
                        status,
                        "--account",
                        "alice",
                    ],
                    None,
                )
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
            })
        })
    }

    /// Raft log entries per minute while nobody uses the cluster.
    fn idle_log_growth(&self, watch: Duration) -> anyhow::Result<f64> {
        let p = self.primary().context("no primary to watch")?;
        let index = |s: &Self| -> anyhow::Result<u64> {
            let v: serde_json::Value =
                serde_json::from_str(&s.admin(p, &["cluster", "status", "--json"], None)?)?;
            v["members"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == s.servers[p].name))
                .and_then(|m| m["last_log_index"].as_u64())
                .context("no last_log_index in cluster status")
        };
        let before = index(self)?;
        std::thread::sleep(watch);
        let after = index(self)?;
        Ok((after.saturating_sub(before)) as f64 * 60.0 / watch.as_secs_f64().max(1.0))
    }

    /// Every server's transfers, events and firings, once all agree or
    /// after 30 s (the checker reports what still differs). The schedule
    /// keeps firing: firings (and their events) of the last 5 s are left
    /// out, as one server may have applied a slot the next one has not yet.
    /// Returns the states and the time before which they are complete.
    fn dump_all(&self) -> anyhow::Result<(Vec<ServerState>, i64)> {
        let serving: Vec<usize> = (0..self.servers.len())
            .filter(|&n| !self.servers[n].witness)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cut = now_ms() - 5000;
            let mut states = serving
                .iter()
                .map(|&n| self.dump(n))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for s in &mut states {
                s.firings.retain(|f| f.slot < cut);
                s.events.retain(|e| e.slot.is_none_or(|slot| slot < cut));
            }
            let same = states.windows(2).all(|w| {
                w[0].transfers == w[1].transfers
                    && w[0].events == w[1].events
                    && w[0].firings == w[1].firings
            });
            if same || Instant::now() > deadline {
                return Ok((states, cut));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn dump(&self, n: usize) -> anyhow::Result<ServerState> {
        let list = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
            Ok(serde_json::from_str(&self.admin(n, args, None)?)?)
        };
        let mut transfers: Vec<check::Row> =
            serde_json::from_value(list(&["transfer", "list", "--json", "--limit", "1000000"])?)?;
        transfers.sort();
        let mut events: Vec<check::EventRow> = serde_json::from_value(list(&[
            "event",
            "list",
            "--json",
            "--limit",
            "1000000",
            "--account",
            "alice",
        ])?)?;
        events.sort();
        let mut firings: Vec<check::Firing> =
            serde_json::from_value(list(&["schedule", "firings", "tick", "--json"])?)?;
        firings.sort();
        Ok(ServerState {
            name: self.servers[n].name.to_owned(),
            transfers,
            events,
            firings,
        })
    }
}

impl Drop for Site {
    /// Stops every process before the network goes (a namespace with a
    /// process in it outlives its name, and so does its link).
    fn drop(&mut self) {
        for s in &mut self.servers {
            if s.stopped {
                if let Some(d) = &s.daemon {
                    let _ = Command::new("kill")
                        .args(["-CONT", &d.pid().to_string()])
                        .status();
                }
            }
            s.daemon = None;
        }
        self.edge.daemon = None;
        for e in &mut self.pinned {
            e.daemon = None;
        }
        eprintln!(
            "nemesis: stopping after {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn start_edge(ferry: &Path, dir: &Path, edge: &mut Edge) -> anyhow::Result<()> {
    edge.starts += 1;
    let mut cmd = Command::new(ferry);
    cmd.arg("edge")
        .arg("--config")
        .arg(&edge.config)
        .current_dir(dir);
    let log = dir.join(format!("{}.{}.log", edge.name, edge.starts));
    edge.daemon = Some(Daemon::start_listening(
        &format!("ferry edge {}", edge.name),
        cmd,
        &log,
        edge.port,
    )?);
    Ok(())
}

/// (primary, ready) from a `/role` answer of either mode.
fn primary_of(mode: Mode, v: &serde_json::Value) -> (bool, bool) {
    let ready = v["ready"] == true;
    match mode {
        Mode::ActiveActive => (v["primary"] == true, ready),
        Mode::ActivePassive => (v["role"] == "active", ready),
    }
}

/// Polls every server's `/role` at once every [`ROLE_POLL`] until told to
/// stop; a server that does not answer within 0.5 s counts as neither
/// primary nor ready.
fn poll_roles(
    ca: &Path,
    targets: &[(String, String)],
    mode: Mode,
    out: &Mutex<Vec<RoleSample>>,
    polling: &AtomicBool,
) {
    while polling.load(Ordering::SeqCst) {
        let at = now_ms();
        let round: Vec<RoleSample> = std::thread::scope(|s| {
            let handles: Vec<_> = targets
                .iter()
                .map(|(name, admin)| {
                    s.spawn(move || {
                        let (primary, ready) = server_role(ca, admin, ROLE_LIMIT)
                            .map_or((false, false), |v| primary_of(mode, &v));
                        RoleSample {
                            at_ms: at,
                            server: name.clone(),
                            primary,
                            ready,
                        }
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        out.lock().unwrap_or_else(|e| e.into_inner()).extend(round);
        std::thread::sleep(ROLE_POLL);
    }
}

/// How long a `/role` poll may take: a cut-off server must not stretch a
/// poll round, as the rounds measure the outages.
const ROLE_LIMIT: &str = "0.5";

/// Runs `cmd` with `input` on stdin for at most `limit`: (exit success,
/// stdout, or stderr when it failed). A command past its limit is killed
/// and counts as failed.
fn bounded(
    mut cmd: Command,
    input: Option<&str>,
    limit: Duration,
) -> anyhow::Result<(bool, String)> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("start a command")?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(text) = input {
            let _ = writeln!(stdin, "{text}");
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut o);
        let _ = std::io::Read::read_to_string(&mut stderr, &mut e);
        let _ = tx.send((o, e));
    });
    let ok = wait_child(&mut child, limit);
    let (o, e) = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Ok(match ok {
        Some(true) => (true, o),
        Some(false) => (false, format!("{}{}", e.trim(), o.trim())),
        None => (false, format!("no answer within {} s", limit.as_secs())),
    })
}

/// Waits for `child` at most `limit` (then kills it): Some(success), or
/// None when it had to be killed.
fn wait_child(child: &mut Child, limit: Duration) -> Option<bool> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.success()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Regular files directly in `dir` (not hidden): name → SHA-256.
fn files_of(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    use sha2::Digest;
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(files);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        let data = fs::read(entry.path())?;
        files.insert(name, hex::encode(sha2::Sha256::digest(&data)));
    }
    Ok(files)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
