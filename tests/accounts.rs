//! The account lifecycle and network rules, end to end with OpenSSH sftp
//! and the CLI: changing and removing a password, revoking keys, expiry,
//! allowed client networks and the cluster's deny list (refused with the
//! same answer as a wrong password, before the credential is checked, and
//! logged with the client address), and removing an account that routes
//! use, and the defender banning an address on every server of a cluster.
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

/// `ls` as `user` with its key: (logged in, stderr).
fn key_login(f: &Ferry, user: &str, key: &Path) -> (bool, String) {
    let out = f.sftp_key(user, key, "ls\n", f.dir.path());
    (out.status.success(), stderr(&out))
}

fn password_login(f: &Ferry, user: &str, password: &str) -> (bool, String) {
    let out = f.sftp_password(user, password, "ls\n");
    (out.status.success(), stderr(&out))
}

#[test]
fn networks_expiry_and_the_deny_list_refuse_like_a_wrong_password() {
    let f = Ferry::up_logged(&[]);
    let key = f.account_with_key("nina");
    assert!(key_login(&f, "nina", &key).0);
    let (_, wrong) = password_login(&f, "nina", "not-the-password");
    assert!(wrong.contains("Permission denied"), "{wrong}");

    // Only from a network the client is not in: refused, key or password,
    // with the wrong password's answer.
    let out = f.admin_ok(
        &[
            "account",
            "set",
            "nina",
            "--networks",
            "192.0.2.0/24,2001:db8::/32",
        ],
        None,
    );
    assert!(out.contains("192.0.2.0/24,2001:db8::/32"), "{out}");
    let (ok, err) = key_login(&f, "nina", &key);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = password_login(&f, "nina", PASSWORD);
    assert!(!ok, "a password login from outside the networks succeeded");
    assert_eq!(err, wrong, "the refusal differs from a wrong password's");
    // Inside: in.
    f.admin_ok(
        &["account", "set", "nina", "--networks", "127.0.0.0/8"],
        None,
    );
    assert!(key_login(&f, "nina", &key).0);
    assert!(password_login(&f, "nina", PASSWORD).0);
    let shown: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "list", "--json"], None)).unwrap();
    assert_eq!(
        shown[0]["allowed_networks"],
        serde_json::json!(["127.0.0.0/8"])
    );
    f.admin_ok(&["account", "set", "nina", "--networks", "any"], None);
    let bad = f.admin(
        &["account", "set", "nina", "--networks", "10.0.0.0/33"],
        None,
    );
    assert!(!bad.status.success());

    // Expired.
    f.admin_ok(&["account", "set", "nina", "--expires", "2020-01-31"], None);
    let (ok, err) = key_login(&f, "nina", &key);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    f.admin_ok(
        &[
            "account",
            "set",
            "nina",
            "--expires",
            "2099-01-01T00:00:00Z",
        ],
        None,
    );
    assert!(key_login(&f, "nina", &key).0);
    f.admin_ok(&["account", "set", "nina", "--expires", "never"], None);

    // The deny list holds for every account, whatever its own networks.
    let out = f.admin_ok(&["network", "deny", "198.51.100.0/24,127.0.0.1"], None);
    assert!(out.contains("127.0.0.1/32"), "{out}");
    let (ok, err) = key_login(&f, "nina", &key);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let out = f.admin_ok(&["network", "show", "--json"], None);
    assert!(out.contains("198.51.100.0/24"), "{out}");
    f.admin_ok(&["network", "deny", "none"], None);
    assert!(key_login(&f, "nina", &key).0);

    // Every refusal is logged with the client's address and why.
    let log = f.log();
    for reason in [
        "client network not allowed",
        "account expired",
        "client network denied",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("login failed") && l.contains("127.0.0.1:")),
        "no failed-login line with the client address"
    );
}

