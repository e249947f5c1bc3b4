//! The clients that drive both sides of a row: OpenSSH `sftp` for SFTP and
//! curl for HTTPS, started exactly the same way against Ferry and its peer.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procs::run;
use crate::targets::{HttpsAccess, SftpAccess};

/// The cipher curl asks for on every HTTPS row.
pub const TLS_CIPHER: &str = "TLS_AES_128_GCM_SHA256";

/// Longest any single client run may take.
const CLIENT_LIMIT: Duration = Duration::from_secs(900);

/// An OpenSSH `sftp` client set up for one target and one cipher.
pub struct Sftp {
    args: Vec<String>,
    /// Where batch files are written.
    scratch: PathBuf,
}

impl Sftp {
    /// Client for `access` with `cipher`, logging in with `key`.
    pub fn new(access: &SftpAccess, cipher: &str, key: &Path, scratch: &Path) -> Self {
        let mut args: Vec<String> = vec!["-q".into(), "-c".into(), cipher.into(), "-i".into()];
        args.push(key.to_string_lossy().into_owned());
        for opt in [
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ControlMaster=no",
            "ConnectTimeout=30",
        ] {
            args.push("-o".into());
            args.push(opt.into());
        }
        args.push("-P".into());
        args.push(access.port.to_string());
        args.push(format!("{}@127.0.0.1", access.user));
        Sftp {
            args,
            scratch: scratch.to_path_buf(),
        }
    }

    fn batch_command(&self, name: &str, batch: &str) -> anyhow::Result<Command> {
        let file = self.scratch.join(format!("{name}.batch"));
        std::fs::write(&file, batch).with_context(|| format!("write {}", file.display()))?;
        let mut cmd = Command::new("sftp");
        cmd.arg("-b").arg(&file).args(&self.args);
        Ok(cmd)
    }

    /// Runs one `sftp -b` session with `batch`; returns its wall time.
    pub fn batch(&self, batch: &str) -> anyhow::Result<Duration> {
        let cmd = self.batch_command("session", batch)?;
        let start = Instant::now();
        run("sftp -b", cmd, CLIENT_LIMIT)?;
        Ok(start.elapsed())
    }

    /// Runs one `sftp -b` session per batch, all at once; returns the wall
    /// time from the first start to the last exit.
    pub fn parallel(&self, batches: &[String]) -> anyhow::Result<Duration> {
        let mut cmds = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let mut cmd = self.batch_command(&format!("parallel-{i}"), b)?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmds.push(cmd);
        }
        let start = Instant::now();
        let mut children = Vec::new();
        for mut cmd in cmds {
            children.push(cmd.spawn().context("start sftp")?);
        }
        let mut failures = Vec::new();
        for child in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
        }
        let elapsed = start.elapsed();
        if !failures.is_empty() {
            bail!(
                "{} of {} sftp sessions failed: {}",
                failures.len(),
                batches.len(),
                failures.join("; ")
            );
        }
        Ok(elapsed)
    }

    /// Opens `n` interactive sessions that have logged in and answered one
    /// `pwd`, and leaves them idle. They end when the returned value is dropped.
    pub fn idle_sessions(&self, n: usize) -> anyhow::Result<IdleSessions> {
        let mut sessions = IdleSessions {
            children: Vec::new(),
        };
        // Log in a few at a time, as partners arriving would, so neither
        // server's limit on unauthenticated connections is what is measured,
        // and at most 15 a second: Ferry's edge refuses a 21st new
        // connection a second from one address (after a burst).
        let started = Instant::now();
        for chunk_start in (0..n).step_by(16) {
            let due = started + Duration::from_secs_f64(chunk_start as f64 / 15.0);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut waiting = Vec::new();
            for _ in chunk_start..n.min(chunk_start + 16) {
                let mut child = Command::new("sftp")
                    .args(&self.args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start sftp")?;
                let mut stdin = child.stdin.take().context("stdin")?;
                stdin.write_all(b"pwd\n")?;
                let stdout = child.stdout.take().context("stdout")?;
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if line.contains("Remote working directory") {
                            let _ = tx.send(());
                        }
                    }
                });
                waiting.push(rx);
                sessions.children.push((child, stdin));
            }
            for rx in waiting {
                rx.recv_timeout(Duration::from_secs(60))
                    .context("an idle sftp session did not log in within 60 s")?;
            }
        }
        Ok(sessions)
    }
}

/// Interactive sftp sessions kept open; closed (stdin ends, then killed if
/// need be) on drop.
pub struct IdleSessions {
    children: Vec<(Child, std::process::ChildStdin)>,
}

impl Drop for IdleSessions {
    fn drop(&mut self) {
        for (mut child, stdin) in self.children.drain(..) {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// curl set up for one HTTPS target.
pub struct Curl {
    args: Vec<String>,
    files_url: String,
}

impl Curl {
    /// Client for `access`.
    pub fn new(access: &HttpsAccess) -> Self {
        let mut args: Vec<String> = [
            "-sS",
            "--fail-with-body",
            "--http1.1",
            "--tlsv1.3",
            "--tls13-ciphers",
            TLS_CIPHER,
            "--cacert",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(access.ca.to_string_lossy().into_owned());
        if let Some((user, password)) = &access.login {
            args.push("-u".into());
            args.push(format!("{user}:{password}"));
        }
        Curl {
            args,
            files_url: access.files_url.clone(),
        }
    }

    /// `PUT` of `local` as `name`; returns the wall time.
    pub fn put(&self, local: &Path, name: &str) -> anyhow::Result<Duration> {
        let mut cmd = Command::new("curl");
        cmd.args(&self.args)
            .arg("-o")
            .arg("/dev/null")
            .arg("-T")
            .arg(local)
            .arg(format!("{}{name}", self.files_url));
        let start = Instant::now();
        run("curl PUT", cmd, CLIENT_LIMIT)?;
        Ok(start.elapsed())
    }

    /// `GET` of `name` into `local`; returns the wall time.
    pub fn get(&self, name: &str, local: &Path) -> anyhow::Result<Duration> {
        let mut cmd = Command::new("curl");
        cmd.args(&self.args)
            .arg("-o")
            .arg(local)
            .arg(format!("{}{name}", self.files_url));
        let start = Instant::now();
        run("curl GET", cmd, CLIENT_LIMIT)?;
        Ok(start.elapsed())
    }
}
