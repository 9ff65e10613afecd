//! The HTTP surface of a real `examples/server.rs` process: a generated
//! corpus of bad requests, and the security checks.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIN: Duration = Duration::from_secs(60);

fn valid_org(n: usize, tag: &str) -> Value {
    json!({"name": format!("Org {n}"), "domain": format!("c{n}-{tag}.example.com"), "contact_email": format!("ops{n}@example.com")})
}

/// Something that is not a valid field value.
fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!([])),
        Just(json!({})),
        Just(json!("")),
        Just(json!("   ")),
        "[\\x00-\\x1f]{1,5}".prop_map(Value::String),
        "\\PC{256,300}".prop_map(Value::String),
        "[a-z]{1,10}".prop_map(Value::String),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("not a domain")),
        Just(json!("localhost")),
        Just(json!("a..b.com")),
        Just(json!("-bad-.com")),
        Just(json!("exa mple.com")),
        Just(json!("x@y")),
        Just(json!("@example.com")),
        Just(json!("<script>alert(1)</script>")),
        Just(json!("'; DROP TABLE organizations;--")),
        Just(json!("\u{202e}\u{0000}")),
    ]
}

/// A request body, nearly always with a defect (a generated junk value can
/// happen to be valid: such bodies are accepted, and only their own
/// organizations may be stored). Domains carry the placeholder `TAGX`,
/// replaced per request so that every stored row names its request.
fn bad_body(tag: String) -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![Just("name"), Just("domain"), Just("contact_email")];
    let defect_org = (field.clone(), junk(), 0usize..8, 1usize..8).prop_map({
        let tag = tag.clone();
        move |(field, value, at, len)| {
            let mut orgs: Vec<Value> = (0..len).map(|n| valid_org(n, &tag)).collect();
            let at = at % len;
            orgs[at][field] = value;
            json!({ "organizations": orgs }).to_string().into_bytes()
        }
    });
    let missing = (field, 1usize..5).prop_map({
        let tag = tag.clone();
        move |(field, len)| {
            let mut orgs: Vec<Value> = (0..len).map(|n| valid_org(n, &tag)).collect();
            orgs[0].as_object_mut().unwrap().remove(field);
            json!({ "organizations": orgs }).to_string().into_bytes()
        }
    });
    let duplicate = (2usize..6).prop_map({
        let tag = tag.clone();
        move |len| {
            let mut orgs: Vec<Value> = (0..len).map(|n| valid_org(n, &tag)).collect();
            let upper = orgs[0]["domain"].as_str().unwrap().to_uppercase();
            orgs[len - 1]["domain"] = json!(format!("{upper}."));
            json!({ "organizations": orgs }).to_string().into_bytes()
        }
    });
    let structure = junk().prop_map(|v| {
        let bodies = [
            json!({ "organizations": v.clone() }),
            json!({ "organisations": [v.clone()] }),
            json!([v.clone()]),
            v.clone(),
            json!({ "organizations": [v.clone()] }),
            json!({ "organizations": [], "mode": v.clone() }),
        ];
        let i = v.to_string().len() % bodies.len();
        bodies[i].to_string().into_bytes()
    });
    let options = (
        prop_oneof![Just("on_conflict"), Just("mode")],
        junk(),
        1usize..4,
    )
        .prop_map({
            let tag = tag.clone();
            move |(key, value, len)| {
                let orgs: Vec<Value> = (0..len).map(|n| valid_org(n, &tag)).collect();
                // Known values and null (which means "unset") are valid: junk only.
                let value = if value.is_null()
                    || value.is_string()
                        && ["update", "skip", "atomic", "partial"]
                            .contains(&value.as_str().unwrap())
                {
                    json!("sideways")
                } else {
                    value
                };
                let mut body = json!({ "organizations": orgs });
                body[key] = value;
                body.to_string().into_bytes()
            }
        });
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (0usize..60).prop_map({
            let tag = tag.clone();
            move |cut| {
                let s = json!({ "organizations": [valid_org(0, &tag)] }).to_string();
                s.as_bytes()[..cut.min(s.len() - 1)].to_vec()
            }
        }),
        Just(b"{\"organizations\": [\xff\xfe]}".to_vec()),
        Just(b"{\"organizations\": [{\"name\": \"a\"}]}}".to_vec()),
    ];
    let too_many = Just(()).prop_map(move |()| {
        let orgs: Vec<Value> = (0..1001).map(|n| valid_org(n, &tag)).collect();
        json!({ "organizations": orgs }).to_string().into_bytes()
    });
    prop_oneof![
        30 => defect_org,
        10 => missing,
        10 => duplicate,
        20 => structure,
        10 => options,
        19 => bytes,
        1 => too_many,
    ]
}

