//! The SFTP front under the request patterns real clients produce: many
//! requests in flight, requests that depend on the one before, a client
//! that floods requests and reads nothing, and the exit status every
//! script checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RAW: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/clients/sftp_raw.py"
);

fn raw(f: &Ferry, key: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(RAW)
        .args([
            args[0],
            &f.sftp_port.to_string(),
            "alice",
            key.to_str().unwrap(),
        ])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sftp_raw.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// OPEN(CREAT) and LSTAT of one path sent in one write, SETSTAT by path
/// while the file is open, CLOSE and STAT sent together: answered as
/// OpenSSH's sftp-server answers them, 100 times in a row.
#[test]
fn requests_on_one_path_are_answered_in_order() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    let result = raw(&f, &key, &["order", "100"]);
    assert_eq!(result["bad"], serde_json::json!([]), "{result}");
    // Every one was committed with the time set while it was open.
    for i in [0, 57, 99] {
        let meta = std::fs::metadata(f.repository.join(format!("alice/order-{i}.txt"))).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mtime(), 1_000_000_000 + i);
    }
    let rows = f.transfers();
    assert_eq!(rows.len(), 100, "one row per file");
    assert!(rows.iter().all(|r| r["status"] == "completed"));
}

/// `ssh -s sftp` and `scp` (SFTP mode, OpenSSH 9+) exit 0 after a
/// successful session, as with OpenSSH's sshd.
#[test]
fn sftp_channels_close_with_exit_status_zero() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(work.join("tree/sub")).unwrap();
    random_file(&work.join("a.bin"), 300_000);
    random_file(&work.join("tree/sub/b.bin"), 1000);
    let port = f.sftp_port.to_string();

    let st = Command::new("ssh")
        .args(key_login_opts(&key))
        .args(["-p", &port, "-s", "alice@127.0.0.1", "sftp"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0), "ssh -s sftp");

    let scp = |args: &[&str]| {
        Command::new("scp")
            .args(key_login_opts(&key))
            .args(["-P", &port])
            .args(args)
            .current_dir(&work)
            .status()
            .unwrap()
    };
    assert_eq!(scp(&["a.bin", "alice@127.0.0.1:a.bin"]).code(), Some(0));
    assert_eq!(scp(&["alice@127.0.0.1:a.bin", "back.bin"]).code(), Some(0));
    assert_eq!(
        sha256_file(&work.join("back.bin")),
        sha256_file(&work.join("a.bin"))
    );
    assert_eq!(scp(&["-r", "tree", "alice@127.0.0.1:"]).code(), Some(0));
    assert_eq!(
        sha256_file(&f.repository.join("alice/tree/sub/b.bin")),
        sha256_file(&work.join("tree/sub/b.bin"))
    );
    // A failed copy still says so.
    assert_ne!(
        scp(&["alice@127.0.0.1:missing.bin", "x.bin"]).code(),
        Some(0)
    );
}

/// OpenSSH `sftp -R 4096 -B 261120`: 4096 reads of 255 KiB asked at once
/// (about 1 GiB) on a 64 MiB file, then the same upload back.
#[test]
fn thousands_of_large_requests_in_flight() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&f.repository.join("alice/big.bin"), 64 << 20);
    let sha = sha256_file(&f.repository.join("alice/big.bin"));
    let batch = work.join("batch");
    std::fs::write(&batch, "get big.bin got.bin\nput got.bin again.bin\n").unwrap();
    let mut child = Command::new("sftp")
        .args(key_login_opts(&key))
        .args([
            "-P",
            &f.sftp_port.to_string(),
            "-R",
            "4096",
            "-B",
            "261120",
            "-b",
        ])
        .arg(&batch)
        .arg("alice@127.0.0.1")
        .current_dir(&work)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sftp -R 4096 -B 261120 hung for 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert_eq!(sha256_file(&work.join("got.bin")), sha);
    assert_eq!(sha256_file(&f.repository.join("alice/again.bin")), sha);
    let rows = f.transfers();
    for direction in ["download", "upload"] {
        let row = rows.iter().find(|r| r["direction"] == direction).unwrap();
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["bytes"], 64 << 20, "{row}");
        assert_eq!(row["size"], 64 << 20, "{row}");
    }
}

