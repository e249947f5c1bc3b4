#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! No sticky sessions needed for the HTTPS front: two edges in front of one
//! server, and Debian's HAProxy in HTTP mode balancing round robin with no
//! stickiness (TLS ends at HAProxy and is made again to the edges, so every
//! request, even on one keep-alive or HTTP/2 connection, goes to the next
//! edge). A browser session (cookie and CSRF token) and a tus upload work
//! whichever edge a request reaches, and a logout through one edge is
//! refused by the other at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::cluster::{ClusterSpec, TestCluster};
use common::http::{Curl, Reply};
use common::*;

/// An edge of its own (both use the site's edge certificates).
struct Edge {
    _proc: Proc,
    https_port: u16,
}

fn start_edge(c: &TestCluster, name: &str) -> Edge {
    let path = c.root.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"node_id = "edge1"
[sftp]
listen = "127.0.0.1:0"
host_key = "{name}_host_key"
auth_failure_delay_ms = 100
[https]
listen = "127.0.0.1:0"
cert = "pki/edge1-https.crt"
key = "pki/edge1-https.key"
[upstream]
servers = ["127.0.0.1:{}"]
ca = "pki/ca.crt"
cert = "pki/edge1.crt"
key = "pki/edge1.key"
"#,
            c.servers[0].internal_port
        ),
    )
    .unwrap();
    let (proc, v) = Proc::start(
        &["edge", "--config", path.to_str().unwrap()],
        &["sftp", "https"],
    );
    let https_port = v[1].rsplit(':').next().unwrap().parse().unwrap();
    Edge {
        _proc: proc,
        https_port,
    }
}

/// HAProxy, HTTP mode, round robin over the two edges, no stickiness; it
/// logs one line per request naming the edge (`e1` or `e2`). Killed on drop.
struct Balancer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Balancer {
    fn start(root: &Path, edges: &[&Edge]) -> Self {
        let pki = root.join("pki");
        let pem = root.join("haproxy.pem");
        let mut both = std::fs::read(pki.join("edge1-https.crt")).unwrap();
        both.extend(std::fs::read(pki.join("edge1-https.key")).unwrap());
        std::fs::write(&pem, both).unwrap();
        let port = free_port();
        let ca = pki.join("ca.crt");
        let servers: String = edges
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "    server e{} 127.0.0.1:{} ssl verify required ca-file {}\n",
                    i + 1,
                    e.https_port,
                    ca.display()
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 200\n    log stdout format raw local0 info\n\
             defaults\n    mode http\n    log global\n    log-format \"%s %HM %HP %ST\"\n\
             \x20   timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             frontend https\n    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1\n\
             \x20   default_backend edges\n\
             backend edges\n    balance roundrobin\n{servers}",
            pem = pem.display()
        );
        let log = root.join("haproxy.log");
        let out = Stdio::from(std::fs::File::create(&log).unwrap());
        let child = start_haproxy(root, &config, &[port], out);
        Balancer { child, port, log }
    }

    /// The logged requests: (edge, method, path, status), in order (an
    /// HTTP/2 request is logged with its absolute URI: the path is kept).
    fn requests(&self) -> Vec<(String, String, String, u16)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (edge, method, uri) = (w.next()?, w.next()?, w.next()?);
                let path = match uri.strip_prefix("https://") {
                    Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
                    None => uri,
                };
                Some((
                    edge.to_owned(),
                    method.to_owned(),
                    path.to_owned(),
                    w.next()?.parse().ok()?,
                ))
            })
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl_to(c: &TestCluster, port: u16) -> Curl {
    Curl {
        base: format!("https://127.0.0.1:{port}"),
        ca: c.root.path().join("pki/ca.crt"),
        tmp: c.root.path().to_owned(),
        auth: Vec::new(),
    }
}

/// A browser session as curl holds it: the cookie and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

fn login(c: &Curl, user: &str) -> Session {
    let body = format!(r#"{{"user":"{user}","password":"{PASSWORD}"}}"#);
    let r = c.run(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
        ],
        "/api/v1/session",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("Secure"), "{set}");
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("ferry_session=")
        .unwrap()
        .to_owned();
    let csrf = r.json()["csrf"].as_str().unwrap().to_owned();
    Session { cookie, csrf }
}

/// curl with the session's cookie, and its CSRF token when `csrf`.
fn with(s: &Session, csrf: bool, args: &[&str]) -> Vec<String> {
    let mut a = vec![
        "-H".to_owned(),
        format!("Cookie: ferry_session={}", s.cookie),
    ];
    if csrf {
        a.extend(["-H".to_owned(), format!("X-CSRF-Token: {}", s.csrf)]);
    }
    a.extend(args.iter().map(|s| (*s).to_owned()));
    a
}

