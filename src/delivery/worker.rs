//! Delivers one lane's head batch to its sink until every event of it is finished
//! (delivered or dead-lettered), retrying on the policy's schedule.
//!
//! A worker owns its lane (a chat, an instance or one event, see `window::lane_of`) while
//! it runs: it takes the lane's next batch only after the current one is finished, which is
//! what keeps a lane's events in order. It then continues with that batch itself (no hop
//! through the runner) and ends when the lane's queue is empty.
//!
//! After `park_after_attempts` failed attempts of an event, the worker parks its lane
//! (`parking.rs`) and ends instead of waiting in memory. A worker started on a parked lane
//! (its head is due) drains it: the head batch, then the following parked events, until
//! the lane flows again or its head fails again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::attempts::{AttemptRecord, AttemptResult, FORMAT_VERSION};
use crate::delivery::engine::Shared;
use crate::delivery::metrics::Meters;
use crate::delivery::parking::{self, Hold, Prefetch};
use crate::delivery::policy::{RetryPolicy, Throttle};
use crate::delivery::runner::View;
use crate::delivery::state::{Attempt, AttemptOutcome, DeadLetter, RetryState, StateRecord};
use crate::delivery::status::SubStats;
use crate::delivery::subscription::OrderBy;
use crate::delivery::window::{DrainNext, Item, Origin, Window};
use crate::envelope::LoggedEvent;
use crate::sinks::{Answer, Outcome, Sink, Submitted};

/// What a worker tells its runner besides progress (which goes through the window).
#[derive(Debug)]
pub(crate) enum Report {
    /// The destination asked to stop (410) or the failure run hit the limit; the batch stays
    /// unfinished so the cursor will resume at it.
    Stop { reason: String },
}

/// How one batch ended.
enum BatchEnd<'a> {
    /// Every event delivered or dead-lettered: `tracked` (live or parked) and `redriven`.
    Finished {
        tracked: Vec<u64>,
        redriven: Vec<u64>,
    },
    /// Some events still fail past the in-memory phase; the lane is parked durably
    /// (recorded already, under the hold's turn, still `held`): `finished` are done,
    /// `waiting` wait for `due_ms`.
    Parked {
        finished: Vec<u64>,
        waiting: Vec<u64>,
        due_ms: i64,
        held: tokio::sync::MutexGuard<'a, Option<u64>>,
    },
    Stopped(String),
    Cancelled,
}

/// Everything a subscription's workers share.
pub(crate) struct WorkerCtx {
    pub shared: Arc<Shared>,
    pub sub_id: Arc<str>,
    pub view: watch::Receiver<Arc<View>>,
    pub sink: Arc<dyn Sink>,
    pub stats: Arc<SubStats>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub cancel: CancellationToken,
    /// The subscription's queues, shared with the runner.
    pub window: Arc<Mutex<Window>>,
    /// Wakes the runner when progress gives it work (room to read, a worker slot); see
    /// `Window::needs_runner`.
    pub wake: Arc<Notify>,
    pub max_batch: usize,
    /// This subscription's metric series, resolved once (label lookups are per event).
    pub meters: Meters,
    /// The subscription's ordering (a restored parked lane may carry an older one).
    pub ordering: OrderBy,
    /// The retention hold of the subscription's parked events (see `parking.rs`).
    pub hold: Hold,
    /// The engine's retry policy with the subscription's own choices over it.
    pub policy: RetryPolicy,
    /// The subscription's `policy.rate_per_second`, shared by all its lanes.
    pub throttle: Option<Arc<Throttle>>,
    /// Notified when the runner queued events: a pipelining worker waiting for an answer
    /// hands its lane's new events over at once (see [`pipeline`]).
    pub queued: Notify,
}

