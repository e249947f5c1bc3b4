//! Turning a [`Report`] into something people read: a Markdown table of
//! Ferry's figures beside the peer's with their ratios and goals, the raw
//! `results.json`, and SVG bar charts (one per row plus a summary of every
//! ratio).
//!
//! Charts are drawn with plotters' SVG backend only, without any font
//! library: plotters estimates text extents with its naive layout, so label
//! areas are sized here from the label lengths rather than measured, and the
//! SVG viewer does the actual text rendering.

use std::collections::HashSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{Better, Goal, Measure, Report, Row};

/// Printed for any figure, ratio or goal that is not there.
const MISSING: &str = "—";

/// Font family of every chart text; the SVG viewer picks the actual face.
const FONT: &str = "sans-serif";

/// Bar colours, shared by the per-row charts and the ratio summary.
const SINGLE_COLOUR: RGBColor = RGBColor(31, 119, 180);
const SPLIT_COLOUR: RGBColor = RGBColor(255, 127, 14);
const PEER_COLOUR: RGBColor = RGBColor(150, 150, 150);
const PARITY_COLOUR: RGBColor = RGBColor(200, 30, 30);

/// Size of a per-row chart in pixels.
const ROW_CHART_SIZE: (u32, u32) = (720, 480);

/// Width of the ratio summary, and the height it spends per row and on
/// everything else (caption, axis, margins).
const RATIOS_WIDTH: u32 = 1200;
const RATIOS_PX_PER_ROW: u32 = 48;
const RATIOS_PX_FIXED: u32 = 160;

/// The ratio chart's axis ends here; longer bars are cut (their label keeps
/// the figure), so one 30× row does not flatten every other bar.
const RATIO_AXIS_CAP: f64 = 5.0;

/// Labels on the ratio chart's row axis are cut to this many characters.
const MAX_LABEL_CHARS: usize = 48;

