//! A throw-away Redis Cluster for a test binary: three masters and three
//! replicas (`redis-server --cluster-enabled yes`, `redis-cli --cluster
//! create … --cluster-replicas 1`) on free loopback ports, in a temporary
//! directory. Started once per test process ([`TestCluster::shared`]); a
//! watchdog shell stops the servers and removes the directory when the
//! process ends (however it ends). `ONBOARDING_TEST_REDIS_SERVER` / `_CLI`
//! override the binaries (default `redis-server`, `redis-cli` on the
//! `PATH`). A missing binary fails the test: nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use onboarding_core::testing::namespace::unique_name;
use onboarding_core::testing::TestBackend;

use crate::RedisConfig;

/// Node timeout: a master unreachable this long is failed over.
const NODE_TIMEOUT_MS: u64 = 1000;

/// One node of the test cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    pid: u32,
}

/// A running test cluster (see the module documentation).
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

fn server_bin() -> String {
    std::env::var("ONBOARDING_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn cli_bin() -> String {
    std::env::var("ONBOARDING_TEST_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// Six ports whose cluster bus ports (+10000) are free too.
fn free_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    while ports.len() < 6 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("its address").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// Polls `check` every 50 ms until it answers `Some` or `timeout` passes.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TestCluster {
    /// The cluster of this process, started on first use (blocks a few
    /// seconds: call it from `spawn_blocking` in async code).
    ///
    /// # Panics
    ///
    /// When it cannot start (no `redis-server`, no free ports).
    pub fn shared() -> &'static TestCluster {
        static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let mut last = String::new();
            // Another process may take a port between the check and the bind.
            for _ in 0..3 {
                match Self::start() {
                    Ok(cluster) => return cluster,
                    Err(e) => last = e,
                }
            }
            panic!("cannot start a Redis Cluster for the tests: {last}");
        })
    }

    /// A configuration for a fresh key prefix on the shared cluster: the
    /// given visibility timeout, a 100 ms poll interval. No clean-up: the
    /// cluster goes with the process.
    pub async fn config(visibility: Duration) -> RedisConfig {
        let url = tokio::task::spawn_blocking(|| Self::shared().url())
            .await
            .unwrap_or_else(|e| panic!("starting the test cluster failed: {e}"));
        RedisConfig::new(url)
            .with_prefix(unique_name(""))
            .with_visibility_timeout(visibility)
            .with_poll_interval(Duration::from_millis(100))
    }

    /// The backends of one conformance case on the shared cluster: a queue,
    /// a cache and the limits under a fresh prefix; the repository in memory.
    pub async fn test_backend() -> TestBackend {
        super::backends_on(Self::config(TestBackend::VISIBILITY_TIMEOUT).await).await
    }

    fn start() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "onboarding-redis-cluster-{}-{nanos}",
            std::process::id()
        ));
        let mut nodes = Vec::new();
        for port in free_ports() {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            let child = Command::new(server_bin())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .arg("--logfile")
                .arg(node_dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{} must be installed: {e}", server_bin()))?;
            nodes.push(Node {
                port,
                pid: child.id(),
            });
        }
        let cluster = Self { nodes, dir };
        cluster.watchdog()?;
        for node in &cluster.nodes {
            wait_for("a node to answer", Duration::from_secs(20), || {
                (cluster.cli(node.port, &["PING"]).ok()? == "PONG").then_some(())
            })?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli_bin())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        cluster.wait_until_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Kills the servers and removes the directory once this process is gone.
    fn watchdog(&self) -> Result<(), String> {
        let script = r#"
            test_pid=$1; dir=$2; shift 2
            while kill -0 "$test_pid" 2>/dev/null; do sleep 0.5; done
            for pid in "$@"; do kill -9 "$pid" 2>/dev/null; done
            sleep 0.2; rm -rf "$dir"
        "#;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("redis-cluster-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .args(self.nodes.iter().map(|n| n.pid.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the watchdog: {e}"))
    }

    /// Runs `redis-cli -p port args…`; its output, trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let out = Command::new(cli_bin())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map_err(|e| format!("{} must be installed: {e}", cli_bin()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Waits until every live node says `cluster_state:ok` and every live
    /// replica is in sync with its master.
    pub fn wait_until_healthy(&self, timeout: Duration) -> Result<(), String> {
        wait_for("the cluster to be healthy", timeout, || {
            for port in self.live_ports() {
                let info = self.cli(port, &["CLUSTER", "INFO"]).ok()?;
                if !info.contains("cluster_state:ok") {
                    return None;
                }
                let replication = self.cli(port, &["INFO", "replication"]).ok()?;
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    return None;
                }
            }
            Some(())
        })
    }

    /// The seed URL of the cluster, for `RedisConfig`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .live_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis://{}?cluster=true", hosts.join(","))
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| Path::new(&format!("/proc/{}", n.pid)).exists() && !self.is_zombie(n.pid))
            .map(|n| n.port)
            .collect()
    }

    fn is_zombie(&self, pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    }

    /// Any node still running.
    fn any_live_port(&self) -> u16 {
        *self
            .live_ports()
            .first()
            .expect("a node of the test cluster is running")
    }

    /// `CLUSTER NODES` as a live node sees it.
    fn topology(&self) -> Vec<NodeInfo> {
        self.cli(self.any_live_port(), &["CLUSTER", "NODES"])
            .expect("CLUSTER NODES answers")
            .lines()
            .filter_map(NodeInfo::parse)
            .collect()
    }

    /// The hash slot of a key.
    pub fn slot(&self, key: &str) -> u16 {
        let answer = self
            .cli(self.any_live_port(), &["CLUSTER", "KEYSLOT", key])
            .expect("CLUSTER KEYSLOT answers");
        answer
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {answer:?}"))
    }

    /// The port of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> u16 {
        self.topology()
            .into_iter()
            .find(|n| n.is_master() && n.serves(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The port of a replica of the master at `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let topology = self.topology();
        let id = topology
            .iter()
            .find(|n| n.port == master)
            .map(|n| n.id.clone())
            .unwrap_or_else(|| panic!("no node at port {master}"));
        topology
            .iter()
            .find(|n| n.flags.contains("slave") && n.master_id == id)
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("the master at port {master} has no replica"))
    }

    /// Whether the node at `port` is a master now.
    pub fn is_master(&self, port: u16) -> bool {
        self.cli(port, &["ROLE"])
            .map(|role| role.starts_with("master"))
            .unwrap_or(false)
    }

    /// SIGKILLs the node at `port`.
    pub fn kill(&self, port: u16) {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node at port {port}"));
        let killed = Command::new("kill")
            .args(["-9", &node.pid.to_string()])
            .status()
            .is_ok_and(|status| status.success());
        assert!(killed, "kill -9 {} failed", node.pid);
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeInfo {
    id: String,
    port: u16,
    flags: String,
    /// The master's id, `-` for a master.
    master_id: String,
    /// Slot ranges served (`0-5460`, `5461`, …).
    slots: Vec<String>,
}

impl NodeInfo {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        Some(Self {
            id: (*fields.first()?).to_owned(),
            port: fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?,
            flags: (*fields.get(2)?).to_owned(),
            master_id: (*fields.get(3)?).to_owned(),
            slots: fields.iter().skip(8).map(|s| (*s).to_owned()).collect(),
        })
    }

    fn is_master(&self) -> bool {
        self.flags.contains("master") && !self.flags.contains("fail")
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
        })
    }
}
