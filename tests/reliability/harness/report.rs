//! Percentiles and the `RELIABILITY <scenario>: key=value` report lines.

use std::time::Duration;

/// The `p`-th percentile (0-100) of `values`.
pub(crate) fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let rank = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Prints one scenario's counts (shown with `--nocapture`; collected into RELIABILITY.md).
pub(crate) fn report(scenario: &str, fields: &[(&str, String)]) {
    let line = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("RELIABILITY {scenario}: {line}");
    let path = std::env::temp_dir().join("onboarding-reliability/report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write as _;
        let _ = writeln!(f, "{scenario}: {line}");
    }
}
