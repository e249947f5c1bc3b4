//! The admin console on the server's admin listener: its session and CSRF
//! rules through curl, the pages in headless Chromium (Debian's, driven by
//! playwright-core; screenshots in `target/test-artifacts/`), and a file
//! tracking search timed over 100,000 transfer-log rows.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "common/sshd.rs"]
mod sshd;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::http::Curl;
use common::*;

const ADMIN_PASSWORD: &str = "Console-Admin-Pass-41";
const AUDITOR_PASSWORD: &str = "Console-Auditor-Pass-73";

/// curl bound to the admin listener of `f`, with `auth` on every run.
fn admin_curl(f: &Ferry, auth: &[&str]) -> Curl {
    let url = std::fs::read_to_string(f.dir.path().join("data/admin.url")).unwrap();
    Curl {
        base: url.trim().trim_end_matches('/').to_owned(),
        ca: f.ca.clone(),
        tmp: f.dir.path().to_owned(),
        auth: auth.iter().map(|s| s.to_string()).collect(),
    }
}

fn bearer(f: &Ferry) -> Curl {
    let token = std::fs::read_to_string(f.dir.path().join("data/admin.token")).unwrap();
    admin_curl(
        f,
        &["-H", &format!("Authorization: Bearer {}", token.trim())],
    )
}