/// Renders the report as a Markdown section (no heading): the machine line,
/// the table of figures, ratios and goals, then versions, checksums and sizes.
pub fn markdown(report: &Report) -> String {
    let mut lines = vec![machine_line(report), String::new()];

    lines.push(
        "| Workload | Cipher | Peer | Ferry single | ratio | Ferry split | ratio | Goal |"
            .to_owned(),
    );
    lines.push("|---|---|---:|---:|---:|---:|---:|---|".to_owned());
    lines.extend(report.rows.iter().map(table_row));
    lines.push(String::new());
    lines.push(
        "Ratios are Ferry ÷ peer by medians: above 1× is better for throughput, below 1× for \
         time and memory. ✓ goal met, ✗ goal missed."
            .to_owned(),
    );

    if !report.versions.is_empty() {
        lines.push(String::new());
        lines.push("Versions:".to_owned());
        lines.push(String::new());
        for (name, version) in &report.versions {
            // A version "line" may carry a trailing newline or more; keep the first.
            let version = version.lines().next().unwrap_or_default().trim();
            lines.push(format!("- {name}: {version}"));
        }
    }

    lines.push(String::new());
    lines.push(format!(
        "{} transferred files checked by SHA-256.",
        report.checksums_verified
    ));

    if !report.sizes.is_empty() {
        let sizes: Vec<String> = report
            .sizes
            .iter()
            .map(|(what, size)| format!("{what} = {size}"))
            .collect();
        lines.push(String::new());
        lines.push(format!("Sizes: {}", sizes.join(", ")));
    }

    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Writes everything a run produces into `out` (created if needed):
/// `results.json`, `results.md`, one `{row.id}.svg` bar chart per row and the
/// `ratios.svg` summary. Returns the paths written, in that order.
///
/// Row ids are used as file names after replacing anything but ASCII
/// letters, digits, `-`, `_` and `.`; should two rows end up with the same
/// name (or one be called `ratios`), a numeric suffix keeps them apart.
pub fn write_all(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();

    let json_path = out.join("results.json");
    let mut json = serde_json::to_string_pretty(report).context("serialising the report")?;
    json.push('\n');
    fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    written.push(json_path);

    let md_path = out.join("results.md");
    let md = format!("# Ferry benchmark\n\n{}", markdown(report));
    fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    written.push(md_path);

    let mut taken = HashSet::from(["ratios".to_owned()]);
    for row in &report.rows {
        let path = out.join(format!("{}.svg", unique_stem(&row.id, &mut taken)));
        row_chart(row, &path)?;
        written.push(path);
    }

    let ratios_path = out.join("ratios.svg");
    ratios_chart(&report.rows, &ratios_path)?;
    written.push(ratios_path);

    Ok(written)
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// "2 cores · <cpu> · Linux 6.1.0 · 24 GiB · median of 3 runs after a
/// warm-up · 2026-11-22", plus the smoke-run warning when `quick`.
fn machine_line(report: &Report) -> String {
    let machine = &report.machine;
    let mut parts = vec![match machine.cores {
        1 => "1 core".to_owned(),
        n => format!("{n} cores"),
    }];
    if !machine.cpu.trim().is_empty() {
        parts.push(machine.cpu.trim().to_owned());
    }
    if !machine.kernel.trim().is_empty() {
        parts.push(format!("Linux {}", machine.kernel.trim()));
    }
    parts.push(memory(machine.memory_mib));
    let warm = if report.warmup {
        " after a warm-up"
    } else {
        ""
    };
    parts.push(match report.runs {
        1 => format!("1 run{warm}"),
        n => format!("median of {n} runs{warm}"),
    });
    // `started` is RFC 3339; fall back to whatever it holds if it is not.
    parts.push(
        chrono::DateTime::parse_from_rfc3339(&report.started)
            .map(|start| start.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|_| report.started.clone()),
    );
    if report.quick {
        parts.push("**quick smoke run — sizes reduced, figures not comparable**".to_owned());
    }
    parts.join(" · ")
}

/// Memory as "24 GiB" (one decimal when not whole) or "512 MiB" below 1 GiB.
fn memory(mib: u64) -> String {
    if mib < 1024 {
        return format!("{mib} MiB");
    }
    format!("{} GiB", trimmed(mib as f64 / 1024.0, 1))
}

/// One table line for `row`.
fn table_row(row: &Row) -> String {
    let unit = &row.unit;
    let workload = format!("{} {}", row.protocol, row.title);
    let cipher = match row.cipher.trim() {
        "" | "-" => MISSING.to_owned(),
        cipher => cipher.to_owned(),
    };
    let peer = match &row.peer {
        Some(m) => format!("{} {unit} ({})", number(m.median), row.peer_name),
        None => MISSING.to_owned(),
    };
    let cells = [
        workload,
        cipher,
        peer,
        ferry_cell(row, row.single.as_ref()),
        ratio_cell(row.better, row.single_ratio(), row.goal.single_ratio),
        ferry_cell(row, row.split.as_ref()),
        ratio_cell(row.better, row.split_ratio(), row.goal.split_ratio),
        goal_cell(row.better, &row.goal, unit),
    ];
    let cells: Vec<String> = cells.iter().map(|cell| escape_cell(cell)).collect();
    format!("| {} |", cells.join(" | "))
}

/// A Ferry figure with its unit, marked against the absolute goal if any.
fn ferry_cell(row: &Row, measure: Option<&Measure>) -> String {
    match measure {
        Some(m) => format!(
            "{} {}{}",
            number(m.median),
            row.unit,
            mark(row.better, m.median, row.goal.absolute)
        ),
        None => MISSING.to_owned(),
    }
}

/// "1.23×" followed by the goal mark, or "—" without a ratio.
fn ratio_cell(better: Better, ratio: Option<f64>, goal: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{}{}", ratio_text(r), mark(better, r, goal)),
        None => MISSING.to_owned(),
    }
}

/// The goal column: ratio goals (printed once when single and split agree)
/// and the absolute goal, joined by commas; "—" when there is none.
fn goal_cell(better: Better, goal: &Goal, unit: &str) -> String {
    let sense = sense(better);
    let mut parts = Vec::new();
    match (goal.single_ratio, goal.split_ratio) {
        (Some(single), Some(split)) if single == split => {
            parts.push(format!("{sense} {}×", trimmed(single, 2)));
        }
        (single, split) => {
            if let Some(single) = single {
                parts.push(format!("{sense} {}× single", trimmed(single, 2)));
            }
            if let Some(split) = split {
                parts.push(format!("{sense} {}× split", trimmed(split, 2)));
            }
        }
    }
    if let Some(absolute) = goal.absolute {
        parts.push(format!("{sense} {} {unit}", trimmed(absolute, 2)));
    }
    if parts.is_empty() {
        MISSING.to_owned()
    } else {
        parts.join(", ")
    }
}

/// "≥" when more is better, "≤" when less is.
fn sense(better: Better) -> &'static str {
    match better {
        Better::Higher => "≥",
        Better::Lower => "≤",
    }
}

