//! RabbitMQ sink: Evolution's exchanges and quorum queues, with publisher confirms.
//!
//! # Layout
//! - `connection`: one connection and confirm-mode channel, re-established with capped
//!   exponential backoff, forever, by a background task; a send never waits for it.
//! - `topology`: which exchange, queue and routing key an event goes to (names only from
//!   [`crate::catalog`]), and their idempotent declaration, cached per connection.
//! - `message`: the AMQP body (the envelope, no `destination`) and properties.
//! - `sink`: [`RabbitmqSink`], the [`crate::sinks::Sink`] that pipelines a batch of
//!   publishes and classifies each event by its own confirm.
//! - `config`: the `[rabbitmq]` section ([`RabbitmqConfig`]) and its Evolution env names.
//! - `registration`: [`SINK`], the sink in the registration table, and its `Prepare`: a
//!   subscription's exchange, queues and bindings are declared when it starts or changes.
//!
//! # Guarantees
//! Every publish is `mandatory` and persistent on a confirm-mode channel; an event is
//! `Delivered` only after the broker's ack. A nack, a returned (unroutable) message, a
//! lost connection or a timeout is a `Retry`, so nothing is lost when a queue is first
//! created (it is declared and bound before the first publish to it) or when the broker
//! restarts (unconfirmed events are sent again from the engine's cursor).
//!
//! # Ordering
//! The engine hands one instance's consecutive events per call. Publishes on one channel
//! reach each queue in order. When an event fails, later events of the same batch bound for
//! the *same queue* are reported `Retry` even if the broker acked them, so the engine
//! re-sends that queue's tail in order after the failed event; the queue may then hold an
//! early copy of some of them, which consumers drop by `message_id` (at-least-once, as
//! after any reconnect). Events bound for other queues keep their own outcome.

mod config;
mod connection;
mod error;
mod message;
mod registration;
mod sink;
mod topology;

pub use config::RabbitmqConfig;
pub use connection::LinkOptions;
pub use error::RabbitmqError;
pub use registration::SINK;
pub use sink::RabbitmqSink;

use serde::{Deserialize, Serialize};

/// A RabbitMQ subscription's settings. Stored in control records (`{"sink":"rabbitmq","global":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitmqTarget {
    /// True for the global exchange and its prefixed queues; false for the instance's own
    /// exchange and queues.
    pub global: bool,
}
