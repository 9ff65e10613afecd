//! Slow clients against the real server: 2,000 connections that send one
//! header line and then trickle a header every 500 ms (slowloris). The
//! server keeps answering `/health` and a normal submission within 1 s, and
//! closes every slow connection within its header timeout.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::harness::*;

/// The server's `HEADER_TIMEOUT_MS` in this scenario.
const HEADER_TIMEOUT: Duration = Duration::from_secs(8);
/// How late after the header timeout a slow connection may still close (a
/// loaded 2-core machine runs 2,000 watchdogs, and the test's own reads).
const CLOSE_SLACK: Duration = Duration::from_millis(1500);

/// Opens a slow connection: connected, its request line and one header sent.
async fn open(addr: &str) -> Result<(TcpStream, Instant), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let started = Instant::now();
    stream
        .write_all(b"POST /api/v1/bulk-onboard HTTP/1.1\r\nHost: slow\r\n")
        .await
        .map_err(|e| format!("first line: {e}"))?;
    Ok((stream, started))
}

/// Trickles a header line every 500 ms; how long after its first byte the
/// server closed the connection.
async fn trickle(mut stream: TcpStream, started: Instant) -> Result<Duration, String> {
    let mut buf = [0u8; 256];
    let give_up = HEADER_TIMEOUT * 4;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(started.elapsed()),
                Ok(_) => return Err("the server answered a request whose head never ended".into()),
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if started.elapsed() > give_up {
                    return Err(format!("still open after {give_up:?}"));
                }
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Ok(started.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_others_and_are_closed_within_the_header_timeout() {
    let _serial = serial().await;
    let slow = count(2000, 2000);
    // Each slow connection is a file descriptor here (and one in the server,
    // whose soft limit the example raises itself).
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit > slow as u64 + 512,
        "the open-file limit ({limit}) is too low for {slow} connections: raise `ulimit -n`"
    );
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack = Deployment::new(
        "slow-clients",
        QueueKind::Database,
        Tuning::default(),
        recorder.clone(),
    )
    .await;
    let header_ms = HEADER_TIMEOUT.as_millis().to_string();
    stack
        .start_server(&[("HEADER_TIMEOUT_MS", header_ms.as_str())])
        .await;
    stack.start_worker();
    let addr = stack.base.trim_start_matches("http://").to_owned();

    // Open them 200 at a time (the listen backlog), all within about a second.
    let opening = Arc::new(Semaphore::new(200));
    let opened = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..slow)
        .map(|_| {
            let (addr, opening, opened) = (addr.clone(), opening.clone(), opened.clone());
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.unwrap();
                let result = open(&addr).await;
                opened.fetch_add(1, Ordering::SeqCst);
                drop(permit);
                let (stream, started) = result?;
                trickle(stream, started).await
            })
        })
        .collect();
    eventually("every slow connection to open", HEADER_TIMEOUT, || {
        let opened = opened.clone();
        async move { (opened.load(Ordering::SeqCst) == slow).then_some(()) }
    })
    .await;
    let opened_in = started.elapsed();

    // While they trickle: /health and a normal submission, within 1 s each.
    let (mut health, mut submits) = (Vec::new(), Vec::new());
    let t = tag();
    for round in 0..5 {
        let h = Instant::now();
        let r = stack
            .http
            .get(format!("{}/health", stack.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        health.push(h.elapsed());
        let s = stack.submit(&t, round * 10..round * 10 + 10).await;
        assert_eq!(s.status, 202, "{}", s.body);
        submits.push(s.latency);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let during = started.elapsed();
    assert!(
        during < HEADER_TIMEOUT,
        "the checks ran {during:?}, past the slow connections' lifetime"
    );

    let mut closed = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(after) => closed.push(after),
            Err(e) => failures.push(e),
        }
    }
    let early = closed
        .iter()
        .filter(|d| **d + Duration::from_millis(100) < HEADER_TIMEOUT)
        .count();
    let late = closed
        .iter()
        .filter(|d| **d > HEADER_TIMEOUT + CLOSE_SLACK)
        .count();
    let settled = stack.until_settled(50, Duration::from_secs(60)).await;
    let alive = stack.server.as_mut().unwrap().try_exit().is_none();
    let ms =
        |values: &[Duration], p: f64| percentile(&mut values.to_vec(), p).as_millis().to_string();
    let completed = settled.get("completed").copied().unwrap_or(0);
    report(
        "slow-clients",
        &[
            ("slow_connections", slow.to_string()),
            ("opened_in_ms", opened_in.as_millis().to_string()),
            ("closed_by_server", closed.len().to_string()),
            ("errors", failures.len().to_string()),
            ("header_timeout_ms", header_ms.clone()),
            ("closed_after_p50_ms", ms(&closed, 50.0)),
            ("closed_after_max_ms", ms(&closed, 100.0)),
            ("closed_early", early.to_string()),
            ("closed_late", late.to_string()),
            ("health_max_ms", ms(&health, 100.0)),
            ("submit_max_ms", ms(&submits, 100.0)),
            ("completed", completed.to_string()),
        ],
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(closed.len(), slow);
    assert_eq!((early, late), (0, 0), "closed outside the header timeout");
    assert!(
        health.iter().all(|d| *d < Duration::from_secs(1)),
        "{health:?}"
    );
    assert!(
        submits.iter().all(|d| *d < Duration::from_secs(1)),
        "{submits:?}"
    );
    assert_eq!(settled.get("completed").copied(), Some(50));
    assert!(alive, "the server exited");
    stack.teardown().await;
}
