//! Submit requests for tests and benchmarks. Organization `n` of a tag is
//! named `Org {n}`, has the domain `org{n}-{tag}.example.com` and the contact
//! `ops{n}@example.com`; a tag unique to the test keeps its domains apart
//! from every other test's.

use std::ops::Range;

use crate::validate::{OrganizationInput, SubmitRequest};

/// A tag no other call returns: 32 hex digits, time-ordered.
pub fn unique_tag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The domain of organization `n` of `tag`: `org{n}-{tag}.example.com`.
pub fn domain(tag: &str, n: usize) -> String {
    format!("org{n}-{tag}.example.com")
}

/// Organization `n` of `tag`.
pub fn organization(tag: &str, n: usize) -> OrganizationInput {
    OrganizationInput {
        name: format!("Org {n}"),
        domain: domain(tag, n),
        contact_email: format!("ops{n}@example.com"),
    }
}

/// A request for organizations `range` of `tag`, with the default conflict
/// policy (update) and mode (atomic).
pub fn request(tag: &str, range: Range<usize>) -> SubmitRequest {
    SubmitRequest {
        organizations: range.map(|n| organization(tag, n)).collect(),
        on_conflict: Default::default(),
        mode: Default::default(),
    }
}

/// The same request as a JSON body.
pub fn request_json(tag: &str, range: Range<usize>) -> serde_json::Value {
    serde_json::to_value(request(tag, range)).unwrap_or_default()
}
