//! [`Deployment`]: one scenario's database, queue prefix, recorder, server and workers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// Which queue the processes use.
#[derive(Debug, Clone)]
pub(crate) enum QueueKind {
    /// The shared Redis (or another URL), under a fresh key prefix.
    Redis(String),
    /// RabbitMQ under a fresh queue prefix.
    Amqp,
    /// The SQL table queue.
    Database,
}

/// Timings given to every process (ms).
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub(crate) lease_ms: u64,
    pub(crate) sweep_interval_ms: u64,
    pub(crate) stale_after_ms: u64,
    pub(crate) retry_base_ms: u64,
    pub(crate) retry_max_attempts: u32,
    pub(crate) shutdown_timeout_ms: u64,
    pub(crate) poll_wait_ms: u64,
    pub(crate) concurrency: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            lease_ms: 4000,
            sweep_interval_ms: 1000,
            stale_after_ms: 5000,
            retry_base_ms: 500,
            retry_max_attempts: 3,
            shutdown_timeout_ms: 5000,
            poll_wait_ms: 200,
            concurrency: 8,
        }
    }
}

pub(crate) const TENANT: &str = "acme";
pub(crate) const OTHER_TENANT: &str = "globex";

/// One scenario's deployment.
pub(crate) struct Deployment {
    pub(crate) scenario: String,
    pub(crate) pg: Option<Pg>,
    pub(crate) database_url: String,
    pub(crate) queue_url: String,
    pub(crate) prefix: String,
    pub(crate) queue: QueueKind,
    pub(crate) recorder: Recorder,
    pub(crate) tuning: Tuning,
    pub(crate) key: String,
    pub(crate) other_key: String,
    pub(crate) server: Option<Proc>,
    pub(crate) base: String,
    /// The server's operator listener (`METRICS_ADDR`): `/ready`, `/metrics`.
    pub(crate) operator: String,
    pub(crate) workers: Vec<Proc>,
    spawned: usize,
    pub(crate) http: reqwest::Client,
    pub(crate) extra_env: Vec<(String, String)>,
}

impl Deployment {
    pub(crate) async fn new(
        scenario: &str,
        queue: QueueKind,
        tuning: Tuning,
        recorder: Recorder,
    ) -> Self {
        let _ = binaries();
        let pg = Pg::create(scenario).await;
        let prefix = format!("rel-{scenario}-{}", tag());
        let queue_url = match &queue {
            QueueKind::Redis(url) => url.clone(),
            QueueKind::Amqp => amqp_url(),
            QueueKind::Database => "database".to_owned(),
        };
        Self {
            scenario: scenario.to_owned(),
            database_url: pg.url.clone(),
            pg: Some(pg),
            queue_url,
            prefix,
            queue,
            recorder,
            tuning,
            key: format!("key-{}", tag()),
            other_key: format!("key-{}", tag()),
            server: None,
            base: String::new(),
            operator: String::new(),
            workers: Vec::new(),
            spawned: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            extra_env: Vec::new(),
        }
    }

    /// [`Deployment::new`] on the shared Redis (`ONBOARDING_TEST_REDIS_URL`).
    pub(crate) async fn on_redis(scenario: &str, tuning: Tuning, recorder: Recorder) -> Self {
        Self::new(scenario, QueueKind::Redis(redis_url()), tuning, recorder).await
    }

    pub(crate) fn pg(&self) -> &Pg {
        self.pg.as_ref().expect("database")
    }

