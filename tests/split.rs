//! End-to-end tests of separate `ferry server` and `ferry edge` processes.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Writes PKI, token and configs into `dir`; returns (server.toml, edge.toml).
fn setup(
    dir: &Path,
    internal_port: u16,
    internal_extra: &str,
    servers: &[String],
) -> (String, String) {
    let pki = dir.join("pki");
    let p = pki.to_str().unwrap();
    ferry_ok(&["pki", "init", "--dir", p]);
    ferry_ok(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--role",
        "server",
        "--san",
        "127.0.0.1",
        "server1",
    ]);
    ferry_ok(&["pki", "issue", "--dir", p, "--role", "edge", "edge1"]);
    ferry_ok(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--role",
        "https",
        "--san",
        "127.0.0.1",
        "edge1-https",
    ]);
    use std::os::unix::fs::OpenOptionsExt;
    let mut tok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("admin.token"))
        .unwrap();
    std::io::Write::write_all(&mut tok, b"test-admin-token-0123456789\n").unwrap();
    std::fs::create_dir_all(dir.join("repository")).unwrap();
    let server = format!(
        r#"node_id = "server1"
state_dir = "state"
repository = "repository"
[internal]
listen = "127.0.0.1:{internal_port}"
ca = "pki/ca.crt"
cert = "pki/server1.crt"
key = "pki/server1.key"
{internal_extra}
[admin]
listen = "127.0.0.1:0"
token_file = "admin.token"
"#
    );
    let servers = servers
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let edge = format!(
        r#"node_id = "edge1"
[sftp]
listen = "127.0.0.1:0"
host_key = "edge_host_key"
auth_failure_delay_ms = 200
[https]
listen = "127.0.0.1:0"
cert = "pki/edge1-https.crt"
key = "pki/edge1-https.key"
auth_failure_delay_ms = 200
[upstream]
servers = [{servers}]
ca = "pki/ca.crt"
cert = "pki/edge1.crt"
key = "pki/edge1.key"
"#
    );
    let (s, e) = (dir.join("server.toml"), dir.join("edge.toml"));
    std::fs::write(&s, server).unwrap();
    std::fs::write(&e, edge).unwrap();
    (
        s.to_str().unwrap().to_owned(),
        e.to_str().unwrap().to_owned(),
    )
}

/// Server and edge as two processes; the edge lists a dead server first, so
/// sessions also exercise moving on to the next server.
fn split(internal_port: u16) -> (Ferry, String) {
    split_with(internal_port, "")
}

/// [`split`] with extra lines in the server's `[internal]` section.
fn split_with(internal_port: u16, internal_extra: &str) -> (Ferry, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = if internal_port == 0 {
        free_port()
    } else {
        internal_port
    };
    let dead = format!("127.0.0.1:{}", free_port());
    let (server_cfg, edge_cfg) = setup(
        dir.path(),
        port,
        internal_extra,
        &[dead, format!("127.0.0.1:{port}")],
    );
    let (server, v) = Proc::start(&["server", "--config", &server_cfg], &["internal", "admin"]);
    let (edge, e) = Proc::start(&["edge", "--config", &edge_cfg], &["sftp", "https"]);
    let f = Ferry {
        procs: vec![edge, server],
        sftp_port: e[0].rsplit(':').next().unwrap().parse().unwrap(),
        admin_args: vec![
            "--admin".into(),
            v[1].clone(),
            "--token-file".into(),
            dir.path().join("admin.token").to_str().unwrap().into(),
            "--ca-file".into(),
            dir.path().join("pki/ca.crt").to_str().unwrap().into(),
        ],
        repository: dir.path().join("repository"),
        https_url: Some(e[1].clone()),
        ca: dir.path().join("pki/ca.crt"),
        dir,
    };
    (f, server_cfg)
}

