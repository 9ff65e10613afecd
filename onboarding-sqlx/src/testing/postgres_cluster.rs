//! A throw-away PostgreSQL cluster of the test's own (`initdb` into a
//! temporary directory, `postgres` on a free loopback port), for what the
//! shared server cannot be used for: base backups, WAL archiving, streaming
//! replicas, stopping a server.
//!
//! The binaries come from `ONBOARDING_TEST_PG_BIN` or the newest
//! `/usr/lib/postgresql/*/bin` (else the `PATH`). PostgreSQL refuses to run
//! as root: as root every command runs as the `postgres` user (`runuser`)
//! and the directory is given to it. A cluster stops and its directory is
//! removed when the value is dropped; a watchdog shell does the same when
//! the test process ends however it ends. A missing binary fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onboarding_core::testing::namespace::unique_name;

/// Where the PostgreSQL server binaries are.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ONBOARDING_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| PathBuf::from(""))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program args…` as the user that may run PostgreSQL.
fn pg_command(program: &str) -> Command {
    let path = bin_dir().join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// Runs `command`; its stdout, or its output as the error.
fn run(mut command: Command) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Gives `path` (recursively) to the `postgres` user when running as root.
fn give_to_postgres(path: &Path) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let mut chown = Command::new("chown");
    chown.args(["-R", "postgres:postgres"]).arg(path);
    run(chown).map(drop)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One PostgreSQL cluster of the test (see the module documentation).
#[derive(Debug)]
pub struct PostgresCluster {
    dir: PathBuf,
    port: u16,
}

impl PostgresCluster {
    /// A new primary: `initdb` (trust on loopback, replication allowed),
    /// `wal_level = replica`, WAL archived into [`PostgresCluster::archive_dir`],
    /// started and answering. Blocks a few seconds: call it from
    /// `spawn_blocking` in async code.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn start_primary() -> Self {
        Self::try_start_primary().unwrap_or_else(|e| panic!("test PostgreSQL primary: {e}"))
    }

    fn try_start_primary() -> Result<Self, String> {
        let dir = Self::new_dir()?;
        let cluster = Self {
            dir,
            port: free_port(),
        };
        let mut initdb = pg_command("initdb");
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg("-D")
            .arg(cluster.data_dir());
        run(initdb)?;
        let archive = cluster.archive_dir();
        let settings = format!(
            "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n\
             shared_buffers = 16MB\nmax_connections = 50\narchive_mode = on\n\
             archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n",
            archive = archive.display()
        );
        cluster.append_settings(&settings)?;
        cluster.try_start()?;
        Ok(cluster)
    }

    /// Starts a cluster from a data directory made elsewhere (a base backup,
    /// say), on a free port; it owns `data` from now on (its parent is
    /// removed when it is dropped). `settings` are appended to its
    /// `postgresql.conf` first (`restore_command`, …). Blocks until it
    /// answers (or, for a standby, accepts connections).
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn start_from(dir: PathBuf, settings: &str) -> Self {
        let cluster = Self {
            dir,
            port: free_port(),
        };
        cluster
            .append_settings(settings)
            .and_then(|()| cluster.try_start())
            .unwrap_or_else(|e| panic!("test PostgreSQL from {}: {e}", cluster.dir.display()));
        cluster
    }

    /// An empty directory for a cluster: `data` goes inside it. A watchdog
    /// stops the server and removes it when this process ends.
    pub fn new_dir() -> Result<PathBuf, String> {
        let dir = std::env::temp_dir().join(unique_name("pg"));
        std::fs::create_dir_all(dir.join("archive")).map_err(|e| e.to_string())?;
        give_to_postgres(&dir)?;
        Self::watchdog(&dir)?;
        Ok(dir)
    }

    /// A streaming replica of this primary (`pg_basebackup -R`), started.
    ///
    /// # Panics
    ///
    /// When the backup or the start fails.
    pub fn start_replica(&self) -> Self {
        let dir = Self::new_dir().unwrap_or_else(|e| panic!("replica directory: {e}"));
        let mut backup = pg_command("pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "--no-sync", "--checkpoint=fast", "-D"])
            .arg(dir.join("data"));
        run(backup).unwrap_or_else(|e| panic!("pg_basebackup: {e}"));
        Self::start_from(dir, "archive_mode = off\n")
    }

    /// The cluster's directory (`data/`, `archive/`, the socket, the log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Where the primary archives its WAL segments.
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster (user `postgres`, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` on this cluster, answering a pool on its
    /// `postgres` database (for statements the test runs as the operator).
    ///
    /// # Panics
    ///
    /// When it cannot connect or create it.
    pub async fn create_database(&self, database: &str) -> sqlx::PgPool {
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("test PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("test PostgreSQL: CREATE DATABASE {database}: {e}"));
        admin
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): like a crash
    /// or a machine gone.
    pub fn stop(&self) {
        let mut stop = pg_command("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir());
        let _ = run(stop);
    }

    /// Starts the server again on the same port.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn start(&self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("restarting the test PostgreSQL: {e}"));
    }

    fn append_settings(&self, settings: &str) -> Result<(), String> {
        use std::io::Write;
        let path = self.data_dir().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let own = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{settings}",
            self.port,
            self.dir.display()
        );
        file.write_all(own.as_bytes()).map_err(|e| e.to_string())?;
        drop(file);
        give_to_postgres(&self.dir)
    }

    fn try_start(&self) -> Result<(), String> {
        let mut start = pg_command("pg_ctl");
        start
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(self.dir.join("server.log"))
            .arg("-D")
            .arg(self.data_dir())
            // pg_ctl's server must not hold the test's output pipes open.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = start
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {log}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("the server does not accept connections".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server in `dir` and removes `dir` once this process is gone.
    fn watchdog(dir: &Path) -> Result<(), String> {
        let script = r#"
            test_pid=$1; dir=$2; pg_ctl=$3
            while kill -0 "$test_pid" 2>/dev/null; do sleep 0.5; done
            if [ -f "$dir/data/postmaster.pid" ]; then
              if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" stop -m immediate -D "$dir/data"
              else "$pg_ctl" stop -m immediate -D "$dir/data"; fi
            fi
            rm -rf "$dir"
        "#;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("postgres-cluster-watchdog")
            .arg(std::process::id().to_string())
            .arg(dir)
            .arg(bin_dir().join("pg_ctl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the watchdog: {e}"))
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
