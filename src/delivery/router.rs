//! Route once: one tail per event-log partition reads each new record once, decodes it
//! once, and hands it to the subscriptions that want it, found through an index
//! (instance -> subscriptions, plus the all-instance ones) rather than by asking every
//! subscription.
//!
//! A runner is *attached* while it keeps up: it then reads nothing from the log itself and
//! takes its events from its [`Inbox`]; the log's append watch does not wake it. It reads
//! the log itself only while it is behind the tail (a new subscription with an old start,
//! a replay, a backlog bigger than its inbox): it attaches again once its read position
//! reaches the tail's. An inbox that grows past [`INBOX_LIMIT`] (a subscription slower
//! than the traffic) is detached by the tail, so one slow subscription never holds the
//! others back and never makes the tail hold memory for it.
//!
//! At start the tail begins at the lowest position of the subscriptions it will serve
//! (`Router::new`), so after a restart every lagging subscription attaches at once and the
//! backlog is read once for all of them, not once per subscription.
//!
//! Consistency: the tail routes a batch and moves its position under the router's lock,
//! and a runner attaches under the same lock only when its read position is at or past
//! the tail's. An attached inbox therefore receives every wanted record from its `from`
//! on, and an inbox's drained state plus the router position tell the runner how far it
//! has seen (for cursor commits over stretches it wants nothing of).

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::delivery::activity::Activity;
use crate::delivery::runner::View;
use crate::delivery::status::SubStats;
use crate::delivery::subscription::Scope;
use crate::envelope::{record_facts, LoggedEvent};
use crate::filter::LazyData;
use crate::log::{EventLog, Record};

/// The one field of a stored event without a header (written before headers existed) the
/// tail reads before deciding to decode it.
#[derive(serde::Deserialize)]
struct InstanceOnly<'a> {
    #[serde(borrow)]
    instance: &'a str,
}

/// Most events waiting in one inbox; past it the tail detaches the subscription, which then
/// reads the log itself until it catches up. Small: an inbox only absorbs what arrives
/// while its runner is being woken, and a subscription whose window is full (a receiver
/// down) should not hold more in memory than its window already does.
pub(crate) const INBOX_LIMIT: usize = 512;

/// An attached runner is woken about every this many routed sequences (at the next stride
/// boundary past it), even when none was for it, so that its cursor follows the log (retention, lag) while it wants nothing.
const PROGRESS_STRIDE: u64 = 8192;

/// Records per tail read.
const TAIL_BATCH: usize = 1024;

/// One subscription's mailbox from the tail.
pub(crate) struct Inbox {
    /// Events routed to it, in sequence order.
    events: Mutex<VecDeque<LoggedEvent>>,
    /// Set by the tail when it stopped routing here (overflow); the runner then reads the
    /// log itself from its read position.
    detached: AtomicBool,
    /// The runner's wake-up.
    wake: Arc<Notify>,
    /// The runner's view: what it wants, read at routing time.
    view: watch::Receiver<Arc<View>>,
    /// The first sequence routed here (the runner's read position when it attached).
    from: u64,
    /// The subscription's counters (the tail counts the events its filter drops).
    stats: Arc<SubStats>,
    /// The router position when the runner was last woken, for [`PROGRESS_STRIDE`].
    woken_at: AtomicU64,
}

impl Inbox {
    /// Takes up to `max` events.
    pub(crate) fn take(&self, max: usize) -> Vec<LoggedEvent> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let n = max.min(events.len());
        events.drain(..n).collect()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Whether the tail stopped routing here.
    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }
}

/// A subscription id and its inbox.
type Route = (Arc<str>, Arc<Inbox>);

#[derive(Default)]
struct Index {
    /// The next sequence the tail routes.
    position: u64,
    by_instance: HashMap<String, Vec<Route>>,
    all_instances: Vec<Route>,
}

impl Index {
    fn remove(&mut self, sub_id: &str) {
        for list in self.by_instance.values_mut() {
            list.retain(|(id, _)| &**id != sub_id);
        }
        self.by_instance.retain(|_, list| !list.is_empty());
        self.all_instances.retain(|(id, _)| &**id != sub_id);
    }
}

/// The routing index of one partition and its tail's position.
pub(crate) struct Router {
    index: Mutex<Index>,
    /// Mirrors `Index::position` for lock-free reads (runners' cursor progress).
    position: AtomicU64,
    /// The start gate: the tail waits until the runners of the engine's first set have
    /// tried to attach, or it could outrun them and leave each to read the backlog alone.
    gate: Gate,
}

/// Counts the first set's runners that have not tried to attach yet.
#[derive(Default)]
struct Gate {
    /// Runners started for the first set that have not tried to attach.
    pending: std::sync::atomic::AtomicUsize,
    /// The supervisor has started every runner of the first set.
    all_started: AtomicBool,
    open: Notify,
}

