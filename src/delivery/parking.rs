//! Parking: a lane (a chat, an instance, one event) whose head event still fails after
//! `park_after_attempts` stops retrying in memory. It waits durably for the head's next
//! attempt while every other lane flows and the cursor moves on.
//!
//! - **What is stored.** A `Parked { lane, from, ordering }` record in the delivery-state
//!   log, appended before the cursor may pass the lane's events; the head's retry state is
//!   its usual `Retry` record. In memory the lane keeps its waiting events as sequences
//!   only (8 bytes each; the payloads stay in the event log and are read back when sent).
//!   Later events of the lane read at the cursor join it the same way.
//! - **Retention.** A second cursor, `{subscription}#parked`, sits at the lowest parked
//!   sequence of the subscription, so the embedded log's retention keeps what a parked lane
//!   still needs (the Kafka engine's retention is the topic's own).
//! - **One turn per subscription** ([`Hold`]): a lane's `Parked` and `Unparked` records and
//!   every move of the hold cursor happen under it, together with the window change they
//!   describe, so the records of a lane land in the order its states change (an unpark
//!   never lands after the next park) and a slower update never lands a higher hold over a
//!   park.
//! - **Drain.** When the head is due, the runner hands the lane to a worker (counted in the
//!   in-flight limit), which reads the lane's next events back ([`Prefetch`]: one forward
//!   scan of the log for up to [`READ_AHEAD`] of them) and sends the head batch. Delivered or
//!   dead-lettered, the next parked events follow at once, in order; when none are left the
//!   lane flows again (`Unparked`). Failing again, it parks again until its next due time.
//! - **Restart.** The runner finds each parked lane's events by reading the log from the
//!   lane's `from` to the cursor once, with the ordering the lane was parked under.
//!   Delivered-while-draining events of a lane whose progress was not recorded yet are sent
//!   again (at-least-once).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::delivery::engine::Shared;
use crate::delivery::runner::View;
use crate::delivery::state::{ParkedFrom, StateRecord};
use crate::delivery::subscription::OrderBy;
use crate::delivery::window::{lane_of, Item, Origin, Window};
use crate::envelope::LoggedEvent;
use crate::log::LogError;

/// The suffix of a subscription's retention-hold cursor.
const HOLD_SUFFIX: &str = "#parked";

/// The name of the cursor that keeps `subscription`'s parked events from retention.
pub(crate) fn hold_cursor(subscription: &str) -> String {
    format!("{subscription}{HOLD_SUFFIX}")
}

/// Whether cursor `name` belongs to a subscription in `live` (its own or its hold).
pub(crate) fn cursor_is_live(name: &str, live: &HashSet<String>) -> bool {
    live.contains(name)
        || name
            .strip_suffix(HOLD_SUFFIX)
            .is_some_and(|id| live.contains(id))
}

/// Appends the record that parks `lane` from `from`: durable before the window lets the
/// cursor pass the lane's events.
pub(crate) async fn record_park(
    shared: &Shared,
    subscription: &str,
    lane: &str,
    from: u64,
    ordering: OrderBy,
) -> Result<(), LogError> {
    shared
        .state
        .record(StateRecord::Parked {
            subscription: subscription.to_owned(),
            lane: lane.to_owned(),
            from,
            ordering,
        })
        .await
}

/// Records that `lane` flows again. Losing this record only means a restart sends the
/// lane's drained events again.
pub(crate) async fn record_unpark(shared: &Shared, subscription: &str, lane: &str) {
    let record = StateRecord::Unparked {
        subscription: subscription.to_owned(),
        lane: lane.to_owned(),
    };
    if let Err(e) = shared.state.record(record).await {
        tracing::error!(subscription, lane, error = %e, "cannot record an unparked lane");
    }
}

/// The last retention hold committed for one subscription; its lock orders hold updates.
#[derive(Debug, Default)]
pub(crate) struct Hold(tokio::sync::Mutex<Option<u64>>);

