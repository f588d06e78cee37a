//! The attempt log's in-memory index: what the lookups need without reading the log. Built
//! from the records as they are flushed, rebuilt from the whole log at start, and cut back
//! to the records retention keeps, so its size follows the log's byte and age bounds
//! (about 100 bytes per retained attempt).

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::record::{AttemptRecord, AttemptResult};

/// One attempt as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ref {
    /// The record's sequence in the attempt log.
    pub at: u64,
    /// The subscription, interned.
    pub sub: u32,
    pub outcome: AttemptResult,
}

/// The failure run of a subscription as its flushed attempts tell it: what a
/// failing/recovered detector reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streak {
    /// Failed attempts since the last delivered one.
    pub consecutive_failures: u64,
    /// The last failure's error, if the run has one.
    pub last_error: Option<String>,
    /// When the last attempt started, UTC milliseconds.
    pub last_at_ms: i64,
}

/// One value, or several: most events have one attempt per subscription and most messages
/// one event, which then cost no allocation of their own.
#[derive(Debug, Clone)]
enum Few<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Copy> Few<T> {
    fn push(&mut self, value: T) {
        match self {
            Few::One(first) => *self = Few::Many(vec![*first, value]),
            Few::Many(values) => values.push(value),
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Few::One(value) => std::slice::from_ref(value),
            Few::Many(values) => values,
        }
    }

    /// Keeps what `keep` accepts; false when nothing is left.
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> bool {
        match self {
            Few::One(value) => keep(value),
            Few::Many(values) => {
                values.retain(|v| keep(v));
                !values.is_empty()
            }
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Index {
    subs: Vec<Arc<str>>,
    sub_ids: HashMap<Arc<str>, u32>,
    /// Event sequence -> its attempts, in log order.
    by_event: HashMap<u64, Few<Ref>>,
    /// Event id -> sequence.
    by_id: HashMap<Uuid, u64>,
    /// WhatsApp message id -> the sequences of its events.
    by_message: HashMap<Box<str>, Few<u64>>,
    /// Subscription -> its failure run.
    streaks: HashMap<u32, Streak>,
}

impl Index {
    fn intern(&mut self, subscription: &str) -> u32 {
        if let Some(id) = self.sub_ids.get(subscription) {
            return *id;
        }
        let id = self.subs.len() as u32;
        let name: Arc<str> = Arc::from(subscription);
        self.subs.push(name.clone());
        self.sub_ids.insert(name, id);
        id
    }

    /// Adds the record stored at `at`.
    pub fn add(&mut self, at: u64, record: &AttemptRecord) {
        let sub = self.intern(&record.subscription);
        let attempt = Ref {
            at,
            sub,
            outcome: record.outcome,
        };
        let first = match self.by_event.get_mut(&record.sequence) {
            Some(refs) => {
                refs.push(attempt);
                false
            }
            None => {
                self.by_event.insert(record.sequence, Few::One(attempt));
                true
            }
        };
        // An event's first attempt indexes its ids; later ones only add themselves.
        if first {
            self.by_id.insert(record.event_id, record.sequence);
            if let Some(message) = &record.message_id {
                match self.by_message.get_mut(message.as_str()) {
                    Some(events) if !events.as_slice().contains(&record.sequence) => {
                        events.push(record.sequence)
                    }
                    Some(_) => {}
                    None => {
                        self.by_message
                            .insert(message.as_str().into(), Few::One(record.sequence));
                    }
                }
            }
        }
        let streak = self.streaks.entry(sub).or_default();
        streak.last_at_ms = record.at_ms;
        if record.outcome == AttemptResult::Delivered {
            streak.consecutive_failures = 0;
            streak.last_error = None;
        } else {
            streak.consecutive_failures += 1;
            streak.last_error.clone_from(&record.error);
        }
    }

    /// Forgets attempts stored below `first` (retention deleted them).
    pub fn evict_below(&mut self, first: u64) {
        self.by_event
            .retain(|_, refs| refs.retain(|r| r.at >= first));
        let by_event = &self.by_event;
        self.by_id
            .retain(|_, sequence| by_event.contains_key(sequence));
        self.by_message
            .retain(|_, sequences| sequences.retain(|s| by_event.contains_key(s)));
        self.by_event.shrink_to_fit();
        self.by_id.shrink_to_fit();
        self.by_message.shrink_to_fit();
    }

    pub fn sequence_of(&self, event_id: &Uuid) -> Option<u64> {
        self.by_id.get(event_id).copied()
    }

    pub fn events_of_message(&self, message_id: &str) -> Vec<u64> {
        self.by_message
            .get(message_id)
            .map(|events| events.as_slice().to_vec())
            .unwrap_or_default()
    }

    /// The attempts of one event to one subscription: their places in the log and outcomes.
    pub fn refs(&self, sequence: u64, subscription: &str) -> Vec<Ref> {
        let Some(sub) = self.sub_ids.get(subscription) else {
            return Vec::new();
        };
        self.by_event
            .get(&sequence)
            .map(|refs| {
                refs.as_slice()
                    .iter()
                    .filter(|r| r.sub == *sub)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The subscriptions that attempted the event.
    pub fn subscriptions_of(&self, sequence: u64) -> Vec<Arc<str>> {
        let mut subs: Vec<Arc<str>> = Vec::new();
        for r in self.by_event.get(&sequence).map_or(&[][..], Few::as_slice) {
            let name = &self.subs[r.sub as usize];
            if !subs.contains(name) {
                subs.push(name.clone());
            }
        }
        subs
    }

    pub fn streak(&self, subscription: &str) -> Streak {
        self.sub_ids
            .get(subscription)
            .and_then(|id| self.streaks.get(id))
            .cloned()
            .unwrap_or_default()
    }

    /// Attempts indexed.
    pub fn attempts(&self) -> usize {
        self.by_event
            .values()
            .map(|refs| refs.as_slice().len())
            .sum()
    }
}
