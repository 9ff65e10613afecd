//! Side by side with apalis 1.0 (`apalis-postgres`, `apalis-redis` from
//! crates.io) on the same servers, in the same run, the same no-op work for
//! the same number of jobs.
//!
//! Per contender, `ROUNDS` rounds of: 10,000 jobs queued with no worker
//! running (ours: 10 submissions × 1000 organizations; apalis: 10
//! `push_bulk` of 1000 jobs), then one worker is started and timed until
//! the store says all 10,000 are done (ours: every item of the 10 batches
//! finished; apalis: 10,000 rows `status = 'Done'` / 10,000 ids in the
//! `done` set). Reported: the median drain time and jobs/s, and the ratio
//! against ours on the same store. Then, once per contender, the latency
//! to first work: an idle worker (started 1 s before), one job pushed,
//! time until the processor / handler runs (capped at 40 s).
//!
//! Settings:
//! - ours: `WorkerConfig` default except `concurrency` 256 (claims of 100,
//!   flushes of ≤ 100 results / 5 ms).
//! - apalis default: `PostgresStorage::new(&pool)` / `RedisStorage::new(conn)`
//!   with `Config::default()` (batch_size 10, heartbeat 30 s, lock_tasks,
//!   persist_results), `WorkerBuilder::new(..).backend(..).build(handler)`
//!   (no concurrency limit).
//! - apalis best: the same with `batch_size(APALIS_BEST_BATCH)` (default
//!   500), and for PostgreSQL `.with_pubsub()` (LISTEN/NOTIFY wake-ups),
//!   for Redis `heartbeat_interval(200 ms)` + `missed_heartbeats(50)` (an
//!   idle worker fetches on its heartbeat).
//!
//! apalis-postgres drains a pre-loaded backlog; apalis-redis cannot (see
//! `apalis_redis_drain`), so its jobs are pushed to a running worker.
//!
//! Run: `cargo bench --bench apalis` (env `ROUNDS`, default 3;
//! `SKIP_LATENCY=1` skips the latency probes).

#![allow(missing_docs, clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use onboarding::model::TenantId;
use onboarding::{
    Backends, IngestConfig, JobQueue, OnboardingService, ProcessError, Processor, SubmitOptions,
    WorkItem, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};

use backends::Engine;

const BATCHES: usize = 10;
const PER_BATCH: usize = 1000;
const JOBS: u64 = (BATCHES * PER_BATCH) as u64;
const LATENCY_CAP: Duration = Duration::from_secs(40);
const DRAIN_CAP: Duration = Duration::from_secs(120);

use onboarding_bench::{backends, report, workload};
use onboarding_core::testing::eventually_every;
use workload::env_usize;

/// The job apalis carries: what our queue message carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NoopJob {
    item_id: String,
    tenant: String,
}

fn jobs(n: usize) -> Vec<NoopJob> {
    (0..n)
        .map(|_| NoopJob {
            item_id: uuid::Uuid::now_v7().to_string(),
            tenant: "bench".into(),
        })
        .collect()
}

/// Handler runs (apalis) and the first time one ran.
static RUNS: AtomicU64 = AtomicU64::new(0);
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);

fn mark_run() {
    if RUNS.fetch_add(1, Ordering::Relaxed) == 0 {
        if let Ok(mut f) = FIRST.lock() {
            f.get_or_insert_with(Instant::now);
        }
    }
}

fn reset_runs() {
    RUNS.store(0, Ordering::Relaxed);
    if let Ok(mut f) = FIRST.lock() {
        *f = None;
    }
}

fn first_run() -> Option<Instant> {
    FIRST.lock().ok().and_then(|f| *f)
}

async fn noop(_job: NoopJob) -> Result<(), BoxDynError> {
    mark_run();
    Ok(())
}

/// Our processor: a no-op that records when it first ran.
struct Marking;

