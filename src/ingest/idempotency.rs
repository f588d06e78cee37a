//! Idempotent ingest, derived from the log: a retried request is answered as the first one
//! was and stores nothing new.
//!
//! Two kinds of key, both stored in the event records themselves (`StoredEvent::key` and
//! `StoredEvent::request`), so the index below is only a cache of the log:
//! - an **event key**: a canonical event's `id`, or a provider adapter's retry key
//!   (provider, chat, message id, event, status). An event whose key was stored for the same
//!   instance within the window is acknowledged as `deduplicated` and not stored again;
//! - a **request key**: the `Idempotency-Key` header. A request whose key was stored for the
//!   same instance within the window gets the original answer (same sequences) back.
//!
//! Because the keys live in the log, the index survives restarts (it is rebuilt by reading
//! the window's records at the first keyed request) and is shared by the processes of the
//! Kafka engine (each reads the partition to its end before deciding). With the embedded
//! engine this process is the log's only writer, so after that first read the index is
//! kept by its own decisions alone: reading every append back cost provider ingest three
//! quarters of its throughput. Within one process a
//! key being stored right now is *pending*: an event with a pending key counts as a
//! duplicate, a request with a pending key is refused (409) so that the client retries and
//! then gets the stored answer.
//!
//! Memory is bounded by the window (entries older than it are evicted) and by a capacity
//! (past it, the oldest entry goes early: its retry would be stored again, the safe
//! direction).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::log::{EventLog, LogError};

/// The answer a request key maps to: what the first request stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAnswer {
    /// Its first event's sequence.
    pub first_sequence: u64,
    /// Its last event's sequence.
    pub last_sequence: u64,
    /// How many events it stored.
    pub accepted: usize,
}

/// What [`Idempotency::reserve`] decided for one request.
#[derive(Debug)]
pub enum Decision {
    /// The request key was stored before: answer this, store nothing.
    Replay(StoredAnswer),
    /// The request key is being stored by another request right now.
    InProgress,
    /// Go on: `fresh[i]` says whether event `i` is new (false: a duplicate, not stored).
    /// The reservation must be finished with [`Reservation::stored`] or dropped.
    Proceed(Reservation),
}

/// Keys held pending for one request until its append is done; dropping it without
/// [`Reservation::stored`] releases them (the append failed, so a retry must store).
#[derive(Debug)]
pub struct Reservation {
    index: Arc<PartitionIndex>,
    instance: String,
    request: Option<String>,
    keys: Vec<String>,
    /// Per event: not seen before (store it).
    pub fresh: Vec<bool>,
    done: bool,
}

/// The idempotency index of every partition of the event log.
#[derive(Debug)]
pub struct Idempotency {
    window: Duration,
    capacity: usize,
    /// Whether other processes append to the same log (the Kafka engine): then every
    /// decision first reads what they appended. With the embedded engine every keyed
    /// append goes through this index, so the log is read once, at the first decision.
    shared_log: bool,
    partitions: Mutex<HashMap<u64, Arc<PartitionIndex>>>,
}

#[derive(Debug)]
struct PartitionIndex {
    window_ms: i64,
    capacity: usize,
    /// One catch-up (log read) at a time; decisions are made under it too, so what was
    /// read and what is pending are seen together.
    reading: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The next sequence to index; `None` until the first catch-up.
    indexed_to: Option<u64>,
    /// `instance \0 key` -> when stored (ms).
    events: HashMap<String, i64>,
    /// `instance \0 key` -> the stored answer and when.
    requests: HashMap<String, (StoredAnswer, i64)>,
    /// Every entry in insertion order with its time, for eviction.
    order: VecDeque<(i64, Entry)>,
    /// Keys being stored now (both kinds, prefixed).
    pending: HashSet<String>,
}

#[derive(Debug)]
enum Entry {
    Event(String),
    Request(String),
}

/// The fields of an event record the index reads; the rest (`data`, `raw`) is skipped.
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    instance: Cow<'a, str>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<Cow<'a, str>>,
}

