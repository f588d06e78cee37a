//! The NATS sink: Evolution's envelope published to `{instance}.{dotted event}` subjects
//! (globally `{prefix}.{dotted event}`, or the bare dotted event without a prefix), with
//! the event id in the `Nats-Msg-Id` header (`{id}:global` on the global subjects).
//!
//! # Layout
//! - `connection.rs`: the one client (async-nats), connecting in the background and
//!   reconnecting forever; the round trip that confirms core publishes; which subjects a
//!   JetStream stream captures.
//! - `subject.rs`: subject names (the event's part from [`crate::catalog`]) and the rules
//!   of a subject one may publish to.
//! - `sink.rs`: [`NatsSink`], the [`Sink`](crate::sinks::Sink): headers, body, publish a
//!   batch pipelined, confirm, classify.
//! - `config.rs`: the `[nats]` section ([`NatsConfig`]) and its Evolution env names.
//! - `registration.rs`: [`SINK`], the sink in the registration table. Subjects need no
//!   declaring, so there is no preparation step.
//!
//! # Guarantees
//! An event is `Delivered` only once the server confirmed it: when a JetStream stream
//! captures its subject, by the stream's publish ack (the stream has stored it, or already
//! had it: `Nats-Msg-Id` makes the engine's redeliveries after a crash or a lost ack
//! duplicates the stream drops within its duplicate window); otherwise by a round trip
//! after the core publishes (the server has routed them to whoever subscribes; core NATS
//! keeps nothing for a subscriber that is not there). While the client is not connected,
//! or the server does not confirm within `operation_timeout`, events are `Retry`; a
//! subject that breaks NATS's rules or a message over the server's `max_payload` is
//! `Permanent`.
//!
//! # Ordering
//! The engine hands one lane's consecutive events per call; they are published in order on
//! one connection, which the server keeps per subject. When one fails, every later event
//! of the batch is reported `Retry` too, even if confirmed, so the engine sends the lane's
//! tail again in order after it: a stream drops the early copies by `Nats-Msg-Id`, a core
//! subscriber may see them twice (at-least-once, as after any reconnect).

mod config;
mod connection;
mod registration;
mod sink;
mod subject;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;

pub use config::NatsConfig;
pub use registration::SINK;
pub use sink::NatsSink;
pub use subject::{check as check_subject, subject_for, InvalidSubject};

/// A NATS subscription's settings. Stored in control records
/// (`{"sink":"nats","global":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsTarget {
    /// True for the global `{prefix}.{event}` subjects; false for the instance's own.
    pub global: bool,
}

/// Settings of the NATS sink (from `[nats]` and `server.url`), with the bounds the
/// configuration does not set.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsOptions {
    /// This server's public URL: the envelope's `server_url`.
    pub server_url: String,
    /// The server URLs, comma-separated.
    pub uri: String,
    /// The global subjects' prefix, if any.
    pub prefix: Option<String>,
    /// Bound on one connection attempt.
    pub connect_timeout: Duration,
    /// Bound on one send (stream look-ups, publishes, acks and the round trip together).
    pub operation_timeout: Duration,
    /// How often the client pings the server; a server gone silent is noticed within two.
    pub ping_interval: Duration,
    /// How long what is known about a subject's stream is trusted: a stream created or
    /// deleted later is noticed within this (until then the confirmation is the other
    /// kind, and nothing is lost either way).
    pub capture_ttl: Duration,
    /// Events per `send` call; the whole batch is in flight at once.
    pub max_batch: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions::from_nats_config(&NatsConfig::default(), "http://localhost:8080")
    }
}

impl NatsOptions {
    /// The options a configuration describes.
    pub fn from_config(cfg: &Config) -> NatsOptions {
        NatsOptions::from_nats_config(&cfg.nats, &cfg.server.url)
    }

    /// The options from the `[nats]` section and the server's public URL.
    pub fn from_nats_config(cfg: &NatsConfig, server_url: &str) -> NatsOptions {
        NatsOptions {
            server_url: server_url.to_owned(),
            uri: cfg.uri.clone(),
            prefix: cfg.prefix().map(str::to_owned),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            capture_ttl: Duration::from_secs(30),
            max_batch: 256,
        }
    }
}

/// The NATS sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// `nats.uri` names no usable server address.
    #[error("invalid NATS URI: {0}")]
    InvalidUri(String),
    /// The client refused to start (it connects in the background, so this is not a
    /// server being down).
    #[error("cannot start the NATS client: {0}")]
    Client(String),
}
