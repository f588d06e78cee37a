//! Delivery lookups: what became of an event (by id, by WhatsApp message id, or every event
//! of an instance in a time range) at each subscription, with its attempts; and a
//! subscription's undelivered events. `GET /deliveries`, `GET /subscriptions/{id}/undelivered`
//! and `switchyard deliveries` are this module.
//!
//! An event's status at a subscription comes from the engine's state and the attempt log
//! (`src/attempts/`), first match wins:
//!
//! | status      | when |
//! |-------------|------|
//! | `dead`      | it is in the subscription's dead letters |
//! | `delivered` | its last attempt was delivered |
//! | `filtered`  | the subscription's scope, events or phone filter do not select it |
//! | `parked`    | its lane is parked (`parking.rs`) from at or before it |
//! | `in_flight` | it has retry state, or it is at or past the subscription's oldest unfinished position (read or not yet read; a disabled subscription's cursor) |
//! | `delivered` | the cursor passed it, it has attempts, and it is neither dead nor parked: it finished, and only dead or delivered finish (the attempt log lost its last attempt in a crash) |
//! | `filtered`  | the cursor passed it without any attempt: the subscription skipped it (a filter), or it was delivered before the attempt log kept it (older than its retention, or `attempts.enabled = false` then) |
//!
//! An event before the subscription's start without attempts is not the subscription's and
//! is not listed. Events are found through the attempt log's index (event id, message id),
//! else by reading the event log: around the time in the event id (a UUIDv7), the newest
//! [`RECENT_SCAN`] records for a message id the index does not know at all (an event of a
//! message whose other events were attempted is found only once it is attempted too), and
//! at most [`MAX_SCAN`] records per partition
//! for a time range or an undelivered list (a longer range is cut there: page through it
//! with `since`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::attempts::{AttemptLog, AttemptRecord, AttemptResult};
use crate::delivery::engine::DeliveryEngine;
use crate::delivery::partitioned::PartitionedDelivery;
use crate::delivery::runner::initial_position;
use crate::delivery::state::ParkedFrom;
use crate::delivery::subscription::{Scope, Subscription, SubscriptionSet};
use crate::delivery::window::lane_of;
use crate::envelope::{header_instance, LoggedEvent};
use crate::log::{partition_of, EventLog, LogError, Record};

/// Most event records read per partition for one range or undelivered lookup.
pub const MAX_SCAN: usize = 100_000;
/// Newest event records per partition searched for a message id the index does not know.
pub const RECENT_SCAN: usize = 20_000;
/// Around an event id's timestamp, how far the event log is searched, milliseconds.
const ID_WINDOW_MS: i64 = 60_000;

/// Where an event stands at a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted by the destination.
    Delivered,
    /// Not delivered yet: read and being tried, or waiting to be read.
    InFlight,
    /// Waiting behind a parked (failing) lane.
    Parked,
    /// In the dead letters.
    Dead,
    /// Not selected by the subscription (see the module doc).
    Filtered,
}

impl DeliveryStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Delivered,
        DeliveryStatus::InFlight,
        DeliveryStatus::Parked,
        DeliveryStatus::Dead,
        DeliveryStatus::Filtered,
    ];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Parked => "parked",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Filtered => "filtered",
        }
    }

    /// Parses the API's spelling.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text.trim())
    }

    /// In flight, parked or dead: what `undelivered` lists.
    pub fn undelivered(self) -> bool {
        matches!(
            self,
            DeliveryStatus::InFlight | DeliveryStatus::Parked | DeliveryStatus::Dead
        )
    }
}

/// What to look up. Events by `event_id`, else by `message_id`, else every event received
/// in `since..until` (all retained events when neither); then `instance`, `since`, `until`,
/// `statuses` and `subscription` narrow the answer.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// One event, by id.
    pub event_id: Option<Uuid>,
    /// The events about one WhatsApp message.
    pub message_id: Option<String>,
    /// Only this instance's events.
    pub instance: Option<String>,
    /// Only events received at or after this time, UTC milliseconds.
    pub since_ms: Option<i64>,
    /// Only events received before this time, UTC milliseconds.
    pub until_ms: Option<i64>,
    /// Only these statuses (empty: all).
    pub statuses: Vec<DeliveryStatus>,
    /// Only this subscription.
    pub subscription: Option<String>,
}

