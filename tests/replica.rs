//! Reads from a PostgreSQL streaming replica (`DATABASE_READ_URL`,
//! `onboarding_sqlx::replica`) against a real one: a primary and a replica
//! (`pg_basebackup -R`) of the test's own on free loopback ports. A fresh
//! replica serves reads, a tenant reads its own writes at once, a paused
//! replica (`pg_wal_replay_pause()`) is skipped once behind by more than
//! 500 ms, a stopped one too, and `/ready` says `degraded`, not down.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use onboarding::memory::{MemoryCache, TracingEventSink};
use onboarding::model::{BatchId, BatchStatus, TenantId};
use onboarding::repository::OrgRepository;
use onboarding::web::{operator_router, Metrics};
use onboarding::{BackendUrls, Backends, IngestConfig, OnboardingService, SubmitOptions};
use onboarding_core::testing::eventually;
use onboarding_sqlx::replica::ReplicaRouted;
use onboarding_sqlx::testing::PostgresCluster;
use onboarding_sqlx::SqlOptions;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

async fn submit(service: &OnboardingService, tenant: &TenantId) -> BatchId {
    let body = onboarding_core::testing::requests::request_json(
        &uuid::Uuid::new_v4().simple().to_string()[..12],
        0..5,
    );
    service
        .submit_json(tenant, &body, SubmitOptions::default())
        .await
        .unwrap()
        .batch_id
}

async fn status(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
) -> Option<BatchStatus> {
    repo.batch_status(tenant, batch).await.unwrap()
}

/// `GET /ready` of an operator listener over `service`: status and body.
async fn ready(service: &OnboardingService) -> (u16, serde_json::Value) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = operator_router(service.clone(), Metrics::new());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let response = reqwest::get(format!("http://{address}/ready"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    server.abort();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_replica_only_when_it_has_what_the_reader_must_see() {
    let primary = tokio::task::spawn_blocking(PostgresCluster::start_primary)
        .await
        .unwrap();
    let admin = primary.create_database("onboarding").await;
    // The schema exists before the replica is copied (a replica cannot migrate).
    let primary_url = primary.url("onboarding");
    let sql = onboarding_sqlx::connect(&primary_url, SqlOptions::default())
        .await
        .unwrap();
    let replica = tokio::task::block_in_place(|| primary.start_replica());
    let replica_url = replica.url("onboarding");

    let routed = ReplicaRouted::connect(
        sql.repository(),
        &primary_url,
        &replica_url,
        &SqlOptions::default(),
    )
    .unwrap();
    let backends = Backends::new(
        routed.clone(),
        sql.queue(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );
    let service = OnboardingService::new(backends, IngestConfig::default());
    let (acme, globex) = (tenant("acme"), tenant("globex"));

    // Fresh replica: reads go there once it has the tenant's write.
    let before = routed.read_counts();
    let batch = submit(&service, &acme).await;
    assert!(
        status(&*routed, &acme, batch).await.is_some(),
        "read-your-writes right after the submission"
    );
    assert_eq!(
        routed.read_counts().primary,
        before.primary + 1,
        "served by the primary: the replica may not have the write yet"
    );
    eventually(
        "a read served by the replica",
        Duration::from_secs(30),
        || {
            let routed = routed.clone();
            let acme = acme.clone();
            async move {
                let counts = routed.read_counts();
                let answer = status(&*routed, &acme, batch).await?;
                (routed.read_counts().replica > counts.replica).then_some(answer)
            }
        },
    )
    .await;
    assert_eq!(routed.degraded(), None);
    let (code, body) = ready(&service).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );

    // Paused replay: the tenant still reads its own writes; another
    // process's write shows within the freshness bound; /ready degraded.
    let globex_batch = submit(&service, &globex).await;
    eventually(
        "the replica to have globex's batch",
        Duration::from_secs(30),
        || {
            let replica_url = replica_url.clone();
            async move {
                let pool = sqlx::PgPool::connect(&replica_url).await.ok()?;
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM batches WHERE id = $1")
                    .bind(globex_batch.0)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                pool.close().await;
                (n == 1).then_some(())
            }
        },
    )
    .await;
    let replica_admin = sqlx::PgPool::connect(&replica.url("postgres"))
        .await
        .unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica_admin)
        .await
        .unwrap();
    let written_while_paused = submit(&service, &acme).await;
    assert!(
        status(&*routed, &acme, written_while_paused)
            .await
            .is_some(),
        "read-your-writes while the replica is paused"
    );
    // Another process (the primary's repository, not through this router) cancels globex's batch.
    sql.repository()
        .cancel_batch(&globex, globex_batch, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    eventually(
        "another process's write to show (replica aged out)",
        Duration::from_secs(10),
        || {
            let (routed, globex) = (routed.clone(), globex.clone());
            async move {
                let s = status(&*routed, &globex, globex_batch).await?;
                s.batch.cancelled_at.is_some().then_some(())
            }
        },
    )
    .await;
    eventually("degraded: replica behind", Duration::from_secs(10), || {
        let routed = routed.clone();
        async move { (routed.degraded() == Some("read_replica_behind")).then_some(()) }
    })
    .await;
    let (code, body) = ready(&service).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["database"]["error"], "read_replica_behind");
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica_admin)
        .await
        .unwrap();
    replica_admin.close().await;
    eventually("the replica to catch up", Duration::from_secs(30), || {
        let routed = routed.clone();
        async move { routed.degraded().is_none().then_some(()) }
    })
    .await;

    // Replica down: reads answer from the primary, /ready degraded (200).
    tokio::task::block_in_place(|| replica.stop());
    eventually(
        "degraded: replica unavailable",
        Duration::from_secs(10),
        || {
            let routed = routed.clone();
            async move { (routed.degraded() == Some("read_replica_unavailable")).then_some(()) }
        },
    )
    .await;
    let before = routed.read_counts();
    for b in [batch, written_while_paused] {
        assert!(status(&*routed, &acme, b).await.is_some());
    }
    assert_eq!(routed.read_counts().primary, before.primary + 2);
    let (code, body) = ready(&service).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(
        body["checks"]["database"]["error"], "read_replica_unavailable",
        "{body}"
    );

    // The facade wires DATABASE_READ_URL the same way.
    let facade = BackendUrls::new(&primary_url, "database", "memory")
        .with_read_database(Some(replica_url.clone()))
        .connect()
        .await
        .unwrap();
    eventually(
        "the facade's router to see the replica down",
        Duration::from_secs(10),
        || {
            let repo = facade.repository.clone();
            async move { (repo.degraded() == Some("read_replica_unavailable")).then_some(()) }
        },
    )
    .await;
    assert!(status(&*facade.repository, &acme, batch).await.is_some());

    // Back up: the replica serves again.
    tokio::task::block_in_place(|| replica.start());
    eventually("the replica back in use", Duration::from_secs(30), || {
        let routed = routed.clone();
        async move { routed.degraded().is_none().then_some(()) }
    })
    .await;
    let (code, body) = ready(&service).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    admin.close().await;
}
