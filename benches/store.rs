//! Storing one 1000-organization submission per backend, and in the same
//! run the raw floor on the same servers: one set-based upsert of the same
//! 1000 rows into a plain PostgreSQL table and one pipelined Redis push of
//! 1000 messages.
//!
//! Timed: `OnboardingService::submit_valid` (one transaction: batch + 1000
//! items + 1000 upserts, then one enqueue of 1000 jobs). Not timed: building
//! and validating the request (fresh domains every iteration, so every
//! iteration inserts 1000 new organizations).
//!
//! Then in turn (not a criterion benchmark: it runs whatever the filter):
//! `STORE_PAIRED_ROUNDS` (default 100) rounds of one `submit_valid` on
//! PostgreSQL + Redis followed by the floor. Reported: the median of each
//! (`paired_*` rows), and below the table the median of the rounds' own
//! ratios with its interquartile range. The criterion groups above measure the floor and the
//! submission seconds apart, and on this noisy machine their ratio moved
//! between 1.6x and 2.4x from run to run; side by side, both see the same
//! moment of the machine.
//!
//! Then over HTTP (not a criterion benchmark: it runs whatever the filter):
//! one client posts `STORE_HTTP_REQUESTS` (default 40) submissions of 1000
//! fresh organizations, one after the other on one keep-alive connection,
//! to a server in this process (PostgreSQL + Redis, no worker, the default
//! ingest settings); after each 202 the same floor runs once. Reported: the
//! median of the 202 (parsing, validation, store, enqueue, events) against
//! the median of the floor (`http_*` rows), and the requests' own ratios as
//! in the paired phase. After each floor the same body is posted to the dry
//! run (`/api/v1/bulk-onboard/validate`): HTTP, parsing and validation
//! without the store (`http_dry_run`; an upper bound, as its answer also
//! lists the 1000 normalized organizations).
//!
//! Run: `cargo bench --bench store`. Needs PostgreSQL,
//! MariaDB and Redis (see `benches/backends.rs` for the URLs); it creates its
//! own databases and key prefix and removes them at the end.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use onboarding::model::TenantId;
use onboarding::validate::ValidRequest;
use onboarding::{Backends, IngestConfig, OnboardingService, SubmitOptions};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use backends::SqlEngines;
use onboarding::sql::SqlBackend;
use onboarding::JobQueue;
use onboarding_bench::{backends, report, workload};
use std::sync::Arc;

const N: usize = 1000;

/// `n` fresh, validated requests (not timed).
fn fresh(service: &OnboardingService, n: u64) -> Vec<ValidRequest> {
    (0..n)
        .map(|_| {
            service
                .validate(&workload::request(N, &workload::unique_tag()))
                .expect("valid")
        })
        .collect()
}

fn bench_submit(
    c: &mut Criterion,
    rt: &Runtime,
    id: &'static str,
    backends: Backends,
) -> OnboardingService {
    // Nothing drains the queue here: the backlog limit would refuse after 1,000,000.
    let service = OnboardingService::new(backends, IngestConfig::default().with_max_backlog(None));
    let tenant = TenantId::parse("bench").expect("tenant");
    let mut group = c.benchmark_group("store_1000");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let requests = fresh(&service, iters);
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for valid in requests {
                    let started = Instant::now();
                    service
                        .submit_valid(&tenant, valid, SubmitOptions::default())
                        .await
                        .expect("stored");
                    total += started.elapsed();
                }
                total
            });
            report::record(id, total, iters);
            total
        })
    });
    group.finish();
    service
}

/// The rows of one request as the three arrays of the floor's `UNNEST`.
fn columns(valid: &ValidRequest) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut domains = Vec::with_capacity(N);
    let mut names = Vec::with_capacity(N);
    let mut emails = Vec::with_capacity(N);
    for (_, org) in &valid.organizations {
        domains.push(org.domain.as_str().to_owned());
        names.push(org.name.clone());
        emails.push(org.contact_email.clone());
    }
    (domains, names, emails)
}

const FLOOR_TABLE: &str = "CREATE TABLE IF NOT EXISTS floor_organizations (
    domain text PRIMARY KEY,
    name text NOT NULL,
    contact_email text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now())";