/// Who asks: what they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The global key: every subscription.
    All,
    /// An instance token: that instance's events at its own subscriptions.
    Instance(String),
}

/// One page of a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows skipped.
    pub offset: usize,
    /// Rows returned at most.
    pub limit: usize,
}

/// One attempt as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// How long the send took.
    pub duration_ms: u64,
    /// delivered, retry or permanent.
    pub outcome: AttemptResult,
    /// The HTTP status, for HTTP destinations.
    pub http_status: Option<u16>,
    /// The failure (an HTTP status line, a broker's error); null on success.
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub response: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(r: AttemptRecord) -> AttemptView {
        let at = chrono::DateTime::from_timestamp_millis(r.at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        AttemptView {
            attempt: r.attempt,
            at,
            duration_ms: r.duration_ms,
            outcome: r.outcome,
            http_status: r.http_status,
            error: r.error,
            response: r.response,
        }
    }
}

/// One event at one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The event's id.
    pub event_id: Uuid,
    /// Its log sequence.
    pub sequence: u64,
    /// Its WhatsApp message id, when it has one.
    pub message_id: Option<String>,
    /// The subscription id.
    pub subscription: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Every attempt the attempt log holds, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// Why a lookup could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The attempt log is off.
    #[error("the attempt log is off (attempts.enabled = false): deliveries cannot be looked up")]
    NoAttemptLog,
    /// This process delivers no partition right now (starting, or the Kafka engine's
    /// delivery group is moving partitions): it knows no delivery state to answer with.
    #[error("this process delivers no event partition right now (starting, or the delivery group is moving partitions); try again")]
    NotDelivering,
    /// No such subscription (or not the caller's).
    #[error("unknown subscription `{0}`")]
    UnknownSubscription(String),
    /// Reading a log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A row before its attempts are read.
struct Row {
    event: Arc<LoggedEvent>,
    message_id: Option<String>,
    subscription: String,
    status: DeliveryStatus,
}

/// One engine's view of one subscription, gathered once per lookup.
struct SubView {
    dead: HashSet<u64>,
    parked: BTreeMap<String, ParkedFrom>,
    /// The oldest unfinished position (or the durable cursor when it is not running).
    position: u64,
    /// Where the subscription starts in this partition.
    start: u64,
}

/// One engine with the subscription views gathered so far.
struct EngineLookup {
    engine: DeliveryEngine,
    subs: HashMap<String, SubView>,
}

impl EngineLookup {
    fn log(&self) -> &Arc<dyn EventLog> {
        &self.engine.shared.log
    }

    async fn view(&mut self, sub: &Subscription) -> &SubView {
        let missing = match self.subs.get(&sub.id) {
            Some(_) => None,
            None => Some(self.gather(sub).await),
        };
        if let Some(view) = missing {
            self.subs.insert(sub.id.clone(), view);
        }
        &self.subs[&sub.id]
    }

    async fn gather(&self, sub: &Subscription) -> SubView {
        let shared = &self.engine.shared;
        let start = initial_position(shared.log.as_ref(), sub);
        let stats = shared.stats_for(&sub.id);
        let running = stats.running.load(std::sync::atomic::Ordering::Relaxed);
        let position = if running {
            stats.position.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            0
        };
        let position = match position {
            0 => shared
                .log
                .cursor(&sub.id)
                .await
                .ok()
                .flatten()
                .unwrap_or(start),
            p => p,
        };
        SubView {
            dead: shared
                .state
                .dead_letters(&sub.id)
                .into_iter()
                .map(|d| d.sequence)
                .collect(),
            parked: shared.state.parked_lanes(&sub.id),
            position,
            start,
        }
    }

