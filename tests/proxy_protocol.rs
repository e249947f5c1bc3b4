//! The PROXY protocol behind a real HAProxy (Debian's `haproxy`, TCP mode,
//! `send-proxy-v2`, health checks on): the edge takes the client address
//! from the header of a trusted balancer, for the transfer log, the
//! failed-login log and the login throttle; a header from anywhere else is
//! not believed, and a trusted balancer that sends none is shut out.
//!
//! HAProxy listens on 127.0.0.1 and connects to the edge from 127.0.0.1,
//! the only trusted address; clients connect from 127.0.0.2 and 127.0.0.3,
//! so the address the edge believes can be told from the balancer's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::http::Curl;
use common::*;

/// A HAProxy in TCP mode in front of one Ferry's SFTP and HTTPS listeners;
/// killed on drop.
struct HaProxy {
    child: Child,
    sftp_port: u16,
    https_port: u16,
}

impl HaProxy {
    fn start(f: &Ferry, dir: &Path) -> Self {
        let edge_https: u16 = f
            .https_url
            .as_deref()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (sftp_port, https_port) = (free_port(), free_port());
        // Health checks every 300 ms: with send-proxy-v2 they open with a
        // v2 LOCAL header, which the edge must take without a complaint.
        let config = format!(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             frontend sftp\n    bind 127.0.0.1:{sftp_port}\n    default_backend edge_sftp\n\
             backend edge_sftp\n    source 127.0.0.1\n    server edge 127.0.0.1:{edge_sftp} send-proxy-v2 check inter 300ms\n\
             frontend https\n    bind 127.0.0.1:{https_port}\n    default_backend edge_https\n\
             backend edge_https\n    source 127.0.0.1\n    server edge 127.0.0.1:{edge_https} send-proxy-v2 check inter 300ms\n",
            edge_sftp = f.sftp_port,
        );
        let child = start_haproxy(dir, &config, &[sftp_port, https_port], Stdio::null());
        let mut h = HaProxy {
            child,
            sftp_port,
            https_port,
        };
        // Let a round of health checks pass.
        std::thread::sleep(Duration::from_millis(400));
        if let Some(status) = h.child.try_wait().unwrap() {
            panic!("haproxy exited: {status}");
        }
        h
    }