fn list(c: &Curl, s: &Session) -> Reply {
    c.run(&with(s, false, &[]), "/api/v1/dirs/")
}

fn tus_create(c: &Curl, s: &Session, length: usize, name: &str) -> String {
    let meta = format!(
        "Upload-Metadata: filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    );
    let length = format!("Upload-Length: {length}");
    let r = c.run(
        &with(
            s,
            true,
            &[
                "-X",
                "POST",
                "-H",
                "Tus-Resumable: 1.0.0",
                "-H",
                &length,
                "-H",
                &meta,
            ],
        ),
        "/api/v1/uploads/",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.header("location").unwrap().to_owned()
}

fn tus_offset(c: &Curl, s: &Session, location: &str) -> u64 {
    let r = c.run(
        &with(s, false, &["-I", "-H", "Tus-Resumable: 1.0.0"]),
        location,
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.header("upload-offset").unwrap().parse().unwrap()
}

fn tus_patch(c: &Curl, s: &Session, location: &str, offset: u64, part: &Path) -> Reply {
    let offset = format!("Upload-Offset: {offset}");
    let data = format!("@{}", part.display());
    c.run(
        &with(
            s,
            true,
            &[
                "-X",
                "PATCH",
                "-H",
                "Tus-Resumable: 1.0.0",
                "-H",
                "Content-Type: application/offset+octet-stream",
                "-H",
                &offset,
                "--data-binary",
                &data,
            ],
        ),
        location,
    )
}

/// Uploads `data` with tus: created through `a`, then alternately PATCHed
/// through `b` and `a` in three parts, each offset asked through the other.
fn tus_upload(a: &Curl, b: &Curl, s: &Session, dir: &Path, name: &str, data: &[u8]) {
    let location = tus_create(a, s, data.len(), name);
    let cut = [0, data.len() / 3, 2 * data.len() / 3, data.len()];
    let clients = [b, a, b];
    for (i, client) in clients.iter().enumerate() {
        let other = clients[(i + 1) % 3];
        assert_eq!(tus_offset(other, s, &location), cut[i] as u64);
        let part = dir.join(format!("{name}.part{i}"));
        std::fs::write(&part, &data[cut[i]..cut[i + 1]]).unwrap();
        let r = tus_patch(client, s, &location, cut[i] as u64, &part);
        assert_eq!(r.status, 204, "part {i}: {}", r.text());
        assert_eq!(
            r.header("upload-offset").unwrap(),
            cut[i + 1].to_string(),
            "part {i}"
        );
    }
}

fn setup() -> (TestCluster, Edge, Edge) {
    let c = TestCluster::start(ClusterSpec::active_passive());
    c.admin_ok(
        0,
        &["account", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let (e1, e2) = (start_edge(&c, "e1"), start_edge(&c, "e2"));
    (c, e1, e2)
}

fn home(c: &TestCluster) -> PathBuf {
    c.root.path().join("repository/alice")
}

#[test]
fn a_cookie_session_and_a_tus_upload_move_between_edges() {
    let (c, e1, e2) = setup();
    let (a, b) = (curl_to(&c, e1.https_port), curl_to(&c, e2.https_port));

    // Log in through edge A, list through edge B.
    let s = login(&a, "alice");
    let r = list(&b, &s);
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = b.run(&with(&s, false, &[]), "/api/v1/session");
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["account"], "alice");
    assert_eq!(shown.json()["csrf"], s.csrf.as_str());

    // A change through B needs the CSRF token, which B derives itself.
    let r = b.run(&with(&s, false, &["-X", "POST"]), "/api/v1/dirs/nocsrf");
    assert_eq!(r.status, 403, "{}", r.text());
    let wrong = Session {
        cookie: s.cookie.clone(),
        csrf: "0".repeat(64),
    };
    let r = b.run(&with(&wrong, true, &["-X", "POST"]), "/api/v1/dirs/nocsrf");
    assert_eq!(r.status, 403, "{}", r.text());
    let r = b.run(&with(&s, true, &["-X", "POST"]), "/api/v1/dirs/made-on-b");
    assert!(
        r.status == 201 || r.status == 204,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(home(&c).join("made-on-b").is_dir());

    // A tus upload created through A and finished through B (and back).
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    tus_upload(&a, &b, &s, c.root.path(), "across.bin", &data);
    assert_eq!(std::fs::read(home(&c).join("across.bin")).unwrap(), data);

    // The browser session is not an API token of the account.
    let tokens = c.admin_ok(0, &["account", "token", "list", "alice"], None);
    assert!(!tokens.contains("browser session"), "{tokens}");

    // Log out through A: B refuses the cookie at once, for reads too.
    let r = a.run(&with(&s, true, &["-X", "DELETE"]), "/api/v1/session");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = list(&b, &s);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = b.run(&with(&s, false, &[]), "/api/v1/session");
    assert_eq!(r.status, 401, "{}", r.text());
    let r = list(&a, &s);
    assert_eq!(r.status, 401, "{}", r.text());
    // A made-up cookie of the right shape is refused too.
    let forged = Session {
        cookie: format!("fw_000000000000_{}", "ab".repeat(32)),
        csrf: String::new(),
    };
    assert_eq!(list(&b, &forged).status, 401);
}

#[test]
fn round_robin_without_stickiness_carries_curl_and_chromium() {
    let (c, e1, e2) = setup();
    let lb = Balancer::start(c.root.path(), &[&e1, &e2]);
    let via = curl_to(&c, lb.port);

    // Every request goes to the next edge, whatever the session.
    let s = login(&via, "alice");
    for _ in 0..3 {
        let r = list(&via, &s);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 13 % 241) as u8).collect();
    tus_upload(&via, &via, &s, c.root.path(), "balanced.bin", &data);
    assert_eq!(std::fs::read(home(&c).join("balanced.bin")).unwrap(), data);
    let r = via.run(&with(&s, true, &["-X", "DELETE"]), "/api/v1/session");
    assert_eq!(r.status, 204, "{}", r.text());
    // Refused through both edges.
    for _ in 0..2 {
        assert_eq!(list(&via, &s).status, 401);
    }
    let log = lb.requests();
    assert!(log.len() >= 14, "{log:?}");
    for pair in log.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two requests in a row to one edge: {log:?}"
        );
    }
    assert!(log.iter().any(|r| r.0 == "e1") && log.iter().any(|r| r.0 == "e2"));

    // Chromium through the balancer: log in, upload (tus), list, download,
    // log out; its requests are spread over both edges.
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let modules = root.join("tests/browser/node_modules/playwright-core");
    if std::env::var_os("FERRY_SKIP_BROWSER").is_some() {
        eprintln!("FERRY_SKIP_BROWSER is set: the Chromium part is skipped");
        return;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists() && modules.exists(),
        "needs Debian's chromium and `npm ci` in tests/browser (see .ci/run), \
         or FERRY_SKIP_BROWSER=1"
    );
    let before = lb.requests().len();
    let dir = c.root.path().join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    let one = dir.join("big-balanced.bin");
    random_file(&one, 13 * 1024 * 1024 + 3);
    let two = dir.join("small.txt");
    std::fs::write(&two, "through the balancer\n").unwrap();
    let out_dir = root.join("target/test-artifacts/no_sticky");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut node = Command::new("node");
    node.arg(root.join("tests/browser/browser_test.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("FERRY_URL", format!("https://127.0.0.1:{}", lb.port))
        .env("FERRY_USER", "alice")
        .env("FERRY_PASSWORD", PASSWORD)
        .env("FERRY_FILE1", &one)
        .env("FERRY_FILE2", &two)
        .env("FERRY_OUT", &out_dir)
        .env("FERRY_LOGOUT", "1");
    let out = node.output().expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "browser test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["loggedOut"], true, "{result}");
    assert_eq!(
        sha256_file(&home(&c).join("big-balanced.bin")),
        sha256_file(&one)
    );
    assert_eq!(sha256_file(&home(&c).join("small.txt")), sha256_file(&two));
    // The log may lag a little behind the last answer.
    std::thread::sleep(Duration::from_millis(200));
    let browser: Vec<_> = lb.requests().into_iter().skip(before).collect();
    let on = |edge: &str| {
        browser
            .iter()
            .filter(|r| r.0 == edge && r.2.starts_with("/api/"))
            .count()
    };
    assert!(on("e1") >= 3 && on("e2") >= 3, "{browser:?}");
    for edge in ["e1", "e2"] {
        assert!(
            browser
                .iter()
                .any(|r| r.0 == edge && r.2.starts_with("/api/v1/uploads") && r.3 < 300),
            "no tus request went to {edge}: {browser:?}"
        );
    }
}