impl Hold {
    /// Takes the hold's turn: updates made under it are applied in order.
    pub(crate) async fn turn(&self) -> tokio::sync::MutexGuard<'_, Option<u64>> {
        self.0.lock().await
    }
}

/// Moves `subscription`'s hold cursor to `floor` (removes it with `None`) unless it is
/// there already. The caller holds the hold's turn and computed `floor` under it.
pub(crate) async fn set_hold(
    shared: &Shared,
    subscription: &str,
    held: &mut Option<u64>,
    floor: Option<u64>,
) {
    if *held == floor {
        return;
    }
    let name = hold_cursor(subscription);
    let result = match floor {
        Some(position) => shared.log.commit_cursor(&name, position).await,
        None => shared.log.delete_cursor(&name).await,
    };
    match result {
        Ok(()) => *held = floor,
        // Retention may then delete parked events early; delivery itself goes on.
        Err(e) => tracing::error!(subscription, error = %e, "cannot move the parked-events hold"),
    }
}

/// How many of a parked lane's next events a draining worker reads ahead.
pub(crate) const READ_AHEAD: usize = 256;

/// A draining worker's read-ahead: the lane's next parked events, read by scanning the
/// log forward once rather than one positioned read per event (on the Kafka engine a read
/// that does not continue the previous one opens a new reader). Holds at most
/// [`READ_AHEAD`] events.
#[derive(Default)]
pub(crate) struct Prefetch {
    events: BTreeMap<u64, LoggedEvent>,
    /// Where the last scan stopped: the next scan continues there when that is close.
    scan_pos: u64,
}

impl Prefetch {
    /// The events of `wanted` (the lane's head batch), in order, read ahead with the
    /// lane's next parked sequences `ahead` (which start with `wanted`). Sequences no
    /// longer in the log (the hard retention limit deleted them) come back apart, with a
    /// warning.
    pub(crate) async fn take(
        &mut self,
        shared: &Shared,
        subscription: &str,
        wanted: &[u64],
        ahead: &[u64],
    ) -> (Vec<Item>, Vec<u64>) {
        let mut items = Vec::with_capacity(wanted.len());
        let mut gone = Vec::new();
        for &sequence in wanted {
            if !self.events.contains_key(&sequence) {
                self.fill(shared, subscription, sequence, ahead).await;
            }
            match self.events.remove(&sequence) {
                Some(event) => items.push(Item {
                    event,
                    origin: Origin::Parked,
                }),
                None => {
                    tracing::warn!(
                        subscription,
                        sequence,
                        "a parked event is no longer in the log (retention); skipping it"
                    );
                    gone.push(sequence);
                }
            }
        }
        (items, gone)
    }

    /// Scans the log from `missing` (or from where the last scan stopped, when that is
    /// close below it) until past it, keeping the events of `ahead` found on the way.
    async fn fill(&mut self, shared: &Shared, subscription: &str, missing: u64, ahead: &[u64]) {
        let opts = &shared.options;
        let keep: HashSet<u64> = ahead.iter().copied().filter(|s| *s >= missing).collect();
        let close = (opts.read_batch as u64).saturating_mul(4);
        let mut from = if self.scan_pos <= missing && missing - self.scan_pos <= close {
            self.scan_pos
        } else {
            missing
        };
        loop {
            let records = match shared
                .log
                .read(from, opts.read_batch, opts.read_bytes)
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(subscription, error = %e, "reading parked events failed");
                    return;
                }
            };
            let Some(last) = records.last() else { return };
            let past = last.sequence + 1;
            for record in records.iter().filter(|r| keep.contains(&r.sequence)) {
                if self.events.len() >= READ_AHEAD && record.sequence != missing {
                    break;
                }
                if let Ok(event) = LoggedEvent::decode(record) {
                    self.events.insert(record.sequence, event);
                }
            }
            self.scan_pos = past;
            from = past;
            if past > missing {
                return;
            }
        }
    }
}

