//! Active/active failover time: three `ferry server` processes form a Raft
//! group on loopback with the default timeouts; the primary (the Raft
//! leader, which runs the scheduler and folder monitors) is killed with
//! SIGKILL, and the time until another server reports itself primary on
//! `GET /role` is the failover time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::procs::{ferry_ok, free_port, server_role, write_private, Daemon};

/// The goal: another server is primary within 2 s of the leader's crash.
pub const GOAL_MS: f64 = 2000.0;
/// Ferry's default `[cluster] election_timeout_ms` (a follower waits this
/// long, up to twice as long at random, before it asks for votes).
pub const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 600;
/// Ferry's default Raft heartbeat interval in active/active mode.
pub const DEFAULT_HEARTBEAT_MS: u64 = 150;

const NAMES: [&str; 3] = ["s1", "s2", "s3"];
const TOKEN: &str = "bench-failover-token-0123456789abcdef";
/// How often each surviving server's `/role` is asked while waiting.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for a new primary before the run counts as failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster must show one primary (and every server ready)
/// before the next run.
const STABLE_FOR: Duration = Duration::from_secs(2);

/// Failover times of one benchmark run, and what they were measured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// Every run: ms from the SIGKILL of the primary until another server
    /// answered `/role` with `"primary": true`.
    pub runs_ms: Vec<f64>,
    /// Median of `runs_ms`.
    pub median_ms: f64,
    /// The goal the median is held against (2000 ms).
    pub goal_ms: f64,
    /// `median_ms < goal_ms`.
    pub met: bool,
    /// `[cluster] election_timeout_ms` of the servers (the default).
    pub election_timeout_ms: u64,
    /// Raft heartbeat interval of the servers (the default).
    pub heartbeat_ms: u64,
    /// "N cores · CPU model", from /proc.
    pub machine: String,
}

/// One server of the group.
struct Node {
    name: &'static str,
    config: PathBuf,
    daemon: Option<Daemon>,
    /// `https://127.0.0.1:PORT` of its admin API (a new port every start).
    admin: String,
    starts: usize,
}

/// The three servers and what they share.
struct Cluster<'a> {
    ferry: &'a Path,
    dir: PathBuf,
    ca: PathBuf,
    nodes: Vec<Node>,
}

/// Sets up three active/active servers in `work/failover/`, forms the
/// group and measures `runs` failovers (see the module documentation).
/// After each run the killed server is started again and the group must be
/// stable (one primary, all ready) for 2 s before the next.
pub fn measure(ferry: &Path, work: &Path, runs: usize) -> anyhow::Result<FailoverReport> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = work.join("failover");
    if dir.exists() {
        // Left over from an earlier run with the same --work: its Raft
        // state would refuse `cluster init`.
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let mut cluster = Cluster::create(ferry, &dir)?;
    for i in 0..NAMES.len() {
        cluster.start(i)?;
    }
    cluster.init()?;
    cluster.wait_stable(Duration::from_secs(30))?;

    let mut runs_ms = Vec::with_capacity(runs);
    for r in 0..runs {
        let (ms, old, new) = cluster.failover_once()?;
        eprintln!(
            "ferry-bench: failover {}/{runs}: {} killed, {} primary after {ms:.0} ms",
            r + 1,
            cluster.nodes[old].name,
            cluster.nodes[new].name
        );
        runs_ms.push(ms);
        cluster.start(old)?;
        cluster.wait_stable(Duration::from_secs(60))?;
    }
    let median_ms = median(&runs_ms);
    Ok(FailoverReport {
        runs_ms,
        median_ms,
        goal_ms: GOAL_MS,
        met: median_ms < GOAL_MS,
        election_timeout_ms: DEFAULT_ELECTION_TIMEOUT_MS,
        heartbeat_ms: DEFAULT_HEARTBEAT_MS,
        machine: machine(),
    })
}

/// Writes `failover.json` and `failover.md` into `out_dir` (created if
/// needed).
pub fn write(report: &FailoverReport, out_dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    fs::write(out_dir.join("failover.json"), json + "\n")?;
    fs::write(out_dir.join("failover.md"), markdown(report))?;
    Ok(())
}

