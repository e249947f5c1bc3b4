//! End-to-end tests of the HTTPS front with curl: the file API, ranges,
//! interrupted uploads, tus resumable uploads, expiry, limits.

// Tests fail by panicking; unwrap is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::http::collect;
use common::*;

fn user_home(f: &Ferry, user: &str) -> std::path::PathBuf {
    f.repository.join(user)
}

#[test]
fn files_api_upload_download_ranges_and_the_transfer_log() {
    let f = Ferry::up();
    f.add_account("alice");
    let c = f.curl().user("alice");
    let local = f.dir.path().join("five.bin");
    random_file(&local, 5 * 1024 * 1024 + 123);
    let sha = sha256_file(&local);
    let local_s = local.to_str().unwrap();

    // Upload with Content-Length (HTTP/2): 201 with size and SHA-256.
    let r = c.run(&["-T", local_s], "/api/v1/files/five.bin");
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["sha256"], sha.as_str());
    assert_eq!(j["size"], 5 * 1024 * 1024 + 123);
    let disk = user_home(&f, "alice").join("five.bin");
    assert_eq!(sha256_file(&disk), sha);

    // Download whole, HEAD, and single ranges.
    let out = f.dir.path().join("got.bin");
    let r = c.run(&["-o", out.to_str().unwrap()], "/api/v1/files/five.bin");
    assert_eq!(r.status, 200);
    let r2 = c.get("/api/v1/files/five.bin");
    assert_eq!(r2.body, std::fs::read(&local).unwrap());
    let etag = r2.header("etag").unwrap().to_owned();
    assert!(r2
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let head = c.run(&["-I"], "/api/v1/files/five.bin");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5243003"));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    let data = std::fs::read(&local).unwrap();
    let r = c.run(&["-r", "1000-1999"], "/api/v1/files/five.bin");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[1000..2000]);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/5243003"));
    let r = c.run(&["-H", "Range: bytes=-10"], "/api/v1/files/five.bin");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &data[data.len() - 10..])
    );
    let r = c.run(&["-r", "5243003-"], "/api/v1/files/five.bin");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */5243003"));
    assert_eq!(r.code(), "range_not_satisfiable");
    // If-Range: the current ETag honours the range, another one gets it all.
    let r = c.run(
        &["-r", "0-9", "-H", &format!("If-Range: {etag}")],
        "/api/v1/files/five.bin",
    );
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = c.run(
        &["-r", "0-9", "-H", "If-Range: \"stale\""],
        "/api/v1/files/five.bin",
    );
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    let r = c.run(
        &["-H", &format!("If-None-Match: {etag}")],
        "/api/v1/files/five.bin",
    );
    assert_eq!(r.status, 304);

    // Replace with a chunked HTTP/1.1 upload: 200, new ETag, new content.
    let second = f.dir.path().join("second.bin");
    random_file(&second, 700_000);
    let r = c.run(
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
            second.to_str().unwrap(),
        ],
        "/api/v1/files/five.bin",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sha256_file(&disk), sha256_file(&second));
    let r = c.run(&["-I"], "/api/v1/files/five.bin");
    assert_ne!(r.header("etag").unwrap(), etag);
    // If-None-Match: * refuses to replace.
    let r = c.run(
        &["-H", "If-None-Match: *", "-T", local_s],
        "/api/v1/files/five.bin",
    );
    assert_eq!((r.status, r.code().as_str()), (412, "precondition_failed"));
    assert_eq!(sha256_file(&disk), sha256_file(&second));

    // Folders, listing, rename, delete.
    let r = c.run(&["-X", "POST"], "/api/v1/dirs/in%20box");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.run(&["-X", "POST"], "/api/v1/dirs/in%20box");
    assert_eq!((r.status, r.code().as_str()), (409, "already_exists"));
    let r = c.run(
        &["-T", local_s],
        "/api/v1/files/in%20box/r%C3%A9sum%C3%A9.bin",
    );
    assert_eq!(r.status, 201);
    let r = c.get("/api/v1/dirs/");
    assert_eq!(r.status, 200);
    let j = r.json();
    let names: Vec<_> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("five.bin".into(), "file".into()),
            ("in box".into(), "dir".into())
        ]
    );
    let r = c.get("/api/v1/dirs/in%20box");
    assert_eq!(r.json()["entries"][0]["name"], "résumé.bin");
    assert_eq!(r.json()["entries"][0]["size"], 5 * 1024 * 1024 + 123);
    assert!(r.json()["entries"][0]["mtime"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let r = c.run(&["-X", "DELETE"], "/api/v1/dirs/in%20box");
    assert_eq!((r.status, r.code().as_str()), (409, "not_empty"));
    let rename = |from: &str, to: &str, overwrite: bool| {
        let body = serde_json::json!({"from": from, "to": to, "overwrite": overwrite}).to_string();
        c.run(
            &["-H", "Content-Type: application/json", "--data", &body],
            "/api/v1/rename",
        )
    };
    let r = rename("/in box/résumé.bin", "/five.bin", false);
    assert_eq!((r.status, r.code().as_str()), (409, "already_exists"));
    let r = rename("/in box/résumé.bin", "/moved.bin", false);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(sha256_file(&user_home(&f, "alice").join("moved.bin")), sha);
    let r = c.run(&["-X", "DELETE"], "/api/v1/dirs/in%20box");
    assert_eq!(r.status, 204);
    let r = c.run(&["-X", "DELETE"], "/api/v1/files/moved.bin");
    assert_eq!(r.status, 204);
    let r = c.get("/api/v1/files/moved.bin");
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    assert!(r.json()["message"].as_str().is_some());

    // The transfer log has the HTTPS rows with the right hashes.
    let rows = f.transfers();
    let uploads: Vec<_> = rows
        .iter()
        .filter(|r| {
            r["protocol"] == "https" && r["direction"] == "upload" && r["status"] == "completed"
        })
        .collect();
    assert_eq!(uploads.len(), 3, "{rows:#?}");
    assert!(uploads
        .iter()
        .any(|r| r["sha256"] == sha.as_str() && r["path"] == "/five.bin"));
    assert!(rows.iter().any(|r| r["direction"] == "download"
        && r["bytes"] == 1000
        && r["sha256"] == sha.as_str()));
    assert!(rows.iter().all(|r| r["client_addr"] == "127.0.0.1"));
}

#[test]
fn an_interrupted_put_commits_nothing_and_oversized_uploads_are_refused() {
    let f = Ferry::up_with(&["--max-upload-bytes", "8000000"]);
    f.add_account("alice");
    let c = f.curl().user("alice");
    let old = f.dir.path().join("old.bin");
    random_file(&old, 100_000);
    let r = c.run(&["-T", old.to_str().unwrap()], "/api/v1/files/data.bin");
    assert_eq!(r.status, 201);

    // A slow replacement killed half-way leaves the old file as it was.
    let big = f.dir.path().join("big.bin");
    random_file(&big, 6_000_000);
    let (mut child, h, b) = c.spawn(
        &["--limit-rate", "1M", "-T", big.to_str().unwrap()],
        "/api/v1/files/data.bin",
    );
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait_with_output().map(|o| collect(o, &h, &b));
    let disk = user_home(&f, "alice").join("data.bin");
    assert!(wait_until(10, || f
        .transfers()
        .iter()
        .any(|r| r["status"] == "interrupted")));
    assert_eq!(sha256_file(&disk), sha256_file(&old));
    let r = c.get("/api/v1/dirs/");
    assert_eq!(
        r.json()["entries"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );

    // Over the limit: refused by Content-Length, by a chunked body, and by tus.
    let huge = f.dir.path().join("huge.bin");
    random_file(&huge, 8_000_001);
    let r = c.run(&["-T", huge.to_str().unwrap()], "/api/v1/files/huge.bin");
    assert_eq!((r.status, r.code().as_str()), (413, "too_large"));
    let r = c.run(
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
            huge.to_str().unwrap(),
        ],
        "/api/v1/files/huge.bin",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let r = c.run(
        &[
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 8000001",
            "-H",
            "Upload-Metadata: filename aHVnZS5iaW4=",
        ],
        "/api/v1/uploads/",
    );
    assert_eq!(r.status, 413);
    assert!(!user_home(&f, "alice").join("huge.bin").exists());
}

fn tus_create(c: &common::http::Curl, length: usize, name: &str) -> String {
    use base64::Engine;
    let meta = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    );
    let r = c.run(
        &[
            &["-X", "POST", "-H", "Tus-Resumable: 1.0.0"][..],
            &[
                "-H",
                &format!("Upload-Length: {length}"),
                "-H",
                &format!("Upload-Metadata: {meta}"),
            ],
        ]
        .concat(),
        "/api/v1/uploads/",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("upload-expires").is_some());
    r.header("location").unwrap().to_owned()
}

fn tus_offset(c: &common::http::Curl, location: &str) -> (u16, Option<u64>) {
    let r = c.run(&["-I", "-H", "Tus-Resumable: 1.0.0"], location);
    (
        r.status,
        r.header("upload-offset").map(|v| v.parse().unwrap()),
    )
}

fn tus_patch_args(offset: u64, file: &str, checksum: Option<String>) -> Vec<String> {
    let mut a = vec![
        "-X".into(),
        "PATCH".into(),
        "-H".into(),
        "Tus-Resumable: 1.0.0".into(),
        "-H".into(),
        "Content-Type: application/offset+octet-stream".into(),
        "-H".into(),
        format!("Upload-Offset: {offset}"),
        "--data-binary".into(),
        format!("@{file}"),
    ];
    if let Some(c) = checksum {
        a.extend(["-H".into(), format!("Upload-Checksum: sha256 {c}")]);
    }
    a
}

/// `Upload-Checksum` value for `data` in `algorithm` (sha256, sha1 or md5).
fn checksum_header(algorithm: &str, data: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = match algorithm {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "md5" => md5::Md5::digest(data).to_vec(),
        other => panic!("no digest for {other}"),
    };
    format!(
        "Upload-Checksum: {algorithm} {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn b64_sha256(data: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

#[test]
fn tus_with_curl_checksums_offsets_interruption_and_resume() {
    let f = Ferry::up();
    f.add_account("alice");
    let c = f.curl().user("alice");
    let r = f.curl().run(&["-X", "OPTIONS"], "/api/v1/uploads/");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    assert!(r.header("tus-extension").unwrap().contains("checksum"));
    assert_eq!(r.header("tus-checksum-algorithm"), Some("sha256,sha1,md5"));

    let total = 6 * 1024 * 1024 + 17;
    let local = f.dir.path().join("tus.bin");
    random_file(&local, total);
    let data = std::fs::read(&local).unwrap();
    let part = |from: usize, to: usize| {
        let path = f.dir.path().join(format!("part-{from}-{to}"));
        std::fs::write(&path, &data[from..to]).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let loc = tus_create(&c, total, "tus.bin");
    assert!(loc.starts_with("/api/v1/uploads/"));
    assert_eq!(tus_offset(&c, &loc), (200, Some(0)));
    // Without Tus-Resumable: 412.
    let r = c.run(&["-I"], &loc);
    assert_eq!(r.status, 412);

    // First MiB with a good checksum.
    let first = part(0, 1 << 20);
    let args = tus_patch_args(0, &first, Some(b64_sha256(&data[..1 << 20])));
    let r = c.run(&args, &loc);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("upload-offset"), Some("1048576"));

    // A wrong checksum keeps nothing (460); a wrong offset is a conflict (409).
    let second = part(1 << 20, 2 << 20);
    let args = tus_patch_args(1 << 20, &second, Some(b64_sha256(b"something else")));
    let r = c.run(&args, &loc);
    assert_eq!((r.status, r.code().as_str()), (460, "checksum_mismatch"));
    assert_eq!(tus_offset(&c, &loc).1, Some(1 << 20));
    let args = tus_patch_args(5, &second, None);
    let r = c.run(&args, &loc);
    assert_eq!((r.status, r.code().as_str()), (409, "offset_mismatch"));
    let mut bad_type = tus_patch_args(1 << 20, &second, None);
    bad_type[5] = "Content-Type: application/octet-stream".into();
    let r = c.run(&bad_type, &loc);
    assert_eq!(r.status, 415);

    // A slow PATCH of the rest, killed mid-body: what arrived is kept.
    let rest = part(1 << 20, total);
    let args = tus_patch_args(1 << 20, &rest, None);
    let (mut child, h, b) = c.spawn(
        &[vec!["--limit-rate".into(), "2M".into()], args].concat(),
        &loc,
    );
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait_with_output().map(|o| collect(o, &h, &b));
    let mut offset = 0;
    assert!(wait_until(10, || {
        offset = tus_offset(&c, &loc).1.unwrap();
        offset > (1 << 20)
    }));
    assert!(offset < total as u64, "offset {offset}");
    assert!(!user_home(&f, "alice").join("tus.bin").exists());
    let r = c.get("/api/v1/dirs/");
    assert!(
        r.json()["entries"].as_array().unwrap().is_empty(),
        "{}",
        r.text()
    );

    // Resume from the offset the server reports.
    let tail = part(offset as usize, total);
    let args = tus_patch_args(offset, &tail, Some(b64_sha256(&data[offset as usize..])));
    let r = c.run(&args, &loc);
    assert_eq!(r.status, 204, "{}", r.text());
    let sha = sha256_file(&local);
    assert_eq!(r.header("upload-sha256"), Some(sha.as_str()));
    assert_eq!(sha256_file(&user_home(&f, "alice").join("tus.bin")), sha);
    assert_eq!(tus_offset(&c, &loc).0, 404);
    let rows = f.transfers();
    let done: Vec<_> = rows
        .iter()
        .filter(|r| r["path"] == "/tus.bin" && r["direction"] == "upload")
        .collect();
    assert_eq!(done.len(), 1, "{rows:#?}");
    assert_eq!(done[0]["status"], "completed");
    assert_eq!(done[0]["sha256"], sha.as_str());
    assert_eq!(done[0]["bytes"], total);

    // An empty file is complete when announced.
    let loc = tus_create(&c, 0, "empty.txt");
    assert_eq!(tus_offset(&c, &loc).0, 404);
    assert_eq!(
        std::fs::metadata(user_home(&f, "alice").join("empty.txt"))
            .unwrap()
            .len(),
        0
    );

    // Termination removes the data.
    let loc = tus_create(&c, 10, "gone.bin");
    let r = c.run(&["-X", "DELETE", "-H", "Tus-Resumable: 1.0.0"], &loc);
    assert_eq!(r.status, 204);
    assert_eq!(tus_offset(&c, &loc).0, 404);
    let uploads = user_home(&f, "alice").join(".ferry-uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    // Another account cannot see alice's upload.
    f.add_account("bob");
    let loc = tus_create(&c, 10, "mine.bin");
    assert_eq!(tus_offset(&f.curl().user("bob"), &loc).0, 404);
}

#[test]
fn abandoned_tus_uploads_expire_and_their_data_is_removed() {
    let f = Ferry::up_with(&["--upload-expiry-secs", "2"]);
    f.add_account("alice");
    let c = f.curl().user("alice");
    let loc = tus_create(&c, 1000, "later.bin");
    let chunk = f.dir.path().join("chunk");
    std::fs::write(&chunk, [7u8; 300]).unwrap();
    let args = tus_patch_args(0, chunk.to_str().unwrap(), None);
    let r = c.run(&args, &loc);
    assert_eq!(r.status, 204);
    let uploads = user_home(&f, "alice").join(".ferry-uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 2);
    assert!(wait_until(15, || std::fs::read_dir(&uploads)
        .unwrap()
        .count()
        == 0));
    assert_eq!(tus_offset(&c, &loc).0, 404);
    // The sweep removes the files first and writes the row after them.
    let expired_row = |rows: &[serde_json::Value]| {
        rows.iter().any(|r| {
            r["path"] == "/later.bin"
                && r["status"] == "interrupted"
                && r["bytes"] == 300
                && r["error"].as_str().unwrap().contains("expired")
        })
    };
    assert!(
        wait_until(10, || expired_row(&f.transfers())),
        "{:#?}",
        f.transfers()
    );
}

#[test]
fn tuspy_uploads_50_mib_interrupted_and_resumed() {
    let f = Ferry::up();
    f.add_account("alice");
    let local = f.dir.path().join("fifty.bin");
    random_file(&local, 50 * 1024 * 1024);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/tus/tuspy_upload.py"
    );
    let store = f.dir.path().join("tus-urls.json");
    let run = |stop_at: Option<u64>| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script)
            .env("FERRY_URL", f.https_url.as_ref().unwrap())
            .env("FERRY_CA", &f.ca)
            .env("FERRY_USER", "alice")
            .env("FERRY_PASSWORD", PASSWORD)
            .env("FERRY_FILE", &local)
            .env("FERRY_URL_STORE", &store);
        if let Some(n) = stop_at {
            cmd.env("FERRY_STOP_AT", n.to_string());
        }
        let out = cmd.output().expect("python3");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() || stop_at.is_some(),
            "tuspy failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // First run: a process that dies (os._exit) after 23,456,789 bytes.
    // Both runs send tuspy's default checksum, sha1, with every chunk.
    let first = run(Some(23_456_789));
    assert!(first.contains("CHECKSUM sha1"), "{first}");
    assert!(first.contains("STOPPED 23456789"), "{first}");
    assert!(!user_home(&f, "alice").join("fifty.bin").exists());
    // Second run: a new process finds the upload URL in its store, asks the
    // server for the offset and sends only the rest.
    let second = run(None);
    let resumed_from: u64 = second
        .lines()
        .find_map(|l| l.strip_prefix("RESUMED_FROM "))
        .expect("resume line")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(resumed_from, 23_456_789, "{second}");
    assert!(second.contains("DONE"), "{second}");
    let sha = sha256_file(&local);
    assert_eq!(sha256_file(&user_home(&f, "alice").join("fifty.bin")), sha);
    let rows = f.transfers();
    let row = rows
        .iter()
        .find(|r| r["path"] == "/fifty.bin")
        .expect("transfer row");
    assert_eq!(
        (row["status"].as_str(), row["sha256"].as_str()),
        (Some("completed"), Some(sha.as_str()))
    );
}

#[test]
fn tus_checksums_in_sha1_md5_and_sha256_and_a_mismatch_keeps_nothing() {
    let f = Ferry::up();
    f.add_account("alice");
    let c = f.curl().user("alice");
    let chunk = 256 * 1024;
    let total = 4 * chunk;
    let local = f.dir.path().join("sums.bin");
    random_file(&local, total);
    let data = std::fs::read(&local).unwrap();
    let part = |i: usize| {
        let path = f.dir.path().join(format!("sums-{i}"));
        std::fs::write(&path, &data[i * chunk..(i + 1) * chunk]).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let patch = |i: usize, header: String| {
        let mut args = tus_patch_args((i * chunk) as u64, &part(i), None);
        args.extend(["-H".into(), header]);
        args
    };
    let loc = tus_create(&c, total, "sums.bin");
    let offset = || tus_offset(&c, &loc).1;
    // Each algorithm's good digest moves the offset.
    for (i, algorithm) in ["md5", "sha1"].into_iter().enumerate() {
        let header = checksum_header(algorithm, &data[i * chunk..(i + 1) * chunk]);
        let r = c.run(&patch(i, header), &loc);
        assert_eq!(r.status, 204, "{algorithm}: {}", r.text());
        assert_eq!(offset(), Some(((i + 1) * chunk) as u64));
    }
    // A wrong digest, in each algorithm: 460 and none of the bytes kept.
    for algorithm in ["md5", "sha1", "sha256"] {
        let header = checksum_header(algorithm, b"other bytes");
        let r = c.run(&patch(2, header), &loc);
        assert_eq!(
            (r.status, r.code().as_str()),
            (460, "checksum_mismatch"),
            "{algorithm}"
        );
        assert_eq!(offset(), Some(2 * chunk as u64), "{algorithm}");
    }
    // Unknown algorithms and digests of the wrong length are bad requests.
    let sha1_of_chunk = checksum_header("sha1", &data[2 * chunk..3 * chunk]);
    for header in [
        "Upload-Checksum: crc32 AAAAAA==".to_owned(),
        sha1_of_chunk.replace("sha1", "md5"),
        "Upload-Checksum: sha1 not-base64!".to_owned(),
    ] {
        let r = c.run(&patch(2, header.clone()), &loc);
        assert_eq!(r.status, 400, "{header}: {}", r.text());
        assert_eq!(offset(), Some(2 * chunk as u64));
    }
    // The last two chunks with sha256 and sha1 commit the file.
    let r = c.run(
        &patch(2, checksum_header("sha256", &data[2 * chunk..3 * chunk])),
        &loc,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c.run(&patch(3, checksum_header("sha1", &data[3 * chunk..])), &loc);
    assert_eq!(r.status, 204, "{}", r.text());
    let sha = sha256_file(&local);
    assert_eq!(sha256_file(&user_home(&f, "alice").join("sums.bin")), sha);
    let rows = f.transfers();
    let row = rows
        .iter()
        .find(|r| r["path"] == "/sums.bin")
        .expect("transfer row");
    assert_eq!(
        (
            row["status"].as_str(),
            row["sha256"].as_str(),
            row["bytes"].as_u64()
        ),
        (Some("completed"), Some(sha.as_str()), Some(total as u64))
    );

    // Stock tuspy with its default sha1, and with md5.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/tus/tuspy_upload.py"
    );
    for checksum in [None, Some("md5")] {
        let name = format!("tuspy-{}.bin", checksum.unwrap_or("default"));
        let file = f.dir.path().join(&name);
        random_file(&file, 9 * 1024 * 1024 + 5);
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script)
            .env("FERRY_URL", f.https_url.as_ref().unwrap())
            .env("FERRY_CA", &f.ca)
            .env("FERRY_USER", "alice")
            .env("FERRY_PASSWORD", PASSWORD)
            .env("FERRY_FILE", &file)
            .env("FERRY_URL_STORE", f.dir.path().join(format!("{name}.urls")));
        if let Some(algorithm) = checksum {
            cmd.env("FERRY_CHECKSUM", algorithm);
        }
        let out = cmd.output().expect("python3");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains("DONE"),
            "tuspy failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!("CHECKSUM {}", checksum.unwrap_or("sha1"));
        assert!(text.contains(&want), "{text}");
        let sha = sha256_file(&file);
        assert_eq!(sha256_file(&user_home(&f, "alice").join(&name)), sha);
        let rows = f.transfers();
        assert!(
            rows.iter().any(|r| r["path"] == format!("/{name}").as_str()
                && r["status"] == "completed"
                && r["sha256"] == sha.as_str()),
            "{rows:#?}"
        );
    }
}
