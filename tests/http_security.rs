//! Attacks on the HTTPS front: traversal in every encoding, hostile bytes,
//! reserved names, symlinks, credentials, throttling, cookies and CSRF,
//! forged internal headers, admin endpoints, and old TLS.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PAYLOAD: &[u8] = b"EVIL-PAYLOAD-0xFERRY";

/// Every regular file under `root`, except those under `skip`.
fn files_under(root: &Path, skip: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.starts_with(skip) {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&p, skip, out);
        } else if t.is_file() {
            out.push(p);
        }
    }
}

#[test]
fn traversal_hostile_paths_reserved_names_and_symlinks_are_refused() {
    let f = Ferry::up();
    f.add_account("alice");
    f.add_account("bob");
    let c = f.curl().user("alice");
    let home = f.repository.join("alice");
    let bob_home = f.repository.join("bob");
    std::fs::write(bob_home.join("secret.txt"), b"bob's").unwrap();
    std::os::unix::fs::symlink("/etc", home.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(&bob_home, home.join("bob-link")).unwrap();
    let payload = f.dir.path().join("payload");
    std::fs::write(&payload, PAYLOAD).unwrap();
    let payload_s = payload.to_str().unwrap();

    let long = format!("/api/v1/files/{}", "a/".repeat(2100));
    let long_name = format!("/api/v1/files/{}", "n".repeat(300));
    let bad_paths = [
        "/api/v1/files/../../../etc/passwd",
        "/api/v1/files/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/v1/files/%2E%2E/%2E%2E/etc/passwd",
        "/api/v1/files/..%5c..%5cetc%5cpasswd",
        "/api/v1/files/%252e%252e%252fetc%252fpasswd",
        "/api/v1/files/%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
        "/api/v1/files/%e0%80%ae%e0%80%ae/passwd",
        "/api/v1/files/evil%00.txt",
        "/api/v1/files/evil%0d%0a.txt",
        "/api/v1/files/./evil.txt",
        "/api/v1/files/%zz",
        long.as_str(),
        long_name.as_str(),
    ];
    for path in bad_paths {
        for method in [
            &["--path-as-is"][..],
            &["--path-as-is", "-T", payload_s][..],
        ] {
            let r = c.run(method, path);
            assert_eq!(
                r.status,
                400,
                "{path} {method:?}: {} {}",
                r.text(),
                r.stderr
            );
            assert_eq!(r.code(), "invalid_path", "{path}");
        }
        let r = c.run(&["--path-as-is"], &path.replace("/files/", "/dirs/"));
        assert_eq!(r.status, 400, "dirs {path}");
    }
    // Bodies are checked the same way.
    let body = serde_json::json!({"from": "/x", "to": "../../outside"}).to_string();
    let r = c.run(&["--data", &body], "/api/v1/rename");
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_path"));
    let r = c.run(
        &[
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 5",
        ],
        "/api/v1/uploads/",
    );
    assert_eq!(r.status, 400, "tus without a target");
    // base64("../../x") as the tus target.
    let r = c.run(
        &[
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 5",
            "-H",
            "Upload-Metadata: path Li4vLi4veA==",
        ],
        "/api/v1/uploads/",
    );
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_path"));

    // Reserved names and symlinks that lead out: 403.
    for (path, put) in [
        ("/api/v1/files/.ferry-uploads/x", true),
        ("/api/v1/files/.ferry-partial.x", true),
        ("/api/v1/dirs/.ferry-uploads", false),
        ("/api/v1/files/etc-link/passwd", false),
        ("/api/v1/files/etc-link/evil.txt", true),
        ("/api/v1/files/bob-link/secret.txt", false),
        ("/api/v1/files/bob-link/evil.txt", true),
        ("/api/v1/dirs/bob-link", false),
    ] {
        let args: Vec<&str> = if put { vec!["-T", payload_s] } else { vec![] };
        let r = c.run(&args[..], path);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.code(), "forbidden");
    }
    let r = c.run(&["-X", "DELETE"], "/api/v1/files/bob-link/secret.txt");
    assert_eq!(r.status, 403);
    assert!(bob_home.join("secret.txt").exists());
    // The same file name inside the home is fine.
    let r = c.run(&["-T", payload_s], "/api/v1/files/evil.txt");
    assert_eq!(r.status, 201);

    // Nothing with the payload was written anywhere but alice's home.
    let mut files = Vec::new();
    files_under(f.dir.path(), &home, &mut files);
    for file in files {
        if file == payload {
            continue;
        }
        let data = std::fs::read(&file).unwrap_or_default();
        assert!(
            !data.windows(PAYLOAD.len()).any(|w| w == PAYLOAD),
            "payload written outside the home: {}",
            file.display()
        );
    }
    assert!(!Path::new("/etc/evil.txt").exists());
}

