//! Shared test helpers: an app over memory backends, request helpers, and a
//! service over a repository double (down, hanging, gated).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use onboarding_core::memory::MemoryRepository;
use onboarding_core::model::TenantId;
use onboarding_core::repository::OrgRepository;
use onboarding_core::testing::doubles::{Action, Double};
use onboarding_core::testing::eventually;
use onboarding_core::{Backends, IngestConfig, OnboardingService};
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

/// A service over `repository` (a test double) and memory queue, cache and events.
pub fn service_over(repository: Arc<dyn OrgRepository>) -> OnboardingService {
    let backends = Backends {
        repository,
        ..Backends::memory()
    };
    OnboardingService::new(backends, IngestConfig::default())
}

/// A memory repository whose every call fails with `Unavailable`.
pub fn down_repository() -> Arc<Double<MemoryRepository>> {
    Arc::new(Double::down(Arc::new(MemoryRepository::new())))
}

/// A memory repository whose `store_submission` waits at `gate` (one permit
/// lets one through): slow submissions held in progress for as long as a
/// test needs. Its `calls("store_submission")` counts those that arrived.
pub fn gated_repository(gate: &Arc<Semaphore>) -> Arc<Double<MemoryRepository>> {
    let gate = gate.clone();
    Arc::new(Double::new(Arc::new(MemoryRepository::new())).with_hook(
        move |call| match call.method {
            "store_submission" => Action::Gate(gate.clone()),
            _ => Action::Forward,
        },
    ))
}

/// Waits until `n` submissions reached the repository.
pub async fn until_entered(repository: &Double<MemoryRepository>, n: u64) {
    let what = "the submissions to reach the repository";
    eventually(what, Duration::from_secs(10), || async {
        let entered = repository.calls("store_submission");
        if entered >= n {
            Ok(())
        } else {
            Err(entered)
        }
    })
    .await;
}

/// A caller of an API served over TCP.
pub struct HttpClient {
    pub base: String,
    pub http: reqwest::Client,
}

impl HttpClient {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// `method path` with bearer `key` and a JSON body if any: the status,
    /// the headers and the JSON body (`Null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
