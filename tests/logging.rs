//! What the services log and how: `--log-format json` gives one JSON
//! object a line with the event's fields, `--log-level` filters, and no
//! colour codes reach a log that is not a terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn json_lines_carry_the_events_fields_and_no_colour() {
    let f = Ferry::up_logged(&["--log-format", "json"]);
    f.add_account("alice");
    let out = f.sftp_password("alice", "wrong-password", "pwd\n");
    assert!(!out.status.success());
    assert!(wait_until(10, || f.log().contains("login failed")));
    let log = f.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    assert!(!log.contains("Some("), "an Option's Debug form:\n{log}");
    let mut refused = None;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "no {field} in {line}");
        }
        if v["message"] == "login failed" {
            refused = Some(v);
        }
    }
    let refused = refused.unwrap();
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["user"], "alice", "{refused}");
    assert_eq!(refused["method"], "password", "{refused}");
    assert!(
        refused["client_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{refused}"
    );
    let started = log
        .lines()
        .find(|l| l.contains("edge started"))
        .expect("edge started");
    assert!(started.contains("\"sftp_addr\":\"127.0.0.1:"), "{started}");
}

#[test]
fn text_logs_have_no_colour_in_a_file_and_the_level_filters() {
    let f = Ferry::up_logged(&["--log-level", "warn"]);
    f.add_account("bob");
    let out = f.sftp_password("bob", "wrong-password", "pwd\n");
    assert!(!out.status.success());
    assert!(wait_until(10, || f.log().contains("login failed")));
    let log = f.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    assert!(!log.contains(" INFO "), "info lines at level warn:\n{log}");
    assert!(log.contains(" WARN "), "{log}");

    // A level that does not parse stops the start with a clear error.
    let out = std::process::Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(f.dir.path().join("other"))
        .args(["--log-level", "info,=nonsense=="])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("log level"), "{}", stderr(&out));
}
