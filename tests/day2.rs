//! The day-2 kit, end to end with the real binary: the state directory's
//! lock, `--check-config` of a server and an edge, the SSH host-key
//! fingerprints printed at start, shell completions and man pages, and
//! the systemd units in `etc/systemd/` checked by `systemd-analyze verify`
//! with those man pages installed.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::cluster::{ClusterSpec, TestCluster};
use common::*;

#[test]
fn a_second_server_on_the_same_state_directory_is_refused() {
    let mut ferry = Ferry::up();
    let pid = ferry.procs[0].child.id();
    let up = Ferry::up_args(&ferry.dir.path().join("data"));
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    let second = ferry_bounded(&up, 30);
    let err = stderr(&second);
    assert!(!second.status.success(), "a second ferry up started: {err}");
    assert!(
        err.contains("is in use by") && err.contains(&format!("process {pid}")),
        "the refusal names the holder: {err}"
    );
    // The first one goes on serving.
    ferry.add_account("alice");
    // Killed (no shutdown of any kind), it leaves no stale lock behind.
    ferry.kill_and_restart(&[]);
    ferry.add_account("bob");
}

#[test]
fn check_config_reports_what_it_checked_and_refuses_what_would_not_start() {
    let cluster = TestCluster::new(ClusterSpec::active_passive());
    let server = &cluster.servers[0];
    let config = server.dir.join("server.toml");
    let config_s = config.to_str().unwrap();
    let out = ferry_bounded(&["server", "--config", config_s, "--check-config"], 30);
    let text = assert_ok(&out);
    assert!(text.contains("the config is valid"), "{text}");
    assert!(text.contains("admin token"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    // It started nothing and created nothing.
    assert!(
        !server.dir.join("state").join("ferry.db").exists(),
        "--check-config opened the store"
    );
    // A token readable by others would be refused at start: so here.
    let token = cluster.root.path().join("admin.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ferry_bounded(&["server", "--config", config_s, "--check-config"], 30);
    assert!(!out.status.success(), "a world-readable token passed");
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A config that does not parse names the field.
    let broken = server.dir.join("broken.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&broken, format!("{text}\nno_such_field = 1\n")).unwrap();
    let out = ferry_bounded(
        &[
            "server",
            "--config",
            broken.to_str().unwrap(),
            "--check-config",
        ],
        30,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no_such_field"), "{}", stderr(&out));

    // The edge: a host key that is missing would be created at the first
    // start, and the check creates nothing.
    let edge = cluster.root.path().join("edge.toml");
    std::fs::write(
        &edge,
        format!(
            "node_id = \"edge1\"\n[sftp]\nlisten = \"127.0.0.1:0\"\nhost_key = \"edge_host_key\"\n\
             [https]\nlisten = \"127.0.0.1:0\"\ncert = \"pki/edge1-https.crt\"\n\
             key = \"pki/edge1-https.key\"\n[upstream]\nservers = [\"127.0.0.1:{}\"]\n\
             ca = \"pki/ca.crt\"\ncert = \"pki/edge1.crt\"\nkey = \"pki/edge1.key\"\n",
            server.internal_port
        ),
    )
    .unwrap();
    let out = ferry_bounded(
        &["edge", "--config", edge.to_str().unwrap(), "--check-config"],
        30,
    );
    let text = assert_ok(&out);
    assert!(
        text.contains("will be created at the first start"),
        "{text}"
    );
    assert!(text.contains("HTTPS certificate"), "{text}");
    assert!(!cluster.root.path().join("edge_host_key").exists());
    // A certificate that is not there fails the check, naming the file.
    std::fs::rename(
        cluster.root.path().join("pki/edge1-https.crt"),
        cluster.root.path().join("pki/moved.crt"),
    )
    .unwrap();
    let out = ferry_bounded(
        &["edge", "--config", edge.to_str().unwrap(), "--check-config"],
        30,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("edge1-https.crt"), "{}", stderr(&out));
}

#[test]
fn the_host_key_fingerprints_printed_at_start_are_those_clients_see() {
    let ferry = Ferry::up();
    let printed: Vec<String> = ferry.procs[0]
        .lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("host key: ").map(str::to_owned))
        .collect();
    assert_eq!(printed.len(), 3, "one line per host key: {printed:?}");
    // What OpenSSH computes from the keys the server presents.
    let scan = Command::new("ssh-keyscan")
        .args(["-p", &ferry.sftp_port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let mut keygen = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(keygen.stdin.as_mut().unwrap(), &scan.stdout).unwrap();
    let seen = String::from_utf8(keygen.wait_with_output().unwrap().stdout).unwrap();
    let seen: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(seen.len(), 3, "ssh-keyscan found three keys: {seen:?}");
    for fingerprint in &seen {
        assert!(
            printed.iter().any(|p| p.ends_with(fingerprint)),
            "{fingerprint} (seen by ssh-keyscan) not among the printed {printed:?}"
        );
    }
}

#[test]
fn completions_man_pages_and_systemd_units() {
    let out = ferry_bounded(&["completions", "bash"], 30);
    let bash = assert_ok(&out);
    assert!(bash.contains("complete -F _ferry"), "not a bash completion");
    for command in ["server", "edge", "account", "cluster", "completions"] {
        assert!(
            bash.contains(command),
            "{command} missing from the completion"
        );
    }
    // bash itself reads it.
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("ferry.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .args(["-n", script.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    for shell in ["zsh", "fish"] {
        let out = ferry_bounded(&["completions", shell], 30);
        assert!(!assert_ok(&out).is_empty());
    }

    let man = scratch.path().join("man");
    let man1 = man.join("man1");
    assert_ok(&ferry_bounded(
        &["man", "--dir", man1.to_str().unwrap()],
        30,
    ));
    for page in [
        "ferry.1",
        "ferry-server.1",
        "ferry-edge.1",
        "ferry-up.1",
        "ferry-account-add.1",
    ] {
        let text =
            std::fs::read_to_string(man1.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not a man page"
        );
    }

    // The units, pointing at this build, with the man pages above
    // installed where `man` finds them (their Documentation= lines).
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/systemd");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "User="] {
            assert!(text.contains(hardening), "{name} lacks {hardening}");
        }
        std::fs::write(
            scratch.path().join(&name),
            text.replace("/usr/local/bin/ferry", BIN),
        )
        .unwrap();
        names.push(name);
    }
    assert_eq!(names.len(), 3, "the three units: {names:?}");
    let analyze = Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| format!("./{n}")))
        .current_dir(scratch.path())
        .env("MANPATH", &man)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    assert!(
        analyze.status.success() && analyze.stderr.is_empty(),
        "systemd-analyze verify: {}",
        stderr(&analyze)
    );
}
