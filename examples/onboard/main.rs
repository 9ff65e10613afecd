//! `onboard`: a command-line client of the bulk-onboarding HTTP API.
//!
//! ```text
//! export ONBOARD_URL=http://127.0.0.1:8080 ONBOARD_KEY=obk_…
//! onboard submit customers.csv --wait      # upload, then a progress bar until done
//! onboard results <batch> --status failed -o failed.csv
//! onboard status <batch> | onboard list | onboard retry <batch> | onboard cancel <batch>
//! ```
//!
//! Exit codes: 0 success (after `submit --wait`: every row completed), 2 some
//! rows were rejected, failed or cancelled, 1 an error (its problem detail
//! printed on stderr).

mod client;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use client::{chain, CliError, CliResult, Client};
use futures::TryStreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Command-line client of the bulk-onboarding API.
#[derive(Parser)]
#[command(name = "onboard", version)]
struct Args {
    /// The server's base URL.
    #[arg(long, env = "ONBOARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The API key (`Authorization: Bearer`).
    #[arg(long, env = "ONBOARD_KEY", hide_env_values = true)]
    key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a CSV or NDJSON file as one batch (`POST /api/v1/imports`).
    Submit(SubmitArgs),
    /// Show a batch's status.
    Status {
        /// The batch id.
        id: String,
        /// Wait until the batch is finished, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// List this tenant's batches, newest first.
    List {
        /// Only batches in this state.
        #[arg(long, value_parser = ["running", "completed", "cancelled"])]
        state: Option<String>,
        /// How many (1-200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue after an earlier listing (its `next` cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Download a batch's results as a file.
    Results {
        /// The batch id.
        id: String,
        /// Only rows in this status.
        #[arg(long, value_parser = ["completed", "failed", "pending", "processing", "cancelled", "rejected"])]
        status: Option<String>,
        /// csv or ndjson (default: from the output file's extension, else csv).
        #[arg(long)]
        format: Option<Format>,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Put a batch's failed items back to pending.
    Retry {
        /// The batch id.
        id: String,
    },
    /// Cancel a batch's pending items.
    Cancel {
        /// The batch id.
        id: String,
    },
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// The file: `.csv` (a header row naming name, domain, contact_email) or `.ndjson` / `.jsonl`.
    file: PathBuf,
    /// Wait until every row is processed, with a progress bar; the exit code tells the outcome.
    #[arg(long)]
    wait: bool,
    /// The file's format, when its extension does not tell.
    #[arg(long)]
    format: Option<Format>,
    /// What to do with domains that already exist.
    #[arg(long, value_parser = ["update", "skip"])]
    on_conflict: Option<String>,
    /// partial (refused rows are listed, the rest proceeds) or atomic (all or nothing).
    #[arg(long, value_parser = ["partial", "atomic"])]
    mode: Option<String>,
    /// Refuse the whole import past this many refused rows.
    #[arg(long)]
    max_errors: Option<u64>,
    /// Idempotency key: the same key and file answer the first batch again.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Ndjson,
}

impl Format {
    fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// Something for the person at the terminal (stdout, so it can be piped).
#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> CliResult<ExitCode> {
    let client = Client::new(&args.url, args.key)?;
    match args.command {
        Command::Submit(submit) => submit_file(&client, submit).await,
        Command::Status { id, wait } => {
            let status = if wait {
                progress::wait(&client, &id).await?
            } else {
                client.get_json(&batch_path(&id, ""), &[]).await?
            };
            say(&describe(&status));
            Ok(if wait {
                outcome(&status, 0)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::List {
            state,
            limit,
            cursor,
        } => list(&client, state, limit, cursor).await,
        Command::Results {
            id,
            status,
            format,
            output,
        } => results(&client, &id, status, format, output).await,
        Command::Retry { id } => {
            let answer = client.post_json(&batch_path(&id, "/retry")).await?;
            say(&format!(
                "batch {}: {} failed items requeued",
                answer["batch_id"].as_str().unwrap_or(&id),
                answer["requeued"].as_u64().unwrap_or(0)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } => {
            let status = client.post_json(&batch_path(&id, "/cancel")).await?;
            say(&describe(&status));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn batch_path(id: &str, rest: &str) -> String {
    // An id is a UUID: anything else cannot name a batch (and must not
    // change the path).
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("api/v1/batches/{id}{rest}")
}

async fn submit_file(client: &Client, args: SubmitArgs) -> CliResult<ExitCode> {
    let format = args
        .format
        .or_else(|| Format::of(&args.file))
        .ok_or_else(|| {
            CliError(format!(
            "cannot tell the format of {} from its extension: pass --format csv or --format ndjson",
            args.file.display()
        ))
        })?;
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
        .len();
    let bar = progress::upload_bar(size);
    let sent = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(file)
        .inspect_ok(move |chunk| sent.inc(chunk.len() as u64));
    let mut query = Vec::new();
    for (name, value) in [
        ("on_conflict", args.on_conflict),
        ("mode", args.mode),
        ("max_errors", args.max_errors.map(|n| n.to_string())),
    ] {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let url = client.url("api/v1/imports", &query)?;
    let mut request = client
        .request(Method::POST, url)
        .header(reqwest::header::CONTENT_TYPE, format.content_type())
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream));
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    bar.set_message("(then stored as one batch)");
    let answer = client.json(request).await;
    bar.finish_and_clear();
    let (headers, answer) = answer?;
    let id = answer["batch_id"].as_str().unwrap_or_default().to_owned();
    let rejected = answer["rows_rejected"].as_u64().unwrap_or(0);
    let replayed = headers
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes() == b"true");
    say(&format!(
        "batch {id}: {} organizations from {} rows, {rejected} rows rejected{}",
        answer["organizations_count"].as_u64().unwrap_or(0),
        answer["rows_received"].as_u64().unwrap_or(0),
        if replayed {
            " (replayed: this key and file were submitted before)"
        } else {
            ""
        }
    ));
    if rejected > 0 {
        say(&format!(
            "rejected rows: onboard results {id} --status rejected"
        ));
    }
    if !args.wait {
        return Ok(if rejected > 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        });
    }
    let status = progress::wait(client, &id).await?;
    say(&describe(&status));
    Ok(outcome(&status, rejected))
}

/// 0 when every row completed, else 2.
fn outcome(status: &Value, rejected: u64) -> ExitCode {
    let total = status["total"].as_u64().unwrap_or(0);
    let completed = progress::count(status, "counts", "completed");
    if rejected == 0 && completed == total && status["state"].as_str() == Some("completed") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// One line: id, state, percent and the counts.
fn describe(status: &Value) -> String {
    let c = |f| progress::count(status, "counts", f);
    let ch = |f| progress::count(status, "changes", f);
    let mut line = format!(
        "batch {}: {} {}% of {}: {} completed, {} failed, {} pending, {} processing, {} cancelled \
         (created {}, updated {}, unchanged {}, skipped {})",
        status["batch_id"].as_str().unwrap_or("?"),
        status["state"].as_str().unwrap_or("?"),
        status["percent"].as_f64().unwrap_or(0.0),
        status["total"].as_u64().unwrap_or(0),
        c("completed"),
        c("failed"),
        c("pending"),
        c("processing"),
        c("cancelled"),
        ch("created"),
        ch("updated"),
        ch("unchanged"),
        ch("skipped"),
    );
    if let Some(eta) = status["eta_seconds"].as_f64() {
        line.push_str(&format!(", ETA {eta:.0} s"));
    }
    line
}

async fn list(
    client: &Client,
    state: Option<String>,
    limit: u32,
    cursor: Option<String>,
) -> CliResult<ExitCode> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(state) = state {
        query.push(("state", state));
    }
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor));
    }
    let page = client.get_json("api/v1/batches", &query).await?;
    say(&format!(
        "{:<36}  {:<9}  {:<20}  {:>8}  {:>6}  {:>9}  {:>6}",
        "batch", "state", "created", "total", "%", "completed", "failed"
    ));
    for batch in page["data"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let created = batch["created_at"].as_str().unwrap_or("");
        say(&format!(
            "{:<36}  {:<9}  {:<20}  {:>8}  {:>6.1}  {:>9}  {:>6}",
            batch["batch_id"].as_str().unwrap_or("?"),
            batch["state"].as_str().unwrap_or("?"),
            created.get(..19).unwrap_or(created),
            batch["total"].as_u64().unwrap_or(0),
            batch["percent"].as_f64().unwrap_or(0.0),
            progress::count(batch, "counts", "completed"),
            progress::count(batch, "counts", "failed"),
        ));
    }
    if let Some(next) = page["next_cursor"].as_str() {
        say(&format!("more: onboard list --cursor {next}"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn results(
    client: &Client,
    id: &str,
    status: Option<String>,
    format: Option<Format>,
    output: Option<PathBuf>,
) -> CliResult<ExitCode> {
    let format = format
        .or_else(|| output.as_deref().and_then(Format::of))
        .unwrap_or(Format::Csv);
    let mut query = vec![("format", format.as_str().to_owned())];
    if let Some(status) = status {
        query.push(("status", status));
    }
    let url = client.url(&batch_path(id, "/results"), &query)?;
    let response = client.send(client.request(Method::GET, url)).await?;
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut lines = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| format!("reading the results: {}", chain(&e)))?
    {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        sink.write_all(&chunk)
            .await
            .map_err(|e| format!("writing the results: {e}"))?;
    }
    sink.flush()
        .await
        .map_err(|e| format!("writing the results: {e}"))?;
    if let Some(path) = output {
        let rows = match format {
            Format::Csv => lines.saturating_sub(1),
            Format::Ndjson => lines,
        };
        say(&format!("{rows} rows written to {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}
