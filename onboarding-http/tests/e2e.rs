//! End-to-end over real HTTP: a server on an ephemeral port with real
//! workers, and a webhook receiver on another.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::*;
use onboarding_core::memory::MemoryWebhooks;
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, EventSink, IngestConfig, OnboardingService, ProcessError, Processor, WorkItem,
    Worker, WorkerConfig,
};
use onboarding_http::webhook::{verify, UrlPolicy, WebhookConfig, WebhookSink, Webhooks};
use onboarding_http::{router, ServeConfig};
use onboarding_redis::testing::TestPrefix;
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::{Engine, SqlOptions};
use serde_json::{json, Value};

/// Serves `app` the way the examples do ([`onboarding_http::serve`]).
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(onboarding_http::serve(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    ));
    addr
}

/// Fails permanently for domains starting with `fail`.
struct PickyProcessor;

#[async_trait]
impl Processor for PickyProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        if item.organization.domain.as_str().starts_with("fail") {
            Err(ProcessError::Permanent("provisioning refused".into()))
        } else {
            Ok(())
        }
    }
}

fn fast_worker() -> WorkerConfig {
    WorkerConfig::default()
        .with_poll_wait(Duration::from_millis(50))
        .with_sweep(Duration::from_millis(100), Duration::from_secs(60))
        .with_announce_grace(Duration::from_millis(100))
        .with_shutdown_timeout(Duration::from_secs(2))
}

