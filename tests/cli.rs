//! The command-line client (`examples/onboard`) against a real server
//! (`examples/server`) and worker (`examples/worker`) on SQLite: submit with
//! `--wait` and its exit code, results as a file, status, list, retry,
//! cancel, an idempotent replay, and an error printed from the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[allow(dead_code, unreachable_pub)]
#[path = "reliability/harness/binaries.rs"]
mod binaries;
#[allow(dead_code, unreachable_pub)]
#[path = "reliability/harness/processes.rs"]
mod processes;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use binaries::binaries;
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::Engine;
use processes::{eventually, free_port, log_dir, Proc};

const KEY: &str = "cli-test-key-0123456789";

/// Runs `onboard args…` against `base` and waits for it.
fn onboard(base: &str, key: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(&binaries().onboard)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ONBOARD_URL", base)
        .env("ONBOARD_KEY", key)
        .output()
        .expect("run onboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The batch id in `batch <id>: …`.
fn batch_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(':').next())
        .expect("a batch line")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_real_server() {
    let bins = binaries();
    let db = TestDatabase::create_labelled(Engine::Sqlite, "cli").await;
    let dir = log_dir("cli");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let common = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("DATABASE_URL", db.url()),
            ("METRICS_ADDR", "off"),
            ("PROCESSOR", "noop"),
            ("GENERATE_SECRETS", "false"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    // HTTP only: nothing processes batches until the worker starts.
    let _server = Proc::spawn(
        "server",
        &bins.server,
        &common(&[
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("API_KEYS", &format!("acme:{KEY}")),
            ("WORKERS", "0"),
        ]),
        dir.join("server.log"),
    );
    let http = reqwest::Client::new();
    eventually("the server to answer", Duration::from_secs(60), || async {
        let r = http.get(format!("{base}/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Cancel: a batch nobody processes yet.
    std::fs::write(
        dir.join("later.ndjson"),
        "{\"name\":\"Later\",\"domain\":\"later-cli.example.com\",\"contact_email\":\"a@later-cli.example.com\"}\n",
    )
    .unwrap();
    let out = onboard(&base, KEY, &dir, &["submit", "later.ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let later = batch_id(&text(&out.stdout));
    let out = onboard(&base, KEY, &dir, &["cancel", &later]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cancelled 100% of 1"), "{stdout}");
    assert!(stdout.contains("1 cancelled"), "{stdout}");

    // Workers start.
    let _worker = Proc::spawn(
        "worker",
        &bins.worker,
        &common(&[("WORKERS", "4")]),
        dir.join("worker.log"),
    );

    // Submit and wait: one bad row → exit 2, the counts printed.
    std::fs::write(
        dir.join("customers.csv"),
        "name,domain,contact_email,external_id\n\
         Acme,acme-cli.example.com,ops@acme-cli.example.com,c-1\n\
         Globex,globex-cli.example.com,ops@globex-cli.example.com,c-2\n\
         Broken,not a domain,ops@broken.example.com,c-3\n\
         Initech,initech-cli.example.com,ops@initech-cli.example.com,c-4\n",
    )
    .unwrap();
    let out = onboard(
        &base,
        KEY,
        &dir,
        &[
            "submit",
            "customers.csv",
            "--wait",
            "--idempotency-key",
            "cli-1",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("3 organizations from 4 rows, 1 rows rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("completed 100% of 3: 3 completed, 0 failed"),
        "{stdout}"
    );
    let id = batch_id(&stdout);

    // The same key and file: the first batch again.
    let out = onboard(
        &base,
        KEY,
        &dir,
        &["submit", "customers.csv", "--idempotency-key", "cli-1"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("replayed"), "{stdout}");
    assert_eq!(batch_id(&stdout), id);

    // Results as files.
    let out = onboard(
        &base,
        KEY,
        &dir,
        &["results", &id, "--status", "rejected", "-o", "rejected.csv"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 rows written to rejected.csv"));
    let rejected = std::fs::read_to_string(dir.join("rejected.csv")).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines.len(), 2, "{rejected}");
    assert!(lines[0].starts_with("line,name,domain"), "{rejected}");
    assert!(
        lines[1].starts_with("4,")
            && lines[1].contains("c-3")
            && lines[1].contains("domain_invalid"),
        "{rejected}"
    );
    let out = onboard(&base, KEY, &dir, &["results", &id, "-o", "all.ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = std::fs::read_to_string(dir.join("all.ndjson")).unwrap();
    let rows: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{all}");
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{all}");
    assert_eq!(rows[0]["external_id"], "c-1");

    // Status, list, retry.
    let out = onboard(&base, KEY, &dir, &["status", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(&format!("batch {id}: completed")));
    let out = onboard(&base, KEY, &dir, &["list"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = text(&out.stdout);
    let first = listing.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with(&id), "newest first: {listing}");
    assert!(
        listing.contains(&later) && listing.contains("cancelled"),
        "{listing}"
    );
    let out = onboard(&base, KEY, &dir, &["list", "--state", "cancelled"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let out = onboard(&base, KEY, &dir, &["retry", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 failed items requeued"));

    // Errors: the problem's title and detail, exit 1.
    let out = onboard(&base, "wrong-key-0123456789", &dir, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: Unauthorized (401)"), "{stderr}");
    std::fs::write(dir.join("bad.csv"), "name,email\nA,a@b.com\n").unwrap();
    let out = onboard(&base, KEY, &dir, &["submit", "bad.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("(422)") && stderr.contains("missing_columns"),
        "{stderr}"
    );
    let out = onboard(
        &base,
        KEY,
        &dir,
        &["status", "0191e5a4-0000-7000-8000-000000000000"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Not found (404)"),
        "{}",
        text(&out.stderr)
    );
}
