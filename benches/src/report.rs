//! What the custom benchmark mains report beside criterion's own output:
//! the median time per iteration of every measured function (median of
//! criterion's samples), ratios against the baseline measured in the same
//! run, a Markdown table on stdout and a hand-drawn SVG bar chart under
//! `docs/bench/`.
#![allow(clippy::print_stdout)] // the report goes to stdout

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Per-iteration times (seconds) of every sample, by benchmark id.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Records one criterion sample: `total` for `iters` iterations.
pub fn record(id: &str, total: Duration, iters: u64) {
    if iters == 0 {
        return;
    }
    let per = total.as_secs_f64() / iters as f64;
    if let Ok(mut s) = SAMPLES.lock() {
        s.entry(id.to_owned()).or_default().push(per);
    }
}

/// Median seconds per iteration of `id`, when it ran.
pub fn median(id: &str) -> Option<f64> {
    let s = SAMPLES.lock().ok()?;
    let mut v = s.get(id)?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The ratio of `id` to `baseline` sample by sample (the i-th of each,
/// recorded in turn): its median and interquartile range, when both ran
/// the same number of times. Each pair saw the same moment of a noisy
/// machine, so this moves less from run to run than the ratio of the two
/// medians.
pub fn paired_ratio(id: &str, baseline: &str) -> Option<(f64, f64, f64)> {
    let s = SAMPLES.lock().ok()?;
    let (a, b) = (s.get(id)?, s.get(baseline)?);
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    r.sort_by(f64::total_cmp);
    let at = |q: usize| r[(r.len() - 1) * q / 4];
    Some((at(2), at(1), at(3)))
}

/// Prints [`paired_ratio`] of each `(id, baseline)` that ran.
pub fn print_paired_ratios(pairs: &[(&str, &str)]) {
    for (id, baseline) in pairs {
        if let Some((median, p25, p75)) = paired_ratio(id, baseline) {
            println!(
                "`{id}` / `{baseline}`, round by round: median {median:.2}x \
                 (interquartile {p25:.2}x-{p75:.2}x)"
            );
        }
    }
}

/// One row of a report.
pub struct Row {
    /// The benchmark id (as recorded).
    pub id: &'static str,
    /// What it is, for people.
    pub label: &'static str,
    /// Elements (organizations, jobs) one iteration handles.
    pub elements: u64,
    /// The id of its baseline in the same run, if any.
    pub baseline: Option<&'static str>,
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Prints the table (Markdown) and writes `docs/bench/{file}.svg` and
/// `docs/bench/{file}.md`.
pub fn write(file: &str, title: &str, command: &str, rows: &[Row]) {
    let mut md = String::new();
    let _ = writeln!(md, "### {title}\n");
    let _ = writeln!(md, "`{command}`\n");
    let _ = writeln!(
        md,
        "| benchmark | median / iteration | elements/s | ratio | against |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let mut bars = Vec::new();
    for row in rows {
        let Some(t) = median(row.id) else { continue };
        let rate = row.elements as f64 / t;
        let (ratio, against) = match row.baseline.and_then(|b| median(b).map(|m| (b, m))) {
            Some((b, m)) => (format!("{:.2}x", t / m), format!("`{b}`")),
            None => ("—".to_owned(), String::new()),
        };
        let _ = writeln!(
            md,
            "| `{}` {} | {} | {:.0} | {} | {} |",
            row.id,
            row.label,
            fmt_time(t),
            rate,
            ratio,
            against
        );
        bars.push((format!("{} ({})", row.label, fmt_time(t)), rate));
    }
    println!("\n{md}");
    if bars.len() < rows.len() {
        println!("(a filtered run: docs/bench/{file}.* left as they were)");
        return;
    }
    // The repository root's docs/bench (this package is benches/).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{file}.md")), &md);
    let _ = std::fs::write(
        dir.join(format!("{file}.svg")),
        bar_chart(title, "elements per second (higher is better)", &bars),
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart, one bar per `(label, value)`.
pub fn bar_chart(title: &str, axis: &str, bars: &[(String, f64)]) -> String {
    let (left, width, bar_h, gap, top) = (330.0, 420.0, 22.0, 8.0, 50.0);
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let height = top + bars.len() as f64 * (bar_h + gap) + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"#,
        w = left + width + 110.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let w = (value / max * width).max(1.0);
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{ty}" text-anchor="end">{}</text>"#,
            escape(label),
            x = left - 8.0,
            ty = y + bar_h * 0.7
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y}" width="{w:.1}" height="{bar_h}" fill="#4878a8"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{ty}">{value:.0}</text>"#,
            x = left + w + 5.0,
            ty = y + bar_h * 0.7
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{y}" fill="#555">{}</text>"##,
        escape(axis),
        y = height - 14.0
    );
    s.push_str("</svg>\n");
    s
}