impl WorkerCtx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the parked count, and the lag that starts at the oldest parked event,
    /// after the window changed them.
    pub(crate) fn show_parked(&self, window: &Window) {
        let parked = window.parked_events();
        self.stats.parked.store(parked as u64, Ordering::Relaxed);
        self.meters.parked.set(parked as i64);
        let floor = window.parked_floor().unwrap_or(0);
        self.stats.parked_floor.store(floor, Ordering::Relaxed);
        // The lag starts at the oldest parked event: it moves with the floor too.
        let position = self.stats.position.load(Ordering::Relaxed);
        let end = self.shared.log.next_sequence();
        self.meters
            .lag
            .set(end.saturating_sub(self.stats.oldest(position)) as i64);
    }
}

/// An event of the batch with its delivery progress.
struct Progress {
    attempts: Vec<Attempt>,
    /// Attempts made in this round (a redrive starts a new round with the old history).
    tries: u32,
    next_attempt_ms: i64,
    redrive: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Delivers `items`, then the lane's following batches, until its queue is empty, the
/// subscription must stop, or the worker is cancelled (then it reports nothing: the runner
/// is going away and the cursor still points at the unfinished events).
pub(crate) async fn deliver(ctx: Arc<WorkerCtx>, lane: Arc<str>, items: Vec<Item>) {
    deliver_with(ctx, lane, items, Prefetch::default()).await
}

/// [`deliver`] with a parked lane's read-ahead (see `drain`).
async fn deliver_with(
    ctx: Arc<WorkerCtx>,
    lane: Arc<str>,
    mut items: Vec<Item>,
    mut prefetch: Prefetch,
) {
    // One wait for cancellation for the worker's whole life: a fresh one per send would
    // take the token's lock twice per event, against every other worker.
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let draining = items.first().is_some_and(|i| i.origin == Origin::Parked);
        let ordering = if draining {
            ctx.lock().parked_ordering(&lane).unwrap_or(ctx.ordering)
        } else {
            ctx.ordering
        };
        if !draining && ctx.sink.pipelines() && items.iter().all(|i| i.origin == Origin::Live) {
            match pipeline(&ctx, &lane, items, cancelled.as_mut()).await {
                PipelineEnd::Idle => return,
                PipelineEnd::Next(next) => {
                    items = next;
                    let fresh = items.iter().all(|i| i.origin == Origin::Live)
                        && !ctx
                            .shared
                            .state
                            .any_retrying(&ctx.sub_id, items.iter().map(|i| i.event.sequence));
                    if fresh {
                        continue;
                    }
                }
                PipelineEnd::Retry(retry) => items = retry,
                PipelineEnd::Stopped(reason) => {
                    let _ = ctx.reports.send(Report::Stop { reason });
                    return;
                }
                PipelineEnd::Cancelled => return,
            }
        }
        let end = deliver_batch(&ctx, &lane, ordering, items, cancelled.as_mut()).await;
        let (tracked, redriven) = match end {
            BatchEnd::Finished { tracked, redriven } => (tracked, redriven),
            BatchEnd::Parked {
                finished,
                waiting,
                due_ms,
                held,
            } => {
                let lane_end = LaneEnd {
                    finished: &finished,
                    waiting: &waiting,
                    due_ms,
                };
                park(&ctx, &lane, ordering, draining, lane_end, held).await;
                return;
            }
            BatchEnd::Stopped(reason) => {
                let _ = ctx.reports.send(Report::Stop { reason });
                return;
            }
            BatchEnd::Cancelled => return,
        };
        if draining {
            match drain_next(&ctx, &lane, tracked, &mut prefetch).await {
                Some(next) => {
                    items = next;
                    continue;
                }
                None => return,
            }
        }
        let (next, wake) = {
            let mut window = ctx.lock();
            for sequence in &redriven {
                window.redriving.remove(sequence);
            }
            let room_before = window.room();
            let next = window.finish_and_next(&lane, &tracked, ctx.max_batch);
            if next.is_none() {
                window.active = window.active.saturating_sub(1);
            }
            // The cursor follows without waking the runner: staged here, made durable by
            // the engine's committer with every other subscription's.
            stage_progress(&ctx, &mut window);
            let wake = window.needs_runner(room_before, next.is_none());
            (next, wake)
        };
        if wake {
            ctx.wake.notify_one();
        }
        match next {
            Some(batch) => items = batch,
            None => return,
        }
    }
}

