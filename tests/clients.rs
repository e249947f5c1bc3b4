//! The client matrix: `ferry up` driven by the real SFTP clients people use
//! (installed by `.ci/run` from Debian and PyPI), one test per client. Each
//! test compares every file by SHA-256, checks every client's exit code and
//! finds the transfer-log row of every transfer. Every client runs under a
//! hard timeout, so a hang fails with a message instead of stalling CI.
//!
//! Files are small except where a client is known to break on large ones
//! (OpenSSH sftp with big requests, paramiko's gets): those move 64 MiB.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// Runs `cmd` to its end or kills it after `secs`, then fails naming `what`
/// and what it printed.
fn run_for(cmd: &mut Command, secs: u64, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); .ci/run installs it"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{what}: HUNG, killed after {secs} s\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Like [`run_for`], and the client must exit 0.
fn run_ok(cmd: &mut Command, secs: u64, what: &str) -> String {
    let out = run_for(cmd, secs, what);
    assert!(
        out.status.success(),
        "{what}: exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh `ferry up` with account `user` (password [`PASSWORD`] and an
/// Ed25519 key), and a scratch directory for the client's files.
fn setup(user: &str) -> (Ferry, PathBuf, PathBuf) {
    let f = Ferry::up();
    let key = f.account_with_key(user);
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    (f, key, work)
}

/// The server's host keys as a known_hosts file (from ssh-keyscan).
fn known_hosts(f: &Ferry) -> PathBuf {
    let out = run_ok(
        Command::new("ssh-keyscan").args([
            "-t",
            "rsa,ecdsa,ed25519",
            "-p",
            &f.sftp_port.to_string(),
            "127.0.0.1",
        ]),
        30,
        "ssh-keyscan",
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let path = f.dir.path().join("known_hosts");
    std::fs::write(&path, out).unwrap();
    path
}

/// The SHA-256 fingerprint (`SHA256:…`) of one of `ferry up`'s host keys.
fn host_fingerprint(f: &Ferry, kind: &str) -> String {
    let key = f.dir.path().join(format!("data/ssh_host_{kind}_key"));
    let out = run_ok(
        Command::new("ssh-keygen").arg("-l").arg("-f").arg(&key),
        10,
        "ssh-keygen -l",
    );
    out.split_whitespace().nth(1).unwrap().to_owned()
}

/// The home of `user` on disk.
fn home(f: &Ferry, user: &str) -> PathBuf {
    f.repository.join(user)
}

/// A random file of `len` bytes at `path`; returns its SHA-256.
fn make_file(path: &Path, len: usize) -> String {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    random_file(path, len);
    sha256_file(path)
}

/// A small tree: files at two depths, one empty.
fn make_tree(root: &Path) -> Vec<(String, String, usize)> {
    let mut files = Vec::new();
    for (i, rel) in [
        "a.bin",
        "b.txt",
        "sub/c.bin",
        "sub/deeper/d.bin",
        "sub/empty",
    ]
    .iter()
    .enumerate()
    {
        let len = if rel.ends_with("empty") {
            0
        } else {
            1000 * (i + 1) * 7
        };
        let sha = make_file(&root.join(rel), len);
        files.push((rel.to_string(), sha, len));
    }
    files
}

/// Every file of `make_tree` is in `dir` with its content.
fn assert_tree(dir: &Path, files: &[(String, String, usize)], what: &str) {
    for (rel, sha, _) in files {
        let path = dir.join(rel);
        assert!(path.exists(), "{what}: {} missing", path.display());
        assert_eq!(&sha256_file(&path), sha, "{what}: {rel} differs");
    }
}

/// The transfer log has a completed row of `path` in `direction` with
/// `bytes` and `sha256`.
fn assert_row(f: &Ferry, path: &str, direction: &str, bytes: usize, sha256: &str) {
    let rows = f.transfers();
    let found = rows.iter().any(|r| {
        r["path"] == path
            && r["direction"] == direction
            && r["status"] == "completed"
            && r["bytes"] == bytes as u64
            && r["sha256"] == sha256
    });
    let near: Vec<_> = rows.iter().filter(|r| r["path"] == path).collect();
    assert!(
        found,
        "no completed {direction} row of {path} ({bytes} bytes, {sha256}); rows of that path: {near:#?}"
    );
}

#[test]
fn openssh_sftp_moves_64_mib_with_4096_requests_of_255_kib() {
    let (f, key, work) = setup("osftp");
    let sha = make_file(&work.join("big.bin"), 64 * MIB);
    let batch = work.join("batch");
    std::fs::write(&batch, "put big.bin big.bin\nget big.bin back.bin\n").unwrap();
    run_ok(
        Command::new("sftp")
            .args(key_login_opts(&key))
            .args(["-P", &f.sftp_port.to_string(), "-R", "4096", "-B", "261120"])
            .arg("-b")
            .arg(&batch)
            .arg("osftp@127.0.0.1")
            .current_dir(&work),
        120,
        "sftp -R 4096 -B 261120 (64 MiB put and get)",
    );
    assert_eq!(sha256_file(&home(&f, "osftp").join("big.bin")), sha);
    assert_eq!(sha256_file(&work.join("back.bin")), sha);
    assert_row(&f, "/big.bin", "upload", 64 * MIB, &sha);
    assert_row(&f, "/big.bin", "download", 64 * MIB, &sha);
}

#[test]
fn scp_uploads_downloads_and_copies_trees_recursively() {
    let (f, key, work) = setup("scpuser");
    let port = f.sftp_port.to_string();
    let scp = |args: &[&str], what: &str| {
        run_ok(
            Command::new("scp")
                .args(key_login_opts(&key))
                .args(["-P", &port])
                .args(args)
                .current_dir(&work),
            60,
            what,
        )
    };
    let sha = make_file(&work.join("one.bin"), 300_000);
    scp(&["one.bin", "scpuser@127.0.0.1:one.bin"], "scp upload");
    scp(&["scpuser@127.0.0.1:one.bin", "one.back"], "scp download");
    assert_eq!(sha256_file(&home(&f, "scpuser").join("one.bin")), sha);
    assert_eq!(sha256_file(&work.join("one.back")), sha);
    assert_row(&f, "/one.bin", "upload", 300_000, &sha);
    assert_row(&f, "/one.bin", "download", 300_000, &sha);

    let files = make_tree(&work.join("tree"));
    scp(&["-r", "tree", "scpuser@127.0.0.1:"], "scp -r upload");
    assert_tree(&home(&f, "scpuser").join("tree"), &files, "scp -r upload");
    scp(
        &["-r", "scpuser@127.0.0.1:tree", "tree.back"],
        "scp -r download",
    );
    assert_tree(&work.join("tree.back"), &files, "scp -r download");
    for (rel, sha, len) in &files {
        assert_row(&f, &format!("/tree/{rel}"), "upload", *len, sha);
        assert_row(&f, &format!("/tree/{rel}"), "download", *len, sha);
    }
}

#[test]
fn paramiko_get_getfo_prefetch_of_64_mib_and_put() {
    let (f, key, work) = setup("pmk");
    // The large file is placed in the home directly; the test is about
    // paramiko's reads, and its put is slow for 64 MiB.
    let big_sha = make_file(&home(&f, "pmk").join("big.bin"), 64 * MIB);
    let put_sha = make_file(&work.join("put.bin"), 4 * MIB);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/paramiko_client.py"
    );
    let out = run_for(
        Command::new("python3")
            .arg(script)
            .arg(f.sftp_port.to_string())
            .arg("pmk")
            .arg(&key)
            .arg(known_hosts(&f))
            .arg("big.bin")
            .arg(&work)
            .arg(work.join("put.bin"))
            .arg("put.bin"),
        300,
        "paramiko",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "paramiko: some operations failed (exit {:?}):\n{text}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    for op in ["get", "getfo", "prefetch"] {
        assert!(text.contains(&format!("{op} ok {big_sha}")), "{op}: {text}");
    }
    assert!(text.contains(&format!("put ok {put_sha}")), "{text}");
    assert_eq!(sha256_file(&home(&f, "pmk").join("put.bin")), put_sha);
    assert_row(&f, "/put.bin", "upload", 4 * MIB, &put_sha);
    let downloads = f
        .transfers()
        .into_iter()
        .filter(|r| {
            r["path"] == "/big.bin"
                && r["direction"] == "download"
                && r["status"] == "completed"
                && r["bytes"] == (64 * MIB) as u64
                && r["sha256"] == big_sha.as_str()
        })
        .count();
    assert_eq!(downloads, 3, "one completed row per get, getfo, prefetch");
}

#[test]
fn asyncssh_put_and_get() {
    let (f, key, work) = setup("asy");
    let sha = make_file(&work.join("a.bin"), 2 * MIB + 3);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/asyncssh_client.py"
    );
    let out = run_ok(
        Command::new("python3")
            .arg(script)
            .arg(f.sftp_port.to_string())
            .arg("asy")
            .arg(&key)
            .arg(known_hosts(&f))
            .arg(work.join("a.bin"))
            .arg("a.bin")
            .arg(work.join("a.back")),
        150,
        "asyncssh",
    );
    assert!(out.contains("DONE"), "{out}");
    assert_eq!(sha256_file(&home(&f, "asy").join("a.bin")), sha);
    assert_eq!(sha256_file(&work.join("a.back")), sha);
    assert_row(&f, "/a.bin", "upload", 2 * MIB + 3, &sha);
    assert_row(&f, "/a.bin", "download", 2 * MIB + 3, &sha);
}

#[test]
fn lftp_mirrors_a_tree_up_and_down() {
    let (f, key, work) = setup("lftpu");
    let files = make_tree(&work.join("src"));
    // lftp runs ssh for sftp://; with an empty password it never prompts.
    let connect = format!(
        "ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -o IdentitiesOnly=yes -o BatchMode=yes -i {}",
        key.display()
    );
    let script = format!(
        "set sftp:connect-program \"{connect}\"; set net:max-retries 1; \
         set net:timeout 30; open -u lftpu, sftp://127.0.0.1:{port}; \
         mirror -R src remote; mirror remote back",
        port = f.sftp_port
    );
    run_ok(
        Command::new("lftp")
            .args(["-c", &script])
            .current_dir(&work),
        120,
        "lftp mirror -R / mirror",
    );
    assert_tree(&home(&f, "lftpu").join("remote"), &files, "lftp mirror -R");
    assert_tree(&work.join("back"), &files, "lftp mirror");
    for (rel, sha, len) in &files {
        assert_row(&f, &format!("/remote/{rel}"), "upload", *len, sha);
        if *len > 0 {
            // lftp does not open empty files to download them.
            assert_row(&f, &format!("/remote/{rel}"), "download", *len, sha);
        }
    }
}

#[test]
fn rclone_copies_up_and_down() {
    let (f, key, work) = setup("rcl");
    let files = make_tree(&work.join("up"));
    let config = work.join("rclone.conf");
    std::fs::write(
        &config,
        format!(
            "[ferry]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = rcl\n\
             key_file = {}\nknown_hosts_file = {}\n",
            f.sftp_port,
            key.display(),
            known_hosts(&f).display()
        ),
    )
    .unwrap();
    let rclone = |from: &str, to: &str, what: &str| {
        run_ok(
            Command::new("rclone")
                .arg("--config")
                .arg(&config)
                .args(["--contimeout", "10s", "--timeout", "60s", "--retries", "1"])
                .args(["copy", from, to])
                .current_dir(&work),
            120,
            what,
        )
    };
    rclone("up", "ferry:copied", "rclone copy up");
    assert_tree(&home(&f, "rcl").join("copied"), &files, "rclone copy up");
    rclone("ferry:copied", "down", "rclone copy down");
    assert_tree(&work.join("down"), &files, "rclone copy down");
    for (rel, sha, len) in &files {
        assert_row(&f, &format!("/copied/{rel}"), "upload", *len, sha);
        if *len > 0 {
            assert_row(&f, &format!("/copied/{rel}"), "download", *len, sha);
        }
    }
}

#[test]
fn putty_psftp_puts_and_gets_with_a_pinned_host_key() {
    let (f, key, work) = setup("putty");
    let ppk = work.join("key.ppk");
    run_ok(
        Command::new("puttygen")
            .arg(&key)
            .args(["-O", "private", "-o"])
            .arg(&ppk),
        30,
        "puttygen (OpenSSH key to .ppk)",
    );
    let sha = make_file(&work.join("p.bin"), 700_001);
    let batch = work.join("batch");
    std::fs::write(&batch, "put p.bin p.bin\nget p.bin p.back\nquit\n").unwrap();
    let mut cmd = Command::new("psftp");
    cmd.args(["-batch", "-P", &f.sftp_port.to_string(), "-i"])
        .arg(&ppk);
    // Any of the three keys may be the one PuTTY picks; all are pinned.
    for kind in ["ed25519", "ecdsa", "rsa"] {
        cmd.args(["-hostkey", &host_fingerprint(&f, kind)]);
    }
    cmd.arg("-b")
        .arg(&batch)
        .arg("putty@127.0.0.1")
        .current_dir(&work);
    run_ok(&mut cmd, 60, "psftp put/get");
    assert_eq!(sha256_file(&home(&f, "putty").join("p.bin")), sha);
    assert_eq!(sha256_file(&work.join("p.back")), sha);
    assert_row(&f, "/p.bin", "upload", 700_001, &sha);
    assert_row(&f, "/p.bin", "download", 700_001, &sha);
}

#[test]
fn jsch_puts_and_gets_with_a_password_and_with_a_key() {
    let (f, _key, work) = setup("jsch");
    // JSch reads only PEM keys and knows neither Ed25519 nor X25519: it
    // verifies the ECDSA host key and logs in with an ECDSA key.
    let pem = work.join("jsch_ecdsa");
    run_ok(
        Command::new("ssh-keygen")
            .args([
                "-q", "-t", "ecdsa", "-b", "256", "-m", "PEM", "-N", "", "-f",
            ])
            .arg(&pem),
        30,
        "ssh-keygen -m PEM",
    );
    f.admin_ok(
        &[
            "account",
            "key",
            "add",
            "jsch",
            pem.with_extension("pub").to_str().unwrap(),
        ],
        None,
    );
    let classes = work.join("classes");
    let jar = "/usr/share/java/jsch.jar";
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/JschClient.java"
    );
    run_ok(
        Command::new("javac")
            .args(["-cp", jar, "-d"])
            .arg(&classes)
            .arg(source),
        120,
        "javac JschClient.java",
    );
    let known = known_hosts(&f);
    for (i, (how, secret)) in [
        ("password", PASSWORD.to_owned()),
        ("key", pem.to_str().unwrap().to_owned()),
    ]
    .iter()
    .enumerate()
    {
        let local = work.join(format!("j{i}.bin"));
        let sha = make_file(&local, 500_000 + i);
        let remote = format!("j{i}.bin");
        let out = run_ok(
            Command::new("java")
                .arg("-cp")
                .arg(format!("{jar}:{}", classes.display()))
                .arg("JschClient")
                .args(["127.0.0.1", &f.sftp_port.to_string(), "jsch", how, secret])
                .arg(&known)
                .arg(&local)
                .arg(&remote)
                .arg(work.join(format!("j{i}.back"))),
            90,
            &format!("JSch ({how})"),
        );
        assert!(out.contains("HOSTKEY ecdsa-sha2-nistp256"), "{out}");
        assert!(out.contains("DONE"), "{out}");
        assert_eq!(sha256_file(&home(&f, "jsch").join(&remote)), sha);
        assert_eq!(sha256_file(&work.join(format!("j{i}.back"))), sha);
        assert_row(&f, &format!("/{remote}"), "upload", 500_000 + i, &sha);
        assert_row(&f, &format!("/{remote}"), "download", 500_000 + i, &sha);
    }
}