const FLOOR_UPSERT: &str = "INSERT INTO floor_organizations (domain, name, contact_email)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
    ON CONFLICT (domain) DO UPDATE
    SET name = EXCLUDED.name, contact_email = EXCLUDED.contact_email, updated_at = now()";

async fn floor_upsert(
    conn: &mut sqlx::PgConnection,
    cols: &(Vec<String>, Vec<String>, Vec<String>),
) {
    sqlx::query(FLOOR_UPSERT)
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&cols.2)
        .execute(&mut *conn)
        .await
        .expect("floor upsert");
}

/// 1000 messages shaped like the Redis queue's entries (`tenant {json}`).
fn messages() -> Vec<String> {
    (0..N)
        .map(|_| {
            format!(
                r#"bench {{"id":"{}","job":{{"item_id":"{}","tenant":"bench","not_before":null}}}}"#,
                uuid::Uuid::new_v4(),
                uuid::Uuid::now_v7()
            )
        })
        .collect()
}

async fn floor_push(conn: &mut redis::aio::MultiplexedConnection, key: &str, msgs: &[String]) {
    let mut pipe = redis::pipe();
    for m in msgs {
        pipe.rpush(key, m).ignore();
    }
    pipe.query_async::<()>(conn).await.expect("floor push");
}

fn bench_floor(
    c: &mut Criterion,
    rt: &Runtime,
    pg_url: &str,
    redis_key: &str,
    probe: &OnboardingService,
) {
    let mut pg = rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(pg_url).await.expect("pg");
        sqlx::query(FLOOR_TABLE)
            .execute(&mut conn)
            .await
            .expect("floor table");
        conn
    });
    let mut redis_conn = rt.block_on(async {
        redis::Client::open(backends::redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    });
    let mut group = c.benchmark_group("store_1000");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("floor_pg_unnest_upsert", |b| {
        b.iter_custom(|iters| {
            let cols: Vec<_> = fresh(probe, iters).iter().map(columns).collect();
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for c in &cols {
                    let started = Instant::now();
                    floor_upsert(&mut pg, c).await;
                    total += started.elapsed();
                }
                total
            });
            report::record("floor_pg_unnest_upsert", total, iters);
            total
        })
    });
    group.bench_function("floor_redis_pipelined_push", |b| {
        b.iter_custom(|iters| {
            let msgs: Vec<_> = (0..iters).map(|_| messages()).collect();
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for m in &msgs {
                    let started = Instant::now();
                    floor_push(&mut redis_conn, redis_key, m).await;
                    total += started.elapsed();
                }
                let _: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(redis_key)
                    .query_async(&mut redis_conn)
                    .await;
                total
            });
            report::record("floor_redis_pipelined_push", total, iters);
            total
        })
    });
    group.bench_function("floor_pg_upsert_then_redis_push", |b| {
        b.iter_custom(|iters| {
            let cols: Vec<_> = fresh(probe, iters).iter().map(columns).collect();
            let msgs: Vec<_> = (0..iters).map(|_| messages()).collect();
            let total = rt.block_on(async {
                let mut total = Duration::ZERO;
                for (c, m) in cols.iter().zip(&msgs) {
                    let started = Instant::now();
                    floor_upsert(&mut pg, c).await;
                    floor_push(&mut redis_conn, redis_key, m).await;
                    total += started.elapsed();
                }
                let _: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(redis_key)
                    .query_async(&mut redis_conn)
                    .await;
                total
            });
            report::record("floor_pg_upsert_then_redis_push", total, iters);
            total
        })
    });
    group.finish();
}

/// The floor's connections, for the phases that run it after each submission.
struct Floor {
    pg: sqlx::PgConnection,
    redis: redis::aio::MultiplexedConnection,
    redis_key: String,
}

impl Floor {
    async fn connect(pg_url: &str, redis_key: &str) -> Self {
        Self {
            pg: sqlx::PgConnection::connect(pg_url).await.expect("pg"),
            redis: redis::Client::open(backends::redis_url())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis"),
            redis_key: redis_key.to_owned(),
        }
    }