/// At least 10,000 generated bad requests: zero 5xx, zero panics, every
/// 4xx is problem+json, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus() {
    let _serial = serial().await;
    let n = count(10_000, 50_000);
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack = Deployment::new(
        "bad-input",
        QueueKind::Database,
        Tuning::default(),
        recorder,
    )
    .await;
    stack.start_server(&[]).await;
    let t = tag();
    // CI: the same corpus every run (a fixed seed); full runs draw a fresh one.
    let mut runner = if full() {
        TestRunner::new(Config::default())
    } else {
        TestRunner::deterministic()
    };
    let strategy = bad_body("TAGX".to_owned());
    let corpus: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let body = strategy.new_tree(&mut runner).unwrap().current();
            replace(&body, b"TAGX", format!("{t}x{i}").as_bytes())
        })
        .collect();
    let corpus = Arc::new(corpus);
    let stack = Arc::new(stack);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = 8;
    for lane in 0..lanes {
        let (corpus, stack) = (corpus.clone(), stack.clone());
        tasks.spawn(async move {
            let mut statuses: Vec<(u16, bool, usize)> = Vec::new();
            for i in (lane..corpus.len()).step_by(lanes) {
                let path = if i % 5 == 0 {
                    "/api/bulk-onboard"
                } else {
                    "/api/v1/bulk-onboard"
                };
                let r = stack
                    .http
                    .post(format!("{}{path}", stack.base))
                    .bearer_auth(&stack.key)
                    .header("content-type", "application/json")
                    .body(corpus[i].clone())
                    .send()
                    .await;
                let (status, problem) = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let ct = r
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body: Value =
                            serde_json::from_slice(&r.bytes().await.unwrap_or_default())
                                .unwrap_or(Value::Null);
                        let ok = ct.starts_with("application/problem+json")
                            && body["status"].as_u64() == Some(u64::from(status))
                            && body["title"].is_string();
                        (status, ok)
                    }
                    Err(_) => (0, false),
                };
                statuses.push((status, problem, i));
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    let elapsed = started.elapsed();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (s, _, _) in &all {
        *by_status.entry(*s).or_default() += 1;
    }
    let fivexx: Vec<_> = all
        .iter()
        .filter(|(s, _, _)| *s >= 500 || *s == 0)
        .collect();
    let accepted: Vec<_> = all.iter().filter(|(s, _, _)| *s < 400).collect();
    let not_problem: Vec<_> = all.iter().filter(|(s, p, _)| *s >= 400 && !p).collect();
    let accepted_ids: std::collections::HashSet<usize> =
        accepted.iter().map(|(_, _, i)| *i).collect();
    let domains: Vec<(String,)> = sqlx::query_as("SELECT domain FROM organizations")
        .fetch_all(&stack.pg().pool)
        .await
        .unwrap();
    let marker = format!("{t}x");
    let from_rejected: Vec<&String> = domains
        .iter()
        .map(|d| &d.0)
        .filter(|d| {
            let i = d
                .split_once(&marker)
                .and_then(|(_, rest)| rest.split('.').next())
                .and_then(|i| i.parse::<usize>().ok());
            !i.is_some_and(|i| accepted_ids.contains(&i))
        })
        .collect();
    let stored_orgs = domains.len() as i64;
    let stored_batches = stack.pg().count("SELECT count(*) FROM batches").await;
    // v1 must refuse an unknown mode / on_conflict (the seed route ignores
    // both; null means unset).
    let bad_options_accepted: Vec<_> = accepted
        .iter()
        .copied()
        .filter(|(_, _, i)| {
            let v: serde_json::Value = serde_json::from_slice(&corpus[*i]).unwrap_or_default();
            *i % 5 != 0
                && (!matches!(
                    v.get("mode").filter(|m| !m.is_null()).map(|m| m.as_str()),
                    None | Some(Some("atomic" | "partial"))
                ) || !matches!(
                    v.get("on_conflict")
                        .filter(|m| !m.is_null())
                        .map(|m| m.as_str()),
                    None | Some(Some("update" | "skip"))
                ))
        })
        .collect();
    let mut stack = Arc::try_unwrap(stack).ok().expect("no other holder");
    let alive = stack.server.as_mut().unwrap().try_exit().is_none();
    let panics = stack
        .server
        .as_ref()
        .unwrap()
        .log_text()
        .matches("panicked")
        .count();
    report(
        "bad-input-corpus",
        &[
            ("requests", all.len().to_string()),
            ("by_status", format!("{by_status:?}")),
            ("5xx_or_no_answer", fivexx.len().to_string()),
            ("panics", panics.to_string()),
            ("4xx_not_problem_json", not_problem.len().to_string()),
            ("accepted_valid_by_chance", accepted.len().to_string()),
            ("stored_organizations", stored_orgs.to_string()),
            ("stored_batches", stored_batches.to_string()),
            (
                "stored_from_rejected_requests",
                from_rejected.len().to_string(),
            ),
            (
                "v1_accepted_bad_options",
                bad_options_accepted.len().to_string(),
            ),
            ("elapsed_s", elapsed.as_secs().to_string()),
        ],
    );
    let show = |v: &[&(u16, bool, usize)]| -> Vec<String> {
        v.iter()
            .take(3)
            .map(|(s, _, i)| {
                format!(
                    "{s}: {}",
                    String::from_utf8_lossy(&corpus[*i])
                        .chars()
                        .take(300)
                        .collect::<String>()
                )
            })
            .collect()
    };
    assert!(all.len() >= 10_000);
    assert!(fivexx.is_empty(), "5xx: {:?}", show(&fivexx));
    assert!(
        accepted.len() < all.len() / 10,
        "the generator makes mostly bad bodies"
    );
    assert!(
        bad_options_accepted.is_empty(),
        "v1 accepted unknown options: {:?}",
        show(&bad_options_accepted)
    );
    assert!(
        not_problem.is_empty(),
        "not problem+json: {:?}",
        show(&not_problem)
    );
    assert!(
        from_rejected.is_empty(),
        "stored from rejected requests: {:?}",
        &from_rejected[..from_rejected.len().min(5)]
    );
    assert_eq!(
        stored_batches,
        accepted.len() as i64,
        "a batch per accepted request only"
    );
    assert!(alive && panics == 0);
    stack.teardown().await;
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Writes a raw HTTP request and reads the status line and headers.
async fn raw(
    addr: &str,
    head: String,
    body: impl FnOnce(tokio::net::tcp::OwnedWriteHalf) -> tokio::task::JoinHandle<()>,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = body(write);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer = tokio::time::timeout(MIN, async {
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    writer.abort();
    assert!(answer.is_ok(), "no answer within a minute");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, elapsed)
}

/// Missing or wrong key → 401; another tenant's batch → 404; burst → 429
/// with Retry-After; 10 MB body → 413; a slow body cut by the timeout;
/// HTML and SQL in names stored and returned verbatim as JSON strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack =
        Deployment::new("security", QueueKind::Database, Tuning::default(), recorder).await;
    stack
        .start_server(&[("RATE_LIMIT", "5/s"), ("REQUEST_TIMEOUT_MS", "2000")])
        .await;
    let addr = stack.base.trim_start_matches("http://").to_owned();
    let t = tag();
    let mut fields: Vec<(&str, String)> = Vec::new();

    // 401
    let body = orgs_body(&t, 0..1).to_string();
    let no_key = stack
        .http
        .post(format!("{}/api/v1/bulk-onboard", stack.base))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let no_key_status = no_key.status().as_u16();
    let no_key_ct = no_key.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let wrong = stack
        .post_json("/api/v1/bulk-onboard", "wrong-key-123", body.clone())
        .await;
    let basic = stack
        .http
        .get(format!(
            "{}/api/v1/batches/{}",
            stack.base,
            uuid::Uuid::new_v4()
        ))
        .header("authorization", format!("Basic {}", stack.key))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    fields.push(("missing_key", no_key_status.to_string()));
    fields.push(("wrong_key", wrong.status.to_string()));
    fields.push(("basic_scheme", basic.to_string()));
    assert_eq!(no_key_status, 401);
    assert!(no_key_ct.starts_with("application/problem+json"));
    assert_eq!(wrong.status, 401);
    assert!(wrong.content_type.starts_with("application/problem+json"));
    assert_eq!(basic, 401);

    // Another tenant's batch: 404 everywhere, and it is untouched.
    let mine = stack.submit(&t, 0..2).await;
    assert_eq!(mine.status, 202, "{:?}", mine.body);
    let id = mine.batch_id();
    let (s1, _) = stack
        .get(&format!("/api/v1/batches/{id}"), &stack.other_key)
        .await;
    let (s2, _) = stack
        .get(
            &format!("/api/v1/batches/{id}/organizations"),
            &stack.other_key,
        )
        .await;
    let s3 = stack
        .post_json(
            &format!("/api/v1/batches/{id}/retry"),
            &stack.other_key,
            String::new(),
        )
        .await
        .status;
    let s4 = stack
        .post_json(
            &format!("/api/v1/batches/{id}/cancel"),
            &stack.other_key,
            String::new(),
        )
        .await
        .status;
    let (own, status) = stack
        .get(&format!("/api/v1/batches/{id}"), &stack.key)
        .await;
    fields.push(("other_tenant_batch", format!("{s1}/{s2}/{s3}/{s4}")));
    assert_eq!((s1, s2, s3, s4), (404, 404, 404, 404));
    assert_eq!(own, 200);
    assert_eq!(
        status["cancelled_at"],
        Value::Null,
        "not cancelled by the other tenant"
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // refill the bucket (5/s, burst 10)

    // HTML and SQL in names: stored and returned verbatim as JSON strings.
    let names = [
        "<script>alert('x')</script> & <b>Co</b>",
        "Robert'); DROP TABLE organizations;--",
        "\" OR 1=1 -- \\ ' ; SELECT pg_sleep(10)",
        "Ünïcødé 🚀 <img src=x onerror=alert(1)>",
    ];
    let orgs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(n, name)| json!({"name": name, "domain": format!("h{n}-{t}.example.com"), "contact_email": format!("a{n}@example.com")}))
        .collect();
    let body = json!({ "organizations": orgs }).to_string();
    let r = stack
        .http
        .post(format!("{}/api/v1/bulk-onboard/validate", stack.base))
        .bearer_auth(&stack.key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let echoed: Value = r.json_value_pub().await;
    let stored_ok = stack
        .post_json("/api/v1/bulk-onboard", &stack.key, body)
        .await;
    assert_eq!(stored_ok.status, 202, "{:?}", stored_ok.body);
    let stored: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT name FROM organizations WHERE domain LIKE 'h_-{t}.example.com' ORDER BY domain"
    ))
    .fetch_all(&stack.pg().pool)
    .await
    .unwrap();
    let returned: Vec<&str> = echoed["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    fields.push((
        "html_sql_names_verbatim",
        (returned == names && stored.iter().map(|s| s.0.as_str()).collect::<Vec<_>>() == names)
            .to_string(),
    ));
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(returned, names);
    assert_eq!(
        stored.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        names
    );
    assert!(
        stack.pg().count("SELECT count(*) FROM organizations").await > 0,
        "the table is still there"
    );

    // 10 MB body → 413 (answered without reading it all).
    let big = 10 * 1024 * 1024;
    let head = format!("POST /api/v1/bulk-onboard HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {big}\r\n\r\n", stack.key);
    let (s, text, took) = raw(&addr, head, |mut w| {
        tokio::spawn(async move {
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(big / chunk.len()) {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        })
    })
    .await;
    fields.push(("10MB_body", format!("{s} in {} ms", took.as_millis())));
    assert_eq!(s, 413, "{text}");
    assert!(text.to_lowercase().contains("application/problem+json"));

    // A slow body: one byte every 500 ms, cut by the 2 s request timeout.
    let head = format!("POST /api/v1/bulk-onboard HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n", stack.key);
    let (s, text, took) = raw(&addr, head, |mut w| {
        tokio::spawn(async move {
            for _ in 0..1000 {
                if w.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    })
    .await;
    fields.push(("slow_body", format!("{s} after {} ms", took.as_millis())));
    assert!(s == 503 || s == 408, "{text}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(text.to_lowercase().contains("retry-after"), "{text}");

    // Burst → 429 with Retry-After (5/s, burst 10).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut limited = 0;
    let mut retry_after = true;
    for _ in 0..30 {
        let r = stack
            .http
            .get(format!("{}/api/v1/batches/{id}", stack.base))
            .bearer_auth(&stack.key)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            limited += 1;
            retry_after &= r.headers().contains_key("retry-after");
        }
    }
    fields.push(("burst_30_429s", limited.to_string()));
    assert!(limited >= 15, "{limited} of 30 limited");
    assert!(retry_after);
    assert!(stack.server.as_mut().unwrap().try_exit().is_none());
    report("security", &fields);
    stack.teardown().await;
}

trait JsonPub {
    async fn json_value_pub(self) -> Value;
}

impl JsonPub for reqwest::Response {
    async fn json_value_pub(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap_or_default()).unwrap_or(Value::Null)
    }
}