/// Most batches of one lane out at once with a pipelining sink (`Sink::pipelines`); the
/// window bounds the events.
const PIPELINE_DEPTH: usize = 8;

/// A batch handed to a pipelining sink, waiting for its outcomes.
struct Outstanding {
    events: Vec<LoggedEvent>,
    at_ms: i64,
    started: Instant,
    outcomes: Submitted,
}

/// How a lane's pipelined run ended.
enum PipelineEnd {
    /// The lane has nothing queued: the worker ends (the window knows).
    Idle,
    /// Nothing is out any more, and these need the retrying path (`deliver_batch`), in
    /// order: events that need another attempt, then the events held back behind them.
    Retry(Vec<Item>),
    /// Nothing is out and nothing failed; the lane's next batch (a redrive, events with
    /// retry state of their own, or events read since the last look).
    Next(Vec<Item>),
    Stopped(String),
    Cancelled,
}

/// Delivers a lane through a sink that keeps order between outstanding sends: the lane's
/// next batch is handed over while earlier ones still wait for their answers, at most
/// [`PIPELINE_DEPTH`] out. Outcomes are taken in order. Once an event needs another
/// attempt nothing more is handed over: the batches out are answered, and their failed
/// events (with everything held back) go to the retrying path together, as one batch of
/// a batch sink would (a later event may have been delivered before an earlier one is
/// retried). Only events read at the cursor without retry state come here.
async fn pipeline(
    ctx: &WorkerCtx,
    lane: &str,
    items: Vec<Item>,
    mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
) -> PipelineEnd {
    let mut out: VecDeque<Outstanding> = VecDeque::with_capacity(PIPELINE_DEPTH);
    let mut next = Some(items);
    // Events that need another attempt, and events held back behind them.
    let mut failed: Vec<Item> = Vec::new();
    let mut held: Vec<Item> = Vec::new();
    loop {
        while let Some(batch) = next.take() {
            let retrying = ctx
                .shared
                .state
                .any_retrying(&ctx.sub_id, batch.iter().map(|i| i.event.sequence));
            if !failed.is_empty() || retrying {
                // Its own schedule (or an earlier failure) decides when it goes.
                held.extend(batch);
                break;
            }
            let mut events: Vec<LoggedEvent> = batch.into_iter().map(|i| i.event).collect();
            attach_tokens(ctx, &mut events);
            if let Some(throttle) = &ctx.throttle {
                tokio::select! {
                    _ = cancelled.as_mut() => return PipelineEnd::Cancelled,
                    _ = throttle.admit(events.len()) => {}
                }
            }
            let subscription = ctx.view.borrow().subscription.clone();
            let at_ms = now_ms();
            let started = Instant::now();
            let outcomes = tokio::select! {
                _ = cancelled.as_mut() => return PipelineEnd::Cancelled,
                outcomes = ctx.sink.submit(&subscription, &events) => outcomes,
            };
            out.push_back(Outstanding {
                events,
                at_ms,
                started,
                outcomes,
            });
            if out.len() < PIPELINE_DEPTH {
                next = ctx.lock().take_more(lane, ctx.max_batch);
            }
        }
        // While the oldest batch waits for its answer, what the runner queues for this lane
        // meanwhile is handed over too (up to the depth): waiting for the answer first
        // would leave the window's events queued instead of in flight for a whole round
        // trip, about half the window with Kafka's linger.
        let can_take = out.len() < PIPELINE_DEPTH && failed.is_empty() && held.is_empty();
        let queued = ctx.queued.notified();
        tokio::pin!(queued);
        if can_take {
            queued.as_mut().enable();
            if let Some(batch) = ctx.lock().take_more(lane, ctx.max_batch) {
                next = Some(batch);
                continue;
            }
        }
        let Some(front) = out.front_mut() else {
            break;
        };
        let outcomes = tokio::select! {
            _ = cancelled.as_mut() => return PipelineEnd::Cancelled,
            outcomes = &mut front.outcomes => outcomes,
            _ = &mut queued, if can_take => {
                next = ctx.lock().take_more(lane, ctx.max_batch);
                continue;
            }
        };
        // The batch just answered (the select above held it at the front).
        let Some(front) = out.pop_front() else {
            break;
        };
        let elapsed = front.started.elapsed();
        ctx.meters.send_seconds.observe(elapsed.as_secs_f64());
        let mut finished = Vec::with_capacity(front.events.len());
        let mut stop = None;
        let mut outcomes = outcomes.into_iter();
        for event in front.events {
            let outcome = outcomes.next().unwrap_or(Outcome::Retry {
                after: None,
                reason: "the sink returned no outcome for this event".into(),
            });
            let mut p = Progress {
                attempts: Vec::new(),
                tries: 0,
                next_attempt_ms: 0,
                redrive: false,
            };
            let sent = Sent {
                at_ms: front.at_ms,
                elapsed,
                answer: Answer::default(),
            };
            let keep = handle(ctx, &event, &mut p, outcome, sent, &mut stop).await;
            if keep {
                failed.push(Item::live(event));
            } else {
                finished.push(event.sequence);
            }
        }
        if let Some(reason) = stop {
            // What is still out stays unfinished: the cursor resumes at it.
            return PipelineEnd::Stopped(reason);
        }
        let wake = {
            let mut window = ctx.lock();
            let room_before = window.room();
            window.finish(&finished);
            stage_progress(ctx, &mut window);
            if failed.is_empty() && held.is_empty() && next.is_none() {
                next = window.take_more(lane, ctx.max_batch);
            }
            window.needs_runner(room_before, false)
        };
        if wake {
            ctx.wake.notify_one();
        }
    }
    if !failed.is_empty() || !held.is_empty() {
        failed.append(&mut held);
        return PipelineEnd::Retry(failed);
    }
    // Nothing is out and nothing failed: the lane goes on with what its queue holds (a
    // redrive, or events with a schedule of their own) or ends.
    let (next, wake) = {
        let mut window = ctx.lock();
        let room_before = window.room();
        let next = window.finish_and_next(lane, &[], ctx.max_batch);
        if next.is_none() {
            window.active = window.active.saturating_sub(1);
        }
        let wake = window.needs_runner(room_before, next.is_none());
        (next, wake)
    };
    if wake {
        ctx.wake.notify_one();
    }
    match next {
        Some(batch) => PipelineEnd::Next(batch),
        None => PipelineEnd::Idle,
    }
}

