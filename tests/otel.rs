//! OpenTelemetry traces (feature `otel`): the HTTP API and a worker in this
//! process, spans exported over OTLP/HTTP (JSON) to a receiver the test
//! serves on loopback. A request and the processing of the items it created
//! share one trace; without the variables nothing is exported.
//!
//! Each test installs its subscriber for its own thread only
//! (`set_default` on a current-thread runtime: the server, the worker and
//! the client run on it), so the two run side by side.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use onboarding::otel::OtelConfig;
use onboarding::web::{router, serve, HttpConfig, ServeConfig};
use onboarding::{Backends, IngestConfig, NoopProcessor, OnboardingService, Worker, WorkerConfig};
use onboarding_core::model::TenantId;
use onboarding_core::testing::eventually;
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

const KEY: &str = "acme-key-0123456789";
const WITHIN: Duration = Duration::from_secs(30);

/// One exported span.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with JSON bodies, every span kept.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
    requests: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let app = Router::new()
            .route("/v1/traces", post(accept))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn named(&self, name: &str) -> Vec<Exported> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

async fn accept(State(receiver): State<Receiver>, body: Bytes) -> &'static str {
    *receiver.requests.lock().unwrap() += 1;
    let request: Value = serde_json::from_slice(&body).expect("an OTLP JSON body");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut spans = receiver.spans.lock().unwrap();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Exported {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                });
            }
        }
    }
    "{}"
}

/// The HTTP API over memory backends with a worker, served on loopback.
async fn start_app() -> (SocketAddr, onboarding::WorkerHandle) {
    let backends = Backends::memory();
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let config = HttpConfig::builder()
        .api_key(TenantId::parse("acme").unwrap(), KEY)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router(service, config),
        ServeConfig::default(),
        std::future::pending(),
    ));
    let worker = Worker::new(
        backends,
        Arc::new(NoopProcessor),
        WorkerConfig::default().with_poll_wait(Duration::from_millis(50)),
    )
    .start();
    (addr, worker)
}

/// Submits three organizations; the batch id.
async fn submit(http: &reqwest::Client, addr: SocketAddr) -> String {
    let organizations: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("Org {i}"), "domain": format!("org{i}.example.com"), "contact_email": format!("ops@org{i}.example.com")}))
        .collect();
    let answer = http
        .post(format!("http://{addr}/api/v1/bulk-onboard"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({ "organizations": organizations }).to_string())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    body["batch_id"].as_str().unwrap().to_owned()
}

async fn completed(http: &reqwest::Client, addr: SocketAddr, batch: &str) -> Option<()> {
    let answer = http
        .get(format!("http://{addr}/api/v1/batches/{batch}"))
        .bearer_auth(KEY)
        .send()
        .await
        .ok()?;
    let status: Value = serde_json::from_slice(&answer.bytes().await.ok()?).ok()?;
    (status["state"] == "completed").then_some(())
}

#[tokio::test]
async fn a_request_and_its_items_share_a_trace() {
    let (receiver, receiver_addr) = Receiver::start().await;
    let mut config = OtelConfig::new(
        format!("http://{receiver_addr}/v1/traces"),
        "onboarding-test",
    );
    config.json = true;
    config.batch_delay = Some(Duration::from_millis(100));
    let otel = config.start().unwrap();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(
            otel.layer()
                .with_filter(tracing::level_filters::LevelFilter::INFO),
        ),
    );
    let (addr, worker) = start_app().await;
    let http = reqwest::Client::new();
    let batch = submit(&http, addr).await;

    let (request, processed) = eventually("the request's and 3 items' spans", WITHIN, || {
        let receiver = receiver.clone();
        async move {
            let request = receiver.named("bulk_onboard_v1").pop()?;
            let processed = receiver.named("process_item");
            (processed.len() >= 3).then_some((request, processed))
        }
    })
    .await;
    assert_eq!(request.service, "onboarding-test");
    assert_eq!(request.trace_id.len(), 32, "{request:?}");
    for span in &processed {
        assert_eq!(
            span.trace_id, request.trace_id,
            "item processing of batch {batch} continues the request's trace"
        );
        assert_eq!(
            span.parent_span_id, request.span_id,
            "the request's span is the parent of each attempt"
        );
        assert_ne!(span.span_id, request.span_id);
    }
    worker.shutdown().await;
    tokio::task::spawn_blocking(move || otel.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn without_the_variables_nothing_is_exported() {
    let off = OtelConfig::from_vars("onboarding-test", |_| None).unwrap();
    assert!(off.is_none(), "no endpoint: traces are off");
    let (receiver, _) = Receiver::start().await;
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let (addr, worker) = start_app().await;
    let http = reqwest::Client::new();
    let batch = submit(&http, addr).await;
    eventually("the batch completed", WITHIN, || {
        completed(&http, addr, &batch)
    })
    .await;
    worker.shutdown().await;
    assert_eq!(*receiver.requests.lock().unwrap(), 0);
}
