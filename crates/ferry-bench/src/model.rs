//! What a benchmark run produces: rows of figures for Ferry (single process
//! and split edge + server) beside the same figure for the peer program.

use serde::{Deserialize, Serialize};

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput: more is better, a ratio above 1 means Ferry wins.
    Higher,
    /// Time or memory: less is better, a ratio below 1 means Ferry wins.
    Lower,
}

/// The figures of one measured side: every run and their median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// One figure per run, in the order they ran (the warm-up is not included).
    pub runs: Vec<f64>,
    /// The median of `runs`.
    pub median: f64,
}

impl Measure {
    /// Builds a measure from its runs; `None` when there are none.
    pub fn of(runs: Vec<f64>) -> Option<Self> {
        if runs.is_empty() {
            return None;
        }
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self { runs, median })
    }
}

/// What a row should reach: ratios to the peer, or an absolute figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// Target ratio Ferry-single ÷ peer (at least this when `Better::Higher`,
    /// at most this when `Better::Lower`).
    pub single_ratio: Option<f64>,
    /// Target ratio Ferry-split ÷ peer, same sense.
    pub split_ratio: Option<f64>,
    /// Target for Ferry's own figure in the row's unit (same sense).
    pub absolute: Option<f64>,
}

/// One line of the table: one workload with one cipher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable identifier, also the chart's file name: "sftp-upload-1gib-aes128-gcm".
    pub id: String,
    /// What was measured: "1 GiB upload".
    pub title: String,
    /// Protocol: "SFTP" or "HTTPS".
    pub protocol: String,
    /// The cipher in use: "aes128-gcm@openssh.com", "TLS_AES_128_GCM_SHA256", or "-".
    pub cipher: String,
    /// Unit of every figure: "MB/s", "files/s", "ms/session", "KiB/session".
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// Name of the peer program: "OpenSSH" or "nginx".
    pub peer_name: String,
    /// `ferry up`: edge and server in one process.
    pub single: Option<Measure>,
    /// `ferry edge` + `ferry server` as two processes.
    pub split: Option<Measure>,
    /// The peer program.
    pub peer: Option<Measure>,
    /// What the row should reach.
    pub goal: Goal,
}

impl Row {
    /// Ferry-single ÷ peer, by medians.
    pub fn single_ratio(&self) -> Option<f64> {
        ratio(self.single.as_ref(), self.peer.as_ref())
    }

    /// Ferry-split ÷ peer, by medians.
    pub fn split_ratio(&self) -> Option<f64> {
        ratio(self.split.as_ref(), self.peer.as_ref())
    }
}

fn ratio(ferry: Option<&Measure>, peer: Option<&Measure>) -> Option<f64> {
    let (f, p) = (ferry?.median, peer?.median);
    (p > 0.0).then(|| f / p)
}

/// The machine the run was made on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the benchmark.
    pub cores: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
}

/// A whole benchmark run: what `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Start of the run, RFC 3339 UTC.
    pub started: String,
    /// Wall time of the whole run in seconds.
    pub duration_secs: f64,
    /// A `--quick` smoke run (small sizes, figures not comparable).
    pub quick: bool,
    /// Measured runs per figure.
    pub runs: usize,
    /// Whether one warm-up run preceded them (not in `--quick`).
    pub warmup: bool,
    /// Sizes used, for the record: "1 GiB", "1000 × 16 KiB", ...
    pub sizes: Vec<(String, String)>,
    /// Where it ran.
    pub machine: Machine,
    /// Program name → version line, for every program taking part.
    pub versions: Vec<(String, String)>,
    /// Every transferred file whose SHA-256 was checked.
    pub checksums_verified: u64,
    /// The rows, in table order.
    pub rows: Vec<Row>,
}
