//! Progress bars (indicatif, drawn on stderr only when it is a terminal) and
//! the wait for a batch to finish.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{CliResult, Client};

/// How often the batch status is read while waiting.
const POLL: Duration = Duration::from_millis(500);

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A bar over the bytes of an upload.
pub(crate) fn upload_bar(bytes: u64) -> ProgressBar {
    bar(
        bytes,
        "uploading [{bar:40}] {percent:>3}% {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}",
    )
}

/// A number of the status document (0 when absent).
pub(crate) fn count(status: &Value, group: &str, field: &str) -> u64 {
    status[group][field].as_u64().unwrap_or(0)
}

/// Polls the batch until it is no longer receiving or running, showing its progress
/// (finished items of the total, percent, ETA); answers its last status.
pub(crate) async fn wait(client: &Client, id: &str) -> CliResult<Value> {
    let bar = bar(
        0,
        "processing [{bar:40}] {percent:>3}% {pos}/{len} (ETA {eta}) {msg}",
    );
    let path = format!("api/v1/batches/{id}");
    loop {
        let status = client.get_json(&path, &[]).await?;
        let finished = ["completed", "failed", "cancelled"]
            .iter()
            .map(|s| count(&status, "counts", s))
            .sum();
        bar.set_length(status["total"].as_u64().unwrap_or(0));
        bar.set_position(finished);
        bar.set_message(format!("{} failed", count(&status, "counts", "failed")));
        // `receiving` right after an import's answer: its batch is being
        // created from the stored rows.
        if !matches!(status["state"].as_str(), Some("running" | "receiving")) {
            bar.finish_and_clear();
            return Ok(status);
        }
        tokio::time::sleep(POLL).await;
    }
}