#[test]
fn passwords_change_and_keys_are_revoked_one_or_all() {
    let f = Ferry::up();
    let key = f.account_with_key("omar");
    let second = client_key(f.dir.path(), "omar_second");
    f.admin_ok(
        &[
            "account",
            "key",
            "add",
            "omar",
            second.with_extension("pub").to_str().unwrap(),
        ],
        None,
    );

    // A new password: the old one stops working at once.
    f.admin_ok(
        &["account", "set", "omar", "--password-stdin"],
        Some("a-new-password-9\n"),
    );
    assert!(!password_login(&f, "omar", PASSWORD).0);
    assert!(password_login(&f, "omar", "a-new-password-9").0);
    let short = f.admin(
        &["account", "set", "omar", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!short.status.success());
    f.admin_ok(&["account", "set", "omar", "--no-password"], None);
    assert!(!password_login(&f, "omar", "a-new-password-9").0);
    assert!(key_login(&f, "omar", &key).0);

    // Keys: listed with fingerprints, revoked one by one, then all.
    let keys: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "key", "list", "omar", "--json"], None))
            .unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    let first = keys[0]["fingerprint"].as_str().unwrap().to_owned();
    assert!(first.starts_with("SHA256:"), "{first}");
    f.admin_ok(&["account", "key", "remove", "omar", &first], None);
    assert!(
        !key_login(&f, "omar", &key).0,
        "a revoked key still logs in"
    );
    assert!(key_login(&f, "omar", &second).0);
    let again = f.admin(&["account", "key", "remove", "omar", &first], None);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    f.admin_ok(&["account", "key", "remove", "omar", "--all"], None);
    assert!(!key_login(&f, "omar", &second).0);
    let out = f.admin_ok(&["account", "key", "list", "omar"], None);
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn an_account_in_use_is_removed_only_with_its_uses() {
    let f = Ferry::up();
    f.add_account("src");
    f.add_account("dst");
    f.admin_ok(
        &[
            "route",
            "add",
            "onward",
            "--account",
            "src",
            "--match",
            "*",
            "--action",
            "copy:dst/in",
        ],
        None,
    );
    // The route copies to dst: dst is in use too.
    for name in ["src", "dst"] {
        let out = f.admin(&["account", "remove", name], None);
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(stderr(&out).contains("route onward"), "{}", stderr(&out));
    }
    f.admin_ok(&["account", "remove", "dst", "--with-uses"], None);
    let routes = f.admin_ok(&["route", "list"], None);
    assert!(!routes.contains("onward"), "{routes}");
    // Nothing uses src now.
    f.admin_ok(&["account", "remove", "src"], None);
    let accounts = f.admin_ok(&["account", "list"], None);
    assert!(
        !accounts.contains("src") && !accounts.contains("dst"),
        "{accounts}"
    );
}

/// `ls` through the edge at `port` as `user` with `key`: logged in?
fn edge_login(c: &common::cluster::TestCluster, port: u16, user: &str, key: &Path) -> bool {
    let out = sftp_with_key(port, c.root.path(), user, key, "ls\n", c.root.path());
    out.status.success()
}

