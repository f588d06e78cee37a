//! The configuration sections: one struct per `[section]`, each field's doc line being the
//! user-facing reference, each with its defaults.

use std::collections::HashMap;
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
    /// Largest message body in bytes (`SQS_MAX_PAYLOAD_SIZE`); larger ones are dead-lettered.
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
