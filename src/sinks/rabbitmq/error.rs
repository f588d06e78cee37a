//! Errors at the RabbitMQ sink's boundary (construction and eager topology declaration).

use std::time::Duration;

/// A RabbitMQ operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RabbitmqError {
    /// `rabbitmq.uri` does not parse as an AMQP URI.
    #[error("invalid RabbitMQ URI: {0}")]
    InvalidUri(String),
    /// No connection to the broker right now; the manager keeps reconnecting.
    #[error("RabbitMQ is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused or failed a declaration.
    #[error("cannot declare {what}: {source}")]
    Declare {
        /// The exchange, queue or binding, named.
        what: String,
        /// The broker's or client's error.
        #[source]
        source: lapin::Error,
    },
    /// An operation did not finish within its bound.
    #[error("RabbitMQ did not answer {what} within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// An event name outside Evolution's catalog has no queue name to publish to.
    #[error("event `{0}` is not an Evolution event, so it has no RabbitMQ queue")]
    NotInCatalog(String),
}
