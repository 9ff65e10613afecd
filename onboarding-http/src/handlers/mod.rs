//! Request handlers, one module per area.

pub(crate) mod admin;
pub(crate) mod batches;
pub(crate) mod onboard;
pub(crate) mod ops;
pub(crate) mod webhooks;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use onboarding_core::model::BatchId;

use crate::problem::Problem;

/// A batch id from the path; anything that is not a UUID is a batch that does not exist.
pub(crate) fn batch_id(raw: Result<Path<String>, PathRejection>) -> Result<BatchId, Problem> {
    let Ok(Path(raw)) = raw else {
        return Err(Problem::not_found("no such batch"));
    };
    raw.parse::<BatchId>()
        .map_err(|_| Problem::not_found("no such batch: the id is not a UUID"))
}

/// Parses an optional `limit` query parameter within `1..=max`.
pub(crate) fn limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, Problem> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Problem::invalid_parameter(
                    "limit",
                    "invalid_value",
                    format!("limit must be an integer from 1 to {max}"),
                )
            }),
    }
}