#[test]
fn the_defender_bans_an_address_on_every_server_and_an_admin_lifts_it() {
    use common::cluster::{ClusterSpec, TestCluster};
    let mut c = TestCluster::new(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    for s in &c.servers {
        let config = s.dir.join("server.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[defender]\nenabled = true\nthreshold = 6\nban_secs = 600\n");
        std::fs::write(&config, text).unwrap();
    }
    for i in 0..3 {
        c.start_server(i);
    }
    c.start_edge(&[0, 1, 2]);
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    let key = c.account_with_key(0, "alice");
    // Two edges: one to s1 alone, one to s2 alone.
    let (_edge_a, port_a) = c.edge_to(&[0]);
    let (_edge_b, port_b) = c.edge_to(&[1]);
    assert!(wait_until(20, || edge_login(&c, port_b, "alice", &key)));

    // Probes of a made-up user through s1 (2 points each) reach the
    // threshold of 6: the address is banned, on every server.
    let mut probes = 0;
    let banned = wait_until(60, || {
        probes += 1;
        assert!(!edge_login(&c, port_a, "mallory", &key));
        c.admin_ok(2, &["ban", "list"], None).contains("127.0.0.1")
    });
    assert!(banned, "no ban after {probes} probes");
    println!("banned after {probes} probes");
    for i in 0..3 {
        let bans = c.json(i, &["ban", "list", "--json"]);
        assert_eq!(
            bans[0]["address"], "127.0.0.1",
            "{}: {bans}",
            c.servers[i].name
        );
        assert_eq!(bans[0]["by"], "s1", "{bans}");
    }
    // A valid user from the banned address, through the other server.
    assert!(
        !edge_login(&c, port_b, "alice", &key),
        "s2 let a banned address in"
    );

    // An admin lifts it through s3; s2 lets alice in again.
    c.admin_ok(2, &["ban", "remove", "127.0.0.1"], None);
    assert!(wait_until(10, || edge_login(&c, port_b, "alice", &key)));
    // An admin's own ban, and its removal.
    let out = c.admin_ok(
        0,
        &[
            "ban",
            "add",
            "127.0.0.1",
            "--minutes",
            "5",
            "--reason",
            "test",
        ],
        None,
    );
    assert!(out.contains("banned until"), "{out}");
    assert!(wait_until(10, || !edge_login(&c, port_b, "alice", &key)));
    c.admin_ok(1, &["ban", "remove", "::ffff:127.0.0.1"], None);
    assert!(wait_until(10, || edge_login(&c, port_b, "alice", &key)));
    let out = c.admin(1, &["ban", "remove", "127.0.0.1"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Protocol errors count too, as the edge reports them: an HTTP request
    // where the SSH version belongs scores 1, so the sixth bans.
    let mut garbage = 0;
    let banned = wait_until(60, || {
        garbage += 1;
        send_http_to_ssh(port_a);
        c.admin_ok(1, &["ban", "list"], None).contains("127.0.0.1")
    });
    assert!(banned, "no ban after {garbage} protocol errors");
    println!("banned after {garbage} protocol errors");
    assert!(garbage >= 6, "banned after {garbage} protocol errors");
    assert!(!edge_login(&c, port_b, "alice", &key), "s2 let it in");
    c.admin_ok(2, &["ban", "remove", "127.0.0.1"], None);
}

/// Sends an HTTP request to an SSH port and waits until it is closed.
fn send_http_to_ssh(port: u16) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink);
}

#[test]
fn a_quota_refuses_what_would_exceed_it_and_counts_again_after_deletes() {
    let f = Ferry::up();
    let key = f.account_with_key("quinn");
    let home = f.repository.join("quinn");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (name, len) in [
        ("a.dat", 60_000),
        ("b.dat", 60_000),
        ("c.dat", 1_000),
        ("big.dat", 200_000),
    ] {
        random_file(&work.join(name), len);
    }
    let out = f.admin_ok(
        &[
            "account",
            "set",
            "quinn",
            "--quota",
            "100K",
            "--quota-files",
            "3",
        ],
        None,
    );
    assert!(out.contains("quota 102400 bytes"), "{out}");
    let sftp = |batch: &str| f.sftp_key("quinn", &key, batch, &work);

    // 60 KB fits; another 60 KB does not: refused mid-way, nothing under
    // its name, the client told so.
    assert_ok(&sftp("put a.dat\n"));
    let out = sftp("put b.dat\n");
    assert!(!out.status.success(), "an upload past the quota succeeded");
    assert!(!home.join("b.dat").exists(), "a cut upload took its name");
    let shown: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "show", "quinn", "--json"], None)).unwrap();
    assert_eq!(shown["quota_bytes"], 102_400);
    assert_eq!(shown["used_files"], 1, "{shown}");

    // Announced lengths that do not fit are refused before any data: scp
    // and HTTPS (Content-Length), and no partial file is left.
    let out = Command::new("scp")
        .args(key_login_opts(&key))
        .args([
            "-O",
            "-P",
            &f.sftp_port.to_string(),
            "big.dat",
            "quinn@127.0.0.1:big.dat",
        ])
        .current_dir(&work)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "scp past the quota succeeded");
    // scp names the error as the C library does.
    let err = stderr(&out);
    assert!(
        err.contains("quota exceeded") || err.contains("No space left"),
        "{err}"
    );
    let r = f.curl().user("quinn").run(
        &["-T", work.join("big.dat").to_str().unwrap()],
        "/api/v1/files/big2.dat",
    );
    assert_eq!(r.status, 507, "{}", r.text());
    for name in [
        ".ferry-partial.big.dat",
        ".ferry-partial.big2.dat",
        "big.dat",
        "big2.dat",
    ] {
        assert!(!home.join(name).exists(), "{name} was left");
    }

    // After a delete the space is there again.
    assert_ok(&sftp("rm a.dat\n"));
    assert_ok(&sftp("put b.dat\n"));
    assert_eq!(
        sha256_file(&home.join("b.dat")),
        sha256_file(&work.join("b.dat"))
    );

    // The files quota: three files, not four.
    assert_ok(&sftp("put c.dat c1.dat\nput c.dat c2.dat\n"));
    let out = sftp("put c.dat c3.dat\n");
    assert!(!out.status.success(), "a fourth file was taken");
    assert!(!home.join("c3.dat").exists());
    let shown: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "show", "quinn", "--json"], None)).unwrap();
    assert_eq!(shown["used_files"], 3, "{shown}");

    // No quota: anything goes.
    f.admin_ok(
        &[
            "account",
            "set",
            "quinn",
            "--quota",
            "none",
            "--quota-files",
            "none",
        ],
        None,
    );
    assert_ok(&sftp("put big.dat\nput c.dat c3.dat\n"));
}

