//! The workloads, and the loop that measures each of them on every target:
//! one warm-up, then the runs, taking the sides in turn within each run so a
//! drift of the machine touches all of them alike.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::clients::{Curl, Sftp, TLS_CIPHER};
use crate::model::{Better, Goal, Machine, Measure, Report, Row};
use crate::targets::{self, Side, Target};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small sizes and one run: a smoke test, figures not comparable.
    pub quick: bool,
    /// Where results.json, results.md and the charts go.
    pub out: PathBuf,
    /// The `ferry` binary under test.
    pub ferry: PathBuf,
    /// Scratch directory for servers and data (a fresh temporary one if unset).
    pub work: Option<PathBuf>,
    /// Measured runs per figure (default 3, or 1 with `quick`).
    pub runs: Option<usize>,
    /// Only rows whose id contains one of these.
    pub only: Vec<String>,
}

/// The SSH ciphers every SFTP row is measured with.
pub const CIPHERS: [&str; 2] = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"];

/// Sizes of the workloads.
struct Sizes {
    big: u64,
    small_count: usize,
    small_size: u64,
    sessions: usize,
    session_file: u64,
    concurrent: usize,
    concurrent_size: u64,
    idle: usize,
    https: u64,
    wan_big: u64,
    wan_small_count: usize,
    wan_small_size: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                big: 16 * MIB,
                small_count: 50,
                small_size: 16 * KIB,
                sessions: 3,
                session_file: MIB,
                concurrent: 4,
                concurrent_size: 4 * MIB,
                idle: 10,
                https: 16 * MIB,
                wan_big: 16 * MIB,
                wan_small_count: 10,
                wan_small_size: 256 * KIB,
            }
        } else {
            Sizes {
                big: 1024 * MIB,
                small_count: 1000,
                small_size: 16 * KIB,
                sessions: 20,
                session_file: MIB,
                concurrent: 16,
                concurrent_size: 100 * MIB,
                idle: 200,
                https: 1024 * MIB,
                wan_big: 1024 * MIB,
                wan_small_count: 200,
                wan_small_size: 256 * KIB,
            }
        }
    }

    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("large file".into(), human(self.big)),
            (
                "small files".into(),
                format!("{} × {}", self.small_count, human(self.small_size)),
            ),
            (
                "sequential sessions".into(),
                format!("{} × {}", self.sessions, human(self.session_file)),
            ),
            (
                "concurrent sessions".into(),
                format!("{} × {}", self.concurrent, human(self.concurrent_size)),
            ),
            ("idle sessions".into(), self.idle.to_string()),
            ("HTTPS file".into(), human(self.https)),
            ("WAN large file".into(), human(self.wan_big)),
            (
                "WAN small files".into(),
                format!("{} × {}", self.wan_small_count, human(self.wan_small_size)),
            ),
            (
                "WAN link".into(),
                format!(
                    "{} ms round trip, {} Gbit/s (user-space relay)",
                    2 * crate::wan::ONE_WAY_DELAY.as_millis(),
                    crate::wan::RATE_BYTES_PER_SEC * 8.0 / 1e9
                ),
            ),
        ]
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * MIB && bytes % (1024 * MIB) == 0 {
        format!("{} GiB", bytes / (1024 * MIB))
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

/// The kinds of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    BigUp,
    BigDown,
    SmallUp,
    /// `put -f`: fsync@openssh.com after every file.
    SmallUpFsync,
    SmallDown,
    Sessions,
    ConcurrentUp,
    ConcurrentDown,
    Idle,
    HttpsUp,
    HttpsDown,
    /// Through the emulated wide-area link ([`crate::wan`]).
    WanBigUp,
    WanBigDown,
    WanSmallUp,
}

impl Workload {
    const SFTP: [Workload; 8] = [
        Workload::BigUp,
        Workload::BigDown,
        Workload::SmallUp,
        Workload::SmallUpFsync,
        Workload::SmallDown,
        Workload::Sessions,
        Workload::ConcurrentUp,
        Workload::ConcurrentDown,
    ];