    /// One floor of fresh rows (made before the clock starts); its time.
    async fn run(&mut self, probe: &OnboardingService) -> Duration {
        let cols = columns(&fresh(probe, 1)[0]);
        let msgs = messages();
        let started = Instant::now();
        floor_upsert(&mut self.pg, &cols).await;
        floor_push(&mut self.redis, &self.redis_key, &msgs).await;
        started.elapsed()
    }

    /// Removes the messages the floor pushed.
    async fn clear(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(&self.redis_key)
            .query_async(&mut self.redis)
            .await;
    }
}

/// The paired phase (see the module's documentation).
fn bench_paired(
    rt: &Runtime,
    backends: Backends,
    pg_url: &str,
    redis_key: &str,
    probe: &OnboardingService,
) {
    let rounds = workload::env_usize("STORE_PAIRED_ROUNDS", 100);
    if rounds == 0 {
        return;
    }
    // Nothing drains the queue here: the backlog limit would refuse after 1,000,000.
    let service = OnboardingService::new(backends, IngestConfig::default().with_max_backlog(None));
    let tenant = TenantId::parse("bench").expect("tenant");
    rt.block_on(async {
        let mut floor = Floor::connect(pg_url, redis_key).await;
        for round in 0..rounds + 3 {
            // The first three warm connections, statements and caches.
            let record = |id: &str, took: Duration| {
                if round >= 3 {
                    report::record(id, took, 1);
                }
            };
            let valid = fresh(&service, 1).remove(0);
            let started = Instant::now();
            service
                .submit_valid(&tenant, valid, SubmitOptions::default())
                .await
                .expect("stored");
            record("paired_postgres_redis", started.elapsed());

            record("paired_floor", floor.run(probe).await);
        }
        floor.clear().await;
    });
}

/// Posts `body` on the keep-alive `conn`; answers the status and the body
/// once the whole response is read.
async fn post(
    conn: &mut BufReader<TcpStream>,
    path: &str,
    key: &str,
    body: &[u8],
) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // One write of head and body, as an HTTP client library sends it.
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    conn.get_mut().write_all(&request).await.expect("send");
    let mut line = String::new();
    conn.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status");
    let mut length = 0;
    loop {
        line.clear();
        conn.read_line(&mut line).await.expect("header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content length");
            }
        }
    }
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer).await.expect("body");
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// Posts `body` and checks that it was accepted.
async fn post_accepted(conn: &mut BufReader<TcpStream>, key: &str, body: &[u8]) {
    let (status, answer) = post(conn, "/api/v1/bulk-onboard", key, body).await;
    assert_eq!(status, 202, "{answer}");
}

