//! Errors at the SQS sink's boundary (construction and eager queue creation).

/// An SQS operation or setting that did not work.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// A setting has a value the sink cannot use.
    #[error("invalid SQS configuration: `{key}`: {message}")]
    Config {
        /// The dotted key (`sqs.group_by`).
        key: &'static str,
        /// What is allowed.
        message: String,
    },
    /// A queue name SQS would refuse (too long, or characters outside `[A-Za-z0-9_-]`).
    #[error("`{0}` is not a valid SQS FIFO queue name (at most 80 characters of A-Z, a-z, 0-9, `_`, `-`, ending in `.fifo`)")]
    InvalidQueueName(String),
    /// An event name outside Evolution's catalog has no per-event queue.
    #[error("event `{0}` is not an Evolution event, so it has no SQS queue")]
    NotInCatalog(String),
    /// Looking up or creating a queue failed.
    #[error("cannot get or create SQS queue `{name}`: {message}")]
    Queue {
        /// The queue name.
        name: String,
        /// The service's or transport's error, with its context.
        message: String,
    },
}
