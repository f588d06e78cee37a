//! The `[kafka]` config section. Each field's `///` line is its entry in the README's
//! config table: `config::reference` renders the table from this file's source
//! ([`CONFIG`] carries it), so the doc comment stays the one place a key is described.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::EventKind;
use crate::config::{Config, ConfigError};
use crate::sinks::ConfigSection;

/// The section as the configuration code knows it.
pub(super) const CONFIG: ConfigSection = ConfigSection {
    source: include_str!("config.rs"),
    evolution_env: EVOLUTION_ENV,
    event_list: Some(("KAFKA_EVENTS_", "kafka.global_events")),
    list_keys: &["kafka.global_events"],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("KAFKA_ENABLED", "kafka.enabled"),
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("KAFKA_CLIENT_ID", "kafka.client_id"),
    ("KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("KAFKA_GLOBAL_ENABLED", "kafka.global_enabled"),
    ("KAFKA_NUM_PARTITIONS", "kafka.num_partitions"),
    ("KAFKA_REPLICATION_FACTOR", "kafka.replication_factor"),
    ("KAFKA_AUTO_CREATE_TOPICS", "kafka.auto_create_topics"),
];

/// Kafka sink (and engine brokers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Sink available (`KAFKA_ENABLED`).
    pub enabled: bool,
    /// Bootstrap servers, comma-separated (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Client id (`KAFKA_CLIENT_ID`).
    pub client_id: String,
    /// Topic prefix (`KAFKA_TOPIC_PREFIX`).
    pub topic_prefix: String,
    /// Global mode (`KAFKA_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// Partitions of auto-created topics (`KAFKA_NUM_PARTITIONS`).
    pub num_partitions: i32,
    /// Replication factor of auto-created topics (`KAFKA_REPLICATION_FACTOR`).
    pub replication_factor: i32,
    /// Create topics before producing (`KAFKA_AUTO_CREATE_TOPICS`).
    pub auto_create_topics: bool,
    /// Message key: `instance` or `chat`.
    pub key_by: String,
    /// Global mode events (`KAFKA_EVENTS_<UPPER>=true`); empty = all.
    pub global_events: Vec<String>,
    /// Extra librdkafka properties passed through (SASL/SSL: `security.protocol`, ...).
    pub properties: HashMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            client_id: "switchyard".into(),
            topic_prefix: "evolution".into(),
            global_enabled: false,
            num_partitions: 1,
            replication_factor: 1,
            auto_create_topics: true,
            key_by: "instance".into(),
            global_events: Vec::new(),
            properties: HashMap::new(),
        }
    }
}

/// The rules types cannot express.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = &config.kafka;
    EventKind::parse_list(&c.global_events)
        .map_err(|e| ConfigError::rule("kafka.global_events", e))?;
    if c.key_by != "instance" && c.key_by != "chat" {
        return Err(ConfigError::rule(
            "kafka.key_by",
            "must be `instance` or `chat`",
        ));
    }
    Ok(())
}