/// The internal port of a server started by [`split_with`].
fn internal_port(server_cfg: &str) -> u16 {
    let text = std::fs::read_to_string(server_cfg).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("listen = \"127.0.0.1:") && !l.ends_with(":0\""))
        .unwrap();
    line.trim_end_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn internal_listener_closes_silent_connections_and_caps_each_address() {
    let port = free_port();
    let (f, server_cfg) = split_with(
        port,
        "handshake_timeout_secs = 3\nmax_connections_per_address = 32",
    );
    assert_eq!(internal_port(&server_cfg), port);
    // 100 connections from another address that never start TLS.
    let flood = std::thread::spawn(move || {
        Command::new("python3")
            .args([
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../tests/clients/silent_flood.py"
                ),
                "127.0.0.2",
                &port.to_string(),
                "100",
                "4",
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Real sessions go on meanwhile.
    scenarios::roundtrip_20mib(&f, "server1");
    let out = flood.join().unwrap();
    let r = json_report(
        out,
        "100 silent connections to the internal port from 127.0.0.2",
    );
    assert_eq!(r["connected"], 100, "{r}");
    // Past the per-address cap: closed at once.
    assert!(r["refused_at_once"].as_u64().unwrap() >= 68, "{r}");
    // The rest: closed after the handshake timeout.
    assert_eq!(r["open_after_wait"], 0, "{r}");
}

#[test]
fn split_upload_and_download_20mib_past_a_dead_server() {
    let (f, _) = split(0);
    scenarios::roundtrip_20mib(&f, "server1");
}

#[test]
fn split_https_upload_tus_and_download_past_a_dead_server() {
    let (f, _) = split(0);
    f.add_account("alice");
    let c = f.curl().user("alice");
    let local = f.dir.path().join("up.bin");
    random_file(&local, 3 * 1024 * 1024 + 1);
    let r = c.run(&["-T", local.to_str().unwrap()], "/api/v1/files/up.bin");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get("/api/v1/files/up.bin");
    assert_eq!(r.body, std::fs::read(&local).unwrap());
    let rows = f.transfers();
    assert!(rows.iter().any(|r| r["protocol"] == "https"
        && r["node"] == "server1"
        && r["sha256"] == sha256_file(&local).as_str()));
}

#[test]
fn split_reput_after_a_killed_transfer() {
    let (f, _) = split(0);
    scenarios::reput_after_kill(&f);
}

#[test]
fn edge_survives_its_server_going_away_and_coming_back() {
    let port = free_port();
    let (mut f, server_cfg) = split(port);
    let key = f.account_with_key("ivan");
    let work = f.dir.path().to_path_buf();
    assert_ok(&f.sftp_key("ivan", &key, "pwd\n", &work));

    // Kill the server: the client gets a clear error, the edge keeps running.
    f.procs.pop().unwrap().kill();
    let out = f.sftp_key("ivan", &key, "pwd\n", &work);
    assert!(!out.status.success());
    let err = stderr(&out);
    // A clean refusal (the disconnect text is not always shown by OpenSSH,
    // which may report the rejection first), never a hang.
    assert!(
        err.contains("no back-end server is available")
            || err.contains("Permission denied")
            || err.contains("Connection closed"),
        "{err}"
    );
    assert!(
        f.procs[0].child.try_wait().unwrap().is_none(),
        "the edge died"
    );

    // The server comes back on the same address: new sessions work again.
    let (server, _) = Proc::start(&["server", "--config", &server_cfg], &["internal", "admin"]);
    f.procs.push(server);
    assert_ok(&f.sftp_key("ivan", &key, "pwd\n", &work));
}

#[test]
fn bad_config_files_are_named_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (server_cfg, edge_cfg) = setup(dir.path(), 0, "", &["127.0.0.1:1".into()]);
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "ferry {args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.path().join("nope.toml");
    let err = run(&["server", "--config", missing.to_str().unwrap()]);
    assert!(
        err.contains("nope.toml") && err.contains("cannot read"),
        "{err}"
    );

    let text = std::fs::read_to_string(&server_cfg).unwrap();
    let bad = dir.path().join("bad-server.toml");
    std::fs::write(&bad, text.replace("node_id", "node_idd")).unwrap();
    let err = run(&["server", "--config", bad.to_str().unwrap()]);
    assert!(
        err.contains("bad-server.toml") && err.contains("node_idd"),
        "{err}"
    );

    std::fs::write(
        &bad,
        text.replace(
            "repository = \"repository\"",
            "repository = \"missing-dir\"",
        ),
    )
    .unwrap();
    let err = run(&["server", "--config", bad.to_str().unwrap()]);
    assert!(
        err.contains("repository") && err.contains("missing-dir"),
        "{err}"
    );

    std::fs::write(&bad, text.replace("127.0.0.1:0", "not-an-address")).unwrap();
    let err = run(&["server", "--config", bad.to_str().unwrap()]);
    assert!(
        err.contains("bad-server.toml") && err.contains("listen"),
        "{err}"
    );

    std::fs::write(&bad, "node_id = [\n").unwrap();
    let err = run(&["server", "--config", bad.to_str().unwrap()]);
    assert!(err.contains("bad-server.toml"), "{err}");

    let etext = std::fs::read_to_string(&edge_cfg).unwrap();
    let bad_edge = dir.path().join("bad-edge.toml");
    std::fs::write(
        &bad_edge,
        etext.replace("servers = [\"127.0.0.1:1\"]", "servers = []"),
    )
    .unwrap();
    let err = run(&["edge", "--config", bad_edge.to_str().unwrap()]);
    assert!(
        err.contains("bad-edge.toml") && err.contains("upstream.servers"),
        "{err}"
    );

    // A private key others can read is refused, naming the file.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("pki/server1.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = run(&["server", "--config", &server_cfg]);
    assert!(
        err.contains("server1.key") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Connects to the server's internal port with `cert` from the test PKI,
/// claiming `role`; "accepted" or the error.
fn connect_with(dir: &Path, port: u16, cert: &str, role: ferry_proto::message::Role) -> String {
    let pki = dir.join("pki");
    let files = ferry_proto::tls::TlsFiles {
        ca: pki.join("ca.crt"),
        cert: pki.join(format!("{cert}.crt")),
        key: pki.join(format!("{cert}.key")),
    };
    let tls = ferry_proto::tls::internal_client_config(&files).unwrap();
    let addr = format!("127.0.0.1:{port}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        match ferry_proto::client::Connection::connect(&addr, tls, role, cert).await {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        }
    })
}

#[test]
fn the_server_takes_a_peers_role_from_its_certificate() {
    use ferry_proto::message::Role;
    let port = free_port();
    let (f, _) = split(port);
    let dir = f.dir.path();
    // Each certificate in its own role.
    assert_eq!(connect_with(dir, port, "edge1", Role::Edge), "accepted");
    // The HTTPS front's key (same CA) is not an edge's.
    let refused = connect_with(dir, port, "edge1-https", Role::Edge);
    assert!(
        refused.contains("for the https role, not edge"),
        "{refused}"
    );
    // An edge's key cannot claim to be a server, nor a server's an edge.
    let refused = connect_with(dir, port, "edge1", Role::Server);
    assert!(
        refused.contains("for the edge role, not server"),
        "{refused}"
    );
    let refused = connect_with(dir, port, "server1", Role::Edge);
    assert!(
        refused.contains("for the server role, not edge"),
        "{refused}"
    );
    // A certificate from before roles (none written in it, made here with
    // openssl and the same CA) is refused, with the command that fixes it.
    let pki = dir.join("pki");
    let sh = format!(
        "set -e; cd {pki}; \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
           -keyout old.key -subj /CN=old -out old.csr 2>/dev/null; \
         printf 'subjectAltName=DNS:old\\nextendedKeyUsage=serverAuth,clientAuth\\n' > old.ext; \
         openssl x509 -req -in old.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
           -days 2 -out old.crt -extfile old.ext 2>/dev/null; chmod 600 old.key",
        pki = pki.display()
    );
    let made = Command::new("sh").args(["-c", &sh]).output().unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let refused = connect_with(dir, port, "old", Role::Edge);
    assert!(
        refused.contains("names no Ferry role") && refused.contains("--role edge"),
        "{refused}"
    );
    // The real edge, with its own certificate, is served throughout.
    scenarios::roundtrip_20mib(&f, "server1");
}

/// The server dies while an upload's CLOSE is with it: the edge cannot
/// know whether the upload was committed, so it must not answer "failure"
/// (a client would believe nothing happened). It ends the connection, and
/// the client sees the outcome as unknown. Before, the edge answered
/// SSH_FX_FAILURE "connection to the server was lost".
#[test]
fn a_close_in_flight_when_the_server_dies_is_not_reported_as_failed() {
    use std::io::{BufRead, BufReader, Write};
    let (mut f, _) = split(0);
    f.add_account("judy");
    let mut client = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/clients/close_in_flight.py"
        ))
        .args([&f.sftp_port.to_string(), "judy", PASSWORD])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");
    let mut server = f.procs.pop().unwrap();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "SENT");
    // Let the CLOSE reach the held server, then kill it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.kill();
    let told = lines.next().unwrap().unwrap();
    assert!(told.starts_with("unknown:"), "the client was told: {told}");
    assert!(client.wait().unwrap().success());
}