#[test]
fn bandwidth_limits_pace_uploads_and_downloads_within_twenty_percent() {
    let f = Ferry::up();
    let key = f.account_with_key("rosa");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let size = 2 << 20;
    random_file(&work.join("two.bin"), size);
    let out = f.admin_ok(
        &[
            "account",
            "set",
            "rosa",
            "--upload-rate",
            "512K",
            "--download-rate",
            "1M",
        ],
        None,
    );
    assert!(out.contains("changed"), "{out}");
    let timed = |batch: &str| {
        let t = std::time::Instant::now();
        assert_ok(&f.sftp_key("rosa", &key, batch, &work));
        t.elapsed().as_secs_f64()
    };
    // A login and a listing: what every run costs besides the transfer.
    let login = timed("ls\n");
    let up = timed("put two.bin\n") - login;
    let down = timed("get two.bin back.bin\n") - login;
    let (up_expected, down_expected) = (size as f64 / 524_288.0, size as f64 / 1_048_576.0);
    println!(
        "login {login:.2} s; upload {up:.2} s (expected {up_expected:.2}); \
         download {down:.2} s (expected {down_expected:.2})"
    );
    for (what, took, expected) in [
        ("upload", up, up_expected),
        ("download", down, down_expected),
    ] {
        let ratio = took / expected;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{what}: {took:.2} s for {expected:.2} s expected ({ratio:.2})"
        );
    }
    assert_eq!(
        sha256_file(&work.join("back.bin")),
        sha256_file(&work.join("two.bin"))
    );
    // Without a limit the same download is far faster.
    f.admin_ok(&["account", "set", "rosa", "--download-rate", "none"], None);
    let free = timed("get two.bin again.bin\n") - login;
    assert!(
        free < down_expected / 2.0,
        "unlimited download took {free:.2} s"
    );
}

/// Holds sessions of `user` open with paramiko: logs in `first` sessions,
/// then one more, then closes one and logs in again; prints what each
/// login did as JSON.
const SESSION_CAP_CLIENT: &str = r#"
import json, sys, time, paramiko
port, user, password, first = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
def login():
    t = paramiko.Transport(("127.0.0.1", port))
    try:
        t.connect(username=user, password=password)
        s = paramiko.SFTPClient.from_transport(t)
        s.listdir(".")
        return t
    except Exception as e:
        t.close()
        return None
held = [login() for _ in range(first)]
extra = login()
held[0].close()
time.sleep(1.0)
again = login()
print(json.dumps({
    "held": sum(1 for t in held if t is not None),
    "extra": extra is not None,
    "after_one_closed": again is not None,
}))
"#;

/// Runs [`SESSION_CAP_CLIENT`] as `capped` holding `first` sessions.
fn hold_sessions(f: &Ferry, first: u32) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            SESSION_CAP_CLIENT,
            &f.sftp_port.to_string(),
            "capped",
            PASSWORD,
        ])
        .arg(first.to_string())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}\n{}", stderr(&out), f.log()))
}

#[test]
fn a_session_cap_refuses_the_session_past_it_until_one_ends() {
    let f = Ferry::up_logged(&[]);
    f.add_account("capped");
    let out = f.admin_ok(&["account", "set", "capped", "--max-sessions", "2"], None);
    assert!(out.contains("capped"), "{out}");
    let shown = f.admin_ok(&["account", "show", "capped"], None);
    assert!(shown.contains("at most 2 at once"), "{shown}");
    let report = hold_sessions(&f, 2);
    eprintln!("session cap: {report}");
    assert_eq!(report["held"], 2, "{report}");
    assert_eq!(
        report["extra"], false,
        "a third session was let in: {report}"
    );
    assert_eq!(report["after_one_closed"], true, "{report}\n{}", f.log());
    assert!(f.log().contains("too many sessions"), "{}", f.log());

    // No cap again: the third session is let in.
    f.admin_ok(
        &["account", "set", "capped", "--max-sessions", "none"],
        None,
    );
    let report = hold_sessions(&f, 3);
    assert_eq!(report["held"], 3, "{report}");
    assert_eq!(report["extra"], true, "{report}");
}
