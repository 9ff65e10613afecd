//! The request timeout tells the truth: it never answers "503, try again"
//! for a submission whose store step has begun (that store could still
//! commit, and the retry would create a second batch); the answer is the
//! store's own outcome. Before the store step, a slow request is cut and
//! nothing is stored.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use common::*;
use onboarding_core::model::BatchId;
use onboarding_http::router;
use tokio::sync::Semaphore;

const V1: &str = "/api/v1/bulk-onboard";

#[tokio::test(start_paused = true)]
async fn a_store_step_past_the_request_timeout_answers_with_its_batch() {
    let gate = Arc::new(Semaphore::new(0));
    let repository = gated_repository(&gate);
    let service = service_over(repository.clone());
    let app = router(
        service.clone(),
        config().request_timeout(Duration::from_millis(100)).build(),
    );
    let submission = {
        let app = app.clone();
        tokio::spawn(async move { post_json(&app, V1, ACME_KEY, &orgs(3)).await })
    };
    while repository.calls("store_submission") == 0 {
        tokio::task::yield_now().await;
    }
    // Paused clock: this runs the request timeout out ten times over at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !submission.is_finished(),
        "answered while its store step was still running"
    );
    gate.add_permits(1);
    let answer = submission.await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let batch: BatchId = answer.body["batch_id"].as_str().unwrap().parse().unwrap();
    let status = service.batch_status(&tenant("acme"), batch).await.unwrap();
    assert_eq!(status.counts.total(), 3);
    assert_eq!(
        repository.calls("store_submission"),
        1,
        "one store, one batch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_cut_before_its_store_step_stores_nothing() {
    let gate = Arc::new(Semaphore::new(0));
    let repository = gated_repository(&gate);
    let app = router(
        service_over(repository.clone()),
        config()
            .request_timeout(Duration::from_millis(100))
            .retry_after(Duration::from_secs(2))
            .build(),
    );
    // A body that never ends: the request is still being read at the timeout.
    let endless = futures::stream::pending::<std::result::Result<Vec<u8>, std::io::Error>>();
    let request = Request::builder()
        .method(Method::POST)
        .uri(V1)
        .header("authorization", format!("Bearer {ACME_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(endless))
        .unwrap();
    let answer = send(&app, request).await;
    answer.assert_problem(503);
    assert_eq!(answer.header("retry-after"), Some("2"));
    assert_eq!(repository.calls("store_submission"), 0, "nothing stored");
}