    fn slug(self) -> &'static str {
        match self {
            Workload::BigUp => "sftp-upload-large",
            Workload::BigDown => "sftp-download-large",
            Workload::SmallUp => "sftp-upload-small-files",
            Workload::SmallUpFsync => "sftp-upload-small-files-fsync",
            Workload::SmallDown => "sftp-download-small-files",
            Workload::Sessions => "sftp-sequential-sessions",
            Workload::ConcurrentUp => "sftp-concurrent-upload",
            Workload::ConcurrentDown => "sftp-concurrent-download",
            Workload::Idle => "sftp-idle-session-memory",
            Workload::HttpsUp => "https-upload-large",
            Workload::HttpsDown => "https-download-large",
            Workload::WanBigUp => "wan-sftp-upload-large",
            Workload::WanBigDown => "wan-sftp-download-large",
            Workload::WanSmallUp => "wan-sftp-upload-small-files",
        }
    }

    fn title(self, s: &Sizes) -> String {
        match self {
            Workload::BigUp => format!("{} upload", human(s.big)),
            Workload::BigDown => format!("{} download", human(s.big)),
            Workload::SmallUp => format!(
                "{} × {} upload, one session",
                s.small_count,
                human(s.small_size)
            ),
            Workload::SmallUpFsync => format!(
                "{} × {} upload, one session, put -f (fsync each file)",
                s.small_count,
                human(s.small_size)
            ),
            Workload::SmallDown => format!(
                "{} × {} download, one session",
                s.small_count,
                human(s.small_size)
            ),
            Workload::Sessions => format!(
                "{} sessions in turn, login + {} get",
                s.sessions,
                human(s.session_file)
            ),
            Workload::ConcurrentUp => format!(
                "{} concurrent sessions × {} upload",
                s.concurrent,
                human(s.concurrent_size)
            ),
            Workload::ConcurrentDown => format!(
                "{} concurrent sessions × {} download",
                s.concurrent,
                human(s.concurrent_size)
            ),
            Workload::Idle => format!("memory of {} idle sessions", s.idle),
            Workload::HttpsUp => format!("{} upload (PUT)", human(s.https)),
            Workload::HttpsDown => format!("{} download (GET)", human(s.https)),
            Workload::WanBigUp => format!("WAN 50 ms: {} upload", human(s.wan_big)),
            Workload::WanBigDown => format!("WAN 50 ms: {} download", human(s.wan_big)),
            Workload::WanSmallUp => format!(
                "WAN 50 ms: {} × {} upload, one session",
                s.wan_small_count,
                human(s.wan_small_size)
            ),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::SmallUp
            | Workload::SmallUpFsync
            | Workload::SmallDown
            | Workload::WanSmallUp => "files/s",
            Workload::Sessions => "ms/session",
            Workload::Idle => "KiB/session",
            _ => "MB/s",
        }
    }

    fn better(self) -> Better {
        match self {
            Workload::Sessions | Workload::Idle => Better::Lower,
            _ => Better::Higher,
        }
    }

    fn goal(self) -> Goal {
        let both = |r: f64| Goal {
            single_ratio: Some(r),
            split_ratio: Some(r),
            absolute: None,
        };
        match self {
            Workload::BigUp | Workload::BigDown => Goal {
                single_ratio: Some(1.5),
                split_ratio: Some(1.25),
                absolute: None,
            },
            Workload::SmallUp
            | Workload::SmallUpFsync
            | Workload::SmallDown
            | Workload::ConcurrentUp
            | Workload::ConcurrentDown => both(2.0),
            Workload::WanBigUp | Workload::WanBigDown | Workload::WanSmallUp => both(1.5),
            Workload::Sessions => both(0.5),
            Workload::Idle => Goal {
                absolute: Some(256.0),
                ..Goal::default()
            },
            Workload::HttpsUp | Workload::HttpsDown => both(1.0),
        }
    }

    fn is_https(self) -> bool {
        matches!(self, Workload::HttpsUp | Workload::HttpsDown)
    }

    fn is_wan(self) -> bool {
        matches!(
            self,
            Workload::WanBigUp | Workload::WanBigDown | Workload::WanSmallUp
        )
    }
}

/// One planned row: a workload with a cipher.
struct Plan {
    workload: Workload,
    cipher: &'static str,
    id: String,
}

