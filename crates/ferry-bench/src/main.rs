//! `ferry-bench`: Ferry beside OpenSSH and nginx on this machine, as ratios.
//!
//! `cargo run --release -p ferry-bench -- [--quick] [--out DIR]`
//! `cargo run --release -p ferry-bench -- --failover [--runs N]`
//! `cargo run --release -p ferry-bench -- --nemesis [--minutes 15] [--seed N]`

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use clap::Parser;

/// Measures Ferry (one process, and edge + server) beside OpenSSH's sshd
/// and nginx on loopback, and writes a table, results.json and SVG charts.
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version, about)]
struct Args {
    /// Small sizes and one run: checks that everything works in under three
    /// minutes; the figures are not comparable.
    #[arg(long)]
    quick: bool,
    /// Where the report goes [default: target/bench next to this binary].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The ferry binary to measure [default: built by cargo next to this binary].
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Scratch directory for servers and data [default: a fresh temporary one].
    #[arg(long)]
    work: Option<PathBuf>,
    /// Measured runs per figure, after one warm-up [default: 3; 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Run only rows whose id contains this (repeatable), e.g. `--only upload-large`.
    #[arg(long)]
    only: Vec<String>,
    /// Measure nothing: write the table and charts of an earlier run's
    /// results.json into --out again.
    #[arg(long, value_name = "RESULTS_JSON")]
    from: Option<PathBuf>,
    /// Measure only the active/active failover time: three servers, the
    /// leader killed with SIGKILL, until another runs the scheduler; --runs
    /// times (default 5).
    #[arg(long, conflicts_with_all = ["quick", "only", "from"])]
    failover: bool,
    /// Run the nemesis long: each cluster mode under seeded faults (kills,
    /// SIGSTOP, partitions, edge kills, promotions) for --minutes, with the
    /// history checker of the nemesis tests; writes nemesis-*.md/json.
    #[arg(long, conflicts_with_all = ["quick", "only", "from", "failover"])]
    nemesis: bool,
    /// Minutes of faults per cluster mode, with --nemesis.
    #[arg(long, default_value_t = 15, requires = "nemesis")]
    minutes: u64,
    /// Seed of the faults and data, with --nemesis [default: from the clock].
    #[arg(long, requires = "nemesis")]
    seed: Option<u64>,
    /// Only this cluster mode, with --nemesis: active-active or active-passive.
    #[arg(long, requires = "nemesis")]
    mode: Option<String>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("ferry-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe().context("where is this binary")?;
    let exe_dir = exe
        .parent()
        .context("binary has no directory")?
        .to_path_buf();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| exe_dir.parent().unwrap_or(&exe_dir).join("bench"));
    if let Some(from) = &args.from {
        let text = std::fs::read_to_string(from)
            .with_context(|| format!("cannot read {}", from.display()))?;
        let report: ferry_bench::model::Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a ferry-bench results.json", from.display()))?;
        ferry_bench::report::write_all(&report, &out)?;
        println!("{}", ferry_bench::report::markdown(&report));
        return Ok(());
    }
    let ferry = match args.ferry.clone() {
        Some(f) => f,
        None => ferry_next_to(&exe_dir)?,
    };
    if args.nemesis {
        let (_tmp, work) = work_dir(args.work.as_deref())?;
        return nemesis(&ferry, &work, &out, &args);
    }
    if args.failover {
        let (_tmp, work) = work_dir(args.work.as_deref())?;
        let report = ferry_bench::failover::measure(&ferry, &work, args.runs.unwrap_or(5))?;
        ferry_bench::failover::write(&report, &out)?;
        println!("{}", ferry_bench::failover::markdown(&report));
        println!("failover.md and failover.json: {}", out.display());
        return Ok(());
    }
    let opts = ferry_bench::Options {
        quick: args.quick,
        out: out.clone(),
        ferry,
        work: args.work,
        runs: args.runs,
        only: args.only,
    };
    let report = ferry_bench::run(&opts)?;
    println!("{}", ferry_bench::report::markdown(&report));
    println!("Report, results.json and charts: {}", out.display());
    Ok(())
}

/// The scratch directory: `--work` (created if needed), or a fresh
/// temporary one, removed when the returned guard is dropped.
fn work_dir(
    work: Option<&std::path::Path>,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            Ok((None, w.to_path_buf()))
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("ferry-bench-").tempdir()?;
            let path = tmp.path().to_path_buf();
            Ok((Some(tmp), path))
        }
    }
}

/// `--nemesis`: each mode asked for, one after the other; fails when the
/// checker found anything, after writing every report.
fn nemesis(
    ferry: &std::path::Path,
    work: &std::path::Path,
    out: &std::path::Path,
    args: &Args,
) -> anyhow::Result<()> {
    use ferry_bench::nemesis::{self, Mode, Options};
    let modes = match args.mode.as_deref() {
        None => vec![Mode::ActiveActive, Mode::ActivePassive],
        Some("active-active") => vec![Mode::ActiveActive],
        Some("active-passive") => vec![Mode::ActivePassive],
        Some(other) => bail!("--mode {other}: expected active-active or active-passive"),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut violations = 0;
    for mode in modes {
        let opts = Options {
            mode,
            seed,
            duration: std::time::Duration::from_secs(args.minutes * 60),
            min_faults: 0,
            workers: 3,
            idle_watch: std::time::Duration::from_secs(60),
        };
        let report = nemesis::run(ferry, work, &opts)?;
        nemesis::write(&report, out)?;
        println!("{}", nemesis::markdown(&report));
        violations += report.findings.total();
    }
    println!("nemesis reports: {}", out.display());
    if violations > 0 {
        bail!("the checker found {violations} violations (seed {seed}); see the reports");
    }
    Ok(())
}

/// The `ferry` binary of the same profile; when started by `cargo run`, it
/// is built first so the benchmark never measures a stale binary.
fn ferry_next_to(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "ferry", "--bin", "ferry"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        eprintln!("ferry-bench: building ferry ({})", dir.display());
        let status = cmd.status().context("run cargo build")?;
        if !status.success() {
            bail!("cargo build -p ferry failed");
        }
    }
    let ferry = dir.join("ferry");
    if !ferry.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p ferry) or pass --ferry",
            ferry.display()
        );
    }
    Ok(ferry)
}