/// Whether `value` reaches `target` in the row's sense.
fn meets(better: Better, value: f64, target: f64) -> bool {
    match better {
        Better::Higher => value >= target,
        Better::Lower => value <= target,
    }
}

/// " ✓" or " ✗" against `goal`, nothing without one.
fn mark(better: Better, value: f64, goal: Option<f64>) -> &'static str {
    match goal {
        Some(goal) if meets(better, value, goal) => " ✓",
        Some(_) => " ✗",
        None => "",
    }
}

/// A figure: no decimals from 100, one from 10, two below. The thresholds
/// sit where rounding would carry over (99.96 prints "100", not "100.0").
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 99.95 {
        format!("{value:.0}")
    } else if magnitude >= 9.995 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A ratio as "1.23×" (three decimals below 0.1, so small ratios do not
/// print as zero).
fn ratio_text(ratio: f64) -> String {
    if ratio.abs() < 0.0995 {
        format!("{ratio:.3}×")
    } else {
        format!("{ratio:.2}×")
    }
}

/// `value` with at most `decimals` decimals and no trailing zeros:
/// 1.5 → "1.5", 256.0 → "256".
fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Keeps a `|` inside a cell from ending it.
fn escape_cell(cell: &str) -> String {
    cell.replace('|', "\\|")
}

// ---------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------

/// A file stem for `id` that is safe as a file name and not yet in `taken`.
fn unique_stem(id: &str, taken: &mut HashSet<String>) -> String {
    let mut base: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No hidden files, no "." or "..".
    if base.is_empty() || base.starts_with('.') {
        base.insert_str(0, "row");
    }
    let mut stem = base.clone();
    let mut n = 2;
    while !taken.insert(stem.clone()) {
        stem = format!("{base}-{n}");
        n += 1;
    }
    stem
}

/// A category axis: `count` bands of width 1 on a plain `f64` axis, band
/// `i` spanning `[i, i + 1]`, with one labelled tick at each band's centre
/// and no grid in between. Bars can thus sit anywhere inside their band
/// (side by side in the ratio summary), which plotters' segmented axes do
/// not allow, while the label formatter still gets one call per band.
///
/// (`with_key_points` on an `f64` range would do the ticks, but plotters
/// gives that combination no label formatting, so the mesh refuses it.)
#[derive(Clone)]
struct Bands {
    /// How many bands there are.
    count: usize,
    /// Band 0 at the far end (the top of a vertical axis) instead of the origin.
    reversed: bool,
    /// The linear axis over `[0, max(count, 1)]` that does the mapping.
    linear: RangedCoordf64,
}

impl Bands {
    /// `count` bands, band 0 at the origin unless `reversed`.
    fn new(count: usize, reversed: bool) -> Self {
        Self {
            count,
            reversed,
            linear: (0.0..count.max(1) as f64).into(),
        }
    }

    /// The band a coordinate falls in (its centre, on a tick).
    fn index(position: f64) -> usize {
        position.floor().max(0.0) as usize
    }
}

impl Ranged for Bands {
    // Labels come from the formatter each chart supplies.
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let range = self.linear.range();
        let value = if self.reversed {
            range.end - (value - range.start)
        } else {
            *value
        };
        self.linear.map(&value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Ticks (bold points) at band centres only; no light grid lines.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.count).map(|i| i as f64 + 0.5).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

/// "{protocol} {title} · {cipher}", without the cipher when it is "-".
fn row_caption(row: &Row) -> String {
    let workload = format!("{} {}", row.protocol, row.title);
    match row.cipher.trim() {
        "" | "-" => workload,
        cipher => format!("{workload} · {cipher}"),
    }
}

/// A text style anchored at `h` horizontally and `v` vertically.
fn text_style(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v))
}

