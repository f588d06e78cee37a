//! The in-flight window of one subscription: a FIFO queue per ordering lane (a chat, an
//! instance or a single event, per the subscription's `OrderBy`; see [`lane_of`]), one
//! batch in progress per lane, the commit position (the lowest unfinished sequence), and
//! the parked lanes (see `parking.rs`).
//!
//! Pure bookkeeping with no I/O, so ordering, parking and cursor rules are unit-tested here
//! alone.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::delivery::state::Attempt;
use crate::delivery::subscription::OrderBy;
use crate::envelope::LoggedEvent;

/// The lane of `event` under `ordering`: events of one lane are delivered one batch at a
/// time, in sequence order; lanes proceed in parallel. A chat lane is always within one
/// instance (the same JID in two instances is two chats).
pub(crate) fn lane_of(ordering: OrderBy, event: &LoggedEvent) -> String {
    let instance = &event.event.instance;
    match (ordering, &event.event.chat) {
        (OrderBy::Chat, Some(chat)) => format!("{instance}\u{1f}{chat}"),
        (OrderBy::Chat, None) | (OrderBy::Instance, _) => instance.clone(),
        // The control character keeps sequence lanes apart from instance names.
        (OrderBy::Unordered, _) => format!("\u{1f}{}", event.sequence),
    }
}

/// Where an event waiting for delivery comes from, which decides who tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read at the cursor: tracked by the window's unfinished set (it holds the cursor).
    Live,
    /// Read back from a parked lane: behind the cursor, tracked by the parked lane.
    Parked,
    /// A redriven dead letter, with its history: behind the cursor, tracked by nobody
    /// (it stays a dead letter until delivered).
    Redrive(Vec<Attempt>),
}

/// One event waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The event.
    pub event: LoggedEvent,
    /// Who tracks it.
    pub origin: Origin,
}

impl Item {
    /// An event read at the cursor.
    pub(crate) fn live(event: LoggedEvent) -> Item {
        Item {
            event,
            origin: Origin::Live,
        }
    }
}

#[derive(Debug, Default)]
struct LaneQueue {
    items: VecDeque<Item>,
    /// A worker holds this lane's head batch; the next waits until it finishes.
    busy: bool,
}

/// A lane whose head kept failing: its events wait as sequences only (the payloads stay in
/// the log) until the head's next attempt is due.
#[derive(Debug)]
struct ParkedLane {
    /// The lane's unfinished events, in order; a draining worker holds a prefix of them.
    sequences: VecDeque<u64>,
    /// When the head is next tried, UTC milliseconds.
    due_ms: i64,
    /// A worker is delivering the head batch now.
    draining: bool,
    /// The ordering the lane's key was made with (recorded again on every re-park).
    ordering: OrderBy,
}

/// What a worker that finished a batch of a parked lane does next.
#[derive(Debug)]
pub(crate) enum DrainNext {
    /// Read these parked sequences back and send them (the lane is still parked).
    Parked(Vec<u64>),
    /// The lane is unparked; send this batch of its queue (redriven events that waited).
    Live(Vec<Item>),
    /// The lane is unparked and has nothing queued.
    Done,
}

/// Per-lane queues, the set of unfinished sequences and the parked lanes.
#[derive(Debug)]
pub(crate) struct Window {
    queues: HashMap<Arc<str>, LaneQueue>,
    /// Lanes with queued items and no worker, in the order they became ready.
    ready: VecDeque<Arc<str>>,
    /// Sequences read and wanted but not yet delivered, dead-lettered or parked.
    unfinished: BTreeSet<u64>,
    /// Lanes waiting for their head's next attempt (or being drained).
    parked: HashMap<Arc<str>, ParkedLane>,
    /// Events in parked lanes.
    parked_events: usize,
    /// The next sequence to read from the log.
    read_pos: u64,
    /// Most unfinished events held at once (bounded memory).
    capacity: usize,
    /// Reading waits until this many slots are free (see `wants_read`).
    low_water: usize,
    /// The commit position last staged for the engine's batched cursor commit.
    staged: u64,
    /// Workers running (one per busy or draining lane).
    pub active: usize,
    /// Dead letters queued for redrive and not yet finished (no double redrive).
    pub redriving: HashSet<u64>,
}

