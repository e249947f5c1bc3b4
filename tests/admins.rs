//! Named admins and the audit trail, end to end with the CLI and curl: an
//! operator and an auditor made by the bootstrap token, each limited to
//! its role (a refusal is 403 and audited), admin passwords by HTTP Basic,
//! token revocation, secrets redacted in the trail, and the same trail on
//! every server of an active/active cluster.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// Runs `ferry ARGS` against `f` with the token in `token_file`.
fn ferry_as(f: &Ferry, token_file: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut extra = f.admin_args.clone();
    extra.push("--token-file".into());
    extra.push(token_file.to_str().unwrap().to_owned());
    run_ferry(args, &extra, stdin)
}

/// A new token of admin `name`, in a file.
fn token_of(f: &Ferry, name: &str) -> PathBuf {
    let token = f.admin_ok(&["admin", "token", "add", name, "--label", "test"], None);
    assert!(token.trim().starts_with("fa_"), "{token}");
    let path = f.dir.path().join(format!("{name}.token"));
    write_private(&path, token.trim());
    path
}

/// curl on the admin API with HTTP Basic.
fn admin_curl(f: &Ferry, user: &str, password: &str, path: &str) -> (u16, String) {
    let data = f.dir.path().join("data");
    let url = std::fs::read_to_string(data.join("admin.url")).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(data.join("pki/ca.crt"))
        .args(["-u", &format!("{user}:{password}"), "-w", "\n%{http_code}"])
        .arg(format!("{}{path}", url.trim()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn roles_limit_what_admins_do_and_every_change_is_audited() {
    let f = Ferry::up();
    f.admin_ok(
        &[
            "admin",
            "add",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some("olga-password-1\n"),
    );
    f.admin_ok(&["admin", "add", "audrey", "--role", "auditor"], None);
    let bad = f.admin(&["admin", "add", "x", "--role", "root"], None);
    assert!(!bad.status.success() && stderr(&bad).contains("unknown role"));
    let olga = token_of(&f, "olga");
    let audrey = token_of(&f, "audrey");

    // The operator manages accounts, but not admins.
    let me = ferry_as(&f, &olga, &["admin", "whoami"], None);
    assert_eq!(assert_ok(&me).trim(), "olga (operator)");
    assert_ok(&ferry_as(
        &f,
        &olga,
        &["account", "add", "alice", "--password-stdin"],
        Some("alice-secret-99\n"),
    ));
    assert_ok(&ferry_as(
        &f,
        &olga,
        &["account", "set", "alice", "--quota", "1G"],
        None,
    ));
    let refused = ferry_as(
        &f,
        &olga,
        &["admin", "add", "mallory", "--role", "admin"],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("operator role may not") && stderr(&refused).contains("403"),
        "{}",
        stderr(&refused)
    );
    let refused = ferry_as(&f, &olga, &["cluster", "promote"], None);
    assert!(!refused.status.success(), "an operator changed the cluster");

    // The auditor reads, and changes nothing.
    let list = ferry_as(&f, &audrey, &["account", "list"], None);
    assert!(assert_ok(&list).contains("alice"));
    let refused = ferry_as(
        &f,
        &audrey,
        &["account", "add", "eve", "--password-stdin"],
        Some("eve-password-1\n"),
    );
    assert!(!refused.status.success());
    assert!(!f.admin_ok(&["account", "list"], None).contains("eve"));
    assert_ok(&ferry_as(&f, &audrey, &["audit", "list"], None));

    // An admin's password works by HTTP Basic; a wrong one does not.
    let (code, body) = admin_curl(&f, "olga", "olga-password-1", "/api/v1/whoami");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"olga\""), "{body}");
    let (code, _) = admin_curl(&f, "olga", "wrong-password", "/api/v1/whoami");
    assert_eq!(code, 401);
    let (code, _) = admin_curl(&f, "nobody", "wrong-password", "/api/v1/whoami");
    assert_eq!(code, 401);

    // A revoked token stops working.
    let id = f.admin_ok(&["admin", "token", "list", "olga"], None);
    let id = id.split_whitespace().next().unwrap().to_owned();
    f.admin_ok(&["admin", "token", "remove", "olga", &id], None);
    assert!(!ferry_as(&f, &olga, &["admin", "whoami"], None)
        .status
        .success());

    // The trail: every change, allowed or refused, with who and from where;
    // no reads; no secret.
    let trail: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["audit", "list", "--json"], None)).unwrap();
    let trail = trail.as_array().unwrap();
    let find = |admin: &str, request: &str, status: u64| {
        trail
            .iter()
            .find(|r| r["admin"] == admin && r["request"] == request && r["status"] == status)
            .unwrap_or_else(|| panic!("no {admin} {request} {status} in {trail:?}"))
    };
    let created = find("olga", "POST /api/v1/accounts", 201);
    assert_eq!(created["role"], "operator");
    assert!(created["client_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let body = created["body"].as_str().unwrap();
    assert!(body.contains("alice") && body.contains("***"), "{body}");
    // What a change acted on, before and after, secrets hidden.
    assert_eq!(created["before"], "null", "{created}");
    let after: serde_json::Value =
        serde_json::from_str(created["after"].as_str().unwrap()).unwrap();
    assert_eq!(after["account"]["name"], "alice", "{after}");
    assert_eq!(after["account"]["password_hash"], "***", "{after}");
    let changed = find("olga", "POST /api/v1/accounts/alice", 200);
    let state = |r: &serde_json::Value, k: &str| -> serde_json::Value {
        serde_json::from_str(r[k].as_str().unwrap()).unwrap()
    };
    assert_eq!(
        state(changed, "before")["policy"]["quota_bytes"],
        serde_json::Value::Null
    );
    assert_eq!(state(changed, "after")["policy"]["quota_bytes"], 1u64 << 30);
    let shown = f.admin_ok(&["audit", "list", "--by", "olga", "--states"], None);
    assert!(
        shown.contains("    before ") && shown.contains("quota_bytes"),
        "{shown}"
    );
    let refusal = find("olga", "POST /api/v1/admins", 403);
    assert!(
        refusal["outcome"].as_str().unwrap().contains("may not"),
        "{refusal}"
    );
    find("audrey", "POST /api/v1/accounts", 403);
    find("bootstrap", "POST /api/v1/admins", 201);
    assert!(
        trail
            .iter()
            .all(|r| !r["request"].as_str().unwrap().starts_with("GET ")),
        "a read was audited"
    );
    let text = serde_json::to_string(trail).unwrap();
    for secret in ["alice-secret-99", "olga-password-1", "fa_", "$argon2"] {
        assert!(!text.contains(secret), "{secret} in the trail");
    }
    // Filtered by admin.
    let olgas: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["audit", "list", "--by", "olga", "--json"], None))
            .unwrap();
    assert!(olgas
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["admin"] == "olga"));
    assert!(olgas.as_array().unwrap().len() >= 3, "{olgas}");
}