#[test]
fn curl_sftp_puts_and_gets() {
    let version = run_ok(Command::new("curl").arg("-V"), 10, "curl -V");
    let protocols = version
        .lines()
        .find_map(|l| l.strip_prefix("Protocols: "))
        .unwrap_or_default();
    assert!(
        protocols.split_whitespace().any(|p| p == "sftp"),
        "this curl has no sftp (libssh2): {version}"
    );
    let (f, key, work) = setup("curly");
    let sha = make_file(&work.join("c.bin"), 1_234_567);
    // libssh2 prefers the ECDSA host key; pin it by its SHA-256.
    let pin = host_fingerprint(&f, "ecdsa");
    let pin = pin.trim_start_matches("SHA256:");
    let url = |name: &str| format!("sftp://127.0.0.1:{}/{name}", f.sftp_port);
    let curl = |args: &[&str], what: &str| {
        run_ok(
            Command::new("curl")
                .args(["-sS", "--max-time", "60", "--hostpubsha256", pin])
                .args(args)
                .current_dir(&work),
            90,
            what,
        )
    };
    let login = format!("curly:{PASSWORD}");
    curl(
        &["-u", &login, "-T", "c.bin", &url("c.bin")],
        "curl sftp put",
    );
    curl(
        &["-u", &login, "-o", "c.back", &url("c.bin")],
        "curl sftp get",
    );
    assert_eq!(sha256_file(&home(&f, "curly").join("c.bin")), sha);
    assert_eq!(sha256_file(&work.join("c.back")), sha);
    // And with the key.
    let public = key.with_extension("pub");
    curl(
        &[
            "-u",
            "curly:",
            "--key",
            key.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
            "-o",
            "c.back2",
            &url("c.bin"),
        ],
        "curl sftp get with a key",
    );
    assert_eq!(sha256_file(&work.join("c.back2")), sha);
    assert_row(&f, "/c.bin", "upload", 1_234_567, &sha);
    assert_row(&f, "/c.bin", "download", 1_234_567, &sha);
}

