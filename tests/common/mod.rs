//! Shared harness for end-to-end tests: starts the real `ferry` binary on
//! ephemeral loopback ports and drives it with OpenSSH's `sftp`.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod scenarios;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");
pub const PASSWORD: &str = "correct horse battery staple";
/// OpenSSH options every test client uses: a fresh server, no prompts, quiet.
pub const SSH_TEST_OPTS: [&str; 6] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
];

/// A running ferry process; killed on drop.
pub struct Proc {
    pub child: Child,
    pub lines: Vec<String>,
}

impl Proc {
    /// Starts `ferry ARGS` and waits until stdout has printed every `keys` line
    /// (`  key: value`), returning the values.
    pub fn start(args: &[&str], keys: &[&str]) -> (Self, Vec<String>) {
        Self::start_logging(args, keys, Stdio::inherit())
    }

    /// [`Proc::start`] with the process's log (stderr) going to `log`.
    pub fn start_logging(args: &[&str], keys: &[&str], log: Stdio) -> (Self, Vec<String>) {
        Self::start_bin(Path::new(BIN), args, keys, log)
    }

    /// [`Proc::start_logging`] of the `ferry` binary at `bin` (another
    /// release's, in the upgrade test).
    pub fn start_bin(bin: &Path, args: &[&str], keys: &[&str], log: Stdio) -> (Self, Vec<String>) {
        let mut child = Command::new(bin)
            .args(args)
            .env("FERRY_LOG", "info,openraft=warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn ferry");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the test stops listening, as a supervisor would.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        let mut values = vec![None; keys.len()];
        while values.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    for (i, k) in keys.iter().enumerate() {
                        if let Some(v) = line.trim().strip_prefix(&format!("{k}: ")) {
                            values[i] = Some(v.to_owned());
                        }
                    }
                    lines.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("ferry {args:?} did not start; printed {lines:?}");
                }
            }
        }
        (
            Self { child, lines },
            values.into_iter().map(Option::unwrap).collect(),
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// OpenSSH options (ssh, sftp, scp) for a login with `key` alone, no
/// prompts, host key not checked.
pub fn key_login_opts(key: &Path) -> Vec<String> {
    let mut v: Vec<String> = SSH_TEST_OPTS.iter().map(|s| s.to_string()).collect();
    v.extend(
        [
            "-o",
            "ConnectTimeout=10",
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ]
        .map(String::from),
    );
    v.push(key.to_str().unwrap().to_owned());
    v
}

/// Runs ssh-keygen to make a client key pair in `dir`.
pub fn client_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    key
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn random_file(path: &Path, len: usize) {
    use rand::Rng;
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    std::fs::write(path, data).unwrap();
}

/// A Ferry under test, reachable by SFTP at `sftp_port`, with admin commands
/// run through `admin_args`.
pub struct Ferry {
    pub procs: Vec<Proc>,
    pub dir: tempfile::TempDir,
    pub sftp_port: u16,
    pub admin_args: Vec<String>,
    /// Where account homes live on disk.
    pub repository: PathBuf,
    /// The HTTPS front (`https://127.0.0.1:PORT`), when there is one.
    pub https_url: Option<String>,
    /// The CA that signed the HTTPS front's certificate.
    pub ca: PathBuf,
}

impl Ferry {
    /// `ferry up` on a fresh data directory.
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// `ferry up` on a fresh data directory with extra arguments.
    pub fn up_with(extra: &[&str]) -> Self {
        Self::up_in(tempfile::tempdir().unwrap(), extra, Stdio::inherit())
    }

    /// `ferry up` whose log goes to a file, read back by [`Ferry::log`].
    pub fn up_logged(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("ferry.log")).unwrap();
        Self::up_in(dir, extra, Stdio::from(log))
    }

    /// What [`Ferry::up_logged`] has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ferry.log")).unwrap_or_default()
    }

    fn up_in(dir: tempfile::TempDir, extra: &[&str], log: Stdio) -> Self {
        let data = dir.path().join("data");
        let (proc, sftp_port, https_url) = Self::start_up(&data, extra, log);
        let data_s = data.to_str().unwrap().to_owned();
        Ferry {
            procs: vec![proc],
            sftp_port,
            admin_args: vec!["--data-dir".into(), data_s],
            repository: data.join("repository"),
            https_url: Some(https_url),
            ca: data.join("pki").join("ca.crt"),
            dir,
        }
    }

    /// Kills `ferry up` with SIGKILL (no shutdown of any kind) and starts it
    /// again on the same data directory.
    pub fn kill_and_restart(&mut self, extra: &[&str]) {
        self.kill();
        self.restart(extra);
    }

    /// Kills `ferry up` with SIGKILL, leaving its data directory (to be
    /// changed while it is stopped, then [`Ferry::restart`]ed).
    pub fn kill(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
        self.procs.clear();
    }

    /// Starts `ferry up` again on the data directory of a killed one.
    pub fn restart(&mut self, extra: &[&str]) {
        let data = self.dir.path().join("data");
        // A Ferry::up_logged goes on logging to its file.
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("ferry.log"))
            .map_or_else(|_| Stdio::inherit(), Stdio::from);
        let (proc, sftp_port, https_url) = Self::start_up(&data, extra, log);
        self.procs.push(proc);
        self.sftp_port = sftp_port;
        self.https_url = Some(https_url);
    }

    /// The arguments of `ferry up` on `data` with every listener on an
    /// ephemeral loopback port.
    pub fn up_args(data: &Path) -> Vec<String> {
        [
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--sftp-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--auth-failure-delay-ms",
            "300",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn start_up(data: &Path, extra: &[&str], log: Stdio) -> (Proc, u16, String) {
        let up = Self::up_args(data);
        let mut args: Vec<&str> = up.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let (proc, v) = Proc::start_logging(&args, &["sftp", "admin", "https"], log);
        let sftp_port = v[0].rsplit(':').next().unwrap().parse().unwrap();
        (proc, sftp_port, v[2].clone())
    }

    /// Runs an admin command; returns its output.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_ferry(args, &self.admin_args, stdin)
    }

    pub fn admin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin(args, stdin);
        assert!(
            out.status.success(),
            "ferry {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates an account with [`PASSWORD`].
    pub fn add_account(&self, name: &str) {
        self.admin_ok(
            &["account", "add", name, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// Creates an account with [`PASSWORD`] and a fresh client key; returns the key path.
    pub fn account_with_key(&self, name: &str) -> PathBuf {
        self.add_account(name);
        let key = client_key(self.dir.path(), &format!("{name}_key"));
        let pubkey = key.with_extension("pub");
        self.admin_ok(
            &["account", "key", "add", name, pubkey.to_str().unwrap()],
            None,
        );
        key
    }

    fn ssh_opts(&self) -> Vec<String> {
        SSH_TEST_OPTS
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-o".into(),
                "ConnectTimeout=10".into(),
                "-P".into(),
                self.sftp_port.to_string(),
            ])
            .collect()
    }

    /// Runs an `sftp -b` batch with key authentication, in directory `cwd`.
    pub fn sftp_key(&self, user: &str, key: &Path, batch: &str, cwd: &Path) -> Output {
        sftp_with_key(self.sftp_port, self.dir.path(), user, key, batch, cwd)
    }

    /// Runs OpenSSH `scp` with `args` in `cwd`, logging in with `key`.
    pub fn scp_key(&self, key: &Path, cwd: &Path, args: &[&str]) -> Output {
        Command::new("scp")
            .args(key_login_opts(key))
            .args(["-P", &self.sftp_port.to_string()])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs an `sftp -b` batch with password authentication (via SSH_ASKPASS).
    pub fn sftp_password(&self, user: &str, password: &str, batch: &str) -> Output {
        let file = self.dir.path().join(format!("batch-{}", rand_suffix()));
        std::fs::write(&file, batch).unwrap();
        let askpass = self.dir.path().join(format!("askpass-{}", rand_suffix()));
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        Command::new("sftp")
            .args(self.ssh_opts())
            .args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "BatchMode=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .arg("-b")
            .arg(&file)
            .arg(format!("{user}@127.0.0.1"))
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The transfer log as JSON.
    pub fn transfers(&self) -> Vec<serde_json::Value> {
        let out = self.admin_ok(&["transfer", "list", "--json", "--limit", "1000"], None);
        serde_json::from_str(&out).unwrap()
    }
}

/// A `KiB` figure of `/proc/PID/status`: `VmRSS` (resident now) or `VmHWM`
/// (the peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The JSON a test client printed, once it exited 0 (its stderr otherwise);
/// printed with `what` so that a run shows its figures.
pub fn json_report(out: Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{what}: {r}");
    r
}

/// A time of the admin API's JSON (RFC 3339) as unix milliseconds.
pub fn slot_ms(v: &serde_json::Value) -> i64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().next_u64())
}

pub fn assert_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sftp failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` until it is true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs `ferry ARGS EXTRA` with `stdin` as its input; returns its output.
pub fn run_ferry(args: &[&str], extra: &[String], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    wait_bounded(child, &format!("ferry {args:?}"), RUN_FERRY_BOUND)
}

/// Waits for `child` (its stdin given or closed), reading its output while
/// it runs (more than a pipe holds must not block it); a child that has
/// not ended within `bound` is killed and fails the test instead of
/// hanging it.
pub fn wait_bounded(child: Child, what: &str, bound: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &pid.to_string()])
                .status();
            panic!("{what} did not end within {bound:?} and was killed");
        }
    }
}

/// `ferry ARGS`, bounded at `secs`.
pub fn ferry_bounded(args: &[&str], secs: u64) -> Output {
    ferry_bounded_in(Path::new("."), args, secs)
}

/// [`ferry_bounded`] in the directory `cwd`.
pub fn ferry_bounded_in(cwd: &Path, args: &[&str], secs: u64) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, &format!("ferry {args:?}"), Duration::from_secs(secs))
}

/// The longest a `ferry` command of a test may take ([`run_ferry`]); the
/// slowest (a drain waiting for transfers, a sync) take seconds.
const RUN_FERRY_BOUND: Duration = Duration::from_secs(300);

pub fn ferry_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `text` to a new file only its owner can read (tokens, keys).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Runs an `sftp -b` batch (written into `scratch`) against 127.0.0.1:`port`
/// as `user` with key authentication, in directory `cwd`.
pub fn sftp_with_key(
    port: u16,
    scratch: &Path,
    user: &str,
    key: &Path,
    batch: &str,
    cwd: &Path,
) -> Output {
    let file = scratch.join(format!("batch-{}", rand_suffix()));
    std::fs::write(&file, batch).unwrap();
    Command::new("sftp")
        .args(SSH_TEST_OPTS)
        .args([
            "-o",
            "ConnectTimeout=10",
            "-P",
            &port.to_string(),
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(key)
        .arg("-b")
        .arg(&file)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Starts Debian's HAProxy in the foreground on `config` (written into
/// `dir`), its standard output to `log`, and waits (10 s at most) until it
/// listens on every one of `ports`; panics, with HAProxy killed, if it
/// does not.
pub fn start_haproxy(dir: &Path, config: &str, ports: &[u16], log: Stdio) -> Child {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    // Debian puts it in /usr/sbin, which a PATH may lack.
    let bin = if Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    };
    let mut child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("haproxy (apt-get install haproxy; .ci/run installs it)");
    let up = wait_until(10, || {
        ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    });
    if !up {
        let _ = child.kill();
        panic!("haproxy did not listen on {ports:?}");
    }
    if let Some(status) = child.try_wait().unwrap() {
        panic!("haproxy exited: {status}");
    }
    child
}
