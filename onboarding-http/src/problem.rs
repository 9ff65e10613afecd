//! RFC 9457 problem documents (`application/problem+json`) and the mapping
//! from core errors to HTTP statuses.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use onboarding_core::{Error, ErrorKind, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem with one part of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemField {
    /// RFC 6901 pointer into the JSON body (`/organizations/3/domain`); empty for the whole body,
    /// a query parameter or a header; `/` and its name for a path parameter (`/domain`).
    pub pointer: String,
    /// The query parameter or header at fault, when it is not the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// A stable machine-readable code, e.g. `domain_invalid`.
    pub code: String,
    /// A sentence for humans.
    pub detail: String,
}

impl From<&FieldError> for ProblemField {
    fn from(e: &FieldError) -> Self {
        // The service's idempotency key problems (`idempotency_key_invalid`,
        // `idempotency_key_reused`) are about the header, not the body.
        let parameter = e
            .code
            .starts_with("idempotency_key_")
            .then(|| "Idempotency-Key".to_owned());
        Self {
            pointer: e.pointer.clone(),
            parameter,
            code: e.code.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// The body of an error answer: an RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemDocument {
    /// A URI naming the problem type, e.g. `urn:bulk-onboarding:problem:validation`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Every problem with a field, header or parameter (may be empty).
    pub errors: Vec<ProblemField>,
}

/// An error answer: a [`ProblemDocument`] plus the headers it needs.
#[derive(Debug, Clone)]
pub struct Problem {
    document: Box<ProblemDocument>,
    retry_after: Option<u64>,
    www_authenticate: Option<&'static str>,
}

impl Problem {
    /// A problem of type `urn:bulk-onboarding:problem:{kind}`.
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            document: Box::new(ProblemDocument {
                type_: format!("urn:bulk-onboarding:problem:{kind}"),
                title: title.to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                errors: Vec::new(),
            }),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// The document sent as the body.
    pub fn document(&self) -> &ProblemDocument {
        &self.document
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.document.status
    }

    /// Adds field problems.
    pub fn with_errors(mut self, errors: Vec<ProblemField>) -> Self {
        self.document.errors = errors;
        self
    }

    /// Adds a `Retry-After` header (whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The `Retry-After` value in seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub(crate) fn with_www_authenticate(mut self, value: &'static str) -> Self {
        self.www_authenticate = Some(value);
        self
    }

    /// 400: the body is not JSON (or otherwise unreadable).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            "Bearer realm=\"bulk-onboarding\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"bulk-onboarding\""
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
        .with_www_authenticate(challenge)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 413: the body is larger than the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the body must be application/json, got {got:?}"),
        )
    }

    /// 422 for one bad query parameter or header.
    pub fn invalid_parameter(parameter: &str, code: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Validation failed",
            format!("the {parameter} parameter is invalid"),
        )
        .with_errors(vec![ProblemField {
            pointer: String::new(),
            parameter: Some(parameter.to_owned()),
            code: code.to_owned(),
            detail,
        }])
    }

    /// 422 for a path parameter: its `errors` entry names it and points at it (`/{parameter}`).
    pub fn invalid_path_parameter(parameter: &str, code: &str, detail: impl Into<String>) -> Self {
        let mut problem = Self::invalid_parameter(parameter, code, detail);
        for field in &mut problem.document.errors {
            field.pointer = format!("/{parameter}");
        }
        problem
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(after: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this API key sent more requests than its rate limit allows",
        )
        .with_retry_after(after)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, after: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
        .with_retry_after(after)
    }

    /// 503 `overloaded` with `Retry-After`: backpressure, the request was
    /// refused before anything was stored.
    pub fn overloaded(detail: impl Into<String>, after: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Service overloaded",
            detail,
        )
        .with_retry_after(after)
    }

    /// 500: a bug, never caused by client input.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server hit an unexpected condition; it has been logged",
        )
    }

    /// Maps a core error to its problem: `Invalid` 422, `TooLarge` 413,
    /// `NotFound` 404, `Conflict` 409, `Unavailable`/`Timeout`/`ShuttingDown`
    /// 503 `unavailable` with `Retry-After`, `Overloaded` 503 `overloaded`
    /// with `Retry-After` (its detail says how much waits and the limit),
    /// anything else 500.
    pub fn from_core(error: &Error, retry_after: Duration) -> Self {
        let fields = || {
            error
                .field_errors()
                .iter()
                .map(ProblemField::from)
                .collect()
        };
        match error.kind() {
            ErrorKind::Invalid => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Validation failed",
                error.message(),
            )
            .with_errors(fields()),
            ErrorKind::TooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
                error.message(),
            )
            .with_errors(fields()),
            ErrorKind::NotFound => Self::not_found(error.message()),
            ErrorKind::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                error.message(),
            ),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %error, "backend unavailable");
                Self::unavailable("a backend is unavailable; try again later", retry_after)
            }
            ErrorKind::Timeout => {
                tracing::warn!(error = %error, "backend timed out");
                Self::unavailable(
                    "a backend did not answer in time; try again later",
                    retry_after,
                )
            }
            ErrorKind::ShuttingDown => {
                Self::unavailable("the service is shutting down; try again later", retry_after)
            }
            ErrorKind::Overloaded => Self::overloaded(error.message(), retry_after),
            _ => {
                tracing::error!(error = %error, "internal error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.document.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&*self.document).unwrap_or_else(|_| {
            br#"{"type":"urn:bulk-onboarding:problem:internal","title":"Internal server error","status":500,"detail":"","errors":[]}"#.to_vec()
        });
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses() {
        let after = Duration::from_millis(1500);
        let cases = [
            (Error::invalid(vec![]), 422),
            (Error::new(ErrorKind::TooLarge, "x"), 413),
            (Error::not_found("x"), 404),
            (Error::new(ErrorKind::Conflict, "x"), 409),
            (Error::new(ErrorKind::Unavailable, "x"), 503),
            (Error::new(ErrorKind::Timeout, "x"), 503),
            (Error::new(ErrorKind::ShuttingDown, "x"), 503),
            (Error::new(ErrorKind::Overloaded, "x"), 503),
            (Error::internal("x"), 500),
        ];
        for (error, status) in cases {
            let p = Problem::from_core(&error, after);
            assert_eq!(p.status(), status, "{error}");
            assert_eq!(p.retry_after().is_some(), status == 503);
        }
        assert_eq!(
            Problem::from_core(&Error::new(ErrorKind::Timeout, "x"), after).retry_after(),
            Some(2)
        );
        let overloaded = Problem::from_core(
            &Error::new(ErrorKind::Overloaded, "12 organizations are queued"),
            after,
        );
        assert_eq!(
            overloaded.document().type_,
            "urn:bulk-onboarding:problem:overloaded"
        );
        assert_eq!(overloaded.document().detail, "12 organizations are queued");
        assert_eq!(
            Problem::from_core(&Error::new(ErrorKind::Timeout, "x"), after)
                .document()
                .type_,
            "urn:bulk-onboarding:problem:unavailable"
        );
    }
}
