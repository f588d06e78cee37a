//! Sinks: the one [`Sink`] trait, and one folder per destination kind.
//!
//! A sink only knows how to send a batch and classify each outcome; retries, ordering,
//! cursors and dead letters live once, in `delivery`.

pub mod kafka;
pub mod rabbitmq;
pub mod sqs;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
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

/// The kinds of sink a subscription can target; the key of a [`SinkRegistry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SinkKind {
    /// HTTP webhooks.
    Webhook,
    /// RabbitMQ.
    Rabbitmq,
    /// Amazon SQS (or a compatible server).
    Sqs,
    /// Kafka topics.
    Kafka,
}

impl SinkKind {
    /// The lower-case name used in metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Rabbitmq => "rabbitmq",
            SinkKind::Sqs => "sqs",
            SinkKind::Kafka => "kafka",
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sink serves each kind. Adding a sink to the server is one
/// `.with(SinkKind::X, Arc::new(XSink::new(..)))` line; subscriptions of a kind with no sink
/// registered stay idle (their cursor does not move) and show it in their status.
#[derive(Clone, Default)]
pub struct SinkRegistry {
    sinks: HashMap<SinkKind, Arc<dyn Sink>>,
}

impl SinkRegistry {
    /// An empty registry.
    pub fn new() -> SinkRegistry {
        SinkRegistry::default()
    }

    /// Registers (or replaces) the sink serving `kind`.
    pub fn with(mut self, kind: SinkKind, sink: Arc<dyn Sink>) -> SinkRegistry {
        self.sinks.insert(kind, sink);
        self
    }

    /// The sink serving `kind`, if one is registered.
    pub fn get(&self, kind: SinkKind) -> Option<Arc<dyn Sink>> {
        self.sinks.get(&kind).cloned()
    }
}

impl fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.sinks.keys().collect();
        kinds.sort();
        f.debug_struct("SinkRegistry")
            .field("kinds", &kinds)
            .finish()
    }
}