    /// The event's status at `sub`; `None` when it is not the subscription's.
    async fn status(
        &mut self,
        set: &SubscriptionSet,
        sub: &Subscription,
        event: &LoggedEvent,
        outcomes: &[AttemptResult],
    ) -> Option<DeliveryStatus> {
        let sequence = event.sequence;
        let retrying = self
            .engine
            .shared
            .state
            .retry_state(&sub.id, sequence)
            .is_some();
        let view = self.view(sub).await;
        if view.dead.contains(&sequence) {
            return Some(DeliveryStatus::Dead);
        }
        if outcomes.last() == Some(&AttemptResult::Delivered) {
            return Some(DeliveryStatus::Delivered);
        }
        let attempted = !outcomes.is_empty();
        if sequence < view.start && !attempted {
            return None;
        }
        let instance = &event.event.instance;
        let number = set.instance_numbers.get(instance).map(String::as_str);
        if !sub.selects(instance, number, &event.event.event) {
            return Some(DeliveryStatus::Filtered);
        }
        let parked = view
            .parked
            .iter()
            .any(|(lane, from)| from.from <= sequence && *lane == lane_of(from.ordering, event));
        if parked {
            return Some(DeliveryStatus::Parked);
        }
        if retrying || sequence >= view.position {
            return Some(DeliveryStatus::InFlight);
        }
        Some(if attempted {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Filtered
        })
    }
}

/// Reads one event record, if it is retained and decodes.
async fn read_event(log: &dyn EventLog, sequence: u64) -> Result<Option<LoggedEvent>, LogError> {
    let records = log.read(sequence, 1, usize::MAX).await?;
    if let Some(record) = records.first().filter(|r| r.sequence == sequence) {
        return Ok(LoggedEvent::decode(record).ok());
    }
    // A read that cannot start at this record (the Kafka engine on a broker that fetches
    // from the next record batch): read from a little before it.
    let mut next = sequence.saturating_sub(256).max(log.first_sequence());
    while next <= sequence {
        let batch = log.read(next, 512, 8 << 20).await?;
        let Some(last) = batch.last() else { break };
        if let Some(record) = batch.iter().find(|r| r.sequence == sequence) {
            return Ok(LoggedEvent::decode(record).ok());
        }
        if last.sequence < next {
            break;
        }
        next = last.sequence + 1;
    }
    Ok(None)
}

/// Reads `from..to` (at most `max` records), keeping what `keep` accepts, decoded.
async fn scan(
    log: &dyn EventLog,
    from: u64,
    to: u64,
    max: usize,
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Vec<LoggedEvent>, LogError> {
    let mut out = Vec::new();
    let mut next = from.max(log.first_sequence());
    let mut read = 0usize;
    while next < to && read < max {
        let batch = log.read(next, 1024.min(max - read), 8 << 20).await?;
        let Some(last) = batch.last() else { break };
        next = last.sequence + 1;
        for record in batch {
            read += 1;
            if record.sequence >= to {
                return Ok(out);
            }
            if keep(&record) {
                if let Ok(event) = LoggedEvent::decode(&record) {
                    out.push(event);
                }
            }
        }
    }
    Ok(out)
}

/// Whether a record may be `instance`'s, from its header alone (a record without a header
/// must be decoded to tell).
fn may_be_of(record: &Record, instance: Option<&str>) -> bool {
    match (instance, header_instance(&record.payload)) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }
}

impl PartitionedDelivery {
    /// Looks up deliveries (see the module doc): one page of rows, by event sequence then
    /// subscription, and how many rows there are in all.
    pub async fn deliveries(
        &self,
        viewer: &Viewer,
        query: &DeliveryQuery,
        page: Page,
    ) -> Result<(Vec<Delivery>, usize), LookupError> {
        self.lookup(viewer, query, None, page).await
    }

    /// The undelivered events (in flight, parked, dead) of one subscription, narrowed by
    /// `query` like [`PartitionedDelivery::deliveries`].
    pub async fn undelivered(
        &self,
        viewer: &Viewer,
        subscription: &str,
        query: &DeliveryQuery,
        page: Page,
    ) -> Result<(Vec<Delivery>, usize), LookupError> {
        self.lookup(viewer, query, Some(subscription), page).await
    }

