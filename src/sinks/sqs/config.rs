//! The `[sqs]` config section. Each field's `///` line is its entry in the README's
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
    event_list: Some(("SQS_EVENTS_", "sqs.global_events")),
    list_keys: &["sqs.global_events"],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("SQS_ENABLED", "sqs.enabled"),
    ("SQS_ACCESS_KEY_ID", "sqs.access_key_id"),
    ("SQS_SECRET_ACCESS_KEY", "sqs.secret_access_key"),
    ("SQS_ACCOUNT_ID", "sqs.account_id"),
    ("SQS_REGION", "sqs.region"),
    ("SQS_GLOBAL_ENABLED", "sqs.global_enabled"),
    (
        "SQS_GLOBAL_FORCE_SINGLE_QUEUE",
        "sqs.global_force_single_queue",
    ),
    ("SQS_GLOBAL_PREFIX_NAME", "sqs.global_prefix_name"),
    ("SQS_MAX_PAYLOAD_SIZE", "sqs.max_payload_size"),
];

/// SQS sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsConfig {
    /// Sink available (`SQS_ENABLED`).
    pub enabled: bool,
    /// Endpoint override for SQS-compatible servers (moto, ElasticMQ, LocalStack).
    pub endpoint_url: Option<String>,
    /// Access key (`SQS_ACCESS_KEY_ID`); unset = the usual AWS chain.
    pub access_key_id: Option<String>,
    /// Secret key (`SQS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Account id (`SQS_ACCOUNT_ID`).
    pub account_id: Option<String>,
    /// Region (`SQS_REGION`).
    pub region: String,
    /// Global mode (`SQS_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// One queue for every event in global mode (`SQS_GLOBAL_FORCE_SINGLE_QUEUE`).
    pub global_force_single_queue: bool,
    /// Global queue prefix (`SQS_GLOBAL_PREFIX_NAME`).
    pub global_prefix_name: String,
    /// Largest message body in bytes (`SQS_MAX_PAYLOAD_SIZE`); larger ones go to S3 when
    /// `s3.enabled`, else are dead-lettered.
    pub max_payload_size: usize,
    /// FIFO `MessageGroupId`: `instance` or `chat`.
    pub group_by: String,
    /// Global mode events; empty = all.
    pub global_events: Vec<String>,
}

impl Default for SqsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            account_id: None,
            region: "us-east-1".into(),
            global_enabled: false,
            global_force_single_queue: false,
            global_prefix_name: "global".into(),
            max_payload_size: 262_144,
            group_by: "instance".into(),
            global_events: Vec::new(),
        }
    }
}

/// The rules types cannot express.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = &config.sqs;
    EventKind::parse_list(&c.global_events)
        .map_err(|e| ConfigError::rule("sqs.global_events", e))?;
    if c.group_by != "instance" && c.group_by != "chat" {
        return Err(ConfigError::rule(
            "sqs.group_by",
            "must be `instance` or `chat`",
        ));
    }
    Ok(())
}
