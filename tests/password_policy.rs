//! The password lifecycle end to end: the policy (length, zxcvbn strength,
//! the last five passwords) wherever a password is set, through the CLI
//! and the admin API; an account changing its own password over HTTPS
//! (curl: Basic, and the browser client's cookie with its CSRF token).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::http::{Curl, Reply};
use common::*;

fn password_login(f: &Ferry, user: &str, password: &str) -> bool {
    f.sftp_password(user, password, "ls\n").status.success()
}

/// `ferry account set NAME --password-stdin` with `password`: (exit code, stderr).
fn set_password(f: &Ferry, name: &str, password: &str) -> (i32, String) {
    let out = f.admin(
        &["account", "set", name, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn admin_set_passwords_follow_the_policy() {
    let f = Ferry::up();

    // Creation: too short, too weak (with zxcvbn's advice in words), or
    // the account's own name: refused with exit code 1 and HTTP 400.
    for (weak, words) in [
        ("short", "at least 8 characters"),
        (
            "password1",
            "password is too weak: this is a very common password",
        ),
        ("pw-pw-pw-pw", "password is too weak: repeats like"),
        ("pia-pia-pia-pia", "password is too weak"),
    ] {
        let out = f.admin(
            &["account", "add", "pia", "--password-stdin"],
            Some(&format!("{weak}\n")),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{weak}: {err}");
        assert!(err.contains(words), "{weak}: {err}");
        assert!(err.contains("HTTP 400"), "{weak}: {err}");
    }
    let listed = f.admin_ok(&["account", "list", "--json"], None);
    assert!(
        !listed.contains("\"pia\""),
        "a refused account exists: {listed}"
    );

    let first = "Tangerine-Viaduct-47-Oslo";
    f.admin_ok(
        &["account", "add", "pia", "--password-stdin"],
        Some(&format!("{first}\n")),
    );
    assert!(password_login(&f, "pia", first));

    // The same password again, and a weak one, are refused; the current
    // password stays.
    let (code, err) = set_password(&f, "pia", first);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password was used before"), "{err}");
    let (code, err) = set_password(&f, "pia", "Summer2024!");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password is too weak"), "{err}");
    assert!(password_login(&f, "pia", first));

    // Four more: the first is still among the last five.
    let others = [
        "Marmalade-Harbour-82-Lima",
        "Periscope-Lantern-19-Kiev",
        "Avalanche-Teacup-33-Quito",
        "Dromedary-Violin-64-Accra",
    ];
    for pw in others {
        let (code, err) = set_password(&f, "pia", pw);
        assert_eq!(code, 0, "{pw}: {err}");
    }
    assert!(!password_login(&f, "pia", first));
    let (code, err) = set_password(&f, "pia", first);
    assert!(code == 1 && err.contains("used before"), "{err}");
    let (code, err) = set_password(&f, "pia", others[1]);
    assert!(code == 1 && err.contains("used before"), "{err}");
    // A sixth: now the first has left the history and may come back.
    assert_eq!(set_password(&f, "pia", "Harmonica-Glacier-58-Doha").0, 0);
    let (code, err) = set_password(&f, "pia", first);
    assert_eq!(code, 0, "{err}");
    assert!(password_login(&f, "pia", first));

    // The minimum length is a setting (never below 8).
    let shown = f.admin_ok(&["account", "password-policy"], None);
    assert!(shown.contains("at least 8 characters"), "{shown}");
    let low = f.admin(&["account", "password-policy", "--min-length", "6"], None);
    assert_eq!(low.status.code(), Some(1));
    assert!(stderr(&low).contains("8 to 128"), "{}", stderr(&low));
    f.admin_ok(&["account", "password-policy", "--min-length", "16"], None);
    let (code, err) = set_password(&f, "pia", "gX9#mQ2!vL7$");
    assert!(code == 1 && err.contains("at least 16 characters"), "{err}");
    let out = f.admin(
        &["account", "add", "pat", "--password-stdin"],
        Some("gX9#mQ2!vL7$\n"),
    );
    assert!(
        stderr(&out).contains("at least 16 characters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(set_password(&f, "pia", "gX9#mQ2!vL7$-Harbour").0, 0);
}

/// `POST /api/v1/me/password` with `extra` curl arguments (credentials).
fn change(c: &Curl, extra: &[String], current: &str, new: &str) -> Reply {
    let body = serde_json::json!({ "current": current, "new": new }).to_string();
    let mut args: Vec<String> = extra.to_vec();
    args.extend([
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "--data".into(),
        body,
    ]);
    c.run(&args, "/api/v1/me/password")
}

fn basic(user: &str, password: &str) -> Vec<String> {
    vec!["-u".into(), format!("{user}:{password}")]
}

/// A browser login (`POST /api/v1/session`): the cookie's value and the
/// CSRF token, and the answer's JSON.
fn browser_login(c: &Curl, user: &str, password: &str) -> (String, String, serde_json::Value) {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
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
    assert_eq!(r.status, 200, "browser login: {}", r.text());
    let cookie = r
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.strip_prefix("ferry_session="))
        .unwrap()
        .to_owned();
    let json = r.json();
    (cookie, json["csrf"].as_str().unwrap().to_owned(), json)
}

fn cookie_args(cookie: &str, csrf: Option<&str>) -> Vec<String> {
    let mut args = vec!["-H".into(), format!("Cookie: ferry_session={cookie}")];
    if let Some(csrf) = csrf {
        args.extend(["-H".into(), format!("X-CSRF-Token: {csrf}")]);
    }
    args
}

#[test]
fn an_account_changes_its_own_password_over_https() {
    let f = Ferry::up();
    f.add_account("quinn");
    let c = f.curl();
    let old = basic("quinn", PASSWORD);
    assert_eq!(c.run(&old, "/api/v1/dirs/").status, 200);

    // Without credentials: 401. A wrong current password: 403, nothing
    // changes. A weak or reused new one: 400 with the reason.
    let r = change(&c, &[], PASSWORD, "Marmalade-Harbour-82-Lima");
    assert_eq!(r.status, 401, "{}", r.text());
    let r = change(&c, &old, "not the password", "Marmalade-Harbour-82-Lima");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("current password is wrong"),
        "{}",
        r.text()
    );
    let r = change(&c, &old, PASSWORD, "password1");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.code(), "invalid_input");
    assert!(r.text().contains("password is too weak"), "{}", r.text());
    let r = change(&c, &old, PASSWORD, PASSWORD);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("used before"), "{}", r.text());
    let r = c.run(
        &[
            old.clone(),
            vec![
                "-X".into(),
                "POST".into(),
                "--data".into(),
                "{\"new\":\"x\"}".into(),
            ],
        ]
        .concat(),
        "/api/v1/me/password",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(password_login(&f, "quinn", PASSWORD));

    // Two browser sessions; the change is made through one of them (with
    // its CSRF token: without it, refused).
    let (kept, kept_csrf, _) = browser_login(&c, "quinn", PASSWORD);
    let (other, _, _) = browser_login(&c, "quinn", PASSWORD);
    let new = "Marmalade-Harbour-82-Lima";
    let r = change(&c, &cookie_args(&kept, None), PASSWORD, new);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "csrf");
    let r = change(&c, &cookie_args(&kept, Some(&kept_csrf)), PASSWORD, new);
    assert_eq!(r.status, 204, "{}", r.text());

    // The old password is refused everywhere at once (the edge forgot its
    // cached Basic login), the new one works over HTTPS and SFTP.
    assert_eq!(c.run(&old, "/api/v1/dirs/").status, 401);
    assert_eq!(c.run(&basic("quinn", new), "/api/v1/dirs/").status, 200);
    assert!(!password_login(&f, "quinn", PASSWORD));
    assert!(password_login(&f, "quinn", new));
    // The browser session that changed it stays; the other one ended.
    assert_eq!(
        c.run(&cookie_args(&kept, None), "/api/v1/session").status,
        200
    );
    assert_eq!(
        c.run(&cookie_args(&other, None), "/api/v1/session").status,
        401
    );
    // And the one it had before is now among the last five.
    let r = change(&c, &basic("quinn", new), new, PASSWORD);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("used before"), "{}", r.text());

    // Guessing the current password through the form meets the login
    // throttle (20 failures a minute per account and per address; this
    // address has failed a few times above): then even the right one is
    // refused, and the answer says why.
    f.add_account("tess");
    let tess = basic("tess", PASSWORD);
    let mut wrong = 0;
    for i in 0..20 {
        let r = change(&c, &tess, &format!("guess-{i}"), new);
        assert_eq!(r.status, 403, "{}", r.text());
        if !r.text().contains("current password is wrong") {
            assert!(
                r.text().contains("too many failed passwords"),
                "{}",
                r.text()
            );
            break;
        }
        wrong += 1;
    }
    assert!(wrong >= 10, "throttled after {wrong} guesses");
    let r = change(&c, &tess, PASSWORD, new);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("too many failed passwords"),
        "{}",
        r.text()
    );
}

