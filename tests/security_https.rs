//! Connections that hold the HTTPS front without using it are closed:
//! silent after TLS (HTTP/1 and HTTP/2), an upload body that never ends,
//! and more than an address's share; real requests are served meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Output};

use common::*;

const HOLD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/https_hold.py"
);

fn https_port(f: &Ferry) -> String {
    f.https_url
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

fn hold(
    port: &str,
    source: &str,
    n: u32,
    mode: &str,
    wait: u32,
) -> std::thread::JoinHandle<Output> {
    let args: Vec<String> = [HOLD, source, port, &n.to_string(), mode, &wait.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::thread::spawn(move || Command::new("python3").args(args).output().unwrap())
}

#[test]
fn idle_tls_h2_and_never_ending_uploads_are_closed_and_capped_per_address() {
    let f = Ferry::up_with(&["--https-idle-timeout-secs", "3"]);
    f.add_account("alice");
    let port = https_port(&f);
    // 30 silent after TLS, 30 silent after the HTTP/2 preface, 20 uploads
    // that stop after their first chunk, each group from its own address;
    // and 100 from one more address, past its share of 64.
    let tls = hold(&port, "127.0.0.2", 30, "tls", 8);
    let h2 = hold(&port, "127.0.0.3", 30, "h2", 8);
    let chunked = hold(&port, "127.0.0.4", 20, "chunked", 10);
    let crowd = hold(&port, "127.0.0.5", 100, "tls", 8);

    // Real requests go on meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let c = f.curl().user("alice");
    let local = f.dir.path().join("real.bin");
    random_file(&local, 256 * 1024);
    let r = c.run(&["-T", local.to_str().unwrap()], "/api/v1/files/real.bin");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.get("/api/v1/files/real.bin").body,
        std::fs::read(&local).unwrap()
    );

    let r = json_report(tls.join().unwrap(), "30 silent after TLS");
    assert_eq!(r["connected"], 30, "{r}");
    assert_eq!(r["closed"], 30, "{r}");
    let r = json_report(h2.join().unwrap(), "30 silent after the HTTP/2 preface");
    assert_eq!(r["connected"], 30, "{r}");
    assert_eq!(r["closed"], 30, "{r}");
    let r = json_report(chunked.join().unwrap(), "20 chunked uploads that never end");
    assert_eq!(r["connected"], 20, "{r}");
    assert_eq!(r["closed"], 20, "{r}");
    let r = json_report(crowd.join().unwrap(), "100 from one address");
    // Past its 64, an address's connections are closed at once (TLS fails);
    // the rest go idle and are closed too.
    assert!(r["connected"].as_u64().unwrap() <= 64, "{r}");
    assert_eq!(r["closed"], r["connected"], "{r}");
    // Nothing of the never-ending uploads was committed.
    assert!(!f.repository.join("alice/never-ends.bin").exists());
}

#[test]
fn a_slow_but_steady_upload_is_not_cut_off() {
    let f = Ferry::up_with(&["--https-idle-timeout-secs", "2"]);
    f.add_account("alice");
    let c = f.curl().user("alice");
    let local = f.dir.path().join("slow.bin");
    random_file(&local, 48 * 1024);
    // 8 KiB/s for 6 s: three times the idle timeout, above the 1 KiB floor.
    let r = c.run(
        &["-T", local.to_str().unwrap(), "--limit-rate", "8K"],
        "/api/v1/files/slow.bin",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        std::fs::read(f.repository.join("alice/slow.bin")).unwrap(),
        std::fs::read(&local).unwrap()
    );
}

#[test]
fn a_hundred_parallel_wrong_passwords_get_no_more_checks_than_the_limit() {
    let f = Ferry::up();
    f.add_account("alice");
    let script = format!(
        r#"
import base64, json, ssl, threading, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile={ca:?})
codes = []
lock = threading.Lock()
def one(i):
    req = urllib.request.Request({url:?} + "/api/v1/dirs/")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"alice:wrong-%d" % i).decode())
    try:
        urllib.request.urlopen(req, context=ctx, timeout=60)
        code = 200
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception:
        code = 0  # closed: past the address's share of connections
    with lock:
        codes.append(code)
