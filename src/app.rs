//! Wiring: opens the logs, rebuilds the registry, starts delivery and the HTTP server, and
//! shuts them down in order on cancellation.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{self, AppInner, AppState};
use crate::catalog::EventKind;
use crate::config::Config;
use crate::delivery::subscription::{Scope, SinkTarget, Subscription, WebhookTarget};
use crate::delivery::{
    DeliveryEngine, DeliveryError, DisableRequest, EngineDeps, EngineOptions, RetryPolicy,
};
use crate::ingest::dedupe::Deduper;
use crate::log::embedded::{EmbeddedLog, EmbeddedOptions};
use crate::log::{EventLog, FsyncPolicy, LogError};
use crate::metrics::Metrics;
use crate::registry::records::ControlRecord;
use crate::registry::{Registry, RegistryError};
use crate::sinks::kafka::{KafkaOptions, KafkaSink, KafkaSinkError};
use crate::sinks::webhook::{WebhookOptions, WebhookSink, WebhookSinkError};
use crate::sinks::{SinkKind, SinkRegistry};
use crate::websocket::{Hub, WsMetrics};

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
    /// The Kafka engine was asked for but is not part of this build yet.
    #[error("log.engine = \"kafka\" is not available yet; use \"embedded\"")]
    EngineUnavailable,
    /// The delivery engine failed to start.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The webhook sink's HTTP client could not be built.
    #[error(transparent)]
    Webhook(#[from] WebhookSinkError),
    /// The Kafka sink's client could not be created (bad `kafka.properties`).
    #[error(transparent)]
    Kafka(#[from] KafkaSinkError),
    /// Metrics registration failed (a programming error: duplicate names).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Returns the global API key: configured, stored in the data dir, or generated now (then
/// stored with owner-only permissions and printed once).
pub fn global_api_key(config: &Config) -> Result<String, AppError> {
    if let Some(key) = config.auth.api_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(key.clone());
    }
    let path = config.generated_key_path();
    let io = |source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let key = uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &key).map_err(io)?;
    println!(
        "Generated the global API key (stored in {}): {key}",
        path.display()
    );
    Ok(key)
}

