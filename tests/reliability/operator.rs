//! The operator endpoints of the real processes: the worker serves
//! `/health`, `/ready` and `/metrics` (with the engine's counters and
//! histograms) on its `METRICS_ADDR`; the server serves them on its own and
//! not on the public listener.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::harness::*;

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_server_serve_operator_endpoints_off_the_public_listener() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack =
        Deployment::new("operator", QueueKind::Database, Tuning::default(), recorder).await;
    let worker_port = free_port();
    // The worker takes it; the server is given a port of its own.
    stack.extra_env = vec![("METRICS_ADDR".into(), format!("127.0.0.1:{worker_port}"))];
    stack.start_server(&[]).await;
    stack.start_worker();
    let worker = format!("http://127.0.0.1:{worker_port}");
    let http = stack.http.clone();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    eventually("the worker's /health", Duration::from_secs(30), || {
        get(format!("{worker}/health"))
    })
    .await;
    assert_eq!(stack.submit(&tag(), 0..5).await.status, 202);
    stack.until_settled(5, Duration::from_secs(60)).await;

    let (ready, _) = get(format!("{worker}/ready")).await.unwrap();
    let (_, worker_metrics) = get(format!("{worker}/metrics")).await.unwrap();
    let (_, server_metrics) = get(format!("{}/metrics", stack.operator)).await.unwrap();
    let mut public = Vec::new();
    for path in ["/metrics", "/ready"] {
        public.push(get(format!("{}{path}", stack.base)).await.unwrap().0);
    }
    report(
        "operator",
        &[
            ("worker_ready", ready.to_string()),
            (
                "worker_completed",
                has_line(&worker_metrics, "onboarding_worker_completed_total 5").to_string(),
            ),
            ("public_metrics_ready", format!("{public:?}")),
        ],
    );
    assert_eq!(ready, 200);
    for line in [
        "onboarding_worker_claimed_total 5",
        "onboarding_worker_completed_total 5",
        "onboarding_worker_processing_seconds_count{outcome=\"completed\"} 5",
        "onboarding_worker_queue_wait_seconds_count 5",
    ] {
        assert!(
            has_line(&worker_metrics, line),
            "worker: missing {line:?}\n{worker_metrics}"
        );
    }
    assert!(
        has_line(&server_metrics, "onboarding_organizations_ingested_total 5"),
        "{server_metrics}"
    );
    assert_eq!(
        public,
        [404, 404],
        "/metrics and /ready on the public listener"
    );
    stack.teardown().await;
}