/// Drains a parked lane whose head is due: reads its head batch back from the log and
/// delivers it, then the rest of the lane (see [`deliver`]).
pub(crate) async fn drain(ctx: Arc<WorkerCtx>, lane: Arc<str>, sequences: Vec<u64>) {
    let mut prefetch = Prefetch::default();
    let ahead = ctx.lock().parked_ahead(&lane, parking::READ_AHEAD);
    let (items, gone) = prefetch
        .take(&ctx.shared, &ctx.sub_id, &sequences, &ahead)
        .await;
    let items = if items.is_empty() {
        match drain_next(&ctx, &lane, gone, &mut prefetch).await {
            Some(items) => items,
            None => return,
        }
    } else {
        if !gone.is_empty() {
            let mut window = ctx.lock();
            window.forget_parked(&lane, &gone);
            ctx.show_parked(&window);
        }
        items
    };
    deliver_with(ctx, lane, items, prefetch).await
}

/// Gives each event its instance's token for the envelope's `apikey`, when the server
/// exposes tokens (`auth.expose_in_envelope`; the set carries none otherwise).
fn attach_tokens(ctx: &WorkerCtx, events: &mut [LoggedEvent]) {
    let view = ctx.view.borrow();
    if view.instance_tokens.is_empty() {
        return;
    }
    for event in events {
        event.apikey = view.instance_tokens.get(&event.event.instance).cloned();
    }
}