    /// The environment every process of this stack gets.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let t = &self.tuning;
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.database_url.clone()),
            ("QUEUE_URL", self.queue_url.clone()),
            ("CACHE_URL", "memory".to_owned()),
            ("QUEUE_PREFIX", self.prefix.clone()),
            ("PROCESSOR_URL", self.recorder.url.clone()),
            ("WORKERS", t.concurrency.to_string()),
            ("LEASE_MS", t.lease_ms.to_string()),
            ("SWEEP_INTERVAL_MS", t.sweep_interval_ms.to_string()),
            ("STALE_AFTER_MS", t.stale_after_ms.to_string()),
            ("RETRY_BASE_MS", t.retry_base_ms.to_string()),
            ("RETRY_MAX_ATTEMPTS", t.retry_max_attempts.to_string()),
            ("SHUTDOWN_TIMEOUT_MS", t.shutdown_timeout_ms.to_string()),
            ("POLL_WAIT_MS", t.poll_wait_ms.to_string()),
            ("QUEUE_EXPIRY_MS", "60000".to_owned()),
            // Workers serve /ready and /metrics too: any free port each.
            ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts the HTTP server (no in-process workers) with `server_env`
    /// overrides, and waits until it is ready.
    pub(crate) async fn start_server(&mut self, server_env: &[(&str, &str)]) {
        let (server, base, operator) = self.spawn_server("server", server_env).await;
        self.base = base;
        self.operator = operator;
        self.server = Some(server);
    }

    /// Starts one more HTTP server process (no in-process workers) named
    /// `name`, waits until it is ready, and returns it with its base URL
    /// and its operator listener's.
    pub(crate) async fn spawn_server(
        &self,
        name: &str,
        server_env: &[(&str, &str)],
    ) -> (Proc, String, String) {
        let (port, operator_port) = (free_port(), free_port());
        let mut env = self.env();
        env.retain(|(k, _)| k != "WORKERS" && k != "METRICS_ADDR");
        env.push(("WORKERS".into(), "0".into()));
        env.push(("BIND_ADDR".into(), format!("127.0.0.1:{port}")));
        env.push(("METRICS_ADDR".into(), format!("127.0.0.1:{operator_port}")));
        env.push((
            "API_KEYS".into(),
            format!("{TENANT}:{},{OTHER_TENANT}:{}", self.key, self.other_key),
        ));
        env.push(("RATE_LIMIT".into(), "100000/s".into()));
        for (k, v) in server_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let log = log_dir(&self.scenario).join(format!("{name}.log"));
        let mut server = Proc::spawn(name, &binaries().server, &env, log);
        let base = format!("http://127.0.0.1:{port}");
        let operator = format!("http://127.0.0.1:{operator_port}");
        let (http, url) = (self.http.clone(), operator.clone());
        eventually("the server to be ready", Duration::from_secs(60), || {
            let (http, url) = (http.clone(), url.clone());
            let exited = server.try_exit();
            async move {
                assert!(exited.is_none(), "the server exited: {exited:?}");
                let r = http.get(format!("{url}/ready")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        (server, base, operator)
    }

    /// Starts one more worker process.
    pub(crate) fn start_worker(&mut self) -> usize {
        self.spawned += 1;
        let log = log_dir(&self.scenario).join(format!("worker-{}.log", self.spawned));
        let w = Proc::spawn(
            &format!("worker-{}", self.spawned),
            &binaries().worker,
            &self.env(),
            log,
        );
        self.workers.push(w);
        self.workers.len() - 1
    }

    /// SIGKILLs worker `i` and starts a replacement in its place.
    pub(crate) fn restart_worker(&mut self, i: usize) {
        self.workers[i].kill();
        self.spawned += 1;
        let log = log_dir(&self.scenario).join(format!("worker-{}.log", self.spawned));
        self.workers[i] = Proc::spawn(
            &format!("worker-{}", self.spawned),
            &binaries().worker,
            &self.env(),
            log,
        );
    }

    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(Proc::pid).collect()
    }

    /// POSTs organizations `range` (domains `o{n}-{tag}.example.com`) with
    /// the key of `tenant` to `/api/v1/bulk-onboard`.
    pub(crate) async fn submit(&self, tag: &str, range: std::ops::Range<usize>) -> Submitted {
        let body = orgs_body(tag, range);
        self.post_json("/api/v1/bulk-onboard", &self.key, body.to_string())
            .await
    }

    pub(crate) async fn post_json(&self, path: &str, key: &str, body: String) -> Submitted {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let latency = started.elapsed();
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let content_type = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body: Value = r.json_value().await;
                Submitted {
                    status,
                    body,
                    retry_after,
                    content_type,
                    latency,
                }
            }
            Err(e) => Submitted {
                status: 0,
                body: json!({ "transport_error": e.to_string() }),
                retry_after: None,
                content_type: String::new(),
                latency,
            },
        }
    }

    /// The status of the server's `GET /ready` (on its operator listener).
    pub(crate) async fn ready_status(&self) -> u16 {
        self.http
            .get(format!("{}/ready", self.operator))
            .send()
            .await
            .expect("GET /ready")
            .status()
            .as_u16()
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json_value().await)
    }

    /// Waits until no item is pending or processing and returns the counts per status.
    pub(crate) async fn until_settled(
        &self,
        expected_total: i64,
        within: Duration,
    ) -> HashMap<String, i64> {
        self.until_settled_every(expected_total, within, POLL).await
    }

    /// [`Deployment::until_settled`] counting every `every` instead of every
    /// 100 ms: with hundreds of thousands of items each count scans the
    /// table, and counting that often would slow the workers it waits for.
    pub(crate) async fn until_settled_every(
        &self,
        expected_total: i64,
        within: Duration,
        every: Duration,
    ) -> HashMap<String, i64> {
        let pg = self.pg();
        eventually_every(
            "every item to reach a terminal state",
            within,
            every,
            || async {
                let c = pg.item_counts().await;
                let total: i64 = c.values().sum();
                let open = c.get("pending").copied().unwrap_or(0)
                    + c.get("processing").copied().unwrap_or(0);
                if total == expected_total && open == 0 {
                    Ok(c)
                } else {
                    Err(c)
                }
            },
        )
        .await
    }

    /// Accepted item ids that have no successful side effect or are not completed.
    pub(crate) async fn lost(&self) -> Vec<String> {
        let done = self.recorder.done_items();
        let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, status FROM batch_items")
            .fetch_all(&self.pg().pool)
            .await
            .expect("items");
        rows.into_iter()
            .filter(|(id, status)| status != "completed" || !done.contains(&id.to_string()))
            .map(|(id, status)| format!("{id} ({status})"))
            .collect()
    }

    /// Stops everything and drops the database and queue keys.
    pub(crate) async fn teardown(mut self) {
        for w in &mut self.workers {
            w.kill();
        }
        if let Some(s) = &mut self.server {
            s.kill();
        }
        match &self.queue {
            QueueKind::Redis(url) => {
                onboarding_redis::testing::delete_keys(url, &self.prefix).await;
            }
            // Its queues expire on their own (QUEUE_EXPIRY_MS): rabbitmqctl takes seconds per queue.
            QueueKind::Amqp | QueueKind::Database => {}
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
    }
}

/// The answer to a POST.
#[derive(Debug, Clone)]
pub(crate) struct Submitted {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) retry_after: Option<String>,
    pub(crate) content_type: String,
    pub(crate) latency: Duration,
}

impl Submitted {
    pub(crate) fn batch_id(&self) -> String {
        self.body["batch_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// `{"organizations": [...]}` for organizations `range` of `tag`
/// (`org{n}-{tag}.example.com`).
pub(crate) fn orgs_body(tag: &str, range: std::ops::Range<usize>) -> Value {
    onboarding_core::testing::requests::request_json(tag, range)
}