/// The server of a live SFTP session dies while the session is idle. The
/// session lived on that server, so the edge must not keep it open answering
/// every request with a failure for good (a client that keeps its session,
/// like sshfs or a long-lived paramiko connection, would never recover): the
/// next request is answered "failure" (nothing changed) and the connection
/// ends, so the client reconnects.
#[test]
fn a_session_whose_server_died_ends_so_the_client_reconnects() {
    use std::io::{BufRead, BufReader, Write};
    let (mut f, _) = split(0);
    f.add_account("kim");
    let script = "\
import sys, paramiko
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect('127.0.0.1', port=int(sys.argv[1]), username='kim', password=sys.argv[2],
          look_for_keys=False, allow_agent=False, timeout=30)
s = c.open_sftp()
s.get_channel().settimeout(20)
s.listdir('.')
print('READY', flush=True)
sys.stdin.readline()
for attempt in range(3):
    try:
        s.listdir('.')
        print('ok', flush=True)
    except (EOFError, paramiko.SSHException, OSError) as e:
        if isinstance(e, IOError) and not isinstance(e, (EOFError, ConnectionError)) \\
                and 'lost' in str(e):
            print('failed: ' + str(e), flush=True)
        else:
            print('disconnected: ' + type(e).__name__, flush=True)
            break
";
    let mut client = Command::new("python3")
        .args(["-c", script, &f.sftp_port.to_string(), PASSWORD])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");
    let mut server = f.procs.pop().unwrap();
    server.kill();
    writeln!(client.stdin.take().unwrap(), "go").unwrap();
    let told: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(client.wait().unwrap().success());
    println!("the client was told: {told:?}");
    // At most the one failure, then the connection ends.
    assert!(
        told.last().is_some_and(|l| l.starts_with("disconnected")),
        "{told:?}"
    );
    assert!(
        told.iter().filter(|l| l.starts_with("failed")).count() <= 1,
        "{told:?}"
    );
}