/// The report as a small markdown table with a line on the method.
pub fn markdown(report: &FailoverReport) -> String {
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{ms:.0}")).collect();
    let (lo, hi) = report
        .runs_ms
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    format!(
        "## Active/active failover\n\n\
         | Runs (ms) | Median | Range | Goal | Met |\n\
         |---|---|---|---|---|\n\
         | {} | {:.0} ms | {:.0}–{:.0} ms | < {:.0} s | {} |\n\n\
         Three `ferry server` processes in one Raft group on loopback (heartbeat {} ms, \
         election timeout {}–{} ms, the defaults); the primary is killed with SIGKILL and \
         `GET /role` of the two others is polled every {} ms until one reports \
         `\"primary\": true` (it starts the scheduler and folder monitors in the same step). \
         Machine: {}.\n",
        runs.join(", "),
        report.median_ms,
        lo,
        hi,
        report.goal_ms / 1000.0,
        if report.met { "✓" } else { "✗" },
        report.heartbeat_ms,
        report.election_timeout_ms,
        report.election_timeout_ms * 7 / 6,
        POLL.as_millis(),
        report.machine,
    )
}

impl<'a> Cluster<'a> {
    /// PKI, token, secret key and one config per server in `dir`.
    fn create(ferry: &'a Path, dir: &Path) -> anyhow::Result<Self> {
        let pki = dir.join("pki");
        let p = pki.to_string_lossy().into_owned();
        ferry_ok(ferry, &["pki", "init", "--dir", &p])?;
        for name in NAMES {
            ferry_ok(
                ferry,
                &[
                    "pki",
                    "issue",
                    "--dir",
                    &p,
                    "--role",
                    "server",
                    "--san",
                    "127.0.0.1",
                    name,
                ],
            )?;
        }
        write_private(&dir.join("admin.token"), &format!("{TOKEN}\n"))?;
        write_private(&dir.join("secret.key"), &format!("{}\n", "5a".repeat(32)))?;
        fs::create_dir_all(dir.join("repository"))?;
        let ports = NAMES
            .iter()
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let mut nodes = Vec::new();
        for (i, name) in NAMES.into_iter().enumerate() {
            let node_dir = dir.join(name);
            fs::create_dir_all(&node_dir)?;
            let mut peers = String::new();
            for (j, other) in NAMES.iter().enumerate() {
                if i != j {
                    peers.push_str(&format!(
                        "[[cluster.peers]]\nid = \"{other}\"\naddress = \"127.0.0.1:{}\"\n",
                        ports[j]
                    ));
                }
            }
            // No heartbeat_ms or election_timeout_ms: the defaults are measured.
            let config = node_dir.join("server.toml");
            fs::write(
                &config,
                format!(
                    "node_id = \"{name}\"\nstate_dir = \"state\"\nrepository = \"../repository\"\n\
                     [internal]\nlisten = \"127.0.0.1:{port}\"\nca = \"../pki/ca.crt\"\n\
                     cert = \"../pki/{name}.crt\"\nkey = \"../pki/{name}.key\"\n\
                     [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"../admin.token\"\n\
                     [engine]\nsecret_key_file = \"../secret.key\"\n\
                     [cluster]\nmode = \"active-active\"\nadvertise = \"127.0.0.1:{port}\"\n\
                     {peers}",
                    port = ports[i]
                ),
            )?;
            nodes.push(Node {
                name,
                config,
                daemon: None,
                admin: String::new(),
                starts: 0,
            });
        }
        Ok(Self {
            ferry,
            dir: dir.to_path_buf(),
            ca: pki.join("ca.crt"),
            nodes,
        })
    }

