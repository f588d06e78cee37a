//! The Kafka sink: Evolution's envelope (plus `timestamp`) produced to
//! `{prefix}.{instance}.{dotted event}` topics (or `{prefix}.global.{dotted event}`) by an
//! idempotent producer; an event counts as delivered only once its delivery report is in.
//!
//! - `producer.rs`: the librdkafka settings (ours, then the config's pass-through
//!   `properties`, then the guarantees we rely on) and the producer itself.
//! - `topics.rs`: topic names, their validation, and creating them once (AdminClient).
//! - `sink.rs`: the [`Sink`](crate::sinks::Sink): key (Evolution's: the instance, or
//!   `{instance}-{event}` on global topics; or the chat), headers, body, enqueue a batch,
//!   await every delivery report, classify.
//! - `config.rs`: the `[kafka]` section ([`KafkaConfig`], also the Kafka log engine's
//!   connection) and its Evolution env names.
//! - `registration.rs`: [`SINK`], the sink in the registration table.

mod config;
mod producer;
mod registration;
mod sink;
mod topics;

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;

pub use config::KafkaConfig;
pub use producer::{client_config, KafkaSinkError};
pub use registration::SINK;
pub use sink::{message_key, record_key, KafkaSink};
pub use topics::{topic_for, TopicError};

/// A Kafka subscription's settings. Stored in control records
/// (`{"sink":"kafka","global":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTarget {
    /// True for the `{prefix}.global.{event}` topics; false for the instance's own.
    pub global: bool,
}

/// What the message key is; all events with one key land in one partition, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyBy {
    /// Evolution's keys: the instance name on its own topics, `{instance}-{event}` on
    /// global ones; one ordered stream per instance and event either way.
    #[default]
    Instance,
    /// The chat (`data.key.remoteJid`), falling back to the instance when an event has none:
    /// spreads an instance over partitions while keeping each conversation in order.
    Chat,
}

/// Settings of the Kafka sink (from `[kafka]` and `server.url`).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOptions {
    /// This server's public URL: the envelope's `server_url` and the `origin` header.
    pub server_url: String,
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// `client.id`.
    pub client_id: String,
    /// The first part of every topic name.
    pub topic_prefix: String,
    /// Partitions of topics we create.
    pub num_partitions: i32,
    /// Replication factor of topics we create.
    pub replication_factor: i32,
    /// Create each topic before the first produce to it; when off, a missing topic is a
    /// retry that names it.
    pub auto_create_topics: bool,
    /// What the message key is.
    pub key_by: KeyBy,
    /// librdkafka properties passed through (SASL/SSL, tuning).
    pub properties: HashMap<String, String>,
    /// Events per `send` call; the whole batch is in flight at once.
    pub max_batch: usize,
    /// How long librdkafka keeps trying one message (`message.timeout.ms`) before its
    /// delivery report says it failed; the engine then retries on its own schedule.
    pub message_timeout: Duration,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions::from_kafka_config(&KafkaConfig::default(), "http://localhost:8080")
    }
}

impl KafkaOptions {
    /// The options a configuration describes.
    pub fn from_config(cfg: &Config) -> KafkaOptions {
        KafkaOptions::from_kafka_config(&cfg.kafka, &cfg.server.url)
    }

    /// The options from the `[kafka]` section and the server's public URL.
    pub fn from_kafka_config(cfg: &KafkaConfig, server_url: &str) -> KafkaOptions {
        KafkaOptions {
            server_url: server_url.to_owned(),
            brokers: cfg.brokers.clone(),
            client_id: cfg.client_id.clone(),
            topic_prefix: cfg.topic_prefix.clone(),
            num_partitions: cfg.num_partitions.max(1),
            replication_factor: cfg.replication_factor.max(1),
            auto_create_topics: cfg.auto_create_topics,
            key_by: if cfg.key_by.eq_ignore_ascii_case("chat") {
                KeyBy::Chat
            } else {
                KeyBy::Instance
            },
            properties: cfg.properties.clone(),
            max_batch: 500,
            message_timeout: Duration::from_secs(30),
        }
    }
}
