//! Request validation: turns what a client sent into a [`ValidRequest`].
//!
//! Two entry points share one set of rules:
//!
//! - [`validate_request`] takes a typed [`SubmitRequest`] (for embedders that
//!   build requests in Rust);
//! - [`validate_json`] takes the raw JSON body (for the HTTP layer), so that
//!   wrong JSON types become field errors with pointers instead of a
//!   deserialization failure; [`JsonBody`] does the same from the body's
//!   bytes, without building a `Value` for a well-typed body.
//!
//! Every problem is reported as a [`FieldError`](crate::FieldError) with an
//! RFC 6901 pointer into the body and a stable code from [`codes`]. Errors are
//! collected, not just the first: request-level errors come first, then the
//! errors of each organization by ascending position, and within one
//! organization in field order (`name`, `domain`, `contact_email`). Each field
//! reports at most one problem.
//!
//! The single-field rules are available on their own: [`normalize_name`],
//! [`normalize_domain`] and [`normalize_email`].

mod body;
mod domain;
mod fields;
mod json;
mod problem;
mod request;

pub(crate) use request::hex;

pub use body::JsonBody;
pub use domain::normalize_domain;
pub use fields::{normalize_email, normalize_name};
pub use json::validate_json;
pub use problem::{codes, FieldProblem};
pub use request::{validate_request, OrganizationInput, Rejection, SubmitRequest, ValidRequest};

/// Limits applied to a request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Most organizations one request may carry (default 1000). Larger
    /// requests fail with [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge)
    /// before any organization is looked at.
    pub max_organizations: usize,
}

impl Limits {
    /// The default maximum number of organizations per request.
    pub const DEFAULT_MAX_ORGANIZATIONS: usize = 1000;

    /// Sets the maximum number of organizations per request.
    pub fn with_max_organizations(mut self, n: usize) -> Self {
        self.max_organizations = n;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_organizations: Self::DEFAULT_MAX_ORGANIZATIONS,
        }
    }
}

/// What the validation tests share.
#[cfg(test)]
mod test_support {
    use super::ValidRequest;
    use crate::error::{ErrorKind, Result};

    /// The `(pointer, code)` of every field error of a refused request.
    pub(super) fn field_errors(result: Result<ValidRequest>) -> Vec<(String, String)> {
        match result {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Invalid, "{e:?}");
                e.field_errors()
                    .iter()
                    .map(|f| (f.pointer.clone(), f.code.clone()))
                    .collect()
            }
        }
    }

    /// Owned `(pointer, code)` pairs.
    pub(super) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_builder() {
        assert_eq!(Limits::default().max_organizations, 1000);
        assert_eq!(
            Limits::default()
                .with_max_organizations(3)
                .max_organizations,
            3
        );
    }
}