    async fn lookup(
        &self,
        viewer: &Viewer,
        query: &DeliveryQuery,
        undelivered_of: Option<&str>,
        page: Page,
    ) -> Result<(Vec<Delivery>, usize), LookupError> {
        let attempts = self.attempts().ok_or(LookupError::NoAttemptLog)?;
        // Read what was recorded until now: a lookup sees every attempt made before it.
        attempts.flush().await;
        let mut engines: Vec<EngineLookup> = self
            .engines()
            .into_iter()
            .map(|(_, engine)| EngineLookup {
                engine,
                subs: HashMap::new(),
            })
            .collect();
        let Some(first) = engines.first() else {
            return Err(LookupError::NotDelivering);
        };
        let set = first.engine.subscriptions.borrow().clone();
        let visible = |sub: &Subscription| match viewer {
            Viewer::All => true,
            Viewer::Instance(own) => matches!(&sub.scope, Scope::Instance(name) if name == own),
        };
        let only_sub = undelivered_of.or(query.subscription.as_deref());
        if let Some(id) = only_sub {
            if !set.subscriptions.iter().any(|s| s.id == id && visible(s)) {
                return Err(LookupError::UnknownSubscription(id.to_owned()));
            }
        }
        let subs: Vec<&Subscription> = set
            .subscriptions
            .iter()
            .filter(|s| visible(s) && only_sub.is_none_or(|id| s.id == id))
            .collect();
        let instance = match viewer {
            Viewer::Instance(own) => Some(own.as_str()),
            Viewer::All => query.instance.as_deref(),
        };

        let mut rows: Vec<Row> = Vec::new();
        for lookup in engines.iter_mut() {
            let events = match undelivered_of {
                Some(id) => {
                    let sub = subs.iter().find(|s| s.id == id).copied();
                    match sub {
                        Some(sub) => undelivered_candidates(lookup, sub, query, instance).await?,
                        None => Vec::new(),
                    }
                }
                None => candidates(lookup, &attempts, query, instance).await?,
            };
            for event in events {
                if instance.is_some_and(|i| i != event.event.instance)
                    || query
                        .since_ms
                        .is_some_and(|t| event.received_at.timestamp_millis() < t)
                    || query
                        .until_ms
                        .is_some_and(|t| event.received_at.timestamp_millis() >= t)
                {
                    continue;
                }
                let event = Arc::new(event);
                let message = event.message_id.as_deref().map(str::to_owned);
                for sub in subs.iter().filter(|s| s.covers(&event.event.instance)) {
                    let outcomes = attempts.outcomes(event.sequence, &sub.id);
                    let Some(status) = lookup.status(&set, sub, &event, &outcomes).await else {
                        continue;
                    };
                    let wanted = if query.statuses.is_empty() {
                        undelivered_of.is_none() || status.undelivered()
                    } else {
                        query.statuses.contains(&status)
                            && (undelivered_of.is_none() || status.undelivered())
                    };
                    if wanted {
                        rows.push(Row {
                            event: event.clone(),
                            message_id: message.clone(),
                            subscription: sub.id.clone(),
                            status,
                        });
                    }
                }
            }
        }
        rows.sort_by(|a, b| {
            (a.event.sequence, &a.subscription).cmp(&(b.event.sequence, &b.subscription))
        });
        rows.dedup_by(|a, b| {
            a.event.sequence == b.event.sequence && a.subscription == b.subscription
        });
        let total = rows.len();
        let mut out = Vec::new();
        for row in rows.into_iter().skip(page.offset).take(page.limit) {
            let attempts = attempts
                .attempts(row.event.sequence, &row.subscription)
                .await?
                .into_iter()
                .map(AttemptView::from)
                .collect();
            out.push(Delivery {
                event_id: row.event.event.id,
                sequence: row.event.sequence,
                message_id: row.message_id,
                subscription: row.subscription,
                status: row.status,
                attempts,
            });
        }
        Ok((out, total))
    }
}