// The end-to-end tests' own calls, beside `call`.
impl HttpClient {
    /// Polls the batch until `done` holds, with a deadline (no fixed sleeps).
    async fn wait_for(&self, batch: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(
            "the batch to get there",
            Duration::from_secs(15),
            || async {
                let (status, _, body) = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/batches/{batch}"),
                        key,
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
                if done(&body) {
                    Ok(body)
                } else {
                    Err(body)
                }
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_over_http_reaches_completed_on_memory() {
    seed_request_reaches_completed(Backends::memory()).await;
}

/// SQLite, PostgreSQL (a fresh database each, dropped at the end) and
/// PostgreSQL + the Redis queue and cache (a fresh key prefix, deleted at
/// the end). Needs the servers `.ci/services.sh` starts; a missing server
/// fails the test.
async fn seed_request_reaches_completed_on(engine: Engine, redis: Option<TestPrefix>) {
    let db = TestDatabase::create(engine).await;
    let sql = db.connect(SqlOptions::default()).await;
    let mut backends = Backends::new(
        sql.repository(),
        sql.queue(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );
    if let Some(prefix) = &redis {
        backends.queue = Arc::new(prefix.queue(Duration::from_secs(30)).await);
        backends.cache = Arc::new(prefix.cache().await);
    }
    seed_request_reaches_completed(backends).await;
    sql.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_over_http_reaches_completed_on_sqlite() {
    seed_request_reaches_completed_on(Engine::Sqlite, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_over_http_reaches_completed_on_postgres_and_redis() {
    seed_request_reaches_completed_on(Engine::Postgres, Some(TestPrefix::create().await)).await;
}

async fn seed_request_reaches_completed(backends: Backends) {
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let worker = Worker::new(backends, Arc::new(PickyProcessor), fast_worker()).start();
    let addr = serve(router(service, config().build())).await;
    let client = HttpClient::new(addr);

    // The seed's request, byte for byte, answered with the seed's body.
    let seed = json!({"organizations": [{"name": "Acme Corporation", "domain": "acme.com", "contact_email": "contact@acme.com"}]});
    let (status, headers, body) = client
        .call(
            reqwest::Method::POST,
            "/api/bulk-onboard",
            ACME_KEY,
            Some(&seed),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(headers["content-type"], "application/json");
    let batch = body["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        json!({"batch_id": batch, "message": "Bulk onboarding initiated successfully", "organizations_count": 1})
    );
    let done = client
        .wait_for(&batch, ACME_KEY, |b| b["state"] == "completed")
        .await;
    assert_eq!(done["counts"]["completed"], 1);
    assert_eq!(done["percent"], 100.0);
    assert!(done["completed_at"].is_string());
    assert_eq!(done["eta_seconds"], Value::Null);

    // A failing organization ends failed with its error history, and can be re-driven.
    let body = json!({"organizations": [org("Ok", "ok-org.com"), org("Nope", "fail-org.com")]});
    let (status, headers, accepted) = client
        .call(
            reqwest::Method::POST,
            "/api/v1/bulk-onboard",
            ACME_KEY,
            Some(&body),
        )
        .await;
    assert_eq!(status, 202);
    let location = headers["location"].to_str().unwrap().to_owned();
    let batch = accepted["batch_id"].as_str().unwrap().to_owned();
    let done = client
        .wait_for(&batch, ACME_KEY, |b| b["state"] == "completed")
        .await;
    assert_eq!(
        (
            done["counts"]["completed"].clone(),
            done["counts"]["failed"].clone()
        ),
        (json!(1), json!(1))
    );
    let (_, _, failed) = client
        .call(
            reqwest::Method::GET,
            &format!("{location}/organizations?status=failed"),
            ACME_KEY,
            None,
        )
        .await;
    let item = &failed["items"][0];
    assert_eq!(item["domain"], "fail-org.com");
    assert_eq!(item["outcome"], "failed");
    assert_eq!(item["errors"][0]["message"], "provisioning refused");
    assert_eq!(item["errors"][0]["permanent"], true);
    let (status, _, retried) = client
        .call(
            reqwest::Method::POST,
            &format!("{location}/retry"),
            ACME_KEY,
            None,
        )
        .await;
    assert_eq!((status, retried["requeued"].clone()), (202, json!(1)));
    client
        .wait_for(&batch, ACME_KEY, |b| {
            b["state"] == "completed" && b["counts"]["failed"] == 1
        })
        .await;

    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);
}

/// Records webhook requests; answers 500 to the first `fail_first` of them.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: usize,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, String) {
        let receiver = Self {
            seen: Arc::default(),
            fail_first,
        };
        let r = receiver.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let r = r.clone();
                async move {
                    let mut seen = r.seen.lock().unwrap();
                    seen.push((headers, body));
                    if seen.len() <= r.fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let addr = serve(app).await;
        (receiver, format!("http://{addr}/hook"))
    }

    fn seen(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        eventually("the webhook requests", Duration::from_secs(15), || async {
            let seen = self.seen();
            if seen.len() >= n {
                Ok(seen)
            } else {
                Err(format!("only {} arrived", seen.len()))
            }
        })
        .await
    }
}

fn memory_backends(events: Arc<dyn EventSink>) -> Backends {
    Backends::new(
        Arc::new(MemoryRepository::new()),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        Arc::new(MemoryCache::default()),
        events,
    )
}

/// Webhooks over one in-memory store, allowed to send to this loopback receiver.
fn memory_webhooks(store: &Arc<MemoryWebhooks>) -> Webhooks {
    Webhooks::new(
        store.clone(),
        store.clone(),
        WebhookConfig::default()
            .with_policy(UrlPolicy::permissive())
            .with_retries(3, Duration::from_millis(20))
            .with_poll_interval(Duration::from_millis(20)),
    )
    .unwrap()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_completion_webhook_is_signed_retried_logged_and_replayable() {
    // The first two attempts fail; the third, retried from the log, succeeds.
    let (receiver, url) = Receiver::start(2).await;
    let store = Arc::new(MemoryWebhooks::new());
    let webhooks = memory_webhooks(&store);
    let _loop = webhooks.start();
    let sink = WebhookSink::new(webhooks.clone(), Arc::new(TracingEventSink));
    let backends = memory_backends(Arc::new(sink));
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let worker = Worker::new(backends, Arc::new(PickyProcessor), fast_worker()).start();
    let addr = serve(router(service, config().webhooks(webhooks).build())).await;
    let client = HttpClient::new(addr);

    // Each tenant registers its own endpoint and gets its own secret.
    let (status, _, acme) = client
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            ACME_KEY,
            Some(&json!({"url": url})),
        )
        .await;
    assert_eq!(status, 201, "{acme}");
    let secret = acme["secret"].as_str().unwrap().to_owned();
    assert_eq!(acme["events"], json!(["batch.completed"]));
    let (status, _, globex) = client
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            GLOBEX_KEY,
            Some(&json!({"url": url})),
        )
        .await;
    assert_eq!(status, 201);
    let other_secret = globex["secret"].as_str().unwrap().to_owned();
    assert_ne!(secret, other_secret);
    let (_, _, listed) = client
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/endpoints",
            ACME_KEY,
            None,
        )
        .await;
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
    assert!(
        listed["endpoints"][0].get("secret").is_none(),
        "a listing shows no secret"
    );

    let (status, _, accepted) = client
        .call(
            reqwest::Method::POST,
            "/api/v1/bulk-onboard",
            ACME_KEY,
            Some(&orgs(3)),
        )
        .await;
    assert_eq!(status, 202);
    let batch = accepted["batch_id"].as_str().unwrap().to_owned();
    let seen = receiver.wait_for(3).await;

    // Every attempt carries the same Webhook-Id and acme's signature only.
    let id = seen[0].0["webhook-id"].to_str().unwrap().to_owned();
    for (headers, body) in &seen {
        assert_eq!(headers["webhook-id"], id.as_str());
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(verify(&[&secret], headers, body, unix_now()), Ok(()));
        assert!(verify(&[&other_secret], headers, body, unix_now()).is_err());
        assert!(
            verify(&[&secret], headers, body, unix_now() + 600).is_err(),
            "too old"
        );
    }
    let payload: Value = serde_json::from_slice(&seen[2].1).unwrap();
    assert_eq!(payload["type"], "batch.completed");
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["data"]["batch_id"], batch.as_str());
    assert_eq!(payload["data"]["tenant"], "acme");
    assert_eq!(payload["data"]["total"], 3);
    assert_eq!(payload["data"]["counts"]["completed"], 3);
    assert_eq!(payload["data"]["changes"]["created"], 3);

    // The log holds one delivery with its three attempts, for acme only.
    let deadline = Instant::now() + Duration::from_secs(5);
    let delivery = loop {
        let (status, _, list) = client
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/webhooks/deliveries?batch_id={batch}"),
                ACME_KEY,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let d = list["deliveries"][0].clone();
        if d["status"] == "delivered" || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["response_status"], 204);
    let delivery_id = delivery["id"].as_str().unwrap();
    let (_, _, detail) = client
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/webhooks/deliveries/{delivery_id}"),
            ACME_KEY,
            None,
        )
        .await;
    let attempts = detail["attempts_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["response_status"], 500);
    assert!(attempts[0]["error"].is_string());
    assert_eq!(attempts[2]["delivered"], true);
    let (_, _, theirs) = client
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/deliveries",
            GLOBEX_KEY,
            None,
        )
        .await;
    assert_eq!(theirs["deliveries"], json!([]));

    // Replay: the same body and id again, tenant-scoped.
    let replay_path = format!("/api/v1/webhooks/deliveries/{delivery_id}/replay");
    let (status, _, _) = client
        .call(reqwest::Method::POST, &replay_path, GLOBEX_KEY, None)
        .await;
    assert_eq!(status, 404);
    let (status, _, replayed) = client
        .call(reqwest::Method::POST, &replay_path, ACME_KEY, None)
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        (replayed["status"].clone(), replayed["attempts"].clone()),
        (json!("delivered"), json!(4))
    );
    let seen = receiver.wait_for(4).await;
    assert_eq!(seen[3].0["webhook-id"], id.as_str());
    assert_eq!(seen[3].1, seen[2].1, "a replay sends the same body");

    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_retried_from_the_log_then_failed() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let store = Arc::new(MemoryWebhooks::new());
    let webhooks = memory_webhooks(&store);
    let endpoint = webhooks
        .register(&tenant("acme"), &url, &["batch.completed".to_owned()])
        .await
        .unwrap();
    let inner = onboarding_core::memory::RecordingEventSink::new();
    let sink = WebhookSink::new(webhooks.clone(), Arc::new(inner.clone()));
    let event = onboarding_core::Event::BatchCompleted {
        tenant: tenant("acme"),
        batch_id: onboarding_core::model::BatchId::new(),
        counts: Default::default(),
        completed_at: onboarding_core::model::now(),
    };
    // Publishing records the delivery; sending is the loop's business.
    sink.publish(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!(
        inner.events().len(),
        1,
        "the inner sink still got the event"
    );
    let _loop = webhooks.start();
    let query = onboarding_core::webhooks::DeliveryQuery::latest(10);
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let list = webhooks.deliveries(&tenant("acme"), &query).await.unwrap();
        assert_eq!(list.len(), 1);
        if list[0].status == onboarding_core::webhooks::DeliveryStatus::Failed {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "still {:?}", list[0]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.attempts, 3, "the configured attempts, then failed");
    assert_eq!(
        record.last_error.as_deref(),
        Some("could not connect to the endpoint")
    );
    assert_eq!(record.endpoint_id, endpoint.id);
    // The same event published again (the core's sweeper) is not a second delivery.
    sink.publish(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!(
        webhooks
            .deliveries(&tenant("acme"), &query)
            .await
            .unwrap()
            .len(),
        1
    );
    // A tenant without an endpoint: nothing to deliver.
    let other = onboarding_core::Event::BatchCompleted {
        tenant: tenant("globex"),
        batch_id: onboarding_core::model::BatchId::new(),
        counts: Default::default(),
        completed_at: onboarding_core::model::now(),
    };
    sink.publish(&[other]).await.unwrap();
    assert!(webhooks
        .deliveries(&tenant("globex"), &query)
        .await
        .unwrap()
        .is_empty());
    let debug = format!("{webhooks:?} {endpoint:?}");
    assert!(
        !debug.contains(&endpoint.secret) && !debug.contains(&url),
        "{debug}"
    );
}
