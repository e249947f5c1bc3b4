//! `/metrics` on the server's admin listener, read the way Prometheus reads
//! it (OpenMetrics, as its content type says, parsed by the Python client's
//! strict OpenMetrics parser):
//! logins, sessions, transfers with their bytes and durations, the event
//! queue and the role, with bounded labels.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::*;

/// Parses the exposition text into (name, labels, value) samples.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
print(json.dumps(out))
"#;

struct Scrape(Vec<serde_json::Value>);

impl Scrape {
    /// The metrics of `ferry up`'s server.
    fn of(f: &Ferry) -> Self {
        let data = f.dir.path().join("data");
        let url = std::fs::read_to_string(data.join("admin.url")).unwrap();
        let ca = data.join("pki/ca.crt");
        Self::at(
            &format!("{}/metrics", url.trim()),
            &["--cacert", ca.to_str().unwrap()],
        )
    }

    /// The metrics at `url`, curl given `args`.
    fn at(url: &str, args: &[&str]) -> Self {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "30"])
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut parse = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        parse.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let parsed = parse.wait_with_output().unwrap();
        assert!(
            parsed.status.success(),
            "the exposition does not parse:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        Self(serde_json::from_slice(&parsed.stdout).unwrap())
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][k] == *v))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", self.0))["value"]
            .as_f64()
            .unwrap()
    }
}

