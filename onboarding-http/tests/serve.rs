//! `onboarding_http::serve` over real sockets: a slow header trickle is
//! closed within the header timeout, an idle keep-alive connection within
//! the idle timeout, connections past the cap wait, a client that sends a
//! whole oversized body before reading gets the 413 (lingering close), and
//! a graceful shutdown lets the request in progress finish.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use common::*;
use onboarding_http::{serve, ServeConfig};
use tokio::sync::{oneshot, Notify};

async fn start(app: Router, config: ServeConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, config, std::future::pending()));
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes (`Ok(0)`) or resets; what was read.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One `GET /health` on a fresh connection, answered within 1 s.
fn health_answers(addr: SocketAddr) -> bool {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut s);
    answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_trickle_is_closed_within_the_header_timeout() {
    let header_timeout = Duration::from_millis(500);
    let (app, _) = app();
    let addr = start(
        app,
        ServeConfig::default().with_header_timeout(header_timeout),
    )
    .await;
    let trickle = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
        // One header line every 100 ms, until the server closes.
        while started.elapsed() < Duration::from_secs(10) {
            if s.write_all(b"X-Slow: 1\r\n").is_err() {
                return started.elapsed();
            }
            match s.read(&mut [0u8; 64]) {
                Ok(0) => return started.elapsed(),
                Ok(_) => panic!("the server answered a request whose head never ended"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return started.elapsed(),
            }
        }
        started.elapsed()
    });
    // Meanwhile the server answers others.
    let other = tokio::task::spawn_blocking(move || health_answers(addr));
    assert!(
        other.await.unwrap(),
        "/health did not answer beside the trickle"
    );
    let closed_after = trickle.await.unwrap();
    assert!(
        closed_after >= header_timeout - Duration::from_millis(50)
            && closed_after < header_timeout + Duration::from_secs(3),
        "closed after {closed_after:?}, header timeout {header_timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (app, _) = app();
    let config = ServeConfig::default()
        .with_header_timeout(Duration::from_secs(30))
        .with_idle_timeout(idle);
    let addr = start(app, config).await;
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        let answered = Instant::now();
        read_until_closed(&mut s);
        answered.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed_after >= idle - Duration::from_millis(50) && closed_after < Duration::from_secs(10),
        "closed after {closed_after:?}, idle timeout {idle:?} (header timeout 30 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    let (app, _) = app();
    let config = ServeConfig::default()
        .with_max_connections(1)
        .with_header_timeout(Duration::from_secs(30));
    let addr = start(app, config).await;
    let holder = connect(addr);
    let waiting = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut first = [0u8; 12];
        let early = s.read(&mut first);
        assert!(
            early.is_err(),
            "answered while the only connection slot was taken: {early:?}"
        );
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
    .await
    .unwrap();
    drop(holder);
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = waiting;
        read_until_closed(&mut s)
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Python's `urllib` (and `requests`) send the whole body, then read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_a_whole_oversized_body_before_reading_gets_the_413() {
    let (app, _) = app();
    let addr = start(app, ServeConfig::default()).await;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let body = vec![b' '; 10 * 1024 * 1024];
        let head = format!(
            "POST /api/v1/bulk-onboard HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ACME_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body)
            .expect("the server reset the connection while the body was sent");
        read_until_closed(&mut s)
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_lets_the_request_in_progress_finish() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let app = {
        let (release, entered) = (release.clone(), entered.clone());
        Router::new().route(
            "/slow",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, ServeConfig::default(), async {
        let _ = stopped.await;
    }));
    let client = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s)
    });
    entered.notified().await;
    stop.send(()).unwrap();
    // Stopped accepting: a new connection is refused or never answered.
    let refused = tokio::task::spawn_blocking(move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let _ = s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
                read_until_closed(&mut s).is_empty()
            })
            .unwrap_or(true)
    });
    assert!(refused.await.unwrap());
    assert!(!server.is_finished(), "returned with a request in progress");
    release.notify_one();
    let answer = client.await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
