//! Worker throughput with a no-op processor per backend combination: one
//! worker (in this process, `concurrency` = `BENCH_CONCURRENCY`, default
//! 256; `claim_batch` and flush ≤ 500 results / 5 ms, library defaults) is started idle, then
//! 10 submissions × 1000 organizations are made one after the other; timed
//! from the first submission until every item of the 10 batches is finished.
//! Validation happens before the clock starts; the worker's shutdown after
//! it stops.
//!
//! Combinations: memory; SQLite + SQL queue; PostgreSQL + SQL queue;
//! PostgreSQL + Redis; PostgreSQL + RabbitMQ; MariaDB + Redis.
//!
//! Run: `cargo bench --bench worker_backends` (filter with
//! criterion's usual argument, e.g. `-- postgres_redis`).

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use onboarding::model::TenantId;
use onboarding::{
    Backends, IngestConfig, JobQueue, NoopProcessor, OnboardingService, SubmitOptions, Worker,
};
use tokio::runtime::Runtime;

use backends::SqlEngines;
use onboarding::sql::SqlBackend;

const BATCHES: usize = 10;
const PER_BATCH: usize = 1000;
const ITEMS: u64 = (BATCHES * PER_BATCH) as u64;

use onboarding_bench::{backends, report, workload};
use workload::{concurrency, worker_config};

/// One timed run: submit 10 × 1000 to an idle worker, wait until all are finished.
async fn one_run(backends: &Backends, poll: Duration) -> Duration {
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let tenant = TenantId::parse("bench").expect("tenant");
    let requests: Vec<_> = (0..BATCHES)
        .map(|_| {
            service
                .validate(&workload::request(PER_BATCH, &workload::unique_tag()))
                .expect("valid")
        })
        .collect();
    let worker = Worker::new(backends.clone(), Arc::new(NoopProcessor), worker_config()).start();
    // Let the worker reach its first (empty) dequeue: it is idle when work arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let mut batches = Vec::with_capacity(BATCHES);
    for valid in requests {
        let accepted = service
            .submit_valid(&tenant, valid, SubmitOptions::default())
            .await
            .expect("accepted");
        batches.push(accepted.batch_id);
    }
    workload::wait_finished_every(&service, &tenant, &batches, poll).await;
    let elapsed = started.elapsed();
    let report = worker.shutdown().await;
    assert_eq!(report.stats.failed, 0, "no-op items do not fail");
    elapsed
}

fn bench(c: &mut Criterion, rt: &Runtime, id: &'static str, backends: Backends, poll: Duration) {
    let mut group = c.benchmark_group("worker_noop_10x1000");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += one_run(&backends, poll).await;
                }
                total
            });
            report::record(id, total, iters);
            total
        })
    });
    group.finish();
}

const FLOOR_TABLE: &str = "CREATE TABLE IF NOT EXISTS floor_items (
    id uuid PRIMARY KEY,
    status text NOT NULL,
    lease_token uuid,
    updated_at timestamptz NOT NULL DEFAULT now())";

