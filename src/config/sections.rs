//! The configuration sections: one struct per `[section]`, each field's doc line being the
//! user-facing reference, each with its defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::FsyncSetting;
use crate::delivery::subscription::OrderBy;

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`--listen`).
    pub listen: String,
    /// Data directory for the embedded log, cursors and the generated API key (`--data-dir`).
    pub data_dir: PathBuf,
    /// Public URL of this server, sent as `server_url` in every envelope (`SERVER_URL`).
    pub url: String,
    /// Server name, sent as `server` in SQS envelopes (`SERVER_NAME`).
    pub name: String,
    /// Seconds to wait for in-flight work on SIGTERM before exiting.
    pub shutdown_grace_seconds: f64,
    /// Seconds a client has to finish sending a request's headers once its first byte has
    /// arrived; slower connections are closed.
    pub header_read_timeout_seconds: f64,
    /// Seconds a connection may wait for its next request (a new connection for its first,
    /// a keep-alive one between requests) before it is closed.
    pub idle_timeout_seconds: f64,
    /// Most client connections open at once, WebSocket listeners included; a connection
    /// past it is answered 503 with `Connection: close`. Capped below the process's
    /// open-file limit.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            url: "http://localhost:8080".into(),
            name: "switchyard".into(),
            shutdown_grace_seconds: 10.0,
            header_read_timeout_seconds: 10.0,
            idle_timeout_seconds: 60.0,
            max_connections: 4096,
        }
    }
}

/// API authentication.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The global API key (`AUTHENTICATION_API_KEY`). When unset, the first start generates
    /// one, stores it in the data dir and prints it once.
    pub api_key: Option<String>,
    /// Send the instance token as `apikey` in envelopes, as Evolution does. Off by default:
    /// a token in every webhook body is a secret leaked to every endpoint.
    pub expose_in_envelope: bool,
}

/// The event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log engine: `embedded` (segment files in the data dir) or `kafka`.
    pub engine: LogEngine,
    /// `always` (every append waits for its fsync), `never`, or milliseconds between fsyncs.
    pub fsync: FsyncSetting,
    /// Segment size in bytes before a new segment starts.
    pub segment_bytes: u64,
    /// Retention: keep at most this many bytes (never deleting what a cursor needs); 0 = no limit.
    pub retention_bytes: u64,
    /// Retention: keep events at most this many hours (never what a cursor needs); 0 = no limit.
    pub retention_hours: f64,
    /// Hard size limit: past it the oldest segments go even if a cursor needs them; 0 = none.
    pub hard_limit_bytes: u64,
    /// Kafka engine: first part of its topic names; processes with the same prefix (and
    /// `kafka.brokers`) share one log.
    pub kafka_topic_prefix: String,
    /// Kafka engine: partitions of the events topic (instances are spread over them; fixed
    /// once the topic exists).
    pub kafka_partitions: i32,
    /// Kafka engine: replication factor of the topics it creates (3 in production).
    pub kafka_replication_factor: i32,
    /// Kafka engine: seconds without a heartbeat before a process's partitions move to the
    /// others.
    pub kafka_session_timeout_seconds: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            engine: LogEngine::Embedded,
            fsync: FsyncSetting::Always,
            segment_bytes: 128 * 1024 * 1024,
            retention_bytes: 0,
            retention_hours: 168.0,
            hard_limit_bytes: 0,
            kafka_topic_prefix: "switchyard".into(),
            kafka_partitions: 12,
            kafka_replication_factor: 1,
            kafka_session_timeout_seconds: 10.0,
        }
    }
}

/// Which log engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEngine {
    /// Segment files in the data dir.
    Embedded,
    /// A Kafka cluster (several Switchyard processes share it).
    Kafka,
}