/// Reads one event back by sequence (parked events, redrives).
pub(crate) async fn read_event(shared: &Shared, sequence: u64) -> Option<LoggedEvent> {
    let records = shared.log.read(sequence, 1, usize::MAX).await.ok()?;
    let record = records
        .into_iter()
        .next()
        .filter(|r| r.sequence == sequence)?;
    LoggedEvent::decode(&record).ok()
}

/// At a runner's start: puts the subscription's parked lanes back into `window`, each with
/// the events of it between its `from` and the cursor `start`, due when its head's retry
/// state says. Sets the hold cursor to match (and removes a stale one). `Ok(false)` when
/// `cancel` fired first.
pub(crate) async fn restore(
    shared: &Shared,
    subscription: &str,
    view: &View,
    start: u64,
    window: &std::sync::Mutex<Window>,
    hold: &Hold,
    cancel: &CancellationToken,
) -> Result<bool, LogError> {
    let lanes: BTreeMap<String, ParkedFrom> = shared.state.parked_lanes(subscription);
    let mut held = hold.turn().await;
    if lanes.is_empty() {
        // A crash between the last unpark and the hold's removal leaves a stale hold.
        if shared
            .log
            .cursor(&hold_cursor(subscription))
            .await?
            .is_some()
        {
            *held = Some(0);
            set_hold(shared, subscription, &mut held, None).await;
        }
        return Ok(true);
    }
    let mut found: HashMap<&str, VecDeque<u64>> = HashMap::new();
    let orderings: HashSet<OrderBy> = lanes.values().map(|p| p.ordering).collect();
    let mut from = lanes.values().map(|p| p.from).min().unwrap_or(start);
    let opts = &shared.options;
    let mut log_end = shared.log.subscribe();
    let waiting_since = tokio::time::Instant::now();
    let mut warned = false;
    while from < start {
        let records = shared
            .log
            .read(from, opts.read_batch, opts.read_bytes)
            .await?;
        let Some(last) = records.last() else {
            // The log's known end is below the cursor (a Kafka broker's high watermark can
            // lag behind after a restart). The cursor has passed these events, so they
            // must be found: wait for the end to catch up, never skip.
            if !warned && waiting_since.elapsed() > Duration::from_secs(5) {
                warned = true;
                tracing::warn!(
                    subscription,
                    from,
                    cursor = start,
                    "restoring parked lanes waits for the event log to show its end"
                );
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(false),
                _ = log_end.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        from = last.sequence + 1;
        for record in records.iter().filter(|r| r.sequence < start) {
            let Ok(event) = LoggedEvent::decode(record) else {
                continue;
            };
            if !view.wants(&event) {
                continue;
            }
            for &ordering in &orderings {
                let key = lane_of(ordering, &event);
                if let Some((name, parked)) = lanes.get_key_value(&key) {
                    if parked.ordering == ordering && event.sequence >= parked.from {
                        found.entry(name).or_default().push_back(event.sequence);
                    }
                }
            }
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    for (lane, parked) in &lanes {
        match found.remove(lane.as_str()) {
            Some(sequences) => {
                tracing::info!(
                    subscription,
                    lane,
                    from = parked.from,
                    cursor = start,
                    events = sequences.len(),
                    last = sequences.back().copied().unwrap_or_default(),
                    scanned_to = from,
                    "restored a parked lane"
                );
                let due = sequences
                    .front()
                    .and_then(|head| shared.state.retry_state(subscription, *head))
                    .map_or(now, |r| r.next_attempt_ms);
                window
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .restore_parked(lane, parked.ordering, sequences, due);
            }
            // Nothing of it is wanted any more (the filter changed, or retention).
            None => record_unpark(shared, subscription, lane).await,
        }
    }
    let floor = window
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .parked_floor();
    // Unknown after a restart: write it once.
    *held = Some(u64::MAX);
    set_hold(shared, subscription, &mut held, floor).await;
    Ok(true)
}
