//! The engine's public face: construction, status, dead letters, redrive and replay.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::attempts::AttemptLog;
use crate::config::DeliveryConfig;
use crate::delivery::activity::Activity;
use crate::delivery::cursors::{self, CursorStager};
use crate::delivery::error::DeliveryError;
use crate::delivery::metrics::{DeliveryMetrics, Metrics};
use crate::delivery::policy::RetryPolicy;
use crate::delivery::router::{self, Router};
use crate::delivery::runner::initial_position;
use crate::delivery::state::{DeadLetter, StateStore};
use crate::delivery::status::{SubStats, SubscriptionStatus};
use crate::delivery::subscription::{OrderBy, SubscriptionSet};
use crate::delivery::supervisor::{Command, Supervisor};
use crate::log::EventLog;
use crate::sinks::SinkRegistry;

/// Tuning of the engine itself (the retry schedule is [`RetryPolicy`]).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most unfinished events per subscription: bounds memory and the redelivery window
    /// after a crash.
    pub window: usize,
    /// Ordering lanes delivered concurrently within one subscription (its in-flight limit).
    pub max_parallel_instances: usize,
    /// The ordering of subscriptions whose policy does not choose one.
    pub ordering: OrderBy,
    /// Most records per log read.
    pub read_batch: usize,
    /// Most payload bytes per log read.
    pub read_bytes: usize,
    /// Cursor commits are coalesced to at most one per interval per subscription.
    pub commit_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            window: 1024,
            max_parallel_instances: 64,
            ordering: OrderBy::Chat,
            read_batch: 256,
            read_bytes: 4 << 20,
            commit_interval: Duration::from_millis(100),
        }
    }
}

impl EngineOptions {
    /// Defaults with the `[delivery]` section's parallelism.
    pub fn from_config(cfg: &DeliveryConfig) -> EngineOptions {
        EngineOptions {
            max_parallel_instances: cfg.max_parallel_instances.max(1),
            ordering: cfg.ordering,
            ..EngineOptions::default()
        }
    }
}

/// The engine asks the registry to disable a subscription (410 Gone, or a failure run);
/// the registry owns `enabled`, the engine only stops delivering until the registry
/// publishes the subscription again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisableRequest {
    /// The subscription id.
    pub subscription: String,
    /// Why, for the user.
    pub reason: String,
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Every dead letter of the subscription.
    All,
    /// Those with these log sequences.
    Sequences(Vec<u64>),
    /// Those with these event ids.
    Ids(Vec<Uuid>),
}

/// Where a replay moves a subscription's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// This log sequence (0 = the oldest retained event).
    Sequence(u64),
    /// The first event received at or after this time, UTC milliseconds.
    Time(i64),
}

/// What the engine is given.
pub struct EngineDeps {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// A second log for retry progress and dead letters.
    pub state_log: Arc<dyn EventLog>,
    /// The registry's subscriptions, republished whole on every change.
    pub subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
    /// The sink serving each kind.
    pub sinks: SinkRegistry,
    /// The retry schedule.
    pub policy: RetryPolicy,
    /// Engine tuning.
    pub options: EngineOptions,
    /// Where the engine sends disable requests (the registry reads them).
    pub disable_requests: mpsc::UnboundedSender<DisableRequest>,
    /// The engine's metric families (registered once, shared by every engine).
    pub metrics: DeliveryMetrics,
    /// Cancelled at shutdown: runners commit their cursors and stop.
    pub cancel: CancellationToken,
    /// Tracks every engine task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Where every attempt is recorded (`attempts.enabled`); `None` keeps no record.
    pub attempts: Option<Arc<AttemptLog>>,
    /// Where the tail notes each instance's activity (for silent-instance alerts and the
    /// silence gauge); `None` keeps none.
    pub activity: Option<Arc<Activity>>,
}

/// State every engine task shares.
pub(crate) struct Shared {
    pub log: Arc<dyn EventLog>,
    /// The partition's routing index, fed by its one tail (`router.rs`).
    pub router: Arc<Router>,
    /// Cursor positions waiting for the engine's next batched commit (`cursors.rs`).
    pub cursors: CursorStager,
    pub state: StateStore,
    pub policy: RetryPolicy,
    pub options: EngineOptions,
    pub metrics: Metrics,
    pub stats: Mutex<HashMap<String, Arc<SubStats>>>,
    pub disable_requests: mpsc::UnboundedSender<DisableRequest>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub attempts: Option<Arc<AttemptLog>>,
}

