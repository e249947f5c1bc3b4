//! End-to-end tests of SSH exec on `ferry up`: legacy scp (`scp -O`) both
//! ways, the hash commands against coreutils, refusals, and rclone's sftp
//! backend (which hashes with `md5sum`/`sha1sum` over exec).

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// A Ferry with one key account, and a scratch directory for the client.
struct Setup {
    f: Ferry,
    key: PathBuf,
    work: PathBuf,
    home: PathBuf,
}

fn setup(user: &str) -> Setup {
    let f = Ferry::up();
    let key = f.account_with_key(user);
    let work = f.dir.path().join(format!("work-{user}"));
    std::fs::create_dir_all(&work).unwrap();
    let home = f.repository.join(user);
    Setup { f, key, work, home }
}

/// Runs `scp ARGS` (add `-O` for the legacy protocol) in the work directory.
fn scp(s: &Setup, args: &[&str]) -> Output {
    Command::new("scp")
        .args(key_login_opts(&s.key))
        .args(["-P", &s.f.sftp_port.to_string()])
        .args(args)
        .current_dir(&s.work)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `ssh USER@ferry COMMAND` with `stdin` as its input.
fn ssh(s: &Setup, user: &str, command: &str, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("ssh")
        .args(key_login_opts(&s.key))
        .args(["-p", &s.f.sftp_port.to_string(), "-T"])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .current_dir(&s.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn remote(user: &str, path: &str) -> String {
    format!("{user}@127.0.0.1:{path}")
}

fn ok(out: &Output) -> String {
    assert_ok(out)
}

fn old_time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn set_mtime(path: &Path, when: SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(when).unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn legacy_scp_upload_and_download_with_the_transfer_log() {
    let s = setup("olga");
    let len = 6 * 1024 * 1024 + 123;
    random_file(&s.work.join("big.bin"), len);
    let sha = sha256_file(&s.work.join("big.bin"));

    ok(&scp(&s, &["-O", "big.bin", &remote("olga", "big.bin")]));
    assert_eq!(sha256_file(&s.home.join("big.bin")), sha);

    ok(&scp(&s, &["-O", &remote("olga", "big.bin"), "back.bin"]));
    assert_eq!(sha256_file(&s.work.join("back.bin")), sha);

    let log = s.f.transfers();
    assert_eq!(log.len(), 2, "one row per transfer: {log:?}");
    for direction in ["upload", "download"] {
        let row = log
            .iter()
            .find(|t| t["direction"] == direction)
            .unwrap_or_else(|| panic!("no {direction} row: {log:?}"));
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["bytes"], len, "{row}");
        assert_eq!(row["sha256"], sha.as_str(), "{row}");
        assert_eq!(row["path"], "/big.bin", "{row}");
        assert_eq!(row["account"], "olga", "{row}");
        assert_eq!(row["protocol"], "sftp", "scp is logged as sftp: {row}");
    }
    // No partial file is left behind.
    let names: Vec<_> = std::fs::read_dir(&s.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["big.bin"], "{names:?}");

    // An upload into a directory keeps the name; a second upload replaces
    // the file; a name with a space, escaped for the remote shell.
    std::fs::create_dir(s.home.join("in")).unwrap();
    std::fs::write(s.work.join("small file.txt"), "hello\n").unwrap();
    ok(&scp(&s, &["-O", "small file.txt", &remote("olga", "in")]));
    assert_eq!(
        std::fs::read_to_string(s.home.join("in/small file.txt")).unwrap(),
        "hello\n"
    );
    std::fs::write(s.work.join("small file.txt"), "bye\n").unwrap();
    ok(&scp(
        &s,
        &[
            "-O",
            "small file.txt",
            &remote("olga", r"in/small\ file.txt"),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(s.home.join("in/small file.txt")).unwrap(),
        "bye\n"
    );
    ok(&scp(
        &s,
        &["-O", &remote("olga", r"in/small\ file.txt"), "copy.txt"],
    ));
    assert_eq!(
        std::fs::read_to_string(s.work.join("copy.txt")).unwrap(),
        "bye\n"
    );
    // An empty file, both ways.
    std::fs::write(s.work.join("empty"), "").unwrap();
    ok(&scp(&s, &["-O", "empty", &remote("olga", "empty")]));
    assert_eq!(std::fs::metadata(s.home.join("empty")).unwrap().len(), 0);
    ok(&scp(&s, &["-O", &remote("olga", "empty"), "empty2"]));
    assert_eq!(std::fs::metadata(s.work.join("empty2")).unwrap().len(), 0);
}

#[test]
fn legacy_scp_upload_killed_midway_is_logged_interrupted() {
    let s = setup("kurt");
    random_file(&s.work.join("big.bin"), 32 * 1024 * 1024);
    // -l 16384 Kbit/s: about 2 MB/s, so the copy is still running when killed.
    let mut child = Command::new("scp")
        .args(key_login_opts(&s.key))
        .args(["-P", &s.f.sftp_port.to_string(), "-O", "-l", "16384"])
        .args(["big.bin", &remote("kurt", "big.bin")])
        .current_dir(&s.work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = s.home.join(".ferry-partial.big.bin");
    assert!(
        wait_until(20, || std::fs::metadata(&partial)
            .is_ok_and(|m| m.len() > 0)),
        "the upload never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(20, || s
            .f
            .transfers()
            .iter()
            .any(|t| t["status"] == "interrupted")),
        "no interrupted row: {:?}",
        s.f.transfers()
    );
    let log = s.f.transfers();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["direction"], "upload");
    assert_eq!(log[0]["path"], "/big.bin");
    assert!(
        !s.home.join("big.bin").exists(),
        "nothing is committed under the final name"
    );
}

#[test]
fn legacy_scp_recursive_with_times_and_modes_both_ways() {
    let s = setup("rita");
    let tree = s.work.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(tree.join("empty-dir")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    random_file(&tree.join("sub/b.bin"), 3 * 1024 * 1024 + 7);
    std::fs::write(tree.join("sub/deeper/c.txt"), "gamma\n").unwrap();
    std::fs::set_permissions(tree.join("a.txt"), PermissionsExt::from_mode(0o600)).unwrap();
    let t_a = old_time(1_000_000_000);
    let t_b = old_time(1_100_000_000);
    set_mtime(&tree.join("a.txt"), t_a);
    set_mtime(&tree.join("sub/b.bin"), t_b);
    let t_dir = old_time(1_200_000_000);
    std::fs::File::open(tree.join("sub"))
        .unwrap()
        .set_modified(t_dir)
        .unwrap();

    ok(&scp(&s, &["-O", "-r", "-p", "tree", &remote("rita", "")]));
    let up = s.home.join("tree");
    assert_eq!(
        std::fs::read_to_string(up.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        sha256_file(&up.join("sub/b.bin")),
        sha256_file(&tree.join("sub/b.bin"))
    );
    assert_eq!(
        std::fs::read_to_string(up.join("sub/deeper/c.txt")).unwrap(),
        "gamma\n"
    );
    assert!(up.join("empty-dir").is_dir());
    assert_eq!(mtime(&up.join("a.txt")), t_a, "-p keeps a file's mtime");
    assert_eq!(mtime(&up.join("sub/b.bin")), t_b);
    assert_eq!(
        mtime(&up.join("sub")),
        t_dir,
        "-p keeps a directory's mtime"
    );
    assert_eq!(mode(&up.join("a.txt")), 0o600, "the mode of the C record");
    let uploads =
        s.f.transfers()
            .into_iter()
            .filter(|t| t["direction"] == "upload" && t["status"] == "completed")
            .count();
    assert_eq!(uploads, 3);

    // And back: the tree arrives whole, with times.
    let back = s.work.join("back");
    std::fs::create_dir(&back).unwrap();
    ok(&scp(
        &s,
        &["-O", "-r", "-p", &remote("rita", "tree"), "back"],
    ));
    let down = back.join("tree");
    assert_eq!(
        std::fs::read_to_string(down.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        sha256_file(&down.join("sub/b.bin")),
        sha256_file(&tree.join("sub/b.bin"))
    );
    assert_eq!(
        std::fs::read_to_string(down.join("sub/deeper/c.txt")).unwrap(),
        "gamma\n"
    );
    assert!(down.join("empty-dir").is_dir());
    assert_eq!(mtime(&down.join("a.txt")), t_a);
    assert_eq!(mtime(&down.join("sub/b.bin")), t_b);
    assert_eq!(mode(&down.join("a.txt")), 0o600);

    // Without -r a directory is refused with scp's message.
    let out = scp(&s, &["-O", &remote("rita", "tree"), "nodir"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tree: not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn legacy_scp_stays_inside_the_home() {
    let s = setup("ivan");
    std::fs::write(s.work.join("x"), "payload\n").unwrap();
    let data_dir = s.f.repository.parent().unwrap().to_path_buf();
    assert!(!Path::new("/etc/x").exists());

    // `..` stops at the home: ../../etc/x is /etc/x in the home, whose
    // directory does not exist there.
    let out = scp(&s, &["-O", "x", &remote("ivan", "../../etc/x")]);
    assert!(!out.status.success(), "upload must fail: {out:?}");
    assert!(
        stderr(&out).contains("No such file or directory"),
        "{}",
        stderr(&out)
    );
    assert!(!data_dir.join("etc/x").exists());
    assert!(!Path::new("/etc/x").exists());

    // With an etc directory in the home, absolute and climbing paths land
    // there, and the machine's /etc/passwd is untouched.
    let passwd = sha256_file(Path::new("/etc/passwd"));
    std::fs::create_dir(s.home.join("etc")).unwrap();
    ok(&scp(&s, &["-O", "x", &remote("ivan", "/etc/passwd")]));
    ok(&scp(&s, &["-O", "x", &remote("ivan", "../../../etc/x")]));
    assert_eq!(sha256_file(Path::new("/etc/passwd")), passwd);
    assert_eq!(
        std::fs::read_to_string(s.home.join("etc/passwd")).unwrap(),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.home.join("etc/x")).unwrap(),
        "payload\n"
    );
    assert!(!Path::new("/etc/x").exists());
    // A download of /etc/passwd is the home's copy.
    ok(&scp(&s, &["-O", &remote("ivan", "/etc/passwd"), "got"]));
    assert_eq!(
        std::fs::read_to_string(s.work.join("got")).unwrap(),
        "payload\n"
    );

    // A symlink that leads out of the home is not followed, either way.
    std::os::unix::fs::symlink("/etc", s.home.join("out")).unwrap();
    let out = scp(&s, &["-O", "x", &remote("ivan", "out/x")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("outside the home"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new("/etc/x").exists());
    let out = scp(&s, &["-O", &remote("ivan", "out/passwd"), "leak"]);
    assert!(!out.status.success());
    assert!(!s.work.join("leak").exists());

    // Shell tricks in the remote path are refused, never run.
    let out = scp(
        &s,
        &["-O", "x", &remote("ivan", "y;touch /tmp/ferry-pwned")],
    );
    assert!(!out.status.success());
    assert!(!Path::new("/tmp/ferry-pwned").exists());
}

#[test]
fn legacy_scp_download_of_a_missing_file_fails_with_the_message() {
    let s = setup("mona");
    let out = scp(&s, &["-O", &remote("mona", "nope.bin"), "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("scp: nope.bin: No such file or directory"),
        "{}",
        stderr(&out)
    );
    assert!(!s.work.join("x").exists());
    // Several sources: the missing one is reported, the others arrive.
    std::fs::write(s.home.join("here.txt"), "here\n").unwrap();
    std::fs::create_dir(s.work.join("dst")).unwrap();
    let out = scp(
        &s,
        &[
            "-O",
            &remote("mona", "here.txt"),
            &remote("mona", "gone.txt"),
            "dst",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("gone.txt: No such file or directory"));
    assert_eq!(
        std::fs::read_to_string(s.work.join("dst/here.txt")).unwrap(),
        "here\n"
    );
}

#[test]
fn openssh_scp_in_sftp_mode_still_works() {
    let s = setup("nina");
    random_file(&s.work.join("f.bin"), 1024 * 1024);
    let sha = sha256_file(&s.work.join("f.bin"));
    // The exit status of SFTP-mode scp depends on how the sftp channel
    // closes (handled elsewhere); the files must arrive either way.
    let _ = scp(&s, &["f.bin", &remote("nina", "f.bin")]);
    assert_eq!(sha256_file(&s.home.join("f.bin")), sha);
    let _ = scp(&s, &[&remote("nina", "f.bin"), "back.bin"]);
    assert_eq!(sha256_file(&s.work.join("back.bin")), sha);
}

/// The local coreutils' output for `cmd ARGS`, run in `dir`.
fn coreutils(dir: &Path, cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn hash_commands_print_what_coreutils_prints() {
    let s = setup("hana");
    random_file(&s.home.join("f.bin"), 2 * 1024 * 1024 + 5);
    std::fs::write(s.home.join("my file.txt"), "text\n").unwrap();
    std::fs::create_dir(s.home.join("dir")).unwrap();

    for cmd in ["sha256sum", "sha1sum", "md5sum"] {
        let local = coreutils(&s.home, cmd, &["f.bin", "my file.txt"]);
        assert!(local.status.success());
        let out = ssh(&s, "hana", &format!("{cmd} f.bin 'my file.txt'"), b"");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&local.stdout),
            "{cmd}: {}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", stderr(&out));

        // Absolute paths name files in the home, as rclone sends them.
        let out = ssh(&s, "hana", &format!(r"{cmd} /my\ file.txt"), b"");
        let local = coreutils(&s.home, cmd, &["my file.txt"]);
        let hex = |o: &Output| String::from_utf8_lossy(&o.stdout)[..20].to_owned();
        assert_eq!(hex(&out), hex(&local));
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("  /my file.txt\n"));

        // A missing file and a directory: coreutils' messages, exit 1, the
        // good file still printed.
        let out = ssh(&s, "hana", &format!("{cmd} nope f.bin dir"), b"");
        assert_eq!(out.status.code(), Some(1));
        let local = coreutils(&s.home, cmd, &["nope", "f.bin", "dir"]);
        assert_eq!(out.stdout, local.stdout, "{cmd}");
        assert_eq!(stderr(&out), stderr(&local), "{cmd}");

        // Standard input: the probe rclone runs, and real data.
        let out = ssh(&s, "hana", cmd, b"");
        let local_empty = Command::new(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .stdout;
        assert_eq!(out.stdout, local_empty, "{cmd} of empty stdin");
        let out = ssh(&s, "hana", &format!("{cmd} -"), b"abc");
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("  -\n"));
    }
    // Hashing is a read, not a transfer.
    assert!(s.f.transfers().is_empty());
    // Outside the home is out of reach.
    let out = ssh(&s, "hana", "md5sum ../../../../etc/passwd", b"");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn other_commands_are_refused_with_a_message() {
    let s = setup("otto");
    let out = ssh(&s, "otto", "ls -la", b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("Ferry: command not supported: ls"),
        "{}",
        stderr(&out)
    );
    for cmd in [
        "rsync --server -vlogDtpre.iLsfxC . x",
        "scp -3 -t x",
        "scp a b",
        "echo ${ShellId}%ComSpec%",
        "md5sum x; id",
    ] {
        let out = ssh(&s, "otto", cmd, b"");
        assert_eq!(out.status.code(), Some(127), "{cmd}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("Ferry: "),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    // A shell gets a message and an exit status, not a silent close.
    let out = ssh(&s, "otto", "", b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("offers no shell"), "{}", stderr(&out));
}

#[test]
fn rclone_copies_and_checks_with_remote_hashes() {
    if Command::new("rclone").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "rclone is missing: .ci/run installs it"
        );
        eprintln!("rclone is not installed; skipped (.ci/run installs it)");
        return;
    }
    let s = setup("rick");
    let src = s.work.join("src");
    std::fs::create_dir_all(src.join("nested")).unwrap();
    random_file(&src.join("one.bin"), 1024 * 1024 + 1);
    std::fs::write(src.join("nested/two.txt"), "two\n").unwrap();
    std::fs::write(src.join("with space.txt"), "three\n").unwrap();
    // A remote in a config file, as users have it: rclone saves there what
    // its probes found (shell type, hash commands).
    let conf = s.work.join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[ferry]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = rick\nkey_file = {}\n",
            s.f.sftp_port,
            s.key.display()
        ),
    )
    .unwrap();
    let rclone = |args: &[&str]| -> Output {
        Command::new("rclone")
            .args(args)
            .args(["--config", conf.to_str().unwrap()])
            .current_dir(&s.work)
            .output()
            .unwrap()
    };
    let out = rclone(&["copy", src.to_str().unwrap(), "ferry:dst"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sha256_file(&s.home.join("dst/one.bin")),
        sha256_file(&src.join("one.bin"))
    );

    let out = rclone(&["check", "-v", src.to_str().unwrap(), "ferry:dst"]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("0 differences found"), "{log}");
    assert!(log.contains("3 matching files"), "{log}");
    assert!(
        log.contains("Using md5 for hash comparisons"),
        "rclone must compare hashes: {log}"
    );
    assert!(
        !log.contains("No common hash found"),
        "rclone must compare hashes: {log}"
    );

    let saved = std::fs::read_to_string(&conf).unwrap();
    assert!(
        saved.contains("md5sum_command = md5sum") && saved.contains("sha1sum_command = sha1sum"),
        "rclone's probes found the hash commands: {saved}"
    );

    for (algorithm, tool) in [("md5", "md5sum"), ("sha1", "sha1sum")] {
        let out = rclone(&["hashsum", algorithm, "ferry:dst"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        got.sort();
        let local = coreutils(&src, tool, &["nested/two.txt", "one.bin", "with space.txt"]);
        let mut want: Vec<String> = String::from_utf8_lossy(&local.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        want.sort();
        assert_eq!(got, want, "{algorithm}");
    }
}
