//! Delivery wiring: the subscriptions config defines and the sinks config enables (both from
//! the sinks' registration table), the engine, and the path from the engine's disable
//! requests to the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppError;
use crate::alerts::Signal;
use crate::attempts::AttemptLog;
use crate::catalog::EventKind;
use crate::config::Config;
use crate::delivery::activity::Activity;
use crate::delivery::subscription::{Scope, Subscription};
use crate::delivery::{
    DeliveryEngine, DeliveryError, DeliveryMetrics, DisableRequest, EngineDeps, EngineOptions,
    PartitionedDelivery, RetryPolicy,
};
use crate::log::kafka::Membership;
use crate::log::{EventLog, EventPartitions};
use crate::metrics::Metrics;
use crate::registry::records::ControlRecord;
use crate::registry::Registry;
use crate::sinks::{BuildContext, SinkRegistry, SINKS};

/// The subscriptions config defines (each sink's global mode), starting at `start` when new.
pub fn global_subscriptions(config: &Config, start: u64) -> Vec<Subscription> {
    SINKS
        .iter()
        .filter_map(|sink| {
            let global = (sink.global)(config)?;
            Some(Subscription {
                policy: Default::default(),
                filter: Default::default(),
                id: format!("global:{}", sink.name),
                target: global.target,
                scope: Scope::AllInstances,
                events: EventKind::parse_list(&global.events).unwrap_or_default(),
                custom_events: Vec::new(),
                phone_numbers: Vec::new(),
                start_sequence: start,
                start_positions: Vec::new(),
                enabled: true,
            })
        })
        .collect()
}

/// What every delivery engine of the process shares: the sinks, the retry policy, the
/// registry's subscriptions, the disable-request channel and the metric families.
pub(super) struct EngineKit {
    sinks: SinkRegistry,
    policy: RetryPolicy,
    options: EngineOptions,
    subscriptions: tokio::sync::watch::Receiver<Arc<crate::delivery::SubscriptionSet>>,
    disable_requests: tokio::sync::mpsc::UnboundedSender<DisableRequest>,
    metrics: DeliveryMetrics,
    attempts: Option<Arc<AttemptLog>>,
    activity: Arc<Activity>,
}

/// What delivery shares with the alerts watcher: the activity its tails note, and the
/// channel on which disabling a subscription is reported.
pub(super) struct Alerting {
    /// Fed by every engine's tail.
    pub activity: Arc<Activity>,
    /// Told after the registry recorded a disable.
    pub signals: tokio::sync::mpsc::UnboundedSender<Signal>,
}

