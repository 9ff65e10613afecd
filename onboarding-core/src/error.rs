//! One error type a caller can act on: a kind plus a retryable flag.
//!
//! Generic code (the worker engine, the HTTP layer) decides between retry,
//! 503 and 4xx from [`ErrorKind`] and [`Error::is_retryable`] alone; adapters
//! keep their own driver errors as the [`std::error::Error::source`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms a caller can act on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input was rejected; [`Error::field_errors`] lists every problem.
    Invalid,
    /// More organizations than the configured maximum.
    TooLarge,
    /// The batch, item or organization does not exist (or belongs to another tenant).
    NotFound,
    /// The request contradicts stored state (an idempotency key reused with another body).
    Conflict,
    /// A backend (database, queue, cache) cannot be reached or refused the operation for now.
    Unavailable,
    /// An operation took longer than allowed.
    Timeout,
    /// The service is shutting down.
    ShuttingDown,
    /// More work is waiting than the service accepts (backpressure): the
    /// request was refused before anything was stored; try again later.
    Overloaded,
    /// A bug or an inconsistency this crate did not expect.
    Internal,
}

impl ErrorKind {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable_by_default(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Timeout | Self::ShuttingDown | Self::Overloaded
        )
    }

    /// A stable snake_case name, for logs, metrics and problem documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::ShuttingDown => "shutting_down",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of a request, located by a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// RFC 6901 pointer into the request body, e.g. `/organizations/3/domain`.
    pub pointer: String,
    /// A stable machine-readable code, e.g. `domain_invalid`.
    pub code: String,
    /// A sentence for humans.
    pub detail: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(
        pointer: impl Into<String>,
        code: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.pointer, self.detail, self.code)
    }
}

/// The error of every fallible operation in bulk-onboarding.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    field_errors: Vec<FieldError>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; retryable as [`ErrorKind::is_retryable_by_default`] says.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: kind.is_retryable_by_default(),
            field_errors: Vec::new(),
            source: None,
        }
    }

    /// An [`ErrorKind::Invalid`] error listing every field problem.
    pub fn invalid(field_errors: Vec<FieldError>) -> Self {
        let message = match field_errors.len() {
            1 => "the request has 1 invalid field".to_owned(),
            n => format!("the request has {n} invalid fields"),
        };
        Self::new(ErrorKind::Invalid, message).with_field_errors(field_errors)
    }

    /// Shorthand for an [`ErrorKind::Unavailable`] error caused by `source`.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(ErrorKind::Unavailable, message).with_source(source)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attaches field errors.
    pub fn with_field_errors(mut self, field_errors: Vec<FieldError>) -> Self {
        self.field_errors = field_errors;
        self
    }

    /// Overrides whether the operation may be retried.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same call may succeed later (a 503, a queue retry).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Every field problem, for [`ErrorKind::Invalid`] and [`ErrorKind::TooLarge`].
    pub fn field_errors(&self) -> &[FieldError] {
        &self.field_errors
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("message", &self.message)
            .field("retryable", &self.retryable);
        if !self.field_errors.is_empty() {
            d.field("field_errors", &self.field_errors);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_kind_unless_overridden() {
        assert!(Error::new(ErrorKind::Unavailable, "db down").is_retryable());
        assert!(!Error::new(ErrorKind::Invalid, "bad").is_retryable());
        assert!(Error::new(ErrorKind::Overloaded, "backlog full").is_retryable());
        assert_eq!(ErrorKind::Overloaded.as_str(), "overloaded");
        assert!(!Error::new(ErrorKind::Unavailable, "x")
            .with_retryable(false)
            .is_retryable());
    }

    #[test]
    fn display_includes_kind_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unavailable("cannot reach the database", io);
        assert_eq!(
            e.to_string(),
            "unavailable: cannot reach the database: refused"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn invalid_counts_its_fields() {
        let e = Error::invalid(vec![
            FieldError::new("/organizations/0/name", "name_empty", "empty"),
            FieldError::new("/organizations/1/name", "name_empty", "empty"),
        ]);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.field_errors().len(), 2);
        assert_eq!(e.message(), "the request has 2 invalid fields");
    }
}