/// The two-write floor on the same PostgreSQL: 10,000 rows of a plain table
/// (inserted before the clock starts), then per chunk of `claim_batch` ids
/// one conditional claim `UPDATE … WHERE id = ANY($1) AND status = 'pending'
/// RETURNING id` and one fenced finish `UPDATE … WHERE id = ANY($1) AND
/// lease_token = $2`, one connection, no queue, no processing.
fn bench_floor(c: &mut Criterion, rt: &Runtime, pg_url: &str) {
    use sqlx::Connection;
    let chunk = worker_config().claim_batch.max(1);
    let mut conn = rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(pg_url).await.expect("pg");
        sqlx::query(FLOOR_TABLE)
            .execute(&mut conn)
            .await
            .expect("floor table");
        conn
    });
    let mut group = c.benchmark_group("worker_noop_10x1000");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("floor_pg_two_writes", |b| {
        b.iter_custom(|iters| {
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<uuid::Uuid> = (0..ITEMS).map(|_| uuid::Uuid::now_v7()).collect();
                    sqlx::query("INSERT INTO floor_items (id, status) SELECT id, 'pending' FROM UNNEST($1::uuid[]) AS t(id)")
                        .bind(&ids)
                        .execute(&mut conn)
                        .await
                        .expect("floor rows");
                    let started = Instant::now();
                    for part in ids.chunks(chunk) {
                        let token = uuid::Uuid::new_v4();
                        let claimed: Vec<(uuid::Uuid,)> = sqlx::query_as(
                            "UPDATE floor_items SET status = 'processing', lease_token = $2, updated_at = now() \
                             WHERE id = ANY($1) AND status = 'pending' RETURNING id",
                        )
                        .bind(part)
                        .bind(token)
                        .fetch_all(&mut conn)
                        .await
                        .expect("floor claim");
                        let claimed: Vec<uuid::Uuid> = claimed.into_iter().map(|r| r.0).collect();
                        sqlx::query(
                            "UPDATE floor_items SET status = 'completed', lease_token = NULL, updated_at = now() \
                             WHERE id = ANY($1) AND lease_token = $2",
                        )
                        .bind(&claimed)
                        .bind(token)
                        .execute(&mut conn)
                        .await
                        .expect("floor finish");
                    }
                    total += started.elapsed();
                }
                total
            });
            report::record("floor_pg_two_writes", total, iters);
            total
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = backends::runtime();
    let (sql, prefix) =
        rt.block_on(async { (SqlEngines::create(10).await, backends::redis_prefix().await) });
    let (redis_q, amqp_q) = rt.block_on(async {
        (
            Arc::new(backends::redis_queue(&prefix).await),
            Arc::new(backends::amqp_queue(512).await),
        )
    });
    let with =
        |sql: &SqlBackend, queue: Arc<dyn JobQueue>| backends::backends(sql.repository(), queue);
    let fast = Duration::from_millis(2);
    let sql_poll = Duration::from_millis(10);

    bench(&mut c, &rt, "memory", Backends::memory(), fast);
    for (id, backends) in [
        ("sqlite_sqlqueue", backends::sql_backends(&sql.sqlite)),
        ("postgres_sqlqueue", backends::sql_backends(&sql.postgres)),
    ] {
        bench(&mut c, &rt, id, backends, sql_poll);
    }
    bench_floor(&mut c, &rt, &sql.postgres_url);
    for (id, backends) in [
        ("postgres_redis", with(&sql.postgres, redis_q.clone())),
        ("postgres_rabbitmq", with(&sql.postgres, amqp_q.clone())),
        ("mysql_redis", with(&sql.mysql, redis_q.clone())),
    ] {
        bench(&mut c, &rt, id, backends, sql_poll);
    }

    c.final_summary();

    rt.block_on(async {
        let _ = amqp_q.delete_queues().await;
        amqp_q.close().await;
        sql.close().await;
    });
    // The databases and the key prefix go at the end of the run.
    drop((sql, prefix));

    use report::Row;
    let memory = Some("memory");
    let floor = Some("floor_pg_two_writes");
    let rows = [
        ("memory", "memory", None),
        ("sqlite_sqlqueue", "SQLite + SQL queue", memory),
        ("postgres_sqlqueue", "PostgreSQL + SQL queue", floor),
        ("postgres_redis", "PostgreSQL + Redis", floor),
        ("postgres_rabbitmq", "PostgreSQL + RabbitMQ", floor),
        ("mysql_redis", "MariaDB + Redis", memory),
        (
            "floor_pg_two_writes",
            "floor: PG claim + finish UPDATEs",
            None,
        ),
    ]
    .map(|(id, label, baseline)| Row {
        id,
        label,
        elements: ITEMS,
        baseline,
    });
    report::write(
        "worker",
        &format!(
            "No-op worker: 10 x 1000 organizations submitted to an idle worker until all finished (concurrency {}, claim_batch {}, flush_max {})",
            concurrency(),
            worker_config().claim_batch,
            worker_config().flush_max
        ),
        "cargo bench --bench worker_backends",
        &rows,
    );
}
