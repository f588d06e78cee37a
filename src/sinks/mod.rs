//! Sinks: the one [`Sink`] trait, and one folder per destination kind.
//!
//! A sink only knows how to send a batch and classify each outcome; retries, ordering,
//! cursors and dead letters live once, in `delivery`.

use std::time::Duration;

use async_trait::async_trait;

use crate::delivery::subscription::Subscription;
use crate::envelope::LoggedEvent;

/// How one send went, as the sink judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Durably accepted by the destination.
    Delivered,
    /// Failed in a way that may pass later; `after` is the destination's own hint
    /// (`Retry-After`), bounded by the engine.
    Retry {
        /// The destination's requested delay, if any.
        after: Option<Duration>,
        /// What went wrong, for attempt history and `last_error`.
        reason: String,
    },
    /// Will never succeed as is (for example a payload over the destination's size limit, or
    /// a non-retryable status): goes to dead letters now.
    Permanent {
        /// Why.
        reason: String,
    },
    /// The destination asked to stop (HTTP 410 Gone): disable the subscription.
    Disable {
        /// Why.
        reason: String,
    },
}

/// A destination kind. One value serves every subscription of its kind.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Largest batch the sink wants per call (1 for webhooks, 10 for SQS, ...).
    fn max_batch(&self) -> usize {
        1
    }

    /// Sends `events` (consecutive events of one instance, in sequence order) for
    /// `subscription`. Returns one outcome per event, in the same order.
    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome>;
}

pub mod rabbitmq;
pub mod sqs;
