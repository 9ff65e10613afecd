//! Property tests of request validation.

use onboarding_core::model::{ConflictPolicy, SubmitMode};
use onboarding_core::validate::{
    normalize_domain, normalize_email, normalize_name, validate_json, validate_request, JsonBody,
    Limits, OrganizationInput, SubmitRequest, ValidRequest,
};
use onboarding_core::{ErrorKind, FieldError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Characters domain-like input is built from: LDH in both cases, letters
/// with case mappings or IDNA mappings, and a few troublemakers.
const DOMAIN_CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'z', 'A', 'B', 'Z', '0', '1', '9', '-', '-', 'ü', 'Ü', 'ß', 'é', 'ñ', 'ø',
    'α', 'Σ', 'ς', 'Ж', 'я', '中', '文', 'ア', '한', '😀', 'Ａ', 'ｂ', 'İ', 'ı', 'ſ', 'K', 'ﬁ',
    '_', '\u{200d}', '\u{ad}', '\u{301}', '٣', 'א',
];

const SUFFIXES: &[&str] = &[
    "com",
    "COM",
    "de",
    "co.uk",
    "CO.UK",
    "org",
    "io",
    "github.io",
    "рф",
    "xn--p1ai",
    "中国",
    "bücher",
    "invalidtld",
    "",
];

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly plain ASCII labels…
        3 => "[a-zA-Z0-9][a-zA-Z0-9-]{0,12}[a-zA-Z0-9]?",
        // …some mixed with Unicode and odd characters…
        2 => proptest::collection::vec(proptest::sample::select(DOMAIN_CHARS), 1..10)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        // …and some punycode-looking ones.
        1 => "xn--[a-z0-9-]{1,10}",
    ]
}

/// Domain-like strings: labels, a suffix, an optional trailing dot or two,
/// optional surrounding whitespace.
fn domain_like() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(label(), 0..4),
        proptest::sample::select(SUFFIXES),
        prop_oneof![Just(""), Just("."), Just(".."), Just("。")],
        prop_oneof![Just(""), Just(" "), Just("\t"), Just("\u{3000}")],
    )
        .prop_map(|(labels, suffix, dot, ws)| {
            let mut parts = labels;
            if !suffix.is_empty() {
                parts.push(suffix.to_owned());
            }
            format!("{ws}{}{dot}{ws}", parts.join("."))
        })
}

/// Random JSON trees.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys: mostly the ones validation looks at.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&[
            "organizations", "on_conflict", "mode", "name", "domain", "contact_email",
        ][..])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

/// Strings that exercise the rules: valid-looking values, policy and mode
/// names, and arbitrary Unicode.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        domain_like(),
        "[A-Za-z0-9 ._+-]{0,12}@[A-Za-z0-9.-]{0,12}",
        proptest::sample::select(
            &[
                "update",
                "skip",
                "atomic",
                "partial",
                "Update",
                "",
                " ",
                "acme.com",
                "a@b.com",
                "<script>",
                "'; DROP TABLE x;--",
                "\u{0}",
                "\u{202e}",
                "Name <a@b.com>",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
        ".{0,300}",
    ]
}

/// Values for one organization field: usually strings, sometimes not.
fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => interesting_string().prop_map(|s| Some(Value::String(s))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => any::<i32>().prop_map(|n| Some(json!(n))),
        1 => Just(Some(json!(["x"]))),
    ]
}

/// Organization-shaped objects with random fields, or occasionally anything.
fn org_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (field_value(), field_value(), field_value()).prop_map(|(n, d, e)| {
            let mut o = Map::new();
            for (k, v) in [("name", n), ("domain", d), ("contact_email", e)] {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            }
            Value::Object(o)
        }),
        // Mostly valid organizations, so that acceptance paths are exercised.
        6 => (
            "[A-Za-z<'&][A-Za-z0-9 <>'&;-]{0,16}",
            prop_oneof![domain_like(), "[a-cA-C][a-c]?\\.(com|DE|co\\.uk)\\.?"],
            "[A-Za-z0-9.+]{1,6}@[A-Za-z]{1,6}\\.(com|org)",
        )
            .prop_map(|(name, domain, email)| {
                json!({"name": name, "domain": domain, "contact_email": email})
            }),
        1 => any_json(),
    ]
}

/// Request-shaped bodies.
fn request_value() -> impl Strategy<Value = Value> {
    let choice = |valid: &'static [&'static str], invalid: &'static str| {
        prop_oneof![
            6 => proptest::sample::select(valid).prop_map(|s| Some(json!(s))),
            1 => Just(Some(json!(invalid))),
            3 => Just(None),
            1 => any_json().prop_map(Some),
        ]
    };
    (
        prop_oneof![
            16 => proptest::collection::vec(org_value(), 0..8).prop_map(|v| Some(Value::Array(v))),
            1 => Just(None),
            1 => any_json().prop_map(Some),
        ],
        choice(&["update", "skip"], "replace"),
        choice(&["atomic", "partial"], "all"),
    )
        .prop_map(|(orgs, policy, mode)| {
            let mut body = Map::new();
            for (k, v) in [
                ("organizations", orgs),
                ("on_conflict", policy),
                ("mode", mode),
            ] {
                if let Some(v) = v {
                    body.insert(k.to_owned(), v);
                }
            }
            Value::Object(body)
        })
}

