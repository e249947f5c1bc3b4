//! Scenarios run against every way of deploying Ferry (`ferry up`, and
//! separate server + edge processes).

use std::path::Path;

use super::*;

/// 20 MiB random file up and down; SHA-256 equal both ways and in the log.
pub fn roundtrip_20mib(f: &Ferry, expected_node: &str) {
    let key = f.account_with_key("alice");
    let work = f.dir.path().join("work-rt");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("big.bin"), 20 * 1024 * 1024);
    let sha = sha256_file(&work.join("big.bin"));
    assert_ok(&f.sftp_key("alice", &key, "put big.bin\nget big.bin back.bin\n", &work));
    assert_eq!(
        sha256_file(&f.repository.join("alice/big.bin")),
        sha,
        "stored copy differs"
    );
    assert_eq!(
        sha256_file(&work.join("back.bin")),
        sha,
        "downloaded copy differs"
    );

    let log = f.transfers();
    let up = log
        .iter()
        .find(|t| t["direction"] == "upload")
        .expect("upload row");
    let down = log
        .iter()
        .find(|t| t["direction"] == "download")
        .expect("download row");
    for row in [up, down] {
        assert_eq!(row["status"], "completed", "{row}");
        assert_eq!(row["bytes"], 20 * 1024 * 1024, "{row}");
        assert_eq!(row["sha256"], sha.as_str(), "{row}");
        assert_eq!(row["account"], "alice");
        assert_eq!(row["protocol"], "sftp");
        assert_eq!(row["path"], "/big.bin");
        assert_eq!(row["node"], expected_node);
        assert!(row["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
    }
    assert_eq!(log.len(), 2, "exactly the two transfers: {log:?}");

    // That download was logged with the SHA-256 cached when the upload was
    // committed. A file changed in place on disk (same size, new bytes) must
    // be hashed again, never logged with the stale hash.
    let stored = f.repository.join("alice/big.bin");
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&stored)
            .unwrap();
        file.write_all_at(b"changed on disk", 4096).unwrap();
    }
    let changed = sha256_file(&stored);
    assert_ne!(changed, sha);
    assert_ok(&f.sftp_key("alice", &key, "get big.bin again.bin\n", &work));
    assert_eq!(sha256_file(&work.join("again.bin")), changed);
    let log = f.transfers();
    let downloads: Vec<_> = log
        .iter()
        .filter(|t| t["direction"] == "download")
        .collect();
    assert_eq!(downloads.len(), 2, "{log:?}");
    assert!(
        downloads.iter().any(|t| t["sha256"] == changed.as_str()),
        "the second download must carry the new content's hash: {downloads:?}"
    );
}

/// A transfer killed mid-way leaves no file under the final name; `reput`
/// continues it from the offset the server has.
pub fn reput_after_kill(f: &Ferry) {
    let key = f.account_with_key("bob");
    let work = f.dir.path().join("work-reput");
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("big.bin"), 20 * 1024 * 1024);
    let sha = sha256_file(&work.join("big.bin"));

    // A rate-limited upload, killed (sftp and its ssh) once data has arrived.
    let batch = f.dir.path().join("batch-slow");
    std::fs::write(&batch, "put big.bin\n").unwrap();
    let mut slow = Command::new("sftp")
        .args(SSH_TEST_OPTS)
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .args(["-l", "16000", "-P", &f.sftp_port.to_string(), "-b"])
        .arg(&batch)
        .arg("bob@127.0.0.1")
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = f.repository.join("bob/.ferry-partial.big.bin");
    let arrived = wait_until(30, || {
        std::fs::metadata(&partial)
            .map(|m| m.len() > 1_000_000)
            .unwrap_or(false)
    });
    // Killing sftp leaves its ssh child reading EOF, which ends the session.
    let _ = slow.kill();
    let _ = slow.wait();
    assert!(arrived, "no partial data arrived");
    assert!(
        !f.repository.join("bob/big.bin").exists(),
        "partial upload visible under its final name"
    );
    // The server notices the session ended and logs the interruption.
    assert!(
        wait_until(10, || f
            .transfers()
            .iter()
            .any(|t| t["status"] == "interrupted")),
        "no interrupted row"
    );
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < 20 * 1024 * 1024);

    // Listing shows no partial file; stat (used by reput) reports its size.
    let out = assert_ok(&f.sftp_key("bob", &key, "ls -la\n", &work));
    assert!(!out.contains("ferry-partial"), "{out}");

    assert_ok(&f.sftp_key("bob", &key, "reput big.bin\n", &work));
    assert_eq!(sha256_file(&f.repository.join("bob/big.bin")), sha);
    assert!(!partial.exists(), "partial left behind");
    let log = f.transfers();
    let done = log
        .iter()
        .find(|t| t["account"] == "bob" && t["status"] == "completed")
        .expect("completed row");
    assert_eq!(
        done["sha256"],
        sha.as_str(),
        "the log has the hash of the whole file"
    );
    let interrupted = log
        .iter()
        .find(|t| t["account"] == "bob" && t["status"] == "interrupted")
        .unwrap();
    assert_eq!(
        interrupted["bytes"].as_u64().unwrap() + done["bytes"].as_u64().unwrap(),
        20 * 1024 * 1024,
        "the resume sent only what was missing"
    );

    // reget: a truncated local copy is completed from its length.
    let full = std::fs::read(work.join("big.bin")).unwrap();
    std::fs::write(work.join("part.bin"), &full[..3_000_000]).unwrap();
    assert_ok(&f.sftp_key("bob", &key, "reget big.bin part.bin\n", &work));
    assert_eq!(sha256_file(&work.join("part.bin")), sha);
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
