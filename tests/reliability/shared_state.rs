//! One deployment, many processes (DESIGN §2, guarantee 11): two server
//! processes and two worker processes on PostgreSQL + Redis. Both servers
//! answer a batch's status within 1 s of the database; a key revoked
//! through one server is refused by the other within 1 s; a webhook
//! delivery sent by a worker is listed and replayed through a server; the
//! per-tenant rate limit holds across both servers; a receiver verifies
//! each delivery with its own tenant's secret only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use onboarding::web::webhook::verify;
use serde_json::{json, Value};

use crate::harness::*;

const ADMIN_TOKEN: &str = "reliability-admin-token-0123";
/// Per tenant, shared by both servers: burst 100, then 50 a second.
const RATE: &str = "50/s";
const BURST: f64 = 100.0;
const PER_SECOND: f64 = 50.0;
/// What "within 1 s" may take on top: one polling interval.
const SLACK: Duration = Duration::from_millis(100);

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on loopback: records every request, answers 204.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `check` (a request) until it holds; returns when the request
/// that saw it was sent, counted from the start, and fails when no request
/// sent within `limit` saw it (the server's own latency is not counted).
async fn within<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        let sent = started.elapsed();
        if check().await {
            return sent;
        }
        assert!(sent < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_share_one_truth() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::from_millis(5))).await;
    let mut stack = Deployment::new(
        "shared-state",
        QueueKind::Redis(redis_url()),
        Tuning::default(),
        recorder,
    )
    .await;
    for (k, v) in [
        ("CACHE_URL", redis_url()),
        ("WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("WEBHOOK_POLL_MS", "200".to_owned()),
        ("WEBHOOK_RETRY_BASE_MS", "200".to_owned()),
    ] {
        stack.extra_env.push((k.to_owned(), v));
    }
    let server_env = [("ADMIN_TOKEN", ADMIN_TOKEN), ("RATE_LIMIT", RATE)];
    stack.start_server(&server_env).await;
    let (mut second, second_base, _) = stack.spawn_server("server-2", &server_env).await;
    let bases = [stack.base.clone(), second_base];
    stack.start_worker();
    stack.start_worker();
    let http = stack.http.clone();
    let mut fields: Vec<(&str, String)> = Vec::new();

    // Each tenant registers its webhook endpoint through a different server.
    let (hook, seen) = receiver().await;
    let mut secrets = Vec::new();
    for (base, key) in [(&bases[0], &stack.key), (&bases[1], &stack.other_key)] {
        let (status, body) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/v1/webhooks/endpoints"),
            key,
            Some(json!({"url": hook})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        secrets.push(body["secret"].as_str().unwrap().to_owned());
    }

    // Freshness: both servers follow the workers' progress within 1 s.
    let t = tag();
    let acme = stack.submit(&t, 0..40).await;
    assert_eq!(acme.status, 202, "{:?}", acme.body);
    let globex = stack
        .post_json(
            "/api/v1/bulk-onboard",
            &stack.other_key,
            orgs_body(&format!("{t}g"), 0..10).to_string(),
        )
        .await;
    assert_eq!(globex.status, 202);
    let batch = acme.batch_id();
    for base in &bases {
        let (status, body) = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/api/v1/batches/{batch}"),
            &stack.key,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let pg = stack.pg();
    let done_sql = format!(
        "SELECT count(*) FROM batch_items WHERE batch_id = '{batch}' AND status = 'completed'"
    );
    eventually(
        "the workers to finish the batch",
        Duration::from_secs(60),
        || async { (pg.count(&done_sql).await == 40).then_some(()) },
    )
    .await;
    let mut lags = Vec::new();
    for base in &bases {
        let lag = within(
            "a server's status to show the finished batch",
            Duration::from_secs(1) + SLACK,
            || async {
                let (_, body) = call(
                    &http,
                    reqwest::Method::GET,
                    format!("{base}/api/v1/batches/{batch}"),
                    &stack.key,
                    None,
                )
                .await;
                body["counts"]["completed"] == 40
            },
        )
        .await;
        lags.push(lag);
    }
    fields.push((
        "status_lag_ms",
        format!(
            "{:?}",
            lags.iter().map(Duration::as_millis).collect::<Vec<_>>()
        ),
    ));

    // Webhooks: the workers send each tenant's completion, signed with its secret only.
    let deliveries = eventually(
        "both completion webhooks",
        Duration::from_secs(30),
        || async {
            let seen = seen.lock().unwrap().clone();
            (seen.len() >= 2).then_some(seen)
        },
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (headers, body) in &deliveries {
        let payload: Value = serde_json::from_slice(body).unwrap();
        let (own, other) = if payload["data"]["tenant"] == "acme" {
            (&secrets[0], &secrets[1])
        } else {
            (&secrets[1], &secrets[0])
        };
        assert_eq!(verify(&[own], headers, body, now), Ok(()), "{payload}");
        assert!(
            verify(&[other], headers, body, now).is_err(),
            "another tenant's secret verifies"
        );
    }
    fields.push(("webhooks_verified", deliveries.len().to_string()));

    // The delivery a worker sent is listed and replayed through the second server.
    let (status, list) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/api/v1/webhooks/deliveries?batch_id={batch}", bases[1]),
        &stack.key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let delivery = &list["deliveries"][0];
    assert_eq!(delivery["status"], "delivered", "{list}");
    let id = delivery["id"].as_str().unwrap();
    let (status, replayed) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/v1/webhooks/deliveries/{id}/replay", bases[1]),
        &stack.key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        (replayed["status"].clone(), replayed["attempts"].clone()),
        (json!("delivered"), json!(2))
    );
    let (_, theirs) = call(
        &http,
        reqwest::Method::GET,
        format!("{}/api/v1/webhooks/deliveries/{id}", bases[0]),
        &stack.other_key,
        None,
    )
    .await;
    assert_eq!(theirs["status"], 404, "another tenant sees the delivery");

    // A key created and revoked through the first server: the second refuses it within 1 s.
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/v1/admin/tenants/acme/keys", bases[0]),
        ADMIN_TOKEN,
        Some(json!({"label": "reliability"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let status_url = format!("{}/api/v1/batches/{batch}", bases[1]);
    let answers = |expected: u16| {
        let (http, url, key) = (&http, &status_url, &key);
        move || async move {
            call(http, reqwest::Method::GET, url.clone(), key, None)
                .await
                .0
                == expected
        }
    };
    within(
        "the new key to work on the second server",
        Duration::from_secs(1) + SLACK,
        answers(200),
    )
    .await;
    let prefix = created["prefix"].as_str().unwrap();
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/v1/admin/keys/{prefix}/revoke", bases[0]),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let revoke_lag = within(
        "the second server to refuse the revoked key",
        Duration::from_secs(1) + SLACK,
        answers(401),
    )
    .await;
    fields.push(("revoke_lag_ms", revoke_lag.as_millis().to_string()));

    // The rate limit of one tenant holds across both servers.
    let started = Instant::now();
    let requests = (0..300).map(|i| {
        let url = format!("{}/api/v1/batches/{batch}", bases[i % 2]);
        let (http, key) = (http.clone(), stack.other_key.clone());
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = statuses.iter().filter(|s| **s == 404 || **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let ceiling = BURST + PER_SECOND * elapsed + 2.0;
    fields.push(("rate_allowed", allowed.to_string()));
    fields.push(("rate_limited", limited.to_string()));
    fields.push(("rate_ceiling", format!("{ceiling:.0}")));
    assert_eq!(allowed + limited, 300, "{statuses:?}");
    assert!(
        (allowed as f64) <= ceiling,
        "{allowed} requests passed in {elapsed:.2} s: more than one shared allowance ({ceiling:.0})"
    );

    report("shared-state", &fields);
    second.kill();
    stack.teardown().await;
}
