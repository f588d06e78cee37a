//! Wiring: opens the logs, rebuilds the registry, starts delivery and the HTTP server, and
//! shuts them down in order on cancellation.

mod data_dir;
mod delivery;
pub mod http_server;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alerts::Watcher;
use crate::api::{self, AppInner, AppState};
use crate::attempts::{AttemptLog, AttemptOptions};
use crate::config::Config;
use crate::config::LogEngine;
use crate::delivery::activity::Activity;
use crate::delivery::DeliveryError;
use crate::delivery::PartitionedDelivery;
use crate::ingest::idempotency::Idempotency;
use crate::log::embedded::EmbeddedLog;
use crate::log::kafka::{KafkaLog, KafkaLogOptions};
use crate::log::{EventLog, EventPartitions, FsyncPolicy, LogError};
use crate::metrics::AttemptMetrics;
use crate::metrics::Metrics;
use crate::metrics::SilenceMetrics;
use crate::registry::{Registry, RegistryError};
use crate::sinks::BuildError;
use crate::websocket::{Hub, WsMetrics};
pub use data_dir::global_api_key;
use data_dir::{lock_data_dir, lock_file, open_log};
pub use delivery::global_subscriptions;
use delivery::{delivery_kit, own_partitions, Alerting};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory or a file in it.
    #[error("data directory {path}")]
    DataDir {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A log failed to open.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The registry failed to rebuild.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The listen address.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Kafka engine runs several processes that must share one key.
    #[error("log.engine = \"kafka\" needs auth.api_key (AUTHENTICATION_API_KEY): every process must accept the same key")]
    KafkaNeedsKey,
    /// The delivery engine failed to start.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// A sink's settings are unusable (a bad `RABBITMQ_URI`, bad `kafka.properties`, ...).
    #[error(transparent)]
    Sink(#[from] BuildError),
    /// Metrics registration failed (a programming error: duplicate names).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Runs the server until `shutdown` is cancelled. `on_listening` receives the bound address
/// (useful with port 0).
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::new(config.log.engine == LogEngine::Embedded)?);
    let tasks = tokio_util::task::TaskTracker::new();
    // Held until the server stops: one process per embedded data dir.
    let mut _lock = None;
    if config.log.engine == LogEngine::Embedded {
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        // One process per data dir: two writers on one log would interleave records.
        _lock = Some(lock_data_dir(&data_dir)?);
    }
    let attempts = open_attempts(&config).await?;
    if let Some(log) = &attempts {
        tasks.spawn(log.clone().run(shutdown.clone()));
        AttemptMetrics::register(metrics.registry(), log.clone())?;
    }
    let delivery = Arc::new(PartitionedDelivery::with_attempts(attempts.clone()));
    // Every partition's tail notes each instance's activity here (silence alerts, gauge).
    let activity = Arc::new(Activity::default());
    SilenceMetrics::register(metrics.registry(), activity.clone())?;
    let (alert_signals, alert_signals_rx) = tokio::sync::mpsc::unbounded_channel();
    let alerting = Alerting {
        activity: activity.clone(),
        signals: alert_signals,
    };
    let (events, registry, api_key) = match config.log.engine {
        LogEngine::Embedded => {
            let api_key = global_api_key(&config)?;
            let events_log = open_log(&config, "events", config.log.fsync.policy())?;
            // Control records are rare and precious: always fsync, whatever the event log does.
            let control_log = open_log(&config, "control", FsyncPolicy::Always)?;
            let events_dyn: Arc<dyn EventLog> = events_log.clone();
            let globals = global_subscriptions(&config, events_dyn.next_sequence());
            let registry =
                Registry::open(control_log, globals, config.auth.expose_in_envelope).await?;
            tasks.spawn(retention_loop(events_log, shutdown.clone()));
            let kit = delivery_kit(
                &config,
                &registry,
                &metrics,
                &attempts,
                &alerting,
                shutdown.clone(),
                &tasks,
            )
            .await?;
            let state_log = open_log(&config, "delivery", FsyncPolicy::Always)?;
            let engine = kit
                .start(
                    events_dyn.clone(),
                    state_log,
                    shutdown.clone(),
                    tasks.clone(),
                )
                .await?;
            delivery.insert(0, engine);
            (EventPartitions::single(events_dyn), registry, api_key)
        }
        LogEngine::Kafka => {
            // Every process must accept the same key, so none may generate its own.
            let api_key = config
                .auth
                .api_key
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or(AppError::KafkaNeedsKey)?;
            let kafka =
                KafkaLog::open(kafka_log_options(&config), shutdown.clone(), &tasks).await?;
            let partitions: Vec<Arc<dyn EventLog>> = kafka
                .events
                .iter()
                .map(|p| p.clone() as Arc<dyn EventLog>)
                .collect();
            let events = EventPartitions::new(partitions)
                .ok_or_else(|| LogError::Engine("the events topic has no partitions".into()))?;
            let globals = global_subscriptions(&config, events.next_sequence());
            let registry = Registry::open(
                kafka.control.clone(),
                globals,
                config.auth.expose_in_envelope,
            )
            .await?;
            tasks.spawn(registry.clone().follow(shutdown.clone()));
            let kit = delivery_kit(
                &config,
                &registry,
                &metrics,
                &attempts,
                &alerting,
                shutdown.clone(),
                &tasks,
            )
            .await?;
            let membership = kafka.join_delivery_group(shutdown.clone())?;
            let state_logs = kafka
                .delivery
                .iter()
                .map(|p| p.clone() as Arc<dyn EventLog>)
                .collect();
            tasks.spawn(own_partitions(
                kit,
                membership,
                events.clone(),
                state_logs,
                delivery.clone(),
                shutdown.clone(),
            ));
            (events, registry, api_key)
        }
    };

    let addr = config.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| AppError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| AppError::Listen {
        addr: addr.clone(),
        source,
    })?;
    let rate_limit = config.rate_limit.clone();
    let connection_limits = http_server::ConnectionLimits::from_config(&config.server);
    let dedupe_window = Duration::from_secs_f64(config.ingest.dedupe_window_seconds.max(0.0));
    // Other processes append to a Kafka log; the idempotency index must read what they add.
    let shared_log = config.log.engine == LogEngine::Kafka;
    let grace = Duration::from_secs_f64(config.server.shutdown_grace_seconds.max(0.0));
    let single_partition = (events.len() == 1)
        .then(|| events.get(0).cloned())
        .flatten();
    let websocket = if !config.websocket.enabled {
        None
    } else if let Some(log) = single_partition {
        let ws_metrics = WsMetrics::register(metrics.registry())?;
        Some(Hub::start(
            log,
            registry.clone(),
            config.websocket.clone(),
            config.server.url.clone(),
            ws_metrics,
            shutdown.clone(),
            &tasks,
        ))
    } else {
        tracing::warn!(
            partitions = events.len(),
            "WebSocket listeners need a log of one partition (log.kafka_partitions = 1); /ws and socket.io are off"
        );
        None
    };
    let mut watcher = Watcher::new(
        config.alerts.clone(),
        events.clone(),
        registry.clone(),
        delivery.clone(),
        activity,
        websocket.clone(),
    );
    if let Some(path) = alert_store(&config) {
        watcher = watcher.persisted_at(path);
    }
    tasks.spawn(watcher.run(alert_signals_rx, shutdown.clone()));
    let state = AppState::new(AppInner {
        config,
        events,
        registry,
        delivery,
        api_key,
        metrics,
        idempotency: Idempotency::new(dedupe_window, 1_000_000, shared_log),
        rate_limits: api::RateLimits::new(&rate_limit),
        ready: Default::default(),
        websocket,
    });
    let router = api::router(state.clone());
    tasks.spawn(shrink_rate_limits(state.clone(), shutdown.clone()));
    state.ready.store(true, Ordering::Release);
    tracing::info!(%local, "listening");
    on_listening(local);

    http_server::serve(listener, router, connection_limits, shutdown.clone()).await;
    state.ready.store(false, Ordering::Release);
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "background work did not finish within the grace period"
        );
    }
    // What the engines recorded after the flusher's last round.
    if let Some(log) = &attempts {
        log.flush().await;
    }
    Ok(())
}

