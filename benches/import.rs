//! A CSV file imported over HTTP (`POST /api/v1/imports`) into a server in
//! this process, against the floor of loading the same rows into a plain
//! table on the same database server: `COPY … FROM STDIN` on PostgreSQL, one
//! transaction of multi-row `INSERT`s on SQLite (it has no `COPY`).
//!
//! ```text
//! cargo bench --bench import                          # 1,000,000 rows, PostgreSQL + Redis, then SQLite
//! IMPORT_ROWS=100000 IMPORT_ENGINES=sqlite cargo bench --bench import
//! IMPORT_LOG=info IMPORT_ROWS=100000 cargo bench --bench import  # and the time per stage
//! ```
//!
//! Reports, per engine: the upload (from the first byte sent to the 202,
//! which comes once every row is stored as one batch) in rows/s; the end to
//! end rate (first byte to the last item completed by one in-process worker
//! with a no-op processor, started before the upload); the floor in rows/s
//! and the upload's ratio to it; the process's peak RSS (server, worker and
//! the client, which generates the file as it sends it and never holds it).
//! The floor runs after the import, so that the peak RSS is the import's.

#![allow(clippy::print_stdout)] // a benchmark's report goes to stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding::model::{BatchId, TenantId};
use onboarding::{IngestConfig, JobQueue, NoopProcessor, OnboardingService, Worker};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use backends::Engine;
use onboarding_bench::{backends, workload};
use workload::{env_usize, worker_config};

const KEY: &str = "import-bench-key-0123456789";
const HEADER: &str = "name,domain,contact_email,external_id\n";
/// Rows per HTTP chunk (and per floor statement batch).
const CHUNK: usize = 1_000;

/// Rows `from..to` of the file, as CSV lines.
fn csv_rows(from: usize, to: usize) -> String {
    let mut out = String::with_capacity((to - from) * 72);
    for i in from..to {
        out.push_str(&format!(
            "Customer {i},imp{i}.example.com,ops@imp{i}.example.com,crm-{i}\n"
        ));
    }
    out
}

/// Peak resident set of this process, in MiB (Linux `VmHWM`; 0 elsewhere).
fn peak_rss_mib() -> u64 {
    onboarding_core::testing::proc_status_kib(std::process::id(), "VmHWM:")
        .map_or(0, |kib| kib / 1024)
}

