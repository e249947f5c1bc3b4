//! Notifications end to end: a webhook receiver and a real SMTP server
//! (aiosmtpd) on loopback. A route whose partner is down notifies both
//! exactly once when its retries are exhausted, across a SIGKILL of the
//! primary in a three-server cluster; the webhook's signature verifies.
//! Mail goes over STARTTLS with AUTH; an SMTP server that never answers
//! delays no transfer; bans and test notifications arrive.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{add_unreachable_partner, ClusterSpec, TestCluster};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
struct Hooked {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A webhook receiver: keeps every request and answers 200.
struct Hook {
    port: u16,
    got: Arc<Mutex<Vec<Hooked>>>,
}

impl Hook {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = HashMap::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                            }
                        }
                        let length = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0usize);
                        let mut body = vec![0u8; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        kept.lock().unwrap().push(Hooked { headers, body });
                        let mut out = &stream;
                        if out
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ferry-hook", self.port)
    }

    fn requests(&self) -> Vec<Hooked> {
        self.got.lock().unwrap().clone()
    }
}

/// aiosmtpd (tests/notify/smtp_sink.py), keeping each message as a file.
struct SmtpSink {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl SmtpSink {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let out = dir.join(format!("mail-{}", rand_suffix()));
        std::fs::create_dir_all(&out).unwrap();
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/notify/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self { child, port, out }
    }

    /// The messages received so far, in order, as the sink parsed them:
    /// `to`, `from`, `subject`, `message_id`, `body`.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of a kept message, as text.
fn field<'a>(message: &'a Value, name: &str) -> &'a str {
    message[name].as_str().unwrap_or_default()
}

