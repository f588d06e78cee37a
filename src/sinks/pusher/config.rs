//! The `[pusher]` config section. Each field's `///` line is its entry in the README's
//! config table: `config::reference` renders the table from this file's source
//! ([`CONFIG`] carries it), so the doc comment stays the one place a key is described.

use serde::{Deserialize, Serialize};

use super::PusherApp;
use crate::catalog::EventKind;
use crate::config::{Config, ConfigError};
use crate::sinks::ConfigSection;

/// The section as the configuration code knows it.
pub(super) const CONFIG: ConfigSection = ConfigSection {
    source: include_str!("config.rs"),
    evolution_env: EVOLUTION_ENV,
    event_list: Some(("PUSHER_EVENTS_", "pusher.global_events")),
    list_keys: &["pusher.global_events"],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("PUSHER_ENABLED", "pusher.enabled"),
    ("PUSHER_GLOBAL_ENABLED", "pusher.global_enabled"),
    ("PUSHER_GLOBAL_APP_ID", "pusher.global_app_id"),
    ("PUSHER_GLOBAL_KEY", "pusher.global_key"),
    ("PUSHER_GLOBAL_SECRET", "pusher.global_secret"),
    ("PUSHER_GLOBAL_CLUSTER", "pusher.global_cluster"),
    ("PUSHER_GLOBAL_USE_TLS", "pusher.global_use_tls"),
];

/// Pusher sink. Its `Debug` hides the global secret, so no log line can carry it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PusherConfig {
    /// Sink available (`PUSHER_ENABLED`).
    pub enabled: bool,
    /// Global app on: every instance's events on it (`PUSHER_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// Global app id (`PUSHER_GLOBAL_APP_ID`).
    pub global_app_id: String,
    /// Global app key (`PUSHER_GLOBAL_KEY`).
    pub global_key: String,
    /// Global app secret (`PUSHER_GLOBAL_SECRET`); never logged.
    pub global_secret: String,
    /// Global app cluster: requests go to `api-{cluster}.pusher.com` (`PUSHER_GLOBAL_CLUSTER`).
    pub global_cluster: String,
    /// HTTPS to the global app's host (`PUSHER_GLOBAL_USE_TLS`).
    pub global_use_tls: bool,
    /// Base URL used instead of the global app's cluster host (self-hosted soketi, tests).
    pub global_endpoint: Option<String>,
    /// Events for the global app (`PUSHER_EVENTS_<UPPER>=true`); empty = all.
    pub global_events: Vec<String>,
    /// Whole-request timeout in milliseconds; a timeout is retried.
    pub request_timeout_ms: u64,
    /// Events per `batch_events` request, 1 to 10 (Pusher's limit).
    pub max_batch: usize,
    /// Let an instance's own `endpoint` be a private, loopback or link-local address.
    pub allow_private_targets: bool,
}

impl Default for PusherConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            global_enabled: false,
            global_app_id: String::new(),
            global_key: String::new(),
            global_secret: String::new(),
            global_cluster: String::new(),
            global_use_tls: true,
            global_endpoint: None,
            global_events: Vec::new(),
            request_timeout_ms: 10_000,
            max_batch: 10,
            allow_private_targets: false,
        }
    }
}

impl std::fmt::Debug for PusherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherConfig")
            .field("enabled", &self.enabled)
            .field("global_enabled", &self.global_enabled)
            .field("global_app_id", &self.global_app_id)
            .field("global_key", &self.global_key)
            .field("global_secret", &"<redacted>")
            .field("global_cluster", &self.global_cluster)
            .field("global_use_tls", &self.global_use_tls)
            .field("global_endpoint", &self.global_endpoint)
            .field("global_events", &self.global_events)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_batch", &self.max_batch)
            .field("allow_private_targets", &self.allow_private_targets)
            .finish()
    }
}

