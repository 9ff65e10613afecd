//! The harness of the reliability suite: runs `examples/server.rs` and
//! `examples/worker.rs` as real processes against real PostgreSQL, Redis
//! and RabbitMQ servers, and counts outcomes.
//!
//! - [`binaries`] builds the examples once (a no-op when fresh) and finds them;
//! - [`Proc`] is a child process killed on drop (a failing test leaves nothing behind);
//! - [`Recorder`] is the processor endpoint (`PROCESSOR_URL`): every call is a
//!   side effect recorded with its item, attempt and time, so "exactly once"
//!   is counted, not assumed; a per-scenario behavior answers 2xx/5xx/4xx with a delay;
//! - [`Pg`] is a fresh PostgreSQL database per scenario (dropped at the end);
//! - [`Stack`] is one scenario's deployment: database, queue prefix, recorder, server, workers;
//! - [`Proxy`] is a TCP proxy that can be cut, to make a backend unreachable.
//!
//! Every scenario is in `tests/`; `RELIABILITY.md` lists them with their
//! commands and observed counts.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Whether the full counts run (`RELIABILITY_FULL=1`); CI runs smaller ones.
pub fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1" || v == "true")
}

/// `ci` normally, `full` with `RELIABILITY_FULL=1`.
pub fn count(ci: usize, full_count: usize) -> usize {
    if full() {
        full_count
    } else {
        ci
    }
}

/// A short random id.
pub fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Heavy scenarios of one test binary run one at a time (timings are
/// asserted; two cores).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

// ---------------------------------------------------------------- binaries

/// Paths of the example binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub worker: PathBuf,
}

fn target_profile_dir() -> PathBuf {
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Builds the examples with every feature (once per test binary; a no-op
/// when they are fresh) and returns their paths.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let profile_dir = target_profile_dir();
        let target = profile_dir.parent().expect("target dir").to_path_buf();
        let bins = Binaries {
            server: profile_dir.join("examples/server"),
            worker: profile_dir.join("examples/worker"),
        };
        if std::env::var_os("RELIABILITY_NO_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let mut cmd = Command::new(cargo);
            // What `cargo test` sets for a test (CARGO_PKG_*, CARGO_MANIFEST_DIR, …)
            // would make the build differ from a plain one and rebuild.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "OUT_DIR" {
                    cmd.env_remove(&key);
                }
            }
            cmd.current_dir(&root)
                .args(["build", "--workspace", "--examples", "--all-features"])
                .env("CARGO_TARGET_DIR", &target);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo build --examples");
            assert!(status.success(), "building the examples failed");
        }
        assert!(
            bins.server.exists() && bins.worker.exists(),
            "examples not found under {}",
            profile_dir.display()
        );
        bins
    })
}

// ---------------------------------------------------------------- processes

/// Where a scenario's process logs go.
pub fn log_dir(scenario: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("onboarding-reliability")
        .join(scenario);
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// A child process, SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, bin: &Path, env: &[(String, String)], log: PathBuf) -> Self {
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn");
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {sig} {}", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process must be resumed to die promptly on some kernels; harmless otherwise.
        let _ = Command::new("kill")
            .args(["-s", "CONT", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- recorder

/// One processor call: one side effect.
#[derive(Debug, Clone)]
pub struct Call {
    pub item_id: String,
    pub batch_id: String,
    pub domain: String,
    pub attempt: u32,
    pub started: Instant,
    /// When the answer was sent (None: the caller went away first).
    pub ended: Option<Instant>,
    pub status: u16,
}

/// What the recorder answers to a call.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(delay: Duration) -> Self {
        Self { status: 200, delay }
    }
}

type Behavior = dyn Fn(&Call) -> Reply + Send + Sync;

struct RecorderState {
    calls: Mutex<Vec<Call>>,
    behavior: Mutex<Arc<Behavior>>,
}

/// The processor endpoint: records every call (the side effect), answers
/// as the scenario's behavior says.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    state: Arc<RecorderState>,
}

/// Counts of side effects per item.
#[derive(Debug, Clone, Default)]
pub struct SideEffects {
    /// Calls in all.
    pub calls: usize,
    /// Items with at least one successful (2xx) call.
    pub items_done: usize,
    /// Successful calls beyond the first per item.
    pub duplicated: usize,
    /// Calls whose caller went away before the answer (killed).
    pub abandoned: usize,
}