impl EngineKit {
    /// Starts the engine of one event partition with its delivery-state log.
    pub(super) async fn start(
        &self,
        log: Arc<dyn EventLog>,
        state_log: Arc<dyn EventLog>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<DeliveryEngine, DeliveryError> {
        DeliveryEngine::start(EngineDeps {
            log,
            state_log,
            subscriptions: self.subscriptions.clone(),
            sinks: self.sinks.clone(),
            policy: self.policy.clone(),
            options: self.options.clone(),
            disable_requests: self.disable_requests.clone(),
            metrics: self.metrics.clone(),
            cancel,
            tracker,
            attempts: self.attempts.clone(),
            activity: Some(self.activity.clone()),
        })
        .await
    }
}

/// Builds the configured sinks and the engine kit, and forwards the engines' disable
/// requests (410 Gone, failure runs) to the registry, which owns `enabled`, then to the
/// alerts watcher.
pub(super) async fn delivery_kit(
    config: &Config,
    registry: &Arc<Registry>,
    metrics: &Metrics,
    attempts: &Option<Arc<AttemptLog>>,
    alerting: &Alerting,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<EngineKit, AppError> {
    let sinks = SinkRegistry::build(&BuildContext {
        config,
        shutdown: &shutdown,
        tasks,
    })
    .await?;
    let (disable_requests, mut disabled) = tokio::sync::mpsc::unbounded_channel::<DisableRequest>();
    let kit = EngineKit {
        sinks,
        policy: RetryPolicy::from_config(&config.delivery),
        options: EngineOptions::from_config(&config.delivery),
        subscriptions: registry.subscriptions(),
        disable_requests,
        metrics: DeliveryMetrics::register(metrics.registry())
            .map_err(|e| AppError::Delivery(e.into()))?,
        attempts: attempts.clone(),
        activity: alerting.activity.clone(),
    };
    let registry = registry.clone();
    let signals = alerting.signals.clone();
    tasks.spawn(async move {
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = disabled.recv() => match r { Some(r) => r, None => return },
            };
            tracing::warn!(subscription = %request.subscription, reason = %request.reason, "subscription disabled");
            let record = ControlRecord::SubscriptionEnabled {
                id: request.subscription.clone(),
                enabled: false,
                reason: Some(request.reason.clone()),
            };
            match registry.change(|_| Ok::<_, ()>(vec![record])).await {
                Err(crate::registry::ChangeError::Registry(e)) => {
                    tracing::error!(error = %e, "recording a disabled subscription failed");
                }
                Err(crate::registry::ChangeError::Rejected(())) => {}
                // Recorded: `switchyard.subscription.disabled` (the watcher keeps it to one
                // per episode; a closed channel means it stopped, at shutdown).
                Ok(_) => {
                    let _ = signals.send(Signal::Disabled {
                        subscription: request.subscription,
                        reason: request.reason,
                    });
                }
            }
        }
    });
    Ok(kit)
}

/// A running engine of one partition, with what stops it.
struct OwnedEngine {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl OwnedEngine {
    /// Stops the engine and waits until its runners committed their cursors.
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Keeps one engine per event partition the delivery group assigns to this process (the
/// Kafka engine): stops the engines of revoked partitions (their final cursor commits land
/// before the group hands them on) and starts the newly assigned ones, until shutdown.
pub(super) async fn own_partitions(
    kit: EngineKit,
    membership: Membership,
    events: EventPartitions,
    state_logs: Vec<Arc<dyn EventLog>>,
    delivery: Arc<PartitionedDelivery>,
    shutdown: CancellationToken,
) {
    let mut assigned = membership.assigned();
    let mut owned: BTreeMap<usize, OwnedEngine> = BTreeMap::new();
    loop {
        let want: BTreeSet<usize> = assigned
            .borrow_and_update()
            .iter()
            .map(|p| *p as usize)
            .collect();
        let revoked: Vec<usize> = owned
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect();
        for p in revoked {
            delivery.remove(p);
            if let Some(engine) = owned.remove(&p) {
                engine.stop().await;
            }
            tracing::info!(partition = p, "stopped delivering partition");
        }
        let mut failed = false;
        let added: Vec<usize> = want
            .iter()
            .filter(|p| !owned.contains_key(p))
            .copied()
            .collect();
        for p in &added {
            let (Some(log), Some(state_log)) = (events.get(*p), state_logs.get(*p)) else {
                tracing::error!(
                    partition = p,
                    "assigned a partition the events topic does not have"
                );
                continue;
            };
            let cancel = shutdown.child_token();
            let tracker = TaskTracker::new();
            match kit
                .start(
                    log.clone(),
                    state_log.clone(),
                    cancel.clone(),
                    tracker.clone(),
                )
                .await
            {
                Ok(engine) => {
                    delivery.insert(*p, engine);
                    owned.insert(*p, OwnedEngine { cancel, tracker });
                    tracing::info!(partition = p, "delivering partition");
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "starting delivery failed; retrying");
                    failed = true;
                }
            }
        }
        membership.set_running(owned.keys().map(|p| *p as i32).collect());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = assigned.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if failed => {}
        }
    }
    for (p, engine) in std::mem::take(&mut owned) {
        delivery.remove(p);
        engine.stop().await;
    }
    membership.set_running(BTreeSet::new());
}
