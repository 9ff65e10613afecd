//! The adapter's own errors, mapped to [`onboarding_core::Error`] kinds.

use onboarding_core::{Error, ErrorKind};

/// What can go wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AmqpError {
    /// A lapin call failed (connection, channel or protocol error).
    #[error("{context}")]
    Lapin {
        context: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The broker did not accept a connection in time.
    #[error("connecting to the broker timed out after {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// An earlier failure; the next attempt is not due yet.
    #[error("the broker connection is down; next attempt in {0:?}")]
    Backoff(std::time::Duration),
    /// The connection or the consumer channel ended.
    #[error("the broker connection was lost")]
    ConnectionLost,
    /// The broker refused (nack) a published message.
    #[error("the broker refused {0} published message(s)")]
    Nacked(usize),
    /// A published message matched no queue (the queues were deleted).
    #[error("{0} published message(s) were unroutable (queue missing)")]
    Unroutable(usize),
    /// A job could not be encoded.
    #[error("cannot encode a job")]
    Encode(#[source] serde_json::Error),
}

impl AmqpError {
    pub(crate) fn lapin(context: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Lapin { context, source }
    }
}

impl From<AmqpError> for Error {
    /// Every broker problem is [`ErrorKind::Unavailable`] (retryable), with
    /// the lapin error as its source; only an unencodable job is internal.
    fn from(e: AmqpError) -> Self {
        match e {
            AmqpError::Lapin { context, source } => {
                Error::unavailable(format!("rabbitmq: {context}"), source)
            }
            AmqpError::Encode(source) => {
                Error::new(ErrorKind::Internal, "rabbitmq: cannot encode a job").with_source(source)
            }
            other => Error::new(ErrorKind::Unavailable, format!("rabbitmq: {other}")),
        }
    }
}
