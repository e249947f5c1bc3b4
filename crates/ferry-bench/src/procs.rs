//! Processes the benchmark starts and measures: foreground children that are
//! killed when dropped, commands with a deadline, memory of a process tree.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process that is killed (and reaped) when dropped.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Spawns `cmd` (stdout piped, stderr to `log`) and waits until it has
    /// printed a line containing each of `keys` as `key: value`; returns the
    /// values in order.
    pub fn start_reporting(
        name: &str,
        mut cmd: Command,
        log: &Path,
        keys: &[&str],
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let err = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().with_context(|| format!("start {name}"))?;
        let stdout = child.stdout.take().context("stdout of child")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut values: Vec<Option<String>> = vec![None; keys.len()];
        while values.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                bail!(
                    "{name} did not start (no {keys:?} on stdout); its log: {}\n{}",
                    log.display(),
                    fs::read_to_string(log).unwrap_or_default()
                );
            };
            for (i, key) in keys.iter().enumerate() {
                if let Some(v) = line.trim().strip_prefix(&format!("{key}: ")) {
                    values[i].get_or_insert_with(|| v.trim().to_owned());
                }
            }
        }
        Ok((daemon, values.into_iter().flatten().collect()))
    }

    /// Spawns `cmd` with output to `log` and waits until `port` on 127.0.0.1
    /// accepts connections.
    pub fn start_listening(
        name: &str,
        mut cmd: Command,
        log: &Path,
        port: u16,
    ) -> anyhow::Result<Self> {
        let out = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        let mut daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                bail!(
                    "{name} exited ({status}); its log:\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("{name} is not listening on port {port} after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    /// SIGTERM first, so a master process (nginx) stops its workers too;
    /// SIGKILL if it has not gone within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for programs that cannot
/// be told to pick their own).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `cmd` to completion within `limit`, with stdin closed; fails with its
/// stderr when it exits unsuccessfully or takes too long.
pub fn run(what: &str, mut cmd: Command, limit: Duration) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("start {what}"))?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} took longer than {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(output)
}

/// Writes `text` to a new file only its owner can read (tokens, keys).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?
        .write_all(text.as_bytes())?;
    Ok(())
}

/// `GET ADMIN/role` of a server with curl (verified with `ca`, at most
/// `max_secs`, e.g. "1" or "0.5"), parsed; `None` when it does not answer.
pub fn server_role(ca: &Path, admin: &str, max_secs: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", max_secs, "--cacert"])
        .arg(ca)
        .arg(format!("{admin}/role"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Runs `ferry ARGS` (a setup command: `pki`, `cluster init`) within 30 s.
pub fn ferry_ok(ferry: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(ferry);
    cmd.args(args);
    run(
        &format!("ferry {}", args.join(" ")),
        cmd,
        Duration::from_secs(30),
    )
}

/// The first line of what `program args` prints (stdout, else stderr) that
/// contains `marker`, or the first line; "unknown" when it cannot run.
pub fn version_line(program: &str, args: &[&str], marker: &str) -> String {
    let Ok(out) = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    else {
        return "not found".to_owned();
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.contains(marker))
        .or(lines.first())
        .map(|l| (*l).to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Proportional set size of `pid` and all its descendants, in KiB (shared
/// pages are divided among the processes that share them, so forked
/// children are not counted twice). Falls back to RSS where the kernel does
/// not offer `smaps_rollup`.
pub fn tree_pss_kib(pid: u32) -> u64 {
    let mut total = 0;
    for p in descendants(pid) {
        total += pss_kib(p);
    }
    total
}

fn pss_kib(pid: u32) -> u64 {
    let field = |file: &str, name: &str| -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    field("smaps_rollup", "Pss:")
        .or_else(|| field("status", "VmRSS:"))
        .unwrap_or(0)
}

/// `pid` and every process below it.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ..." — comm may contain spaces, so start after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}
