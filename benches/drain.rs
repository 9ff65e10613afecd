//! Backlog drain: `DRAIN_ITEMS` organizations (default 1,000,000) are
//! submitted in 1000-organization requests while no worker runs, then
//! `DRAIN_WORKERS` workers (default 1, in this process, no-op processor)
//! drain the backlog. Reports the fill rate, the drain rate, throughput per
//! second, errors and the process's peak RSS, and checks at the end that
//! every item is completed (one count in the database).
//!
//! ```text
//! cargo bench --bench drain                        # PostgreSQL + Redis, 1,000,000
//! DRAIN_QUEUE=sql DRAIN_ITEMS=200000 cargo bench --bench drain
//! ```
//! `DRAIN_QUEUE`: `redis` (default) or `sql` (the PostgreSQL `jobs` table).
//! Worker settings: `BENCH_CONCURRENCY` (default 256), `BENCH_CLAIM_BATCH`,
//! `BENCH_FLUSH_MAX` (library defaults) as in `worker_backends`.

#![allow(clippy::print_stdout)] // a benchmark's report goes to stdout

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding::model::TenantId;
use onboarding::{IngestConfig, JobQueue, NoopProcessor, OnboardingService, SubmitOptions, Worker};
use sqlx::Connection;

use backends::Engine;

const PER_REQUEST: usize = 1000;
const SUBMITTERS: usize = 4;

use onboarding_bench::{backends, workload};
use workload::{env_usize, worker_config};

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    onboarding_core::testing::proc_status_kib(std::process::id(), "VmRSS:")
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    // Warnings (backend errors) go to stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let items = env_usize("DRAIN_ITEMS", 1_000_000).max(PER_REQUEST);
    let requests = items / PER_REQUEST;
    let items = requests * PER_REQUEST;
    let workers = env_usize("DRAIN_WORKERS", 1).max(1);
    let queue_kind = std::env::var("DRAIN_QUEUE").unwrap_or_else(|_| "redis".to_owned());
    let rt = backends::runtime();
    rt.block_on(async move {
        let db = backends::database(Engine::Postgres).await;
        let sql = backends::connect(&db, 10).await;
        let prefix = backends::redis_prefix().await;
        let queue: Arc<dyn JobQueue> = match queue_kind.as_str() {
            "sql" => sql.queue(),
            _ => Arc::new(backends::redis_queue(&prefix).await),
        };
        let backends = backends::backends(sql.repository(), queue.clone());
        let service = Arc::new(OnboardingService::new(
            backends.clone(),
            // The backlog is the point here: no limit.
            IngestConfig::default().with_max_backlog(None),
        ));
        let tenants: Vec<TenantId> = (0..4)
            .map(|t| TenantId::parse(format!("drain-{t}")).expect("tenant"))
            .collect();
        let mut peak_rss = rss_bytes();

        println!(
            "drain: {items} organizations on PostgreSQL + {queue_kind}, {workers} worker(s), {:?}",
            worker_config()
        );
        let fill_started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut submitters = Vec::new();
        for s in 0..SUBMITTERS {
            let (service, next, tenants) = (service.clone(), next.clone(), tenants.clone());
            submitters.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let valid = service
                        .validate(&workload::request(PER_REQUEST, &workload::unique_tag()))
                        .expect("valid");
                    service
                        .submit_valid(&tenants[(n + s) % tenants.len()], valid, SubmitOptions::default())
                        .await
                        .expect("accepted");
                }
            }));
        }
        for s in submitters {
            s.await.expect("submitter");
        }
        let fill = fill_started.elapsed();
        peak_rss = peak_rss.max(rss_bytes());
        println!(
            "fill: {items} in {:.1} s = {:.0} organizations/s ({SUBMITTERS} submitters); queue depth {:?}",
            fill.as_secs_f64(),
            items as f64 / fill.as_secs_f64(),
            queue.depth().await.ok()
        );

        if std::env::var_os("DRAIN_FILL_ONLY").is_some() {
            println!("DRAIN_FILL_ONLY: stopping here; the database {} is kept", db.keep());
            return;
        }
        let drain_started = Instant::now();
        let handles: Vec<_> = (0..workers)
            .map(|_| Worker::new(backends.clone(), Arc::new(NoopProcessor), worker_config()).start())
            .collect();
        let mut last = 0u64;
        let mut per_second = Vec::new();
        let mut tick = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tick += 1;
            let done: u64 = handles.iter().map(|h| h.stats().completed + h.stats().failed).sum();
            if tick.is_multiple_of(20) {
                per_second.push(done - last);
                last = done;
                peak_rss = peak_rss.max(rss_bytes());
            }
            if done >= items as u64 {
                break;
            }
            assert!(
                drain_started.elapsed() < Duration::from_secs(3600),
                "drain did not finish within an hour ({done} of {items})"
            );
        }
        let drain = drain_started.elapsed();
        let mut errors = 0;
        let mut failed = 0;
        for h in handles {
            let report = h.shutdown().await;
            let s = report.stats;
            errors += s.backend_errors;
            failed += s.failed;
            println!(
                "worker: claimed {} (misses {}), time in dequeue {:.1} s, claim {:.1} s, finish {:.1} s",
                s.claimed,
                s.claim_misses,
                s.dequeue_micros as f64 / 1e6,
                s.claim_micros as f64 / 1e6,
                s.finish_micros as f64 / 1e6
            );
        }
        let mut conn = sqlx::PgConnection::connect(db.url()).await.expect("connect");
        let (completed,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM batch_items WHERE status = 'completed'")
                .fetch_one(&mut conn)
                .await
                .expect("count");
        conn.close().await.ok();
        println!(
            "drain: {items} in {:.1} s = {:.0} organizations/s; completed in the database {completed}; failed {failed}; backend errors {errors}; peak RSS {:.0} MiB",
            drain.as_secs_f64(),
            items as f64 / drain.as_secs_f64(),
            peak_rss as f64 / 1048576.0
        );
        println!("per second: {per_second:?}");
        assert_eq!(completed, items as i64, "every item completed");
        sql.close().await;
        drop((db, prefix));
    });
}