/// A valid typed request with distinct domains `<base><i>.example.<suffix>`
/// (under `example.` so that no generated name is itself a public suffix).
fn valid_request() -> impl Strategy<Value = SubmitRequest> {
    (
        proptest::collection::vec(
            (
                "[A-Za-z][A-Za-z0-9 &<>']{0,20}",
                "[a-z][a-z0-9]{0,10}",
                proptest::sample::select(&["com", "de", "co.uk", "org"][..]),
                "[a-z]{1,8}",
            ),
            1..6,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(orgs, skip, partial)| SubmitRequest {
            organizations: orgs
                .into_iter()
                .enumerate()
                .map(|(i, (name, base, suffix, local))| OrganizationInput {
                    name,
                    domain: format!("{base}{i}.example.{suffix}"),
                    contact_email: format!("{local}@{base}.{suffix}"),
                })
                .collect(),
            on_conflict: if skip {
                ConflictPolicy::Skip
            } else {
                ConflictPolicy::Update
            },
            mode: if partial {
                SubmitMode::Partial
            } else {
                SubmitMode::Atomic
            },
        })
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The organization position a pointer refers to (`None` for request-level
/// pointers) and the field rank inside the organization.
fn sort_key(error: &FieldError) -> (Option<u64>, u8) {
    let rest = match error.pointer.strip_prefix("/organizations/") {
        Some(rest) => rest,
        None => return (None, 0),
    };
    let (position, field) = rest.split_once('/').unwrap_or((rest, ""));
    let rank = match field {
        "" => 0,
        "name" => 1,
        "domain" => 2,
        "contact_email" => 3,
        other => panic!("unexpected field {other:?} in {}", error.pointer),
    };
    let position = position
        .parse()
        .unwrap_or_else(|_| panic!("bad pointer {}", error.pointer));
    (Some(position), rank)
}

fn assert_sorted(errors: &[FieldError]) {
    let keys: Vec<_> = errors.iter().map(sort_key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "errors not sorted: {errors:?}");
}

fn known_code(code: &str) -> bool {
    onboarding_core::validate::codes::ALL.contains(&code)
}

fn check_outcome(
    body: &Value,
    limits: &Limits,
    result: &Result<ValidRequest, onboarding_core::Error>,
) {
    match result {
        Ok(valid) => {
            let len = body["organizations"].as_array().map_or(0, Vec::len);
            assert!(!valid.organizations.is_empty());
            let mut positions: Vec<u32> = valid
                .organizations
                .iter()
                .map(|(p, _)| *p)
                .chain(valid.rejected.iter().map(|r| r.position))
                .collect();
            assert_eq!(positions.len(), len, "every organization accounted for");
            positions.sort_unstable();
            positions.dedup();
            assert_eq!(positions.len(), len, "positions distinct");
            if valid.mode == SubmitMode::Atomic {
                assert!(valid.rejected.is_empty());
            }
            for r in &valid.rejected {
                assert!(!r.errors.is_empty());
                assert_sorted(&r.errors);
            }
            for (_, org) in &valid.organizations {
                let d = org.domain.as_str();
                assert_eq!(normalize_domain(d).as_ref().map(|x| x.as_str()), Ok(d));
                assert_eq!(normalize_name(&org.name).as_deref(), Ok(org.name.as_str()));
                assert_eq!(
                    normalize_email(&org.contact_email).as_deref(),
                    Ok(org.contact_email.as_str())
                );
            }
            assert_eq!(valid.request_hash().len(), 64);
        }
        Err(e) => {
            match e.kind() {
                ErrorKind::Invalid => {}
                ErrorKind::TooLarge => {
                    let len = body["organizations"].as_array().map_or(0, Vec::len);
                    assert!(len > limits.max_organizations);
                    assert_eq!(e.field_errors().len(), 1);
                }
                other => panic!("unexpected kind {other}"),
            }
            assert!(!e.field_errors().is_empty());
            assert_sorted(e.field_errors());
            for f in e.field_errors() {
                assert!(known_code(&f.code), "unknown code {}", f.code);
                assert!(
                    f.detail.chars().count() < 400,
                    "detail too long: {}",
                    f.detail
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn normalize_domain_is_idempotent(input in domain_like()) {
        if let Ok(once) = normalize_domain(&input) {
            let twice = normalize_domain(once.as_str());
            prop_assert_eq!(twice.as_ref().map(|d| d.as_str()), Ok(once.as_str()), "input {:?}", input);
        }
    }

    #[test]
    fn normalize_domain_never_panics_and_is_idempotent_on_any_string(input in any::<String>()) {
        if let Ok(once) = normalize_domain(&input) {
            prop_assert_eq!(normalize_domain(once.as_str()), Ok(once));
        }
    }

    #[test]
    fn accepted_domains_round_trip(input in domain_like()) {
        if let Ok(domain) = normalize_domain(&input) {
            let d = domain.as_str();
            prop_assert!(d.is_ascii(), "{:?}", d);
            prop_assert_eq!(d, d.to_ascii_lowercase());
            prop_assert!(!d.ends_with('.'));
            prop_assert!(!d.is_empty() && d.len() <= 253);
            let (unicode, result) = idna::domain_to_unicode(d);
            prop_assert!(result.is_ok(), "{:?} -> {:?}", d, unicode);
            let back = idna::domain_to_ascii_strict(&unicode);
            prop_assert_eq!(back.ok(), Some(d.to_owned()), "via {:?}", unicode);
            // The Unicode form normalizes to the same domain.
            prop_assert_eq!(normalize_domain(&unicode), Ok(domain.clone()));
        }
    }

    #[test]
    fn names_and_emails_are_idempotent(input in interesting_string()) {
        if let Ok(name) = normalize_name(&input) {
            prop_assert_eq!(normalize_name(&name), Ok(name.clone()));
            prop_assert!(name.chars().count() <= 255);
        }
        if let Ok(email) = normalize_email(&input) {
            prop_assert_eq!(normalize_email(&email), Ok(email.clone()));
            prop_assert!(email.len() <= 254);
        }
    }

    #[test]
    fn validate_json_never_panics_on_arbitrary_json(body in any_json(), max in 0usize..10) {
        let limits = Limits::default().with_max_organizations(max);
        let result = validate_json(&body, &limits);
        check_outcome(&body, &limits, &result);
    }

    #[test]
    fn validate_json_handles_request_shaped_bodies(body in request_value(), max in prop_oneof![Just(1000usize), 0usize..8]) {
        let limits = Limits::default().with_max_organizations(max);
        let result = validate_json(&body, &limits);
        check_outcome(&body, &limits, &result);
    }

    #[test]
    fn bytes_and_value_entry_points_agree(body in prop_oneof![any_json(), request_value()], max in prop_oneof![Just(1000usize), 0usize..8]) {
        // What the HTTP layer reads (`JsonBody`, typed fast path) answers as
        // what it reads on the slow path (`validate_json` of a `Value`).
        let limits = Limits::default().with_max_organizations(max);
        let bytes = serde_json::to_vec(&body).expect("serializes");
        let fast = JsonBody::parse(&bytes).expect("json").validate(&limits);
        let slow = validate_json(&body, &limits);
        prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    }

    #[test]
    fn typed_and_json_entry_points_agree(req in valid_request(), mangle in any::<bool>()) {
        let mut req = req;
        if mangle {
            // Break the second organization, if any.
            if let Some(org) = req.organizations.get_mut(1) {
                org.name = String::new();
            }
        }
        let body = serde_json::to_value(&req).expect("serializes");
        let limits = Limits::default();
        let typed = validate_request(&req, &limits);
        let json = validate_json(&body, &limits);
        match (typed, json) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.kind(), b.kind());
                prop_assert_eq!(a.field_errors(), b.field_errors());
            }
            (a, b) => prop_assert!(false, "typed {:?} vs json {:?}", a, b),
        }
    }

    #[test]
    fn request_hash_ignores_domain_spelling(
        req in valid_request(),
        variants in proptest::collection::vec((any::<bool>(), 0usize..4, any::<bool>()), 6),
    ) {
        let limits = Limits::default();
        let base = validate_request(&req, &limits).expect("valid request");

        // Same request with domains in other case, whitespace and trailing dots.
        let mut spelled = req.clone();
        for (org, (upper, ws, dot)) in spelled.organizations.iter_mut().zip(&variants) {
            let mut d = if *upper { org.domain.to_uppercase() } else { org.domain.clone() };
            if *dot {
                d.push('.');
            }
            let pad = [" ", "\t", "\n ", "\u{3000}"][*ws];
            org.domain = format!("{pad}{d}{pad}");
        }
        let other = validate_request(&spelled, &limits).expect("still valid");
        prop_assert_eq!(base.request_hash(), other.request_hash());

        // A changed name changes the hash.
        let mut renamed = req.clone();
        renamed.organizations[0].name.push('x');
        let renamed = validate_request(&renamed, &limits).expect("still valid");
        prop_assert_ne!(base.request_hash(), renamed.request_hash());
    }
}
