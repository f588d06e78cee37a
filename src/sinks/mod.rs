//! Sinks: the one [`Sink`] trait, and one folder per destination kind.
//!
//! A sink only knows how to send a batch and classify each outcome; retries, ordering,
//! cursors and dead letters live once, in `delivery`.

pub mod kafka;
pub mod nats;
pub mod pusher;
pub mod rabbitmq;
pub mod sqs;
pub mod webhook;

mod descriptor;
mod serving;
pub mod settings;
mod table;

pub use descriptor::{
    BuildContext, BuildError, BuildFuture, BuiltSink, ConfigSection, GlobalTarget, Prepare,
    SinkDescriptor,
};
pub use serving::SinkRegistry;
pub use table::{SinkKind, SinkTarget, SINKS};

use std::future::Future;
use std::pin::Pin;
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

/// What the destination answered besides the outcome, for the attempt log
/// (`src/attempts/`): an HTTP sink's status and the start of its response body. Brokers
/// have neither; their error is the outcome's reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, when the destination answered over HTTP.
    pub http_status: Option<u16>,
    /// The first [`ANSWER_BODY_BYTES`] of the response body (lossy UTF-8), when it had one.
    pub body: Option<String>,
}

/// How much of a response body an [`Answer`] keeps.
pub const ANSWER_BODY_BYTES: usize = 1024;

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

    /// [`Sink::send`] with what the destination answered for each event, for the attempt
    /// log. The default answers nothing beyond the outcome (brokers); an HTTP sink
    /// overrides it and implements `send` through it.
    async fn send_answered(
        &self,
        subscription: &Subscription,
        events: &[LoggedEvent],
    ) -> Vec<(Outcome, Answer)> {
        self.send(subscription, events)
            .await
            .into_iter()
            .map(|outcome| (outcome, Answer::default()))
            .collect()
    }

    /// Whether batches handed over one after another ([`Sink::submit`]) reach the
    /// destination in that order while earlier ones are still unanswered (Kafka's
    /// idempotent producer keeps one ordered stream per partition). The engine then keeps
    /// several batches of a lane out at once instead of waiting for each answer; a lane
    /// whose sink says no has one batch out at a time.
    fn pipelines(&self) -> bool {
        false
    }

    /// Hands `events` over to the destination's ordered stream and returns once they are
    /// queued there, with a future of their outcomes (one per event, in order). Called
    /// only when [`Sink::pipelines`]; the default sends and answers at once.
    async fn submit(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Submitted {
        let outcomes = self.send(subscription, events).await;
        Box::pin(std::future::ready(outcomes))
    }
}

/// The outcomes of a batch handed over by [`Sink::submit`], resolved once the destination
/// answered every event of it.
pub type Submitted = Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'static>>;