/// Stages the commit position if it moved, and publishes the in-flight figures.
fn stage_progress(ctx: &WorkerCtx, window: &mut Window) {
    if let Some(position) = window.progress() {
        ctx.shared.cursors.stage(&ctx.sub_id, position);
        ctx.stats.position.store(position, Ordering::Relaxed);
        let end = ctx.shared.log.next_sequence();
        ctx.meters
            .lag
            .set(end.saturating_sub(ctx.stats.oldest(position)) as i64);
    }
    let in_flight = window.in_flight();
    ctx.stats
        .in_flight
        .store(in_flight as u64, Ordering::Relaxed);
    ctx.meters.in_flight.set(in_flight as i64);
}

/// How a batch that parks its lane ended.
struct LaneEnd<'a> {
    /// Events of the batch that are done.
    finished: &'a [u64],
    /// Events that wait, in order.
    waiting: &'a [u64],
    /// When the head is next tried, UTC milliseconds.
    due_ms: i64,
}

/// Parks the lane (its `Parked` record is durable already, appended under the hold's turn
/// `held`): the retention hold first, then the window lets the cursor pass the lane's
/// events. The worker then ends; the runner schedules the lane's next attempt.
async fn park(
    ctx: &WorkerCtx,
    lane: &str,
    ordering: OrderBy,
    draining: bool,
    end: LaneEnd<'_>,
    mut held: tokio::sync::MutexGuard<'_, Option<u64>>,
) {
    let LaneEnd {
        finished,
        waiting,
        due_ms,
    } = end;
    let floor = {
        let window = ctx.lock();
        let floor = window.parked_floor();
        waiting.iter().copied().chain(floor).min()
    };
    parking::set_hold(&ctx.shared, &ctx.sub_id, &mut held, floor).await;
    {
        let mut window = ctx.lock();
        if draining {
            window.repark(lane, finished, due_ms);
        } else {
            window.park(lane, ordering, finished, waiting, due_ms);
        }
        window.active = window.active.saturating_sub(1);
        ctx.show_parked(&window);
        stage_progress(ctx, &mut window);
    }
    drop(held);
    // The runner schedules the lane's next attempt and may read again.
    ctx.wake.notify_one();
    tracing::debug!(subscription = &*ctx.sub_id, lane, due_ms, "lane parked");
}

/// After a parked lane's batch finished (`done`): the next parked events read back from
/// the log, the lane's waiting redrives once it flows again, or `None` when the worker
/// ends.
async fn drain_next(
    ctx: &WorkerCtx,
    lane: &str,
    mut done: Vec<u64>,
    prefetch: &mut Prefetch,
) -> Option<Vec<Item>> {
    loop {
        // The hold's turn first: if the lane flows again, its `Unparked` record must be
        // appended before any later `Parked` record of the same lane (see `park`).
        let mut held = ctx.hold.turn().await;
        let (next, ahead) = {
            let mut window = ctx.lock();
            let next = window.drain_finished(lane, &done, ctx.max_batch);
            ctx.show_parked(&window);
            if matches!(next, DrainNext::Done) {
                window.active = window.active.saturating_sub(1);
            }
            let ahead = match next {
                DrainNext::Parked(_) => window.parked_ahead(lane, parking::READ_AHEAD),
                _ => Vec::new(),
            };
            (next, ahead)
        };
        match next {
            DrainNext::Parked(sequences) => {
                drop(held);
                let (items, gone) = prefetch
                    .take(&ctx.shared, &ctx.sub_id, &sequences, &ahead)
                    .await;
                if items.is_empty() {
                    done = gone;
                    continue;
                }
                if !gone.is_empty() {
                    // They can never be sent: they leave the lane.
                    let mut window = ctx.lock();
                    window.forget_parked(lane, &gone);
                    ctx.show_parked(&window);
                }
                return Some(items);
            }
            DrainNext::Live(batch) => {
                unparked(ctx, lane, &mut held).await;
                return Some(batch);
            }
            DrainNext::Done => {
                unparked(ctx, lane, &mut held).await;
                drop(held);
                let wake = {
                    let window = ctx.lock();
                    window.needs_runner(window.room(), true)
                };
                if wake {
                    ctx.wake.notify_one();
                }
                return None;
            }
        }
    }
}