impl Window {
    /// An empty window that starts reading at `read_pos` and reads once `low_water`
    /// slots are free.
    pub(crate) fn new(read_pos: u64, capacity: usize, low_water: usize) -> Window {
        let capacity = capacity.max(1);
        Window {
            queues: HashMap::new(),
            ready: VecDeque::new(),
            unfinished: BTreeSet::new(),
            parked: HashMap::new(),
            parked_events: 0,
            read_pos,
            capacity,
            low_water: low_water.clamp(1, capacity),
            staged: read_pos,
            active: 0,
            redriving: HashSet::new(),
        }
    }

    /// The next sequence to read.
    pub(crate) fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// How many more events may be read now.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.unfinished.len())
    }

    /// Whether to read from the log now: at least `low_water` slots are free. A full window
    /// frees one slot per delivery, and a log read per delivery would cost more than the
    /// delivery.
    pub(crate) fn wants_read(&self) -> bool {
        self.room() >= self.low_water
    }

    /// Whether a worker that just finished a batch (with `room_before` free slots before)
    /// must wake the runner: reading can resume, or a lane waits for a worker slot the
    /// ending worker freed (a ready lane, or a parked one the runner schedules). Otherwise
    /// the runner sleeps on, which saves a task wake per delivery (cursor progress needs
    /// none: whoever finishes stages it, see [`Window::progress`]).
    pub(crate) fn needs_runner(&self, room_before: usize, worker_ended: bool) -> bool {
        (room_before < self.low_water && self.wants_read())
            || (worker_ended
                && (!self.ready.is_empty() || self.parked.values().any(|p| !p.draining)))
    }

    /// The commit position if it moved since the last call: the caller stages it for the
    /// engine's next cursor commit while it still holds the window, so positions are
    /// staged in order.
    pub(crate) fn progress(&mut self) -> Option<u64> {
        let position = self.commit_position();
        (position != self.staged).then(|| {
            self.staged = position;
            position
        })
    }

    /// Unfinished events (queued or being sent), parked ones apart.
    pub(crate) fn in_flight(&self) -> usize {
        self.unfinished.len()
    }

    /// Where the cursor may be committed: nothing below it is unfinished (parked events
    /// are kept by their lane and the delivery-state log instead).
    pub(crate) fn commit_position(&self) -> u64 {
        self.unfinished.first().copied().unwrap_or(self.read_pos)
    }

    /// Moves the read position past a record that was read (wanted or not).
    pub(crate) fn advance(&mut self, past: u64) {
        self.read_pos = self.read_pos.max(past + 1);
    }

    /// Queues an item behind the earlier items of its lane under `ordering`.
    pub(crate) fn queue(&mut self, ordering: OrderBy, item: Item) {
        let lane = lane_of(ordering, &item.event);
        self.push(&lane, item);
    }

    /// Queues an item behind the earlier items of its `lane` (see [`lane_of`]). An event
    /// read at the cursor for a parked lane joins the lane's parked sequences instead: the
    /// cursor passes it, the lane keeps it.
    pub(crate) fn push(&mut self, lane: &str, item: Item) {
        if item.origin == Origin::Live {
            self.advance(item.event.sequence);
            if let Some(parked) = self.parked.get_mut(lane) {
                parked.sequences.push_back(item.event.sequence);
                self.parked_events += 1;
                return;
            }
            self.unfinished.insert(item.event.sequence);
        }
        let name = self.lane_name(lane);
        let parked = self.parked.contains_key(lane);
        let queue = self.queues.entry(name.clone()).or_default();
        let was_idle = queue.items.is_empty() && !queue.busy;
        queue.items.push_back(item);
        if was_idle && !parked {
            self.ready.push_back(name);
        }
    }

    /// The shared name of `lane` if it is known, else a new one.
    fn lane_name(&self, lane: &str) -> Arc<str> {
        match self.queues.get_key_value(lane) {
            Some((name, _)) => name.clone(),
            None => match self.parked.get_key_value(lane) {
                Some((name, _)) => name.clone(),
                None => Arc::from(lane),
            },
        }
    }

    /// Takes the head batch (at most `max_batch` items of one origin) of the next ready
    /// lane and marks that lane busy.
    pub(crate) fn take_ready(&mut self, max_batch: usize) -> Option<(Arc<str>, Vec<Item>)> {
        while let Some(lane) = self.ready.pop_front() {
            let Some(queue) = self.queues.get_mut(&lane) else {
                continue;
            };
            if queue.items.is_empty() {
                continue;
            }
            queue.busy = true;
            return Some((lane, take_batch(&mut queue.items, max_batch)));
        }
        None
    }

    /// Marks a batch of `lane` finished (delivered or dead-lettered): its tracked sequences
    /// leave the window, and the lane's next batch is returned for the same worker to send
    /// at once (no hop through the runner on the hot path). `None` when the lane has
    /// nothing queued: it is then idle and forgotten.
    pub(crate) fn finish_and_next(
        &mut self,
        lane: &str,
        tracked: &[u64],
        max_batch: usize,
    ) -> Option<Vec<Item>> {
        for sequence in tracked {
            self.unfinished.remove(sequence);
        }
        let queue = self.queues.get_mut(lane)?;
        if queue.items.is_empty() {
            self.queues.remove(lane);
            return None;
        }
        Some(take_batch(&mut queue.items, max_batch))
    }

    /// Marks events finished (delivered or dead-lettered) while their lane's worker still
    /// has later batches out (a pipelining sink, see [`Window::take_more`]): they leave the
    /// window, the lane stays busy.
    pub(crate) fn finish(&mut self, tracked: &[u64]) {
        for sequence in tracked {
            self.unfinished.remove(sequence);
        }
    }

    /// The next batch of a busy `lane` whose earlier batches are still out, for a sink that
    /// keeps order between outstanding sends (`Sink::pipelines`): only events read at the
    /// cursor (a redrive waits until nothing is out), at most `max_batch`. The lane stays
    /// busy either way; its worker ends through [`Window::finish_and_next`].
    pub(crate) fn take_more(&mut self, lane: &str, max_batch: usize) -> Option<Vec<Item>> {
        let queue = self.queues.get_mut(lane)?;
        match queue.items.front() {
            Some(item) if item.origin == Origin::Live => {
                Some(take_batch(&mut queue.items, max_batch))
            }
            _ => None,
        }
    }

    /// Parks `lane`, whose worker gives up retrying in memory: `finished` events of its
    /// batch are done, `waiting` ones (in order) wait for `due_ms`, and so do the lane's
    /// queued events read at the cursor. None of them holds the cursor any more. The lane's
    /// queued redrives stay queued until it unparks. The worker ends.
    pub(crate) fn park(
        &mut self,
        lane: &str,
        ordering: OrderBy,
        finished: &[u64],
        waiting: &[u64],
        due_ms: i64,
    ) {
        for sequence in finished.iter().chain(waiting) {
            self.unfinished.remove(sequence);
        }
        let name = self.lane_name(lane);
        let mut sequences: VecDeque<u64> = waiting.iter().copied().collect();
        if let Some(queue) = self.queues.get_mut(lane) {
            queue.busy = false;
            let (live, other): (VecDeque<Item>, VecDeque<Item>) = queue
                .items
                .drain(..)
                .partition(|item| item.origin == Origin::Live);
            for item in live {
                self.unfinished.remove(&item.event.sequence);
                sequences.push_back(item.event.sequence);
            }
            queue.items = other;
            if queue.items.is_empty() {
                self.queues.remove(lane);
            }
        }
        self.parked_events += sequences.len();
        self.parked.insert(
            name,
            ParkedLane {
                sequences,
                due_ms,
                draining: false,
                ordering,
            },
        );
    }

    /// Restores a lane parked before a restart, with the sequences found for it.
    pub(crate) fn restore_parked(
        &mut self,
        lane: &str,
        ordering: OrderBy,
        sequences: VecDeque<u64>,
        due_ms: i64,
    ) {
        self.parked_events += sequences.len();
        self.parked.insert(
            Arc::from(lane),
            ParkedLane {
                sequences,
                due_ms,
                draining: false,
                ordering,
            },
        );
    }

    /// The ordering a parked lane's key was made with.
    pub(crate) fn parked_ordering(&self, lane: &str) -> Option<OrderBy> {
        self.parked.get(lane).map(|p| p.ordering)
    }

    /// When the earliest parked lane that no worker drains is due, UTC milliseconds.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.parked
            .values()
            .filter(|p| !p.draining)
            .map(|p| p.due_ms)
            .min()
    }

    /// A parked lane due at `now_ms` with its head batch (at most `max_batch` sequences),
    /// now marked as drained by the caller's worker.
    pub(crate) fn take_due(
        &mut self,
        now_ms: i64,
        max_batch: usize,
    ) -> Option<(Arc<str>, Vec<u64>)> {
        let (lane, parked) = self
            .parked
            .iter_mut()
            .filter(|(_, p)| !p.draining && p.due_ms <= now_ms)
            .min_by_key(|(_, p)| p.due_ms)?;
        parked.draining = true;
        let head = parked
            .sequences
            .iter()
            .take(max_batch.max(1))
            .copied()
            .collect();
        Some((lane.clone(), head))
    }

    /// A draining worker finished `finished` sequences of parked `lane` (delivered,
    /// dead-lettered, or gone from the log): what it does next. When the lane has nothing
    /// parked left it flows again.
    pub(crate) fn drain_finished(
        &mut self,
        lane: &str,
        finished: &[u64],
        max_batch: usize,
    ) -> DrainNext {
        let Some(parked) = self.parked.get_mut(lane) else {
            return DrainNext::Done;
        };
        let before = parked.sequences.len();
        parked.sequences.retain(|s| !finished.contains(s));
        self.parked_events -= before - parked.sequences.len();
        if !parked.sequences.is_empty() {
            return DrainNext::Parked(
                parked
                    .sequences
                    .iter()
                    .take(max_batch.max(1))
                    .copied()
                    .collect(),
            );
        }
        self.parked.remove(lane);
        match self.queues.get_mut(lane) {
            Some(queue) if !queue.items.is_empty() => {
                queue.busy = true;
                DrainNext::Live(take_batch(&mut queue.items, max_batch))
            }
            _ => {
                self.queues.remove(lane);
                DrainNext::Done
            }
        }
    }

    /// A draining worker's head batch failed again: `finished` ones of it are done, the
    /// rest wait for `due_ms` at the lane's head. The worker ends.
    pub(crate) fn repark(&mut self, lane: &str, finished: &[u64], due_ms: i64) {
        self.forget_parked(lane, finished);
        if let Some(parked) = self.parked.get_mut(lane) {
            parked.draining = false;
            parked.due_ms = due_ms;
        }
    }

    /// Removes `sequences` from parked `lane` (finished, or gone from the log), leaving
    /// its state otherwise as it is.
    pub(crate) fn forget_parked(&mut self, lane: &str, sequences: &[u64]) {
        if let Some(parked) = self.parked.get_mut(lane) {
            let before = parked.sequences.len();
            parked.sequences.retain(|s| !sequences.contains(s));
            self.parked_events -= before - parked.sequences.len();
        }
    }

    /// The first `n` sequences of parked `lane` (what a draining worker reads ahead).
    pub(crate) fn parked_ahead(&self, lane: &str, n: usize) -> Vec<u64> {
        self.parked
            .get(lane)
            .map(|p| p.sequences.iter().take(n).copied().collect())
            .unwrap_or_default()
    }

    /// Events in parked lanes.
    pub(crate) fn parked_events(&self) -> usize {
        self.parked_events
    }

    /// The lowest parked sequence: what retention must keep for the parked lanes.
    pub(crate) fn parked_floor(&self) -> Option<u64> {
        self.parked
            .values()
            .filter_map(|p| p.sequences.front().copied())
            .min()
    }
}

