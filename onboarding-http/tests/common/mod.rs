//! Shared test helpers: an app over memory backends, request helpers, and a
//! repository that is down or hangs.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding_core::model::*;
use onboarding_core::queue::Job;
use onboarding_core::repository::*;
use onboarding_core::{Backends, Error, ErrorKind, IngestConfig, OnboardingService, Result};
use onboarding_http::{router, HttpConfig, HttpConfigBuilder, RateLimit};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub const ACME_KEY: &str = "acme-key-0123456789";
pub const GLOBEX_KEY: &str = "globex-key-0123456789";

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// Keys for `acme` and `globex`, a generous rate limit.
pub fn config() -> HttpConfigBuilder {
    HttpConfig::builder()
        .api_key(tenant("acme"), ACME_KEY)
        .api_key(tenant("globex"), GLOBEX_KEY)
        .rate_limit(Some(RateLimit::per_second(10_000.0)))
}

pub fn memory_service() -> OnboardingService {
    OnboardingService::new(Backends::memory(), IngestConfig::default())
}

pub fn app() -> (Router, OnboardingService) {
    let service = memory_service();
    (router(service.clone(), config().build()), service)
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The pointers of a problem's errors.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["code"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the answer is a problem document with this status.
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "status {status}"
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:bulk-onboarding:problem:"));
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        assert!(self.body["errors"].is_array());
        self
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

pub fn request(
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    match body {
        Some(bytes) => builder
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub async fn post_json(app: &Router, uri: &str, key: &str, body: &Value) -> Answer {
    send(
        app,
        request(
            Method::POST,
            uri,
            Some(key),
            Some(serde_json::to_vec(body).unwrap()),
        ),
    )
    .await
}

pub async fn get(app: &Router, uri: &str, key: Option<&str>) -> Answer {
    send(app, request(Method::GET, uri, key, None)).await
}

pub fn org(name: &str, domain: &str) -> Value {
    json!({"name": name, "domain": domain, "contact_email": format!("contact@{}", domain.trim_end_matches('.'))})
}

pub fn orgs(n: usize) -> Value {
    json!({"organizations": (0..n).map(|i| org(&format!("Org {i}"), &format!("org{i}.com"))).collect::<Vec<_>>()})
}

/// How the broken repository misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Broken {
    /// Every call fails with `Unavailable`.
    Down,
    /// Every call hangs (until the request timeout).
    Hang,
}

/// A repository that is down or hangs: for 503 and timeout answers.
#[derive(Debug)]
pub struct BrokenRepository(pub Broken);

impl BrokenRepository {
    async fn fail<T>(&self) -> Result<T> {
        if let Broken::Hang = self.0 {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Err(Error::unavailable(
            "cannot reach the database",
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (secret-host:5432)",
            ),
        ))
    }
}

#[async_trait]
impl OrgRepository for BrokenRepository {
    async fn store_submission(&self, _: &Submission) -> Result<StoreResult> {
        self.fail().await
    }
    async fn claim_items(&self, _: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        self.fail().await
    }
    async fn extend_leases(&self, _: &[Lease], _: Timestamp, _: Timestamp) -> Result<Vec<ItemId>> {
        self.fail().await
    }
    async fn finish_items(&self, _: &[Finish], _: Timestamp, _: Duration) -> Result<Vec<ItemId>> {
        self.fail().await
    }
    async fn release_items(&self, _: &[Lease], _: Timestamp) -> Result<Vec<Job>> {
        self.fail().await
    }
    async fn sweep(&self, _: Timestamp, _: Duration, _: u32) -> Result<Vec<Job>> {
        self.fail().await
    }
    async fn complete_batches(&self, _: &[BatchId], _: Timestamp) -> Result<Vec<BatchStatus>> {
        self.fail().await
    }
    async fn complete_open_batches(&self, _: Timestamp, _: u32) -> Result<Vec<BatchStatus>> {
        self.fail().await
    }
    async fn unannounced_batches(&self, _: Timestamp, _: u32) -> Result<Vec<BatchStatus>> {
        self.fail().await
    }
    async fn mark_announced(&self, _: &[BatchId], _: Timestamp) -> Result<()> {
        self.fail().await
    }
    async fn cancel_batch(
        &self,
        _: &TenantId,
        _: BatchId,
        _: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        self.fail().await
    }
    async fn retry_failed(
        &self,
        _: &TenantId,
        _: BatchId,
        _: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        self.fail().await
    }
    async fn batch_status(&self, _: &TenantId, _: BatchId) -> Result<Option<BatchStatus>> {
        self.fail().await
    }
    async fn list_items(
        &self,
        _: &TenantId,
        _: BatchId,
        _: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        self.fail().await
    }
    async fn organization_by_domain(&self, _: &Domain) -> Result<Option<Organization>> {
        self.fail().await
    }
    async fn prune(&self, _: Timestamp, _: u32) -> Result<u64> {
        self.fail().await
    }
    async fn ping(&self) -> Result<()> {
        self.fail().await
    }
}

pub fn broken_service(mode: Broken) -> OnboardingService {
    let backends = Backends::new(
        Arc::new(BrokenRepository(mode)),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );
    OnboardingService::new(backends, IngestConfig::default())
}

/// A memory repository whose `store_submission` waits at a gate: slow
/// submissions held in progress for as long as a test needs.
pub struct GatedRepository {
    pub inner: MemoryRepository,
    /// `store_submission` calls that reached the gate.
    pub entered: AtomicUsize,
    /// One permit lets one `store_submission` through.
    pub gate: Semaphore,
}

impl GatedRepository {
    /// A closed gate in front of an empty memory repository.
    pub fn new() -> Self {
        Self {
            inner: MemoryRepository::new(),
            entered: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        }
    }
}

#[async_trait]
impl OrgRepository for GatedRepository {
    async fn store_submission(&self, s: &Submission) -> Result<StoreResult> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.inner.store_submission(s).await
    }
    async fn claim_items(&self, r: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        self.inner.claim_items(r).await
    }
    async fn extend_leases(&self, l: &[Lease], n: Timestamp, u: Timestamp) -> Result<Vec<ItemId>> {
        self.inner.extend_leases(l, n, u).await
    }
    async fn finish_items(&self, f: &[Finish], n: Timestamp, s: Duration) -> Result<Vec<ItemId>> {
        self.inner.finish_items(f, n, s).await
    }
    async fn release_items(&self, l: &[Lease], n: Timestamp) -> Result<Vec<Job>> {
        self.inner.release_items(l, n).await
    }
    async fn sweep(&self, n: Timestamp, s: Duration, l: u32) -> Result<Vec<Job>> {
        self.inner.sweep(n, s, l).await
    }
    async fn complete_batches(&self, b: &[BatchId], n: Timestamp) -> Result<Vec<BatchStatus>> {
        self.inner.complete_batches(b, n).await
    }
    async fn complete_open_batches(&self, n: Timestamp, l: u32) -> Result<Vec<BatchStatus>> {
        self.inner.complete_open_batches(n, l).await
    }
    async fn unannounced_batches(&self, c: Timestamp, l: u32) -> Result<Vec<BatchStatus>> {
        self.inner.unannounced_batches(c, l).await
    }
    async fn mark_announced(&self, b: &[BatchId], n: Timestamp) -> Result<()> {
        self.inner.mark_announced(b, n).await
    }
    async fn cancel_batch(
        &self,
        t: &TenantId,
        b: BatchId,
        n: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        self.inner.cancel_batch(t, b, n).await
    }
    async fn retry_failed(
        &self,
        t: &TenantId,
        b: BatchId,
        n: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        self.inner.retry_failed(t, b, n).await
    }
    async fn batch_status(&self, t: &TenantId, b: BatchId) -> Result<Option<BatchStatus>> {
        self.inner.batch_status(t, b).await
    }
    async fn list_items(
        &self,
        t: &TenantId,
        b: BatchId,
        q: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        self.inner.list_items(t, b, q).await
    }
    async fn organization_by_domain(&self, d: &Domain) -> Result<Option<Organization>> {
        self.inner.organization_by_domain(d).await
    }
    async fn prune(&self, f: Timestamp, l: u32) -> Result<u64> {
        self.inner.prune(f, l).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

/// A service over `repository` and memory queue, cache and events.
pub fn service_over(repository: Arc<dyn OrgRepository>) -> OnboardingService {
    let backends = Backends::new(
        repository,
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );
    OnboardingService::new(backends, IngestConfig::default())
}

pub fn _unused(_: ErrorKind) {}
