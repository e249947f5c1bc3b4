//! Connections that never log in cannot shut real clients out of the SFTP
//! front: a grace time closes them, and caps (overall, with random early
//! drop, and per address) keep a flood from one address from taking the
//! places of others.
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
    "/../../tests/clients/preauth_flood.py"
);

#[test]
fn connections_that_never_log_in_are_capped_per_address_and_closed_after_the_grace_time() {
    let f = Ferry::up_logged(&["--login-grace-secs", "3"]);
    let key = f.account_with_key("alice");
    let port = f.sftp_port.to_string();
    // 120 silent or stalled connections from another loopback address.
    let flood = std::thread::spawn(move || {
        Command::new("python3")
            .args([FLOOD, "127.0.0.2", &port, "120", "6"])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(1));
    // A real client logs in meanwhile, at once.
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("a.txt"), b"hello").unwrap();
    let started = Instant::now();
    assert_ok(&f.sftp_key("alice", &key, "put a.txt\n", &work));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "login took {:?}",
        started.elapsed()
    );

    let out = flood.join().unwrap();
    let r = json_report(out, "flood from 127.0.0.2");
    // At most the per-address cap got in (the rest were refused at once).
    assert!(r["admitted"].as_u64().unwrap() <= 64, "{r}");
    assert!(r["refused"].as_u64().unwrap() >= 56, "{r}");
    assert_eq!(
        r["open_after_wait"], 0,
        "still open after the grace time: {r}"
    );
    let log = f.log();
    assert!(log.contains("no login within the grace time"), "{log}");
    assert!(
        log.contains("too many connections from this address"),
        "{log}"
    );
    // A logged-in session outlives the grace time.
    let mut sftp = Command::new("sftp")
        .args(key_login_opts(&key))
        .args(["-P", &f.sftp_port.to_string(), "alice@127.0.0.1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    {
        use std::io::Write;
        let mut stdin = sftp.stdin.take().unwrap();
        writeln!(stdin, "ls").unwrap();
        writeln!(stdin, "bye").unwrap();
    }
    let out = sftp.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("a.txt"));
}

#[test]
fn finite_field_diffie_hellman_is_not_offered() {
    let f = Ferry::up();
    let key = f.account_with_key("dh");
    let ssh = |kex: &str| {
        // Not key_login_opts: its LogLevel=ERROR hides the negotiation
        // failure.
        Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(&key)
            .args(["-o", &format!("KexAlgorithms={kex}")])
            .args(["-p", &f.sftp_port.to_string(), "-s", "dh@127.0.0.1", "sftp"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // The groups a DHEat attacker asks for: refused before any math.
    let out = ssh(
        "diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
                   diffie-hellman-group18-sha512,diffie-hellman-group14-sha256",
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no matching key exchange method"), "{err}");
    // Elliptic-curve exchanges, the old JSch one included, log in.
    for kex in ["curve25519-sha256", "ecdh-sha2-nistp256"] {
        let out = ssh(kex);
        assert!(out.status.success(), "{kex}: {}", stderr(&out));
    }
}

#[test]
fn new_connections_from_one_address_are_rate_limited() {
    let f = Ferry::up_logged(&[]);
    let key = f.account_with_key("rate");
    // 300 connections opened and closed at once from one address: past
    // the burst of 80 (20 a second), they are closed before any key
    // exchange, whatever the per-address cap of open ones.
    let script = format!(
        "import socket\n\
         refused = 0\n\
         for i in range(300):\n    \
             s = socket.socket(); s.bind(('127.0.0.7', 0)); s.settimeout(5)\n    \
             s.connect(('127.0.0.1', {port}))\n    \
             try:\n        banner = s.recv(64)\n    \
             except OSError:\n        banner = b''\n    \
             refused += not banner.startswith(b'SSH-2.0-')\n    \
             s.close()\n\
         print(refused)\n",
        port = f.sftp_port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let refused: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("300 quick connections from 127.0.0.7: {refused} refused");
    assert!(refused >= 150, "{refused} refused");
    assert!(f
        .log()
        .contains("too many new connections from this address"));
    // Another address logs in at once.
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert_ok(&f.sftp_key("rate", &key, "pwd\n", &work));
}