/// The head items sharing the first item's origin kind, at most `max_batch`.
fn take_batch(items: &mut VecDeque<Item>, max_batch: usize) -> Vec<Item> {
    let kind = items.front().map(|i| std::mem::discriminant(&i.origin));
    let mut batch = Vec::new();
    while batch.len() < max_batch.max(1) {
        match items.front() {
            Some(item) if Some(std::mem::discriminant(&item.origin)) == kind => {
                if let Some(item) = items.pop_front() {
                    batch.push(item);
                }
            }
            _ => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StoredEvent;
    use crate::log::Record;

    fn item(sequence: u64, instance: &str) -> Item {
        let stored = StoredEvent {
            id: uuid::Uuid::new_v4(),
            instance: instance.into(),
            event: "call".into(),
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            sender: None,
            source: None,
            raw: None,
            instance_id: None,
            key: None,
            request: None,
            chat: None,
        };
        let record = Record {
            sequence,
            timestamp_ms: 0,
            payload: stored.to_bytes().unwrap(),
        };
        Item::live(LoggedEvent::decode(&record).unwrap())
    }

    fn seqs(batch: &[Item]) -> Vec<u64> {
        batch.iter().map(|i| i.event.sequence).collect()
    }

    #[test]
    fn one_batch_per_instance_in_order_and_instances_in_parallel() {
        let mut w = Window::new(1, 100, 25);
        for (s, i) in [(1, "a"), (2, "b"), (3, "a"), (4, "a")] {
            w.push(i, item(s, i));
        }
        let (a, batch) = w.take_ready(1).unwrap();
        assert_eq!((&*a, seqs(&batch)), ("a", vec![1]));
        let (b, batch) = w.take_ready(1).unwrap();
        assert_eq!((&*b, seqs(&batch)), ("b", vec![2]));
        assert!(w.take_ready(1).is_none(), "a is busy until 1 finishes");
        let batch = w.finish_and_next("a", &[1], 5).unwrap();
        assert_eq!(seqs(&batch), vec![3, 4]);
        assert!(w.take_ready(1).is_none(), "the finishing worker keeps a");
        assert!(w.finish_and_next("a", &[3, 4], 5).is_none());
    }

    #[test]
    fn commit_position_is_the_lowest_unfinished_sequence() {
        let mut w = Window::new(1, 100, 25);
        for (s, i) in [(1, "a"), (2, "b"), (3, "b")] {
            w.push(i, item(s, i));
        }
        w.advance(5); // 4 and 5 were not wanted
        assert_eq!(w.commit_position(), 1);
        let _ = w.take_ready(1);
        let _ = w.take_ready(1);
        let next = w.finish_and_next("b", &[2], 1).unwrap();
        assert_eq!(seqs(&next), vec![3]);
        assert_eq!(w.commit_position(), 1);
        assert!(w.finish_and_next("a", &[1], 1).is_none());
        assert_eq!(w.commit_position(), 3);
        assert!(w.finish_and_next("b", &[3], 1).is_none());
        assert_eq!(w.commit_position(), 6);
        assert_eq!(w.in_flight(), 0);
        assert!(w.queues.is_empty(), "idle instances are forgotten");
    }

    #[test]
    fn the_window_is_bounded_and_redrives_do_not_hold_the_cursor() {
        let mut w = Window::new(10, 2, 1);
        w.push("a", item(10, "a"));
        w.push("a", item(11, "a"));
        assert_eq!(w.room(), 0);
        let mut old = item(3, "a");
        old.origin = Origin::Redrive(vec![]);
        w.push("a", old);
        assert_eq!(w.commit_position(), 10);
        let (_, batch) = w.take_ready(10).unwrap();
        assert_eq!(seqs(&batch), vec![10, 11], "redrives are batched apart");
        let batch = w.finish_and_next("a", &[10, 11], 10).unwrap();
        assert_eq!(seqs(&batch), vec![3]);
        assert_eq!(w.commit_position(), 12);
    }

    #[test]
    fn workers_wake_the_runner_only_when_it_has_something_to_do() {
        let mut w = Window::new(1, 8, 4);
        for s in 1..=8 {
            w.push("a", item(s, "a"));
        }
        assert!(!w.wants_read(), "full window");
        let (a, mut batch) = w.take_ready(1).unwrap();
        w.active += 1;
        // One freed slot is not worth a wake; progress is staged, not woken for.
        for expected in 2..=4 {
            let room_before = w.room();
            batch = w.finish_and_next(&a, &seqs(&batch), 1).unwrap();
            assert!(!w.needs_runner(room_before, false), "room {}", w.room());
            assert_eq!(w.progress(), Some(expected));
            assert_eq!(w.progress(), None, "staged once");
        }
        // Reaching the low-water mark is: the runner reads again.
        let room_before = w.room();
        w.finish_and_next(&a, &seqs(&batch), 1).unwrap();
        assert_eq!(w.room(), 4);
        assert!(w.wants_read());
        assert!(w.needs_runner(room_before, false));
        // A worker ending while another lane waits for a slot wakes it too.
        w.push("b", item(9, "b"));
        assert!(w.needs_runner(w.room(), true));
        assert!(!w.needs_runner(w.room(), false));
    }

    #[test]
    fn lanes_follow_the_ordering() {
        let mut in_chat = item(7, "a");
        in_chat.event.event.chat = Some("5511@s.whatsapp.net".into());
        let chatless = item(8, "a");
        assert_eq!(
            lane_of(OrderBy::Chat, &in_chat.event),
            "a\u{1f}5511@s.whatsapp.net"
        );
        assert_eq!(lane_of(OrderBy::Chat, &chatless.event), "a");
        assert_eq!(lane_of(OrderBy::Instance, &in_chat.event), "a");
        assert_eq!(lane_of(OrderBy::Unordered, &in_chat.event), "\u{1f}7");
        // Two chats of one instance are two lanes: both are in flight at once.
        let mut w = Window::new(1, 100, 25);
        let mut other = item(9, "a");
        other.event.event.chat = Some("5522@s.whatsapp.net".into());
        for it in [in_chat, other] {
            let lane = lane_of(OrderBy::Chat, &it.event);
            w.push(&lane, it);
        }
        assert!(w.take_ready(1).is_some());
        assert!(w.take_ready(1).is_some(), "the second chat does not wait");
    }

    #[test]
    fn a_parked_lane_releases_the_cursor_and_keeps_its_later_events_as_sequences() {
        let mut w = Window::new(1, 100, 25);
        for (s, i) in [(1, "a"), (2, "b"), (3, "a")] {
            w.push(i, item(s, i));
        }
        let (a, batch) = w.take_ready(1).unwrap();
        assert_eq!(seqs(&batch), vec![1]);
        w.active += 1;
        let mut redriven = item(0, "a");
        redriven.origin = Origin::Redrive(vec![]);
        w.push("a", redriven);
        // Event 1 keeps failing: the lane parks with 1 at its head and 3 behind it.
        w.park(&a, OrderBy::Instance, &[], &[1], 500);
        w.active -= 1;
        assert_eq!(w.parked_events(), 2);
        assert_eq!(w.parked_floor(), Some(1));
        assert_eq!(w.commit_position(), 2, "the cursor passes the parked lane");
        // A new event of the parked lane joins it; the other lane flows.
        w.push("a", item(4, "a"));
        w.push("b", item(5, "b"));
        assert_eq!(w.parked_events(), 3);
        let (b, batch) = w.take_ready(1).unwrap();
        assert_eq!((&*b, seqs(&batch)), ("b", vec![2]));
        assert!(
            w.take_ready(1).is_none(),
            "b is busy; a is parked, its redrive waits"
        );
        assert!(w.finish_and_next("b", &[2], 10).is_some());
        assert_eq!(w.commit_position(), 5);
        // Not due before its time; then drained in order, in batches.
        assert_eq!(w.next_due(), Some(500));
        assert!(w.take_due(499, 2).is_none());
        let (lane, head) = w.take_due(500, 2).unwrap();
        assert_eq!((&*lane, head), ("a", vec![1, 3]));
        assert_eq!(w.next_due(), None, "a draining lane is not scheduled again");
        // A batch sink delivered 3 while 1 failed again: the lane parks again, 1 first.
        w.repark("a", &[3], 900);
        assert_eq!(w.parked_events(), 2);
        let (_, head) = w.take_due(900, 2).unwrap();
        assert_eq!(head, vec![1, 4]);
        // Unparked: its waiting redrive comes next, to the same worker.
        match w.drain_finished("a", &[1, 4], 2) {
            DrainNext::Live(batch) => assert_eq!(seqs(&batch), vec![0]),
            other => panic!("expected the waiting redrive, got {other:?}"),
        }
        assert_eq!(w.parked_events(), 0);
        assert_eq!(w.parked_floor(), None);
        // Unparked: a new event of the lane is tracked by the cursor again.
        w.push("a", item(6, "a"));
        assert_eq!(w.commit_position(), 5);
    }
}
