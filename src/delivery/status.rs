//! What the engine reports about each subscription: the API's status view and the live
//! counters runners and workers update.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// A snapshot of one subscription's delivery, for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionStatus {
    /// The subscription id (also its cursor's name).
    pub id: String,
    /// The sink kind (`webhook`, `rabbitmq`, ...).
    pub sink: String,
    /// Enabled in the registry.
    pub enabled: bool,
    /// A runner is delivering for it now.
    pub running: bool,
    /// The durably committed cursor: the next sequence a restart would deliver from.
    pub cursor: u64,
    /// The lowest unfinished sequence right now (the cursor catches up with it shortly).
    pub position: u64,
    /// The log's next sequence.
    pub log_end: u64,
    /// Sequences from the oldest undelivered event (`position`, or the first parked event
    /// when it is older) to the log's end: events not yet delivered (some of them may be
    /// filtered out when reached, or already delivered by lanes that are not parked).
    pub lag: u64,
    /// Events read and not yet finished.
    pub in_flight: u64,
    /// Attempts since the process started.
    pub attempts: u64,
    /// Failed attempts since the process started.
    pub failures: u64,
    /// Events delivered since the process started.
    pub delivered: u64,
    /// Events its filter dropped since the process started (they move the cursor like
    /// delivered ones: filtered, not undelivered).
    pub filtered: u64,
    /// Events in the dead-letter list.
    pub dead_letters: u64,
    /// Events waiting behind parked lanes: a lane (a chat, an instance) whose head event
    /// kept failing waits durably for its next retry while the other lanes flow and the
    /// cursor moves on. Not counted in `in_flight`; `lag` starts at the oldest of them.
    pub parked: u64,
    /// The most recent failure, if any.
    pub last_error: Option<String>,
    /// Why the engine stopped it (410 Gone, failure run, no sink registered), until the
    /// registry publishes the subscription again.
    pub stopped_reason: Option<String>,
}

/// Live counters of one subscription, shared by its runner, its workers and `status()`.
/// They outlive runner restarts so that counts cover the process's lifetime.
#[derive(Debug, Default)]
pub(crate) struct SubStats {
    pub cursor: AtomicU64,
    pub position: AtomicU64,
    pub in_flight: AtomicU64,
    pub parked: AtomicU64,
    /// The lowest parked sequence, 0 when nothing is parked.
    pub parked_floor: AtomicU64,
    pub attempts: AtomicU64,
    pub failures: AtomicU64,
    pub delivered: AtomicU64,
    /// Events the subscription's filter dropped.
    pub filtered: AtomicU64,
    /// Failed attempts since the last success, for the disable-after-failures rule.
    pub consecutive_failures: AtomicU64,
    pub running: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    pub stopped_reason: Mutex<Option<String>>,
}

impl SubStats {
    /// The oldest undelivered sequence: `position`, or the first parked event if older.
    pub(crate) fn oldest(&self, position: u64) -> u64 {
        match self.parked_floor.load(Ordering::Relaxed) {
            0 => position,
            floor => floor.min(position),
        }
    }

    /// Records a failed attempt; returns the failure run's new length.
    pub(crate) fn failed(&self, reason: &str) -> u64 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        set(&self.last_error, Some(reason.to_owned()));
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records a success: the failure run ends.
    pub(crate) fn succeeded(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Sets or clears the reason the engine stopped the subscription.
    pub(crate) fn set_stopped(&self, reason: Option<String>) {
        set(&self.stopped_reason, reason);
    }

    /// Reads a text field.
    pub(crate) fn text(field: &Mutex<Option<String>>) -> Option<String> {
        field
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn set(field: &Mutex<Option<String>>, value: Option<String>) {
    *field
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}