fn add_admin(f: &Ferry, name: &str, role: &str, password: &str) {
    f.admin_ok(
        &["admin", "add", name, "--role", role, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
}

/// Logs in to the console as `name`: the cookie and the CSRF token.
fn console_login(f: &Ferry, name: &str, password: &str) -> (String, String) {
    let r = admin_curl(f, &["-u", &format!("{name}:{password}")])
        .run(&["-X", "POST"], "/api/v1/console/session");
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = r.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let value = cookie.split(';').next().unwrap().to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["name"], name);
    (value, csrf)
}

#[test]
fn console_sessions_need_csrf_for_changes_and_keep_roles() {
    let f = Ferry::up();
    add_admin(&f, "ann", "admin", ADMIN_PASSWORD);
    add_admin(&f, "otto", "auditor", AUDITOR_PASSWORD);

    // The shell: served without credentials, with a strict CSP.
    let page = admin_curl(&f, &[]).get("/console/");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!page.text().contains("<script>"), "no inline script");
    assert_eq!(admin_curl(&f, &[]).get("/console/console.js").status, 200);
    // Never on the edge.
    let edge = f.curl().get("/console/");
    assert!(
        edge.status != 200 || !edge.text().contains("Ferry admin console"),
        "{}",
        edge.text()
    );
    let edge_login = f.curl().run(
        &["-u", &format!("ann:{ADMIN_PASSWORD}"), "-X", "POST"],
        "/api/v1/console/session",
    );
    assert_ne!(edge_login.status, 201, "{}", edge_login.text());
    assert!(edge_login
        .header("set-cookie")
        .is_none_or(|c| !c.contains("ferry_console")));

    // A wrong password fails like any admin login, and is not a session.
    let bad = admin_curl(&f, &["-u", "ann:wrong"]).run(&["-X", "POST"], "/api/v1/console/session");
    assert_eq!(bad.status, 401, "{}", bad.text());

    let (cookie, csrf) = console_login(&f, "ann", ADMIN_PASSWORD);
    let session = admin_curl(&f, &["-H", &format!("Cookie: {cookie}")]);
    let me = session.get("/api/v1/whoami");
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["name"], "ann");
    assert_eq!(
        session.get("/api/v1/console/session").json()["csrf_token"],
        csrf
    );

    // A change without the CSRF header, or with a wrong one, is refused.
    let body = r#"{"name":"viaconsole","role":"operator"}"#;
    let json = ["-H", "Content-Type: application/json", "-d", body];
    let refused = session.run(&json, "/api/v1/admins");
    assert_eq!(refused.status, 403, "{} {}", refused.text(), refused.stderr);
    let wrong = session.run(
        &[&json[..], &["-H", "X-CSRF-Token: 00"]].concat(),
        "/api/v1/admins",
    );
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    let header = format!("X-CSRF-Token: {csrf}");
    let made = session.run(&[&json[..], &["-H", &header]].concat(), "/api/v1/admins");
    assert_eq!(made.status, 201, "{}", made.text());

    // The auditor's session reads but changes nothing, CSRF or not.
    let (a_cookie, a_csrf) = console_login(&f, "otto", AUDITOR_PASSWORD);
    let auditor = admin_curl(&f, &["-H", &format!("Cookie: {a_cookie}")]);
    assert_eq!(auditor.get("/api/v1/accounts").status, 200);
    let a_header = format!("X-CSRF-Token: {a_csrf}");
    let denied = auditor.run(
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"name":"x","role":"admin"}"#,
            "-H",
            &a_header,
        ],
        "/api/v1/admins",
    );
    assert_eq!(denied.status, 403, "{}", denied.text());

    // The changes and the refusal are in the audit trail under the admins' names.
    let audit = bearer(&f).get("/api/v1/audit").text();
    assert!(
        audit.contains("\"admin\":\"ann\"") && audit.contains("viaconsole"),
        "{audit}"
    );
    assert!(audit.contains("\"admin\":\"otto\""), "{audit}");

    // Failed console logins count with the admin's other password
    // failures: past the limit, even the right password is refused, on
    // the console and by HTTP Basic alike.
    // Every failure waits the same (300 ms under `ferry up
    // --auth-failure-delay-ms 300`), a wrong name like a wrong password.
    add_admin(&f, "tess", "operator", ADMIN_PASSWORD);
    f.add_account("tess");
    for who in ["tess:wrong", "nobody-here:wrong"] {
        let started = Instant::now();
        let r = admin_curl(&f, &["-u", who]).run(&["-X", "POST"], "/api/v1/console/session");
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(
            started.elapsed().as_millis() >= 300,
            "{who}: {:?}",
            started.elapsed()
        );
    }
    // The rest from another address (127.0.0.2 is loopback too), so that
    // only the name's count, not the address's, stops the account below.
    let started = Instant::now();
    for _ in 0..19 {
        let r = admin_curl(&f, &["-u", "tess:wrong", "--interface", "127.0.0.2"])
            .run(&["-X", "POST"], "/api/v1/console/session");
        assert_eq!(r.status, 401, "{}", r.text());
    }
    println!("19 more failed console logins in {:?}", started.elapsed());
    let right = format!("tess:{ADMIN_PASSWORD}");
    let locked = admin_curl(&f, &["-u", &right]).run(&["-X", "POST"], "/api/v1/console/session");
    assert_eq!(locked.status, 401, "{}", locked.text());
    assert_eq!(
        admin_curl(&f, &["-u", &right]).get("/api/v1/whoami").status,
        401
    );
    // The account of the same name is not locked out by the admin's failures.
    let account = f.curl().user("tess").get("/api/v1/dirs/");
    assert_eq!(account.status, 200, "{}", account.text());

    // Logout ends the session at once.
    let out = session.run(&["-X", "DELETE", "-H", &header], "/api/v1/console/session");
    assert_eq!(out.status, 204, "{}", out.text());
    assert_eq!(session.get("/api/v1/whoami").status, 401);
}

/// The browser side of the console test: `tests/browser/console_test.mjs`,
/// run once per phase with the environment it needs.
struct Browser {
    root: PathBuf,
    out: PathBuf,
    env: Vec<(String, String)>,
}