/// Records that `lane` flows again and lowers (or removes) the retention hold, under the
/// hold's turn `held`.
async fn unparked(ctx: &WorkerCtx, lane: &str, held: &mut Option<u64>) {
    parking::record_unpark(&ctx.shared, &ctx.sub_id, lane).await;
    let floor = ctx.lock().parked_floor();
    parking::set_hold(&ctx.shared, &ctx.sub_id, held, floor).await;
    tracing::debug!(subscription = &*ctx.sub_id, lane, "lane unparked");
}

/// Runs one batch until every event of it is delivered or dead-lettered.
async fn deliver_batch<'a>(
    ctx: &'a WorkerCtx,
    lane: &str,
    ordering: OrderBy,
    items: Vec<Item>,
    mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
) -> BatchEnd<'a> {
    let mut tracked = Vec::new();
    let mut redriven = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    let mut progress = Vec::with_capacity(items.len());
    for item in items {
        let sequence = item.event.sequence;
        let p = match item.origin {
            Origin::Redrive(history) => {
                redriven.push(sequence);
                Progress {
                    attempts: history,
                    tries: 0,
                    next_attempt_ms: 0,
                    redrive: true,
                }
            }
            Origin::Live | Origin::Parked => {
                tracked.push(sequence);
                // Durable retry state: a restart continues the count and the schedule.
                match ctx.shared.state.retry_state(&ctx.sub_id, sequence) {
                    Some(RetryState {
                        attempts,
                        next_attempt_ms,
                    }) => Progress {
                        tries: attempts.len() as u32,
                        attempts,
                        next_attempt_ms,
                        redrive: false,
                    },
                    None => Progress {
                        attempts: Vec::new(),
                        tries: 0,
                        next_attempt_ms: 0,
                        redrive: false,
                    },
                }
            }
        };
        events.push(item.event);
        progress.push(p);
    }
    attach_tokens(ctx, &mut events);

    while !events.is_empty() {
        let due = progress
            .iter()
            .map(|p| p.next_attempt_ms)
            .max()
            .unwrap_or(0);
        let wait = due.saturating_sub(now_ms());
        if wait > 0 {
            let sleep = tokio::time::sleep(Duration::from_millis(wait as u64));
            tokio::select! {
                _ = cancelled.as_mut() => return BatchEnd::Cancelled,
                _ = sleep => {}
            }
        }
        if let Some(throttle) = &ctx.throttle {
            tokio::select! {
                _ = cancelled.as_mut() => return BatchEnd::Cancelled,
                _ = throttle.admit(events.len()) => {}
            }
        }
        let subscription = ctx.view.borrow().subscription.clone();
        let at_ms = now_ms();
        let started = Instant::now();
        let outcomes = tokio::select! {
            _ = cancelled.as_mut() => return BatchEnd::Cancelled,
            outcomes = ctx.sink.send_answered(&subscription, &events) => outcomes,
        };
        let elapsed = started.elapsed();
        ctx.meters.send_seconds.observe(elapsed.as_secs_f64());

        let mut retry_events = Vec::new();
        let mut retry_progress = Vec::new();
        let mut stop = None;
        let mut outcomes = outcomes.into_iter();
        for (event, mut p) in events.into_iter().zip(progress) {
            let (outcome, answer) = outcomes.next().unwrap_or_else(|| {
                let reason = "the sink returned no outcome for this event".into();
                (
                    Outcome::Retry {
                        after: None,
                        reason,
                    },
                    Answer::default(),
                )
            });
            let sent = Sent {
                at_ms,
                elapsed,
                answer,
            };
            let keep = handle(ctx, &event, &mut p, outcome, sent, &mut stop).await;
            if keep {
                retry_events.push(event);
                retry_progress.push(p);
            }
        }
        if let Some(reason) = stop {
            return BatchEnd::Stopped(reason);
        }
        events = retry_events;
        progress = retry_progress;
        // Past the in-memory phase: park the lane instead of waiting here. Redriven
        // events are not parked (they are dead letters until delivered, behind the cursor).
        let parks = progress
            .iter()
            .any(|p| !p.redrive && ctx.policy.parks(p.tries));
        if parks && redriven.is_empty() {
            let waiting: Vec<u64> = events.iter().map(|e| e.sequence).collect();
            let due_ms = progress
                .iter()
                .map(|p| p.next_attempt_ms)
                .max()
                .unwrap_or(0);
            let from = waiting.iter().copied().min().unwrap_or(0);
            // Durable before the cursor may pass the lane; if it cannot be made durable,
            // the lane keeps retrying in memory (holding the cursor) as before. Appended
            // under the hold's turn, which `park` keeps until the window changed, so the
            // lane's records land in the order its states change.
            let held = ctx.hold.turn().await;
            match parking::record_park(&ctx.shared, &ctx.sub_id, lane, from, ordering).await {
                Ok(()) => {
                    let finished = tracked
                        .into_iter()
                        .filter(|s| !waiting.contains(s))
                        .collect();
                    return BatchEnd::Parked {
                        finished,
                        waiting,
                        due_ms,
                        held,
                    };
                }
                Err(e) => {
                    tracing::error!(subscription = &*ctx.sub_id, error = %e, "cannot park a lane");
                }
            }
        }
    }
    BatchEnd::Finished { tracked, redriven }
}

