//! Request handlers, one module per area.

pub(crate) mod admin;
pub(crate) mod batches;
pub(crate) mod events;
pub(crate) mod failures;
pub(crate) mod imports;
pub(crate) mod listing;
pub(crate) mod onboard;
pub(crate) mod ops;
pub(crate) mod organizations;
pub(crate) mod results;
pub(crate) mod throughput;
pub(crate) mod webhooks;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

use crate::problem::Problem;

/// Largest page of a listing (`limit`).
pub(crate) const MAX_PAGE: u32 = 1000;

/// A query string's parameters; one that cannot be read (e.g. a parameter
/// given twice) is a 400.
pub(crate) fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    params
        .map(|Query(params)| params)
        .map_err(|e| Problem::malformed(format!("the query string is invalid: {}", e.body_text())))
}

/// An optional query parameter `name`: absent, `None`; a value `parse`
/// refuses (the empty one too), a 422 `invalid_value` saying `detail`.
pub(crate) fn optional_param<T>(
    raw: Option<&str>,
    name: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    detail: &str,
) -> Result<Option<T>, Problem> {
    raw.map(|raw| {
        parse(raw).ok_or_else(|| Problem::invalid_parameter(name, "invalid_value", detail))
    })
    .transpose()
}

/// An optional keyset `cursor` query parameter: absent or empty, the first
/// page (`None`); a value `decode` refuses, 400 (it was not a `next_cursor`
/// this API gave out).
pub(crate) fn cursor_param<T>(
    raw: Option<&str>,
    decode: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, Problem> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => decode(raw).map(Some).ok_or_else(|| {
            Problem::malformed("cursor must be a next_cursor value from an earlier page")
        }),
    }
}

/// Parses an optional `limit` query parameter within `1..=max`.
pub(crate) fn limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, Problem> {
    bounded("limit", raw, default, 1..=max)
}

/// Parses an optional integer query parameter `name` within `range`.
pub(crate) fn bounded(
    name: &str,
    raw: Option<&str>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Problem> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Problem::invalid_parameter(
                    name,
                    "invalid_value",
                    format!(
                        "{name} must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}
