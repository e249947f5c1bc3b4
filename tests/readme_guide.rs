//! The README's guides "Two processes: server and edge" and "Active/active:
//! a Raft cluster", followed as a new operator would: each section's first
//! shell block is read from README.md (so the guide cannot drift from what
//! works) and typed, line by line, into one bash in a scratch directory
//! holding a copy of `etc/` (a here-document is typed whole). A line ending
//! in `&` starts a service, and the next line waits until it says it is
//! running; every other line must succeed. The interactive `sftp` line is
//! run with a batch that uploads a file, which must then be in the
//! account's home.
//!
//! The guides' ports (7401, 7402, 2222, 8443, 9101, 7511–7532) are fixed,
//! below the range the kernel hands out for ephemeral ports, so the other
//! tests (all on ephemeral ports) never take them.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// How long one line of the guide may take.
const STEP: Duration = Duration::from_secs(90);

/// The first `sh` block after the heading `heading` in README.md.
fn guide_block(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?}"))
        .1;
    let block = after
        .split_once("```sh\n")
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    // A here-document is one step: its lines up to the terminator.
    let mut steps: Vec<String> = Vec::new();
    let mut open_heredoc: Option<String> = None;
    for line in block.lines().map(str::trim) {
        if let Some(end) = &open_heredoc {
            let last = steps.last_mut().unwrap();
            last.push('\n');
            last.push_str(line);
            if line == end {
                open_heredoc = None;
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((_, rest)) = line.split_once("<<'") {
            open_heredoc = rest.split_once('\'').map(|(end, _)| end.to_owned());
        }
        steps.push(line.to_owned());
    }
    assert!(
        open_heredoc.is_none(),
        "a here-document in {heading:?} does not end"
    );
    steps
}

/// One bash in its own process group, fed lines; killed with everything
/// it started when dropped.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: mpsc::Receiver<String>,
    transcript: Vec<String>,
}

impl Shell {
    fn start(cwd: &Path, home: &Path) -> Self {
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .arg("--norc")
            .current_dir(cwd)
            .env("HOME", home)
            .env("PATH", path)
            .env("FERRY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, out) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            stdin,
            out,
            transcript: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        self.transcript.push(format!("$ {text}"));
        writeln!(self.stdin, "{text}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Reads output until a line satisfies `done`; fails the test after
    /// [`STEP`].
    fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        loop {
            match self.out.recv_timeout(STEP) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if done(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the guide stalled waiting for {what}; so far:\n{}",
                    self.transcript.join("\n")
                ),
            }
        }
    }

    /// Runs `line` and fails the test unless it exits 0.
    fn run(&mut self, line: &str) {
        self.send(line);
        self.send("echo \"__step_done__ $?\"");
        let end = self.until(line, |l| l.starts_with("__step_done__ "));
        let code = end.trim_start_matches("__step_done__ ");
        assert_eq!(
            code,
            "0",
            "`{line}` failed (exit {code}); transcript:\n{}",
            self.transcript.join("\n")
        );
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The services the guide started are in bash's process group. The
        // `--` matters: procps' `kill -KILL -PGID` signals every process
        // (kill(-1)).
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Types `lines` into `shell`: services in the background (waiting for
/// their "running" line), the `sftp` line with `batch` and `key`,
/// everything else checked for exit status 0. Returns whether an `sftp`
/// line ran.
fn follow(shell: &mut Shell, lines: &[String], key: &Path, batch: &Path) -> bool {
    let mut sftp_ran = false;
    for line in lines {
        if let Some(service) = line.strip_suffix('&') {
            // A service: started in the background; the next line waits
            // until it has said where it listens.
            shell.send(line);
            let ready = if service.contains("ferry server") {
                "admin: https://"
            } else {
                "sftp: "
            };
            shell.until(service, |l| l.contains(ready));
        } else if let Some(rest) = line.strip_prefix("sftp ") {
            let scripted = format!(
                "sftp -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -b {} {rest}",
                key.display(),
                batch.display()
            );
            shell.run(&scripted);
            sftp_ran = true;
        } else {
            shell.run(line);
        }
    }
    sftp_ran
}

#[test]
fn the_server_edge_and_cluster_guides_work_as_written() {
    let lines = guide_block("## Two processes: server and edge");
    assert!(lines.len() >= 10, "the guide's block: {lines:?}");
    let cluster = guide_block("## Active/active: a Raft cluster");
    assert!(cluster.len() >= 8, "the cluster guide's block: {cluster:?}");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("checkout");
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    for file in ["server.toml", "edge.toml"] {
        std::fs::copy(etc.join(file), root.join("etc").join(file)).unwrap();
    }
    // The operator's own SSH key, where the guide expects it.
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key: PathBuf = home.join(".ssh/id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let upload = scratch.path().join("upload.bin");
    random_file(&upload, 300_000);
    let batch = scratch.path().join("batch");
    std::fs::write(
        &batch,
        format!("put {} upload.bin\nls -l\n", upload.display()),
    )
    .unwrap();

    let mut shell = Shell::start(&root, &home);
    shell.run("set -o pipefail");
    let sftp_ran = follow(&mut shell, &lines, &key, &batch);
    assert!(sftp_ran, "the guide ends with an sftp login");
    let stored = root.join("ferry-site/repository/alice/upload.bin");
    assert_eq!(
        sha256_file(&stored),
        sha256_file(&upload),
        "the upload through the guide's edge is in alice's home"
    );

    // The cluster guide, in the same shell and site.
    follow(&mut shell, &cluster, &key, &batch);
    let site = root.join("ferry-site");
    for n in 1..=3 {
        assert!(
            site.join(format!("node-{n}/ferry.db")).exists(),
            "node-{n} has its own state"
        );
    }
    let status = shell
        .transcript
        .iter()
        .skip_while(|l| !l.starts_with("$ ferry cluster status"))
        .take_while(|l| !l.starts_with("$ ferry account add carol"))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    for n in 1..=3 {
        assert!(
            status.contains(&format!("node-{n}")),
            "status lists node-{n}:\n{status}"
        );
    }
    // What was added through node-1 is on node-3.
    shell.run(
        "for i in $(seq 100); do FERRY_ADMIN_URL=https://127.0.0.1:7532 ferry account list | grep -q carol && break; sleep 0.1; done; \
         FERRY_ADMIN_URL=https://127.0.0.1:7532 ferry account list | grep -q carol",
    );
    // Every service stops gracefully on SIGTERM, as the README says.
    shell.run("kill $(jobs -p) && wait");
    eprintln!("the guides' transcript:\n{}", shell.transcript.join("\n"));
}
