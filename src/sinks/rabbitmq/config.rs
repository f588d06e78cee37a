//! The `[rabbitmq]` config section. Each field's `///` line is its entry in the README's
//! config table: `config::reference` renders the table from this file's source
//! ([`CONFIG`] carries it), so the doc comment stays the one place a key is described.

use serde::{Deserialize, Serialize};

use crate::catalog::EventKind;
use crate::config::{Config, ConfigError};
use crate::sinks::ConfigSection;

/// The section as the configuration code knows it.
pub(super) const CONFIG: ConfigSection = ConfigSection {
    source: include_str!("config.rs"),
    evolution_env: EVOLUTION_ENV,
    event_list: Some(("RABBITMQ_EVENTS_", "rabbitmq.global_events")),
    list_keys: &["rabbitmq.global_events"],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("RABBITMQ_ENABLED", "rabbitmq.enabled"),
    ("RABBITMQ_URI", "rabbitmq.uri"),
    ("RABBITMQ_EXCHANGE_NAME", "rabbitmq.exchange_name"),
    ("RABBITMQ_GLOBAL_ENABLED", "rabbitmq.global_enabled"),
    ("RABBITMQ_PREFIX_KEY", "rabbitmq.prefix_key"),
];

/// RabbitMQ sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqConfig {
    /// Sink available (`RABBITMQ_ENABLED`).
    pub enabled: bool,
    /// AMQP URI (`RABBITMQ_URI`).
    pub uri: String,
    /// Global exchange (`RABBITMQ_EXCHANGE_NAME`).
    pub exchange_name: String,
    /// Global mode (`RABBITMQ_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// Global queue prefix (`RABBITMQ_PREFIX_KEY`); unset = no prefix.
    pub prefix_key: Option<String>,
    /// Global mode events (`RABBITMQ_EVENTS_<UPPER>=true`); empty = all.
    pub global_events: Vec<String>,
}

impl Default for RabbitmqConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange_name: "evolution_exchange".into(),
            global_enabled: false,
            prefix_key: None,
            global_events: Vec::new(),
        }
    }
}

/// The rules types cannot express.
fn validate(config: &Config) -> Result<(), ConfigError> {
    EventKind::parse_list(&config.rabbitmq.global_events)
        .map_err(|e| ConfigError::rule("rabbitmq.global_events", e))?;
    Ok(())
}
