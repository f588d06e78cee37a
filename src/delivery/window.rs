//! The in-flight window of one subscription: a FIFO queue per ordering lane (a chat, an
//! instance or a single event, per the subscription's `OrderBy`; see [`lane_of`]), one
//! batch in progress per lane, and the commit position (the lowest unfinished sequence).
//!
//! Pure bookkeeping with no I/O, so ordering and cursor rules are unit-tested here alone.

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

/// One event waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The event.
    pub event: LoggedEvent,
    /// `Some(history)` for a redriven dead letter: it sits behind the cursor, so it is not
    /// part of the window's commit bookkeeping.
    pub redrive: Option<Vec<Attempt>>,
}

#[derive(Debug, Default)]
struct LaneQueue {
    items: VecDeque<Item>,
    /// A worker holds this lane's head batch; the next waits until it finishes.
    busy: bool,
}

/// Per-lane queues and the set of unfinished sequences.
#[derive(Debug)]
pub(crate) struct Window {
    queues: HashMap<Arc<str>, LaneQueue>,
    /// Lanes with queued items and no worker, in the order they became ready.
    ready: VecDeque<Arc<str>>,
    /// Sequences read and wanted but not yet delivered or dead-lettered.
    unfinished: BTreeSet<u64>,
    /// The next sequence to read from the log.
    read_pos: u64,
    /// Most unfinished events held at once (bounded memory).
    capacity: usize,
    /// Reading waits until this many slots are free (see `wants_read`).
    low_water: usize,
    /// The commit position last staged for the engine's batched cursor commit.
    staged: u64,
    /// Workers running (one per busy lane).
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
    /// ending worker freed. Otherwise the runner sleeps on, which saves a task wake per
    /// delivery (cursor progress needs none: whoever finishes stages it, see
    /// [`Window::progress`]).
    pub(crate) fn needs_runner(&self, room_before: usize, worker_ended: bool) -> bool {
        (room_before < self.low_water && self.wants_read())
            || (worker_ended && !self.ready.is_empty())
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

    /// Unfinished events (queued or being sent).
    pub(crate) fn in_flight(&self) -> usize {
        self.unfinished.len()
    }

    /// Where the cursor may be committed: nothing below it is unfinished.
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

    /// Queues an item behind the earlier items of its `lane` (see [`lane_of`]).
    pub(crate) fn push(&mut self, lane: &str, item: Item) {
        if item.redrive.is_none() {
            self.unfinished.insert(item.event.sequence);
            self.advance(item.event.sequence);
        }
        let name = match self.queues.get_key_value(lane) {
            Some((name, _)) => name.clone(),
            None => Arc::from(lane),
        };
        let queue = self.queues.entry(name.clone()).or_default();
        let was_idle = queue.items.is_empty() && !queue.busy;
        queue.items.push_back(item);
        if was_idle {
            self.ready.push_back(name);
        }
    }

    /// Takes the head batch (at most `max_batch` items, all redriven or all not) of the next
    /// ready lane and marks that lane busy.
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
}

/// The head items sharing the first item's kind (redriven or not), at most `max_batch`.
fn take_batch(items: &mut VecDeque<Item>, max_batch: usize) -> Vec<Item> {
    let redrive = items.front().is_some_and(|i| i.redrive.is_some());
    let mut batch = Vec::new();
    while batch.len() < max_batch.max(1) {
        match items.front() {
            Some(item) if item.redrive.is_some() == redrive => {
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
        Item {
            event: LoggedEvent::decode(&record).unwrap(),
            redrive: None,
        }
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
        old.redrive = Some(vec![]);
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
}
