//! Operational events: the server's own `switchyard.*` events, appended to the event log like
//! any ingested event, so every sink carries them with the same guarantees (cursor,
//! retries, dead letters, replay) in Evolution's envelope.
//!
//! ```text
//! attempt log streaks ─┐
//! delivery status ─────┼─► Watcher (one task, every alerts.check_interval_ms)
//! activity (tails) ────┤      episodes.rs: once per episode
//! disable requests ────┘      │
//!                             └─► someone could receive it? ─► ingest::store ─► event log
//! ```
//!
//! | event | fires when | ends |
//! |---|---|---|
//! | `switchyard.subscription.failing` | its attempt log's failure run reaches `alerts.failing_after` | a delivery (then `.recovered`) |
//! | `switchyard.subscription.recovered` | a failing one delivers again | |
//! | `switchyard.subscription.disabled` | the server disables it (failure run, 410 Gone) | it is enabled again |
//! | `switchyard.subscription.dead_lettered` | its dead letters grow | a delivery |
//! | `switchyard.subscription.lag_exceeded` | lag above `alerts.lag_threshold` for `alerts.lag_seconds` | lag back at or under the threshold |
//! | `switchyard.instance.silent` | `no_events`, `no_messages` for `alerts.silence_seconds`, or `connection_closed` | an event, a message, another `connection.update` |
//!
//! An event's `instance` is the instance its subscription belongs to (`global` for a
//! subscription of every instance); `data` holds the subscription id, the `reason` and the
//! figures. An event is written only when some subscription (enabled or not: a disabled one
//! keeps its cursor) or WebSocket listener selects it by name: "every event" never
//! includes them (`catalog::EventKind::all`). No feedback: the server's events are not
//! instance activity, and a dead letter of an operational event raises no event.
//!
//! With the Kafka engine each process watches what it delivers: the partitions it owns (their
//! tails feed the activity) and the attempts it recorded.
//!
//! Episodes survive a restart: after a round that changed any, the watcher writes them, with
//! each instance's activity, to `{data_dir}/alerts/episodes.json` (`persist.rs`), and a start
//! restores them. An episode reported before the restart is not reported again (a failing
//! run still failing, a lag still above, a silence still silent), its end still is
//! (`recovered`), and a silence that spans the restart is reported once, measured from the
//! instance's last event before it. Subscriptions and instances that no longer exist are
//! dropped; a crash loses at most the last round. An unreadable file is logged and ignored
//! (the start goes on without episodes). With the Kafka engine each process keeps its own
//! file: an instance's restored activity is applied once this process delivers its
//! partition again; a partition that moved to another process meanwhile may report an
//! episode that process reported already, once more.

pub mod episodes;
pub mod persist;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::EventKind;
use crate::config::AlertsConfig;
use crate::delivery::activity::{Activity, Seen};
use crate::delivery::subscription::{Scope, Subscription};
use crate::delivery::PartitionedDelivery;
use crate::ingest::{store, IncomingEvent, Owner};
use crate::log::EventPartitions;
use crate::registry::Registry;
use crate::websocket::Hub;
use episodes::{
    InstanceEpisode, Observation, Silence, SubscriptionAlert, SubscriptionEpisodes, Thresholds,
};
use persist::{EpisodesFile, StoredInstance};

/// The `instance` of an operational event about a subscription of every instance.
pub const GLOBAL_INSTANCE: &str = "global";

/// What other parts of the server tell the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The server disabled a subscription (recorded in the registry already).
    Disabled {
        /// Its id.
        subscription: String,
        /// Why, as the registry stored it.
        reason: String,
    },
}

/// Builds an operational event: `kind` with `data`, ready for `ingest::store`. Fails only
/// for `data` that does not serialize (nothing is written then).
pub fn operational_event(
    kind: EventKind,
    data: &Value,
) -> Result<IncomingEvent, serde_json::Error> {
    Ok(IncomingEvent {
        event: kind.dotted().to_string(),
        data: serde_json::value::to_raw_value(data)?,
        sender: None,
        source: None,
        raw: None,
        dedupe_key: None,
    })
}