/// Ingest limits and dedupe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most events in one batch request.
    pub max_batch_events: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Seconds within which a retry is stored once: a request with the same
    /// `Idempotency-Key`, a canonical event with the same `id`, a provider's retry of the
    /// same message/status. 0 turns this off.
    pub dedupe_window_seconds: f64,
    /// Keep Evolution's whole webhook body as `raw` (credentials redacted); off because
    /// its `data` is the body's own.
    pub keep_evolution_raw: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 1000,
            max_body_bytes: 16 * 1024 * 1024,
            dedupe_window_seconds: 300.0,
            keep_evolution_raw: false,
        }
    }
}

/// Delivery engine settings shared by all sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Attempts before an event goes to dead letters (`WEBHOOK_RETRY_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry delay in seconds, fractions allowed (`WEBHOOK_RETRY_INITIAL_DELAY_SECONDS`).
    pub initial_delay_seconds: f64,
    /// Longest retry delay in seconds (`WEBHOOK_RETRY_MAX_DELAY_SECONDS`).
    pub max_delay_seconds: f64,
    /// Random spread of each delay, 0..1 (`WEBHOOK_RETRY_JITTER_FACTOR`).
    pub jitter_factor: f64,
    /// Consecutive failed attempts after which a subscription is disabled; 0 = never.
    pub disable_after_failures: u32,
    /// Attempts an event is retried in memory before its lane (its chat, or its instance)
    /// is parked durably: the lane's later events wait, every other lane flows and the
    /// cursor moves on. 0 = never park (retry in memory, holding the cursor).
    pub park_after_attempts: u32,
    /// Ordering lanes (chats, instances or single events, per `ordering`) delivered
    /// concurrently within one subscription: its in-flight limit.
    pub max_parallel_instances: usize,
    /// Which events a subscription keeps in order when its `policy.ordering` does not say:
    /// `chat` (events about the same chat of an instance), `instance` (all of an
    /// instance's events, one in flight at a time) or `none`.
    pub ordering: OrderBy,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_delay_seconds: 5.0,
            max_delay_seconds: 300.0,
            jitter_factor: 0.2,
            disable_after_failures: 0,
            park_after_attempts: 3,
            max_parallel_instances: 64,
            ordering: OrderBy::Chat,
        }
    }
}

/// The attempt log: every delivery attempt, successes included, for `GET /deliveries`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttemptsConfig {
    /// Record every delivery attempt in `{data_dir}/attempts` (the delivery lookups need it).
    pub enabled: bool,
    /// Keep at most about this many bytes of attempts (the oldest go first); 0 = no limit.
    /// The lookup index in memory takes about 100 bytes per kept attempt.
    pub retention_bytes: u64,
    /// Keep attempts at most this many hours; 0 = no limit.
    pub retention_hours: f64,
    /// Milliseconds between writes of the attempts recorded meanwhile (one append each).
    pub flush_ms: u64,
}

impl Default for AttemptsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_bytes: 128 * 1024 * 1024,
            retention_hours: 168.0,
            flush_ms: 100,
        }
    }
}

/// Operational events (`switchyard.*`): when the server reports failing, disabled or lagging
/// subscriptions and silent instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Consecutive failed attempts after which a subscription is reported failing.
    pub failing_after: u64,
    /// Events a subscription may lag behind the log before its lag counts as exceeded.
    pub lag_threshold: u64,
    /// Seconds the lag must stay above `lag_threshold` before it is reported.
    pub lag_seconds: f64,
    /// Seconds without events (or without `messages.upsert`) after which an instance that
    /// was receiving them is reported silent.
    pub silence_seconds: f64,
    /// Milliseconds between checks of subscriptions and instances.
    pub check_interval_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            failing_after: 5,
            lag_threshold: 10_000,
            lag_seconds: 300.0,
            silence_seconds: 900.0,
            check_interval_ms: 1000,
        }
    }
}