impl Recorder {
    pub async fn start(behavior: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(RecorderState {
            calls: Mutex::new(Vec::new()),
            behavior: Mutex::new(Arc::new(behavior)),
        });
        let app = axum::Router::new()
            .route("/process", post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/process"),
            state,
        }
    }

    pub fn set_behavior(&self, behavior: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *lock(&self.state.behavior) = Arc::new(behavior);
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state.calls).clone()
    }

    pub fn call_count(&self) -> usize {
        lock(&self.state.calls).len()
    }

    /// Successful calls in all.
    pub fn successes(&self) -> usize {
        lock(&self.state.calls)
            .iter()
            .filter(|c| (200..300).contains(&c.status))
            .count()
    }

    pub fn side_effects(&self) -> SideEffects {
        let calls = lock(&self.state.calls);
        let mut per_item: HashMap<&str, usize> = HashMap::new();
        let mut abandoned = 0;
        for c in calls.iter() {
            if (200..300).contains(&c.status) {
                *per_item.entry(c.item_id.as_str()).or_default() += 1;
            } else if c.ended.is_none() {
                abandoned += 1;
            }
        }
        SideEffects {
            calls: calls.len(),
            items_done: per_item.len(),
            duplicated: per_item.values().map(|n| n - 1).sum(),
            abandoned,
        }
    }

    /// Item ids with at least one successful call.
    pub fn done_items(&self) -> std::collections::HashSet<String> {
        lock(&self.state.calls)
            .iter()
            .filter(|c| (200..300).contains(&c.status))
            .map(|c| c.item_id.clone())
            .collect()
    }
}

async fn record(State(state): State<Arc<RecorderState>>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut call = Call {
        item_id: s("/item_id"),
        batch_id: s("/batch_id"),
        domain: s("/organization/domain"),
        attempt: v
            .pointer("/attempt")
            .and_then(Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        started: Instant::now(),
        ended: None,
        status: 0,
    };
    let behavior = lock(&state.behavior).clone();
    let reply = behavior(&call);
    let index = {
        let mut calls = lock(&state.calls);
        calls.push(call.clone());
        calls.len() - 1
    };
    // Recorded as abandoned unless the answer goes out (a killed caller drops this future).
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    call.ended = Some(Instant::now());
    call.status = reply.status;
    lock(&state.calls)[index] = call;
    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ---------------------------------------------------------------- PostgreSQL

/// A fresh PostgreSQL database, dropped on [`Pg::drop_database`] (or left
/// for inspection when the test panics before).
pub struct Pg {
    pub name: String,
    pub url: String,
    pub pool: sqlx::PgPool,
}

impl Pg {
    pub async fn create(scenario: &str) -> Self {
        let name = format!("rel_{}_{}", scenario.replace('-', "_"), tag());
        let admin = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&format!("{url}?application_name=reliability"))
            .await
            .expect("connect to the scenario database");
        Self { name, url, pool }
    }

    pub async fn drop_database(self) {
        self.pool.close().await;
        let admin = admin().await;
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
        admin.close().await;
    }

    /// Items per status (the truth).
    pub async fn item_counts(&self) -> HashMap<String, i64> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM batch_items GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        rows.into_iter().collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }

    /// Terminates every backend of this database but ours; returns how many.
    pub async fn terminate_backends(&self) -> i64 {
        let admin = admin().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name NOT LIKE 'reliability%') t",
        )
        .bind(&self.name)
        .fetch_one(&admin)
        .await
        .unwrap_or(0);
        admin.close().await;
        n
    }
}

async fn admin() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(PG_ADMIN)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (run .ci/services.sh)")
}

// ---------------------------------------------------------------- Redis, RabbitMQ

/// Deletes every key under `prefix:` on the Redis at `port`; returns how many.
pub fn redis_delete_prefix(port: u16, prefix: &str) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern"])
        .arg(format!("{prefix}:*"))
        .output()
        .expect("redis-cli");
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    for chunk in keys.chunks(200) {
        let _ = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "DEL"])
            .args(chunk)
            .stdout(Stdio::null())
            .status();
    }
    keys.len()
}

/// A private redis-server on a free port (restartable on the same port).
pub struct PrivateRedis {
    pub port: u16,
    proc: Option<Proc>,
    dir: PathBuf,
}

