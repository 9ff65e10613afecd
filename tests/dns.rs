//! Domain checks by DNS (`onboarding::dns`), against DNS servers this test
//! starts on loopback UDP ports (never the internet): one serving a small
//! test zone, one that never answers.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use onboarding::dns::{DnsConfig, DomainCheck, Lookup, DNS_UNAVAILABLE, DOMAIN_NOT_FOUND};
use onboarding::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding::model::{BatchId, Domain, ItemStatus, TenantId};
use onboarding::repository::{ItemQuery, OrgRepository};
use onboarding::{
    Backends, IngestConfig, OnboardingService, RetryPolicy, SubmitOptions, Worker, WorkerConfig,
};
use onboarding_core::testing::fixtures::until_batch;
use onboarding_core::testing::guarantees::ScriptedProcessor;
use tokio::net::UdpSocket;

/// The test zone.
#[derive(Clone, Copy)]
enum Answer {
    /// MX record.
    Mail,
    /// No MX, an A record.
    WebOnly,
    /// `NXDOMAIN`.
    Missing,
    /// Exists, but no MX, A or AAAA record.
    Empty,
    /// `SERVFAIL`.
    Broken,
}

fn zone() -> HashMap<&'static str, Answer> {
    HashMap::from([
        ("mail-ok.com.", Answer::Mail),
        ("web-only.com.", Answer::WebOnly),
        ("gone.com.", Answer::Missing),
        ("nothing.com.", Answer::Empty),
        ("broken.com.", Answer::Broken),
    ])
}

fn answer(query: &Message) -> Message {
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(query.queries.iter().cloned());
    let Some(question) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let name = question.name().to_ascii().to_lowercase();
    let code = match (zone().get(name.as_str()), question.query_type()) {
        (Some(Answer::Mail), RecordType::MX) => {
            let exchange = Name::from_ascii("mx.mail-ok.com.").unwrap();
            response.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::MX(MX::new(10, exchange)),
            ));
            ResponseCode::NoError
        }
        (Some(Answer::WebOnly), RecordType::A) => {
            response.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
            ResponseCode::NoError
        }
        (Some(Answer::Missing) | None, _) => ResponseCode::NXDomain,
        (Some(Answer::Broken), _) => ResponseCode::ServFail,
        (Some(_), _) => ResponseCode::NoError,
    };
    response.metadata.response_code = code;
    response
}

/// Serves the test zone on a loopback UDP port until the test ends.
async fn zone_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Ok(bytes) = answer(&query).to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    address
}

/// A bound UDP port that reads queries and never answers.
async fn silent_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while socket.recv_from(&mut buf).await.is_ok() {}
    });
    address
}