/// A client that reads a file twice moved twice its bytes: the log keeps
/// the bytes moved and the file's size apart.
#[test]
fn the_log_keeps_bytes_moved_and_file_size_apart() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    random_file(&f.repository.join("alice/twice.bin"), 1 << 20);
    let st = Command::new("python3")
        .args([
            "-c",
            "import paramiko,sys\n\
             t=paramiko.Transport(('127.0.0.1',int(sys.argv[1])))\n\
             t.connect(username='alice',pkey=paramiko.Ed25519Key.from_private_key_file(sys.argv[2]))\n\
             s=paramiko.SFTPClient.from_transport(t)\n\
             f=s.open('twice.bin','r'); a=f.read(); f.seek(0); b=f.read(); f.close()\n\
             assert a==b and len(a)==1<<20",
            &f.sftp_port.to_string(),
            key.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let rows = f.transfers();
    let row = rows.iter().find(|r| r["path"] == "/twice.bin").unwrap();
    assert_eq!(row["bytes"], 2 << 20, "{row}");
    assert_eq!(row["size"], 1 << 20, "{row}");
    assert_eq!(row["status"], "completed");
}

/// A client sends 100,000 READs and reads no reply at all: the edge keeps
/// its memory bounded, serves other sessions meanwhile, and disconnects
/// the client with a log line once the idle timeout has passed.
#[test]
fn a_client_that_reads_nothing_is_bounded_and_disconnected() {
    let f = Ferry::up_logged(&["--idle-timeout-secs", "6"]);
    let key = f.account_with_key("alice");
    random_file(&f.repository.join("alice/src.bin"), 4 << 20);
    let pid = f.procs[0].child.id();
    let before = proc_status_kib(pid, "VmRSS");

    let flood = {
        let port = f.sftp_port.to_string();
        let key = key.to_str().unwrap().to_owned();
        std::thread::spawn(move || {
            Command::new("python3")
                .args([
                    RAW, "flood", &port, "alice", &key, "100000", "/src.bin", "60",
                ])
                .output()
                .unwrap()
        })
    };
    // Meanwhile another session works normally.
    std::thread::sleep(Duration::from_secs(2));
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("other.bin"), 1 << 20);
    assert_ok(&f.sftp_key("alice", &key, "put other.bin\nget src.bin src.bin\n", &work));
    let peak = proc_status_kib(pid, "VmRSS");

    let out = flood.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("flood: {result}; RSS {before} KiB before, {peak} KiB during");
    let closed = result["closed_after_secs"]
        .as_f64()
        .expect("the edge never closed the connection");
    assert!(closed < 30.0, "closed only after {closed} s: {result}");
    assert!(
        peak.saturating_sub(before) < 200 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    assert!(
        wait_until(10, || f
            .log()
            .contains("took no replies for the idle timeout")),
        "no log line for the disconnect:\n{}",
        f.log()
    );
    // The download the flooding client had open is logged, not lost.
    assert!(wait_until(10, || f
        .transfers()
        .iter()
        .any(
            |r| r["direction"] == "download" && r["status"] == "interrupted"
        )));
}

/// sftp's `cp` (copy-data) and `ln` (hardlink@openssh.com) work inside
/// the home, and names with backslashes are ordinary names: what a listing
/// shows can be fetched, renamed and removed, while a `..` between
/// backslashes is refused.
#[test]
fn copy_data_hardlinks_and_backslash_names() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let home = f.repository.join("alice");
    random_file(&home.join("src.bin"), 3 << 20);
    std::fs::write(work.join("we\\ird.txt"), b"backslash").unwrap();
    let batch = "cp src.bin copy.bin\nln src.bin link.bin\nput \"we\\\\ird.txt\"\n\
                 rename \"we\\\\ird.txt\" \"b\\\\c.txt\"\nget \"b\\\\c.txt\" back.txt\nls -1\n";
    let out = assert_ok(&f.sftp_key("alice", &key, batch, &work));
    assert!(out.contains("b\\c.txt"), "{out}");
    assert_eq!(
        sha256_file(&home.join("copy.bin")),
        sha256_file(&home.join("src.bin"))
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(home.join("link.bin")).unwrap().nlink(), 2);
    assert_eq!(std::fs::read(work.join("back.txt")).unwrap(), b"backslash");
    assert_ok(&f.sftp_key("alice", &key, "rm \"b\\\\c.txt\"\n", &work));
    assert!(!home.join("b\\c.txt").exists());

    // The copy is an upload with its row and SHA-256.
    let rows = f.transfers();
    let copy = rows.iter().find(|r| r["path"] == "/copy.bin").unwrap();
    assert_eq!(copy["status"], "completed");
    assert_eq!(copy["sha256"], sha256_file(&home.join("src.bin")).as_str());

    // Links cannot point out of the home or over a file.
    let out = f.sftp_key("alice", &key, "ln src.bin ../../outside.bin\n", &work);
    assert!(
        !f.repository.parent().unwrap().join("outside.bin").exists(),
        "{out:?}"
    );
    assert!(!f
        .sftp_key("alice", &key, "ln src.bin copy.bin\n", &work)
        .status
        .success());
    // A Windows-style traversal is a refused name, not a path.
    std::fs::write(work.join("t.txt"), b"x").unwrap();
    let out = f.sftp_key("alice", &key, "put t.txt \"..\\\\..\\\\t.txt\"\n", &work);
    assert!(!out.status.success());
    assert!(!home.join("..\\..\\t.txt").exists());
}

