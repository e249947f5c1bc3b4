//! A session cannot reach outside its home: not through a symlink that
//! points out, not by renaming folders while another session opens through
//! them, not over SFTP and not over HTTPS. READLINK of an out-pointing link
//! says nothing about what lies outside, and SETSTAT cannot make a file or
//! folder writable by others or setuid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const RACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/rename_race.py"
);

/// A home with `/sub/link` leading to `outside` (an operator's symlink).
fn race_home(f: &Ferry, user: &str, outside: &Path) {
    let home = f.repository.join(user);
    std::fs::create_dir_all(home.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside, home.join("sub/link")).unwrap();
}

fn race(f: &Ferry, mode: &str, user: &str, key: &Path, secs: u32) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            RACE,
            mode,
            &f.sftp_port.to_string(),
            user,
            key.to_str().unwrap(),
            &secs.to_string(),
        ])
        .output()
        .unwrap();
    let r = json_report(out, &format!("rename race ({mode}, {secs} s)"));
    // The race really ran: many renames and opens.
    assert!(r["renames"].as_u64().unwrap() >= 100, "{r}");
    assert!(r["tried"].as_u64().unwrap() >= 100, "{r}");
    r
}

#[test]
fn renaming_folders_while_another_session_opens_never_leads_outside_the_home() {
    let f = Ferry::up();
    let key = f.account_with_key("racer");
    // The outside folder is the home's neighbour, as on a real repository.
    let outside = f.repository.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "OUTSIDE-SECRET").unwrap();
    race_home(&f, "racer", &outside);

    let r = race(&f, "read", "racer", &key, 8);
    assert_eq!(r["opened"], 0, "read outside the home: {r}");

    let r = race(&f, "write", "racer", &key, 8);
    assert_eq!(r["opened"], 0, "created outside the home: {r}");
    let planted: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "secret.txt")
        .collect();
    assert!(planted.is_empty(), "written outside the home: {planted:?}");
}

#[test]
fn out_pointing_links_are_refused_over_sftp_and_https_and_readlink_reveals_nothing() {
    let f = Ferry::up();
    let key = f.account_with_key("linky");
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "OUTSIDE-SECRET").unwrap();
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Log in once so that the home exists, then plant the operator's links.
    assert_ok(&f.sftp_key("linky", &key, "ls\n", &work));
    let home = f.repository.join("linky");
    std::os::unix::fs::symlink(&outside, home.join("out")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", home.join("up")).unwrap();
    std::fs::write(home.join("mine.txt"), "mine").unwrap();
    std::os::unix::fs::symlink("mine.txt", home.join("alias")).unwrap();

    // SFTP: no read, no write, no listing through them.
    for batch in [
        "get out/secret.txt\n",
        "get up/etc/hostname\n",
        "put /etc/hostname out/planted.txt\n",
        "ls out\n",
        "mkdir out/d\n",
    ] {
        let r = f.sftp_key("linky", &key, batch, &work);
        assert!(
            !r.status.success(),
            "{batch:?} went through: {}",
            stderr(&r)
        );
    }
    assert!(!work.join("secret.txt").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    // An inside link works.
    assert_ok(&f.sftp_key("linky", &key, "get alias got.txt\n", &work));
    assert_eq!(
        std::fs::read_to_string(work.join("got.txt")).unwrap(),
        "mine"
    );

    // READLINK: the inside link is answered; the outside ones exactly as a
    // missing file is (an existing and a missing target look the same).
    let paramiko = |code: &str| {
        let out = Command::new("python3").args(["-c", code]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let script = format!(
        "import paramiko\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.connect(username='linky', pkey=paramiko.Ed25519Key.from_private_key_file('{key}'))\n\
         s = paramiko.SFTPClient.from_transport(t)\n\
         def rl(p):\n    \
             try:\n        return s.readlink(p)\n    \
             except IOError as e:\n        return 'error %s' % e.errno\n\
         print(rl('/alias'))\n\
         print(rl('/out'))\n\
         print(rl('/up'))\n\
         print(rl('/missing'))\n\
         s.chmod('/mine.txt', 0o6777)\n\
         s.mkdir('/d', 0o777)\n\
         s.chmod('/d', 0o7777)\n\
         s.chmod('/', 0o777)\n\
         print(oct(s.stat('/mine.txt').st_mode & 0o7777))\n\
         print(oct(s.stat('/d').st_mode & 0o7777))\n",
        port = f.sftp_port,
        key = key.display()
    );
    let lines: Vec<String> = paramiko(&script).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "/mine.txt", "{lines:?}");
    // 2 = ENOENT: the same answer as for /missing.
    assert_eq!(lines[1], "error 2", "{lines:?}");
    assert_eq!(lines[2], "error 2", "{lines:?}");
    assert_eq!(lines[3], "error 2", "{lines:?}");
    assert_eq!(lines[4], "0o640", "{lines:?}");
    assert_eq!(lines[5], "0o750", "{lines:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&home), 0o750);
    assert_eq!(mode(&home.join("mine.txt")), 0o640);

    // HTTPS: the same refusals.
    let c = f.curl().user("linky");
    for path in [
        "/api/v1/files/out/secret.txt",
        "/api/v1/files/up/etc/hostname",
    ] {
        let r = c.get(path);
        assert!(
            r.status == 403 || r.status == 404,
            "GET {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let local = f.dir.path().join("up.bin");
    std::fs::write(&local, "planted").unwrap();
    let r = c.run(
        &["-T", local.to_str().unwrap()],
        "/api/v1/files/out/planted.txt",
    );
    assert!(r.status == 403 || r.status == 404, "PUT: {}", r.status);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(c.get("/api/v1/files/alias").status, 200);
}

#[test]
fn state_keys_and_uploaded_files_are_private_to_ferrys_user() {
    let f = Ferry::up();
    let key = f.account_with_key("priv");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("a.txt"), "private").unwrap();
    assert_ok(&f.sftp_key("priv", &key, "mkdir d\nput a.txt d/a.txt\n", &work));
    let data = f.dir.path().join("data");
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(
                mode & 0o027,
                0,
                "{} is {mode:o}",
                entry.path().strip_prefix(&data).unwrap().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} files looked at");
    let uploaded = f.repository.join("priv/d/a.txt");
    assert_eq!(
        std::fs::metadata(uploaded).unwrap().permissions().mode() & 0o077,
        0
    );
}

#[test]
fn a_refused_write_open_leaves_no_partial_file_behind() {
    let f = Ferry::up();
    let key = f.account_with_key("part");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert_ok(&f.sftp_key("part", &key, "ls\n", &work));
    let home = f.repository.join("part");
    let outside = f.dir.path().join("outside.txt");
    std::fs::write(&outside, "OUTSIDE").unwrap();
    std::os::unix::fs::symlink(&outside, home.join("out")).unwrap();
    // Open for writing without truncating: the upload would start from the
    // link's target, which is outside, so the open is refused.
    let script = format!(
        "import paramiko\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.connect(username='part', pkey=paramiko.Ed25519Key.from_private_key_file('{key}'))\n\
         s = paramiko.SFTPClient.from_transport(t)\n\
         try:\n    s.open('/out', 'r+')\n    print('opened')\n\
         except IOError as e:\n    print('refused', e.errno)\n",
        port = f.sftp_port,
        key = key.display()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.starts_with("refused"), "{said}{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".ferry-partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "OUTSIDE");
}
