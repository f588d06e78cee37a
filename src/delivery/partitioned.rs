//! The engines of one process, one per event-log partition it delivers: the embedded log
//! has one partition, so one engine; the Kafka engine runs one for each partition the
//! delivery group assigns here, started and stopped as the assignment moves. The API talks
//! to this, never to a single engine.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::attempts::AttemptLog;

use crate::delivery::engine::{DeliveryEngine, Redrive, ReplayFrom};
use crate::delivery::error::DeliveryError;
use crate::delivery::state::DeadLetter;
use crate::delivery::status::SubscriptionStatus;
use crate::log::partition_of;

/// The running engines, by event partition.
#[derive(Default)]
pub struct PartitionedDelivery {
    engines: RwLock<BTreeMap<usize, DeliveryEngine>>,
    /// The process's attempt log, which the lookups read (`lookup.rs`).
    attempts: Option<Arc<AttemptLog>>,
}

impl PartitionedDelivery {
    /// No engines yet.
    pub fn new() -> PartitionedDelivery {
        PartitionedDelivery::default()
    }

    /// No engines yet; the lookups read `attempts`.
    pub fn with_attempts(attempts: Option<Arc<AttemptLog>>) -> PartitionedDelivery {
        PartitionedDelivery {
            attempts,
            ..PartitionedDelivery::default()
        }
    }

    /// The attempt log, when the process keeps one.
    pub fn attempts(&self) -> Option<Arc<AttemptLog>> {
        self.attempts.clone()
    }

    /// Adds the engine of partition `p`.
    pub fn insert(&self, p: usize, engine: DeliveryEngine) {
        self.write().insert(p, engine);
    }

    /// Removes the engine of partition `p` (its caller stops it).
    pub fn remove(&self, p: usize) -> Option<DeliveryEngine> {
        self.write().remove(&p)
    }

    /// The partitions delivered here.
    pub fn partitions(&self) -> Vec<usize> {
        self.read().keys().copied().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<usize, DeliveryEngine>> {
        self.engines.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<usize, DeliveryEngine>> {
        self.engines.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn engines(&self) -> Vec<(usize, DeliveryEngine)> {
        self.read().iter().map(|(p, e)| (*p, e.clone())).collect()
    }

    /// The status of every subscription. With several partitions here, counters are
    /// summed and positions are those of the lowest partition.
    pub fn status(&self) -> Vec<SubscriptionStatus> {
        let engines = self.engines();
        let Some(((_, first), rest)) = engines.split_first() else {
            return Vec::new();
        };
        first
            .status()
            .into_iter()
            .map(|mut status| {
                for (_, engine) in rest {
                    if let Some(other) = engine.subscription_status(&status.id) {
                        merge(&mut status, &other);
                    }
                }
                status
            })
            .collect()
    }

    /// The status of one subscription (see [`PartitionedDelivery::status`]).
    pub fn subscription_status(&self, id: &str) -> Option<SubscriptionStatus> {
        let mut merged: Option<SubscriptionStatus> = None;
        for (_, engine) in self.engines() {
            if let Some(status) = engine.subscription_status(id) {
                match &mut merged {
                    Some(m) => merge(m, &status),
                    None => merged = Some(status),
                }
            }
        }
        merged
    }

    /// Sets `switchyard_delivery_oldest_undelivered_age_seconds` of every enabled
    /// subscription (the oldest across the partitions delivered here); called at scrape
    /// time. (The per-instance silence gauge is `metrics::SilenceMetrics`, read at scrape.)
    pub async fn observe_oldest_undelivered(&self) {
        let engines = self.engines();
        let Some((_, first)) = engines.first() else {
            return;
        };
        let gauge = first.shared.metrics.oldest_undelivered.clone();
        let mut oldest: BTreeMap<String, Option<i64>> = BTreeMap::new();
        for (_, engine) in &engines {
            for (id, at) in engine.oldest_undelivered_ms().await {
                let entry = oldest.entry(id).or_insert(None);
                *entry = match (*entry, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        for (id, at) in oldest {
            let age = at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            gauge.with_label_values(&[id.as_str()]).set(age);
        }
    }

    /// The subscription's dead letters in every partition delivered here, by sequence.
    pub fn dead_letters(&self, id: &str) -> Vec<DeadLetter> {
        let mut all: Vec<DeadLetter> = self
            .engines()
            .iter()
            .flat_map(|(_, e)| e.dead_letters(id))
            .collect();
        all.sort_by_key(|d| d.sequence);
        all
    }

    /// Redrives the chosen dead letters in every partition delivered here; returns how many
    /// were queued.
    pub async fn redrive(&self, id: &str, which: Redrive) -> Result<usize, DeliveryError> {
        let mut queued = 0;
        let mut first_error = None;
        let engines = self.engines();
        if engines.is_empty() {
            return Err(DeliveryError::NotRunning(id.to_owned()));
        }
        for (_, engine) in engines {
            match engine.redrive(id, which.clone()).await {
                Ok(n) => queued += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if queued == 0 => Err(e),
            _ => Ok(queued),
        }
    }

    /// Moves the subscription's cursors: to a time in every partition delivered here; to a
    /// sequence in the partition that holds it (0: every partition from its start).
    /// Returns the new cursor of the lowest partition moved.
    pub async fn replay(&self, id: &str, from: ReplayFrom) -> Result<u64, DeliveryError> {
        let mut result = None;
        let engines = self.engines();
        if engines.is_empty() {
            return Err(DeliveryError::NotRunning(id.to_owned()));
        }
        for (p, engine) in engines {
            let applies = match from {
                ReplayFrom::Time(_) | ReplayFrom::Sequence(0) => true,
                ReplayFrom::Sequence(s) => partition_of(s) == p,
            };
            if applies {
                let cursor = engine.replay(id, from).await?;
                result.get_or_insert(cursor);
            }
        }
        result.ok_or_else(|| DeliveryError::NotRunning(id.to_owned()))
    }
}

/// Adds another partition's view of a subscription to `into`.
fn merge(into: &mut SubscriptionStatus, other: &SubscriptionStatus) {
    into.running |= other.running;
    into.lag += other.lag;
    into.in_flight += other.in_flight;
    into.attempts += other.attempts;
    into.failures += other.failures;
    into.delivered += other.delivered;
    into.filtered += other.filtered;
    into.dead_letters += other.dead_letters;
    into.parked += other.parked;
    if into.last_error.is_none() {
        into.last_error.clone_from(&other.last_error);
    }
    if into.stopped_reason.is_none() {
        into.stopped_reason.clone_from(&other.stopped_reason);
    }
}
