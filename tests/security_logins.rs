//! A crowd of wrong passwords can neither exhaust the server's memory nor
//! keep others out: password checks run on a few threads from a bounded
//! queue, and the per-address and per-account throttle is applied, and
//! counted, before any hashing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const FLOOD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/password_flood.py"
);

#[test]
fn a_hundred_and_twenty_wrong_passwords_at_once_keep_memory_bounded_and_others_logging_in() {
    let f = Ferry::up_logged(&[]);
    f.add_account("victim");
    f.add_account("alice");
    let pid = f.procs[0].child.id();
    let before = proc_status_kib(pid, "VmHWM") / 1024;
    let port = f.sftp_port.to_string();
    let flood = std::thread::spawn(move || {
        Command::new("python3")
            .args([FLOOD, &port, "victim", "60", "127.0.0.2,127.0.0.3"])
            .output()
            .unwrap()
    });
    let port = f.sftp_port.to_string();
    // And 60 more on 60 names (unknown users cost a check too), from five
    // addresses that stay under their own limit: every one is checked.
    // (120 connections in all stay under the edge's random early drop,
    // which would otherwise turn away alice's connection too.)
    let spread = std::thread::spawn(move || {
        Command::new("python3")
            .args([
                FLOOD,
                &port,
                "nobody{}",
                "60",
                "127.0.1.1,127.0.1.2,127.0.1.3,127.0.1.4,127.0.1.5",
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(700));
    // Another account logs in with its password meanwhile.
    let started = Instant::now();
    let out = f.sftp_password("alice", PASSWORD, "pwd\n");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "alice could not log in after {took:?}: {}\n{}",
        stderr(&out),
        f.log()
    );

    let out = flood.join().unwrap();
    let r = json_report(out, "60 wrong passwords on one account");
    let out = spread.join().unwrap();
    let spread = json_report(out, "60 wrong passwords on 60 names");
    assert_eq!(spread["refused"], 60, "{spread}");
    let peak = proc_status_kib(pid, "VmHWM") / 1024;
    eprintln!("peak RSS {before} -> {peak} MiB; alice logged in in {took:?}");
    assert_eq!(r["accepted"], 0, "{r}");
    assert_eq!(r["refused"], 60, "{r}");
    assert!(took < Duration::from_secs(8), "alice waited {took:?}");
    // Each argon2 check takes ~19 MiB; 250 at once took 6.2 GB before the
    // pool, and freeing that memory per check let the runtime's threads keep
    // up to 430 MiB of freed buffers before each hashing thread kept its own
    // working area (now the rise is ~10 MiB).
    assert!(peak < before + 200, "peak RSS {before} -> {peak} MiB");
    // Past the throttle, passwords were refused without being checked.
    let log = f.log();
    let unchecked = log.matches("refused without a check").count();
    assert!(unchecked >= 30, "{unchecked} refused before hashing\n{log}");
}

#[test]
fn an_attempted_user_name_is_logged_short_and_escaped() {
    let f = Ferry::up_logged(&[]);
    let name = format!("evil\nFORGED-LINE {}", "x".repeat(5000));
    let script = format!(
        "import paramiko\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.start_client(timeout=30)\n\
         try:\n    t.auth_password({name:?}, 'wrong-password')\n\
         except paramiko.AuthenticationException:\n    print('refused')\n",
        port = f.sftp_port,
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(10, || f.log().contains("login refused")));
    let log = f.log();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED-LINE")),
        "a forged log line:\n{log}"
    );
    assert!(!log.contains(&"x".repeat(100)), "the whole name was logged");
}