/// Sends the file in chunks of [`CHUNK`] rows, generated as they go;
/// answers the batch id of the 202.
async fn upload(addr: std::net::SocketAddr, rows: usize) -> BatchId {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/imports HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("send");
    for c in 0..rows.div_ceil(CHUNK) {
        let mut chunk = if c == 0 {
            HEADER.to_owned()
        } else {
            String::new()
        };
        chunk.push_str(&csv_rows(c * CHUNK, ((c + 1) * CHUNK).min(rows)));
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        socket.write_all(framed.as_bytes()).await.expect("send");
    }
    socket.write_all(b"0\r\n\r\n").await.expect("send");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.expect("answer");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 202"), "{text}");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(body["organizations_count"].as_u64(), Some(rows as u64));
    body["batch_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("batch_id")
}

/// The floor on PostgreSQL: `COPY` of the same rows into a plain table.
async fn postgres_floor(url: &str, rows: usize) -> Duration {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(
        "CREATE TABLE import_floor (name text, domain text, contact_email text, external_id text)",
    )
    .execute(&mut conn)
    .await
    .expect("create");
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY import_floor FROM STDIN (FORMAT csv, HEADER true)")
        .await
        .expect("copy");
    copy.send(HEADER.as_bytes()).await.expect("copy");
    for c in 0..rows.div_ceil(CHUNK) {
        let chunk = csv_rows(c * CHUNK, ((c + 1) * CHUNK).min(rows));
        copy.send(chunk.as_bytes()).await.expect("copy");
    }
    let copied = copy.finish().await.expect("copy");
    let took = started.elapsed();
    assert_eq!(copied, rows as u64);
    conn.close().await.ok();
    took
}

/// The floor on SQLite: one transaction of 500-row `INSERT`s into a plain table.
async fn sqlite_floor(url: &str, rows: usize) -> Duration {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query(
        "CREATE TABLE import_floor (name TEXT, domain TEXT, contact_email TEXT, external_id TEXT)",
    )
    .execute(&mut conn)
    .await
    .expect("create");
    let started = Instant::now();
    let mut tx = conn.begin().await.expect("begin");
    for from in (0..rows).step_by(500) {
        let to = (from + 500).min(rows);
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO import_floor (name, domain, contact_email, external_id) ",
        );
        qb.push_values(from..to, |mut row, i| {
            row.push_bind(format!("Customer {i}"))
                .push_bind(format!("imp{i}.example.com"))
                .push_bind(format!("ops@imp{i}.example.com"))
                .push_bind(format!("crm-{i}"));
        });
        qb.build().execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    started.elapsed()
}

/// `IMPORT_LOG=info` (or `debug`): the import's stages and the worker's counters too.
fn verbose() -> bool {
    std::env::var("IMPORT_LOG").is_ok_and(|l| l == "info" || l == "debug")
}

fn per_second(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

async fn run(engine: Engine, rows: usize) {
    let db = backends::database(engine).await;
    let sql = backends::connect(&db, 10).await;
    let prefix = backends::redis_prefix().await;
    let (queue, label): (Arc<dyn JobQueue>, &str) = match engine {
        Engine::Postgres => (
            Arc::new(backends::redis_queue(&prefix).await),
            "PostgreSQL + Redis",
        ),
        _ => (sql.queue(), "SQLite + its SQL queue"),
    };
    let backends = backends::backends(sql.repository(), queue);
    let service = OnboardingService::new(
        backends.clone(),
        IngestConfig::default().with_max_backlog(None),
    );
    let tenant = TenantId::parse("import-bench").expect("tenant");
    let addr = onboarding_bench::http::serve_local(service.clone(), tenant.clone(), KEY).await;
    let worker = Worker::new(backends, Arc::new(NoopProcessor), worker_config()).start();
    let rss_before = peak_rss_mib();

    let started = Instant::now();
    let batch = upload(addr, rows).await;
    let uploaded = started.elapsed();
    println!(
        "import {label}: upload of {rows} rows stored in {:.1} s = {:.0} rows/s; processing…",
        uploaded.as_secs_f64(),
        per_second(rows, uploaded)
    );
    // The status counts every item of the batch (about 1.3 s for 1,000,000
    // on SQLite, 3 s on PostgreSQL on this machine): polled every 50 ms it
    // would keep a database core busy and slow the processing it waits for,
    // and polled every `rows / 100` ms it ended the run up to 10 s late. The
    // worker counts its completions in memory (after their commit): that
    // is read every 50 ms, and the status only once it has every row, to
    // confirm the batch is finished.
    {
        let batches = [batch];
        let finished = async {
            while worker.stats().completed < rows as u64 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            workload::wait_finished_every(&service, &tenant, &batches, Duration::from_millis(50))
                .await;
        };
        let finished = async {
            tokio::time::timeout(Duration::from_secs(600), finished)
                .await
                .expect("every row completed within 10 minutes");
        };
        tokio::pin!(finished);
        // With IMPORT_LOG=info, the worker's counters every 10 s: where its time
        // goes (dequeue, claim, finish) while the backlog drains.
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        let mut last = worker.stats();
        loop {
            tokio::select! {
                () = &mut finished => break,
                _ = tick.tick(), if verbose() => {
                    let now = worker.stats();
                    eprintln!(
                        "worker: {} completed (+{}/s over 10 s), {} claim misses, {} swept, {} backend errors; \
                         ms in the last 10 s: dequeue {}, claim {}, finish {}; load {}",
                        now.completed,
                        (now.completed - last.completed) / 10,
                        now.claim_misses,
                        now.swept,
                        now.backend_errors,
                        (now.dequeue_micros - last.dequeue_micros) / 1000,
                        (now.claim_micros - last.claim_micros) / 1000,
                        (now.finish_micros - last.finish_micros) / 1000,
                        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
                    );
                    last = now;
                }
            }
        }
    }
    let end_to_end = started.elapsed();
    let rss_peak = peak_rss_mib();
    let status = service.batch_status(&tenant, batch).await.expect("status");
    assert_eq!(
        status.counts.completed as usize, rows,
        "every row completed"
    );
    let stats = worker.shutdown().await.stats;
    if verbose() {
        eprintln!("worker at exit: {stats:?}");
    }

    let floor = match engine {
        Engine::Postgres => postgres_floor(db.url(), rows).await,
        _ => sqlite_floor(db.url(), rows).await,
    };
    let floor_name = if engine == Engine::Postgres {
        "COPY"
    } else {
        "INSERT floor"
    };
    println!(
        "import {label}: {rows} rows; upload stored in {:.1} s = {:.0} rows/s; end to end {:.1} s = {:.0} rows/s; \
         {floor_name} {:.2} s = {:.0} rows/s; upload / floor = {:.3}x; peak RSS {rss_peak} MiB (before the import {rss_before} MiB)",
        uploaded.as_secs_f64(),
        per_second(rows, uploaded),
        end_to_end.as_secs_f64(),
        per_second(rows, end_to_end),
        floor.as_secs_f64(),
        per_second(rows, floor),
        floor.as_secs_f64() / uploaded.as_secs_f64(),
    );
    sql.close().await;
    drop((db, prefix));
}

fn main() {
    tracing_subscriber::fmt()
        // IMPORT_LOG=info shows the import's own line, with the time spent per
        // stage (body, parse, stage, finish, enqueue); IMPORT_LOG=debug also
        // every SQL statement with its time (sqlx logs them at debug).
        .with_max_level(match std::env::var("IMPORT_LOG").as_deref() {
            Ok("debug") => tracing::Level::DEBUG,
            Ok("info") => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        })
        .with_writer(std::io::stderr)
        .init();
    let rows = env_usize("IMPORT_ROWS", 1_000_000).max(1);
    let engines = std::env::var("IMPORT_ENGINES").unwrap_or_else(|_| "postgres,sqlite".to_owned());
    let rt = backends::runtime();
    for name in engines.split(',') {
        let engine = match name.trim() {
            "postgres" => Engine::Postgres,
            "sqlite" => Engine::Sqlite,
            other => panic!("IMPORT_ENGINES: unknown engine {other:?} (postgres, sqlite)"),
        };
        rt.block_on(run(engine, rows));
    }
}
