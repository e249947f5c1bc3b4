//! The browser client in headless Chromium (Debian's), driven by
//! playwright-core: log in with a password that must be changed, change it
//! through the form the login leads to, upload two files at once, see them
//! listed, download one. The screenshot is kept in `target/test-artifacts/`.

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

use common::*;

/// The password the browser test changes to through the form.
const NEW_PASSWORD: &str = "Marmalade-Harbour-82-Lima";

#[test]
fn browser_client_logs_in_uploads_lists_and_downloads() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let script = root.join("tests/browser/browser_test.mjs");
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
    f.add_account("alice");
    // A temporary password: the browser must change it before anything else.
    f.admin_ok(&["account", "set", "alice", "--must-change-password"], None);
    let one = f.dir.path().join("report-2026.bin");
    random_file(&one, 9 * 1024 * 1024 + 5);
    let two = f.dir.path().join("notes ü.txt");
    std::fs::write(&two, "hello from the browser test\n").unwrap();
    let out_dir = root.join("target/test-artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .current_dir(root.join("tests/browser"))
        .env("FERRY_URL", f.https_url.as_ref().unwrap())
        .env("FERRY_USER", "alice")
        .env("FERRY_PASSWORD", PASSWORD)
        .env("FERRY_NEW_PASSWORD", NEW_PASSWORD)
        .env("FERRY_MUST_CHANGE", "1")
        .env("FERRY_FILE1", &one)
        .env("FERRY_FILE2", &two)
        .env("FERRY_OUT", &out_dir)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "browser test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
    // The form changed the password: the new one logs in, the old no more.
    assert_eq!(result["forcedToChange"], true);
    assert_eq!(result["passwordChanged"], true);
    let shown = f.admin_ok(&["account", "show", "alice", "--json"], None);
    assert!(shown.contains("\"must_change_password\": false"), "{shown}");
    let curl = f.curl();
    assert_eq!(
        curl.run(&["-u", &format!("alice:{NEW_PASSWORD}")], "/api/v1/dirs/")
            .status,
        200
    );
    assert_eq!(curl.user("alice").get("/api/v1/dirs/").status, 401);
    let listed: Vec<&str> = result["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"report-2026.bin") && listed.contains(&"notes ü.txt"),
        "{listed:?}"
    );
    let downloaded = PathBuf::from(result["downloaded"].as_str().unwrap());
    let source = if downloaded.ends_with("downloaded-report-2026.bin") {
        &one
    } else {
        &two
    };
    assert_eq!(sha256_file(&downloaded), sha256_file(source));
    assert!(out_dir.join("browser.png").metadata().unwrap().len() > 10_000);
    // Both uploads are in the repository and the transfer log, with hashes.
    let home = f.repository.join("alice");
    assert_eq!(
        sha256_file(&home.join("report-2026.bin")),
        sha256_file(&one)
    );
    assert_eq!(sha256_file(&home.join("notes ü.txt")), sha256_file(&two));
    let rows = f.transfers();
    for (path, file) in [("/report-2026.bin", &one), ("/notes ü.txt", &two)] {
        assert!(
            rows.iter().any(|r| r["path"] == path
                && r["status"] == "completed"
                && r["sha256"] == sha256_file(file).as_str()),
            "{path}: {rows:#?}"
        );
    }
}