#[async_trait::async_trait]
impl Processor for Marking {
    async fn process(&self, _item: &WorkItem) -> Result<(), ProcessError> {
        mark_run();
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Polls `done` every 5 ms until it reaches `n` (10 min cap).
async fn wait_done<F, Fut>(n: u64, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let every = Duration::from_millis(5);
    eventually_every("all done", Duration::from_secs(600), every, || {
        let reached = done();
        async move { (reached.await >= n).then_some(()) }
    })
    .await;
}

// ---------------------------------------------------------------- ours

async fn ours_drain(backends: &Backends) -> Duration {
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let tenant = TenantId::parse("bench").expect("tenant");
    let batches = workload::submit_batches(&service, &tenant, BATCHES, PER_BATCH).await;
    let started = Instant::now();
    let worker = Worker::new(
        backends.clone(),
        Arc::new(Marking),
        WorkerConfig::default().with_concurrency(256),
    )
    .start();
    workload::wait_finished_every(&service, &tenant, &batches, Duration::from_millis(5)).await;
    let elapsed = started.elapsed();
    worker.shutdown().await;
    elapsed
}

async fn ours_latency(backends: &Backends) -> Option<Duration> {
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let tenant = TenantId::parse("bench").expect("tenant");
    let worker = Worker::new(
        backends.clone(),
        Arc::new(Marking),
        WorkerConfig::default().with_concurrency(256),
    )
    .start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    reset_runs();
    service
        .submit(
            &tenant,
            &workload::request(1, &workload::unique_tag()),
            SubmitOptions::default(),
        )
        .await
        .expect("accepted");
    let accepted = Instant::now();
    let latency = poll_first(accepted).await;
    worker.shutdown().await;
    latency
}

async fn poll_first(since: Instant) -> Option<Duration> {
    while since.elapsed() < LATENCY_CAP {
        if let Some(t) = first_run() {
            return Some(t.saturating_duration_since(since));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

// ---------------------------------------------------------------- apalis

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setting {
    Default,
    Best,
}

fn best_batch() -> usize {
    env_usize("APALIS_BEST_BATCH", 500)
}

async fn pg_done(pool: &sqlx09::PgPool, queue: &str) -> u64 {
    sqlx09::query_scalar::<_, i64>(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
    )
    .bind(queue)
    .fetch_one(pool)
    .await
    .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn pg_config(setting: Setting, queue: &str) -> apalis_postgres::Config {
    let c = apalis_postgres::Config::default().queue(queue);
    match setting {
        Setting::Default => c,
        Setting::Best => c.batch_size(best_batch()),
    }
}

/// Runs an apalis worker on `backend` until `until` resolves (or the worker
/// ends on its own, e.g. with an error), then stops it. Evaluates to
/// `Some(output of until)`, or `None` when the worker ended first or the
/// cap passed; the reason is printed.
macro_rules! run_apalis_worker {
    ($backend:expr, $name:expr, $until:expr) => {{
        let ctx = WorkerContext::new($name);
        let worker = WorkerBuilder::new(&ctx).backend($backend).build(noop);
        let mut task = tokio::spawn(async move { worker.run().await });
        let mut ended = false;
        let out = tokio::select! {
            out = tokio::time::timeout(DRAIN_CAP, $until) => match out {
                Ok(v) => Some(v),
                Err(_) => {
                    println!("  apalis worker {}: not done within {:?} ({} handler runs)", $name, DRAIN_CAP, RUNS.load(Ordering::Relaxed));
                    None
                }
            },
            result = &mut task => {
                ended = true;
                println!("  apalis worker {} ended on its own: {:?}", $name, result);
                None
            }
        };
        let _ = ctx.stop();
        if !ended {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        out
    }};
}

async fn apalis_pg_drain(
    pool: &sqlx09::PgPool,
    setting: Setting,
    round: usize,
) -> Option<Duration> {
    let queue = format!(
        "bench-{setting:?}-{round}-{}",
        uuid::Uuid::new_v4().simple()
    );
    let mut storage = apalis_postgres::PostgresStorage::<NoopJob>::new(pool)
        .with_config(pg_config(setting, &queue));
    for _ in 0..BATCHES {
        storage.push_bulk(jobs(PER_BATCH)).await.expect("push");
    }
    let started = Instant::now();
    let until = wait_done(JOBS, || pg_done(pool, &queue));
    reset_runs();
    let done = match setting {
        Setting::Default => run_apalis_worker!(storage, &queue, until),
        Setting::Best => run_apalis_worker!(storage.with_pubsub(), &queue, until),
    };
    done.map(|()| started.elapsed())
}

async fn apalis_pg_latency(pool: &sqlx09::PgPool, setting: Setting) -> Option<Duration> {
    let queue = format!(
        "bench-latency-{setting:?}-{}",
        uuid::Uuid::new_v4().simple()
    );
    let storage = apalis_postgres::PostgresStorage::<NoopJob>::new(pool)
        .with_config(pg_config(setting, &queue));
    let mut pusher = storage.clone();
    let probe = async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        reset_runs();
        pusher.push_bulk(jobs(1)).await.expect("push");
        poll_first(Instant::now()).await
    };
    match setting {
        Setting::Default => run_apalis_worker!(storage, &queue, probe),
        Setting::Best => run_apalis_worker!(storage.with_pubsub(), &queue, probe),
    }
    .flatten()
}

fn redis_config(setting: Setting, queue: &str) -> apalis_redis::Config {
    let c = apalis_redis::Config::default().queue(queue);
    match setting {
        Setting::Default => c,
        // A short heartbeat so an idle worker fetches soon (it fetches on
        // its heartbeat), and enough missed heartbeats that a busy worker is
        // not declared dead (with 50 ms x 10 it was: "worker not registered").
        Setting::Best => c
            .batch_size(best_batch())
            .heartbeat_interval(Duration::from_millis(200))
            .missed_heartbeats(50),
    }
}

async fn redis_done(conn: &mut redis::aio::MultiplexedConnection, queue: &str) -> u64 {
    let key = format!("{queue}:done");
    if let Ok(n) = redis::cmd("SCARD").arg(&key).query_async::<u64>(conn).await {
        return n;
    }
    redis::cmd("ZCARD")
        .arg(&key)
        .query_async::<u64>(conn)
        .await
        .unwrap_or(0)
}

/// apalis-redis 1.0 and a 10,000-job burst: `push_bulk` puts jobs in its
/// `scheduled` ZSET and `fetch_next.lua` (line 35) promotes every due one
/// with a single `unpack`, which fails with "too many results to unpack"
/// once ~8000 are due; the worker then ends with that error. With the
/// default 30 s heartbeat (an idle worker fetches only then) a burst of
/// 10 × 1000 pushed to a running, idle worker hits it; pre-loading hits it
/// too. Here the worker runs first and the 10 × 1000 are pushed to it at
/// once (like our `worker_backends` bench); timed from the first push until
/// the `done` set holds all 10,000. With the best settings (heartbeat
/// 200 ms) each fetch promotes only what arrived since the last one.
async fn apalis_redis_drain(prefix: &str, setting: Setting, round: usize) -> Option<Duration> {
    let queue = format!("{prefix}:apalis-{setting:?}-{round}");
    let conn = apalis_redis::connect(backends::redis_url())
        .await
        .expect("redis");
    let storage =
        apalis_redis::RedisStorage::<NoopJob>::new(conn).with_config(redis_config(setting, &queue));
    let mut pusher = storage.clone();
    let probe = redis::Client::open(backends::redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let payload: Vec<Vec<NoopJob>> = (0..BATCHES).map(|_| jobs(PER_BATCH)).collect();
    let q = queue.clone();
    let until = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        for batch in payload {
            pusher.push_bulk(batch).await.expect("push");
        }
        wait_done(JOBS, || {
            let mut c = probe.clone();
            let q = q.clone();
            async move { redis_done(&mut c, &q).await }
        })
        .await;
        started.elapsed()
    };
    reset_runs();
    run_apalis_worker!(storage, &queue, until)
}

async fn apalis_redis_latency(prefix: &str, setting: Setting) -> Option<Duration> {
    let queue = format!("{prefix}:apalis-latency-{setting:?}");
    let conn = apalis_redis::connect(backends::redis_url())
        .await
        .expect("redis");
    let storage =
        apalis_redis::RedisStorage::<NoopJob>::new(conn).with_config(redis_config(setting, &queue));
    let mut pusher = storage.clone();
    let probe = async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        reset_runs();
        pusher.push_bulk(jobs(1)).await.expect("push");
        poll_first(Instant::now()).await
    };
    run_apalis_worker!(storage, &queue, probe).flatten()
}

// ---------------------------------------------------------------- main

struct Contender {
    id: &'static str,
    label: String,
    drains: Vec<f64>,
    latency: Option<Option<Duration>>,
}

fn main() {
    let rounds = env_usize("ROUNDS", 3).max(1);
    let skip_latency = std::env::var("SKIP_LATENCY").is_ok_and(|v| v == "1");
    let rt = backends::runtime();
    let prefix = rt.block_on(backends::redis_prefix());
    let mut results: Vec<Contender> = Vec::new();

    rt.block_on(async {
        let ours_db = backends::database(Engine::Postgres).await;
        let apalis_db = backends::database(Engine::Postgres).await;
        let sql = backends::connect(&ours_db, 10).await;
        let redis_q: Arc<dyn JobQueue> = Arc::new(backends::redis_queue(&prefix).await);
        let pool = sqlx09::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(apalis_db.url())
            .await
            .expect("apalis pool");
        apalis_postgres::PostgresStorage::<()>::setup(&pool)
            .await
            .expect("apalis migrations");

        let pg_redis = backends::backends(sql.repository(), redis_q.clone());
        let pg_sql = backends::backends(sql.repository(), sql.queue());

        let mut rows: Vec<Contender> = vec![
            Contender {
                id: "ours_pg_redis",
                label: "ours PostgreSQL + Redis".into(),
                drains: vec![],
                latency: None,
            },
            Contender {
                id: "apalis_redis_default",
                label: "apalis-redis default".into(),
                drains: vec![],
                latency: None,
            },
            Contender {
                id: "apalis_redis_best",
                label: format!("apalis-redis batch {} + heartbeat 200 ms", best_batch()),
                drains: vec![],
                latency: None,
            },
            Contender {
                id: "ours_pg_sqlqueue",
                label: "ours PostgreSQL + SQL queue".into(),
                drains: vec![],
                latency: None,
            },
            Contender {
                id: "apalis_pg_default",
                label: "apalis-postgres default".into(),
                drains: vec![],
                latency: None,
            },
            Contender {
                id: "apalis_pg_best",
                label: format!("apalis-postgres batch {} + pubsub", best_batch()),
                drains: vec![],
                latency: None,
            },
        ];
        if let Ok(only) = std::env::var("APALIS_ROWS") {
            rows.retain(|r| only.split(',').any(|o| o == r.id));
        }
        // Interleave contenders round by round so drift on the shared machine hits all alike.
        for round in 0..rounds {
            for row in rows.iter_mut() {
                let d = match row.id {
                    "ours_pg_redis" => Some(ours_drain(&pg_redis).await),
                    "ours_pg_sqlqueue" => Some(ours_drain(&pg_sql).await),
                    "apalis_pg_default" => apalis_pg_drain(&pool, Setting::Default, round).await,
                    "apalis_pg_best" => apalis_pg_drain(&pool, Setting::Best, round).await,
                    "apalis_redis_default" => {
                        apalis_redis_drain(prefix.prefix(), Setting::Default, round).await
                    }
                    _ => apalis_redis_drain(prefix.prefix(), Setting::Best, round).await,
                };
                match d {
                    Some(d) => {
                        println!(
                            "round {round} {:<24} {:>8.3} s  {:>8.0} jobs/s",
                            row.id,
                            d.as_secs_f64(),
                            JOBS as f64 / d.as_secs_f64()
                        );
                        row.drains.push(d.as_secs_f64());
                    }
                    None => println!("round {round} {:<24} did not finish", row.id),
                }
            }
        }
        if !skip_latency {
            for row in rows.iter_mut() {
                let l = match row.id {
                    "ours_pg_redis" => ours_latency(&pg_redis).await,
                    "ours_pg_sqlqueue" => ours_latency(&pg_sql).await,
                    "apalis_pg_default" => apalis_pg_latency(&pool, Setting::Default).await,
                    "apalis_pg_best" => apalis_pg_latency(&pool, Setting::Best).await,
                    "apalis_redis_default" => {
                        apalis_redis_latency(prefix.prefix(), Setting::Default).await
                    }
                    _ => apalis_redis_latency(prefix.prefix(), Setting::Best).await,
                };
                println!("latency {:<24} {:?}", row.id, l);
                row.latency = Some(l);
            }
        }
        results = rows;

        pool.close().await;
        sql.close().await;
        // Dropped here: the databases go at the end of the run.
        drop((ours_db, apalis_db));
    });
    drop(prefix);

    // Table: ratios against ours on the same store, same run.
    let mut md = String::from(
        "### apalis 1.0 side by side (10,000 no-op jobs queued, then drained by one worker)\n\n",
    );
    md.push_str(&format!("`ROUNDS={rounds} cargo bench --bench apalis`\n\n"));
    md.push_str("| contender | median drain | jobs/s | its time / ours (same store) | latency to first work |\n|---|---:|---:|---:|---:|\n");
    let mut bars = Vec::new();
    let ours_of = |id: &str| {
        if id.contains("redis") {
            "ours_pg_redis"
        } else {
            "ours_pg_sqlqueue"
        }
    };
    let ours_median = |id: &str| {
        results
            .iter()
            .find(|r| r.id == ours_of(id))
            .map(|r| median(r.drains.clone()))
    };
    for r in &results {
        let m = median(r.drains.clone());
        let ratio = ours_median(r.id).map_or("—".into(), |o| format!("{:.2}x", m / o));
        let latency = match r.latency {
            None => "not measured".to_owned(),
            Some(None) => format!("> {} s (none within the cap)", LATENCY_CAP.as_secs()),
            Some(Some(l)) => format!("{:.1} ms", l.as_secs_f64() * 1e3),
        };
        md.push_str(&format!(
            "| {} | {:.3} s | {:.0} | {} | {} |\n",
            r.label,
            m,
            JOBS as f64 / m,
            ratio,
            latency
        ));
        bars.push((r.label.clone(), JOBS as f64 / m));
    }
    println!("\n{md}");
    // The repository root's docs/bench (this package is benches/).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench");
    let _ = std::fs::create_dir_all(&dir);
    let out = std::env::var("APALIS_OUT").unwrap_or_else(|_| "apalis".to_owned());
    let _ = std::fs::write(dir.join(format!("{out}.md")), &md);
    let _ = std::fs::write(
        dir.join(format!("{out}.svg")),
        report::bar_chart(
            "No-op drain of 10,000 queued jobs, one worker: ours vs apalis 1.0",
            "jobs per second (higher is better)",
            &bars,
        ),
    );
}
