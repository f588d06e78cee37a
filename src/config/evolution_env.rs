//! Evolution API's environment names, mapped onto our config keys.
//!
//! Users move a working `.env` from Evolution to Switchyard; every name that means the same
//! thing here is read. `SWITCHYARD_*` names win over these when both are set.

use std::collections::HashMap;

use crate::catalog::EventKind;
use crate::sinks::SINKS;

/// Evolution env name -> our dotted config key, for the sections that are not a sink's (each
/// sink's are in its `config.rs`, see [`evolution_env`]).
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("AUTHENTICATION_API_KEY", "auth.api_key"),
    (
        "AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES",
        "auth.expose_in_envelope",
    ),
    ("SERVER_URL", "server.url"),
    ("SERVER_NAME", "server.name"),
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
    ("S3_ENABLED", "s3.enabled"),
    ("S3_ACCESS_KEY", "s3.access_key"),
    ("S3_SECRET_KEY", "s3.secret_key"),
    ("S3_BUCKET", "s3.bucket"),
    ("S3_ENDPOINT", "s3.endpoint"),
    ("S3_PORT", "s3.port"),
    ("S3_USE_SSL", "s3.use_ssl"),
    ("S3_REGION", "s3.region"),
    ("WEBSOCKET_ENABLED", "websocket.enabled"),
    ("WEBSOCKET_GLOBAL_EVENTS", "websocket.global_events"),
];

/// Every Evolution env name the binary reads, with the dotted config key it sets: the
/// README's config table is rendered from these (`config::reference`) and a test checks
/// them, so they cannot drift.
pub fn evolution_env() -> impl Iterator<Item = (&'static str, &'static str)> {
    let sinks = SINKS.iter().flat_map(|sink| sink.config.evolution_env);
    EVOLUTION_ENV.iter().chain(sinks).copied()
}

/// Env prefixes whose `<PREFIX><UPPER_EVENT>=true` entries build a global events list (each
/// sink's), with the list key.
pub(crate) fn event_lists() -> impl Iterator<Item = (&'static str, &'static str)> {
    SINKS.iter().filter_map(|sink| sink.config.event_list)
}

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
    for (name, key) in evolution_env() {
        if let Some(value) = env.get(name) {
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
            out.push((key.to_string(), parsed));
        }
    }
    for (prefix, key) in event_lists() {
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
            out.push((key.to_string(), config::Value::from(list)));
        }
    }
    out
}