/// The events of this engine's partition that `query` names.
async fn candidates(
    lookup: &EngineLookup,
    attempts: &AttemptLog,
    query: &DeliveryQuery,
    instance: Option<&str>,
) -> Result<Vec<LoggedEvent>, LogError> {
    let log = lookup.log().as_ref();
    let partition = partition_of(log.next_sequence());
    let mine = |sequence: u64| partition_of(sequence) == partition;
    if let Some(id) = query.event_id {
        if let Some(sequence) = attempts.sequence_of(&id).filter(|s| mine(*s)) {
            if let Some(event) = read_event(log, sequence).await? {
                return Ok(vec![event]);
            }
        }
        // Not attempted anywhere: search the event log around the id's own time (UUIDv7).
        let Some(ts) = id.get_timestamp() else {
            return Ok(Vec::new());
        };
        let (secs, nanos) = ts.to_unix();
        let ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
        let from = log.sequence_at(ms - ID_WINDOW_MS).await?;
        let to = log.sequence_at(ms + ID_WINDOW_MS).await?;
        let found = scan(log, from, to, MAX_SCAN, |r| may_be_of(r, instance)).await?;
        return Ok(found
            .into_iter()
            .filter(|e| e.event.id == id)
            .take(1)
            .collect());
    }
    if let Some(message) = &query.message_id {
        let mut events = Vec::new();
        let mut seen = HashSet::new();
        for sequence in attempts.events_of_message(message) {
            if mine(sequence) && seen.insert(sequence) {
                if let Some(event) = read_event(log, sequence).await? {
                    events.push(event);
                }
            }
        }
        if !events.is_empty() {
            return Ok(events);
        }
        // A message nobody attempted yet (waiting behind a parked lane, filtered
        // everywhere): the newest records, searched for the id's bytes first.
        let to = log.next_sequence();
        let from = to.saturating_sub(RECENT_SCAN as u64);
        let needle = message.as_bytes();
        let recent = scan(log, from, to, RECENT_SCAN, |r| {
            !seen.contains(&r.sequence)
                && may_be_of(r, instance)
                && memchr::memmem::find(&r.payload, needle).is_some()
        })
        .await?;
        events.extend(
            recent
                .into_iter()
                .filter(|e| e.message_id.as_deref() == Some(message.as_str())),
        );
        return Ok(events);
    }
    let from = match query.since_ms {
        Some(t) => log.sequence_at(t).await?,
        None => log.first_sequence(),
    };
    let to = match query.until_ms {
        Some(t) => log.sequence_at(t).await?,
        None => log.next_sequence(),
    };
    scan(log, from, to, MAX_SCAN, |r| may_be_of(r, instance)).await
}

/// The events of this engine's partition that may be undelivered at `sub`: its dead letters
/// and everything from its oldest parked or unfinished event on.
async fn undelivered_candidates(
    lookup: &mut EngineLookup,
    sub: &Subscription,
    query: &DeliveryQuery,
    instance: Option<&str>,
) -> Result<Vec<LoggedEvent>, LogError> {
    let view = lookup.view(sub).await;
    let dead: Vec<u64> = view.dead.iter().copied().collect();
    let oldest = view
        .parked
        .values()
        .map(|p| p.from)
        .chain(std::iter::once(view.position))
        .min()
        .unwrap_or(view.position);
    let log = lookup.log().as_ref();
    let mut from = oldest;
    if let Some(t) = query.since_ms {
        from = from.max(log.sequence_at(t).await?);
    }
    let to = match query.until_ms {
        Some(t) => log.sequence_at(t).await?,
        None => log.next_sequence(),
    };
    let mut events = Vec::new();
    let mut dead: Vec<u64> = dead.into_iter().filter(|s| *s < from).collect();
    dead.sort_unstable();
    for sequence in dead {
        if let Some(event) = read_event(log, sequence).await? {
            events.push(event);
        }
    }
    events.extend(scan(log, from, to, MAX_SCAN, |r| may_be_of(r, instance)).await?);
    Ok(events)
}
