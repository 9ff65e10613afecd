//! Mapping of `redis` errors to [`onboarding_core::Error`].

use onboarding_core::{Error, ErrorKind};
use redis::{RedisError, RetryMethod, ServerErrorKind};

/// Converts a driver error, keeping it as the source.
///
/// Connection, I/O and timeout errors, and the server's "not now" answers
/// (`LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`, `READONLY`, `OOM`,
/// `BUSY`), are [`ErrorKind::Unavailable`] (retryable); a rejected
/// configuration is [`ErrorKind::Invalid`]; anything else (a script bug, a
/// key of the wrong type) is [`ErrorKind::Internal`].
pub(crate) fn from_redis(what: &str, err: RedisError) -> Error {
    let kind = classify(&err);
    let message = match kind {
        ErrorKind::Unavailable => format!("redis unavailable: {what}"),
        _ => format!("redis error: {what}"),
    };
    Error::new(kind, message).with_source(err)
}

fn classify(err: &RedisError) -> ErrorKind {
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
        return ErrorKind::Unavailable;
    }
    match err.kind() {
        redis::ErrorKind::InvalidClientConfig => return ErrorKind::Invalid,
        redis::ErrorKind::AuthenticationFailed => return ErrorKind::Unavailable,
        redis::ErrorKind::Server(ServerErrorKind::ReadOnly) => return ErrorKind::Unavailable,
        _ => {}
    }
    if matches!(err.code(), Some("OOM" | "BUSY" | "NOAUTH" | "LOADING")) {
        return ErrorKind::Unavailable;
    }
    match err.retry_method() {
        RetryMethod::WaitAndRetry
        | RetryMethod::Reconnect
        | RetryMethod::ReconnectFromInitialConnections
        | RetryMethod::RetryImmediately => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = from_redis("GET", RedisError::from(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn type_errors_are_internal() {
        let e = from_redis(
            "GET",
            RedisError::from((redis::ErrorKind::UnexpectedReturnType, "bad type")),
        );
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(!e.is_retryable());
    }

    #[test]
    fn config_errors_are_invalid() {
        let e = from_redis(
            "open",
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad url")),
        );
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
}