#[test]
fn the_audit_trail_is_the_same_on_every_server_of_a_cluster() {
    use common::cluster::{ClusterSpec, TestCluster};
    let c = TestCluster::start(ClusterSpec::active_active(&["s1", "s2", "s3"]));
    c.init();
    assert!(wait_until(20, || c.primary().is_some()), "no primary");
    // Changes through each server, one of them refused.
    for i in 0..3 {
        c.admin_ok(
            i,
            &["account", "add", &format!("user{i}"), "--password-stdin"],
            Some("Tangerine-Viaduct-47-Oslo\n"),
        );
    }
    let dup = c.admin(
        1,
        &["account", "add", "user0", "--password-stdin"],
        Some("Tangerine-Viaduct-47-Oslo\n"),
    );
    assert!(!dup.status.success());
    let trail = |i: usize| {
        let v = c.json(i, &["audit", "list", "--json"]);
        let mut rows: Vec<(String, String, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request"] == "POST /api/v1/accounts")
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["node"].as_str().unwrap().to_owned(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let same = wait_until(10, || {
        trail(0).len() == 4 && trail(0) == trail(1) && trail(1) == trail(2)
    });
    assert!(same, "{:?}\n{:?}\n{:?}", trail(0), trail(1), trail(2));
    let rows = trail(0);
    let nodes: std::collections::BTreeSet<_> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(nodes.len(), 3, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.2 == 409).count(), 1, "{rows:?}");
}