impl Browser {
    /// For the console at `url` (the admin listener), or None when the
    /// browser test is skipped.
    fn new(url: &str) -> Option<Self> {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        if std::env::var_os("FERRY_SKIP_BROWSER").is_some() {
            eprintln!("FERRY_SKIP_BROWSER is set: browser test skipped");
            return None;
        }
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists()
                && root
                    .join("tests/browser/node_modules/playwright-core")
                    .exists(),
            "needs Debian's chromium and `npm ci` in tests/browser (see .ci/run), \
             or FERRY_SKIP_BROWSER=1"
        );
        let out = root.join("target/test-artifacts");
        std::fs::create_dir_all(&out).unwrap();
        let env = [
            ("FERRY_URL", url.trim_end_matches('/')),
            ("FERRY_ADMIN", "ann"),
            ("FERRY_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("FERRY_AUDITOR", "otto"),
            ("FERRY_AUDITOR_PASSWORD", AUDITOR_PASSWORD),
            ("FERRY_OUT", out.to_str().unwrap()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        Some(Self { root, out, env })
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs one phase; its JSON result (the phase's screenshots checked).
    fn phase(&self, phase: &str) -> serde_json::Value {
        let started = Instant::now();
        let out = Command::new("node")
            .arg(self.root.join("tests/browser/console_test.mjs"))
            .current_dir(self.root.join("tests/browser"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FERRY_PHASE", phase)
            .output()
            .expect("node");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "console browser phase {phase} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        println!("phase {phase} ({:?}): {result:#}", started.elapsed());
        assert_eq!(result["ok"], true);
        for shot in result["screenshots"].as_array().unwrap() {
            let file = self.out.join(shot.as_str().unwrap());
            assert!(file.metadata().unwrap().len() > 5_000, "{}", file.display());
        }
        result
    }
}

/// Events of the server as `ferry event list --json`.
fn events(f: &Ferry) -> Vec<serde_json::Value> {
    let out = f.admin_ok(&["event", "list", "--json"], None);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The issue's story, in Chromium: the admin sets up an account, a partner
/// (a real OpenSSH sshd) and a route through the pages; a file uploaded over
/// SFTP is delivered, found in file tracking with its event and attempt; the
/// partner goes down and a resubmit's attempt fails with the reason; the
/// partner comes back and a bulk resubmit delivers. The auditor sees no
/// change control on any page and is refused a forced change.
#[test]
fn console_in_chromium_story_with_an_openssh_partner() {
    let f = Ferry::up();
    let url = std::fs::read_to_string(f.dir.path().join("data/admin.url")).unwrap();
    let Some(mut browser) = Browser::new(url.trim()) else {
        return;
    };
    let mut partner = sshd::start();
    let partner_dir = partner.root.join("inbox");
    std::fs::create_dir_all(&partner_dir).unwrap();
    let monitor_dir = f.dir.path().join("outbound");
    std::fs::create_dir_all(&monitor_dir).unwrap();
    add_admin(&f, "ann", "admin", ADMIN_PASSWORD);
    add_admin(&f, "otto", "auditor", AUDITOR_PASSWORD);
    let key = client_key(f.dir.path(), "partnerco_key");
    let key_pub = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(partner.dir.join("host_ed25519.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let name = format!("console-{}.csv", rand_suffix());
    for (k, v) in [
        ("FERRY_ACCOUNT", "partnerco"),
        ("FERRY_ACCOUNT_PASSWORD", "Partner-Co-Pass-2026!"),
        ("FERRY_ACCOUNT_KEY", key_pub.trim()),
        ("FERRY_PARTNER", "acme"),
        ("FERRY_PARTNER_HOST", "127.0.0.1"),
        ("FERRY_PARTNER_PORT", &partner.port.to_string()),
        ("FERRY_PARTNER_USER", &partner.user),
        ("FERRY_PARTNER_HOST_KEY", &partner.host_key_pub),
        (
            "FERRY_PARTNER_PRIVATE_KEY",
            std::fs::read_to_string(&partner.client_key).unwrap().trim(),
        ),
        ("FERRY_PARTNER_DIR", partner_dir.to_str().unwrap()),
        ("FERRY_MONITOR_DIR", monitor_dir.to_str().unwrap()),
        ("FERRY_FILE_NAME", &name),
    ] {
        browser.set(k, v);
    }

    // 1. Everything set up through the pages, checked through the CLI.
    let setup = browser.phase("setup");
    assert_eq!(setup["fingerprint"], fingerprint.as_str());
    assert_eq!(setup["tokenShown"], true);
    // The admin token made in the browser works, as its admin.
    let token = setup["adminToken"].as_str().unwrap();
    let me =
        admin_curl(&f, &["-H", &format!("Authorization: Bearer {token}")]).get("/api/v1/whoami");
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["name"], "ann");
    assert_eq!(setup["sorted"], "descending");
    assert_eq!(setup["filtered"], 1);
    assert!(setup["auditRows"].as_u64().unwrap() >= 8, "{setup}");
    assert!(
        setup["nextSlots"].as_str().unwrap().contains("03:00:00"),
        "{setup}"
    );
    let account: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "show", "partnerco", "--json"], None))
            .unwrap();
    assert_eq!(account["keys"], 1, "{account:#}");
    assert_eq!(account["quota_bytes"], 50_000_000, "{account:#}");
    let routes: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["route", "list", "--json"], None)).unwrap();
    assert_eq!(routes[0]["actions"][0]["partner"], "acme", "{routes:#}");
    assert_eq!(routes[0]["max_attempts"], 1, "{routes:#}");
    for (what, list) in [("schedule", "nightly-pull"), ("monitor", "outbound")] {
        let listed = f.admin_ok(&[what, "list", "--json"], None);
        assert!(listed.contains(list), "{listed}");
    }

    // 2. An SFTP upload with the key added in the browser; the route delivers it.
    let local = f.dir.path().join(&name);
    random_file(&local, 70_000);
    let out = f.sftp_key(
        "partnerco",
        &key,
        &format!("put {} {name}\n", local.display()),
        f.dir.path(),
    );
    assert_ok(&out);
    let status_count = |status: &str| events(&f).iter().filter(|e| e["status"] == status).count();
    assert!(
        wait_until(60, || status_count("done") == 1),
        "the route's event did not finish: {:?}",
        events(&f)
    );
    let delivered = partner_dir.join(&name);
    assert_eq!(sha256_file(&delivered), sha256_file(&local));

    // 3. File tracking: the transfer, its event and the done attempt.
    let track = browser.phase("track");
    assert!(track["transfersTile"].as_u64().unwrap() >= 1, "{track}");
    assert_eq!(track["rowsFound"], 2, "the upload and the push: {track}");
    assert_eq!(track["direction"], "upload", "{track}");
    let first = track["eventId"].as_str().unwrap().to_owned();
    let attempts = track["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{track}");
    assert!(attempts[0].as_str().unwrap().contains("done"), "{track}");
    let steps = track["stepsDone"].as_array().unwrap();
    assert!(
        steps.len() == 1 && steps[0].as_str().unwrap().starts_with("push:acme"),
        "{steps:?}"
    );

    // 4. The partner goes down; a resubmit from the transfer's page fails.
    partner.stop();
    std::fs::remove_file(&delivered).unwrap();
    let resubmitted = browser.phase("resubmit");
    let second = resubmitted["newId"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let attempt = resubmitted["attempt"].as_str().unwrap();
    assert!(attempt.contains("failed"), "{resubmitted}");
    assert!(
        attempt.contains("acme") || attempt.contains("connect") || attempt.contains("refused"),
        "the attempt's error names the partner or the connection: {attempt}"
    );
    assert!(
        resubmitted["dialogs"][0]
            .as_str()
            .unwrap()
            .contains("Queue event"),
        "{resubmitted}"
    );
    let mut on_transfer = resubmitted["onTransfer"].as_array().unwrap().clone();
    on_transfer.sort_by_key(|v| v.to_string());
    assert_eq!(on_transfer, ["done", "failed"], "{resubmitted}");
    assert!(!delivered.exists());
    let shown: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["event", "show", &second, "--json"], None)).unwrap();
    assert_eq!(shown["status"], "failed", "{shown:#}");
    assert_eq!(shown["resubmit_of"], first.as_str(), "{shown:#}");

    // 5. The partner is back; a bulk resubmit of the failed events delivers.
    partner.start_again();
    let bulk = browser.phase("bulk");
    assert_eq!(bulk["failedShown"], 1, "{bulk}");
    assert!(
        bulk["text"].as_str().unwrap().starts_with("1 of 1"),
        "{bulk}"
    );
    assert!(
        wait_until(60, || status_count("done") == 2),
        "the bulk resubmit did not deliver: {:?}",
        events(&f)
    );
    assert_eq!(sha256_file(&delivered), sha256_file(&local));
    assert_eq!(status_count("failed"), 1);

    // 6. The auditor: no change control anywhere, and refused when forcing one.
    let auditor = browser.phase("auditor");
    for (page, count) in auditor["controls"].as_object().unwrap() {
        assert_eq!(count, 0, "the auditor sees change controls on {page}");
    }
    // The admin sees them on every page that changes something.
    let admin = bulk["controls"].as_object().unwrap();
    assert_eq!(admin.len(), 12, "{bulk}");
    for (page, count) in admin {
        let reads_only = ["#/dashboard", "#/transfers"].contains(&page.as_str());
        assert_eq!(
            count.as_u64().unwrap() == 0,
            reads_only,
            "admin on {page}: {count}"
        );
    }
    assert_eq!(auditor["forcedResubmit"], 403, "{auditor}");
    assert_eq!(auditor["forcedAccount"], 403, "{auditor}");
    assert_eq!(auditor["noCsrf"], 403, "{auditor}");
    assert_eq!(events(&f).len(), 3, "no event was added by the auditor");

    // The browser's changes are in the audit trail under the admin's name.
    let audit = bearer(&f).get("/api/v1/audit?admin=ann").text();
    for change in [
        "POST /api/v1/console/session",
        "POST /api/v1/accounts",
        "POST /api/v1/partners",
        "POST /api/v1/routes",
        "/resubmit",
    ] {
        assert!(audit.contains(change), "{change} not audited: {audit}");
    }
}

/// The dashboard of a 3-server active/active cluster, one server down:
/// every member with its role, term and health, the leader's view of lag,
/// and the alert the cluster recorded.
#[test]
fn console_dashboard_shows_a_cluster_with_a_member_down() {
    use common::cluster::{ClusterSpec, TestCluster};
    let mut c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    c.admin_ok(
        0,
        &["admin", "add", "ann", "--role", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    // The console of a server that stays up; another one goes down.
    let watch = c.primary().unwrap();
    let down = (watch + 1) % 3;
    let Some(browser) = Browser::new(&c.servers[watch].admin_url) else {
        return;
    };
    c.kill(down);
    let down_name = c.servers[down].name;
    assert!(
        wait_until(30, || c.status(watch).to_string().contains("unreachable")
            || c.status(watch)["members"].as_array().is_some_and(|m| m
                .iter()
                .any(|m| m["name"] == down_name && !m["error"].is_null()))),
        "{:#}",
        c.status(watch)
    );
    let alerted =
        || {
            let events = c.json(watch, &["cluster", "events", "--json"]);
            events.as_array().unwrap().iter().any(|e| {
                e["severity"] == "alert" && e["message"].as_str().unwrap().contains(down_name)
            })
        };
    assert!(
        wait_until(30, alerted),
        "no cluster event about {down_name}"
    );
    let shown = browser.phase("cluster");
    let members = shown["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{shown}");
    let row = |name: &str| {
        members
            .iter()
            .map(|m| m.as_str().unwrap())
            .find(|m| m.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {shown}"))
            .to_owned()
    };
    assert!(row(c.servers[watch].name).contains("leader"), "{shown}");
    assert!(row(down_name).contains("unreachable"), "{shown}");
    assert!(shown["workers"].as_u64().unwrap() >= 5, "{shown}");
    let alerts = shown["alerts"].as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.as_str().unwrap().contains(down_name)),
        "no alert about {down_name}: {shown}"
    );
}

/// Rows seeded for the timing: 100,000 over the last 30 days, one in
/// 1,000 named `needle-…`.
const SEEDED: usize = 100_000;

#[test]
fn file_tracking_search_over_100k_rows() {
    let mut f = Ferry::up();
    f.add_account("alice");
    f.kill();
    let db = f.dir.path().join("data/state/ferry.db");
    assert!(db.exists(), "{}", db.display());
    let seeded = Instant::now();
    let st = Command::new("python3")
        .args([
            "-c",
            r#"
import sqlite3, sys, uuid, time
c = sqlite3.connect(sys.argv[1], timeout=30)
n = int(sys.argv[2])
now = int(time.time() * 1000)
span = 30 * 86400 * 1000
rows = []
for i in range(n):
    at = now - (i * span) // n
    name = ("needle-%06d.csv" % i) if i % 1000 == 0 else ("file-%06d.dat" % i)
    acct = "acct%02d" % (i % 50)
    status = "failed" if i % 97 == 0 else "completed"
    rows.append((str(uuid.uuid4()), acct, "sftp", "upload", "/in/" + name, 1000 + i, None,
                 at - 500, at, status, "n1", "127.0.0.1:1", None, None, None, 1000 + i))
c.executemany("INSERT INTO transfers (id, account, protocol, direction, path, bytes, sha256, "
              "started_at, ended_at, status, node, client_addr, error, partner, event_id, size) "
              "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
c.commit()
"#,
        ])
        .arg(&db)
        .arg(SEEDED.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    println!("seeded {SEEDED} transfer rows in {:?}", seeded.elapsed());
    f.restart(&[]);
    let curl = bearer(&f);
    let time = |path: &str| {
        let started = Instant::now();
        let r = curl.get(path);
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        (r.json().as_array().unwrap().clone(), took)
    };
    // Warm up the connection's caches once, then time.
    time("/api/v1/transfers?limit=1");
    let (rows, took) = time("/api/v1/transfers?name=needle&limit=51");
    println!("search by name (51 of 100 matches, over {SEEDED} rows): {took:?}");
    assert_eq!(rows.len(), 51);
    let last = rows.last().unwrap();
    let next = format!(
        "/api/v1/transfers?name=needle&limit=51&before={}&before_id={}",
        last["started_at"].as_str().unwrap().replace('+', "%2B"),
        last["id"].as_str().unwrap()
    );
    let (page2, took) = time(&next);
    println!("second page by cursor: {took:?}");
    assert_eq!(page2.len(), 100 - 51);
    let seen: std::collections::HashSet<&str> = rows
        .iter()
        .chain(&page2)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 100, "pages overlap or miss rows");
    let (rows, took) = time("/api/v1/transfers?name=NEEDLE-000000&limit=51");
    println!("search for one file name: {took:?}");
    assert_eq!(rows.len(), 1);
    let (rows, took) =
        time("/api/v1/transfers?account=acct07&status=failed&protocol=sftp&limit=51");
    println!("account + status + protocol: {took:?}");
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r["account"] == "acct07" && r["status"] == "failed"));
    let (rows, took) = time("/api/v1/transfers?limit=51");
    println!("newest page, no filter: {took:?}");
    assert_eq!(rows.len(), 51);
    // The CLI asks the same query.
    let cli = f.admin_ok(
        &[
            "transfer",
            "list",
            "--name",
            "NEEDLE-000000",
            "--protocol",
            "sftp",
            "--json",
        ],
        None,
    );
    let cli: serde_json::Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(cli.as_array().unwrap().len(), 1, "{cli:#}");
    let bad = curl.get("/api/v1/transfers?protocol=ftp");
    assert_eq!(bad.status, 400, "{}", bad.text());
}
