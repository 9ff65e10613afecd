//! A bounded fuzz pass over the body parsers and validators: generated
//! bodies (random bytes, JSON of every shape, organization-like objects
//! with hostile strings, and all of them truncated or with a byte changed)
//! are sent to every route that reads a body. Each answer must be one of
//! the route's documented statuses, every error a problem document, and
//! nothing may panic or answer 5xx.
//!
//! Fixed case count (`FUZZ_CASES`, default 1,000 per target) and a fixed
//! seed (`FUZZ_RANDOM=1` draws a fresh one), so CI runs the same cases.
//! The file import (`/api/v1/imports`) is fuzzed the same way with CSV and
//! NDJSON bodies: header permutations, RFC 4180 quoting done right and
//! wrong, hostile fields, invalid UTF-8, and NDJSON lines of every shape.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

/// One route that parses a body, how to send it, and what it may answer.
struct Target {
    route: &'static str,
    /// `Content-Type` values to send (`None`: no header).
    content_types: &'static [Option<&'static str>],
    /// The documented statuses.
    statuses: &'static [u16],
    body: BoxedStrategy<Vec<u8>>,
    /// The field a success answer must carry (a count above 0, or an id).
    accepted: fn(&Value) -> bool,
}

const JSON_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("application/merge-patch+json"),
    Some("text/plain"),
];
const FILE_TYPES: &[Option<&str>] = &[
    Some("text/csv"),
    Some("text/csv; charset=utf-8"),
    Some("application/x-ndjson"),
    Some("application/x-ndjson"),
    None,
    Some("application/json"),
];
const SUBMIT: &[u16] = &[202, 400, 413, 415, 422];
const VALIDATE: &[u16] = &[200, 400, 413, 415, 422];

fn targets() -> Vec<Target> {
    vec![
        Target {
            route: "/api/bulk-onboard",
            content_types: JSON_TYPES,
            statuses: SUBMIT,
            body: json_bodies(),
            accepted: counted,
        },
        Target {
            route: "/api/v1/bulk-onboard",
            content_types: JSON_TYPES,
            statuses: SUBMIT,
            body: json_bodies(),
            accepted: counted,
        },
        Target {
            route: "/api/v1/bulk-onboard/validate",
            content_types: JSON_TYPES,
            statuses: VALIDATE,
            body: json_bodies(),
            accepted: counted,
        },
        Target {
            route: "/api/v1/imports",
            content_types: FILE_TYPES,
            statuses: SUBMIT,
            body: file_bodies(),
            accepted: |body| body["batch_id"].is_string(),
        },
    ]
}

fn counted(body: &Value) -> bool {
    body["organizations_count"].as_u64() > Some(0)
}

/// Strings that break naive parsers: control characters, Unicode edge
/// cases, punycode, dots, quotes, very long runs.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,30}",
        "[a-z]{1,10}\\.(com|org|co\\.uk|xn--p1ai|test|local|)",
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f\u{85}\u{200b}\u{feff} ]{0,8}",
        "xn--[a-z0-9-]{0,20}\\.com",
        "[\"'<>&\\\\;%{}]{0,12}",
        Just("a".repeat(300)),
        Just(format!("{}.com", "a".repeat(64))),
        Just("münchen.de".to_owned()),
        Just("ACME.COM.".to_owned()),
        Just("a@b".to_owned()),
        Just("contact@acme.com".to_owned()),
    ]
}

/// Any JSON value, a few levels deep.
fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,14}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An organization-like object: mostly plausible values, sometimes hostile
/// ones, a key missing or an extra key.
fn organization() -> impl Strategy<Value = Value> {
    let field = |plausible: BoxedStrategy<String>| {
        prop_oneof![
            6 => plausible.prop_map(Value::String),
            2 => hostile_string().prop_map(Value::String),
            1 => junk(),
        ]
    };
    let name = "[A-Za-z][A-Za-z0-9 &.'-]{0,30}".boxed();
    let domain = "[a-z][a-z0-9-]{0,12}\\.(com|org|net|io|de|co\\.uk)".boxed();
    let email = "[a-z]{1,8}@[a-z]{1,8}\\.(com|org)".boxed();
    (field(name), field(domain), field(email), 0u8..12).prop_map(|(name, domain, email, drop)| {
        let mut org = json!({"name": name, "domain": domain, "contact_email": email});
        let object = org.as_object_mut().unwrap();
        match drop {
            0 => drop_key(object, "name"),
            1 => drop_key(object, "domain"),
            2 => {
                object.insert("extra".into(), json!([1, 2]));
            }
            _ => {}
        }
        org
    })
}

fn drop_key(object: &mut serde_json::Map<String, Value>, key: &str) {
    object.remove(key);
}