fn verify_signature(secret: &str, hooked: &Hooked) {
    let timestamp = &hooked.headers["x-ferry-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&hooked.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        hooked.headers["x-ferry-signature"], expected,
        "the webhook signature does not verify"
    );
    // And a tampered body does not.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&hooked.body[1..]);
    assert_ne!(
        hooked.headers["x-ferry-signature"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
}

const THREE: ClusterSpec = ClusterSpec::active_active(&["s1", "s2", "s3"]);

/// The event queue of `ferry up`, newest first.
fn up_events(f: &Ferry) -> Vec<Value> {
    let events: Value =
        serde_json::from_str(&f.admin_ok(&["event", "list", "--json", "--limit", "1000"], None))
            .unwrap();
    events.as_array().unwrap().clone()
}

fn events(c: &TestCluster, i: usize) -> Vec<Value> {
    c.json(i, &["event", "list", "--json", "--limit", "1000"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_failed_route_notifies_a_webhook_and_a_mailbox_once_across_a_primary_kill() {
    let hook = Hook::start();
    let mut c = TestCluster::start(THREE);
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    let smtp = SmtpSink::start(c.root.path(), &[]);
    let key = c.account_with_key(0, "alice");
    add_unreachable_partner(
        |a| {
            c.admin_ok(0, a, None);
        },
        c.root.path(),
        &key.with_extension("pub"),
    );
    let admin = |args: &[&str]| c.admin_ok(0, args, None);
    admin(&[
        "route",
        "add",
        "out",
        "--account",
        "alice",
        "--match",
        "*.csv",
        "--action",
        "push:nobody",
        "--max-attempts",
        "3",
        "--retry-base-ms",
        "3000",
    ]);
    let secret = "hook-signing-key-0123456789";
    let secret_file = c.root.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    admin(&[
        "notify",
        "endpoint",
        "add",
        "hook",
        "--webhook",
        &hook.url(),
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--retry-base-secs",
        "1",
    ]);
    admin(&[
        "notify",
        "endpoint",
        "add",
        "mail",
        "--smtp",
        "127.0.0.1",
        "--port",
        &smtp.port.to_string(),
        "--tls",
        "none",
        "--from",
        "ferry@example.com",
        "--to",
        "ops@example.com,oncall@example.com",
        "--retry-base-secs",
        "1",
    ]);
    admin(&[
        "notify",
        "rule",
        "add",
        "failed-hook",
        "--on",
        "event-failed",
        "--route",
        "out",
        "--to",
        "hook",
    ]);
    admin(&[
        "notify",
        "rule",
        "add",
        "failed-mail",
        "--on",
        "event-failed",
        "--partner",
        "nobody",
        "--to",
        "mail",
    ]);
    admin(&[
        "notify",
        "rule",
        "add",
        "roles",
        "--on",
        "role-change",
        "--to",
        "hook",
    ]);
    let rules = admin(&["notify", "rule", "list"]);
    assert!(
        rules.contains("failed-hook") && rules.contains("event-failed"),
        "{rules}"
    );

    let data = c.root.path().join("x.csv");
    std::fs::write(&data, "id,amount\n1,100\n").unwrap();
    let out = c.sftp(
        "alice",
        &key,
        &format!("put {} x.csv\n", data.display()),
        c.root.path(),
    );
    assert_ok(&out);

    // The first attempt fails at once (nothing listens); then the primary dies.
    let upload_event = |c: &TestCluster, i: usize| {
        events(c, i)
            .into_iter()
            .find(|e| e["kind"] == "upload" && e["route"] == "out")
    };
    assert!(
        wait_until(20, || upload_event(&c, 0)
            .is_some_and(|e| e["attempts"].as_u64().unwrap_or(0) >= 1)),
        "no first attempt"
    );
    let primary = c.primary().unwrap();
    println!(
        "fault: SIGKILL the primary {} after the first attempt",
        c.servers[primary].name
    );
    c.kill(primary);
    let alive = (0..3).find(|&i| i != primary).unwrap();
    assert!(
        wait_until(60, || upload_event(&c, alive)
            .is_some_and(|e| e["status"] == "failed")),
        "the event did not fail: {:?}",
        upload_event(&c, alive)
    );
    let event = upload_event(&c, alive).unwrap();
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["attempts"], 3);

    let failed_hooks = || {
        hook.requests()
            .into_iter()
            .filter(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["trigger"] == "event-failed"
            })
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(60, || !failed_hooks().is_empty()
            && !smtp.messages().is_empty()),
        "notifications missing: hook {:?}, mail {}",
        hook.requests(),
        smtp.messages().len()
    );
    // Nothing arrives twice, even given time to.
    std::thread::sleep(Duration::from_secs(5));
    let hooks = failed_hooks();
    assert_eq!(hooks.len(), 1, "webhook calls: {hooks:?}");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "mails: {mails:?}");

    let hooked = &hooks[0];
    verify_signature(secret, hooked);
    let body: Value = serde_json::from_slice(&hooked.body).unwrap();
    println!("webhook body: {body}");
    assert_eq!(body["rule"], "failed-hook");
    assert_eq!(body["event_id"], event_id.as_str());
    assert_eq!(body["account"], "alice");
    assert_eq!(body["route"], "out");
    assert_eq!(body["file"], "/x.csv");
    assert_eq!(body["partners"], serde_json::json!(["nobody"]));
    assert_eq!(body["attempts"], 3);
    assert!(body["error"].as_str().unwrap().len() > 3, "{body}");
    assert_eq!(
        hooked.headers["x-ferry-notification"],
        body["id"].as_str().unwrap()
    );
    assert_eq!(hooked.headers["content-type"], "application/json");

    let mail = &mails[0];
    println!("mail: {mail}");
    let subject = field(mail, "subject");
    assert!(
        subject.starts_with("[Ferry] route out failed on /x.csv"),
        "{subject}"
    );
    assert_eq!(
        mail["to"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    let text = field(mail, "body");
    for needle in [
        "File:", "/x.csv", "Partner:", "nobody", "Error:", &event_id, "Account:",
    ] {
        assert!(text.contains(needle), "the mail lacks {needle:?}: {text}");
    }
    // The two notifications are done events of kind notify, once each.
    let notes: Vec<Value> = events(&c, alive)
        .into_iter()
        .filter(|e| e["kind"] == "notify" && e["notice"]["trigger"] == "event-failed")
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|e| e["status"] == "done"), "{notes:?}");
    assert!(field(mail, "message_id").contains(
        notes
            .iter()
            .find(|e| e["notice"]["endpoint"] == "mail")
            .unwrap()["id"]
            .as_str()
            .unwrap()
    ));

    // The new primary said so, once per term.
    let roles: Vec<Value> = hook
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["trigger"] == "role-change")
        .collect();
    println!("role changes: {roles:?}");
    assert!(
        roles.iter().any(|b| b["node"] != c.servers[primary].name),
        "no role-change notice from the new primary"
    );
    let mut terms: Vec<u64> = roles.iter().map(|b| b["term"].as_u64().unwrap()).collect();
    let all = terms.len();
    terms.dedup();
    assert_eq!(terms.len(), all, "a term notified twice: {roles:?}");
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=smtp test CA",
        "-days",
        "2",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "smtp.key",
        "-out",
        "smtp.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("smtp.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "smtp.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "smtp.crt",
        "-days",
        "2",
        "-extfile",
        "smtp.ext",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("smtp.crt"),
        dir.join("smtp.key"),
    )
}

