//! One typed configuration: embedded defaults, then a TOML file, then Evolution's env names,
//! then `SWITCHYARD_<SECTION>__<KEY>` env (highest).
//!
//! Every field's `///` line is the user-facing reference; `deny_unknown_fields` turns a
//! typo in the file into an error naming the key, before anything starts.

mod evolution_env;
mod fsync;
pub mod reference;
mod sections;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sinks::kafka::KafkaConfig;
use crate::sinks::nats::NatsConfig;
use crate::sinks::pusher::PusherConfig;
use crate::sinks::rabbitmq::RabbitmqConfig;
use crate::sinks::sqs::SqsConfig;
use crate::sinks::webhook::WebhookConfig;
use crate::sinks::SINKS;
pub use evolution_env::evolution_env;
pub use fsync::FsyncSetting;
pub use sections::*;

/// Prefix of Switchyard's own environment variables.
pub const ENV_PREFIX: &str = "SWITCHYARD";

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value had the wrong type or an unknown key appeared; `config` names the key.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// A value parsed but breaks a rule.
    #[error("invalid configuration: `{key}`: {message}")]
    Rule {
        /// The dotted key, as in the file (`log.fsync`).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    /// The value of `key` breaks a rule; `message` says what is allowed.
    pub fn rule(key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Rule {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// API authentication.
    pub auth: AuthConfig,
    /// The event log.
    pub log: LogConfig,
    /// Ingest limits and dedupe.
    pub ingest: IngestConfig,
    /// Delivery engine settings shared by all sinks.
    pub delivery: DeliveryConfig,
    /// The attempt log.
    pub attempts: AttemptsConfig,
    /// Operational events.
    pub alerts: AlertsConfig,
    // Each sink's section, named after it; the struct and everything else about the section
    // are in the sink's folder (`config.rs`, reached through the registration table).
    /// Webhook sink.
    pub webhook: WebhookConfig,
    /// RabbitMQ sink.
    pub rabbitmq: RabbitmqConfig,
    /// SQS sink.
    pub sqs: SqsConfig,
    /// Kafka sink.
    pub kafka: KafkaConfig,
    /// Pusher sink.
    pub pusher: PusherConfig,
    /// S3 storage for SQS messages over the size limit.
    pub s3: S3Config,
    /// NATS sink.
    pub nats: NatsConfig,
    /// WebSocket listeners.
    pub websocket: WebsocketConfig,
    /// Per-account rate limits.
    pub rate_limit: RateLimitConfig,
}

impl Config {
    /// Loads defaults, then `file` (if given), then `env` (Evolution's names, then
    /// `SWITCHYARD_*`), then validates. `env` is passed in so tests never touch the
    /// process environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(evolution_env::EvolutionEnv::new(&env));
        let mut switchyard_env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in SINKS.iter().flat_map(|sink| sink.config.list_keys) {
            switchyard_env = switchyard_env.with_list_parse_key(key);
        }
        let switchyard_env = switchyard_env.source(Some(section_keys(env)));
        let cfg: Config = builder
            .add_source(switchyard_env)
            .build()?
            .try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rule = |key: &str, message: &str| ConfigError::Rule {
            key: key.into(),
            message: message.into(),
        };
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(rule(
                "server.listen",
                "must be an address like 127.0.0.1:8080",
            ));
        }
        if url::Url::parse(&self.server.url).is_err() {
            return Err(rule("server.url", "must be an absolute URL"));
        }
        for (key, value) in [
            (
                "server.header_read_timeout_seconds",
                self.server.header_read_timeout_seconds,
            ),
            (
                "server.idle_timeout_seconds",
                self.server.idle_timeout_seconds,
            ),
        ] {
            // Zero or NaN would close every connection at once.
            if value.is_nan() || value < 0.1 {
                return Err(rule(key, "must be at least 0.1"));
            }
        }
        let hours = self.attempts.retention_hours;
        if !hours.is_finite() || hours < 0.0 {
            return Err(rule("attempts.retention_hours", "must be 0 or more"));
        }
        let alerts = &self.alerts;
        if alerts.failing_after == 0 {
            return Err(rule("alerts.failing_after", "must be at least 1"));
        }
        if !(alerts.lag_seconds.is_finite() && alerts.lag_seconds >= 0.0) {
            return Err(rule("alerts.lag_seconds", "must be 0 or more"));
        }
        if !(alerts.silence_seconds.is_finite() && alerts.silence_seconds > 0.0) {
            return Err(rule("alerts.silence_seconds", "must be more than 0"));
        }
        if alerts.check_interval_ms == 0 || alerts.check_interval_ms > 60_000 {
            return Err(rule(
                "alerts.check_interval_ms",
                "must be between 1 and 60000",
            ));
        }
        if self.attempts.flush_ms == 0 || self.attempts.flush_ms > 60_000 {
            return Err(rule("attempts.flush_ms", "must be between 1 and 60000"));
        }
        if self.server.max_connections == 0 {
            return Err(rule("server.max_connections", "must be at least 1"));
        }
        if self.log.segment_bytes < 4096 {
            return Err(rule("log.segment_bytes", "must be at least 4096"));
        }
        if !(1..=32767).contains(&self.log.kafka_partitions) {
            return Err(rule("log.kafka_partitions", "must be between 1 and 32767"));
        }
        if self.log.kafka_replication_factor < 1 {
            return Err(rule("log.kafka_replication_factor", "must be at least 1"));
        }
        if self.log.kafka_session_timeout_seconds.is_nan()
            || self.log.kafka_session_timeout_seconds < 1.0
        {
            return Err(rule(
                "log.kafka_session_timeout_seconds",
                "must be at least 1",
            ));
        }
        if !non_negative(self.log.retention_hours) {
            return Err(rule("log.retention_hours", "must be 0 or more"));
        }
        if self.ingest.max_batch_events == 0 {
            return Err(rule("ingest.max_batch_events", "must be at least 1"));
        }
        let d = &self.delivery;
        if d.max_attempts == 0 {
            return Err(rule("delivery.max_attempts", "must be at least 1"));
        }
        if !non_negative(d.initial_delay_seconds)
            || !non_negative(d.max_delay_seconds - d.initial_delay_seconds)
        {
            return Err(rule(
                "delivery.max_delay_seconds",
                "delays must be >= 0 and max_delay_seconds >= initial_delay_seconds",
            ));
        }
        if !(0.0..=1.0).contains(&d.jitter_factor) {
            return Err(rule("delivery.jitter_factor", "must be between 0 and 1"));
        }
        let ws = &self.websocket;
        if ws.buffer_messages == 0 {
            return Err(rule("websocket.buffer_messages", "must be at least 1"));
        }
        if !(ws.ping_interval_seconds > 0.0
            && ws.ping_timeout_seconds > 0.0
            && ws.slow_timeout_seconds > 0.0)
        {
            return Err(rule(
                "websocket.ping_interval_seconds",
                "ping_interval_seconds, ping_timeout_seconds and slow_timeout_seconds must be more than 0",
            ));
        }
        let s3 = &self.s3;
        if s3.enabled && s3.bucket.trim().is_empty() {
            return Err(rule(
                "s3.bucket",
                "must be set when s3.enabled (S3_ENABLED) is on",
            ));
        }
        if let Some(url) = s3.endpoint_url() {
            if url::Url::parse(&url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(rule(
                    "s3.endpoint",
                    "must be a host name (with s3.port and s3.use_ssl) or an http(s) URL",
                ));
            }
        }
        if !(1..=604_800).contains(&s3.url_expiry_seconds) {
            return Err(rule(
                "s3.url_expiry_seconds",
                "must be 1 to 604800 (7 days, the longest a presigned S3 URL lives)",
            ));
        }
        for sink in SINKS {
            (sink.config.validate)(self)?;
        }
        Ok(())
    }

    /// Where the generated global API key is kept when none is configured.
    pub fn generated_key_path(&self) -> PathBuf {
        self.server.data_dir.join("api-key")
    }
}

/// Only `SWITCHYARD_<SECTION>__<KEY>` names are config; other `SWITCHYARD_*` variables
/// (`SWITCHYARD_LOG_FORMAT`, a deployment's own) are not keys and must not be refused as
/// unknown ones.
fn section_keys(env: HashMap<String, String>) -> HashMap<String, String> {
    let prefix = format!("{ENV_PREFIX}_");
    env.into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(&prefix)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect()
}

/// True for finite numbers >= 0 (NaN and infinities are not).
fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

#[cfg(test)]
mod tests;