impl Shared {
    /// The live counters of a subscription, created on first use.
    pub(crate) fn stats_for(&self, id: &str) -> Arc<SubStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.entry(id.to_owned()).or_default().clone()
    }

    /// Forgets a removed subscription's counters and metric series.
    pub(crate) fn forget(&self, id: &str) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.remove(id);
        self.metrics.forget(id);
    }

    /// Refreshes the dead-letter gauge after the list changed.
    pub(crate) fn refresh_dead_letters(&self, id: &str) {
        let count = self.state.dead_letter_count(id);
        self.metrics
            .dead_letters
            .with_label_values(&[id])
            .set(count as i64);
    }
}

/// The delivery engine: one cursor, one runner and one dead-letter list per subscription.
#[derive(Clone)]
pub struct DeliveryEngine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) subscriptions: watch::Receiver<Arc<SubscriptionSet>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl DeliveryEngine {
    /// Loads the delivery state, registers the metrics and starts delivering every enabled
    /// subscription. Stops when `deps.cancel` is cancelled; wait on `deps.tracker`.
    pub async fn start(deps: EngineDeps) -> Result<DeliveryEngine, DeliveryError> {
        let state = StateStore::load(deps.state_log).await?;
        let metrics = deps.metrics.0;
        let first_set = deps.subscriptions.borrow().clone();
        let router = Arc::new(Router::new(
            tail_start(deps.log.as_ref(), &first_set, &deps.sinks).await,
        ));
        deps.tracker.spawn(router::tail(
            deps.log.clone(),
            router.clone(),
            deps.activity.clone(),
            deps.cancel.clone(),
        ));
        let shared = Arc::new(Shared {
            log: deps.log,
            router,
            cursors: CursorStager::default(),
            state,
            policy: deps.policy,
            options: deps.options,
            metrics,
            stats: Mutex::new(HashMap::new()),
            disable_requests: deps.disable_requests,
            cancel: deps.cancel,
            tracker: deps.tracker,
            attempts: deps.attempts,
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor::new(
            shared.clone(),
            deps.sinks,
            deps.subscriptions.clone(),
            command_rx,
        );
        shared.tracker.spawn(supervisor.run());
        shared.tracker.spawn(cursors::committer(shared.clone()));
        Ok(DeliveryEngine {
            shared,
            subscriptions: deps.subscriptions,
            commands,
        })
    }

    /// The status of every subscription in the registry's current set.
    pub fn status(&self) -> Vec<SubscriptionStatus> {
        let set = self.subscriptions.borrow().clone();
        set.subscriptions
            .iter()
            .map(|s| self.snapshot(&s.id, s.target.kind().as_str(), s.enabled, s.start_sequence))
            .collect()
    }

    /// The status of one subscription.
    pub fn subscription_status(&self, id: &str) -> Option<SubscriptionStatus> {
        let set = self.subscriptions.borrow().clone();
        let s = set.subscriptions.iter().find(|s| s.id == id)?;
        Some(self.snapshot(&s.id, s.target.kind().as_str(), s.enabled, s.start_sequence))
    }

    fn snapshot(&self, id: &str, sink: &str, enabled: bool, start: u64) -> SubscriptionStatus {
        let stats = self.shared.stats_for(id);
        let known = |v: u64| if v == 0 { start } else { v };
        let cursor = known(stats.cursor.load(Ordering::Relaxed));
        let running = stats.running.load(Ordering::Relaxed);
        let position = if running {
            known(stats.position.load(Ordering::Relaxed))
        } else {
            cursor
        };
        let log_end = self.shared.log.next_sequence();
        SubscriptionStatus {
            id: id.to_owned(),
            sink: sink.to_owned(),
            enabled,
            running,
            cursor,
            position,
            log_end,
            lag: log_end.saturating_sub(stats.oldest(position).max(1)),
            in_flight: stats.in_flight.load(Ordering::Relaxed),
            attempts: stats.attempts.load(Ordering::Relaxed),
            failures: stats.failures.load(Ordering::Relaxed),
            delivered: stats.delivered.load(Ordering::Relaxed),
            filtered: stats.filtered.load(Ordering::Relaxed),
            dead_letters: self.shared.state.dead_letter_count(id) as u64,
            parked: stats.parked.load(Ordering::Relaxed),
            last_error: SubStats::text(&stats.last_error),
            stopped_reason: SubStats::text(&stats.stopped_reason),
        }
    }

    /// For each enabled subscription, when its oldest undelivered event (its oldest
    /// parked one, or the one at its position) was received, UTC milliseconds; `None` when
    /// it has caught up.
    pub async fn oldest_undelivered_ms(&self) -> Vec<(String, Option<i64>)> {
        let set = self.subscriptions.borrow().clone();
        let mut out = Vec::with_capacity(set.subscriptions.len());
        let end = self.shared.log.next_sequence();
        for sub in set.subscriptions.iter().filter(|s| s.enabled) {
            let stats = self.shared.stats_for(&sub.id);
            let running = stats.running.load(Ordering::Relaxed);
            let position = match stats.position.load(Ordering::Relaxed) {
                p if p > 0 && running => p,
                _ => known_cursor(&stats, sub.start_sequence),
            };
            let oldest = stats.oldest(position).max(self.shared.log.first_sequence());
            let at = if oldest < end {
                match self.shared.log.read(oldest, 1, usize::MAX).await {
                    Ok(records) => records.first().map(|r| r.timestamp_ms),
                    Err(_) => None,
                }
            } else {
                None
            };
            out.push((sub.id.clone(), at));
        }
        out
    }

    /// The subscription's dead letters, oldest sequence first, with attempt histories.
    pub fn dead_letters(&self, id: &str) -> Vec<DeadLetter> {
        self.shared.state.dead_letters(id)
    }

    /// Delivers the chosen dead letters again; each leaves the list once delivered. They
    /// go behind the subscription's current position (after the instance's queued events),
    /// so a redriven event may arrive after newer events of its instance. Returns how many
    /// were queued. The redrive itself is not durable: if the process stops first, the
    /// entries are still dead letters and can be redriven again.
    pub async fn redrive(&self, id: &str, which: Redrive) -> Result<usize, DeliveryError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Redrive {
            id: id.to_owned(),
            which,
            reply,
        })?;
        rx.await.map_err(|_| DeliveryError::ShuttingDown)?
    }

