//! Graceful shutdown: SIGTERM to a running `ferry up` (server and edge in
//! one process) in the middle of a 200 MiB upload over OpenSSH's sftp.
//!
//! With a 30 s drain the upload finishes, its row is written, and the
//! process exits 0 well within the deadline; nothing new is accepted
//! meanwhile. With a 1 s drain the upload is cut: the process exits 0 at
//! once, the partial file is kept, the row says `interrupted`, and `reput`
//! after a restart finishes the file.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SIZE: usize = 200 << 20;

/// Starts `sftp -b` putting `name` at `limit_kbit` Kbit/s.
fn slow_put(f: &Ferry, key: &Path, work: &Path, name: &str, limit_kbit: u32) -> Child {
    let batch = work.join(format!("put-{name}"));
    std::fs::write(&batch, format!("put {name}\n")).unwrap();
    Command::new("sftp")
        .args(key_login_opts(key))
        .args([
            "-l",
            &limit_kbit.to_string(),
            "-P",
            &f.sftp_port.to_string(),
            "-b",
        ])
        .arg(&batch)
        .arg("alice@127.0.0.1")
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `secs` for `child` to exit.
fn exit_within(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn partial_len(f: &Ferry, name: &str) -> u64 {
    std::fs::metadata(f.repository.join(format!("alice/.ferry-partial.{name}")))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Sets up alice with a key and a 200 MiB file `big.bin` in a work dir.
fn setup(f: &Ferry) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("big.bin"), SIZE);
    let sha = sha256_file(&work.join("big.bin"));
    (key, work, sha)
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_within_the_drain() {
    let mut f = Ferry::up_logged(&["--drain-secs", "30"]);
    let (key, work, sha) = setup(&f);
    // 100 Mbit/s: about 17 s for the whole file.
    let put = slow_put(&f, &key, &work, "big.bin", 100_000);
    assert!(
        wait_until(60, || partial_len(&f, "big.bin") > 40 << 20),
        "the upload did not get going"
    );
    let signalled = Instant::now();
    sigterm(&f.procs[0].child);

    // Nothing new is taken while the upload drains: the listener is closed.
    std::thread::sleep(Duration::from_millis(500));
    let refused = Command::new("sftp")
        .args(key_login_opts(&key))
        .args(["-P", &f.sftp_port.to_string(), "-b", "-"])
        .arg("alice@127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a new session was taken during the drain"
    );

    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the upload in flight failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = exit_within(&mut f.procs[0].child, 40).expect("ferry did not exit");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", f.log());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    println!("SIGTERM to exit: {took:?} (drain 30 s)");
    assert_eq!(sha256_file(&f.repository.join("alice/big.bin")), sha);
    let log = f.log();
    assert!(log.contains("no transfer in flight"), "{log}");
    assert!(log.contains("server stopped"), "{log}");

    // The row was written before the exit.
    f.kill_and_restart(&[]);
    let rows = f.transfers();
    let row = rows
        .iter()
        .find(|t| t["direction"] == "upload" && t["status"] == "completed")
        .unwrap_or_else(|| panic!("no completed upload row: {rows:?}"));
    assert_eq!(row["sha256"], sha.as_str());
    assert_eq!(row["bytes"], SIZE as u64);
}

#[test]
fn a_short_drain_ends_the_upload_as_interrupted_and_reput_finishes_it() {
    let mut f = Ferry::up_logged(&["--drain-secs", "1"]);
    let (key, work, sha) = setup(&f);
    // 20 Mbit/s: far longer than the drain.
    let mut put = slow_put(&f, &key, &work, "big.bin", 20_000);
    assert!(
        wait_until(60, || partial_len(&f, "big.bin") > 4 << 20),
        "the upload did not get going"
    );
    let signalled = Instant::now();
    sigterm(&f.procs[0].child);
    let status = exit_within(&mut f.procs[0].child, 20).expect("ferry did not exit");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", f.log());
    println!("SIGTERM to exit: {took:?} (drain 1 s)");
    for l in f.log().lines().filter(|l| {
        l.contains("shut") || l.contains("stop") || l.contains("drain") || l.contains("WARN")
    }) {
        println!("LOG {l}");
    }
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(!put.wait().unwrap().success(), "the cut upload succeeded");
    let log = f.log();
    assert!(log.contains("the drain deadline passed"), "{log}");

    let kept = partial_len(&f, "big.bin");
    assert!(kept > 0 && kept < SIZE as u64, "partial kept: {kept}");
    f.kill_and_restart(&[]);
    let rows = f.transfers();
    assert!(
        rows.iter()
            .any(|t| t["direction"] == "upload" && t["status"] == "interrupted"),
        "no interrupted row: {rows:?}"
    );
    assert_ok(&f.sftp_key("alice", &key, "reput big.bin\n", &work));
    assert_eq!(sha256_file(&f.repository.join("alice/big.bin")), sha);
}
