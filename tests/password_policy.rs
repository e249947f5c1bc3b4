//! The password lifecycle end to end: the policy (length, zxcvbn strength,
//! the last five passwords) wherever a password is set, through the CLI
//! and the admin API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

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
}
