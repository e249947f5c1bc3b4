//! End-to-end tests of the typed admin API: the OpenAPI document a running
//! server serves is the committed one, validates (openapi-spec-validator,
//! from PyPI), and covers every route; the typed answers carry RFC 3339
//! times; and the CLI's exit codes tell the kind of failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::http::Curl;
use common::{run_ferry, stderr, Ferry};

/// curl bound to the admin listener of `f`, without the token.
fn admin_curl(f: &Ferry) -> Curl {
    let url = std::fs::read_to_string(f.dir.path().join("data/admin.url")).unwrap();
    Curl {
        base: url.trim().trim_end_matches('/').to_owned(),
        ca: f.ca.clone(),
        tmp: f.dir.path().to_owned(),
        auth: Vec::new(),
    }
}

/// Whether `python3 -m openapi_spec_validator` runs. Missing, the test
/// fails under CI (`.ci/run` installs it) and skips elsewhere.
fn have_validator() -> bool {
    let found = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "openapi-spec-validator is missing: .ci/run installs it"
        );
        eprintln!("openapi-spec-validator is not installed; skipped (.ci/run installs it)");
    }
    found
}

#[test]
fn served_openapi_document_validates_and_covers_every_route() {
    let f = Ferry::up();
    let curl = admin_curl(&f);
    // No token needed: the document is the API's shape, nothing more.
    let reply = curl.get("/api/v1/openapi.json");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let served = reply.text();
    let committed = include_str!("../docs/admin-api.json");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&served).unwrap(),
        serde_json::from_str::<serde_json::Value>(committed).unwrap(),
        "the served document is not docs/admin-api.json"
    );
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every route the server has is in it (the router is built from the
    // same endpoint list; ferry-server's unit test holds the two together).
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"]),
        ("/role", &["get"]),
        ("/api/v1/accounts", &["get", "post"]),
        ("/api/v1/accounts/{name}", &["get", "delete"]),
        ("/api/v1/accounts/{name}/tokens/{id}", &["delete"]),
        ("/api/v1/transfers", &["get"]),
        ("/api/v1/transfers/{id}", &["get"]),
        ("/api/v1/partners/{name}/test", &["post"]),
        ("/api/v1/events/{id}/resubmit", &["post"]),
        ("/api/v1/cluster/status", &["get"]),
        ("/api/v1/sync", &["post"]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path} missing");
        }
    }
    // Each documented GET without parameters answers as documented (an
    // undocumented path would answer 404 `not_found`).
    let token = std::fs::read_to_string(f.dir.path().join("data/admin.token")).unwrap();
    let authed = Curl {
        auth: vec![
            "-H".into(),
            format!("Authorization: Bearer {}", token.trim()),
        ],
        ..admin_curl(&f)
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The console session's GET answers a console cookie only.
        if path.contains('{')
            || item.get("get").is_none()
            || path == "/api/v1/cluster/events"
            || path == "/api/v1/console/session"
        {
            continue;
        }
        let r = authed.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
    let file = f.dir.path().join("served-openapi.json");
    std::fs::write(&file, &served).unwrap();
    if !have_validator() {
        return;
    }
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn answers_carry_rfc3339_times() {
    let f = Ferry::up();
    f.add_account("tina");
    let accounts: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "list", "--json"], None)).unwrap();
    let created = accounts[0]["created_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).unwrap();
    let out = f.admin_ok(
        &["account", "token", "add", "tina", "--expires-in-days", "2"],
        None,
    );
    assert!(out.starts_with("fy_"), "{out}");
    let tokens: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "token", "list", "tina", "--json"], None))
            .unwrap();
    let expires = tokens[0]["expires_at"].as_str().unwrap();
    let created = tokens[0]["created_at"].as_str().unwrap();
    let days = chrono::DateTime::parse_from_rfc3339(expires).unwrap()
        - chrono::DateTime::parse_from_rfc3339(created).unwrap();
    assert_eq!(days.num_days(), 2);
    // `--since` is sent as RFC 3339.
    let rows: serde_json::Value = serde_json::from_str(&f.admin_ok(
        &[
            "transfer",
            "list",
            "--json",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        None,
    ))
    .unwrap();
    assert!(rows.is_array());
}

#[test]
fn exit_codes_tell_the_kind_of_failure() {
    let f = Ferry::up();
    f.add_account("ann");
    // 3: not found.
    let out = f.admin(&["account", "disable", "nosuch"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = f.admin(&["transfer", "show", "no-such-id"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // 4: conflict (exists already).
    let out = f.admin(&["account", "add", "ann"], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // 1: any other failure (invalid input).
    let out = f.admin(&["account", "add", "bad/name"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // 2: usage error (clap).
    let out = f.admin(&["account", "frobnicate"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // 5: unreachable (a port nothing listens on).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let data = f.dir.path().join("data");
    let closed_admin = [
        "--data-dir".to_owned(),
        data.to_str().unwrap().to_owned(),
        "--admin".to_owned(),
        format!("https://127.0.0.1:{port}"),
    ];
    // A read, and a change that could not have been sent.
    for args in [&["account", "list"][..], &["account", "disable", "ann"]] {
        let out = run_ferry(args, &closed_admin, None);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
    }
    // The codes are documented in --help.
    let out = run_ferry(&["--help"], &[], None);
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "2  usage error",
        "3  not found",
        "4  conflict",
        "5  server unreachable",
        "6  outcome unknown",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}: {help}");
    }
}