fn plan(only: &[String]) -> Vec<Plan> {
    // Idle memory first, while no transfer has grown the servers' heaps:
    // memory a server freed and kept would hide what a session costs.
    let mut plans = vec![Plan {
        workload: Workload::Idle,
        cipher: CIPHERS[0],
        id: Workload::Idle.slug().to_owned(),
    }];
    for cipher in CIPHERS {
        for w in Workload::SFTP {
            plans.push(Plan {
                workload: w,
                cipher,
                id: format!("{}-{}", w.slug(), short_cipher(cipher)),
            });
        }
    }
    for w in [Workload::HttpsUp, Workload::HttpsDown] {
        plans.push(Plan {
            workload: w,
            cipher: TLS_CIPHER,
            id: w.slug().to_owned(),
        });
    }
    // The long link decides by round trips and windows, not by the cipher.
    for w in [
        Workload::WanBigUp,
        Workload::WanBigDown,
        Workload::WanSmallUp,
    ] {
        plans.push(Plan {
            workload: w,
            cipher: CIPHERS[0],
            id: format!("{}-{}", w.slug(), short_cipher(CIPHERS[0])),
        });
    }
    if !only.is_empty() {
        plans.retain(|p| only.iter().any(|o| p.id.contains(o.as_str())));
    }
    plans
}

/// Local data every target is sent, with the SHA-256 of each file.
struct Data {
    dir: PathBuf,
    big: (PathBuf, String),
    small: Vec<(String, String)>,
    wan_small: Vec<(String, String)>,
    session_file: (PathBuf, String),
    concurrent: (PathBuf, String),
    https: (PathBuf, String),
}

/// Writes `len` pseudo-random (incompressible) bytes to `path`; returns the SHA-256.
fn random_file(path: &Path, len: u64, seed: u64) -> anyhow::Result<String> {
    let mut f = std::io::BufWriter::with_capacity(
        MIB as usize,
        fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
    );
    let mut hash = Sha256::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 64 * KIB as usize];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            // xorshift64*: fast, and nothing a transport could compress.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        hash.update(&block[..n]);
        left -= n as u64;
    }
    f.flush()?;
    Ok(hex::encode(hash.finalize()))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

impl Data {
    fn create(dir: &Path, s: &Sizes, plans: &[Plan]) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let needs = |f: &dyn Fn(Workload) -> bool| plans.iter().any(|p| f(p.workload));
        let file =
            |name: &str, len: u64, seed: u64, needed: bool| -> anyhow::Result<(PathBuf, String)> {
                let path = dir.join(name);
                let len = if needed { len } else { 0 };
                let sha = random_file(&path, len, seed)?;
                Ok((path, sha))
            };
        let need_big = needs(&|w| {
            matches!(
                w,
                Workload::BigUp | Workload::BigDown | Workload::WanBigUp | Workload::WanBigDown
            )
        });
        if s.wan_big != s.big {
            bail!("the WAN rows send the large file: their sizes must agree");
        }
        let need_https = needs(&|w| w.is_https());
        // One file serves both when the sizes agree (the full run).
        let shared = s.https == s.big;
        let big = file("large.bin", s.big, 1, need_big || (shared && need_https))?;
        let https = if shared {
            big.clone()
        } else {
            file("https.bin", s.https, 2, need_https)?
        };
        let small_dir = dir.join("small");
        fs::create_dir_all(&small_dir)?;
        let mut small = Vec::new();
        if needs(&|w| {
            matches!(
                w,
                Workload::SmallUp | Workload::SmallUpFsync | Workload::SmallDown
            )
        }) {
            for i in 0..s.small_count {
                let name = format!("f{i:04}.dat");
                let sha = random_file(&small_dir.join(&name), s.small_size, 100 + i as u64)?;
                small.push((name, sha));
            }
        }
        let wan_dir = dir.join("wan-small");
        fs::create_dir_all(&wan_dir)?;
        let mut wan_small = Vec::new();
        if needs(&|w| w == Workload::WanSmallUp) {
            for i in 0..s.wan_small_count {
                let name = format!("w{i:04}.dat");
                let sha = random_file(&wan_dir.join(&name), s.wan_small_size, 5000 + i as u64)?;
                wan_small.push((name, sha));
            }
        }
        Ok(Data {
            dir: dir.to_path_buf(),
            big,
            small,
            wan_small,
            session_file: file("session.bin", s.session_file, 3, true)?,
            concurrent: file(
                "concurrent.bin",
                s.concurrent_size,
                4,
                needs(&|w| matches!(w, Workload::ConcurrentUp | Workload::ConcurrentDown)),
            )?,
            https,
        })
    }
}