#[test]
fn the_server_counts_logins_sessions_transfers_and_reports_its_queue() {
    let edge_metrics = format!("127.0.0.1:{}", free_port());
    let f = Ferry::up_with(&["--edge-metrics-listen", &edge_metrics]);
    let edge_url = format!("http://{edge_metrics}/metrics");
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("a.dat"), 300_000);

    // An upload a route copies to another account: an event and its
    // attempt; a folder monitor's ingest.
    f.add_account("bob");
    f.admin_ok(
        &[
            "route",
            "add",
            "copy",
            "--account",
            "alice",
            "--match",
            "*.dat",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    let drop_dir = f.dir.path().join("drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    f.admin_ok(
        &[
            "monitor",
            "add",
            "drop",
            "--dir",
            drop_dir.to_str().unwrap(),
            "--match",
            "*.txt",
            "--account",
            "bob",
            "--target-dir",
            "/dropped",
        ],
        None,
    );
    std::fs::write(drop_dir.join("note.txt"), "hello").unwrap();

    let out = f.sftp_password("alice", "wrong-password", "pwd\n");
    assert!(!out.status.success());
    assert_ok(&f.sftp_key("alice", &key, "put a.dat\nget a.dat back.dat\n", &work));
    // And an HTTPS download of the same file.
    let fetched = work.join("https.dat");
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30", "--cacert"])
        .arg(&f.ca)
        .args(["-u", &format!("alice:{PASSWORD}"), "-o"])
        .arg(&fetched)
        .arg(format!(
            "{}/api/v1/files/a.dat",
            f.https_url.as_ref().unwrap()
        ))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 300_000);
    assert!(wait_until(30, || f
        .repository
        .join("bob/in/a.dat")
        .exists()
        && f.repository.join("bob/dropped/note.txt").exists()));
    assert!(wait_until(10, || {
        let m = Scrape::of(&f);
        m.value(
            "ferry_event_attempts_total",
            &[("kind", "upload"), ("outcome", "done")],
        ) == 1.0
            && m.value("ferry_monitor_ingests_total", &[("name", "drop")]) == 1.0
    }));

    let m = Scrape::of(&f);
    assert!(
        m.value(
            "ferry_logins_total",
            &[("method", "password"), ("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        m.value(
            "ferry_logins_total",
            &[("method", "publickey"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(m.value("ferry_sessions_started_total", &[("protocol", "sftp")]) >= 1.0);
    let up = [
        ("protocol", "sftp"),
        ("direction", "upload"),
        ("status", "completed"),
    ];
    assert_eq!(m.value("ferry_transfers_total", &up), 1.0);
    let down = [
        ("protocol", "sftp"),
        ("direction", "download"),
        ("status", "completed"),
    ];
    assert_eq!(m.value("ferry_transfers_total", &down), 1.0);
    let https_down = [
        ("protocol", "https"),
        ("direction", "download"),
        ("status", "completed"),
    ];
    assert_eq!(m.value("ferry_transfers_total", &https_down), 1.0);
    assert_eq!(
        m.value(
            "ferry_transfer_bytes_total",
            &[("protocol", "https"), ("direction", "download")]
        ),
        300_000.0
    );
    assert_eq!(
        m.value(
            "ferry_route_attempts_total",
            &[("route", "copy"), ("outcome", "done")]
        ),
        1.0
    );
    assert!(m.value("ferry_store_write_seconds_count", &[]) >= 3.0);
    assert_eq!(
        m.value("ferry_raft_commit_index", &[]),
        0.0,
        "no Raft alone"
    );
    // The edge of `ferry up` on its own listener: the HTTPS request and the
    // SSH logins.
    let e = Scrape::at(&edge_url, &[]);
    assert_eq!(
        e.value(
            "ferry_edge_https_requests_total",
            &[("area", "files"), ("status", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        e.value(
            "ferry_edge_https_request_duration_seconds_count",
            &[("area", "files")]
        ),
        1.0
    );
    assert!(e.value("ferry_edge_ssh_connections_total", &[]) >= 2.0);
    // The in-process edge's requests to its server are timed too: the
    // upload's writes and the download's reads at least.
    assert!(e.value("ferry_edge_upstream_request_duration_seconds_count", &[]) >= 10.0);
    assert_eq!(
        m.value(
            "ferry_transfer_bytes_total",
            &[("protocol", "sftp"), ("direction", "upload")]
        ),
        300_000.0
    );
    assert_eq!(
        m.value(
            "ferry_transfer_duration_seconds_count",
            &[("protocol", "sftp"), ("direction", "download")]
        ),
        1.0
    );
    assert_eq!(m.value("ferry_events", &[("state", "failed")]), 0.0);
    assert_eq!(m.value("ferry_event_oldest_pending_age_seconds", &[]), 0.0);
    assert_eq!(m.value("ferry_primary", &[]), 1.0);
    assert_eq!(m.value("ferry_writable", &[]), 1.0);
    // A file held open for writing is an upload in flight until closed.
    let holder = r#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="alice", pkey=paramiko.Ed25519Key.from_private_key_file(sys.argv[2]))
s = paramiko.SFTPClient.from_transport(t)
f = s.open("held.dat", "wb")
f.write(b"x" * 1000)
f.flush()
print("open", flush=True)
sys.stdin.readline()
f.close()
t.close()
"#;
    let mut child = Command::new("python3")
        .args([
            "-c",
            holder,
            &f.sftp_port.to_string(),
            key.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "open");
    let during = Scrape::of(&f);
    assert_eq!(
        during.value("ferry_transfers_in_flight", &[("state", "upload")]),
        1.0
    );
    assert_eq!(
        during.value("ferry_sessions_open", &[("protocol", "sftp")]),
        1.0
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(wait_until(10, || {
        Scrape::of(&f).value("ferry_transfers_in_flight", &[("state", "upload")]) == 0.0
    }));

    // The sessions ended: none open.
    assert!(wait_until(10, || {
        Scrape::of(&f).value("ferry_sessions_open", &[("protocol", "sftp")]) == 0.0
    }));
    // Labels are bounded: no account, file or address in any of them.
    for s in &m.0 {
        let labels = s["labels"].to_string();
        for leak in ["alice", "a.dat", "127.0.0.1"] {
            assert!(!labels.contains(leak), "{leak} in a label: {s}");
        }
    }
}

#[test]
fn the_edge_counts_connections_logins_protocol_errors_and_its_servers() {
    use common::cluster::{ClusterSpec, TestCluster};
    let c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    let key = c.account_with_key(0, "alice");
    let (_edge, values) = c.edge_with(
        &[0, 1, 2],
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
        &["sftp", "metrics"],
    );
    let port: u16 = values[0].rsplit(':').next().unwrap().parse().unwrap();
    let url = &values[1];
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let work = c.root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let ok = sftp_with_key(port, c.root.path(), "alice", &key, "pwd\n", &work);
    assert_ok(&ok);
    let other = client_key(c.root.path(), "mallory_key");
    let refused = sftp_with_key(port, c.root.path(), "alice", &other, "pwd\n", &work);
    assert!(!refused.status.success());
    {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let _ = tcp.read_to_end(&mut Vec::new());
    }
    assert!(wait_until(10, || {
        Scrape::at(url, &[]).value("ferry_edge_protocol_errors_total", &[]) >= 1.0
    }));
    let m = Scrape::at(url, &[]);
    assert!(m.value("ferry_edge_ssh_connections_total", &[]) >= 3.0);
    assert!(m.value("ferry_edge_logins_total", &[("outcome", "ok")]) >= 1.0);
    assert!(m.value("ferry_edge_login_duration_seconds_count", &[]) >= 1.0);
    // Every request to a server was timed (the login and the session's).
    assert!(m.value("ferry_edge_upstream_request_duration_seconds_count", &[]) >= 2.0);
    assert_eq!(m.value("ferry_edge_upstream_servers", &[]), 3.0);
    assert!(m.value("ferry_edge_upstream_servers_connected", &[]) >= 1.0);
    assert!(wait_until(10, || {
        Scrape::at(url, &[]).value("ferry_edge_ssh_connections_open", &[]) == 0.0
    }));

    // The servers' Raft numbers: the primary sees both others caught up.
    let primary = c.primary().unwrap();
    let ca = c.root.path().join("pki/ca.crt");
    let scrape = |i: usize| {
        Scrape::at(
            &format!("{}/metrics", c.servers[i].admin_url),
            &["--cacert", ca.to_str().unwrap()],
        )
    };
    assert!(wait_until(10, || {
        let m = scrape(primary);
        (0..3).filter(|&i| i != primary).all(|i| {
            m.value(
                "ferry_raft_replication_lag_entries",
                &[("member", &*c.servers[i].name)],
            ) == 0.0
        })
    }));
    let m = scrape(primary);
    assert_eq!(m.value("ferry_primary", &[]), 1.0);
    let last = m.value("ferry_raft_last_log_index", &[]);
    assert!(last > 0.0);
    let commit = m.value("ferry_raft_commit_index", &[]);
    assert!(
        commit > 0.0 && commit <= last,
        "commit {commit}, last {last}"
    );
    assert!(m.value("ferry_raft_last_applied_index", &[]) <= last);
    assert!(m.value("ferry_raft_leader_changes_total", &[]) >= 1.0);
    let follower = (0..3).find(|&i| i != primary).unwrap();
    assert_eq!(scrape(follower).value("ferry_primary", &[]), 0.0);
}

#[test]
fn metrics_say_they_are_openmetrics_and_the_example_alert_rules_check() {
    let f = Ferry::up();
    let data = f.dir.path().join("data");
    let url = std::fs::read_to_string(data.join("admin.url")).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(data.join("pki/ca.crt"))
        .arg(format!("{}/metrics", url.trim()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    // Counters are written as OpenMetrics writes them (a family `x`, a
    // sample `x_total`); the content type must say so, or Prometheus reads
    // them as untyped metrics.
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    // Prometheus's own checker on the example alert rules (README
    // "Monitoring").
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/prometheus-alerts.yml");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian's prometheus package) is needed");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