/// The instance an operational event about `subscription` belongs to.
pub fn instance_of(subscription: &Subscription) -> &str {
    match &subscription.scope {
        Scope::Instance(name) => name,
        Scope::AllInstances => GLOBAL_INSTANCE,
    }
}

/// What the watcher reads and writes.
pub struct Watcher {
    config: AlertsConfig,
    events: EventPartitions,
    registry: Arc<Registry>,
    delivery: Arc<PartitionedDelivery>,
    activity: Arc<Activity>,
    websocket: Option<Arc<Hub>>,
    subscriptions: HashMap<String, SubscriptionEpisodes>,
    instances: HashMap<String, Watched>,
    /// Restored instances whose partition this process does not deliver yet (Kafka engine:
    /// partitions are assigned after the start). Applied once it does; kept in the file
    /// meanwhile.
    restored: HashMap<String, StoredInstance>,
    /// Where the episodes are kept (`None`: in memory only).
    store: Option<PathBuf>,
    /// Some state changed since the last write.
    dirty: bool,
    /// What the last write wrote, so an unchanged file is not written again.
    written: Vec<u8>,
    /// The last write failed (warned once until one succeeds).
    write_failed: bool,
}

/// An instance being watched: its episode and its activity at the last check.
#[derive(Debug, Clone, Copy, Default)]
struct Watched {
    episode: InstanceEpisode,
    seen: Seen,
}

impl Watcher {
    /// A watcher over the server's parts.
    pub fn new(
        config: AlertsConfig,
        events: EventPartitions,
        registry: Arc<Registry>,
        delivery: Arc<PartitionedDelivery>,
        activity: Arc<Activity>,
        websocket: Option<Arc<Hub>>,
    ) -> Watcher {
        Watcher {
            config,
            events,
            registry,
            delivery,
            activity,
            websocket,
            subscriptions: HashMap::new(),
            instances: HashMap::new(),
            restored: HashMap::new(),
            store: None,
            dirty: false,
            written: Vec::new(),
            write_failed: false,
        }
    }

    /// Keeps the episodes in the file at `path` (`persist::path_in`): restores what an earlier
    /// process wrote there, except subscriptions and instances that no longer exist, and
    /// writes changes after each round. A file that cannot be used is logged and ignored.
    pub fn persisted_at(mut self, path: PathBuf) -> Watcher {
        let file = persist::load(&path);
        let set = self.registry.subscriptions().borrow().clone();
        let current: HashSet<&str> = set.subscriptions.iter().map(|s| s.id.as_str()).collect();
        let stored = file.subscriptions.len() + file.instances.len();
        for (id, episodes) in file.subscriptions {
            if current.contains(id.as_str()) {
                self.subscriptions
                    .insert(id, SubscriptionEpisodes::restored(&episodes));
            }
        }
        let instances = file.instances;
        self.restored = self.registry.read(|p| {
            instances
                .into_iter()
                .filter(|(name, _)| p.instances.contains_key(name))
                .collect()
        });
        let kept = self.subscriptions.len() + self.restored.len();
        if kept > 0 || stored > 0 {
            tracing::info!(
                subscriptions = self.subscriptions.len(),
                instances = self.restored.len(),
                dropped = stored - kept,
                "alert episodes restored"
            );
        }
        // Rewritten without what was dropped, at the first round.
        self.dirty = stored > 0;
        self.store = Some(path);
        self
    }

