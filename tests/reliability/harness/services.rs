//! The real servers: a fresh PostgreSQL database per scenario, a private
//! Redis, key and queue clean-up, RabbitMQ connection faults.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use onboarding_sqlx::testing::{admin_url, TestDatabase};
use onboarding_sqlx::Engine;
use std::time::Duration;

use super::*;

/// A fresh PostgreSQL database for one scenario, dropped when this value
/// is (also when the scenario fails).
pub(crate) struct Pg {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) pool: sqlx::PgPool,
    _database: TestDatabase,
}

impl Pg {
    pub(crate) async fn create(scenario: &str) -> Self {
        let database =
            TestDatabase::create_labelled(Engine::Postgres, &format!("rel_{scenario}")).await;
        let url = database.url().to_owned();
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&format!("{url}?application_name=reliability"))
            .await
            .expect("connect to the scenario database");
        Self {
            name,
            url,
            pool,
            _database: database,
        }
    }

    /// Closes the pool and drops the database.
    pub(crate) async fn drop_database(self) {
        self.pool.close().await;
    }

    /// Items per status (the truth).
    pub(crate) async fn item_counts(&self) -> HashMap<String, i64> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM batch_items GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        rows.into_iter().collect()
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }

    /// Terminates every backend of this database but ours; returns how many.
    pub(crate) async fn terminate_backends(&self) -> i64 {
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
        .connect(&admin_url(Engine::Postgres))
        .await
        .expect("PostgreSQL must be reachable (ONBOARDING_TEST_POSTGRES_URL; .ci/services.sh)")
}

// ---------------------------------------------------------------- Redis, RabbitMQ

/// A private redis-server on a free port (restartable on the same port).
pub(crate) struct PrivateRedis {
    pub(crate) port: u16,
    proc: Option<Proc>,
    dir: PathBuf,
}

impl PrivateRedis {
    pub(crate) async fn start(scenario: &str) -> Self {
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

    pub(crate) fn url(&self) -> String {
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
    pub(crate) async fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.up().await;
    }
}

/// Closes this process tree's RabbitMQ connections (those of `pids`) from
/// the broker side; returns how many.
pub(crate) fn rabbit_close_connections_of(pids: &[u32]) -> usize {
    let broker = server_address(&amqp_url(), 5672).to_string();
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", "dst", &broker])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<String> = text
        .lines()
        .filter(|line| pids.iter().any(|p| line.contains(&format!("pid={p},"))))
        // Recv-Q Send-Q Local Peer Process
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(|local| format!("{local} -> {broker}"))
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

/// Where the server of `url` listens (`default_port` unless the URL names one).
///
/// # Panics
///
/// When the host is not an IP address (the proxy needs one).
pub(crate) fn server_address(url: &str, default_port: u16) -> SocketAddr {
    let host_port = authority(url).1;
    let address = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    address
        .parse()
        .unwrap_or_else(|e| panic!("{address} (of {url}) is not an IP address and port: {e}"))
}

/// `url` pointed at `address` instead of its server (user, path and query kept).
pub(crate) fn through(url: &str, address: SocketAddr) -> String {
    let (before, _, after) = authority(url);
    format!("{before}{address}{after}")
}

/// `url` split around its `host[:port]`: what comes before (scheme and user
/// info), the host and port, and what follows (path and query).
fn authority(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (&url[..host_start], &url[host_start..end], &url[end..])
}
