//! The `[webhook]` config section. Each field's `///` line is its entry in the README's
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
    event_list: Some(("WEBHOOK_EVENTS_", "webhook.global_events")),
    list_keys: &[
        "webhook.non_retryable_status_codes",
        "webhook.global_events",
    ],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("WEBHOOK_GLOBAL_ENABLED", "webhook.global_enabled"),
    ("WEBHOOK_GLOBAL_URL", "webhook.global_url"),
    (
        "WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS",
        "webhook.global_by_events",
    ),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "webhook.request_timeout_ms"),
    (
        "WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES",
        "webhook.non_retryable_status_codes",
    ),
];

/// Webhook sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Allow private, loopback and link-local targets (refused by default: SSRF).
    pub allow_private_targets: bool,
    /// Request timeout in milliseconds (`WEBHOOK_REQUEST_TIMEOUT_MS`).
    pub request_timeout_ms: u64,
    /// Status codes never retried (`WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES`).
    pub non_retryable_status_codes: Vec<u16>,
    /// Concurrent requests per endpoint host.
    pub max_concurrency_per_endpoint: usize,
    /// Global webhook on (`WEBHOOK_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// Global webhook URL (`WEBHOOK_GLOBAL_URL`).
    pub global_url: String,
    /// Append the kebab event to the global URL (`WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS`).
    pub global_by_events: bool,
    /// Events for the global webhook (`WEBHOOK_EVENTS_<UPPER>=true`); empty = all.
    pub global_events: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            request_timeout_ms: 30_000,
            non_retryable_status_codes: vec![400, 401, 403, 404, 422],
            max_concurrency_per_endpoint: 32,
            global_enabled: false,
            global_url: String::new(),
            global_by_events: false,
            global_events: Vec::new(),
        }
    }
}

/// The rules types cannot express.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = &config.webhook;
    if c.request_timeout_ms == 0 {
        return Err(ConfigError::rule(
            "webhook.request_timeout_ms",
            "must be at least 1",
        ));
    }
    if c.global_enabled && url::Url::parse(&c.global_url).is_err() {
        return Err(ConfigError::rule(
            "webhook.global_url",
            "must be an absolute URL when webhook.global_enabled is true",
        ));
    }
    EventKind::parse_list(&c.global_events)
        .map_err(|e| ConfigError::rule("webhook.global_events", e))?;
    Ok(())
}