impl PusherConfig {
    /// The global app the section describes, if it describes one.
    pub fn global_app(&self) -> Option<PusherApp> {
        (self.enabled && self.global_enabled).then(|| PusherApp {
            app_id: self.global_app_id.clone(),
            key: self.global_key.clone(),
            secret: self.global_secret.clone(),
            cluster: self.global_cluster.clone(),
            use_tls: self.global_use_tls,
            endpoint: self.global_endpoint.clone(),
        })
    }
}

/// The rules types cannot express.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = &config.pusher;
    if c.request_timeout_ms == 0 {
        return Err(ConfigError::rule(
            "pusher.request_timeout_ms",
            "must be at least 1",
        ));
    }
    if !(1..=10).contains(&c.max_batch) {
        return Err(ConfigError::rule(
            "pusher.max_batch",
            "must be between 1 and 10 (Pusher's batch limit)",
        ));
    }
    if let Some(endpoint) = &c.global_endpoint {
        super::settings::check_endpoint(endpoint)
            .map_err(|rule| ConfigError::rule("pusher.global_endpoint", rule))?;
    }
    if c.enabled && c.global_enabled {
        let required = [
            ("pusher.global_app_id", &c.global_app_id),
            ("pusher.global_key", &c.global_key),
            ("pusher.global_secret", &c.global_secret),
        ];
        for (key, value) in required {
            if value.is_empty() {
                return Err(ConfigError::rule(
                    key,
                    "is required when pusher.global_enabled is true",
                ));
            }
        }
        if c.global_cluster.is_empty() && c.global_endpoint.is_none() {
            return Err(ConfigError::rule(
                "pusher.global_cluster",
                "is required when pusher.global_enabled is true (or set pusher.global_endpoint)",
            ));
        }
    }
    EventKind::parse_list(&c.global_events)
        .map_err(|e| ConfigError::rule("pusher.global_events", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(None, env)
    }

    #[test]
    fn evolutions_names_describe_the_global_app() {
        let config = load(&[
            ("PUSHER_ENABLED", "true"),
            ("PUSHER_GLOBAL_ENABLED", "true"),
            ("PUSHER_GLOBAL_APP_ID", "1234"),
            ("PUSHER_GLOBAL_KEY", "key"),
            ("PUSHER_GLOBAL_SECRET", "secret"),
            ("PUSHER_GLOBAL_CLUSTER", "eu"),
            ("PUSHER_GLOBAL_USE_TLS", "false"),
            ("PUSHER_EVENTS_MESSAGES_UPSERT", "true"),
            ("PUSHER_EVENTS_CALL", "false"),
        ])
        .unwrap();
        let app = config.pusher.global_app().expect("a global app");
        assert_eq!(
            (app.app_id.as_str(), app.key.as_str(), app.cluster.as_str()),
            ("1234", "key", "eu")
        );
        assert_eq!(app.secret, "secret");
        assert!(!app.use_tls);
        assert_eq!(config.pusher.global_events, vec!["MESSAGES_UPSERT"]);
        assert!(!format!("{:?}", config.pusher).contains("secret\""));
    }

    #[test]
    fn an_incomplete_global_app_names_the_missing_key() {
        let on = [
            ("PUSHER_ENABLED", "true"),
            ("PUSHER_GLOBAL_ENABLED", "true"),
        ];
        let err = load(&on).unwrap_err().to_string();
        assert!(err.contains("pusher.global_app_id"), "{err}");
        let mut env = on.to_vec();
        env.extend([
            ("PUSHER_GLOBAL_APP_ID", "1"),
            ("PUSHER_GLOBAL_KEY", "k"),
            ("PUSHER_GLOBAL_SECRET", "s"),
        ]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("pusher.global_cluster"), "{err}");
        env.push((
            "SWITCHYARD_PUSHER__GLOBAL_ENDPOINT",
            "http://127.0.0.1:6001",
        ));
        assert!(load(&env).is_ok(), "an endpoint stands in for the cluster");
        env.push(("SWITCHYARD_PUSHER__MAX_BATCH", "11"));
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("pusher.max_batch"), "{err}");
    }
}