/// Prints where the run is, on one line when stderr is a terminal.
struct Progress {
    done: usize,
    total: usize,
    tty: bool,
    started: Instant,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        let elapsed = self.started.elapsed().as_secs();
        let line = format!(
            "[{:>3}/{}] {:>3}:{:02} {what}",
            self.done,
            self.total,
            elapsed / 60,
            elapsed % 60
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Everything the measuring loop needs.
struct Bench {
    sizes: Sizes,
    data: Data,
    key: PathBuf,
    scratch: PathBuf,
    checked: u64,
    /// The emulated long link in front of each target, by side.
    wan: BTreeMap<&'static str, crate::wan::Link>,
}

impl Bench {
    /// Fails unless `path` holds exactly the bytes with `sha`.
    fn check(&mut self, path: &Path, sha: &str, what: &str) -> anyhow::Result<()> {
        let got = sha256_file(path).with_context(|| format!("{what}: transferred file missing"))?;
        if got != sha {
            bail!(
                "{what}: SHA-256 of {} is {got}, expected {sha}",
                path.display()
            );
        }
        self.checked += 1;
        Ok(())
    }

    /// A fresh, empty scratch directory for downloads.
    fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.scratch.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Puts the files a download row reads into the target's directory
    /// (directly on disk: what is measured is the download).
    fn stage(&self, t: &Target, w: Workload) -> anyhow::Result<()> {
        let root = &t.root;
        fs::create_dir_all(root)?;
        match w {
            Workload::BigDown | Workload::WanBigDown => {
                fs::copy(&self.data.big.0, root.join("large.bin"))?;
            }
            Workload::SmallDown => {
                let dir = root.join("small");
                fs::create_dir_all(&dir)?;
                for (name, _) in &self.data.small {
                    fs::copy(self.data.dir.join("small").join(name), dir.join(name))?;
                }
            }
            Workload::Sessions => {
                fs::copy(&self.data.session_file.0, root.join("session.bin"))?;
            }
            Workload::ConcurrentDown => {
                for i in 0..self.sizes.concurrent {
                    fs::copy(&self.data.concurrent.0, root.join(format!("c{i:02}.bin")))?;
                }
            }
            Workload::HttpsDown => {
                fs::copy(&self.data.https.0, root.join("https.bin"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Removes what a row left in the target's directory.
    fn clean(&self, t: &Target) -> anyhow::Result<()> {
        if t.root.exists() {
            for entry in fs::read_dir(&t.root)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with('.') {
                    continue; // the server's own bookkeeping
                }
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    fn sftp(&self, t: &Target, cipher: &str) -> anyhow::Result<Sftp> {
        let access = t.sftp.as_ref().context("target serves no SFTP")?;
        Ok(Sftp::new(access, cipher, &self.key, &self.scratch))
    }

    /// A client of `t` through the emulated long link.
    fn sftp_wan(&self, t: &Target, cipher: &str) -> anyhow::Result<Sftp> {
        let access = t.sftp.as_ref().context("target serves no SFTP")?;
        let link = self
            .wan
            .get(side_key(t.side))
            .context("no WAN link for this target")?;
        let through = targets::SftpAccess {
            port: link.port,
            user: access.user.clone(),
        };
        Ok(Sftp::new(&through, cipher, &self.key, &self.scratch))
    }

    /// One run of `w` on `t`: the figure in the workload's unit.
    fn measure(&mut self, t: &Target, w: Workload, cipher: &str) -> anyhow::Result<f64> {
        let mb = |bytes: u64, d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        let what = format!("{} on {}", w.slug(), t.label);
        match w {
            Workload::BigUp => {
                let _ = fs::remove_file(t.root.join("large.bin"));
                let src = self.data.big.0.display().to_string();
                let d = self
                    .sftp(t, cipher)?
                    .batch(&format!("put {src} large.bin\n"))?;
                let sha = self.data.big.1.clone();
                self.check(&t.root.join("large.bin"), &sha, &what)?;
                Ok(mb(self.sizes.big, d))
            }
            Workload::BigDown => {
                let dir = self.fresh_dir("download")?;
                let local = dir.join("large.bin");
                let d = self
                    .sftp(t, cipher)?
                    .batch(&format!("get large.bin {}\n", local.display()))?;
                let sha = self.data.big.1.clone();
                self.check(&local, &sha, &what)?;
                Ok(mb(self.sizes.big, d))
            }
            Workload::SmallUp => {
                let remote = t.root.join("small");
                if remote.exists() {
                    fs::remove_dir_all(&remote)?;
                }
                fs::create_dir_all(&remote)?;
                let src = self.data.dir.join("small");
                let d = self
                    .sftp(t, cipher)?
                    .batch(&format!("put {}/* small/\n", src.display()))?;
                for (name, sha) in self.data.small.clone() {
                    self.check(&remote.join(&name), &sha, &what)?;
                }
                Ok(self.sizes.small_count as f64 / d.as_secs_f64())
            }
            Workload::SmallUpFsync => {
                let remote = t.root.join("small");
                if remote.exists() {
                    fs::remove_dir_all(&remote)?;
                }
                fs::create_dir_all(&remote)?;
                let src = self.data.dir.join("small");
                let d = self
                    .sftp(t, cipher)?
                    .batch(&format!("put -f {}/* small/\n", src.display()))?;
                for (name, sha) in self.data.small.clone() {
                    self.check(&remote.join(&name), &sha, &what)?;
                }
                Ok(self.sizes.small_count as f64 / d.as_secs_f64())
            }
            Workload::WanBigUp => {
                let _ = fs::remove_file(t.root.join("large.bin"));
                let src = self.data.big.0.display().to_string();
                let d = self
                    .sftp_wan(t, cipher)?
                    .batch(&format!("put {src} large.bin\n"))?;
                let sha = self.data.big.1.clone();
                self.check(&t.root.join("large.bin"), &sha, &what)?;
                Ok(mb(self.sizes.wan_big, d))
            }
            Workload::WanBigDown => {
                let dir = self.fresh_dir("download")?;
                let local = dir.join("large.bin");
                let d = self
                    .sftp_wan(t, cipher)?
                    .batch(&format!("get large.bin {}\n", local.display()))?;
                let sha = self.data.big.1.clone();
                self.check(&local, &sha, &what)?;
                Ok(mb(self.sizes.wan_big, d))
            }
            Workload::WanSmallUp => {
                let remote = t.root.join("wan-small");
                if remote.exists() {
                    fs::remove_dir_all(&remote)?;
                }
                fs::create_dir_all(&remote)?;
                let src = self.data.dir.join("wan-small");
                let d = self
                    .sftp_wan(t, cipher)?
                    .batch(&format!("put {}/* wan-small/\n", src.display()))?;
                for (name, sha) in self.data.wan_small.clone() {
                    self.check(&remote.join(&name), &sha, &what)?;
                }
                Ok(self.sizes.wan_small_count as f64 / d.as_secs_f64())
            }
            Workload::SmallDown => {
                let dir = self.fresh_dir("download")?;
                let d = self
                    .sftp(t, cipher)?
                    .batch(&format!("get small/* {}/\n", dir.display()))?;
                for (name, sha) in self.data.small.clone() {
                    self.check(&dir.join(&name), &sha, &what)?;
                }
                Ok(self.sizes.small_count as f64 / d.as_secs_f64())
            }
            Workload::Sessions => {
                let dir = self.fresh_dir("download")?;
                let sftp = self.sftp(t, cipher)?;
                let mut total = Duration::ZERO;
                for i in 0..self.sizes.sessions {
                    let local = dir.join(format!("session-{i}.bin"));
                    total += sftp.batch(&format!("get session.bin {}\n", local.display()))?;
                }
                let sha = self.data.session_file.1.clone();
                for i in 0..self.sizes.sessions {
                    self.check(&dir.join(format!("session-{i}.bin")), &sha, &what)?;
                }
                Ok(total.as_secs_f64() * 1000.0 / self.sizes.sessions as f64)
            }
            Workload::ConcurrentUp => {
                let n = self.sizes.concurrent;
                for i in 0..n {
                    let _ = fs::remove_file(t.root.join(format!("c{i:02}.bin")));
                }
                let src = self.data.concurrent.0.display().to_string();
                let batches: Vec<String> =
                    (0..n).map(|i| format!("put {src} c{i:02}.bin\n")).collect();
                let d = self.sftp(t, cipher)?.parallel(&batches)?;
                let sha = self.data.concurrent.1.clone();
                for i in 0..n {
                    self.check(&t.root.join(format!("c{i:02}.bin")), &sha, &what)?;
                }
                Ok(mb(self.sizes.concurrent_size * n as u64, d))
            }
            Workload::ConcurrentDown => {
                let n = self.sizes.concurrent;
                let dir = self.fresh_dir("download")?;
                let batches: Vec<String> = (0..n)
                    .map(|i| {
                        format!(
                            "get c{i:02}.bin {}\n",
                            dir.join(format!("c{i:02}.bin")).display()
                        )
                    })
                    .collect();
                let d = self.sftp(t, cipher)?.parallel(&batches)?;
                let sha = self.data.concurrent.1.clone();
                for i in 0..n {
                    self.check(&dir.join(format!("c{i:02}.bin")), &sha, &what)?;
                }
                Ok(mb(self.sizes.concurrent_size * n as u64, d))
            }
            Workload::Idle => {
                let sftp = self.sftp(t, cipher)?;
                // One session first, so what the first login allocates once
                // (key exchange tables, the internal connection) is in the baseline.
                let warm = sftp.idle_sessions(1)?;
                std::thread::sleep(Duration::from_millis(500));
                let before = t.memory_kib();
                let sessions = sftp.idle_sessions(self.sizes.idle)?;
                std::thread::sleep(Duration::from_secs(1));
                let after = t.memory_kib();
                drop(sessions);
                drop(warm);
                Ok(after.saturating_sub(before) as f64 / self.sizes.idle as f64)
            }
            Workload::HttpsUp => {
                let access = t.https.as_ref().context("target serves no HTTPS")?;
                let _ = fs::remove_file(t.root.join("https.bin"));
                let d = Curl::new(access).put(&self.data.https.0, "https.bin")?;
                let sha = self.data.https.1.clone();
                self.check(&t.root.join("https.bin"), &sha, &what)?;
                Ok(mb(self.sizes.https, d))
            }
            Workload::HttpsDown => {
                let access = t.https.as_ref().context("target serves no HTTPS")?;
                let dir = self.fresh_dir("download")?;
                let local = dir.join("https.bin");
                let d = Curl::new(access).get("https.bin", &local)?;
                let sha = self.data.https.1.clone();
                self.check(&local, &sha, &what)?;
                Ok(mb(self.sizes.https, d))
            }
        }
    }
}

fn machine() -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        memory_mib,
    }
}

fn versions(ferry: &Path) -> Vec<(String, String)> {
    use crate::procs::version_line;
    vec![
        (
            "ferry".into(),
            version_line(&ferry.to_string_lossy(), &["--version"], "ferry"),
        ),
        (
            "sshd".into(),
            version_line(targets::SSHD, &["-V"], "OpenSSH"),
        ),
        (
            "sftp (client)".into(),
            version_line("ssh", &["-V"], "OpenSSH"),
        ),
        (
            "nginx".into(),
            version_line(targets::NGINX, &["-v"], "nginx"),
        ),
        ("curl".into(), version_line("curl", &["--version"], "curl")),
    ]
}

/// Runs the benchmark and writes its report into `opts.out`.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let started_at = Instant::now();
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sizes = Sizes::new(opts.quick);
    let runs = opts.runs.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let warmup = !opts.quick;
    let plans = plan(&opts.only);
    if plans.is_empty() {
        bail!("--only {:?} matches no row", opts.only);
    }
    for program in ["sftp", "ssh-keygen", "curl"] {
        if which(program).is_none() {
            bail!("{program} not found: install Debian's openssh-client and curl packages");
        }
    }

    let tmp;
    let work = match &opts.work {
        Some(w) => {
            fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("ferry-bench-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let work = work.canonicalize()?;
    eprintln!(
        "ferry-bench: preparing data and servers in {}",
        work.display()
    );
    let key = work.join("client_ed25519");
    if !key.exists() {
        targets::keygen(&key)?;
    }
    let key_pub = key.with_extension("pub");
    let data = Data::create(&work.join("data"), &sizes, &plans)?;
    let scratch = work.join("scratch");
    fs::create_dir_all(&scratch)?;

    let single = targets::ferry_single(&opts.ferry, &work, &key_pub)?;
    let split = targets::ferry_split(&opts.ferry, &work, &key_pub)?;
    let needs_sftp = plans.iter().any(|p| !p.workload.is_https());
    let needs_https = plans.iter().any(|p| p.workload.is_https());
    let sshd = if needs_sftp {
        Some(targets::sshd(&work, &key_pub)?)
    } else {
        None
    };
    let pki = work.join("ferry-single").join("pki");
    // nginx shows the same certificate (same key type) as Ferry's HTTPS front.
    let nginx = if needs_https {
        Some(targets::nginx(
            &work,
            &pki.join("https.crt"),
            &pki.join("https.key"),
            &pki.join("ca.crt"),
        )?)
    } else {
        None
    };

    // The long link: one relay in front of each SFTP target.
    let mut wan = BTreeMap::new();
    if plans.iter().any(|p| p.workload.is_wan()) {
        let peer = sshd.as_ref().context("sshd not started")?;
        for t in [peer, &single, &split] {
            let port = t.sftp.as_ref().context("target serves no SFTP")?.port;
            wan.insert(side_key(t.side), crate::wan::Link::start(port)?);
        }
    }
    let mut bench = Bench {
        sizes,
        data,
        key,
        scratch,
        checked: 0,
        wan,
    };
    let sides_per_row = 3;
    let mut progress = Progress {
        done: 0,
        total: plans
            .iter()
            .map(|p| {
                let warm = warmup && p.workload != Workload::Idle && !p.workload.is_wan();
                sides_per_row * (runs + usize::from(warm))
            })
            .sum(),
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
    };

    let mut rows = Vec::new();
    for p in &plans {
        let w = p.workload;
        let peer = if w.is_https() {
            nginx.as_ref()
        } else {
            sshd.as_ref()
        }
        .context("peer not started")?;
        let fixed: [&Target; 3] = [peer, &single, &split];
        for t in fixed {
            bench.clean(t)?;
            bench.stage(t, w)?;
        }
        let mut figures: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let title = w.title(&bench.sizes);
        // Idle memory is measured on fresh processes every run (and needs
        // no warm-up): a heap grown by an earlier run would hide what a
        // session costs.
        let fresh_each_run = w == Workload::Idle;
        // The long link's rows take minutes and warm nothing the rows
        // before did not: no warm-up.
        let has_warmup = warmup && !fresh_each_run && !w.is_wan();
        for r in 0..runs + usize::from(has_warmup) {
            let is_warmup = has_warmup && r == 0;
            let fresh;
            let targets: [&Target; 3] = if fresh_each_run {
                let dir = work.join(format!("idle-{r}"));
                fs::create_dir_all(&dir)?;
                fresh = [
                    targets::sshd(&dir, &key_pub)?,
                    targets::ferry_single(&opts.ferry, &dir, &key_pub)?,
                    targets::ferry_split(&opts.ferry, &dir, &key_pub)?,
                ];
                [&fresh[0], &fresh[1], &fresh[2]]
            } else {
                fixed
            };
            for t in targets {
                let label = if is_warmup {
                    "warm-up".to_owned()
                } else {
                    format!("run {}/{}", r + 1 - usize::from(has_warmup), runs)
                };
                progress.step(&format!(
                    "{title} · {} · {} · {label}",
                    short_cipher(p.cipher),
                    t.label
                ));
                let figure = bench
                    .measure(t, w, p.cipher)
                    .with_context(|| format!("{title} with {} on {}", p.cipher, t.label))?;
                if !is_warmup {
                    figures.entry(side_key(t.side)).or_default().push(figure);
                }
            }
        }
        for t in fixed {
            bench.clean(t)?;
        }
        let mut take = |k: &str| figures.remove(k).and_then(Measure::of);
        rows.push(Row {
            id: p.id.clone(),
            title,
            protocol: if w.is_https() { "HTTPS" } else { "SFTP" }.into(),
            cipher: if w == Workload::Idle {
                "-".into()
            } else {
                p.cipher.into()
            },
            unit: w.unit().into(),
            better: w.better(),
            peer_name: if w.is_https() { "nginx" } else { "OpenSSH" }.into(),
            single: take("single"),
            split: take("split"),
            peer: take("peer"),
            goal: w.goal(),
        });
    }
    progress.finish();

    let report = Report {
        started,
        duration_secs: started_at.elapsed().as_secs_f64(),
        quick: opts.quick,
        runs,
        warmup,
        sizes: bench.sizes.describe(),
        machine: machine(),
        versions: versions(&opts.ferry),
        checksums_verified: bench.checked,
        rows,
    };
    crate::report::write_all(&report, &opts.out)?;
    Ok(report)
}

fn side_key(side: Side) -> &'static str {
    match side {
        Side::Single => "single",
        Side::Split => "split",
        Side::Peer => "peer",
    }
}

fn short_cipher(cipher: &str) -> &str {
    cipher.split('@').next().unwrap_or(cipher)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}