    /// Checks every `alerts.check_interval_ms` and handles `signals` until `shutdown`.
    pub async fn run(
        mut self,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        shutdown: CancellationToken,
    ) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.check_interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.check_subscriptions().await;
                    self.check_instances().await;
                    self.save().await;
                }
                signal = signals.recv() => match signal {
                    // Written with the next round.
                    Some(signal) => self.handle(signal).await,
                    None => break,
                },
            }
        }
        self.save().await;
    }

    /// Writes the episodes when some changed (at most once a round: never per event).
    async fn save(&mut self) {
        let Some(path) = self.store.clone() else {
            return;
        };
        if !self.dirty {
            return;
        }
        let bytes = match self.snapshot().encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "the alert episodes do not encode");
                return;
            }
        };
        self.dirty = false;
        if bytes == self.written {
            return;
        }
        let written = bytes.clone();
        let result = tokio::task::spawn_blocking(move || persist::write(&path, &bytes)).await;
        match result.map_err(std::io::Error::other).and_then(|r| r) {
            Ok(()) => {
                self.written = written;
                if std::mem::take(&mut self.write_failed) {
                    tracing::info!("alert episodes written again");
                }
            }
            Err(e) => {
                // Tried again next round; a restart meanwhile may report an episode again.
                self.dirty = true;
                if !std::mem::replace(&mut self.write_failed, true) {
                    tracing::warn!(error = %e, "cannot write the alert episodes");
                }
            }
        }
    }

    /// What the file holds now.
    fn snapshot(&self) -> EpisodesFile {
        let mut file = EpisodesFile::new();
        file.subscriptions = self
            .subscriptions
            .iter()
            .filter_map(|(id, episodes)| Some((id.clone(), episodes.stored()?)))
            .collect();
        file.instances = self
            .restored
            .iter()
            .map(|(name, stored)| (name.clone(), stored.clone()))
            .chain(self.instances.iter().map(|(name, watched)| {
                (
                    name.clone(),
                    StoredInstance::new(&watched.seen, watched.episode.stored()),
                )
            }))
            .collect();
        file
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            failing_after: self.config.failing_after.max(1),
            lag_threshold: self.config.lag_threshold,
            lag_ms: (self.config.lag_seconds * 1000.0) as i64,
        }
    }

    async fn handle(&mut self, signal: Signal) {
        match signal {
            Signal::Disabled {
                subscription,
                reason,
            } => {
                // What led to it is reported first: the failure run that reached the
                // threshold (`failing`), from attempts flushed up to now.
                if let Some(log) = self.delivery.attempts() {
                    log.flush().await;
                }
                self.check_subscriptions().await;
                let set = self.registry.subscriptions().borrow().clone();
                let Some(sub) = set.subscriptions.iter().find(|s| s.id == subscription) else {
                    return;
                };
                if !self
                    .subscriptions
                    .entry(subscription.clone())
                    .or_default()
                    .disabled()
                {
                    return;
                }
                self.dirty = true;
                let streak = self.streak(&subscription);
                let data = json!({
                    "subscription": subscription,
                    "reason": reason,
                    "consecutive_failures": streak.consecutive_failures,
                    "last_error": streak.last_error,
                });
                self.emit(
                    instance_of(sub),
                    EventKind::SwitchyardSubscriptionDisabled,
                    &data,
                )
                .await;
            }
        }
    }

    fn streak(&self, subscription: &str) -> crate::attempts::Streak {
        self.delivery
            .attempts()
            .map(|log| log.streak(subscription))
            .unwrap_or_default()
    }

    /// One round over the registry's subscriptions: failure runs, dead letters, lag.
    async fn check_subscriptions(&mut self) {
        let set = self.registry.subscriptions().borrow().clone();
        let status: HashMap<String, crate::delivery::SubscriptionStatus> = self
            .delivery
            .status()
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let now = Utc::now().timestamp_millis();
        let limits = self.thresholds();
        // A set, not a scan of the list per episode: with 10,000 subscriptions that was
        // 10^8 comparisons a round.
        let current: HashSet<&str> = set.subscriptions.iter().map(|s| s.id.as_str()).collect();
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|id, _| current.contains(id.as_str()));
        self.dirty |= self.subscriptions.len() != before;
        for sub in &set.subscriptions {
            let episodes = self.subscriptions.entry(sub.id.clone()).or_default();
            if sub.enabled {
                let was = *episodes;
                episodes.enabled();
                self.dirty |= *episodes != was;
            }
            // Delivered by another process (Kafka engine): that one watches it.
            let Some(st) = status.get(&sub.id) else {
                continue;
            };
            let streak = self.streak(&sub.id);
            let observed = Observation {
                consecutive_failures: streak.consecutive_failures,
                last_error: streak.last_error.clone(),
                dead_letters: st.dead_letters,
                // A disabled subscription lags by choice: not news.
                lag: if sub.enabled { st.lag } else { 0 },
            };
            let Some(episodes) = self.subscriptions.get_mut(&sub.id) else {
                continue;
            };
            let was = *episodes;
            let alerts = episodes.check(&observed, now, &limits);
            self.dirty |= *episodes != was;
            for alert in alerts {
                if let Some((kind, data)) = self.describe(sub, alert, &observed) {
                    self.emit(instance_of(sub), kind, &data).await;
                }
            }
        }
    }

    /// The event for `alert` of `sub`; `None` when it must not be written (a dead letter
    /// of an operational event: that would feed itself).
    fn describe(
        &self,
        sub: &Subscription,
        alert: SubscriptionAlert,
        observed: &Observation,
    ) -> Option<(EventKind, Value)> {
        let id = &sub.id;
        Some(match alert {
            SubscriptionAlert::Failing {
                consecutive_failures,
                last_error,
            } => (
                EventKind::SwitchyardSubscriptionFailing,
                json!({
                    "subscription": id,
                    "reason": "consecutive_failures",
                    "consecutive_failures": consecutive_failures,
                    "threshold": self.config.failing_after,
                    "last_error": last_error,
                }),
            ),
            SubscriptionAlert::Recovered { failures_before } => (
                EventKind::SwitchyardSubscriptionRecovered,
                json!({
                    "subscription": id,
                    "reason": "delivered",
                    "consecutive_failures": failures_before,
                }),
            ),
            SubscriptionAlert::DeadLettered { dead_letters } => {
                let newest = self
                    .delivery
                    .dead_letters(id)
                    .into_iter()
                    .max_by_key(|d| (d.dead_at_ms, d.sequence))?;
                if EventKind::parse(&newest.event).is_ok_and(EventKind::is_operational) {
                    return None;
                }
                (
                    EventKind::SwitchyardSubscriptionDeadLettered,
                    json!({
                        "subscription": id,
                        "reason": "dead_lettered",
                        "dead_letters": dead_letters,
                        "event_id": newest.id,
                        "sequence": newest.sequence,
                        "event": newest.event,
                        "attempts": newest.attempts.len(),
                        "last_error": newest
                            .attempts
                            .last()
                            .map(|a| a.reason.clone())
                            .filter(|r| !r.is_empty()),
                    }),
                )
            }
            SubscriptionAlert::LagExceeded { lag, seconds_above } => (
                EventKind::SwitchyardSubscriptionLagExceeded,
                json!({
                    "subscription": id,
                    "reason": "lag_exceeded",
                    "lag": lag,
                    "threshold": self.config.lag_threshold,
                    "seconds_above": seconds_above,
                    "consecutive_failures": observed.consecutive_failures,
                }),
            ),
        })
    }

    /// Applies the restored instances whose partition this process delivers: their activity
    /// is merged into the tails' (`Activity::seed`), their open silence restored. Those of
    /// deleted instances are dropped.
    fn apply_restored(&mut self, delivered: &[usize]) {
        if self.restored.is_empty() {
            return;
        }
        let restored = std::mem::take(&mut self.restored);
        for (name, stored) in restored {
            if !self.registry.read(|p| p.instances.contains_key(&name)) {
                self.dirty = true;
                continue;
            }
            if !delivered.contains(&self.events.index_for(&name)) {
                self.restored.insert(name, stored);
                continue;
            }
            self.activity.seed(&name, &stored.seen());
            self.instances.entry(name).or_insert_with(|| Watched {
                episode: InstanceEpisode::restored(stored.silent),
                seen: stored.seen(),
            });
        }
    }

    /// One round over the instances the tails saw.
    async fn check_instances(&mut self) {
        let now = Utc::now().timestamp_millis();
        let window_ms = (self.config.silence_seconds * 1000.0) as i64;
        let delivered = self.delivery.partitions();
        self.apply_restored(&delivered);
        let seen = self.activity.snapshot();
        let mut present = HashSet::with_capacity(seen.len());
        for (name, seen) in seen {
            if !self.registry.read(|p| p.instances.contains_key(&name)) {
                // Deleted: its silence is not news.
                self.activity.forget(&name);
                continue;
            }
            if !delivered.contains(&self.events.index_for(&name)) {
                // Its partition moved to another process (Kafka engine), which watches it
                // now; what this one saw of it is stale.
                self.activity.forget(&name);
                continue;
            }
            let watched = self.instances.entry(name.clone()).or_default();
            let was = *watched;
            watched.seen = seen;
            let silence = watched.episode.check(&seen, now, window_ms);
            self.dirty |= watched.seen != was.seen || watched.episode != was.episode;
            if let Some(silence) = silence {
                let data = silent_data(&silence, &seen, now, self.config.silence_seconds);
                self.emit(&name, EventKind::SwitchyardInstanceSilent, &data)
                    .await;
            }
            present.insert(name);
        }
        let before = self.instances.len();
        self.instances.retain(|name, _| present.contains(name));
        self.dirty |= self.instances.len() != before;
    }

    /// Whether a subscription or a WebSocket listener could receive `kind` of `instance`.
    fn receivable(&self, instance: &str, kind: EventKind) -> bool {
        let set = self.registry.subscriptions().borrow().clone();
        let number = set.instance_numbers.get(instance).map(String::as_str);
        set.subscriptions
            .iter()
            .any(|s| s.selects(instance, number, kind.dotted()))
            || self
                .websocket
                .as_ref()
                .is_some_and(|hub| hub.listens_for(kind.dotted()))
    }

    /// Appends `kind` with `data` for `instance`, when someone could receive it.
    async fn emit(&self, instance: &str, kind: EventKind, data: &Value) {
        if !self.receivable(instance, kind) {
            return;
        }
        let event = match operational_event(kind, data) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, event = kind.dotted(), "an operational event does not encode");
                return;
            }
        };
        let instance_id = self
            .registry
            .read(|p| p.instances.get(instance).map(|i| i.created.id));
        let owner = Owner {
            instance,
            instance_id,
            owner_jid: None,
            request_key: None,
        };
        let log = self.events.for_key(instance);
        match store(log.as_ref(), owner, vec![event]).await {
            Ok(receipt) => tracing::info!(
                instance,
                event = kind.dotted(),
                sequence = receipt.first_sequence,
                "operational event"
            ),
            Err(e) => {
                tracing::error!(error = %e, instance, event = kind.dotted(), "an operational event could not be stored")
            }
        }
    }
}

/// `data` of `switchyard.instance.silent`.
fn silent_data(
    silence: &Silence,
    seen: &crate::delivery::activity::Seen,
    now_ms: i64,
    window: f64,
) -> Value {
    let at = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.to_rfc3339())
    };
    json!({
        "reason": silence.cause.as_str(),
        "cause": silence.cause.as_str(),
        "seconds_silent": (now_ms - silence.since_ms).max(0) as f64 / 1000.0,
        "silence_seconds": window,
        "since": at(silence.since_ms),
        "last_event_at": at(seen.last_event_ms),
        "last_message_at": seen.last_message_ms.and_then(at),
    })
}