impl PrivateRedis {
    pub async fn start(scenario: &str) -> Self {
        let port = free_port();
        let dir = log_dir(scenario);
        let mut r = Self {
            port,
            proc: None,
            dir,
        };
        r.up().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let bin = PathBuf::from("redis-server");
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let out = File::create(&log).expect("log");
        let child = Command::new(&bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("redis-server");
        self.proc = Some(Proc {
            name: "redis".into(),
            child,
            log,
        });
        let port = self.port;
        eventually(
            "the private redis-server",
            Duration::from_secs(20),
            || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// Stops the server (every key is gone: no persistence) and starts it again.
    pub async fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.up().await;
    }
}

/// Closes this process tree's RabbitMQ connections (those of `pids`) from
/// the broker side; returns how many.
pub fn rabbit_close_connections_of(pids: &[u32]) -> usize {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", "dst", "127.0.0.1:5672"])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<String> = text
        .lines()
        .filter(|line| pids.iter().any(|p| line.contains(&format!("pid={p},"))))
        // Recv-Q Send-Q Local Peer Process
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(|local| format!("{local} -> 127.0.0.1:5672"))
        .collect();
    // The broker names connections by peer, and closes them by its own pid.
    let Ok(out) = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "pid",
            "name",
            "--no-table-headers",
        ])
        .output()
    else {
        return 0;
    };
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((pid, name)) = line.split_once('\t') else {
            continue;
        };
        if !names.iter().any(|n| n == name.trim()) {
            continue;
        }
        let status = Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid.trim(),
                "reliability test: closed by the broker",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            closed += 1;
        }
    }
    closed
}

