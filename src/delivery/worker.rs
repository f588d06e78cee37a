//! Delivers one lane's head batch to its sink until every event of it is finished
//! (delivered or dead-lettered), retrying on the policy's schedule.
//!
//! A worker owns its lane (a chat, an instance or one event, see `window::lane_of`) while
//! it runs: it takes the lane's next batch only after the current one is finished, which is
//! what keeps a lane's events in order. It then continues with that batch itself (no hop
//! through the runner) and ends when the lane's queue is empty.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::delivery::engine::Shared;
use crate::delivery::metrics::Meters;
use crate::delivery::runner::View;
use crate::delivery::state::{Attempt, AttemptOutcome, DeadLetter, RetryState, StateRecord};
use crate::delivery::status::SubStats;
use crate::delivery::window::{Item, Window};
use crate::envelope::LoggedEvent;
use crate::sinks::{Outcome, Sink};

/// What a worker tells its runner besides progress (which goes through the window).
#[derive(Debug)]
pub(crate) enum Report {
    /// The destination asked to stop (410) or the failure run hit the limit; the batch stays
    /// unfinished so the cursor will resume at it.
    Stop { reason: String },
}

/// How one batch ended.
enum BatchEnd {
    Finished {
        tracked: Vec<u64>,
        redriven: Vec<u64>,
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
pub(crate) async fn deliver(ctx: Arc<WorkerCtx>, lane: Arc<str>, mut items: Vec<Item>) {
    // One wait for cancellation for the worker's whole life: a fresh one per send would
    // take the token's lock twice per event, against every other worker.
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let (tracked, redriven) = match deliver_batch(&ctx, items, cancelled.as_mut()).await {
            BatchEnd::Finished { tracked, redriven } => (tracked, redriven),
            BatchEnd::Stopped(reason) => {
                let _ = ctx.reports.send(Report::Stop { reason });
                return;
            }
            BatchEnd::Cancelled => return,
        };
        let (next, wake) = {
            let mut window = ctx.window.lock().unwrap_or_else(|p| p.into_inner());
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
            if let Some(position) = window.progress() {
                ctx.shared.cursors.stage(&ctx.sub_id, position);
                ctx.stats.position.store(position, Ordering::Relaxed);
                let end = ctx.shared.log.next_sequence();
                ctx.meters.lag.set(end.saturating_sub(position) as i64);
            }
            let in_flight = window.in_flight();
            ctx.stats
                .in_flight
                .store(in_flight as u64, Ordering::Relaxed);
            ctx.meters.in_flight.set(in_flight as i64);
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

/// Runs one batch until every event of it is delivered or dead-lettered.
async fn deliver_batch(
    ctx: &WorkerCtx,
    items: Vec<Item>,
    mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
) -> BatchEnd {
    let mut tracked = Vec::new();
    let mut redriven = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    let mut progress = Vec::with_capacity(items.len());
    for item in items {
        let sequence = item.event.sequence;
        let p = match item.redrive {
            Some(history) => {
                redriven.push(sequence);
                Progress {
                    attempts: history,
                    tries: 0,
                    next_attempt_ms: 0,
                    redrive: true,
                }
            }
            None => {
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
        let subscription = ctx.view.borrow().subscription.clone();
        let at_ms = now_ms();
        let started = Instant::now();
        let outcomes = tokio::select! {
            _ = cancelled.as_mut() => return BatchEnd::Cancelled,
            outcomes = ctx.sink.send(&subscription, &events) => outcomes,
        };
        let elapsed = started.elapsed();
        ctx.meters.send_seconds.observe(elapsed.as_secs_f64());

        let mut retry_events = Vec::new();
        let mut retry_progress = Vec::new();
        let mut stop = None;
        let mut outcomes = outcomes.into_iter();
        for (event, mut p) in events.into_iter().zip(progress) {
            let outcome = outcomes.next().unwrap_or(Outcome::Retry {
                after: None,
                reason: "the sink returned no outcome for this event".into(),
            });
            let keep = handle(ctx, &event, &mut p, outcome, at_ms, elapsed, &mut stop).await;
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
    }
    BatchEnd::Finished { tracked, redriven }
}

/// Applies one outcome; returns whether the event needs another attempt.
async fn handle(
    ctx: &WorkerCtx,
    event: &LoggedEvent,
    p: &mut Progress,
    outcome: Outcome,
    at_ms: i64,
    elapsed: Duration,
    stop: &mut Option<String>,
) -> bool {
    let sub = &*ctx.sub_id;
    ctx.stats.attempts.fetch_add(1, Ordering::Relaxed);
    ctx.meters.attempts.inc();
    p.tries += 1;
    let (kind, reason, hint) = match outcome {
        Outcome::Delivered => {
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
    let limit = ctx.shared.policy.disable_after_failures;
    if kind == AttemptOutcome::Disable {
        *stop = Some(reason);
        return true;
    }
    if limit > 0 && run >= u64::from(limit) && stop.is_none() {
        *stop = Some(format!(
            "{run} consecutive failed attempts (last: {reason})"
        ));
    }
    if kind == AttemptOutcome::Permanent || ctx.shared.policy.exhausted(p.tries) {
        return !dead_letter(ctx, event, p).await;
    }
    let delay = ctx.shared.policy.delay(p.tries, hint);
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
            p.next_attempt_ms = now_ms() + ctx.shared.policy.max_delay.as_millis() as i64;
            false
        }
    }
}
