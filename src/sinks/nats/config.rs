//! The `[nats]` config section. Each field's `///` line is its entry in the README's
//! config table: `config::reference` renders the table from this file's source
//! ([`CONFIG`] carries it), so the doc comment stays the one place a key is described.

use serde::{Deserialize, Serialize};

use super::subject;
use crate::catalog::EventKind;
use crate::config::{Config, ConfigError};
use crate::sinks::ConfigSection;

/// The section as the configuration code knows it.
pub(super) const CONFIG: ConfigSection = ConfigSection {
    source: include_str!("config.rs"),
    evolution_env: EVOLUTION_ENV,
    event_list: Some(("NATS_EVENTS_", "nats.global_events")),
    list_keys: &["nats.global_events"],
    validate,
};

/// Evolution's env names of this section, each with the key it sets.
const EVOLUTION_ENV: &[(&str, &str)] = &[
    ("NATS_ENABLED", "nats.enabled"),
    ("NATS_URI", "nats.uri"),
    ("NATS_GLOBAL_ENABLED", "nats.global_enabled"),
    ("NATS_PREFIX_KEY", "nats.prefix_key"),
];

/// NATS sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Sink available (`NATS_ENABLED`).
    pub enabled: bool,
    /// Server URL, or several comma-separated; credentials may be in it (`NATS_URI`).
    pub uri: String,
    /// Global mode (`NATS_GLOBAL_ENABLED`).
    pub global_enabled: bool,
    /// Global subject prefix (`NATS_PREFIX_KEY`); unset = the bare dotted event.
    pub prefix_key: Option<String>,
    /// Global mode events (`NATS_EVENTS_<UPPER>=true`); empty = all.
    pub global_events: Vec<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            uri: "nats://127.0.0.1:4222".into(),
            global_enabled: false,
            prefix_key: None,
            global_events: Vec::new(),
        }
    }
}

impl NatsConfig {
    /// The global prefix, when set and not empty (Evolution treats an empty one as none).
    pub fn prefix(&self) -> Option<&str> {
        self.prefix_key.as_deref().filter(|p| !p.is_empty())
    }
}

/// The rules types cannot express. Checked only when the sink is on, so a default URI
/// never stops a server that does not use NATS.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = &config.nats;
    EventKind::parse_list(&c.global_events)
        .map_err(|e| ConfigError::rule("nats.global_events", e))?;
    if let Some(prefix) = c.prefix() {
        subject::check(prefix).map_err(|e| ConfigError::rule("nats.prefix_key", e))?;
    }
    if c.enabled {
        super::connection::server_addrs(&c.uri).map_err(|e| ConfigError::rule("nats.uri", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(env: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        Config::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn evolutions_env_names_set_the_section() {
        let cfg = load(&[
            ("NATS_ENABLED", "true"),
            ("NATS_URI", "nats://u:p@h1:4222,nats://h2:4222"),
            ("NATS_GLOBAL_ENABLED", "true"),
            ("NATS_PREFIX_KEY", "acme"),
            ("NATS_EVENTS_MESSAGES_UPSERT", "true"),
            ("NATS_EVENTS_CALL", "false"),
        ])
        .unwrap();
        let c = &cfg.nats;
        assert!(c.enabled && c.global_enabled);
        assert_eq!(c.uri, "nats://u:p@h1:4222,nats://h2:4222");
        assert_eq!(c.prefix(), Some("acme"));
        assert_eq!(c.global_events, vec!["MESSAGES_UPSERT".to_string()]);
        let off = load(&[("NATS_PREFIX_KEY", "")]).unwrap();
        assert_eq!(
            off.nats.prefix(),
            None,
            "empty is no prefix, as in Evolution"
        );
    }

    #[test]
    fn a_bad_uri_or_prefix_names_its_key() {
        let err = load(&[("NATS_ENABLED", "true"), ("NATS_URI", "http://h:4222")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nats.uri"), "{err}");
        let err = load(&[("NATS_PREFIX_KEY", "my prefix")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nats.prefix_key"), "{err}");
        // Off, the default URI is never looked at.
        assert!(load(&[("NATS_URI", "http://h")]).is_ok());
    }
}
