//! ferry-partner against a real OpenSSH sshd (started unprivileged on 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/common/sshd.rs"]
mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::Secret;
use ferry_partner::{
    fingerprint, PartnerAuth, PartnerError, PartnerSession, PartnerSpec, PutOutcome,
};
use sha2::{Digest, Sha256};

fn spec(sshd: &sshd::Sshd) -> PartnerSpec {
    PartnerSpec {
        name: "acme".to_owned(),
        host: "127.0.0.1".to_owned(),
        port: sshd.port,
        username: sshd.user.clone(),
        auth: PartnerAuth::PrivateKey {
            openssh_pem: Secret::new(fs::read_to_string(&sshd.client_key).unwrap()),
            passphrase: None,
        },
        host_key: sshd.host_key_pub.clone(),
        connect_timeout: Duration::from_secs(10),
        rate_limit: None,
    }
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic, not very compressible test data.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `content` to a new local file in `dir`; returns (path, sha256).
fn local_file(dir: &Path, name: &str, content: &[u8]) -> (PathBuf, String) {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    (path, sha_hex(content))
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".filepart"))
        .collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn connect_list_and_file_operations() {
    let sshd = sshd::start();
    let root = sshd.root.clone();
    fs::write(root.join("hello.txt"), b"hello").unwrap();
    fs::create_dir(root.join("sub")).unwrap();

    let session = PartnerSession::connect(&spec(&sshd)).await.unwrap();
    let mut entries = session.list(s(&root)).await.unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["hello.txt", "sub"]
    );
    assert!(entries[0].is_file && !entries[0].is_dir && entries[0].size == 5);
    assert!(entries[0].mtime > 1_600_000_000);
    assert!(entries[1].is_dir && !entries[1].is_file);
    // Relative to the login directory works too (login dir is the user's home).
    session.list(".").await.unwrap();

    // mkdir_all: nested, then again (exists), relative components.
    let deep = root.join("a/b/c");
    session.mkdir_all(s(&deep)).await.unwrap();
    session.mkdir_all(&format!("{}/", s(&deep))).await.unwrap();
    assert!(deep.is_dir());

    // rename, rename over an existing file (posix-rename), remove.
    session
        .rename(s(&root.join("hello.txt")), s(&root.join("hi.txt")))
        .await
        .unwrap();
    assert!(!root.join("hello.txt").exists());
    fs::write(root.join("other.txt"), b"other").unwrap();
    session
        .rename(s(&root.join("hi.txt")), s(&root.join("other.txt")))
        .await
        .unwrap();
    assert_eq!(fs::read(root.join("other.txt")).unwrap(), b"hello");
    session.remove(s(&root.join("other.txt"))).await.unwrap();
    assert!(!root.join("other.txt").exists());

    // Errors on missing things are clear and not transient.
    let err = session.remove(s(&root.join("nope.txt"))).await.unwrap_err();
    assert!(matches!(err, PartnerError::Remote { .. }), "{err:?}");
    assert!(!err.is_transient(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("acme") && msg.contains("nope.txt") && msg.contains("no such file"),
        "{msg}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let err = session
        .get_file(s(&root.join("nope.txt")), &tmp.path().join("x"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(session.list(s(&root.join("nope"))).await.is_err());

    session.close().await;
}

#[tokio::test]
async fn put_file_is_atomic_and_idempotent() {
    let sshd = sshd::start();
    let root = sshd.root.clone();
    let local = tempfile::tempdir().unwrap();
    let session = PartnerSession::connect(&spec(&sshd)).await.unwrap();

    // 1. New file (several chunks and a partial last one).
    let content = data(1_000_000 + 123, 1);
    let (path, sha) = local_file(local.path(), "one.bin", &content);
    let outcome = session
        .put_file(&path, s(&root), "report.bin", "evt1-step1", &sha)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: content.len() as u64
        }
    );
    let on_disk = fs::read(root.join("report.bin")).unwrap();
    assert_eq!(sha_hex(&on_disk), sha);
    assert_eq!(on_disk, content);
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // 2. Same content again: nothing uploaded.
    let mtime = fs::metadata(root.join("report.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let outcome = session
        .put_file(&path, s(&root), "report.bin", "evt1-step1", &sha)
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::AlreadyPresent);
    assert_eq!(
        fs::metadata(root.join("report.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // 3. Different content (same size) over the existing name: replaced.
    let content2 = data(content.len(), 2);
    let (path2, sha2) = local_file(local.path(), "two.bin", &content2);
    let outcome = session
        .put_file(
            &path2,
            &format!("{}/", s(&root)),
            "report.bin",
            "evt2-step1",
            &sha2,
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: content2.len() as u64
        }
    );
    assert_eq!(fs::read(root.join("report.bin")).unwrap(), content2);
    assert!(leftovers(&root).is_empty());

    // 4. A killed attempt left a (longer) partial: overwritten, renamed, gone.
    fs::write(root.join(".evt3-step1.filepart"), data(3_000_000, 9)).unwrap();
    let content3 = b"small file\n".repeat(1000);
    let (path3, sha3) = local_file(local.path(), "three.txt", &content3);
    let outcome = session
        .put_file(&path3, s(&root), "report.bin", "evt3-step1", &sha3)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: content3.len() as u64
        }
    );
    assert_eq!(fs::read(root.join("report.bin")).unwrap(), content3);
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // Empty file.
    let (empty, empty_sha) = local_file(local.path(), "empty", b"");
    let outcome = session
        .put_file(&empty, s(&root), "empty.txt", "evt4", &empty_sha)
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Uploaded { bytes: 0 });
    assert_eq!(fs::read(root.join("empty.txt")).unwrap(), b"");
    assert_eq!(
        session
            .put_file(&empty, s(&root), "empty.txt", "evt4", &empty_sha)
            .await
            .unwrap(),
        PutOutcome::AlreadyPresent
    );

    // A wrong sha (the local file "changed"): refused, nothing renamed, no leftover.
    let err = session
        .put_file(&path, s(&root), "report.bin", "evt5", &sha2)
        .await
        .unwrap_err();
    assert!(matches!(err, PartnerError::Local { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(fs::read(root.join("report.bin")).unwrap(), content3);
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // Into a missing directory: a remote error, no leftover.
    let err = session
        .put_file(&path, s(&root.join("missing")), "x.bin", "evt6", &sha)
        .await
        .unwrap_err();
    assert!(matches!(err, PartnerError::Remote { .. }), "{err:?}");

    // Bad arguments.
    for (name, tag) in [("a/b", "t"), ("ok", "bad tag"), ("ok", "../x")] {
        let err = session
            .put_file(&path, s(&root), name, tag, &sha)
            .await
            .unwrap_err();
        assert!(matches!(err, PartnerError::InvalidArgument(_)), "{err:?}");
    }

    session.close().await;
}

#[tokio::test]
async fn get_file_downloads_with_hash() {
    let sshd = sshd::start();
    let local = tempfile::tempdir().unwrap();
    let session = PartnerSession::connect(&spec(&sshd)).await.unwrap();
    for (i, len) in [0usize, 1, 65_536, 65_537, 3_000_001]
        .into_iter()
        .enumerate()
    {
        let content = data(len, i as u8);
        let remote = sshd.root.join(format!("f{i}"));
        fs::write(&remote, &content).unwrap();
        let target = local.path().join(format!("f{i}"));
        fs::write(
            &target,
            b"old junk that must be truncated away, longer than one byte",
        )
        .unwrap();
        let (bytes, sha) = session.get_file(s(&remote), &target).await.unwrap();
        assert_eq!(bytes, len as u64);
        assert_eq!(sha, sha_hex(&content));
        assert_eq!(fs::read(&target).unwrap(), content, "length {len}");
    }
    session.close().await;
}

#[tokio::test]
async fn refuses_wrong_host_key_and_wrong_client_key() {
    let sshd = sshd::start();
    let keys = tempfile::tempdir().unwrap();

    let other_host = sshd::keygen(&keys.path().join("other_host"));
    let mut wrong = spec(&sshd);
    wrong.host_key = other_host.clone();
    let err = PartnerSession::connect(&wrong)
        .await
        .err()
        .expect("must refuse");
    let PartnerError::HostKeyMismatch {
        ref expected_fingerprint,
        ref presented_fingerprint,
        ..
    } = err
    else {
        panic!("expected HostKeyMismatch, got {err:?}");
    };
    assert_eq!(*expected_fingerprint, fingerprint(&other_host).unwrap());
    assert_eq!(
        *presented_fingerprint,
        fingerprint(&sshd.host_key_pub).unwrap()
    );
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("partner acme (127.0.0.1:")
            && msg.contains("host key mismatch")
            && msg.contains(expected_fingerprint.as_str())
            && msg.contains(presented_fingerprint.as_str()),
        "{msg}"
    );

    // The pinned key may be given as a known_hosts line too.
    let mut known_hosts = spec(&sshd);
    known_hosts.host_key = format!("[127.0.0.1]:{} {} comment", sshd.port, sshd.host_key_pub);
    PartnerSession::connect(&known_hosts)
        .await
        .unwrap()
        .close()
        .await;

    let other_client = keys.path().join("other_client");
    sshd::keygen(&other_client);
    let mut wrong = spec(&sshd);
    wrong.auth = PartnerAuth::PrivateKey {
        openssh_pem: Secret::new(fs::read_to_string(&other_client).unwrap()),
        passphrase: None,
    };
    let err = PartnerSession::connect(&wrong)
        .await
        .err()
        .expect("must refuse");
    assert!(matches!(err, PartnerError::AuthFailed { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("authentication"), "{err}");

    // Password login is off on this server.
    let mut password = spec(&sshd);
    password.auth = PartnerAuth::Password(Secret::new("nope"));
    let err = PartnerSession::connect(&password)
        .await
        .err()
        .expect("must refuse");
    assert!(matches!(err, PartnerError::AuthFailed { .. }), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("nope"));

    // Garbage private key: invalid config, not transient.
    let mut garbage = spec(&sshd);
    garbage.auth = PartnerAuth::PrivateKey {
        openssh_pem: Secret::new("not a key"),
        passphrase: None,
    };
    let err = PartnerSession::connect(&garbage)
        .await
        .err()
        .expect("must refuse");
    assert!(matches!(err, PartnerError::InvalidKey(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn unreachable_when_sshd_is_down() {
    let mut sshd = sshd::start();
    sshd.stop();
    let err = PartnerSession::connect(&spec(&sshd))
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, PartnerError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&sshd.addr()), "{err}");

    sshd.start_again();
    let session = PartnerSession::connect(&spec(&sshd)).await.unwrap();
    session.list(s(&sshd.root)).await.unwrap();
    session.close().await;
}

#[tokio::test]
async fn rate_limit_paces_uploads_and_downloads() {
    let sshd = sshd::start();
    let local = tempfile::tempdir().unwrap();
    let mut limited = spec(&sshd);
    limited.rate_limit = Some(256 * 1024);
    let session = PartnerSession::connect(&limited).await.unwrap();

    let content = data(512 * 1024, 7);
    let (path, sha) = local_file(local.path(), "paced.bin", &content);
    let start = Instant::now();
    let outcome = session
        .put_file(&path, s(&sshd.root), "paced.bin", "paced", &sha)
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(
        outcome,
        PutOutcome::Uploaded {
            bytes: content.len() as u64
        }
    );
    assert!(
        took >= Duration::from_millis(1500),
        "512 KiB at 256 KiB/s took {took:?}"
    );

    let start = Instant::now();
    let (bytes, got_sha) = session
        .get_file(
            s(&sshd.root.join("paced.bin")),
            &local.path().join("back.bin"),
        )
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!((bytes, got_sha), (content.len() as u64, sha));
    assert!(
        took >= Duration::from_millis(1500),
        "download took {took:?}"
    );
    session.close().await;
}
