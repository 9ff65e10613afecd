//! A 100,000-row CSV imported over HTTP into SQLite in bounded memory (its
//! own test binary, so the process's peak RSS is this test's). The
//! 1,000,000-row run is `IMPORT_ROWS=1000000 cargo test --release -p
//! onboarding-http --test import_large` (see BENCHMARKS.md).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use onboarding_core::memory::{MemoryCache, TracingEventSink};
use onboarding_core::model::BatchId;
use onboarding_core::{Backends, IngestConfig, OnboardingService};
use onboarding_http::{router, ServeConfig};
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::{Engine, SqlOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Peak resident set of this process, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    onboarding_core::testing::proc_status_kib(std::process::id(), "VmHWM:").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_rows_in_bounded_memory() {
    let rows: usize = std::env::var("IMPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let db = TestDatabase::create(Engine::Sqlite).await;
    let sql = db.connect(SqlOptions::default()).await;
    let backends = Backends::new(
        sql.repository(),
        sql.queue(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );
    let service = OnboardingService::new(backends, IngestConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(onboarding_http::serve(
        listener,
        router(service.clone(), config().build()),
        ServeConfig::default(),
        std::future::pending(),
    ));
    let before = peak_rss_kib();

    // Sent chunk by chunk as it is generated: the file never exists whole.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/imports HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ACME_KEY}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0usize;
    for c in 0..rows.div_ceil(1_000) {
        let mut chunk = if c == 0 {
            "name,domain,contact_email,external_id\n".to_owned()
        } else {
            String::new()
        };
        for i in c * 1_000..((c + 1) * 1_000).min(rows) {
            chunk.push_str(&format!(
                "Customer {i},big{i}.example.com,ops@big{i}.example.com,crm-{i}\n"
            ));
        }
        sent += chunk.len();
        socket
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 202"), "{text}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["organizations_count"], rows);
    let id: BatchId = body["batch_id"].as_str().unwrap().parse().unwrap();
    // The batch is created from the staged rows right after the answer.
    let acme = tenant("acme");
    let status = onboarding_core::testing::eventually_every(
        "the import's batch",
        std::time::Duration::from_secs(120),
        std::time::Duration::from_millis(200),
        || service.batch_status(&acme, id),
    )
    .await;
    assert_eq!(status.counts.pending as usize, rows);

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    let file_mib = sent / (1024 * 1024);
    eprintln!("{rows} rows, {file_mib} MiB sent; peak RSS grew by {grown_mib} MiB");
    // Bounded: far below the file's size times the copies a buffered
    // import would make (the whole body, the parsed rows, the items).
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB for a {file_mib} MiB file"
    );
    sql.close().await;
}