fn config(resolver: SocketAddr) -> DnsConfig {
    DnsConfig::default()
        .with_resolver(resolver)
        .with_timeout(Duration::from_millis(200))
        .with_attempts(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_tell_existing_missing_and_unanswered_domains_apart() {
    let check = DomainCheck::new(ScriptedProcessor::new(), config(zone_server().await)).unwrap();
    let lookup = |d: &str| {
        let domain = Domain::from_normalized(d);
        let check = &check;
        async move { check.lookup(&domain).await }
    };
    assert_eq!(lookup("mail-ok.com").await, Lookup::Exists);
    assert_eq!(lookup("web-only.com").await, Lookup::Exists);
    assert!(matches!(lookup("gone.com").await, Lookup::NotFound(why) if why.contains("NXDOMAIN")));
    assert!(
        matches!(lookup("nothing.com").await, Lookup::NotFound(why) if why.contains("no MX, A or AAAA"))
    );
    assert!(matches!(lookup("broken.com").await, Lookup::Unavailable(_)));

    let silent = DomainCheck::new(ScriptedProcessor::new(), config(silent_server().await)).unwrap();
    let started = Instant::now();
    let answer = silent.lookup(&Domain::from_normalized("mail-ok.com")).await;
    assert!(matches!(answer, Lookup::Unavailable(_)), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Runs a worker wrapped in a domain check over one batch until it is
/// finished; answers the batch's items by domain and the wrapped processor.
async fn run_batch(
    resolver: SocketAddr,
    domains: &[&str],
) -> (
    HashMap<String, onboarding::model::BatchItem>,
    Arc<ScriptedProcessor>,
) {
    let repository = Arc::new(MemoryRepository::new());
    let backends = Backends::new(
        repository.clone(),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        Arc::new(MemoryCache::new(1000)),
        Arc::new(TracingEventSink),
    );
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let tenant = TenantId::parse("dns-test").unwrap();
    let organizations: Vec<serde_json::Value> = domains
        .iter()
        .map(|d| serde_json::json!({"name": d, "domain": d, "contact_email": format!("it@{d}")}))
        .collect();
    let accepted = service
        .submit_json(
            &tenant,
            &serde_json::json!({ "organizations": organizations }),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    let batch: BatchId = accepted.batch_id;

    let inner = ScriptedProcessor::new();
    let processor = Arc::new(DomainCheck::new(inner.clone(), config(resolver)).unwrap());
    let retry = RetryPolicy::default()
        .with_max_attempts(3)
        .with_base_delay(Duration::from_millis(20))
        .with_jitter(0.0);
    let worker_config = WorkerConfig::default()
        .with_retry(retry)
        .with_poll_wait(Duration::from_millis(50));
    let worker = Worker::new(backends, processor, worker_config).start();
    until_batch(
        &*repository,
        &tenant,
        batch,
        "the batch to finish",
        Duration::from_secs(60),
        |status| status.is_finished(),
    )
    .await;
    worker.shutdown().await;
    let query = ItemQuery {
        limit: 100,
        ..ItemQuery::default()
    };
    let items = repository
        .list_items(&tenant, batch, &query)
        .await
        .unwrap()
        .unwrap()
        .items
        .into_iter()
        .map(|item| (item.domain.as_str().to_owned(), item))
        .collect();
    (items, inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_domains_fail_permanently_and_existing_ones_are_processed() {
    let domains = ["mail-ok.com", "web-only.com", "gone.com", "nothing.com"];
    let (items, inner) = run_batch(zone_server().await, &domains).await;
    for domain in ["mail-ok.com", "web-only.com"] {
        assert_eq!(items[domain].status, ItemStatus::Completed, "{domain}");
    }
    for domain in ["gone.com", "nothing.com"] {
        let item = &items[domain];
        assert_eq!(item.status, ItemStatus::Failed, "{domain}");
        assert_eq!(item.attempts, 1, "{domain}: failed at once, not retried");
        assert_eq!(item.errors.len(), 1);
        assert!(item.errors[0].permanent);
        assert!(
            item.errors[0].message.starts_with(DOMAIN_NOT_FOUND),
            "{}",
            item.errors[0].message
        );
    }
    let calls: Vec<u32> = domains.iter().map(|d| inner.calls(d)).collect();
    assert_eq!(calls, [1, 1, 0, 0], "calls of the wrapped processor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_lookups_are_retried() {
    // A resolver that times out, and one that answers SERVFAIL.
    let (silent, silent_inner) = run_batch(silent_server().await, &["mail-ok.com"]).await;
    let (broken, broken_inner) = run_batch(zone_server().await, &["broken.com"]).await;
    for item in [&silent["mail-ok.com"], &broken["broken.com"]] {
        assert_eq!(item.status, ItemStatus::Failed, "{}", item.domain);
        assert_eq!(item.attempts, 3, "{}: every attempt was used", item.domain);
        assert_eq!(item.errors.len(), 3);
        for error in &item.errors {
            assert!(!error.permanent);
            assert!(
                error.message.starts_with(DNS_UNAVAILABLE),
                "{}",
                error.message
            );
        }
    }
    assert_eq!(silent_inner.calls("mail-ok.com"), 0, "the processor ran");
    assert_eq!(broken_inner.calls("broken.com"), 0, "the processor ran");
}
