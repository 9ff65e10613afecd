//! A Redis restart (on a private `redis-server` this test starts on a free
//! port): calls fail with `Unavailable` while it is down and work again
//! afterwards with the same queue and cache, scripts loaded again.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onboarding_core::model::{ItemId, TenantId};
use onboarding_core::testing::eventually;
use onboarding_core::{Cache, ErrorKind, Job, JobQueue};
use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let server = Self { child, port };
        let client = redis::Client::open(server.url()).unwrap();
        eventually("redis-server to start", RECOVERY, || async {
            let mut con = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut con).await
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn job() -> Job {
    Job {
        item_id: ItemId::new(),
        tenant: TenantId::parse("restart").unwrap(),
        not_before: None,
    }
}

/// How long a call may keep failing after the restart (the first call may
/// see the old, broken connection).
const RECOVERY: Duration = Duration::from_secs(10);

#[tokio::test]
async fn queue_and_cache_recover_from_a_redis_restart() {
    let port = free_port();
    let server = Server::start(port).await;
    let config = RedisConfig::new(server.url())
        .with_prefix("restart")
        .with_visibility_timeout(Duration::from_secs(1))
        .with_connection_timeout(Duration::from_millis(300))
        .with_poll_interval(Duration::from_millis(50));
    let queue = RedisQueue::connect(config.clone()).await.unwrap();
    let cache = RedisCache::connect(config).await.unwrap();

    let first = job();
    queue.enqueue(std::slice::from_ref(&first)).await.unwrap();
    let got = queue.dequeue(5, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got[0].job, first);
    queue.ack(&[got[0].receipt.clone()]).await.unwrap();
    cache.set("k", b"v", Duration::from_secs(60)).await.unwrap();

    server.stop();
    // Down: every call is Unavailable (a miss for cache callers), none hangs.
    let started = Instant::now();
    let errors = [
        queue.enqueue(&[job()]).await.unwrap_err(),
        queue
            .dequeue(1, Duration::from_millis(100))
            .await
            .unwrap_err(),
        queue.depth().await.unwrap_err(),
        cache.get("k").await.unwrap_err(),
    ];
    for e in &errors {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // Back on the same port, empty (no persistence), with an empty script cache.
    let server = Server::start(port).await;
    eventually("queue ping", RECOVERY, || queue.ping()).await;
    let second = job();
    eventually("enqueue", RECOVERY, || {
        queue.enqueue(std::slice::from_ref(&second))
    })
    .await;
    let got = eventually("dequeue", RECOVERY, || {
        queue.dequeue(5, Duration::from_secs(1))
    })
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, second);
    queue.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().in_flight, 0);
    eventually("cache ping", RECOVERY, || cache.ping()).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.set("k", b"w", Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), Some(b"w".to_vec()));
    server.stop();
}
