//! Delivery wiring: the subscriptions config defines, the sinks config enables, the engine,
//! and the path from the engine's disable requests to the registry.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppError;
use crate::catalog::EventKind;
use crate::config::Config;
use crate::delivery::subscription::{Scope, SinkTarget, Subscription, WebhookTarget};
use crate::delivery::{DeliveryEngine, DisableRequest, EngineDeps, EngineOptions, RetryPolicy};
use crate::log::embedded::EmbeddedLog;
use crate::log::EventLog;
use crate::metrics::Metrics;
use crate::registry::records::ControlRecord;
use crate::registry::Registry;
use crate::sinks::kafka::{KafkaOptions, KafkaSink};
use crate::sinks::rabbitmq::RabbitmqSink;
use crate::sinks::sqs::SqsSink;
use crate::sinks::webhook::{WebhookOptions, WebhookSink};
use crate::sinks::{SinkKind, SinkRegistry};

/// The broker sinks the API also calls directly, to declare an instance's queues when its
/// sink is set (so the first event of a type never races the declaration).
#[derive(Clone, Default)]
pub struct BrokerSinks {
    /// RabbitMQ, when `rabbitmq.enabled`.
    pub rabbitmq: Option<Arc<RabbitmqSink>>,
    /// SQS, when `sqs.enabled`.
    pub sqs: Option<Arc<SqsSink>>,
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

/// Builds every sink config enables. Global topologies are declared in the background: a
/// broker that is down at start must not keep the server from starting (events wait in the
/// log, and each send declares what it needs anyway).
async fn build_sinks(
    config: &Config,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(SinkRegistry, BrokerSinks), AppError> {
    let webhook = WebhookSink::new(WebhookOptions::from_config(config))?;
    let mut sinks = SinkRegistry::new().with(SinkKind::Webhook, Arc::new(webhook));
    let mut brokers = BrokerSinks::default();
    let server_url = config.server.url.clone();
    if config.rabbitmq.enabled {
        let sink = Arc::new(RabbitmqSink::new(
            &config.rabbitmq,
            server_url.clone(),
            shutdown.clone(),
        )?);
        if config.rabbitmq.global_enabled {
            let events = EventKind::parse_list(&config.rabbitmq.global_events).unwrap_or_default();
            let declaring = sink.clone();
            tasks.spawn(async move {
                if let Err(e) = declaring.ensure_global_topology(&events).await {
                    tracing::warn!(error = %e, "declaring the global RabbitMQ topology failed; it is retried on first use");
                }
            });
        }
        sinks = sinks.with(SinkKind::Rabbitmq, sink.clone());
        brokers.rabbitmq = Some(sink);
    }
    if config.kafka.enabled {
        let kafka = KafkaSink::new(KafkaOptions::from_config(config))?;
        sinks = sinks.with(SinkKind::Kafka, Arc::new(kafka));
    }
    if config.sqs.enabled {
        let sink =
            Arc::new(SqsSink::new(&config.sqs, server_url, config.server.name.clone()).await?);
        if config.sqs.global_enabled {
            let events = EventKind::parse_list(&config.sqs.global_events).unwrap_or_default();
            let creating = sink.clone();
            tasks.spawn(async move {
                if let Err(e) = creating.ensure_global_queues(&events).await {
                    tracing::warn!(error = %e, "creating the global SQS queues failed; they are created on first use");
                }
            });
        }
        sinks = sinks.with(SinkKind::Sqs, sink.clone());
        brokers.sqs = Some(sink);
    }
    Ok((sinks, brokers))
}

/// Starts the delivery engine with every configured sink, and forwards its disable requests
/// (410 Gone, failure runs) to the registry, which owns `enabled`.
pub(super) async fn start_delivery(
    config: &Config,
    events: Arc<dyn EventLog>,
    state_log: Arc<EmbeddedLog>,
    registry: &Arc<Registry>,
    metrics: &Metrics,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(Arc<DeliveryEngine>, BrokerSinks), AppError> {
    let (sinks, brokers) = build_sinks(config, &shutdown, tasks).await?;
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
    Ok((Arc::new(engine), brokers))
}