/// Top of a value axis holding every figure in `values`, with head room for
/// the labels drawn above the bars; 1 when there is nothing positive.
fn axis_top(values: impl Iterator<Item = f64>, head_room: f64) -> f64 {
    let max = values
        .filter(|v| v.is_finite())
        .fold(0.0_f64, |max, v| max.max(v));
    if max > 0.0 {
        max * head_room
    } else {
        1.0
    }
}

/// One chart per row: a bar per measured side (Ferry single, Ferry split,
/// the peer) at its median, a thin black dash per individual run, the
/// median written above each bar, and a red line at an absolute goal.
/// Sides without a measure are left out; a row with none still gets its
/// caption and a "no measurements" note.
fn row_chart(row: &Row, path: &Path) -> Result<()> {
    let context = || format!("drawing {}", path.display());
    let sides: Vec<(&str, &Measure, RGBColor)> = [
        ("Ferry single", row.single.as_ref(), SINGLE_COLOUR),
        ("Ferry split", row.split.as_ref(), SPLIT_COLOUR),
        (row.peer_name.as_str(), row.peer.as_ref(), PEER_COLOUR),
    ]
    .into_iter()
    .filter_map(|(label, measure, colour)| measure.map(|m| (label, m, colour)))
    .collect();

    // An absolute goal is drawn as a line across the chart.
    let goal = row.goal.absolute.filter(|g| g.is_finite() && *g > 0.0);

    // Side i occupies band i on the x axis, labelled at its centre.
    let top = axis_top(
        sides
            .iter()
            .flat_map(|(_, m, _)| m.runs.iter().copied().chain([m.median]))
            .chain(goal),
        1.15,
    );

    let root = SVGBackend::new(path, ROW_CHART_SIZE).into_drawing_area();
    root.fill(&WHITE).with_context(context)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(row_caption(row), (FONT, 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(Bands::new(sides.len(), false), 0.0..top)
        .with_context(context)?;

    let side_label = |x: &f64| {
        sides
            .get(Bands::index(*x))
            .map(|(label, _, _)| (*label).to_owned())
            .unwrap_or_default()
    };
    let value_label = |y: &f64| trimmed(*y, 2);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&side_label)
        .y_label_formatter(&value_label)
        .y_desc(row.unit.as_str())
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .draw()
        .with_context(context)?;

    if sides.is_empty() {
        chart
            .draw_series([Text::new(
                "no measurements",
                (0.5, top / 2.0),
                text_style(18.0, HPos::Center, VPos::Center),
            )])
            .with_context(context)?;
    }

    chart
        .draw_series(sides.iter().enumerate().map(|(i, (_, m, colour))| {
            let x = i as f64;
            Rectangle::new([(x + 0.2, 0.0), (x + 0.8, m.median)], colour.filled())
        }))
        .with_context(context)?;

    chart
        .draw_series(sides.iter().enumerate().flat_map(|(i, (_, m, _))| {
            let x = i as f64;
            m.runs
                .iter()
                .filter(|run| run.is_finite())
                .map(move |&run| PathElement::new(vec![(x + 0.3, run), (x + 0.7, run)], BLACK))
        }))
        .with_context(context)?;

    // The median above the bar, clear of the highest run's dash.
    let unit = row.unit.as_str();
    chart
        .draw_series(sides.iter().enumerate().map(|(i, (_, m, _))| {
            let highest = m
                .runs
                .iter()
                .copied()
                .filter(|run| run.is_finite())
                .fold(m.median, f64::max);
            EmptyElement::at((i as f64 + 0.5, highest))
                + Text::new(
                    format!("{} {unit}", number(m.median)),
                    (0, -6),
                    text_style(15.0, HPos::Center, VPos::Bottom),
                )
        }))
        .with_context(context)?;

    if let Some(goal) = goal {
        let right = sides.len().max(1) as f64;
        chart
            .draw_series([PathElement::new(
                vec![(0.0, goal), (right, goal)],
                PARITY_COLOUR.stroke_width(2),
            )])
            .with_context(context)?;
        chart
            .draw_series([EmptyElement::at((right, goal))
                + Text::new(
                    format!("goal {} {} {unit}", sense(row.better), trimmed(goal, 2)),
                    (-4, -4),
                    text_style(14.0, HPos::Right, VPos::Bottom).color(&PARITY_COLOUR),
                )])
            .with_context(context)?;
    }

    root.present().with_context(context)?;
    Ok(())
}

/// A ratio as plotted on the summary: oriented so that bigger is better.
struct Plotted {
    /// Ferry ÷ peer, or peer ÷ Ferry for rows where lower is better.
    value: f64,
    /// The goal in the same orientation.
    goal: Option<f64>,
}

impl Plotted {
    /// Orients `ratio` and `goal` for `better`; `None` when there is no
    /// usable ratio (missing side, zero, or not finite).
    fn of(better: Better, ratio: Option<f64>, goal: Option<f64>) -> Option<Self> {
        let ratio = ratio.filter(|r| r.is_finite() && *r > 0.0)?;
        let goal = goal.filter(|g| g.is_finite() && *g > 0.0);
        Some(match better {
            Better::Higher => Self { value: ratio, goal },
            Better::Lower => Self {
                value: 1.0 / ratio,
                goal: goal.map(|g| 1.0 / g),
            },
        })
    }
}

/// The summary: per row, a bar for Ferry single and one for Ferry split
/// against the peer (inverted for time and memory so bigger is always
/// better), a black tick at each goal, and a red line at parity.
fn ratios_chart(rows: &[Row], path: &Path) -> Result<()> {
    let context = || format!("drawing {}", path.display());
    let count = rows.len();
    // Per row: [Ferry single, Ferry split].
    let bars: Vec<[Option<Plotted>; 2]> = rows
        .iter()
        .map(|row| {
            [
                Plotted::of(row.better, row.single_ratio(), row.goal.single_ratio),
                Plotted::of(row.better, row.split_ratio(), row.goal.split_ratio),
            ]
        })
        .collect();
    let labels: Vec<String> = rows.iter().map(|row| short_label(&row.id)).collect();

    // Leave room on the right for the value texts and the legend.
    let right = axis_top(
        bars.iter()
            .flatten()
            .flatten()
            .flat_map(|p| [Some(p.value.min(RATIO_AXIS_CAP)), p.goal])
            .flatten()
            .chain([1.0]),
        1.4,
    );
    let height = RATIOS_PX_FIXED + RATIOS_PX_PER_ROW * count.max(1) as u32;

    // The naive font layout cannot measure, so size the label area from the
    // longest label: about 0.45 em per character at 15 px, plus the ticks.
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_area = (longest as f64 * 7.0 + 30.0).clamp(80.0, 420.0) as u32;

    let root = SVGBackend::new(path, (RATIOS_WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).with_context(context)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Ferry vs peer, higher is better (time and memory inverted)",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(label_area)
        .build_cartesian_2d(
            0.0..right,
            // Row i in band i, the first row at the top.
            Bands::new(count, true),
        )
        .with_context(context)?;

    let row_label = |y: &f64| labels.get(Bands::index(*y)).cloned().unwrap_or_default();
    let ratio_label = |x: &f64| format!("{}×", trimmed(*x, 2));
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&ratio_label)
        .y_label_formatter(&row_label)
        .x_desc("ratio to peer (peer ÷ Ferry for time and memory)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .draw()
        .with_context(context)?;

    // Within a band (drawn top-down) the single bar sits above the split
    // bar; the order matches `bars`.
    let sides = [
        ("Ferry single", SINGLE_COLOUR, 0.14, 0.48),
        ("Ferry split", SPLIT_COLOUR, 0.52, 0.86),
    ];
    for (side, (label, colour, low, high)) in sides.into_iter().enumerate() {
        let plotted = || {
            bars.iter()
                .enumerate()
                .filter_map(move |(i, pair)| pair[side].as_ref().map(|p| (i as f64, p)))
        };
        chart
            .draw_series(plotted().map(|(y, p)| {
                Rectangle::new(
                    [(0.0, y + low), (p.value.min(RATIO_AXIS_CAP), y + high)],
                    colour.filled(),
                )
            }))
            .with_context(context)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart
            .draw_series(plotted().map(|(y, p)| {
                let clipped = p.value > RATIO_AXIS_CAP;
                EmptyElement::at((p.value.min(RATIO_AXIS_CAP), y + (low + high) / 2.0))
                    + Text::new(
                        if clipped {
                            format!("{} (bar cut)", ratio_text(p.value))
                        } else {
                            ratio_text(p.value)
                        },
                        (8, 0),
                        text_style(13.0, HPos::Left, VPos::Center),
                    )
            }))
            .with_context(context)?;
        chart
            .draw_series(plotted().filter_map(|(y, p)| {
                p.goal.map(|goal| {
                    PathElement::new(
                        vec![(goal, y + low - 0.05), (goal, y + high + 0.05)],
                        BLACK.stroke_width(3),
                    )
                })
            }))
            .with_context(context)?;
    }

    // Rows without any ratio still say why their band is empty.
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, pair)| pair.iter().all(Option::is_none))
                .map(|(i, _)| {
                    EmptyElement::at((0.0, i as f64 + 0.5))
                        + Text::new(
                            "no ratio",
                            (6, 0),
                            text_style(13.0, HPos::Left, VPos::Center),
                        )
                }),
        )
        .with_context(context)?;

    // The goal ticks were drawn per side above; an empty series gives them
    // their legend entry.
    let any_goal = bars.iter().flatten().flatten().any(|p| p.goal.is_some());
    if any_goal {
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
            .with_context(context)?
            .label("goal")
            .legend(|(x, y)| {
                PathElement::new(vec![(x + 7, y - 7), (x + 7, y + 7)], BLACK.stroke_width(3))
            });
    }

    chart
        .draw_series([PathElement::new(
            vec![(1.0, 0.0), (1.0, count.max(1) as f64)],
            PARITY_COLOUR.stroke_width(2),
        )])
        .with_context(context)?
        .label("parity (1×)")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 14, y)], PARITY_COLOUR.stroke_width(2))
        });

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .with_context(context)?;

    root.present().with_context(context)?;
    Ok(())
}