/// Longest the tail waits for the first runners before it starts anyway.
const GATE_TIMEOUT: Duration = Duration::from_secs(30);

impl Router {
    /// A router whose tail starts at `position`.
    pub(crate) fn new(position: u64) -> Router {
        Router {
            index: Mutex::new(Index {
                position,
                ..Index::default()
            }),
            position: AtomicU64::new(position),
            gate: Gate::default(),
        }
    }

    /// A runner of the first set is about to start (the supervisor, before it spawns it).
    pub(crate) fn runner_starting(&self) {
        self.gate.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A runner of the first set tried to attach.
    pub(crate) fn runner_tried(&self) {
        if self.gate.pending.fetch_sub(1, Ordering::AcqRel) == 1
            && self.gate.all_started.load(Ordering::Acquire)
        {
            self.gate.open.notify_one();
        }
    }

    /// Every runner of the first set was started (the supervisor's first reconcile ended).
    pub(crate) fn first_set_started(&self) {
        self.gate.all_started.store(true, Ordering::Release);
        if self.gate.pending.load(Ordering::Acquire) == 0 {
            self.gate.open.notify_one();
        }
    }

    /// Whether the first set's runners may still attach before the tail moves.
    pub(crate) fn gate_open(&self) -> bool {
        self.gate.all_started.load(Ordering::Acquire)
            && self.gate.pending.load(Ordering::Acquire) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every sequence below this was routed.
    pub(crate) fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Attaches `sub_id` if `read_pos` is at or past the tail: from then on the tail routes
    /// its wanted events at or above `read_pos` to the returned inbox. `None` while it is
    /// behind: it must read the log itself.
    pub(crate) fn attach(
        &self,
        sub_id: &Arc<str>,
        read_pos: u64,
        view: watch::Receiver<Arc<View>>,
        wake: Arc<Notify>,
        stats: Arc<SubStats>,
    ) -> Option<Arc<Inbox>> {
        let mut index = self.lock();
        if read_pos < index.position {
            return None;
        }
        index.remove(sub_id);
        let scope = view.borrow().subscription.scope.clone();
        let inbox = Arc::new(Inbox {
            events: Mutex::new(VecDeque::new()),
            detached: AtomicBool::new(false),
            wake,
            view,
            from: read_pos,
            stats,
            woken_at: AtomicU64::new(index.position),
        });
        let entry = (sub_id.clone(), inbox.clone());
        match scope {
            Scope::Instance(instance) => index.by_instance.entry(instance).or_default().push(entry),
            Scope::AllInstances => index.all_instances.push(entry),
        }
        Some(inbox)
    }

    /// Stops routing to `sub_id` (its runner ends, or its scope changed).
    pub(crate) fn detach(&self, sub_id: &str) {
        let mut index = self.lock();
        index.remove(sub_id);
    }

    /// Routes `records` (consecutive, up to `next - 1`) and moves the position to `next`.
    /// A record is decoded only when some subscription covers its instance: with none
    /// (no subscriptions, or traffic of instances nobody subscribed to) the tail costs a
    /// scan for the instance name, not a decode.
    fn route(&self, records: &[Record], next: u64) {
        let mut index = self.lock();
        let mut woken: Vec<Arc<Inbox>> = Vec::new();
        let mut overflowed: Vec<Arc<str>> = Vec::new();
        // Inboxes whose filter dropped an event in this batch: woken once at the end when
        // nothing else wakes them, so their cursors pass what they filtered.
        let mut filtered: Vec<Arc<Inbox>> = Vec::new();
        let routed = |index: &Index, record: &Record| {
            if !index.all_instances.is_empty() {
                return true;
            }
            if index.by_instance.is_empty() {
                return false;
            }
            // The header names the instance; older records are peeked at as JSON. An
            // undecodable record reads as "routed", so the decode below reports it.
            if let Some(instance) = crate::envelope::header_instance(&record.payload) {
                return index.by_instance.contains_key(instance);
            }
            crate::envelope::event_json(&record.payload)
                .ok()
                .and_then(|json| serde_json::from_slice::<InstanceOnly>(json).ok())
                .is_none_or(|peek| index.by_instance.contains_key(peek.instance))
        };
        for record in records {
            if !routed(&index, record) {
                continue;
            }
            let event = match LoggedEvent::decode(record) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery skips an undecodable record");
                    continue;
                }
            };
            let specific = index.by_instance.get(&event.event.instance);
            // Filters read the event's facts, decoded (or, for older records, extracted)
            // once for every subscription, and its `data`, parsed at most once.
            let facts = OnceCell::new();
            let facts = || facts.get_or_init(|| record_facts(&record.payload, &event.event));
            let data = LazyData::new(&event.event.data);
            let targets: Vec<&Route> = specific
                .into_iter()
                .flatten()
                .chain(index.all_instances.iter())
                .filter(|(_, inbox)| {
                    if event.sequence < inbox.from {
                        return false;
                    }
                    let view = inbox.view.borrow();
                    if !view.wants(&event) {
                        return false;
                    }
                    let passes = view.passes(facts, &data);
                    if !passes {
                        // Filtered, not undelivered: its cursor moves on with the router's
                        // position (the runner is woken below when nothing else wakes it).
                        inbox.stats.filtered.fetch_add(1, Ordering::Relaxed);
                        if !filtered.last().is_some_and(|last| Arc::ptr_eq(last, inbox)) {
                            filtered.push(inbox.clone());
                        }
                    }
                    passes
                })
                .collect();
            let Some((last, rest)) = targets.split_last() else {
                continue;
            };
            // One copy per extra subscription; the last one takes the decoded event itself.
            for (id, inbox) in rest {
                deliver_to(inbox, id, event.clone(), &mut woken, &mut overflowed);
            }
            deliver_to(&last.1, &last.0, event, &mut woken, &mut overflowed);
        }
        for id in overflowed {
            index.remove(&id);
        }
        filtered.sort_unstable_by_key(|inbox| Arc::as_ptr(inbox) as usize);
        filtered.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for inbox in filtered {
            // One with events waiting is woken for them and advances past these too.
            if inbox.is_empty() && !inbox.is_detached() {
                woken.push(inbox);
            }
        }
        let previous = std::mem::replace(&mut index.position, next);
        self.position.store(next, Ordering::Release);
        // Attached runners that got nothing for a long stretch still learn how far the log
        // went, so their cursors move and retention is not held back. Looked for once per
        // stride the position crosses, not per batch: the sweep visits every subscription.
        if previous / PROGRESS_STRIDE != next / PROGRESS_STRIDE {
            let lagging = |inbox: &Arc<Inbox>| {
                next.saturating_sub(inbox.woken_at.load(Ordering::Relaxed)) >= PROGRESS_STRIDE
            };
            for (_, inbox) in index
                .by_instance
                .values()
                .flatten()
                .chain(index.all_instances.iter())
            {
                if lagging(inbox) {
                    woken.push(inbox.clone());
                }
            }
        }
        drop(index);
        for inbox in woken {
            inbox.woken_at.store(next, Ordering::Relaxed);
            inbox.wake.notify_one();
        }
    }
}