/// Takes an exclusive lock on `{data_dir}/LOCK`, held while the returned file lives.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, AppError> {
    let path = data_dir.join("LOCK");
    let err = |source| AppError::DataDir {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(std::io::Error::other(
            "another switchyard process is using this data directory",
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The subscriptions config defines (global sinks), starting at `start` when new.
pub fn global_subscriptions(config: &Config, start: u64) -> Vec<Subscription> {
    let events = |names: &[String]| EventKind::parse_list(names).unwrap_or_default();
    let global = |id: &str, target: SinkTarget, names: &[String]| Subscription {
        id: id.to_string(),
        target,
        scope: Scope::AllInstances,
        events: events(names),
        custom_events: Vec::new(),
        phone_numbers: Vec::new(),
        start_sequence: start,
        enabled: true,
    };
    let mut out = Vec::new();
    let w = &config.webhook;
    if w.global_enabled && !w.global_url.is_empty() {
        let target = SinkTarget::Webhook(WebhookTarget {
            url: w.global_url.clone(),
            by_events: w.global_by_events,
            ..WebhookTarget::default()
        });
        out.push(global("global:webhook", target, &w.global_events));
    }
    if config.rabbitmq.enabled && config.rabbitmq.global_enabled {
        let target = SinkTarget::Rabbitmq { global: true };
        out.push(global(
            "global:rabbitmq",
            target,
            &config.rabbitmq.global_events,
        ));
    }
    if config.sqs.enabled && config.sqs.global_enabled {
        let target = SinkTarget::Sqs { global: true };
        out.push(global("global:sqs", target, &config.sqs.global_events));
    }
    if config.kafka.enabled && config.kafka.global_enabled {
        let target = SinkTarget::Kafka { global: true };
        out.push(global("global:kafka", target, &config.kafka.global_events));
    }
    out
}

fn open_log(config: &Config, name: &str, fsync: FsyncPolicy) -> Result<Arc<EmbeddedLog>, AppError> {
    let mut options = EmbeddedOptions::new(config.server.data_dir.join(name));
    options.fsync = fsync;
    if name == "events" {
        let l = &config.log;
        options.segment_bytes = l.segment_bytes;
        options.max_record_bytes = config.ingest.max_body_bytes;
        options.retention_bytes = (l.retention_bytes > 0).then_some(l.retention_bytes);
        options.retention_age =
            (l.retention_hours > 0.0).then(|| Duration::from_secs_f64(l.retention_hours * 3600.0));
        options.hard_limit_bytes = (l.hard_limit_bytes > 0).then_some(l.hard_limit_bytes);
    }
    Ok(EmbeddedLog::open(options)?)
}

/// Runs the server until `shutdown` is cancelled. `on_listening` receives the bound address
/// (useful with port 0).
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), AppError> {
    if config.log.engine != crate::config::LogEngine::Embedded {
        return Err(AppError::EngineUnavailable);
    }
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    // One process per data dir: two writers on one log would interleave records.
    let _lock = lock_data_dir(&data_dir)?;
    let api_key = global_api_key(&config)?;
    let events_log = open_log(&config, "events", config.log.fsync.policy())?;
    // Control records are rare and precious: always fsync, whatever the event log does.
    let control_log = open_log(&config, "control", FsyncPolicy::Always)?;
    let events: Arc<dyn EventLog> = events_log.clone();
    let globals = global_subscriptions(&config, events.next_sequence());
    let registry = Registry::open(control_log, globals).await?;
    let metrics = Arc::new(Metrics::new()?);

    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(retention_loop(events_log.clone(), shutdown.clone()));
    let delivery = start_delivery(
        &config,
        events.clone(),
        open_log(&config, "delivery", FsyncPolicy::Always)?,
        &registry,
        &metrics,
        shutdown.clone(),
        &tasks,
    )
    .await?;

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
    let dedupe_window = Duration::from_secs_f64(config.ingest.dedupe_window_seconds.max(0.0));
    let grace = Duration::from_secs_f64(config.server.shutdown_grace_seconds.max(0.0));
    let websocket = if config.websocket.enabled {
        let ws_metrics = WsMetrics::register(metrics.registry())?;
        Some(Hub::start(
            events.clone(),
            registry.clone(),
            config.websocket.clone(),
            config.server.url.clone(),
            ws_metrics,
            shutdown.clone(),
            &tasks,
        ))
    } else {
        None
    };
    let state = AppState::new(AppInner {
        config,
        events,
        registry,
        delivery,
        api_key,
        metrics,
        deduper: Deduper::new(dedupe_window, 1_000_000),
        rate_limits: api::RateLimits::new(&rate_limit),
        ready: Default::default(),
        websocket,
    });
    let router = api::router(state.clone());
    tasks.spawn(shrink_rate_limits(state.clone(), shutdown.clone()));
    state.ready.store(true, Ordering::Release);
    tracing::info!(%local, "listening");
    on_listening(local);

    let stop = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        stop.cancelled().await;
    });
    let result = server.await;
    state.ready.store(false, Ordering::Release);
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "background work did not finish within the grace period"
        );
    }
    result.map_err(|source| AppError::Listen { addr, source })
}

/// Starts the delivery engine with every configured sink, and forwards its disable requests
/// (410 Gone, failure runs) to the registry, which owns `enabled`.
async fn start_delivery(
    config: &Config,
    events: Arc<dyn EventLog>,
    state_log: Arc<EmbeddedLog>,
    registry: &Arc<Registry>,
    metrics: &Metrics,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<Arc<DeliveryEngine>, AppError> {
    let webhook = WebhookSink::new(WebhookOptions::from_config(config))?;
    let mut sinks = SinkRegistry::new().with(SinkKind::Webhook, Arc::new(webhook));
    if config.kafka.enabled {
        let kafka = KafkaSink::new(KafkaOptions::from_config(config))?;
        sinks = sinks.with(SinkKind::Kafka, Arc::new(kafka));
    }
    let (disable_requests, mut disabled) = tokio::sync::mpsc::unbounded_channel::<DisableRequest>();
    let engine = DeliveryEngine::start(EngineDeps {
        log: events,
        state_log,
        subscriptions: registry.subscriptions(),
        sinks,
        policy: RetryPolicy::from_config(&config.delivery),
        options: EngineOptions::from_config(&config.delivery),
        disable_requests,
        metrics: metrics.registry().clone(),
        cancel: shutdown.clone(),
        tracker: tasks.clone(),
    })
    .await?;
    let registry = registry.clone();
    tasks.spawn(async move {
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = disabled.recv() => match r { Some(r) => r, None => return },
            };
            tracing::warn!(subscription = %request.subscription, reason = %request.reason, "subscription disabled");
            let record = ControlRecord::SubscriptionEnabled {
                id: request.subscription,
                enabled: false,
                reason: Some(request.reason),
            };
            if let Err(crate::registry::ChangeError::Registry(e)) =
                registry.change(|_| Ok::<_, ()>(vec![record])).await
            {
                tracing::error!(error = %e, "recording a disabled subscription failed");
            }
        }
    });
    Ok(Arc::new(engine))
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