/// Unmounts on drop, so a failed test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        for tool in ["fusermount3", "fusermount"] {
            let st = Command::new(tool)
                .arg("-uz")
                .arg(&self.0)
                .stderr(Stdio::null())
                .status();
            if st.is_ok_and(|s| s.success()) {
                return;
            }
        }
    }
}

#[test]
fn sshfs_mount_copy_touch_read_and_list() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse does not exist here");
        return;
    }
    let (f, key, work) = setup("fuse");
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let opts = format!(
        "IdentityFile={},IdentitiesOnly=yes,StrictHostKeyChecking=no,\
         UserKnownHostsFile=/dev/null,BatchMode=yes,ConnectTimeout=10",
        key.display()
    );
    let mount = run_for(
        Command::new("sshfs")
            .args(["-p", &f.sftp_port.to_string(), "-o", &opts])
            .arg("fuse@127.0.0.1:/")
            .arg(&mnt),
        60,
        "sshfs mount",
    );
    if !mount.status.success() {
        let why = String::from_utf8_lossy(&mount.stderr);
        if why.contains("fuse") || why.contains("permitted") || why.contains("denied") {
            eprintln!("skipped: sshfs cannot mount here: {why}");
            return;
        }
        panic!("sshfs mount failed: {why}");
    }
    let guard = Mount(mnt.clone());
    let sha = make_file(&work.join("in.bin"), 3 * MIB + 11);
    run_ok(
        Command::new("cp")
            .arg(work.join("in.bin"))
            .arg(mnt.join("in.bin")),
        60,
        "cp into the sshfs mount",
    );
    let mut touch = Command::new("touch");
    for i in 0..30 {
        touch.arg(mnt.join(format!("t{i:02}")));
    }
    run_ok(&mut touch, 60, "touch 30 new files on the sshfs mount");
    // Read back through the mount and on disk.
    assert_eq!(sha256_file(&mnt.join("in.bin")), sha);
    assert_eq!(sha256_file(&home(&f, "fuse").join("in.bin")), sha);
    for i in 0..30 {
        let name = format!("t{i:02}");
        assert_eq!(std::fs::read(mnt.join(&name)).unwrap().len(), 0, "{name}");
        assert!(home(&f, "fuse").join(&name).exists(), "{name} not on disk");
    }
    let listing = run_ok(
        Command::new("ls").arg("-l").arg(&mnt),
        30,
        "ls -l on the sshfs mount",
    );
    assert!(
        listing.contains("in.bin") && listing.contains("t29"),
        "{listing}"
    );
    assert_eq!(
        listing.lines().filter(|l| l.contains(" t")).count(),
        30,
        "{listing}"
    );
    drop(guard);
    assert!(
        wait_until(10, || std::fs::read_dir(&mnt).unwrap().next().is_none()),
        "still mounted"
    );
    assert_row(&f, "/in.bin", "upload", 3 * MIB + 11, &sha);
}