fn deliver_to(
    inbox: &Arc<Inbox>,
    id: &Arc<str>,
    event: LoggedEvent,
    woken: &mut Vec<Arc<Inbox>>,
    overflowed: &mut Vec<Arc<str>>,
) {
    if inbox.is_detached() {
        return;
    }
    let mut events = inbox.events.lock().unwrap_or_else(|p| p.into_inner());
    if events.len() >= INBOX_LIMIT {
        // Slower than the traffic: it reads the log itself from its read position, which
        // is at or below every event left in the inbox (the runner drops them).
        inbox.detached.store(true, Ordering::Release);
        overflowed.push(id.clone());
        drop(events);
        woken.push(inbox.clone());
        return;
    }
    let was_empty = events.is_empty();
    events.push_back(event);
    drop(events);
    if was_empty {
        woken.push(inbox.clone());
    }
}

/// The tail: reads each new record of `log` once, from the router's position, and routes
/// it. Ends when `cancel` fires or the log's watch closes.
pub(crate) async fn tail(
    log: Arc<dyn EventLog>,
    router: Arc<Router>,
    activity: Option<Arc<Activity>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    if !router.gate_open() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = router.gate.open.notified() => {}
            _ = tokio::time::sleep(GATE_TIMEOUT) => {
                tracing::warn!("delivery runners slow to start; the tail starts without them");
            }
        }
    }
    let mut end = log.subscribe();
    loop {
        let position = router.position();
        let log_end = *end.borrow_and_update();
        if position < log_end {
            match log.read(position, TAIL_BATCH, 8 << 20).await {
                Ok(records) if !records.is_empty() => {
                    let next = records.last().map_or(position, |r| r.sequence + 1);
                    if let Some(activity) = &activity {
                        activity.observe(&records);
                    }
                    router.route(&records, next);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the delivery tail cannot read the event log");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = end.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::subscription::{SinkTarget, Subscription};
    use crate::envelope::StoredEvent;
    use crate::sinks::rabbitmq::RabbitmqTarget;

    fn record(sequence: u64, instance: &str) -> Record {
        stored_record(sequence, instance, "call", "{}".into())
    }

    /// A record of `event` with `data` in `instance`.
    fn stored_record(sequence: u64, instance: &str, event: &str, data: String) -> Record {
        let stored = StoredEvent {
            id: uuid::Uuid::new_v4(),
            instance: instance.into(),
            instance_id: None,
            event: event.into(),
            chat: None,
            data: serde_json::value::RawValue::from_string(data).unwrap(),
            sender: None,
            source: None,
            raw: None,
            key: None,
            request: None,
        };
        Record {
            sequence,
            timestamp_ms: 0,
            payload: stored.to_bytes().unwrap(),
        }
    }

    fn view(instance: &str) -> watch::Receiver<Arc<View>> {
        let subscription = Subscription {
            id: format!("rabbitmq:{instance}"),
            target: SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
            scope: Scope::Instance(instance.into()),
            events: vec![],
            custom_events: vec![],
            phone_numbers: vec![],
            start_sequence: 0,
            start_positions: vec![],
            enabled: true,
            policy: Default::default(),
            filter: Default::default(),
        };
        let view = View {
            subscription: Arc::new(subscription),
            instance_numbers: Arc::new(Default::default()),
            instance_tokens: Arc::new(Default::default()),
            filter: None,
        };
        watch::channel(Arc::new(view)).1
    }

    #[test]
    fn routes_by_instance_from_the_attach_position_and_detaches_on_overflow() {
        let router = Router::new(10);
        let id: Arc<str> = Arc::from("a-sub");
        let wake = Arc::new(Notify::new());
        assert!(
            router
                .attach(&id, 9, view("a"), wake.clone(), Default::default())
                .is_none(),
            "behind the tail: reads the log itself"
        );
        let inbox = router
            .attach(&id, 11, view("a"), wake, Default::default())
            .unwrap();
        router.route(&[record(10, "a"), record(11, "a"), record(12, "b")], 13);
        assert_eq!(router.position(), 13);
        let got: Vec<u64> = inbox.take(10).iter().map(|e| e.sequence).collect();
        assert_eq!(got, vec![11], "from its position on, its instance only");

        let flood: Vec<Record> = (13..13 + INBOX_LIMIT as u64 + 1)
            .map(|s| record(s, "a"))
            .collect();
        let next = flood.last().unwrap().sequence + 1;
        router.route(&flood, next);
        assert!(inbox.is_detached(), "an inbox nobody drains is let go");
        router.route(&[record(next, "a")], next + 1);
        assert_eq!(
            inbox.take(usize::MAX).len(),
            INBOX_LIMIT,
            "nothing after it"
        );
    }

    fn message(sequence: u64, message_type: &str) -> Record {
        let data = format!(
            r#"{{"key":{{"remoteJid":"5511988887777@s.whatsapp.net","fromMe":false,"id":"M{sequence}"}},"messageType":"{message_type}"}}"#
        );
        stored_record(sequence, "a", "messages.upsert", data)
    }

    #[test]
    fn a_filter_drops_events_counts_them_and_wakes_its_runner_past_them() {
        let router = Router::new(0);
        let id: Arc<str> = Arc::from("f-sub");
        let wake = Arc::new(Notify::new());
        let stats: Arc<SubStats> = Default::default();
        let base = view("a").borrow().clone();
        let mut subscription = (*base.subscription).clone();
        subscription.filter = crate::filter::Filter::from_value(
            &serde_json::json!({"message_types": ["imageMessage"]}),
        )
        .unwrap();
        let filtered_view = View {
            filter: subscription.filter.compile_narrowing().unwrap(),
            subscription: Arc::new(subscription),
            ..(*base).clone()
        };
        let rx = watch::channel(Arc::new(filtered_view)).1;
        let inbox = router
            .attach(&id, 0, rx, wake.clone(), stats.clone())
            .unwrap();
        let records = [
            message(0, "imageMessage"),
            message(1, "conversation"),
            message(2, "imageMessage"),
            message(3, "audioMessage"),
        ];
        router.route(&records, 4);
        let got: Vec<u64> = inbox.take(10).iter().map(|e| e.sequence).collect();
        assert_eq!(got, vec![0, 2]);
        assert_eq!(stats.filtered.load(Ordering::Relaxed), 2);
        // Drain the wake-up of the delivered ones, then route only a filtered one: the
        // runner is woken anyway, so its cursor passes it.
        use futures::FutureExt;
        let _ = wake.notified().now_or_never();
        router.route(&[message(4, "conversation")], 5);
        assert!(inbox.is_empty());
        assert!(
            wake.notified().now_or_never().is_some(),
            "woken past a filtered event"
        );
        assert_eq!(stats.filtered.load(Ordering::Relaxed), 3);
    }
}