    /// Starts server `i` (again) with its config; waits for its admin line.
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let mut cmd = Command::new(self.ferry);
        cmd.arg("server").arg("--config").arg(&node.config);
        let log = self.dir.join(format!("{}.{}.log", node.name, node.starts));
        let (daemon, values) = Daemon::start_reporting(
            &format!("ferry server {}", node.name),
            cmd,
            &log,
            &["admin"],
        )?;
        node.admin = values.into_iter().next().context("no admin address")?;
        node.daemon = Some(daemon);
        Ok(())
    }

    /// `ferry cluster init` on s1.
    fn init(&self) -> anyhow::Result<()> {
        let token = self.dir.join("admin.token");
        ferry_ok(
            self.ferry,
            &[
                "cluster",
                "init",
                "--admin",
                &self.nodes[0].admin,
                "--token-file",
                &token.to_string_lossy(),
                "--ca-file",
                &self.ca.to_string_lossy(),
            ],
        )?;
        Ok(())
    }

    /// `/role` of server `i`, if it runs and answers within 1 s.
    fn role(&self, i: usize) -> Option<serde_json::Value> {
        self.nodes[i].daemon.as_ref()?;
        server_role(&self.ca, &self.nodes[i].admin, "1")
    }

    /// Waits until exactly one server is primary and every server is ready
    /// (knows a leader), for [`STABLE_FOR`] in a row.
    fn wait_stable(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut since: Option<Instant> = None;
        let last = loop {
            let roles: Vec<Option<serde_json::Value>> =
                (0..self.nodes.len()).map(|i| self.role(i)).collect();
            let primaries = roles
                .iter()
                .filter(|r| r.as_ref().is_some_and(|r| r["primary"] == true))
                .count();
            let ready = roles
                .iter()
                .all(|r| r.as_ref().is_some_and(|r| r["ready"] == true));
            if primaries == 1 && ready {
                let start = *since.get_or_insert_with(Instant::now);
                if start.elapsed() >= STABLE_FOR {
                    return Ok(());
                }
            } else {
                since = None;
            }
            if Instant::now() > deadline {
                break roles;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let seen: Vec<String> = last
            .iter()
            .zip(&self.nodes)
            .map(|(r, n)| match r {
                Some(r) => format!("{}: {r}", n.name),
                None => format!("{}: no answer", n.name),
            })
            .collect();
        bail!(
            "the cluster did not settle on one primary within {} s ({}); logs in {}",
            limit.as_secs(),
            seen.join("; "),
            self.dir.display()
        )
    }

    /// Kills the primary with SIGKILL and waits for another server to
    /// report itself primary. Returns the ms this took, the killed server
    /// and the new primary.
    fn failover_once(&mut self) -> anyhow::Result<(f64, usize, usize)> {
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.role(i).is_some_and(|r| r["primary"] == true))
            .collect();
        let [old] = primaries[..] else {
            bail!("expected one primary before the kill, found {primaries:?}");
        };
        let pid = self.nodes[old]
            .daemon
            .as_ref()
            .map(Daemon::pid)
            .context("the primary is not running")?;
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != old).collect();

        let killed = Instant::now();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -KILL {pid} failed ({status})");
        }
        // One poller per survivor, so each answer is timed when it arrives.
        let found = AtomicBool::new(false);
        let ca = &self.ca;
        let nodes = &self.nodes;
        let first = std::thread::scope(|s| {
            let handles: Vec<_> = others
                .iter()
                .map(|&i| {
                    let found = &found;
                    s.spawn(move || {
                        let admin = &nodes[i].admin;
                        while !found.load(Ordering::Relaxed) && killed.elapsed() < FAILOVER_LIMIT {
                            if server_role(ca, admin, "1").is_some_and(|r| r["primary"] == true) {
                                let at = killed.elapsed();
                                found.store(true, Ordering::Relaxed);
                                return Some((at, i));
                            }
                            std::thread::sleep(POLL);
                        }
                        None
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .min_by_key(|(at, _)| *at)
        });
        // Reap the killed process (its Drop finds it gone at once).
        self.nodes[old].daemon = None;
        let Some((at, new)) = first else {
            bail!(
                "no server became primary within {} s of killing {}; logs in {}",
                FAILOVER_LIMIT.as_secs(),
                self.nodes[old].name,
                self.dir.display()
            );
        };
        // To 0.1 ms: finer is noise with a 10 ms poll.
        let ms = (at.as_secs_f64() * 10_000.0).round() / 10.0;
        Ok((ms, old, new))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// "2 cores · Intel(R) Xeon(R) CPU @ 2.20GHz".
pub(crate) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = if cores == 1 {
        "1 core".to_owned()
    } else {
        format!("{cores} cores")
    };
    format!("{cores} · {cpu}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn markdown_names_the_figures() {
        let r = FailoverReport {
            runs_ms: vec![900.0, 1100.0, 1000.0],
            median_ms: 1000.0,
            goal_ms: GOAL_MS,
            met: true,
            election_timeout_ms: 600,
            heartbeat_ms: 150,
            machine: "2 cores · test".into(),
        };
        let md = markdown(&r);
        assert!(
            md.contains("| 900, 1100, 1000 | 1000 ms | 900–1100 ms | < 2 s | ✓ |"),
            "{md}"
        );
        assert!(md.contains("600–700 ms"), "{md}");
    }
}
