//! The problem answers of the OpenAPI document: one type per status, each
//! a `application/problem+json` [`ProblemDocument`], listed by name in every
//! route's `responses(...)`. A status means the same on every route, and
//! its description is written once. The routes that fail the same ways
//! name one of the sets at the end ([`Lookup`], [`Listing`], …) instead.
//!
//! The types are never built: [`Problem`](crate::Problem) is what handlers
//! answer; these only describe it.
#![allow(dead_code)] // described in the OpenAPI document, never constructed

use std::collections::BTreeMap;

use utoipa::openapi::response::Response;
use utoipa::openapi::RefOr;
use utoipa::IntoResponses;

use crate::problem::ProblemDocument;

/// Malformed request: the body is not JSON (or is empty), or the query string cannot be read
#[derive(IntoResponses)]
#[response(status = 400, content_type = "application/problem+json")]
pub(crate) struct Malformed(ProblemDocument);

/// No `Authorization: Bearer <key>`, or a key that is unknown or revoked (the same answer for both); on admin routes, no or a wrong admin token
#[derive(IntoResponses)]
#[response(status = 401, content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"bulk-onboarding\"`")))]
pub(crate) struct Unauthorized(ProblemDocument);

/// No such resource for this tenant (another tenant's id, or an id that is not a UUID, answers the same)
#[derive(IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
pub(crate) struct NotFound(ProblemDocument);

/// A request with the same `Idempotency-Key` is still in progress (an import whose body is still arriving): retry once it has been answered (draft-ietf-httpapi-idempotency-key-header)
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub(crate) struct IdempotencyConflict(ProblemDocument);

/// The request contradicts stored state: the tenant exists, the delivery is being attempted, the tenant has the most webhook endpoints allowed
#[derive(IntoResponses)]
#[response(status = 409, content_type = "application/problem+json")]
pub(crate) struct Conflict(ProblemDocument);

/// The body is over the size limit, or it lists more than 1000 organizations
#[derive(IntoResponses)]
#[response(status = 413, content_type = "application/problem+json")]
pub(crate) struct TooLarge(ProblemDocument);

/// `Content-Type` is present and is not JSON (`application/json` or `application/*+json`)
#[derive(IntoResponses)]
#[response(status = 415, content_type = "application/problem+json")]
pub(crate) struct UnsupportedMediaType(ProblemDocument);

/// Validation failed: `errors` lists every problem with its JSON pointer, or the query parameter or header at fault. On submissions, also an `Idempotency-Key` used before with another payload (code `idempotency_key_reused`, `parameter` `Idempotency-Key`; nothing stored)
#[derive(IntoResponses)]
#[response(status = 422, content_type = "application/problem+json")]
pub(crate) struct Invalid(ProblemDocument);

/// Over this tenant's request rate, or too many failed authentications from this client address
#[derive(IntoResponses)]
#[response(status = 429, content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
pub(crate) struct RateLimited(ProblemDocument);

/// Try again later: a backend is down or slow, the service is shutting down, or the request took longer than the request timeout (`urn:bulk-onboarding:problem:unavailable`). Submissions also answer `urn:bulk-onboarding:problem:overloaded` when the queue's backlog is over its limit or too many submissions are in progress; nothing was stored then.
#[derive(IntoResponses)]
#[response(status = 503, content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
pub(crate) struct Unavailable(ProblemDocument);

/// Responses by status, as `IntoResponses` gives them.
type Answers = BTreeMap<String, RefOr<Response>>;

/// The problem answers the sets below pick from, one per status
/// ([`IdempotencyConflict`], a 409 of submissions only, is not among them).
const BY_STATUS: [fn() -> Answers; 9] = [
    Malformed::responses,
    Unauthorized::responses,
    NotFound::responses,
    Conflict::responses,
    TooLarge::responses,
    UnsupportedMediaType::responses,
    Invalid::responses,
    RateLimited::responses,
    Unavailable::responses,
];

/// The problem answers of these statuses.
fn problems(statuses: &[u16]) -> Answers {
    BY_STATUS
        .iter()
        .flat_map(|answers| answers())
        .filter(|(status, _)| statuses.iter().any(|s| s.to_string() == *status))
        .collect()
}

/// The failures of a read or an action on one resource the path names:
/// 401, 404, 429, 503.
pub(crate) struct Lookup;

impl IntoResponses for Lookup {
    fn responses() -> Answers {
        problems(&[401, 404, 429, 503])
    }
}

/// The failures of a listing with query parameters: 400 (an unreadable
/// query string), 401, 422 (a parameter's value), 429, 503.
pub(crate) struct Listing;

impl IntoResponses for Listing {
    fn responses() -> Answers {
        problems(&[400, 401, 422, 429, 503])
    }
}

/// [`Listing`]'s failures and 404: a listing under a resource the path
/// names, or of something a server may not keep.
pub(crate) struct ListingOf;

impl IntoResponses for ListingOf {
    fn responses() -> Answers {
        problems(&[400, 401, 404, 422, 429, 503])
    }
}

/// [`Lookup`]'s failures and 422: the resource of a path parameter that
/// must be valid (a domain).
pub(crate) struct CheckedLookup;

impl IntoResponses for CheckedLookup {
    fn responses() -> Answers {
        problems(&[401, 404, 422, 429, 503])
    }
}

/// The failures of a write with a JSON body to a resource the path names
/// or a server may not keep: 400, 401, 404, 413, 415, 422, 429, 503.
pub(crate) struct BodyFailures;

impl IntoResponses for BodyFailures {
    fn responses() -> Answers {
        problems(&[400, 401, 404, 413, 415, 422, 429, 503])
    }
}

/// [`BodyFailures`] and 409: a write that creates what may exist already
/// or be over a limit.
pub(crate) struct Create;

impl IntoResponses for Create {
    fn responses() -> Answers {
        problems(&[400, 401, 404, 409, 413, 415, 422, 429, 503])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_a_set_has_its_answer() {
        let sets = [
            (Lookup::responses(), 4),
            (Listing::responses(), 5),
            (ListingOf::responses(), 6),
            (CheckedLookup::responses(), 5),
            (BodyFailures::responses(), 8),
            (Create::responses(), 9),
        ];
        for (answers, statuses) in sets {
            assert_eq!(answers.len(), statuses, "{:?}", answers.keys());
        }
    }
}
