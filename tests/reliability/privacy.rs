//! Personal data stays where it belongs: the built-in welcome step logs ids
//! and domains, never an organization's name or contact email; and the
//! `PROCESSOR_URL` client does not follow a redirect (a 307 would re-send
//! the organization's data to wherever it points).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::post;
use serde_json::json;

use crate::harness::*;

/// A server and one worker on the SQL queue, with `env` for both.
async fn stack(scenario: &str, env: Vec<(String, String)>) -> Deployment {
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack =
        Deployment::new(scenario, QueueKind::Database, Tuning::default(), recorder).await;
    stack.extra_env = env;
    stack.start_server(&[]).await;
    stack.start_worker();
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_step_logs_no_name_or_email() {
    let _serial = serial().await;
    // The built-in step (no PROCESSOR_URL), logging at INFO.
    let stack = stack(
        "privacy-log",
        vec![
            ("PROCESSOR_URL".into(), String::new()),
            ("RUST_LOG".into(), "info".into()),
        ],
    )
    .await;
    let t = tag();
    let orgs: Vec<_> = (0..5)
        .map(|n| {
            json!({
                "name": format!("Private Person {n} {t}"),
                "domain": format!("p{n}-{t}.example.com"),
                "contact_email": format!("private.person{n}.{t}@example.com"),
            })
        })
        .collect();
    let r = stack
        .post_json(
            "/api/v1/bulk-onboard",
            &stack.key,
            json!({ "organizations": orgs }).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let settled = stack.until_settled(5, Duration::from_secs(60)).await;
    assert_eq!(settled.get("completed").copied(), Some(5));
    let log = stack.workers[0].log_text();
    let welcomed = log.matches("welcome aboard").count();
    let names = log.matches("Private Person").count();
    let emails = log.matches("private.person").count();
    let domains = log.matches(&format!("-{t}.example.com")).count();
    report(
        "privacy-log",
        &[
            ("welcome_lines", welcomed.to_string()),
            ("names_in_log", names.to_string()),
            ("emails_in_log", emails.to_string()),
            ("domains_in_log", domains.to_string()),
        ],
    );
    assert_eq!(welcomed, 5, "{log}");
    assert_eq!((names, emails), (0, 0), "{log}");
    assert!(
        domains >= 5,
        "the domain is what identifies the line: {log}"
    );
    stack.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_client_does_not_follow_redirects() {
    let _serial = serial().await;
    // `/process` answers 307 to `/elsewhere`, which counts what reaches it.
    let elsewhere = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/process",
            post(move || async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, format!("http://{addr}/elsewhere"))],
                )
            }),
        )
        .route(
            "/elsewhere",
            post({
                let elsewhere = elsewhere.clone();
                move || async move {
                    elsewhere.fetch_add(1, Ordering::SeqCst);
                    StatusCode::OK
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let process = format!("http://{addr}/process");
    let stack = stack("privacy-redirect", vec![("PROCESSOR_URL".into(), process)]).await;
    let r = stack.submit(&tag(), 0..3).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let settled = stack.until_settled(3, Duration::from_secs(60)).await;
    let followed = elsewhere.load(Ordering::SeqCst);
    report(
        "privacy-redirect",
        &[
            ("items", "3".into()),
            (
                "failed",
                settled.get("failed").copied().unwrap_or(0).to_string(),
            ),
            ("redirects_followed", followed.to_string()),
        ],
    );
    assert_eq!(
        followed, 0,
        "organization data was re-sent to the redirect target"
    );
    // A 3xx is not success: the items fail (permanently, so at once).
    assert_eq!(settled.get("failed").copied(), Some(3), "{settled:?}");
    stack.teardown().await;
}