/// Deletes the RabbitMQ queues whose name starts with `prefix`.
pub fn rabbit_delete_queues(prefix: &str) {
    let Ok(out) = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "--no-table-headers"])
        .output()
    else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let name = name.trim();
        if name.starts_with(prefix) {
            let _ = Command::new("rabbitmqctl")
                .args(["-q", "delete_queue", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------- TCP proxy

/// A TCP proxy in front of a backend; [`Proxy::cut`] closes every
/// connection and refuses new ones until [`Proxy::restore`].
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------- one deployment

/// Which queue the processes use.
#[derive(Debug, Clone)]
pub enum QueueKind {
    /// The shared Redis (or another URL), under a fresh key prefix.
    Redis(String),
    /// RabbitMQ under a fresh queue prefix.
    Amqp,
    /// The SQL table queue.
    Database,
}

/// Timings given to every process (ms).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub lease_ms: u64,
    pub sweep_interval_ms: u64,
    pub stale_after_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_attempts: u32,
    pub shutdown_timeout_ms: u64,
    pub poll_wait_ms: u64,
    pub concurrency: usize,
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

pub const TENANT: &str = "acme";
pub const OTHER_TENANT: &str = "globex";

/// One scenario's deployment.
pub struct Stack {
    pub scenario: String,
    pub pg: Option<Pg>,
    pub database_url: String,
    pub queue_url: String,
    pub prefix: String,
    pub queue: QueueKind,
    pub recorder: Recorder,
    pub tuning: Tuning,
    pub key: String,
    pub other_key: String,
    pub server: Option<Proc>,
    pub base: String,
    pub workers: Vec<Proc>,
    spawned: usize,
    pub http: reqwest::Client,
    pub extra_env: Vec<(String, String)>,
}

impl Stack {
    pub async fn new(scenario: &str, queue: QueueKind, tuning: Tuning, recorder: Recorder) -> Self {
        let _ = binaries();
        let pg = Pg::create(scenario).await;
        let prefix = format!("rel-{scenario}-{}", tag());
        let queue_url = match &queue {
            QueueKind::Redis(url) => url.clone(),
            QueueKind::Amqp => AMQP_URL.to_owned(),
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
            workers: Vec::new(),
            spawned: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            extra_env: Vec::new(),
        }
    }

    pub fn pg(&self) -> &Pg {
        self.pg.as_ref().expect("database")
    }

    /// The environment every process of this stack gets.
    pub fn env(&self) -> Vec<(String, String)> {
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts the HTTP server (no in-process workers) with `server_env`
    /// overrides, and waits until it is ready.
    pub async fn start_server(&mut self, server_env: &[(&str, &str)]) {
        let port = free_port();
        let mut env = self.env();
        env.retain(|(k, _)| k != "WORKERS");
        env.push(("WORKERS".into(), "0".into()));
        env.push(("BIND_ADDR".into(), format!("127.0.0.1:{port}")));
        env.push((
            "API_KEYS".into(),
            format!("{TENANT}:{},{OTHER_TENANT}:{}", self.key, self.other_key),
        ));
        env.push(("RATE_LIMIT".into(), "100000/s".into()));
        for (k, v) in server_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let log = log_dir(&self.scenario).join("server.log");
        let server = Proc::spawn("server", &binaries().server, &env, log);
        self.base = format!("http://127.0.0.1:{port}");
        self.server = Some(server);
        let (http, base) = (self.http.clone(), self.base.clone());
        let server = self.server.as_mut().expect("server");
        eventually("the server to be ready", Duration::from_secs(60), || {
            let (http, base) = (http.clone(), base.clone());
            let exited = server.try_exit();
            async move {
                assert!(exited.is_none(), "the server exited: {exited:?}");
                let r = http.get(format!("{base}/ready")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// Starts one more worker process.
    pub fn start_worker(&mut self) -> usize {
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
    pub fn restart_worker(&mut self, i: usize) {
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

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(Proc::pid).collect()
    }

    /// POSTs organizations `range` (domains `o{n}-{tag}.example.com`) with
    /// the key of `tenant` to `/api/v1/bulk-onboard`.
    pub async fn submit(&self, tag: &str, range: std::ops::Range<usize>) -> Submitted {
        let body = orgs_body(tag, range);
        self.post_json("/api/v1/bulk-onboard", &self.key, body.to_string())
            .await
    }

    pub async fn post_json(&self, path: &str, key: &str, body: String) -> Submitted {
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

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
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
    pub async fn until_settled(
        &self,
        expected_total: i64,
        within: Duration,
    ) -> HashMap<String, i64> {
        let pg = self.pg();
        eventually("every item to reach a terminal state", within, || async {
            let c = pg.item_counts().await;
            let total: i64 = c.values().sum();
            let open =
                c.get("pending").copied().unwrap_or(0) + c.get("processing").copied().unwrap_or(0);
            (total == expected_total && open == 0).then_some(c)
        })
        .await
    }

    /// [`Stack::until_settled`] counting every `every` instead of every
    /// 100 ms: with hundreds of thousands of items each count scans the
    /// table, and counting that often would slow the workers it waits for.
    pub async fn until_settled_every(
        &self,
        expected_total: i64,
        within: Duration,
        every: Duration,
    ) -> HashMap<String, i64> {
        let pg = self.pg();
        let deadline = Instant::now() + within;
        loop {
            let c = pg.item_counts().await;
            let total: i64 = c.values().sum();
            let open =
                c.get("pending").copied().unwrap_or(0) + c.get("processing").copied().unwrap_or(0);
            if total == expected_total && open == 0 {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for every item to reach a terminal state: {c:?}"
            );
            tokio::time::sleep(every).await;
        }
    }

    /// Accepted item ids that have no successful side effect or are not completed.
    pub async fn lost(&self) -> Vec<String> {
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
    pub async fn teardown(mut self) {
        for w in &mut self.workers {
            w.kill();
        }
        if let Some(s) = &mut self.server {
            s.kill();
        }
        match &self.queue {
            QueueKind::Redis(url) if url == REDIS_URL => {
                redis_delete_prefix(6379, &self.prefix);
            }
            // Its queues expire on their own (QUEUE_EXPIRY_MS): rabbitmqctl takes seconds per queue.
            QueueKind::Amqp => {}
            _ => {}
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
    }
}

/// The answer to a POST.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub latency: Duration,
}

impl Submitted {
    pub fn batch_id(&self) -> String {
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

/// `{"organizations": [...]}` for organizations `range` of `tag`.
pub fn orgs_body(tag: &str, range: std::ops::Range<usize>) -> Value {
    let orgs: Vec<Value> = range
        .map(|n| {
            json!({
                "name": format!("Org {n}"),
                "domain": format!("o{n}-{tag}.example.com"),
                "contact_email": format!("ops{n}@example.com"),
            })
        })
        .collect();
    json!({ "organizations": orgs })
}

/// The `p`-th percentile (0-100) of `values`.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let rank = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Prints one scenario's counts (shown with `--nocapture`; collected into RELIABILITY.md).
pub fn report(scenario: &str, fields: &[(&str, String)]) {
    let line = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("RELIABILITY {scenario}: {line}");
    let path = std::env::temp_dir().join("onboarding-reliability/report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write as _;
        let _ = writeln!(f, "{scenario}: {line}");
    }
}