fn must_change(f: &Ferry, name: &str) -> bool {
    let shown: serde_json::Value =
        serde_json::from_str(&f.admin_ok(&["account", "show", name, "--json"], None)).unwrap();
    shown["must_change_password"].as_bool().unwrap()
}

#[test]
fn a_password_that_must_change_opens_only_the_change() {
    let f = Ferry::up_logged(&[]);
    let key = f.account_with_key("rosa");
    assert!(!must_change(&f, "rosa"));
    f.admin_ok(&["account", "set", "rosa", "--must-change-password"], None);
    assert!(must_change(&f, "rosa"));
    let shown = f.admin_ok(&["account", "show", "rosa"], None);
    assert!(shown.contains("must be changed"), "{shown}");

    // SSH cannot ask for a new password: the password login is refused
    // like a wrong password, with a log line saying why; the key still
    // logs in (it is not the password).
    let wrong = f.sftp_password("rosa", "not-the-password", "ls\n");
    let refused = f.sftp_password("rosa", PASSWORD, "ls\n");
    assert!(!refused.status.success());
    assert_eq!(stderr(&refused), stderr(&wrong));
    assert!(f
        .sftp_key("rosa", &key, "ls\n", f.dir.path())
        .status
        .success());
    assert!(
        f.log()
            .contains("login refused: the password must be changed first, over HTTPS"),
        "no log line says why"
    );

    // HTTPS: the login succeeds, but everything but the change answers 403.
    let c = f.curl();
    let old = basic("rosa", PASSWORD);
    for (args, path) in [
        (vec![], "/api/v1/dirs/"),
        (vec!["-T", "/etc/hostname"], "/api/v1/files/x.txt"),
        (vec!["-X", "POST"], "/api/v1/dirs/new"),
        (
            vec![
                "-X",
                "POST",
                "-H",
                "Tus-Resumable: 1.0.0",
                "-H",
                "Upload-Length: 3",
            ],
            "/api/v1/uploads/",
        ),
    ] {
        let args: Vec<String> = old
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        let r = c.run(&args, path);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.code(), "password_change_required", "{path}");
        assert!(r.text().contains("must be changed first"), "{}", r.text());
    }
    assert!(!f.repository.join("rosa/x.txt").exists());
    assert!(!f.repository.join("rosa/new").exists());
    // The browser login says so, and its cookie is held the same way.
    let (cookie, _, json) = browser_login(&c, "rosa", PASSWORD);
    assert_eq!(json["must_change_password"], true, "{json}");
    let r = c.run(&cookie_args(&cookie, None), "/api/v1/session");
    assert_eq!(r.json()["must_change_password"], true);
    let r = c.run(&cookie_args(&cookie, None), "/api/v1/dirs/");
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "password_change_required");
    // An API token is not the password: it works meanwhile.
    let token = f.admin_ok(&["account", "token", "add", "rosa"], None);
    let token = token
        .split_whitespace()
        .find(|w| w.starts_with("fy_"))
        .unwrap()
        .to_owned();
    let r = c.run(
        &["-H", &format!("Authorization: Bearer {token}")],
        "/api/v1/dirs/",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The change clears the flag: the new password does everything.
    let new = "Avalanche-Teacup-33-Quito";
    let r = change(&c, &old, PASSWORD, new);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!must_change(&f, "rosa"));
    assert_eq!(c.run(&basic("rosa", new), "/api/v1/dirs/").status, 200);
    assert!(password_login(&f, "rosa", new));

    // At creation, and lifted by an admin.
    f.admin_ok(
        &[
            "account",
            "add",
            "sam",
            "--password-stdin",
            "--must-change-password",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(must_change(&f, "sam"));
    assert!(!password_login(&f, "sam", PASSWORD));
    f.admin_ok(
        &["account", "set", "sam", "--no-must-change-password"],
        None,
    );
    assert!(!must_change(&f, "sam"));
    assert!(password_login(&f, "sam", PASSWORD));
}

fn shown(f: &Ferry, name: &str) -> serde_json::Value {
    serde_json::from_str(&f.admin_ok(&["account", "show", name, "--json"], None)).unwrap()
}

#[test]
fn an_account_unused_too_long_is_refused_until_enabled() {
    let mut f = Ferry::up_logged(&[]);
    f.add_account("uma");
    f.add_account("vera");
    assert!(shown(&f, "uma")["last_login_at"].is_null());
    assert!(password_login(&f, "uma", PASSWORD));
    // The last login is recorded (in the background, after the login).
    assert!(wait_until(10, || shown(&f, "uma")["last_login_at"].is_string()));
    let text = f.admin_ok(&["account", "show", "uma"], None);
    assert!(text.contains("last login  20"), "{text}");

    // Off by default; then 30 days.
    assert!(f.admin_ok(&["account", "idle-limit"], None).contains("off"));
    let set = f.admin_ok(&["account", "idle-limit", "30"], None);
    assert!(set.contains("more than 30 days"), "{set}");
    assert!(
        password_login(&f, "vera", PASSWORD),
        "a new limit holds nobody idle"
    );

    // Forty days later for vera: the server's clock cannot move, so with
    // the server stopped her creation and the limit's start are put 40
    // days back in its store (her record re-made as it was, but older).
    for p in &mut f.procs {
        p.kill();
    }
    let db = f.dir.path().join("data").join("state").join("ferry.db");
    let day: i64 = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    {
        let store = ferry_store::Store::open(&db).unwrap();
        let mut vera = store.account("vera").unwrap().unwrap();
        vera.created_at = now - 40 * day;
        store
            .apply(&ferry_core::Command::RemoveAccount {
                name: "vera".into(),
            })
            .unwrap();
        store
            .apply(&ferry_core::Command::CreateAccount(vera))
            .unwrap();
        let limit = ferry_core::IdleLimit {
            days: 30,
            since: now - 40 * day,
        };
        store
            .apply(&ferry_core::Command::SetSetting {
                key: ferry_core::IDLE_LIMIT_SETTING.into(),
                value: limit.to_setting(),
            })
            .unwrap();
    }
    f.kill_and_restart(&[]);

    // vera is refused as a wrong password is, over SSH and HTTPS, and the
    // log says why; uma, who logged in a moment ago, is not.
    let wrong = f.sftp_password("vera", "not-the-password", "ls\n");
    let idle = f.sftp_password("vera", PASSWORD, "ls\n");
    assert!(!idle.status.success());
    assert_eq!(stderr(&idle), stderr(&wrong));
    assert_eq!(f.curl().user("vera").get("/api/v1/dirs/").status, 401);
    assert!(
        f.log().contains("account unused for more than 30 days"),
        "no log line says why"
    );
    assert_eq!(shown(&f, "vera")["idle"], true);
    let text = f.admin_ok(&["account", "show", "vera"], None);
    assert!(text.contains("idle: refused"), "{text}");
    assert!(password_login(&f, "uma", PASSWORD));
    assert_eq!(shown(&f, "uma")["idle"], false);

    // An admin enables her again: 30 more days from now.
    f.admin_ok(&["account", "enable", "vera"], None);
    assert_eq!(shown(&f, "vera")["idle"], false);
    assert!(password_login(&f, "vera", PASSWORD));
    // And off is off.
    assert!(f
        .admin_ok(&["account", "idle-limit", "off"], None)
        .contains("off"));
}