/// The HTTP phase (see the module's documentation).
fn bench_http(
    rt: &Runtime,
    backends: Backends,
    pg_url: &str,
    redis_key: &str,
    probe: &OnboardingService,
) {
    let requests = workload::env_usize("STORE_HTTP_REQUESTS", 40);
    if requests == 0 {
        return;
    }
    const KEY: &str = "store-bench-key-0123456789";
    rt.block_on(async {
        let service = OnboardingService::new(backends, IngestConfig::default());
        let tenant = TenantId::parse("bench").expect("tenant");
        let addr = onboarding_bench::http::serve_local(service, tenant, KEY).await;
        let mut floor = Floor::connect(pg_url, redis_key).await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        // As the server does (`serve`): no Nagle delay on the request's
        // last segment, which would time the client's TCP stack.
        stream.set_nodelay(true).expect("nodelay");
        let mut conn = BufReader::new(stream);
        // Warm-up: connections, prepared statements, caches.
        for _ in 0..3 {
            let body =
                serde_json::to_vec(&workload::json_body(N, &workload::unique_tag())).expect("json");
            post_accepted(&mut conn, KEY, &body).await;
        }
        for _ in 0..requests {
            let body =
                serde_json::to_vec(&workload::json_body(N, &workload::unique_tag())).expect("json");
            let started = Instant::now();
            post_accepted(&mut conn, KEY, &body).await;
            report::record("http_postgres_redis", started.elapsed(), 1);

            report::record("http_floor", floor.run(probe).await, 1);

            // The same body's dry run: what the 202 spends outside the
            // store (HTTP, parsing, validation).
            let started = Instant::now();
            let (status, answer) =
                post(&mut conn, "/api/v1/bulk-onboard/validate", KEY, &body).await;
            assert_eq!(status, 200, "{answer}");
            report::record("http_dry_run", started.elapsed(), 1);
        }
        floor.clear().await;
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = backends::runtime();
    let (sql, prefix) =
        rt.block_on(async { (SqlEngines::create(10).await, backends::redis_prefix().await) });
    let redis_q: Arc<dyn JobQueue> = Arc::new(rt.block_on(backends::redis_queue(&prefix)));
    let with_redis = |sql: &SqlBackend| backends::backends(sql.repository(), redis_q.clone());

    let memory = bench_submit(&mut c, &rt, "memory", Backends::memory());
    for (id, backends) in [
        ("sqlite_sqlqueue", backends::sql_backends(&sql.sqlite)),
        ("mysql_sqlqueue", backends::sql_backends(&sql.mysql)),
        ("mysql_redis", with_redis(&sql.mysql)),
        ("postgres_sqlqueue", backends::sql_backends(&sql.postgres)),
    ] {
        bench_submit(&mut c, &rt, id, backends);
    }
    // The floor right before and right after the number it is compared with.
    let floor_key = format!("{}:floor", prefix.prefix());
    bench_floor(&mut c, &rt, &sql.postgres_url, &floor_key, &memory);
    bench_submit(&mut c, &rt, "postgres_redis", with_redis(&sql.postgres));

    c.final_summary();
    bench_paired(
        &rt,
        with_redis(&sql.postgres),
        &sql.postgres_url,
        &floor_key,
        &memory,
    );
    // A queue of its own: the criterion runs above leave ~1,000,000 jobs
    // (no worker drains them), past the default backlog limit the HTTP
    // server checks (it would answer 503 `overloaded`).
    let http_prefix = rt.block_on(backends::redis_prefix());
    let http_q: Arc<dyn JobQueue> = Arc::new(rt.block_on(backends::redis_queue(&http_prefix)));
    bench_http(
        &rt,
        backends::backends(sql.postgres.repository(), http_q),
        &sql.postgres_url,
        &floor_key,
        &memory,
    );

    rt.block_on(sql.close());
    // The databases and the key prefixes go at the end of the run.
    drop((sql, prefix, http_prefix));

    use report::Row;
    let floor = Some("floor_pg_upsert_then_redis_push");
    report::write(
        "store",
        "Storing one 1000-organization submission (submit_valid: transaction + enqueue)",
        "cargo bench --bench store",
        &[
            Row {
                id: "memory",
                label: "memory",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "sqlite_sqlqueue",
                label: "SQLite + SQL queue",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "mysql_sqlqueue",
                label: "MariaDB + SQL queue",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "mysql_redis",
                label: "MariaDB + Redis",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "postgres_sqlqueue",
                label: "PostgreSQL + SQL queue",
                elements: N as u64,
                baseline: floor,
            },
            Row {
                id: "postgres_redis",
                label: "PostgreSQL + Redis",
                elements: N as u64,
                baseline: floor,
            },
            Row {
                id: "floor_pg_unnest_upsert",
                label: "floor: PG UNNEST upsert",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "floor_redis_pipelined_push",
                label: "floor: Redis pipelined push",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "floor_pg_upsert_then_redis_push",
                label: "floor: PG upsert + Redis push",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "paired_postgres_redis",
                label: "in turn: PostgreSQL + Redis (p50)",
                elements: N as u64,
                baseline: Some("paired_floor"),
            },
            Row {
                id: "paired_floor",
                label: "in turn: the floor after each submission (p50)",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "http_postgres_redis",
                label: "over HTTP: PostgreSQL + Redis, the 202 (p50)",
                elements: N as u64,
                baseline: Some("http_floor"),
            },
            Row {
                id: "http_floor",
                label: "over HTTP: the floor after each request (p50)",
                elements: N as u64,
                baseline: None,
            },
            Row {
                id: "http_dry_run",
                label: "over HTTP: the same body's dry run, `/validate` (p50)",
                elements: N as u64,
                baseline: Some("http_floor"),
            },
        ],
    );
    report::print_paired_ratios(&[
        ("paired_postgres_redis", "paired_floor"),
        ("http_postgres_redis", "http_floor"),
    ]);
}