/// WebSocket listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    /// Listeners accepted (`WEBSOCKET_ENABLED`).
    pub enabled: bool,
    /// socket.io default namespace receives every instance's events (`WEBSOCKET_GLOBAL_EVENTS`).
    pub global_events: bool,
    /// Messages buffered in memory per listener. When they are all unsent, the listener's
    /// feed pauses (it later resumes from the log, holding no more memory).
    pub buffer_messages: usize,
    /// Seconds a listener's full buffer may go without taking a message before the server
    /// closes it with code 4008 and the sequence to resume from.
    pub slow_timeout_seconds: f64,
    /// Seconds between keep-alive pings (WebSocket pings; Engine.IO `pingInterval`).
    pub ping_interval_seconds: f64,
    /// Seconds a peer may stay silent after a ping before it is considered dead and dropped
    /// (Engine.IO `pingTimeout`).
    pub ping_timeout_seconds: f64,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            global_events: false,
            buffer_messages: 1024,
            slow_timeout_seconds: 10.0,
            ping_interval_seconds: 25.0,
            ping_timeout_seconds: 20.0,
        }
    }
}

/// Per-account rate limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Management requests per minute per account; 0 = unlimited.
    pub per_minute: u32,
    /// Ingest requests per minute per account; 0 = unlimited.
    pub ingest_per_minute: u32,
    /// Wrong API keys one client address (and one key prefix) may present in a burst before
    /// it gets 429, without the key even being checked; 0 = unlimited.
    pub auth_failures_burst: u32,
    /// Wrong API keys per minute one client address (and one key prefix) regains after
    /// its burst.
    pub auth_failures_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_minute: 200,
            ingest_per_minute: 600_000,
            auth_failures_burst: 30,
            auth_failures_per_minute: 10,
        }
    }
}

/// S3 storage for SQS messages over `sqs.max_payload_size`, with Evolution's `S3_*` names.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Store SQS messages over `sqs.max_payload_size` in S3 and send a `dataType: "s3"`
    /// message with their `fileUrl` instead of dead-lettering them (`S3_ENABLED`).
    pub enabled: bool,
    /// Access key (`S3_ACCESS_KEY`); unset = the usual AWS chain.
    pub access_key: Option<String>,
    /// Secret key (`S3_SECRET_KEY`).
    pub secret_key: Option<String>,
    /// Bucket the messages are stored in, which must exist (`S3_BUCKET`).
    pub bucket: String,
    /// Host name of an S3-compatible store (MinIO...), used with `s3.port` and `s3.use_ssl`
    /// (`S3_ENDPOINT`); a full `http(s)://` URL is taken as it is; empty = AWS S3.
    pub endpoint: String,
    /// Port of `s3.endpoint` (`S3_PORT`).
    pub port: u16,
    /// Reach `s3.endpoint` over HTTPS (`S3_USE_SSL`).
    pub use_ssl: bool,
    /// Region (`S3_REGION`).
    pub region: String,
    /// Seconds a message's presigned `fileUrl` stays valid (S3 allows at most 7 days).
    pub url_expiry_seconds: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            enabled: false,
            access_key: None,
            secret_key: None,
            bucket: String::new(),
            endpoint: String::new(),
            // Evolution's defaults: MinIO's port, plain HTTP.
            port: 9000,
            use_ssl: false,
            region: "us-east-1".into(),
            url_expiry_seconds: 604_800,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("enabled", &self.enabled)
            .field("access_key", &self.access_key)
            // Never print key material.
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("port", &self.port)
            .field("use_ssl", &self.use_ssl)
            .field("region", &self.region)
            .field("url_expiry_seconds", &self.url_expiry_seconds)
            .finish()
    }
}

impl S3Config {
    /// The endpoint URL: `s3.endpoint` as it is when it has a scheme, else made from it,
    /// `s3.port` and `s3.use_ssl` as Evolution's MinIO client does; `None` for AWS S3.
    pub fn endpoint_url(&self) -> Option<String> {
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            None
        } else if endpoint.contains("://") {
            Some(endpoint.to_owned())
        } else {
            let scheme = if self.use_ssl { "https" } else { "http" };
            Some(format!("{scheme}://{endpoint}:{}", self.port))
        }
    }
}