/// A row id cut to [`MAX_LABEL_CHARS`] characters for the ratio axis.
fn short_label(id: &str) -> String {
    if id.chars().count() <= MAX_LABEL_CHARS {
        return id.to_owned();
    }
    let mut label: String = id.chars().take(MAX_LABEL_CHARS - 1).collect();
    label.push('…');
    label
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Machine;

    fn measure(runs: &[f64]) -> Option<Measure> {
        Measure::of(runs.to_vec())
    }

    /// Three rows: throughput with ratio goals (single met, split missed),
    /// time where less is better (single met, split missed), and memory
    /// with an absolute goal but no peer figure.
    fn sample() -> Report {
        Report {
            started: "2026-11-22T10:15:00Z".to_owned(),
            duration_secs: 812.5,
            quick: false,
            runs: 3,
            warmup: true,
            sizes: vec![
                ("upload".to_owned(), "1 GiB".to_owned()),
                ("many files".to_owned(), "1000 × 16 KiB".to_owned()),
            ],
            machine: Machine {
                cores: 2,
                cpu: "Intel(R) Xeon(R) CPU @ 2.20GHz".to_owned(),
                kernel: "6.1.0".to_owned(),
                memory_mib: 24 * 1024,
            },
            versions: vec![
                ("ferry".to_owned(), "0.1.0".to_owned()),
                ("OpenSSH".to_owned(), "OpenSSH_9.2p1\n".to_owned()),
            ],
            checksums_verified: 42,
            rows: vec![
                Row {
                    id: "sftp-upload-1gib-aes128-gcm".to_owned(),
                    title: "1 GiB upload".to_owned(),
                    protocol: "SFTP".to_owned(),
                    cipher: "aes128-gcm@openssh.com".to_owned(),
                    unit: "MB/s".to_owned(),
                    better: Better::Higher,
                    peer_name: "OpenSSH".to_owned(),
                    single: measure(&[140.0, 150.0, 160.0]),
                    split: measure(&[110.0, 105.0, 115.0]),
                    peer: measure(&[100.0, 99.0, 101.0]),
                    goal: Goal {
                        single_ratio: Some(1.5),
                        split_ratio: Some(1.25),
                        absolute: None,
                    },
                },
                Row {
                    id: "https-handshake".to_owned(),
                    title: "handshake".to_owned(),
                    protocol: "HTTPS".to_owned(),
                    cipher: "TLS_AES_128_GCM_SHA256".to_owned(),
                    unit: "ms/session".to_owned(),
                    better: Better::Lower,
                    peer_name: "nginx".to_owned(),
                    single: measure(&[5.0, 4.5, 5.5]),
                    split: measure(&[6.0, 6.0, 6.0]),
                    peer: measure(&[10.0, 10.0, 10.0]),
                    goal: Goal {
                        single_ratio: Some(0.5),
                        split_ratio: Some(0.5),
                        absolute: None,
                    },
                },
                Row {
                    id: "sftp-memory".to_owned(),
                    title: "memory per session".to_owned(),
                    protocol: "SFTP".to_owned(),
                    cipher: "-".to_owned(),
                    unit: "KiB/session".to_owned(),
                    better: Better::Lower,
                    peer_name: "OpenSSH".to_owned(),
                    single: measure(&[180.0, 176.0, 184.0]),
                    split: measure(&[300.0]),
                    peer: None,
                    goal: Goal {
                        single_ratio: None,
                        split_ratio: None,
                        absolute: Some(256.0),
                    },
                },
            ],
        }
    }

    fn line_with<'a>(md: &'a str, needle: &str) -> &'a str {
        md.lines().find(|line| line.contains(needle)).unwrap()
    }

    #[test]
    fn numbers_follow_the_decimal_rules() {
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(150.0), "150");
        assert_eq!(number(99.96), "100");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(4.5), "4.50");
        assert_eq!(number(0.0), "0.00");
        assert_eq!(trimmed(1.5, 2), "1.5");
        assert_eq!(trimmed(256.0, 2), "256");
        assert_eq!(memory(24 * 1024), "24 GiB");
        assert_eq!(memory(15_974), "15.6 GiB");
        assert_eq!(memory(512), "512 MiB");
    }

    #[test]
    fn markdown_has_machine_table_and_footer() {
        let md = markdown(&sample());
        assert!(md.contains(
            "2 cores · Intel(R) Xeon(R) CPU @ 2.20GHz · Linux 6.1.0 · 24 GiB · \
             median of 3 runs after a warm-up · 2026-11-22"
        ));
        assert!(!md.contains("quick smoke run"));
        assert!(md.contains(
            "| Workload | Cipher | Peer | Ferry single | ratio | Ferry split | ratio | Goal |"
        ));

        let upload = line_with(&md, "SFTP 1 GiB upload");
        assert!(upload.contains("| 100 MB/s (OpenSSH) |"), "{upload}");
        assert!(upload.contains("| 150 MB/s | 1.50× ✓ |"), "{upload}");
        assert!(upload.contains("| 110 MB/s | 1.10× ✗ |"), "{upload}");
        assert!(
            upload.ends_with("| ≥ 1.5× single, ≥ 1.25× split |"),
            "{upload}"
        );

        let handshake = line_with(&md, "HTTPS handshake");
        assert!(
            handshake.contains("| 10.0 ms/session (nginx) |"),
            "{handshake}"
        );
        assert!(
            handshake.contains("| 5.00 ms/session | 0.50× ✓ |"),
            "{handshake}"
        );
        assert!(
            handshake.contains("| 6.00 ms/session | 0.60× ✗ |"),
            "{handshake}"
        );
        assert!(handshake.ends_with("| ≤ 0.5× |"), "{handshake}");

        let memory = line_with(&md, "SFTP memory per session");
        assert_eq!(
            memory,
            "| SFTP memory per session | — | — | 180 KiB/session ✓ | — \
             | 300 KiB/session ✗ | — | ≤ 256 KiB/session |"
        );

        assert!(md.contains("- ferry: 0.1.0\n- OpenSSH: OpenSSH_9.2p1\n"));
        assert!(md.contains("42 transferred files checked by SHA-256."));
        assert!(md.contains("Sizes: upload = 1 GiB, many files = 1000 × 16 KiB"));
    }

    #[test]
    fn markdown_flags_quick_runs_and_combines_goals() {
        let mut report = sample();
        report.quick = true;
        report.rows[0].goal.absolute = Some(90.0);
        report.rows[0].goal.split_ratio = None;
        let md = markdown(&report);
        assert!(md.contains("quick smoke run — sizes reduced, figures not comparable"));
        let upload = line_with(&md, "SFTP 1 GiB upload");
        assert!(upload.ends_with("| ≥ 1.5× single, ≥ 90 MB/s |"), "{upload}");
        assert!(upload.contains("| 110 MB/s ✓ | 1.10× |"), "{upload}");
    }

    #[test]
    fn write_all_writes_json_markdown_and_charts() {
        let report = sample();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested").join("results");
        let written = write_all(&report, &out).unwrap();

        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "results.json",
                "results.md",
                "sftp-upload-1gib-aes128-gcm.svg",
                "https-handshake.svg",
                "sftp-memory.svg",
                "ratios.svg",
            ]
        );

        let json = fs::read_to_string(out.join("results.json")).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);

        let md = fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.starts_with("# Ferry benchmark\n\n"));
        assert!(md.contains("1.50× ✓"));

        for path in written.iter().filter(|p| p.extension().unwrap() == "svg") {
            let svg = fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", path.display());
            assert!(svg.contains("<rect"), "{}", path.display());
        }
        let upload = fs::read_to_string(out.join("sftp-upload-1gib-aes128-gcm.svg")).unwrap();
        assert!(upload.contains("SFTP 1 GiB upload · aes128-gcm@openssh.com"));
        assert!(upload.contains("OpenSSH"));
        let memory = fs::read_to_string(out.join("sftp-memory.svg")).unwrap();
        assert!(memory.contains("SFTP memory per session"));
        assert!(!memory.contains(" · -"));
        let ratios = fs::read_to_string(out.join("ratios.svg")).unwrap();
        assert!(ratios.contains("time and memory inverted"));
        assert!(ratios.contains("1.50×"));
        // The handshake is plotted inverted: peer ÷ Ferry = 10 ÷ 5.
        assert!(ratios.contains("2.00×"));
        assert!(ratios.contains("sftp-memory"));
    }

    #[test]
    fn charts_survive_rows_without_figures_and_odd_ids() {
        let mut report = sample();
        report.rows[2].single = None;
        report.rows[2].split = None;
        report.rows[1].id = "ratios".to_owned();
        report.rows[0].id = "../escape".to_owned();
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&report, dir.path()).unwrap();
        for path in &written {
            assert_eq!(path.parent().unwrap(), dir.path());
        }
        assert!(dir.path().join("row.._escape.svg").exists());
        assert!(dir.path().join("ratios-2.svg").exists());
        let empty = fs::read_to_string(dir.path().join("sftp-memory.svg")).unwrap();
        assert!(empty.starts_with("<svg"));
        assert!(empty.contains("no measurements"));

        let nothing = Report {
            rows: Vec::new(),
            ..report
        };
        let written = write_all(&nothing, dir.path()).unwrap();
        assert_eq!(written.len(), 3);
    }
}
