//! Evolution API's environment names, mapped onto our config keys.
//!
//! Users move a working `.env` from Evolution to Switchyard; every name that means the same
//! thing here is read. `SWITCHYARD_*` names win over these when both are set.

use std::collections::HashMap;

use crate::catalog::EventKind;

/// Evolution env name -> our dotted config key. The README's config table is rendered from
/// this list (`config::reference`) and a test checks it, so it cannot drift.
pub const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("AUTHENTICATION_API_KEY", "auth.api_key"),
    (
        "AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES",
        "auth.expose_in_envelope",
    ),
    ("SERVER_URL", "server.url"),
    ("SERVER_NAME", "server.name"),
    ("WEBHOOK_GLOBAL_ENABLED", "webhook.global_enabled"),
    ("WEBHOOK_GLOBAL_URL", "webhook.global_url"),
    (
        "WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS",
        "webhook.global_by_events",
    ),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "webhook.request_timeout_ms"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "delivery.max_attempts"),
    (
        "WEBHOOK_RETRY_INITIAL_DELAY_SECONDS",
        "delivery.initial_delay_seconds",
    ),
    (
        "WEBHOOK_RETRY_MAX_DELAY_SECONDS",
        "delivery.max_delay_seconds",
    ),
    ("WEBHOOK_RETRY_JITTER_FACTOR", "delivery.jitter_factor"),
    (
        "WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES",
        "webhook.non_retryable_status_codes",
    ),
    ("RABBITMQ_ENABLED", "rabbitmq.enabled"),
    ("RABBITMQ_URI", "rabbitmq.uri"),
    ("RABBITMQ_EXCHANGE_NAME", "rabbitmq.exchange_name"),
    ("RABBITMQ_GLOBAL_ENABLED", "rabbitmq.global_enabled"),
    ("RABBITMQ_PREFIX_KEY", "rabbitmq.prefix_key"),
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
    ("WEBSOCKET_ENABLED", "websocket.enabled"),
    ("WEBSOCKET_GLOBAL_EVENTS", "websocket.global_events"),
    ("KAFKA_ENABLED", "kafka.enabled"),
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("KAFKA_CLIENT_ID", "kafka.client_id"),
    ("KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("KAFKA_GLOBAL_ENABLED", "kafka.global_enabled"),
    ("KAFKA_NUM_PARTITIONS", "kafka.num_partitions"),
    ("KAFKA_REPLICATION_FACTOR", "kafka.replication_factor"),
    ("KAFKA_AUTO_CREATE_TOPICS", "kafka.auto_create_topics"),
];

/// Env prefixes whose `<PREFIX><UPPER_EVENT>=true` entries build a global events list.
pub(crate) const EVENT_LISTS: &[(&str, &str)] = &[
    ("WEBHOOK_EVENTS_", "webhook.global_events"),
    ("RABBITMQ_EVENTS_", "rabbitmq.global_events"),
    ("SQS_EVENTS_", "sqs.global_events"),
    ("KAFKA_EVENTS_", "kafka.global_events"),
];

/// Evolution's env names as a config source, layered above the file and below
/// `SWITCHYARD_*` env.
#[derive(Debug, Clone)]
pub(super) struct EvolutionEnv {
    values: Vec<(String, config::Value)>,
}

impl EvolutionEnv {
    /// Reads the Evolution names present in `env`.
    pub(super) fn new(env: &HashMap<String, String>) -> Self {
        EvolutionEnv {
            values: overrides(env),
        }
    }
}

impl config::Source for EvolutionEnv {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.values.iter().cloned().collect())
    }
}

/// The config values Evolution's env names imply, as (dotted key, value).
fn overrides(env: &HashMap<String, String>) -> Vec<(String, config::Value)> {
    let mut out = Vec::new();
    for (name, key) in EVOLUTION_ENV {
        if let Some(value) = env.get(*name) {
            let value = value.trim();
            let parsed: config::Value = if key.ends_with("non_retryable_status_codes") {
                let codes: Vec<config::Value> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| config::Value::from(s.to_string()))
                    .collect();
                config::Value::from(codes)
            } else {
                config::Value::from(value.to_string())
            };
            out.push(((*key).to_string(), parsed));
        }
    }
    for (prefix, key) in EVENT_LISTS {
        let mut events: Vec<(usize, String)> = env
            .iter()
            .filter_map(|(name, value)| {
                let upper = name.strip_prefix(prefix)?;
                let on = matches!(
                    value.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes"
                );
                // Unknown names are kept so validation reports them by key.
                let order = EventKind::parse(upper)
                    .map(|k| EventKind::all().position(|x| x == k).unwrap_or(usize::MAX))
                    .unwrap_or(usize::MAX);
                on.then(|| (order, upper.to_string()))
            })
            .collect();
        if !events.is_empty() {
            events.sort();
            let list: Vec<config::Value> = events
                .into_iter()
                .map(|(_, e)| config::Value::from(e))
                .collect();
            out.push(((*key).to_string(), config::Value::from(list)));
        }
    }
    out
}