/// One send of an event: when it started, how long it took, what the destination said.
struct Sent {
    at_ms: i64,
    elapsed: Duration,
    answer: Answer,
}

/// Writes the attempt to the attempt log, when the engine keeps one (a push into memory).
fn log_attempt(
    ctx: &WorkerCtx,
    event: &LoggedEvent,
    attempt: u32,
    sent: Sent,
    outcome: AttemptResult,
    error: Option<String>,
) {
    let Some(attempts) = &ctx.shared.attempts else {
        return;
    };
    attempts.record(AttemptRecord {
        v: FORMAT_VERSION,
        subscription: ctx.sub_id.to_string(),
        event_id: event.event.id,
        sequence: event.sequence,
        instance: event.event.instance.clone(),
        message_id: event.message_id.as_deref().map(str::to_owned),
        attempt,
        at_ms: sent.at_ms,
        duration_ms: sent.elapsed.as_millis() as u64,
        outcome,
        http_status: sent.answer.http_status,
        error,
        response: sent.answer.body,
    });
}

/// Applies one outcome; returns whether the event needs another attempt.
async fn handle(
    ctx: &WorkerCtx,
    event: &LoggedEvent,
    p: &mut Progress,
    outcome: Outcome,
    sent: Sent,
    stop: &mut Option<String>,
) -> bool {
    let sub = &*ctx.sub_id;
    ctx.stats.attempts.fetch_add(1, Ordering::Relaxed);
    ctx.meters.attempts.inc();
    p.tries += 1;
    // Counted across redrives: a redriven event's history is in `attempts` already.
    let number = p.attempts.len() as u32 + 1;
    let (at_ms, elapsed) = (sent.at_ms, sent.elapsed);
    let (kind, reason, hint) = match outcome {
        Outcome::Delivered => {
            log_attempt(ctx, event, number, sent, AttemptResult::Delivered, None);
            ctx.stats.succeeded();
            ctx.meters.delivered.inc();
            let age = chrono::Utc::now() - event.received_at;
            ctx.meters
                .end_to_end_seconds
                .observe(age.num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
            if p.redrive || !p.attempts.is_empty() {
                let record = StateRecord::Delivered {
                    subscription: sub.to_owned(),
                    sequence: event.sequence,
                };
                // Losing this record only means a stale dead letter or retry count
                // survives a restart; the event itself was delivered.
                if let Err(e) = ctx.shared.state.record(record).await {
                    tracing::error!(subscription = sub, error = %e, "cannot record delivery");
                }
                ctx.shared.refresh_dead_letters(sub);
            }
            return false;
        }
        Outcome::Retry { after, reason } => (AttemptOutcome::Retry, reason, after),
        Outcome::Permanent { reason } => (AttemptOutcome::Permanent, reason, None),
        Outcome::Disable { reason } => (AttemptOutcome::Disable, reason, None),
    };
    ctx.meters.failures.inc();
    let run = ctx.stats.failed(&reason);
    p.attempts.push(Attempt {
        at_ms,
        outcome: kind,
        reason: reason.clone(),
        duration_ms: elapsed.as_millis() as u64,
    });
    let dead = kind == AttemptOutcome::Permanent || ctx.policy.exhausted(p.tries);
    let logged = if dead && kind != AttemptOutcome::Disable {
        AttemptResult::Permanent
    } else {
        AttemptResult::Retry
    };
    log_attempt(ctx, event, number, sent, logged, Some(reason.clone()));
    let limit = ctx.policy.disable_after_failures;
    if kind == AttemptOutcome::Disable {
        *stop = Some(reason);
        return true;
    }
    if limit > 0 && run >= u64::from(limit) && stop.is_none() {
        *stop = Some(format!(
            "{run} consecutive failed attempts (last: {reason})"
        ));
    }
    if dead {
        return !dead_letter(ctx, event, p).await;
    }
    let delay = ctx.policy.delay(p.tries, hint);
    p.next_attempt_ms = now_ms() + delay.as_millis() as i64;
    if !p.redrive {
        let record = StateRecord::Retry {
            subscription: sub.to_owned(),
            sequence: event.sequence,
            state: RetryState {
                attempts: p.attempts.clone(),
                next_attempt_ms: p.next_attempt_ms,
            },
        };
        // Without the record a restart retries sooner and counts from zero; delivery
        // itself goes on, so log and continue.
        if let Err(e) = ctx.shared.state.record(record).await {
            tracing::error!(subscription = sub, error = %e, "cannot record retry state");
        }
    }
    true
}

/// Moves the event to dead letters; returns false (keep retrying) if that cannot be made
/// durable, because the cursor must not pass an event that is neither delivered nor dead.
async fn dead_letter(ctx: &WorkerCtx, event: &LoggedEvent, p: &mut Progress) -> bool {
    let sub = &*ctx.sub_id;
    let entry = DeadLetter {
        sequence: event.sequence,
        id: event.event.id,
        instance: event.event.instance.clone(),
        event: event.event.event.clone(),
        attempts: p.attempts.clone(),
        dead_at_ms: now_ms(),
    };
    let record = StateRecord::DeadLetter {
        subscription: sub.to_owned(),
        entry,
    };
    match ctx.shared.state.record(record).await {
        Ok(()) => {
            ctx.shared.refresh_dead_letters(sub);
            true
        }
        Err(e) => {
            tracing::error!(subscription = sub, error = %e, "cannot record dead letter");
            p.next_attempt_ms = now_ms() + ctx.policy.max_delay.as_millis() as i64;
            false
        }
    }
}
