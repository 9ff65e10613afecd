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

/// The answers of a set of problem types, merged (a status in two of them
/// would keep the last one: no set below has one twice).
type Answers = BTreeMap<String, RefOr<Response>>;

fn merged(sets: &[fn() -> Answers]) -> Answers {
    sets.iter().flat_map(|answers| answers()).collect()
}

/// The failures of a tenant's (or the operator's) read or action on one
/// resource named by the path: 401, 404, 429, 503.
pub(crate) struct Lookup;

impl IntoResponses for Lookup {
    fn responses() -> Answers {
        merged(&[
            Unauthorized::responses,
            NotFound::responses,
            RateLimited::responses,
            Unavailable::responses,
        ])
    }
}

/// The failures of a listing with query parameters: 400 (unreadable query
/// string), 401, 422 (a parameter's value), 429, 503.
pub(crate) struct Listing;

impl IntoResponses for Listing {
    fn responses() -> Answers {
        merged(&[
            Malformed::responses,
            Unauthorized::responses,
            Invalid::responses,
            RateLimited::responses,
            Unavailable::responses,
        ])
    }
}

/// [`Listing`]'s failures plus 404: a listing under a resource of the path,
/// or one a server may not keep.
pub(crate) struct ListingOf;

impl IntoResponses for ListingOf {
    fn responses() -> Answers {
        merged(&[Listing::responses, NotFound::responses])
    }
}

/// [`Lookup`]'s failures plus 422: a resource named by a path parameter
/// that must be valid (a domain).
pub(crate) struct CheckedLookup;

impl IntoResponses for CheckedLookup {
    fn responses() -> Answers {
        merged(&[Lookup::responses, Invalid::responses])
    }
}

/// The failures of a write with a JSON body (besides [`Lookup`]'s): 400,
/// 415, 413, 422.
pub(crate) struct BodyFailures;

impl IntoResponses for BodyFailures {
    fn responses() -> Answers {
        merged(&[
            Lookup::responses,
            Malformed::responses,
            UnsupportedMediaType::responses,
            TooLarge::responses,
            Invalid::responses,
        ])
    }
}

/// [`BodyFailures`] plus 409: a write that creates something that may exist
/// already or be over a limit.
pub(crate) struct Create;

impl IntoResponses for Create {
    fn responses() -> Answers {
        merged(&[BodyFailures::responses, Conflict::responses])
    }
}
