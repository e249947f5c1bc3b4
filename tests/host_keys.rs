//! End-to-end tests of the edge's SSH algorithms: the three host keys `ferry
//! up` creates and serves, the key exchanges older clients need, and what is
//! never offered (SHA-1, compression).

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
use std::process::{Command, Output};

const KEY_FILES: [&str; 3] = [
    "ssh_host_ed25519_key",
    "ssh_host_rsa_key",
    "ssh_host_ecdsa_key",
];

/// `TYPE BASE64` of the public half of a private key file.
fn public_of(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -y: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace();
    format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
}

fn keyscan(port: u16) -> String {
    let out = Command::new("ssh-keyscan")
        .args([
            "-t",
            "rsa,ecdsa,ed25519",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keyscan: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// An `sftp -b` batch with key login and extra `-o` options, logging at
/// DEBUG2 so the negotiated algorithms can be read from stderr.
fn sftp_with(f: &Ferry, key: &Path, opts: &[&str], batch: &str, cwd: &Path) -> Output {
    let file = f.dir.path().join(format!("batch-{}", rand_suffix()));
    std::fs::write(&file, batch).unwrap();
    let mut cmd = Command::new("sftp");
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=DEBUG2",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "PreferredAuthentications=publickey",
        "-P",
        &f.sftp_port.to_string(),
        "-i",
    ])
    .arg(key);
    for o in opts {
        cmd.args(["-o", o]);
    }
    cmd.arg("-b")
        .arg(&file)
        .arg("hk@127.0.0.1")
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn ferry_up_serves_ed25519_rsa_and_ecdsa_with_sha2_signatures() {
    let f = Ferry::up();
    let key = f.account_with_key("hk");
    let data = f.dir.path().join("data");

    // Three files, owner-only, one per algorithm; RSA has 3072 bits.
    let mut publics = Vec::new();
    for name in KEY_FILES {
        use std::os::unix::fs::PermissionsExt;
        let path = data.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
        publics.push(public_of(&path));
    }
    assert!(publics[0].starts_with("ssh-ed25519 "), "{publics:?}");
    assert!(publics[1].starts_with("ssh-rsa "), "{publics:?}");
    assert!(
        publics[2].starts_with("ecdsa-sha2-nistp256 "),
        "{publics:?}"
    );
    let bits = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(data.join("ssh_host_rsa_key"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bits.stdout).starts_with("3072 "),
        "{}",
        String::from_utf8_lossy(&bits.stdout)
    );

    // ssh-keyscan sees exactly those three keys.
    let scan = keyscan(f.sftp_port);
    for p in &publics {
        assert!(scan.contains(p.as_str()), "{p} not in keyscan:\n{scan}");
    }
    assert_eq!(
        scan.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "{scan}"
    );

    // A transfer under each host key algorithm, each with another key
    // exchange, as clients without Ed25519 or X25519 would choose (the
    // NIST curves; finite-field groups are not offered).
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("up.bin"), 100_000);
    let sha = sha256_file(&work.join("up.bin"));
    let cases = [
        ("rsa-sha2-256", "curve25519-sha256"),
        ("rsa-sha2-512", "ecdh-sha2-nistp256"),
        ("ecdsa-sha2-nistp256", "ecdh-sha2-nistp384"),
        ("ssh-ed25519", "ecdh-sha2-nistp521"),
    ];
    for (i, (hostkey, kex)) in cases.iter().enumerate() {
        let opts = [
            format!("HostKeyAlgorithms={hostkey}"),
            format!("KexAlgorithms={kex}"),
        ];
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let batch = format!("put up.bin up{i}.bin\nget up{i}.bin down{i}.bin\n");
        let out = sftp_with(&f, &key, &opts, &batch, &work);
        let log = stderr(&out);
        assert!(out.status.success(), "{hostkey}/{kex}: {log}");
        let said = |what: String| log.lines().any(|l| l.trim_end().ends_with(&what));
        assert!(
            said(format!("kex: host key algorithm: {hostkey}")),
            "{hostkey}: {log}"
        );
        assert!(said(format!("kex: algorithm: {kex}")), "{kex}: {log}");
        assert_eq!(sha256_file(&work.join(format!("down{i}.bin"))), sha);
        assert_eq!(
            sha256_file(&f.repository.join(format!("hk/up{i}.bin"))),
            sha
        );
    }

    // What the server proposes: the post-quantum hybrid first, no SHA-1
    // exchange or signature, no compression.
    let out = sftp_with(&f, &key, &["Compression=yes"], "pwd\n", &work);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    let proposal = log
        .split("peer server KEXINIT proposal")
        .nth(1)
        .expect("server proposal in the debug log");
    let line = |name: &str| -> String {
        proposal
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("debug2: {name}: ")))
            .unwrap_or_else(|| panic!("no {name} line in {proposal}"))
            .to_owned()
    };
    let kex = line("KEX algorithms");
    assert!(kex.starts_with("mlkem768x25519-sha256,"), "{kex}");
    assert!(!kex.contains("sha1"), "{kex}");
    // No finite-field Diffie-Hellman unless configured (DHEat).
    assert!(!kex.contains("diffie-hellman"), "{kex}");
    assert_eq!(
        line("host key algorithms"),
        "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256"
    );
    assert_eq!(line("compression ctos"), "none");
    assert_eq!(line("compression stoc"), "none");

    // SHA-1: refused both as a signature and as a key exchange.
    for opt in [
        "HostKeyAlgorithms=ssh-rsa",
        "KexAlgorithms=diffie-hellman-group14-sha1",
    ] {
        let out = sftp_with(&f, &key, &[opt], "pwd\n", &work);
        assert!(!out.status.success(), "{opt} was accepted");
        assert!(
            stderr(&out).contains("Unable to negotiate"),
            "{opt}: {}",
            stderr(&out)
        );
    }

    // Every upload has its row.
    let rows = f.transfers();
    for i in 0..cases.len() {
        let path = format!("/up{i}.bin");
        assert!(
            rows.iter().any(|r| r["path"] == path.as_str()
                && r["direction"] == "upload"
                && r["status"] == "completed"
                && r["bytes"] == 100_000
                && r["sha256"] == sha.as_str()),
            "{path}: {rows:#?}"
        );
    }
}

#[test]
fn host_keys_survive_a_restart_and_a_deleted_one_is_made_anew() {
    let mut f = Ferry::up();
    let data = f.dir.path().join("data");
    let before = keyscan(f.sftp_port);
    let rsa_before = public_of(&data.join("ssh_host_rsa_key"));
    std::fs::remove_file(data.join("ssh_host_ecdsa_key")).unwrap();
    f.kill_and_restart(&[]);
    let after = keyscan(f.sftp_port);
    let strip_port = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect();
        v.sort();
        v
    };
    let (before, after) = (strip_port(&before), strip_port(&after));
    assert_eq!(after.len(), 3, "{after:?}");
    // Ed25519 and RSA are the same keys; ECDSA was created again.
    for kind in ["ssh-ed25519 ", "ssh-rsa "] {
        let b = before.iter().find(|l| l.starts_with(kind)).unwrap();
        let a = after.iter().find(|l| l.starts_with(kind)).unwrap();
        assert_eq!(a, b, "{kind}");
    }
    assert!(after.contains(&rsa_before));
    let b = before.iter().find(|l| l.starts_with("ecdsa")).unwrap();
    let a = after.iter().find(|l| l.starts_with("ecdsa")).unwrap();
    assert_ne!(a, b, "the deleted ECDSA key was not replaced");
    assert_eq!(public_of(&data.join("ssh_host_ecdsa_key")), *a);
}