fn composite(instance: &str, key: &str) -> String {
    let mut out = String::with_capacity(instance.len() + key.len() + 1);
    out.push_str(instance);
    out.push('\0');
    out.push_str(key);
    out
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Idempotency {
    /// An index that remembers keys for `window` and at most `capacity` of them per
    /// partition; `shared_log` when other processes append to the same log.
    pub fn new(window: Duration, capacity: usize, shared_log: bool) -> Self {
        Idempotency {
            window,
            capacity: capacity.max(1),
            shared_log,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The window keys are remembered for.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn partition(&self, log: &dyn EventLog) -> Arc<PartitionIndex> {
        let partition = crate::log::partition_of(log.next_sequence()) as u64;
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        partitions
            .entry(partition)
            .or_insert_with(|| {
                Arc::new(PartitionIndex {
                    window_ms: i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX),
                    capacity: self.capacity,
                    reading: tokio::sync::Mutex::new(()),
                    inner: Mutex::new(Inner::default()),
                })
            })
            .clone()
    }

    /// Decides a request for `instance` carrying the request key `request` and one key per
    /// event (`None`: the event has no key and is always stored), after reading `log` (the
    /// instance's partition) to its end, so keys stored before a restart or by another
    /// process count.
    pub async fn reserve(
        &self,
        log: &dyn EventLog,
        instance: &str,
        request: Option<&str>,
        keys: &[Option<&str>],
    ) -> Result<Decision, LogError> {
        let index = self.partition(log);
        let _reading = index.reading.lock().await;
        if self.shared_log || index.never_read() {
            index.catch_up(log).await?;
        }
        let mut inner = index.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.evict(now_ms() - index.window_ms, index.capacity);
        let request = request.map(|r| composite(instance, r));
        if let Some(request) = &request {
            if let Some((answer, _)) = inner.requests.get(request) {
                return Ok(Decision::Replay(*answer));
            }
            if inner.pending.contains(&pending_request(request)) {
                return Ok(Decision::InProgress);
            }
        }
        let mut fresh = Vec::with_capacity(keys.len());
        let mut reserved = Vec::new();
        for key in keys {
            match key {
                None => fresh.push(true),
                Some(key) => {
                    let key = composite(instance, key);
                    let pending = pending_event(&key);
                    let new = !inner.events.contains_key(&key) && !inner.pending.contains(&pending);
                    if new {
                        inner.pending.insert(pending);
                        reserved.push(key);
                    }
                    fresh.push(new);
                }
            }
        }
        if let Some(request) = &request {
            inner.pending.insert(pending_request(request));
        }
        drop(inner);
        Ok(Decision::Proceed(Reservation {
            index: index.clone(),
            instance: instance.to_string(),
            request,
            keys: reserved,
            fresh,
            done: false,
        }))
    }
}

fn pending_event(key: &str) -> String {
    format!("e{key}")
}

fn pending_request(key: &str) -> String {
    format!("r{key}")
}

impl Reservation {
    /// The request's events are durable with this answer: its keys are stored, no longer
    /// pending. (The log holds them too; indexing them here saves waiting for a read.)
    pub fn stored(mut self, answer: Option<StoredAnswer>) {
        let now = now_ms();
        let mut inner = self.index.inner.lock().unwrap_or_else(|p| p.into_inner());
        for key in std::mem::take(&mut self.keys) {
            inner.pending.remove(&pending_event(&key));
            inner.insert_event(key, now);
        }
        if let Some(request) = self.request.take() {
            inner.pending.remove(&pending_request(&request));
            if let Some(answer) = answer {
                inner.extend_request(request, answer, now);
            }
        }
        self.done = true;
    }

    /// The instance this reservation is for.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.index.inner.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            inner.pending.remove(&pending_event(key));
        }
        if let Some(request) = &self.request {
            inner.pending.remove(&pending_request(request));
        }
    }
}

impl PartitionIndex {
    fn never_read(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .indexed_to
            .is_none()
    }