/// Submission-shaped bodies and junk, serialized, then sometimes damaged.
fn json_bodies() -> BoxedStrategy<Vec<u8>> {
    let option = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        prop_oneof![
            Just("update"),
            Just("skip"),
            Just("atomic"),
            Just("partial"),
            Just("Atomic")
        ]
        .prop_map(|s| Some(json!(s))),
        junk().prop_map(Some),
    ];
    let submission = (
        prop::collection::vec(prop_oneof![20 => organization(), 1 => junk()], 0..6),
        option.clone(),
        option,
    )
        .prop_map(|(organizations, on_conflict, mode)| {
            let mut body = json!({ "organizations": organizations });
            if let Some(v) = on_conflict {
                body["on_conflict"] = v;
            }
            if let Some(v) = mode {
                body["mode"] = v;
            }
            body
        });
    let text = prop_oneof![
        12 => submission.prop_map(|v| v.to_string().into_bytes()),
        2 => junk().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => Just(b"{\"organizations\": [".to_vec()),
    ];
    damaged(text.boxed())
}

/// Sometimes truncates the bytes, or changes or inserts one byte.
fn damaged(text: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (text, 0u8..16, any::<prop::sample::Index>(), any::<u8>())
        .prop_map(|(mut bytes, damage, at, byte)| {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                match damage {
                    0 => bytes.truncate(i),
                    1 => bytes[i] = byte,
                    2 => bytes.insert(i, byte),
                    _ => {}
                }
            }
            bytes
        })
        .boxed()
}

/// One CSV field: plausible, hostile, quoted right, or quoted wrong.
fn csv_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,12}\\.(com|org|de)",
        2 => "[a-z]{1,8}@[a-z]{1,8}\\.com",
        2 => hostile_string(),
        1 => hostile_string().prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        1 => hostile_string().prop_map(|s| format!("\"{s}")),
        1 => Just("a\"b".to_owned()),
    ]
}

/// CSV files (a header of the known columns in any order, sometimes one
/// missing or an extra one, rows of any width) and NDJSON files (one
/// organization-like object or junk per line), then sometimes damaged as
/// the JSON bodies are.
fn file_bodies() -> BoxedStrategy<Vec<u8>> {
    let complete =
        prop::sample::subsequence(vec!["external_id", "extra"], 0..=2).prop_map(|mut optional| {
            optional.extend(["name", "domain", "contact_email"]);
            optional
        });
    let any_columns = prop::sample::subsequence(
        vec!["name", "domain", "contact_email", "external_id", "extra"],
        1..=5,
    );
    let header = prop_oneof![3 => complete, 1 => any_columns].prop_shuffle();
    let csv = (
        header,
        prop::collection::vec(prop::collection::vec(csv_field(), 0..6), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(header, rows, crlf, bom)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = if bom {
                "\u{feff}".to_owned()
            } else {
                String::new()
            };
            text.push_str(&header.join(","));
            for row in rows {
                text.push_str(eol);
                text.push_str(&row.join(","));
            }
            text.into_bytes()
        });
    let ndjson = prop::collection::vec(prop_oneof![8 => organization(), 1 => junk()], 0..8)
        .prop_map(|lines| {
            let lines: Vec<String> = lines.iter().map(Value::to_string).collect();
            lines.join("\n").into_bytes()
        });
    let text = prop_oneof![
        6 => csv,
        6 => ndjson,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ];
    damaged(text.boxed())
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn runner() -> TestRunner {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var("FUZZ_RANDOM").is_ok_and(|v| v == "1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

#[test]
fn fuzz_body_parsers_answer_documented_statuses_only() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, _) = app();
    for target in targets() {
        let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
        let strategy = (target.body.clone(), 0..target.content_types.len());
        let result = runner().run(&strategy, |(body, type_index)| {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(target.route)
                .header("authorization", format!("Bearer {ACME_KEY}"));
            if let Some(content_type) = target.content_types[type_index] {
                request = request.header("content-type", content_type);
            }
            let request = request.body(Body::from(body)).unwrap();
            let answer = runtime.block_on(send(&app, request));
            let status = answer.status.as_u16();
            *seen.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(
                target.statuses.contains(&status),
                "{} answered {status}: {}",
                target.route,
                answer.body
            );
            if status >= 400 {
                prop_assert_eq!(
                    answer.header("content-type"),
                    Some("application/problem+json")
                );
                prop_assert_eq!(answer.body["status"].as_u64(), Some(u64::from(status)));
            } else {
                prop_assert!((target.accepted)(&answer.body), "{}", answer.body);
            }
            Ok(())
        });
        eprintln!(
            "FUZZ {}: {} cases, statuses {:?}",
            target.route,
            cases(),
            seen.borrow()
        );
        if let Err(e) = result {
            panic!("{}: {e}", target.route);
        }
    }
}