ts = [threading.Thread(target=one, args=(i,)) for i in range(100)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps({{str(c): codes.count(c) for c in set(codes)}}))
"#,
        ca = f.ca.to_str().unwrap(),
        url = f.https_url.as_ref().unwrap().trim_end_matches('/'),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let r = json_report(out, "100 parallel wrong passwords over HTTPS");
    // The edge allows 10 failures per address and account: no more than
    // 10 were checked (401); the rest were refused unchecked (429) or,
    // past the address's 64 connections, closed (0).
    let n = |code: &str| r[code].as_u64().unwrap_or(0);
    assert!((1..=10).contains(&n("401")), "{r}");
    assert_eq!(n("401") + n("429") + n("0"), 100, "{r}");
}

#[test]
fn tus_uploads_are_capped_per_account_and_by_the_space_left() {
    let f = Ferry::up_with(&["--max-upload-bytes", "1125899906842624"]);
    f.add_account("alice");
    let script = format!(
        r#"
import base64, json, ssl, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile={ca:?})
auth = "Basic " + base64.b64encode(b"alice:" + {pw:?}.encode()).decode()
def create(length, i):
    req = urllib.request.Request({url:?} + "/api/v1/uploads/", method="POST")
    req.add_header("Authorization", auth)
    req.add_header("Tus-Resumable", "1.0.0")
    req.add_header("Upload-Length", str(length))
    req.add_header("Upload-Metadata", "filename " + base64.b64encode(b"f%d.bin" % i).decode())
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code
huge = create(1 << 50, 0)
codes = [create(10, i) for i in range(1, 102)]
print(json.dumps({{"huge": huge, "created": codes.count(201), "last": codes[-1]}}))
"#,
        ca = f.ca.to_str().unwrap(),
        pw = PASSWORD,
        url = f.https_url.as_ref().unwrap().trim_end_matches('/'),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let r = json_report(out, "tus: 1 PiB announced, then 101 small ones");
    // 1 PiB does not fit on this volume: refused before anything is written.
    assert_eq!(r["huge"], 507, "{r}");
    // 100 unfinished uploads per account; the 101st waits for one to end.
    assert_eq!(r["created"], 100, "{r}");
    assert_eq!(r["last"], 409, "{r}");
}

#[test]
fn a_download_nobody_reads_is_closed_after_the_idle_timeout() {
    let f = Ferry::up_with(&["--https-idle-timeout-secs", "2"]);
    f.add_account("alice");
    let c = f.curl().user("alice");
    let local = f.dir.path().join("big.bin");
    random_file(&local, 24 * 1024 * 1024);
    let r = c.run(&["-T", local.to_str().unwrap()], "/api/v1/files/big.bin");
    assert_eq!(r.status, 201, "{}", r.text());
    let script = format!(
        r#"
import base64, json, socket, ssl, time
ctx = ssl.create_default_context(cafile={ca:?})
ctx.check_hostname = False
ctx.set_alpn_protocols(["http/1.1"])
raw = socket.create_connection(("127.0.0.1", {port}))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s = ctx.wrap_socket(raw)
auth = base64.b64encode(b"alice:" + {pw:?}.encode()).decode()
s.sendall(("GET /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n" % auth).encode())
time.sleep(6)  # read nothing: the server's writes stall
got, eof = 0, False
s.settimeout(3)
try:
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            eof = True
            break
        got += len(chunk)
except (socket.timeout, OSError, ssl.SSLError):
    pass
print(json.dumps({{"got": got, "eof": eof}}))
"#,
        ca = f.ca.to_str().unwrap(),
        port = https_port(&f),
        pw = PASSWORD,
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let r = json_report(out, "a 24 MiB download nobody reads");
    // Closed by the server, with most of the file never sent.
    assert_eq!(r["eof"], true, "{r}");
    assert!(r["got"].as_u64().unwrap() < 24 * 1024 * 1024, "{r}");
}