    /// Moves the subscription's cursor to a sequence or a time and restarts its delivery
    /// there (every event from it is delivered again). Returns the new cursor.
    pub async fn replay(&self, id: &str, from: ReplayFrom) -> Result<u64, DeliveryError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Replay {
            id: id.to_owned(),
            from,
            reply,
        })?;
        rx.await.map_err(|_| DeliveryError::ShuttingDown)?
    }

    fn send(&self, command: Command) -> Result<(), DeliveryError> {
        self.commands
            .send(command)
            .map_err(|_| DeliveryError::ShuttingDown)
    }
}

/// The committed cursor the runner last reported, else the subscription's start.
fn known_cursor(stats: &SubStats, start: u64) -> u64 {
    match stats.cursor.load(Ordering::Relaxed) {
        0 => start,
        cursor => cursor,
    }
}

/// Where the tail starts: the lowest position of the enabled subscriptions (their cursor,
/// or where a new one starts), so that after a restart every one of them attaches at once
/// and the backlog is read once for all. The log's end when there are none.
async fn tail_start(log: &dyn EventLog, set: &SubscriptionSet, sinks: &SinkRegistry) -> u64 {
    let cursors: HashMap<String, u64> = match log.cursors().await {
        Ok(cursors) => cursors.into_iter().collect(),
        // Unknown cursors: start at the end; lagging runners read the log themselves.
        Err(_) => return log.next_sequence(),
    };
    set.subscriptions
        .iter()
        // Those a runner will serve: enabled, with a sink of their kind.
        .filter(|s| s.enabled && sinks.get(s.target.kind()).is_some())
        .map(|s| {
            cursors
                .get(&s.id)
                .copied()
                .unwrap_or_else(|| initial_position(log, s))
        })
        .min()
        .unwrap_or_else(|| log.next_sequence())
}