/// Where the alerts watcher keeps its episodes (`{data_dir}/alerts/episodes.json`). With the
/// Kafka engine the data dir is not locked, so the file's directory takes its own lock: a
/// second process on the same data dir keeps its episodes in memory only (and says so).
fn alert_store(config: &Config) -> Option<std::path::PathBuf> {
    let path = crate::alerts::persist::path_in(&config.server.data_dir);
    let dir = path.parent()?;
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "cannot create the alerts directory; episodes are kept in memory only");
        return None;
    }
    if config.log.engine == LogEngine::Kafka {
        match lock_file(&dir.join("LOCK")) {
            // Held for the process's life: leaked on purpose, released at exit.
            Ok(file) => std::mem::forget(file),
            Err(e) => {
                tracing::warn!(error = %e, "another process keeps alert episodes in this data dir; this one keeps them in memory only");
                return None;
            }
        }
    }
    Some(path)
}

/// Opens the attempt log (`attempts.enabled`) in `{data_dir}/attempts`. With the Kafka
/// engine the data dir is not locked, so the attempt log takes its own lock: a second
/// process on the same data dir runs without one (and says so).
async fn open_attempts(config: &Config) -> Result<Option<Arc<AttemptLog>>, AppError> {
    let a = &config.attempts;
    if !a.enabled {
        return Ok(None);
    }
    let dir = config.server.data_dir.join("attempts");
    std::fs::create_dir_all(&dir).map_err(|source| AppError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    if config.log.engine == LogEngine::Kafka {
        match lock_file(&dir.join("LOCK")) {
            // Held for the process's life: leaked on purpose, released at exit.
            Ok(file) => std::mem::forget(file),
            Err(e) => {
                tracing::warn!(error = %e, "another process records attempts in this data dir; this one keeps none");
                return Ok(None);
            }
        }
    }
    let options = AttemptOptions {
        dir,
        retention_bytes: a.retention_bytes,
        retention_age: (a.retention_hours > 0.0)
            .then(|| Duration::from_secs_f64(a.retention_hours * 3600.0)),
        flush_interval: Duration::from_millis(a.flush_ms),
    };
    Ok(Some(AttemptLog::open(options).await?))
}

/// The Kafka engine's settings: connection from `[kafka]`, topics from `[log]`.
fn kafka_log_options(config: &Config) -> KafkaLogOptions {
    KafkaLogOptions {
        brokers: config.kafka.brokers.clone(),
        client_id: config.kafka.client_id.clone(),
        properties: config.kafka.properties.clone(),
        topic_prefix: config.log.kafka_topic_prefix.clone(),
        partitions: config.log.kafka_partitions,
        replication_factor: config.log.kafka_replication_factor,
        session_timeout: Duration::from_secs_f64(config.log.kafka_session_timeout_seconds.max(1.0)),
        max_record_bytes: 1 << 20,
    }
}

/// Drops idle accounts from the rate limiters once a minute, so memory stays bounded.
async fn shrink_rate_limits(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => state.rate_limits.shrink(),
        }
    }
}

/// Enforces retention once a minute; the log itself never deletes past a live cursor.
async fn retention_loop(log: Arc<EmbeddedLog>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
            Ok(Ok(report)) if report.deleted_segments > 0 => {
                tracing::info!(?report, "retention deleted segments");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
            Err(e) => tracing::error!(error = %e, "retention task panicked"),
        }
    }
}
