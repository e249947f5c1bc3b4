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
    add_admin(&f, "tess", "operator", ADMIN_PASSWORD);
    let started = Instant::now();
    for _ in 0..20 {
        let r =
            admin_curl(&f, &["-u", "tess:wrong"]).run(&["-X", "POST"], "/api/v1/console/session");
        assert_eq!(r.status, 401, "{}", r.text());
    }
    println!("20 failed console logins in {:?}", started.elapsed());
    let right = format!("tess:{ADMIN_PASSWORD}");
    let locked = admin_curl(&f, &["-u", &right]).run(&["-X", "POST"], "/api/v1/console/session");
    assert_eq!(locked.status, 401, "{}", locked.text());
    assert_eq!(
        admin_curl(&f, &["-u", &right]).get("/api/v1/whoami").status,
        401
    );

    // Logout ends the session at once.
    let out = session.run(&["-X", "DELETE", "-H", &header], "/api/v1/console/session");
    assert_eq!(out.status, 204, "{}", out.text());
    assert_eq!(session.get("/api/v1/whoami").status, 401);
}

#[test]
fn console_in_chromium_dashboard_tracking_and_auditor() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let script = root.join("tests/browser/console_test.mjs");
    let modules = root.join("tests/browser/node_modules/playwright-core");
    if std::env::var_os("FERRY_SKIP_BROWSER").is_some() {
        eprintln!("FERRY_SKIP_BROWSER is set: browser test skipped");
        return;
    }
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists() && modules.exists(),
        "needs Debian's chromium and `npm ci` in tests/browser (see .ci/run), \
         or FERRY_SKIP_BROWSER=1"
    );
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    f.add_account("bob");
    f.admin_ok(
        &[
            "route",
            "add",
            "to-bob",
            "--account",
            "alice",
            "--match",
            "*.csv",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    add_admin(&f, "ann", "admin", ADMIN_PASSWORD);
    add_admin(&f, "otto", "auditor", AUDITOR_PASSWORD);
    let name = format!("console-{}.csv", rand_suffix());
    let local = f.dir.path().join(&name);
    random_file(&local, 70_000);
    let out = f.sftp_key(
        "alice",
        &key,
        &format!("put {} {name}\n", local.display()),
        f.dir.path(),
    );
    assert_ok(&out);
    let done = || {
        let out = f.admin_ok(&["event", "list", "--json", "--status", "done"], None);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 1
    };
    assert!(wait_until(60, done), "the route's event did not finish");
    assert!(f.repository.join("bob/in").join(&name).exists());

    let url = std::fs::read_to_string(f.dir.path().join("data/admin.url")).unwrap();
    let out_dir = root.join("target/test-artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .current_dir(root.join("tests/browser"))
        .env("FERRY_URL", url.trim())
        .env("FERRY_ADMIN", "ann")
        .env("FERRY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("FERRY_AUDITOR", "otto")
        .env("FERRY_AUDITOR_PASSWORD", AUDITOR_PASSWORD)
        .env("FERRY_FILE_NAME", &name)
        .env("FERRY_OUT", &out_dir)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "console browser test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("{result:#}");
    assert_eq!(result["ok"], true);
    assert_eq!(result["adminSawResubmit"], true);
    let steps = result["stepsDone"].as_array().unwrap();
    assert!(
        steps.len() == 1 && steps[0].as_str().unwrap().starts_with("copy:bob/in"),
        "{steps:?}"
    );
    assert_eq!(result["auditorSawResubmit"], false);
    assert_eq!(result["auditorForcedChange"], 403);
    assert_eq!(result["noCsrfChange"], 403);
    for shot in result["screenshots"].as_array().unwrap() {
        let file = out_dir.join(shot.as_str().unwrap());
        assert!(file.metadata().unwrap().len() > 5_000, "{}", file.display());
    }
    // The browser's login and logout are in the audit trail.
    let audit = bearer(&f).get("/api/v1/audit?admin=ann").text();
    assert!(audit.contains("POST /api/v1/console/session"), "{audit}");
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