#[test]
fn mail_goes_over_starttls_with_auth_and_a_dead_smtp_server_delays_no_transfer() {
    let f = Ferry::up();
    let dir = f.dir.path();
    let (ca, cert, cert_key) = tls_files(dir);
    let smtp = SmtpSink::start(
        dir,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            cert_key.to_str().unwrap(),
            "--auth",
            "ferry:mail-password-1",
        ],
    );
    // Accepts connections (the kernel does) and never says a word.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();

    let key = f.account_with_key("alice");
    f.admin_ok(
        &["account", "add", "bob", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    f.admin_ok(
        &[
            "route",
            "add",
            "to-bob",
            "--account",
            "alice",
            "--match",
            "*.txt",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    let pw = dir.join("smtp.pw");
    std::fs::write(&pw, "mail-password-1\n").unwrap();
    f.admin_ok(
        &[
            "notify",
            "endpoint",
            "add",
            "mail",
            "--smtp",
            "127.0.0.1",
            "--port",
            &smtp.port.to_string(),
            "--tls",
            "starttls",
            "--user",
            "ferry",
            "--password-file",
            pw.to_str().unwrap(),
            "--tls-ca-file",
            ca.to_str().unwrap(),
            "--from",
            "Ferry <ferry@example.com>",
            "--to",
            "ops@example.com",
            "--link-base",
            "https://ferry.example.com:8443",
        ],
        None,
    );
    f.admin_ok(
        &[
            "notify",
            "endpoint",
            "add",
            "dead",
            "--smtp",
            "127.0.0.1",
            "--port",
            &dead_port.to_string(),
            "--tls",
            "none",
            "--from",
            "ferry@example.com",
            "--to",
            "nobody@example.com",
            "--max-attempts",
            "2",
            "--retry-base-secs",
            "1",
        ],
        None,
    );
    let listed = f.admin_ok(&["notify", "endpoint", "list", "--json"], None);
    assert!(
        !listed.contains("mail-password-1"),
        "a secret was listed: {listed}"
    );
    for (name, on, to) in [
        ("arrivals", "transfer-done", "mail"),
        ("arrivals-dead", "transfer-done", "dead"),
        ("bans", "login-ban", "mail"),
    ] {
        let mut args = vec!["notify", "rule", "add", name, "--on", on, "--to", to];
        if on == "transfer-done" {
            args.extend(["--account", "alice"]);
        }
        f.admin_ok(&args, None);
    }
    // A rule with a filter its trigger cannot have is refused.
    let bad = f.admin(
        &[
            "notify",
            "rule",
            "add",
            "x",
            "--on",
            "login-ban",
            "--account",
            "alice",
            "--to",
            "mail",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("takes no account"),
        "{}",
        stderr(&bad)
    );
    // So is removing an endpoint a rule uses.
    let busy = f.admin(&["notify", "endpoint", "remove", "dead"], None);
    assert!(!busy.status.success());

    // Three uploads: their route events finish while every notification
    // to the dead server waits out its timeout.
    let started = Instant::now();
    let mut batch = String::new();
    for name in ["a.txt", "b.txt", "c.txt"] {
        let path = dir.join(name);
        std::fs::write(&path, format!("file {name}\n")).unwrap();
        batch.push_str(&format!("put {} {name}\n", path.display()));
    }
    assert_ok(&f.sftp_key("alice", &key, &batch, dir));
    let routes_done = |f: &Ferry| {
        up_events(f)
            .iter()
            .filter(|e| e["route"] == "to-bob" && e["status"] == "done")
            .count()
    };
    assert!(
        wait_until(30, || routes_done(&f) == 3),
        "route events not done"
    );
    let took = started.elapsed();
    println!("three uploads routed in {took:?} with the dead SMTP server pending");
    for name in ["a.txt", "b.txt", "c.txt"] {
        assert!(
            f.repository.join("bob/in").join(name).exists(),
            "{name} not copied"
        );
    }
    let events = up_events(&f);
    let dead_pending = events
        .iter()
        .filter(|e| e["notice"]["endpoint"] == "dead" && e["status"] != "done")
        .count();
    assert!(
        dead_pending >= 1,
        "the dead server's notifications: {events:?}"
    );

    // The mail over STARTTLS + AUTH: one per arrival.
    let arrived = |n: usize| {
        smtp.messages()
            .iter()
            .filter(|m| field(m, "subject").contains("completed"))
            .count()
            >= n
    };
    assert!(
        wait_until(30, || arrived(3)),
        "mails: {:?}",
        smtp.messages()
    );
    let mails = smtp.messages();
    for name in ["a.txt", "b.txt", "c.txt"] {
        let mail = mails
            .iter()
            .find(|m| field(m, "subject").contains(&format!("/{name} ")))
            .unwrap_or_else(|| panic!("no mail about {name}: {mails:?}"));
        let text = field(mail, "body");
        assert!(
            text.contains("Account:") && text.contains("alice"),
            "{text}"
        );
        assert_eq!(field(mail, "from"), "Ferry <ferry@example.com>");
    }

    // A ban notifies; a test notification arrives.
    f.admin_ok(
        &["ban", "add", "192.0.2.7", "--reason", "too many failures"],
        None,
    );
    let test = f.admin_ok(&["notify", "endpoint", "test", "mail"], None);
    assert!(test.contains("queued as event"), "{test}");
    assert!(
        wait_until(30, || {
            let m = smtp.messages();
            m.iter().any(|m| {
                field(m, "body").contains("192.0.2.7")
                    && field(m, "body").contains("too many failures")
            }) && m
                .iter()
                .any(|m| field(m, "subject").contains("test notification to mail"))
        }),
        "ban or test mail missing: {:?}",
        smtp.messages()
    );
    // They went out while the silent server still held its first attempt
    // (30 s): it holds one notice worker, not the others.
    let events = up_events(&f);
    let dead_ended = events
        .iter()
        .filter(|e| e["notice"]["endpoint"] == "dead" && !e["last_error"].is_null())
        .count();
    assert_eq!(
        dead_ended, 0,
        "other mail waited for the dead server: {events:?}"
    );

    // A home past 70 % of its quota (3 of 4 files) notifies at the next
    // upload, once.
    f.admin_ok(&["account", "set", "alice", "--quota-files", "4"], None);
    f.admin_ok(
        &[
            "notify",
            "rule",
            "add",
            "full",
            "--on",
            "quota:70",
            "--account",
            "alice",
            "--to",
            "mail",
        ],
        None,
    );
    let d = dir.join("d.txt");
    std::fs::write(&d, "d\n").unwrap();
    assert_ok(&f.sftp_key("alice", &key, &format!("put {} d.txt\n", d.display()), dir));
    let quota_mails = || {
        smtp.messages()
            .into_iter()
            .filter(|m| field(m, "subject").contains("of its quota"))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(30, || !quota_mails().is_empty()),
        "no quota mail"
    );
    std::thread::sleep(Duration::from_secs(2));
    let q = quota_mails();
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        field(&q[0], "subject").contains("account alice uses 75 % of its quota"),
        "{q:?}"
    );

    // bounded by the send timeout, and retry.
    let dead_attempted = || {
        up_events(&f)
            .into_iter()
            .find(|e| e["notice"]["endpoint"] == "dead" && !e["last_error"].is_null())
    };
    assert!(
        wait_until(60, || dead_attempted().is_some()),
        "no attempt to the dead server ended"
    );
    let failed = dead_attempted().unwrap();
    println!("dead endpoint: {}", failed["last_error"]);
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("SMTP 127.0.0.1:{dead_port}")),
        "{failed}"
    );
    drop(dead);
}