    /// Indexes every record from where the last catch-up stopped to the log's end; the
    /// first one starts a window before now.
    async fn catch_up(&self, log: &dyn EventLog) -> Result<(), LogError> {
        let start = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .indexed_to;
        let mut from = match start {
            Some(from) => from,
            None => log.sequence_at(now_ms() - self.window_ms).await?,
        };
        loop {
            let records = log.read(from, 1024, 8 * 1024 * 1024).await?;
            let Some(last) = records.last() else { break };
            let next = last.sequence + 1;
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            for record in &records {
                // A record that does not decode holds no key; its readers report it.
                let json = crate::envelope::event_json(&record.payload).unwrap_or_default();
                let Ok(keys) = serde_json::from_slice::<Keys>(json) else {
                    continue;
                };
                if let Some(key) = keys.key {
                    inner.insert_event(composite(&keys.instance, &key), record.timestamp_ms);
                }
                if let Some(request) = keys.request {
                    let answer = StoredAnswer {
                        first_sequence: record.sequence,
                        last_sequence: record.sequence,
                        accepted: 1,
                    };
                    inner.extend_request(
                        composite(&keys.instance, &request),
                        answer,
                        record.timestamp_ms,
                    );
                }
            }
            inner.indexed_to = Some(next);
            from = next;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.indexed_to.is_none() {
            inner.indexed_to = Some(from);
        }
        Ok(())
    }
}

impl Inner {
    fn insert_event(&mut self, key: String, at_ms: i64) {
        if !self.events.contains_key(&key) {
            self.events.insert(key.clone(), at_ms);
            self.order.push_back((at_ms, Entry::Event(key)));
        }
    }

    /// Adds what a request stored: a whole answer (from our own append) or one record of
    /// it (from the log). A request's records are appended as one unit, so they are
    /// consecutive: one already covered by the entry is skipped, a later one extends it.
    fn extend_request(&mut self, key: String, part: StoredAnswer, at_ms: i64) {
        match self.requests.get_mut(&key) {
            None => {
                self.requests.insert(key.clone(), (part, at_ms));
                self.order.push_back((at_ms, Entry::Request(key)));
            }
            Some((answer, _)) if part.last_sequence > answer.last_sequence => {
                if part.first_sequence <= answer.last_sequence {
                    // An overlapping whole answer: take it as it is.
                    *answer = part;
                } else {
                    answer.last_sequence = part.last_sequence;
                    answer.accepted += part.accepted;
                }
            }
            Some(_) => {}
        }
    }

    /// Drops entries stored before `oldest_ms`, and the oldest past `capacity`.
    fn evict(&mut self, oldest_ms: i64, capacity: usize) {
        while let Some((at, _)) = self.order.front() {
            let over = self.events.len() + self.requests.len() > capacity;
            if *at >= oldest_ms && !over {
                break;
            }
            if let Some((_, entry)) = self.order.pop_front() {
                match entry {
                    Entry::Event(key) => self.events.remove(&key),
                    Entry::Request(key) => self.requests.remove(&key).map(|(_, at)| at),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_indexed_whole_or_record_by_record_alike() {
        let mut whole = Inner::default();
        let answer = StoredAnswer {
            first_sequence: 10,
            last_sequence: 12,
            accepted: 3,
        };
        whole.extend_request("i\0k".into(), answer, 0);
        let mut by_record = Inner::default();
        for s in 10..=12 {
            let one = StoredAnswer {
                first_sequence: s,
                last_sequence: s,
                accepted: 1,
            };
            by_record.extend_request("i\0k".into(), one, 0);
            // Reading the same records again (a catch-up after our own insert) changes
            // nothing.
            whole.extend_request("i\0k".into(), one, 0);
        }
        assert_eq!(whole.requests["i\0k"].0, answer);
        assert_eq!(by_record.requests["i\0k"].0, answer);
        // The whole answer arriving after part of it was read from the log.
        let mut mixed = Inner::default();
        mixed.extend_request(
            "i\0k".into(),
            StoredAnswer {
                first_sequence: 10,
                last_sequence: 10,
                accepted: 1,
            },
            0,
        );
        mixed.extend_request("i\0k".into(), answer, 0);
        assert_eq!(mixed.requests["i\0k"].0, answer);
    }

    #[test]
    fn eviction_by_age_and_capacity() {
        let mut inner = Inner::default();
        inner.insert_event("a".into(), 1);
        inner.insert_event("b".into(), 5);
        inner.insert_event("c".into(), 9);
        inner.evict(4, 10);
        assert!(!inner.events.contains_key("a"));
        assert!(inner.events.contains_key("b"));
        inner.evict(0, 1);
        assert_eq!(inner.events.len(), 1);
        assert!(inner.events.contains_key("c"));
    }
}