    /// curl for the edge's HTTPS front through this HAProxy.
    fn curl(&self, f: &Ferry) -> Curl {
        Curl {
            base: format!("https://127.0.0.1:{}", self.https_port),
            ..f.curl()
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry up` that believes PROXY headers from 127.0.0.1 alone.
fn ferry_behind_haproxy(extra: &[&str]) -> Ferry {
    let mut args = vec!["--trusted-proxies", "127.0.0.1"];
    args.extend_from_slice(extra);
    Ferry::up_logged(&args)
}

/// How an sftp client logs in.
enum Login<'a> {
    Key(&'a Path),
    Password(&'a str),
}

/// An `sftp -b` batch from source address `from` to 127.0.0.1:`port`.
fn sftp_from(from: &str, port: u16, user: &str, login: Login, batch: &str, cwd: &Path) -> Output {
    let file = cwd.join(format!("batch-{}", rand_suffix()));
    std::fs::write(&file, batch).unwrap();
    let mut cmd = Command::new("sftp");
    match login {
        Login::Key(key) => {
            cmd.args(key_login_opts(key));
        }
        Login::Password(password) => {
            use std::os::unix::fs::PermissionsExt;
            let askpass = cwd.join(format!("askpass-{}", rand_suffix()));
            std::fs::write(
                &askpass,
                format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
            cmd.args(SSH_TEST_OPTS)
                .args([
                    "-o",
                    "ConnectTimeout=10",
                    "-o",
                    "PreferredAuthentications=password",
                    "-o",
                    "BatchMode=no",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ])
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0");
        }
    }
    cmd.args([
        "-o",
        &format!("BindAddress={from}"),
        "-P",
        &port.to_string(),
    ])
    .arg("-b")
    .arg(&file)
    .arg(format!("{user}@127.0.0.1"))
    .current_dir(cwd)
    .stdin(Stdio::null())
    .output()
    .unwrap()
}

/// A TCP connection from source address `from` to `to`, reads bounded.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
            .await
            .expect("connect timed out")
            .unwrap()
            .into_std()
            .unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `bytes`, then reads until the edge closes the connection (within
/// the read timeout); returns what it sent back.
fn send_and_read_to_close(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    // The edge may close before taking everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the edge did not close the connection: {e} (got {got:?})"),
        }
    }
}

/// A PROXY protocol v2 header (PROXY command, TCP over IPv4) naming
/// `source` as the client, written out by hand.
fn v2_header(source: [u8; 4], source_port: u16, dest_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&source_port.to_be_bytes());
    h.extend_from_slice(&dest_port.to_be_bytes());
    h
}

fn https_port(f: &Ferry) -> u16 {
    f.https_url
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn uploads_through_haproxy_are_logged_with_the_client_address() {
    let f = ferry_behind_haproxy(&[]);
    let key = f.account_with_key("alice");
    let hp = HaProxy::start(&f, f.dir.path());
    let work = tempfile::tempdir().unwrap();
    random_file(&work.path().join("up.bin"), 100_000);

    // SFTP from 127.0.0.2 through HAProxy.
    let out = sftp_from(
        "127.0.0.2",
        hp.sftp_port,
        "alice",
        Login::Key(&key),
        "put up.bin via-sftp.bin\n",
        work.path(),
    );
    assert_ok(&out);
    // HTTPS from 127.0.0.2 through HAProxy.
    let up = work.path().join("up.bin");
    let r = hp.curl(&f).user("alice").run(
        &["--interface", "127.0.0.2", "-T", up.to_str().unwrap()],
        "/api/v1/files/via-https.bin",
    );
    assert_eq!(r.status, 201, "{r:?}");

    let rows = f.transfers();
    let addr = |path: &str| {
        let row = rows
            .iter()
            .find(|r| r["path"] == path && r["status"] == "completed")
            .unwrap_or_else(|| panic!("no row for {path}: {rows:#?}"));
        row["client_addr"].as_str().unwrap().to_owned()
    };
    let sftp = addr("/via-sftp.bin");
    assert!(sftp.starts_with("127.0.0.2:"), "sftp row's client: {sftp}");
    assert_eq!(addr("/via-https.bin"), "127.0.0.2");

    // A failed login through HAProxy is logged with the client's address.
    let out = sftp_from(
        "127.0.0.2",
        hp.sftp_port,
        "alice",
        Login::Password("wrong-password"),
        "pwd\n",
        work.path(),
    );
    assert!(!out.status.success());
    assert!(wait_until(10, || f.log().contains("login failed")));
    let log = f.log();
    let failed = log.lines().find(|l| l.contains("login failed")).unwrap();
    assert!(failed.contains("127.0.0.2"), "{failed}");
    // HAProxy's health checks (v2 LOCAL headers) were taken as they are.
    assert!(
        !log.contains("without a valid PROXY header"),
        "a health check was refused:\n{log}"
    );
}

#[test]
fn failed_logins_behind_haproxy_throttle_the_real_address_only() {
    let f = ferry_behind_haproxy(&["--max-login-failures", "2"]);
    f.add_account("alice");
    let hp = HaProxy::start(&f, f.dir.path());
    let from = |ip: &str, user: &str, password: &str| {
        let mut c = hp.curl(&f);
        c.auth = vec!["-u".into(), format!("{user}:{password}")];
        c.run(&["--interface", ip], "/api/v1/dirs/").status
    };
    // Two wrong passwords from 127.0.0.2 use up its allowance ...
    assert_eq!(from("127.0.0.2", "mallory", "wrong-password"), 401);
    assert_eq!(from("127.0.0.2", "mallory", "wrong-password"), 401);
    assert_eq!(from("127.0.0.2", "mallory", "wrong-password"), 429);
    // ... so 127.0.0.2 is refused unchecked, even with alice's password ...
    assert_eq!(from("127.0.0.2", "alice", PASSWORD), 429);
    // ... while alice from 127.0.0.3, through the same HAProxy, gets in.
    assert_eq!(from("127.0.0.3", "alice", PASSWORD), 200);
}

#[test]
fn a_header_from_an_untrusted_address_is_not_believed() {
    let f = ferry_behind_haproxy(&[]);
    let key = f.account_with_key("alice");
    let sftp: SocketAddr = ([127, 0, 0, 1], f.sftp_port).into();
    let https: SocketAddr = ([127, 0, 0, 1], https_port(&f)).into();

    // 127.0.0.2 is not trusted: a v2 header before an SSH banner is not a
    // banner, and the handshake fails.
    let mut s = connect_from("127.0.0.2", sftp);
    let mut forged = v2_header([203, 0, 113, 9], 4444, f.sftp_port);
    forged.extend_from_slice(b"SSH-2.0-OpenSSH_9.2\r\n");
    let got = send_and_read_to_close(&mut s, &forged);
    assert!(
        got.starts_with(b"SSH-2.0-Ferry"),
        "the edge took it as an SSH client: {got:?}"
    );
    // The same with a v1 header.
    let mut s = connect_from("127.0.0.2", sftp);
    let got = send_and_read_to_close(
        &mut s,
        b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 22\r\nSSH-2.0-OpenSSH_9.2\r\n",
    );
    assert!(got.starts_with(b"SSH-2.0-Ferry"), "{got:?}");
    // And before TLS: no handshake, the connection ends.
    let mut s = connect_from("127.0.0.2", https);
    let mut forged = v2_header([203, 0, 113, 9], 4444, https.port());
    forged.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0]);
    send_and_read_to_close(&mut s, &forged);

    // Without a header, 127.0.0.2 is an ordinary client with its own address.
    let work = tempfile::tempdir().unwrap();
    random_file(&work.path().join("up.bin"), 1000);
    let out = sftp_from(
        "127.0.0.2",
        f.sftp_port,
        "alice",
        Login::Key(&key),
        "put up.bin direct.bin\n",
        work.path(),
    );
    assert_ok(&out);
    let rows = f.transfers();
    let row = rows.iter().find(|r| r["path"] == "/direct.bin").unwrap();
    assert!(
        row["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{row}"
    );
    // The forged address is nowhere: not in the transfer log, not in the log.
    assert!(
        rows.iter()
            .all(|r| !r["client_addr"].as_str().unwrap().contains("203.0.113.9")),
        "{rows:#?}"
    );
    assert!(!f.log().contains("203.0.113.9"), "{}", f.log());
}

#[test]
fn the_trusted_proxy_without_a_header_is_shut_out() {
    let f = ferry_behind_haproxy(&[]);
    let sftp: SocketAddr = ([127, 0, 0, 1], f.sftp_port).into();
    let https: SocketAddr = ([127, 0, 0, 1], https_port(&f)).into();

    // From 127.0.0.1 an SSH banner is not a header: closed before the
    // edge says anything.
    let mut s = connect_from("127.0.0.1", sftp);
    let got = send_and_read_to_close(&mut s, b"SSH-2.0-OpenSSH_9.2\r\n");
    assert!(got.is_empty(), "the edge answered: {got:?}");
    // A TLS client hello is not one either.
    let mut s = connect_from("127.0.0.1", https);
    let got = send_and_read_to_close(
        &mut s,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0, 1, 0xfc, 3, 3, 0, 0],
    );
    assert!(got.is_empty(), "the edge answered: {got:?}");
    // Nor is a v1 header that breaks off.
    let mut s = connect_from("127.0.0.1", sftp);
    let got = send_and_read_to_close(&mut s, b"PROXY TCP4 203.0.113.9 127.0.0.1 4444\r\n");
    assert!(got.is_empty(), "the edge answered: {got:?}");
    // And curl from 127.0.0.1 straight to the edge gets no TLS at all.
    let r = f.curl().run(
        &["--interface", "127.0.0.1", "--max-time", "10"],
        "/healthz",
    );
    assert_eq!(r.status, 0, "{r:?}");

    assert!(wait_until(10, || f
        .log()
        .matches("without a valid PROXY header")
        .count()
        >= 4));
    let log = f.log();
    assert!(!log.contains("203.0.113.9"), "{log}");
    assert!(f.transfers().is_empty());
}