/// `reput` right after the client vanished (sftp and its ssh killed
/// together, no waiting) continues the partial; a second live writer is
/// told that another session is writing, and a resume by the same account
/// takes over once that writer has been idle for the takeover time.
#[test]
fn a_resume_takes_over_from_a_vanished_or_idle_writer() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("big.bin"), 16 << 20);
    let sha = sha256_file(&work.join("big.bin"));
    let batch = work.join("slow");
    std::fs::write(&batch, "put big.bin\n").unwrap();
    use std::os::unix::process::CommandExt;
    let mut slow = Command::new("sftp")
        .args(key_login_opts(&key))
        .args(["-l", "16000", "-P", &f.sftp_port.to_string(), "-b"])
        .arg(&batch)
        .arg("alice@127.0.0.1")
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let partial = f.repository.join("alice/.ferry-partial.big.bin");
    assert!(wait_until(30, || std::fs::metadata(&partial)
        .map(|m| m.len() > 500_000)
        .unwrap_or(false)));
    // The whole client vanishes at once, and is back at once.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", slow.id())])
        .status();
    let _ = slow.wait();
    assert_ok(&f.sftp_key("alice", &key, "reput big.bin\n", &work));
    assert_eq!(sha256_file(&f.repository.join("alice/big.bin")), sha);

    // A live writer that went quiet, holding its upload open after the
    // first 100,000 bytes of the file.
    random_file(&work.join("held.bin"), 300_000);
    let holder = Command::new("python3")
        .args([
            "-c",
            "import paramiko,sys,time\n\
             t=paramiko.Transport(('127.0.0.1',int(sys.argv[1])))\n\
             t.connect(username='alice',pkey=paramiko.Ed25519Key.from_private_key_file(sys.argv[2]))\n\
             s=paramiko.SFTPClient.from_transport(t)\n\
             f=s.open('held.bin','w'); f.write(open(sys.argv[3],'rb').read(100000)); f.flush()\n\
             print('holding',flush=True); time.sleep(60)",
            &f.sftp_port.to_string(),
            key.to_str().unwrap(),
            work.join("held.bin").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = scopeguard(holder);
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding");
    let started = Instant::now();
    let out = f.sftp_key("alice", &key, "put held.bin\n", &work);
    assert!(!out.status.success(), "two live writers of one file");
    assert!(started.elapsed() < Duration::from_secs(14));
    // Idle past the takeover time: the resume takes the upload over.
    std::thread::sleep(Duration::from_secs(16).saturating_sub(started.elapsed()));
    assert_ok(&f.sftp_key("alice", &key, "reput held.bin\n", &work));
    assert_eq!(
        sha256_file(&f.repository.join("alice/held.bin")),
        sha256_file(&work.join("held.bin"))
    );
    assert!(f
        .transfers()
        .iter()
        .any(|r| r["path"] == "/held.bin" && r["status"] == "interrupted"));
}

/// Kills the child when dropped.
struct Guard(std::process::Child);

fn scopeguard(child: std::process::Child) -> Guard {
    Guard(child)
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Uploads to a temporary name then renamed (rsync's `.NAME.XXXXXX`,
/// WinSCP's `NAME.filepart`) are logged and routed under the final name;
/// one never renamed triggers no route.
#[test]
fn upload_then_rename_is_logged_and_routed_under_the_final_name() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    f.add_account("bob");
    f.admin_ok(
        &[
            "route",
            "add",
            "csv-to-bob",
            "--account",
            "alice",
            "--match",
            "*.csv",
            "--action",
            "copy:bob/in",
        ],
        None,
    );
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for name in ["data.csv", "w.csv", "never.csv"] {
        random_file(&work.join(name), 50_000);
    }
    let batch = "put data.csv .data.csv.Ab12Cd\nrename .data.csv.Ab12Cd data.csv\n\
                 put w.csv w.csv.filepart\nrename w.csv.filepart w.csv\n\
                 put never.csv never.csv.part\n";
    assert_ok(&f.sftp_key("alice", &key, batch, &work));
    let bob = f.repository.join("bob/in");
    assert!(
        wait_until(30, || bob.join("data.csv").exists()
            && bob.join("w.csv").exists()),
        "the routes did not run under the final names"
    );
    assert_eq!(
        sha256_file(&bob.join("data.csv")),
        sha256_file(&work.join("data.csv"))
    );
    let rows = f.transfers();
    let uploads: Vec<&str> = rows
        .iter()
        .filter(|r| r["account"] == "alice" && r["direction"] == "upload")
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    for path in ["/data.csv", "/w.csv", "/never.csv.part"] {
        assert!(uploads.contains(&path), "{path} not in {uploads:?}");
    }
    assert!(!uploads
        .iter()
        .any(|p| p.contains("Ab12Cd") || p.ends_with(".filepart")));
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&f.admin_ok(&["event", "list", "--json"], None)).unwrap();
    assert_eq!(events.len(), 2, "one event per renamed upload: {events:#?}");
    assert!(!bob.join("never.csv.part").exists() && !bob.join("never.csv").exists());
}

/// A download read to the end of the file is completed even when the
/// client drops the connection before its CLOSE arrives (lftp does); one
/// read halfway is interrupted.
#[test]
fn a_download_read_to_the_end_is_completed_without_its_close() {
    let f = Ferry::up();
    let key = f.account_with_key("alice");
    random_file(&f.repository.join("alice/whole.bin"), 100_000);
    random_file(&f.repository.join("alice/half.bin"), 100_000);
    assert_eq!(
        raw(&f, &key, &["read", "/whole.bin", "-1"])["read"],
        100_000
    );
    assert_eq!(
        raw(&f, &key, &["read", "/half.bin", "50000"])["read"],
        50_000
    );
    let status = |path: &str| {
        f.transfers()
            .iter()
            .find(|r| r["path"] == path)
            .map(|r| r["status"].as_str().unwrap().to_owned())
    };
    assert!(wait_until(10, || status("/whole.bin").is_some()
        && status("/half.bin").is_some()));
    assert_eq!(status("/whole.bin").unwrap(), "completed");
    assert_eq!(status("/half.bin").unwrap(), "interrupted");
    let whole = f
        .transfers()
        .into_iter()
        .find(|r| r["path"] == "/whole.bin")
        .unwrap();
    assert_eq!(
        whole["sha256"],
        sha256_file(&f.repository.join("alice/whole.bin")).as_str()
    );
}

/// A client with a few hundred reads in flight that stops reading (its
/// window fills, nothing more arrives from it) is disconnected with a log
/// line once the idle timeout has passed, not left hanging.
#[test]
fn a_client_that_stops_reading_midway_is_disconnected() {
    let f = Ferry::up_logged(&["--idle-timeout-secs", "4"]);
    let key = f.account_with_key("alice");
    random_file(&f.repository.join("alice/src.bin"), 16 << 20);
    let result = raw(&f, &key, &["flood", "300", "/src.bin", "40"]);
    let closed = result["closed_after_secs"]
        .as_f64()
        .unwrap_or_else(|| panic!("the edge never closed the connection: {result}"));
    assert!(closed < 20.0, "closed only after {closed} s: {result}");
    assert!(
        wait_until(10, || f
            .log()
            .contains("took no replies for the idle timeout")),
        "no log line for the disconnect:\n{}",
        f.log()
    );
}

#[test]
fn open_directory_handles_hold_no_listing_in_memory() {
    let f = Ferry::up();
    let key = f.account_with_key("lister");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert_ok(&f.sftp_key("lister", &key, "mkdir big\n", &work));
    let big = f.repository.join("lister/big");
    for i in 0..20_000 {
        std::fs::write(
            big.join(format!("file-with-a-longish-name-{i:06}.dat")),
            b"",
        )
        .unwrap();
    }
    std::fs::write(big.join(".ferry-partial.hidden"), b"").unwrap();
    let pid = f.procs[0].child.id();
    let before = proc_status_kib(pid, "VmRSS");
    // 100 handles on a 20,000-entry folder, none read; then one read whole.
    let script = format!(
        "import paramiko\n\
         t = paramiko.Transport(('127.0.0.1', {port}))\n\
         t.connect(username='lister', pkey=paramiko.Ed25519Key.from_private_key_file('{key}'))\n\
         s = paramiko.SFTPClient.from_transport(t)\n\
         handles = [s._request(paramiko.sftp.CMD_OPENDIR, '/big')[1].get_binary() for _ in range(100)]\n\
         print(len(handles))\n\
         import sys; sys.stdout.flush()\n\
         sys.stdin.readline()\n\
         names = s.listdir('/big')\n\
         print(len(names), len(set(names)), sum(1 for n in names if n.startswith('.ferry')))\n",
        port = f.sftp_port,
        key = key.display()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "100");
    let held = proc_status_kib(pid, "VmRSS");
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap()).unwrap();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    eprintln!("RSS {before} KiB, with 100 open directory handles {held} KiB; listing: {rest}");
    // Every name once, none of Ferry's own.
    assert_eq!(rest.trim(), "20000 20000 0");
    // A listing of 20,000 entries is about 3 MB; 100 of them kept would
    // be 300 MB.
    assert!(held < before + 40 * 1024, "{before} -> {held} KiB");
}