#[test]
fn credentials_tokens_throttling_and_the_same_answer_for_unknown_users() {
    let f = Ferry::up_with(&["--max-login-failures", "3", "--login-cache-secs", "2"]);
    f.add_account("alice");
    let c = f.curl();
    // No credentials: 401 with a Basic challenge (none for the web client).
    let r = c.get("/api/v1/dirs/");
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = c.run(&["-H", "X-Requested-With: ferry-web"], "/api/v1/dirs/");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
    let r = c.run(&["-H", "Authorization: Basic !!!"], "/api/v1/dirs/");
    assert_eq!(r.status, 401);

    // Wrong password and unknown user: same status, same body, same delay.
    // Each from its own source address so the address throttle stays out of it.
    let timed = |from: &str, user: &str, pw: &str| {
        let start = Instant::now();
        let r = c.run(
            &["--interface", from, "-u", &format!("{user}:{pw}")],
            "/api/v1/dirs/",
        );
        (r, start.elapsed())
    };
    let (wrong, t1) = timed("127.0.0.2", "alice", "wrong password");
    let (unknown, t2) = timed("127.0.0.3", "nobody", "wrong password");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    assert!(
        t1 >= Duration::from_millis(300) && t2 >= Duration::from_millis(300),
        "{t1:?} {t2:?}"
    );

    // Per account: two more failures for alice from other addresses, then
    // even the right password is refused (429) until the window passes.
    timed("127.0.0.4", "alice", "nope");
    timed("127.0.0.5", "alice", "nope");
    let (r, _) = timed("127.0.0.6", "alice", PASSWORD);
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_attempts"));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    // Per address: three failures from one address for different (unknown) names.
    for name in ["u1", "u2", "u3"] {
        assert_eq!(timed("127.0.0.7", name, "x").0.status, 401);
    }
    let (r, _) = timed("127.0.0.7", "u4", "x");
    assert_eq!(r.status, 429);
    // Unknown names are throttled like real ones.
    for from in ["127.0.0.8", "127.0.0.9", "127.0.0.10"] {
        timed(from, "ghost", "x");
    }
    assert_eq!(timed("127.0.0.11", "ghost", "x").0.status, 429);

    // Bearer tokens: created, used, listed without the secret, revoked.
    f.add_account("carol");
    let token = f
        .admin_ok(
            &["account", "token", "add", "carol", "--label", "ci job"],
            None,
        )
        .trim()
        .to_owned();
    assert!(token.starts_with("fy_"), "{token}");
    let bearer = format!("Authorization: Bearer {token}");
    let r = c.run(
        &["--interface", "127.0.0.12", "-H", &bearer],
        "/api/v1/dirs/",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = f.admin_ok(&["account", "token", "list", "carol", "--json"], None);
    assert!(!listed.contains(&token[10..]), "token secret listed");
    let id = token.split('_').nth(1).unwrap().to_owned();
    assert!(listed.contains(&id) && listed.contains("ci job"));
    let stored = std::fs::read(f.dir.path().join("data/state/ferry.db")).unwrap();
    assert!(
        !stored.windows(20).any(|w| w == &token.as_bytes()[20..40]),
        "token stored in clear"
    );
    f.admin_ok(&["account", "token", "remove", "carol", &id], None);
    // A token that differs in its last digit is refused.
    let last = if token.ends_with('0') { '1' } else { '0' };
    let tampered = format!("Authorization: Bearer {}{last}", &token[..token.len() - 1]);
    let r = c.run(
        &["--interface", "127.0.0.13", "-H", &tampered],
        "/api/v1/dirs/",
    );
    assert_eq!(r.status, 401);
    // The edge reuses a login for `--login-cache-secs` (2 s here); after
    // that the revoked token is refused.
    assert!(wait_until(10, || {
        c.run(
            &["--interface", "127.0.0.14", "-H", &bearer],
            "/api/v1/dirs/",
        )
        .status
            == 401
    }));
}

#[test]
fn cookies_csrf_origins_internal_headers_and_no_admin_endpoints() {
    let f = Ferry::up();
    f.add_account("alice");
    let c = f.curl();
    let alice = f.curl().user("alice");
    let jar = f.dir.path().join("jar");
    let jar_s = jar.to_str().unwrap();
    let login = serde_json::json!({"user": "alice", "password": PASSWORD}).to_string();
    let r = c.run(
        &[
            "-c",
            jar_s,
            "-H",
            "Content-Type: application/json",
            "--data",
            &login,
        ],
        "/api/v1/session",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let csrf = r.json()["csrf"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["account"], "alice");
    let cookie = r.header("set-cookie").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let payload = f.dir.path().join("p.txt");
    std::fs::write(&payload, b"hello").unwrap();
    let p = payload.to_str().unwrap();
    // Reading with the cookie works; writing needs the CSRF token.
    assert_eq!(c.run(&["-b", jar_s], "/api/v1/dirs/").status, 200);
    let r = c.run(&["-b", jar_s, "-T", p], "/api/v1/files/a.txt");
    assert_eq!((r.status, r.code().as_str()), (403, "csrf"));
    let r = c.run(
        &["-b", jar_s, "-H", "X-CSRF-Token: 1234", "-T", p],
        "/api/v1/files/a.txt",
    );
    assert_eq!(r.status, 403);
    let with_csrf = format!("X-CSRF-Token: {csrf}");
    let r = c.run(
        &["-b", jar_s, "-H", &with_csrf, "-T", p],
        "/api/v1/files/a.txt",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.run(&["-b", jar_s], "/api/v1/session").json()["csrf"],
        csrf.as_str()
    );

    // Another site's request is refused whatever the credential.
    for header in ["Origin: https://evil.example", "Sec-Fetch-Site: cross-site"] {
        let r = c.run(
            &["-b", jar_s, "-H", &with_csrf, "-H", header, "-T", p],
            "/api/v1/files/b.txt",
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "cross_origin"),
            "{header}"
        );
        let r = alice.run(&["-H", header, "-X", "DELETE"], "/api/v1/files/a.txt");
        assert_eq!(r.status, 403, "{header}");
    }
    let same_origin = format!("Origin: {}", c.base);
    let r = c.run(
        &["-b", jar_s, "-H", &with_csrf, "-H", &same_origin, "-T", p],
        "/api/v1/files/b.txt",
    );
    assert_eq!(r.status, 201);

    // Logout needs the token too, and ends the session.
    let r = c.run(&["-b", jar_s, "-X", "DELETE"], "/api/v1/session");
    assert_eq!(r.status, 403);
    let r = c.run(
        &["-b", jar_s, "-H", &with_csrf, "-X", "DELETE"],
        "/api/v1/session",
    );
    assert_eq!(r.status, 204);
    assert_eq!(c.run(&["-b", jar_s], "/api/v1/dirs/").status, 401);

    // Forged internal headers change nothing: the log has the real peer and account.
    f.add_account("bob");
    let r = alice.run(
        &[
            "-H",
            "X-Forwarded-For: 203.0.113.66",
            "-H",
            "X-Real-IP: 203.0.113.67",
            "-H",
            "Forwarded: for=203.0.113.68",
            "-H",
            "X-Ferry-Account: bob",
            "-T",
            p,
        ],
        "/api/v1/files/forged.txt",
    );
    assert_eq!(r.status, 201);
    assert!(f.repository.join("alice/forged.txt").exists());
    assert!(!f.repository.join("bob/forged.txt").exists());
    let rows = f.transfers();
    let row = rows.iter().find(|r| r["path"] == "/forged.txt").unwrap();
    assert_eq!(
        (row["account"].as_str(), row["client_addr"].as_str()),
        (Some("alice"), Some("127.0.0.1"))
    );

    // No admin API on the edge, with or without the admin token.
    let token = std::fs::read_to_string(f.dir.path().join("data/admin.token")).unwrap();
    let admin_auth = format!("Authorization: Bearer {}", token.trim());
    for path in [
        "/api/v1/accounts",
        "/api/v1/transfers",
        "/healthz",
        "/api/v1/accounts/alice",
    ] {
        let r = c.run(&["-H", &admin_auth], path);
        assert_eq!(r.status, 404, "{path}");
    }
    // Security headers on API answers.
    let r = alice.get("/api/v1/dirs/");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("strict-transport-security").is_some());
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("sandbox"));
}

#[test]
fn only_tls_1_2_and_1_3_with_modern_suites() {
    let f = Ferry::up();
    let host = f
        .https_url
        .as_ref()
        .unwrap()
        .trim_start_matches("https://")
        .to_owned();
    let s_client = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &host, "-CAfile"])
            .arg(&f.ca)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = out.status.success()
            && text.contains("Verify return code: 0 (ok)")
            && !text.contains("Cipher is (NONE)");
        (ok, text)
    };
    let (ok, text) = s_client(&["-tls1_3"]);
    assert!(ok, "TLS 1.3 must work: {text}");
    let (ok, text) = s_client(&["-tls1_2"]);
    assert!(ok, "TLS 1.2 must work: {text}");
    assert!(
        text.contains("ECDHE"),
        "TLS 1.2 must use forward secrecy: {text}"
    );
    // The client is made willing (security level 0); the server must refuse.
    for (args, what) in [
        (
            &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"][..],
            "TLS 1.1",
        ),
        (&["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"][..], "TLS 1.0"),
        (
            &["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"][..],
            "RSA key exchange, CBC",
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",
            ][..],
            "CBC",
        ),
    ] {
        let (ok, text) = s_client(args);
        assert!(!ok, "{what} must be refused: {text}");
    }
}
