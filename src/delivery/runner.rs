//! One subscription's reader: follows the log from the subscription's cursor, keeps the
//! events it wants in per-lane queues (a lane per chat, instance or event, as the
//! subscription orders), starts a worker for each lane that has work (the worker then
//! drains that lane), and commits the cursor at the lowest unfinished sequence.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::engine::Shared;
use crate::delivery::parking::{self, Hold};
use crate::delivery::policy::Throttle;
use crate::delivery::router::{Inbox, Router};
use crate::delivery::state::DeadLetter;
use crate::delivery::status::SubStats;
use crate::delivery::subscription::{OrderBy, Subscription};
use crate::delivery::window::{Item, Origin, Window};
use crate::delivery::worker::{self, Report, WorkerCtx};
use crate::envelope::LoggedEvent;
use crate::filter::{CompiledFilter, EventFacts, LazyData};
use crate::log::Record;
use crate::sinks::{Sink, SinkKind};

/// What a runner filters and delivers with; replaced in place when the registry changes
/// the subscription, so an edit (new URL, new event list, new filter) needs no restart.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub subscription: Arc<Subscription>,
    pub instance_numbers: Arc<HashMap<String, String>>,
    /// Instance name -> the token its envelopes carry (`auth.expose_in_envelope`).
    pub instance_tokens: Arc<HashMap<String, Arc<str>>>,
    /// `subscription.filter`, compiled once when the subscription started or its filter
    /// changed; `None` when it has no clause (every event passes).
    pub filter: Option<Arc<CompiledFilter>>,
}

impl PartialEq for View {
    /// The compiled filter is a function of `subscription.filter`: not compared.
    fn eq(&self, other: &View) -> bool {
        self.subscription == other.subscription
            && self.instance_numbers == other.instance_numbers
            && self.instance_tokens == other.instance_tokens
    }
}

impl View {
    /// Whether the event passes the subscription's content filter, reading the facts
    /// (`facts`, asked for only when there is a filter, once per event for every
    /// subscription by the caller) and `data` parsed at most once per event.
    pub(crate) fn passes<'f>(
        &self,
        facts: impl FnOnce() -> &'f EventFacts,
        data: &LazyData<'_>,
    ) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => filter.matches(facts(), data),
        }
    }

    /// [`View::passes`] for one event read from `record` by this subscription alone (a
    /// catch-up read): its facts are decoded only when there is a filter.
    pub(crate) fn passes_record(&self, record: &Record, event: &LoggedEvent) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => filter.matches(
                &crate::envelope::record_facts(&record.payload, &event.event),
                &LazyData::new(&event.event.data),
            ),
        }
    }

    /// The subscription's ordering: its own policy's, else the engine's default. A change
    /// restarts the runner (see the supervisor), so a running window never mixes two.
    pub fn ordering(&self, default: OrderBy) -> OrderBy {
        self.subscription.policy.ordering.unwrap_or(default)
    }

    /// Whether the subscription wants `event` (scope, events, phone numbers).
    pub(crate) fn wants(&self, event: &LoggedEvent) -> bool {
        let instance = &event.event.instance;
        let number = self.instance_numbers.get(instance).map(String::as_str);
        self.subscription
            .wants(instance, number, &event.event.event)
    }
}

/// Requests from the supervisor to a running runner.
#[derive(Debug)]
pub(crate) enum RunnerCmd {
    /// Deliver these dead letters again, after the current position of their instance.
    Redrive(Vec<DeadLetter>),
}

/// Why a runner ended.
#[derive(Debug)]
pub(crate) enum RunnerExit {
    /// Cancelled by the supervisor or by shutdown.
    Cancelled,
    /// The engine stopped it and asks the registry to disable the subscription.
    Stopped(String),
}

/// Held by a runner of the engine's first set until it tried to attach to the tail (or
/// ended): the tail does not move before (see `Router::runner_tried`).
pub(crate) struct GateTicket(pub Arc<Router>);

impl Drop for GateTicket {
    fn drop(&mut self) {
        self.0.runner_tried();
    }
}

/// What a runner needs.
pub(crate) struct RunnerArgs {
    /// Present for a runner of the first set (see [`GateTicket`]).
    pub gate: Option<GateTicket>,
    pub shared: Arc<Shared>,
    pub sub_id: Arc<str>,
    pub view: watch::Receiver<Arc<View>>,
    pub sink: Arc<dyn Sink>,
    pub kind: SinkKind,
    pub stats: Arc<SubStats>,
    pub cmds: mpsc::UnboundedReceiver<RunnerCmd>,
    pub cancel: CancellationToken,
}

/// Runs until cancelled or stopped; commits the cursor one last time before returning.
pub(crate) async fn run(args: RunnerArgs) -> RunnerExit {
    let RunnerArgs {
        mut gate,
        shared,
        sub_id,
        mut view,
        sink,
        kind,
        stats,
        mut cmds,
        cancel,
    } = args;
    let log = shared.log.clone();
    let opts = shared.options.clone();
    let (start, new) = match log.cursor(&sub_id).await {
        Ok(Some(position)) => (position, false),
        Ok(None) => {
            let subscription = view.borrow().subscription.clone();
            (initial_position(log.as_ref(), &subscription), true)
        }
        Err(e) => return RunnerExit::Stopped(format!("cannot read the cursor: {e}")),
    };
    // A pipelining sink keeps the window's events in flight rather than queued, so every
    // free slot is throughput: it reads again sooner (a sixteenth of the window) than a
    // sink with one batch out per lane, whose reads would otherwise come per delivery.
    let low_water = if sink.pipelines() {
        opts.read_batch.min(opts.window / 16)
    } else {
        opts.read_batch.min(opts.window / 4)
    };
    let window = Arc::new(Mutex::new(Window::new(start, opts.window, low_water)));
    let lock = || window.lock().unwrap_or_else(|p| p.into_inner());
    // A new subscription's start is made durable at once, so "start at the log's end"
    // means the end when it was created, not when it first delivered.
    if new {
        if let Err(e) = log.commit_cursor(&sub_id, start).await {
            return RunnerExit::Stopped(format!("cannot commit the cursor: {e}"));
        }
    }
    stats.cursor.store(start, Ordering::Relaxed);
    stats.running.store(true, Ordering::Relaxed);
    // Every running subscription shows its dead-letter gauge, 0 included, from the start.
    shared.refresh_dead_letters(&sub_id);

    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let worker_cancel = cancel.child_token();
    let workers = TaskTracker::new();
    let ordering = view.borrow().ordering(opts.ordering);
    // The subscription's own policy over the engine's; a change restarts the runner (see
    // the supervisor), so a running one never mixes two.
    let own = view.borrow().subscription.policy.clone();
    let lanes_at_once = own
        .max_in_flight
        .map_or(opts.max_parallel_instances, |n| n as usize)
        .max(1);
    let ctx = Arc::new(WorkerCtx {
        shared: shared.clone(),
        sub_id: sub_id.clone(),
        view: view.clone(),
        sink: sink.clone(),
        stats: stats.clone(),
        reports: report_tx,
        cancel: worker_cancel.clone(),
        window: window.clone(),
        wake: wake.clone(),
        max_batch: sink.max_batch().max(1),
        meters: shared.metrics.meters(&sub_id, kind.as_str()),
        ordering,
        hold: Hold::default(),
        policy: shared.policy.with(&own),
        throttle: own
            .rate_per_second
            .map(|rate| Arc::new(Throttle::per_second(rate))),
        queued: Notify::new(),
    });
    let pipelines = sink.pipelines();
    // Lanes parked before a restart wait again, with their events found in the log. That
    // read may wait for the log (see `parking::restore`): the tail must not wait for it.
    stats.position.store(start, Ordering::Relaxed);
    if !shared.state.parked_lanes(&sub_id).is_empty() {
        drop(gate.take());
    }
    let current = view.borrow().clone();
    match parking::restore(
        &shared, &sub_id, &current, start, &window, &ctx.hold, &cancel,
    )
    .await
    {
        Ok(true) => {}
        Ok(false) => return RunnerExit::Cancelled,
        Err(e) => return RunnerExit::Stopped(format!("cannot restore parked lanes: {e}")),
    }
    {
        let w = lock();
        ctx.show_parked(&w);
    }
    let mut log_end = log.subscribe();
    let mut log_open = true;
    let mut read_error_until: Option<Instant> = None;
    let labels = [&*sub_id];
    let in_flight_gauge = shared.metrics.in_flight.with_label_values(&labels);
    let lag_gauge = shared.metrics.lag.with_label_values(&labels);

    // Attached to the partition's tail (see `router.rs`): events arrive in the inbox and
    // this runner neither reads the log nor wakes on its appends.
    let router = shared.router.clone();
    let mut inbox: Option<Arc<Inbox>> = None;

    let exit = loop {
        if let Ok(Report::Stop { reason }) = reports.try_recv() {
            break RunnerExit::Stopped(reason);
        }
        if inbox.as_ref().is_some_and(|i| i.is_detached()) {
            // Overflowed: what is left in it is at or above the read position; read it
            // from the log instead.
            inbox = None;
        }
        let end = *log_end.borrow_and_update();
        let (room, wants_read, read_pos) = {
            let w = lock();
            (w.room(), w.wants_read(), w.read_pos())
        };
        if inbox.is_none() && read_error_until.is_none() && read_pos >= router.position() {
            inbox = router.attach(&sub_id, read_pos, view.clone(), wake.clone(), stats.clone());
        }
        drop(gate.take());
        let mut can_read = false;
        if let Some(attached) = &inbox {
            if wants_read {
                // The position first: every event below it that is ours is in the inbox
                // by then, so an inbox left empty means everything below it was seen.
                let routed = router.position();
                let events = attached.take(room);
                let current = view.borrow().clone();
                let ordering = current.ordering(opts.ordering);
                let mut w = lock();
                let queued = !events.is_empty();
                for event in events {
                    w.queue(ordering, Item::live(event));
                }
                if attached.is_empty() && routed > 0 {
                    w.advance(routed - 1);
                }
                can_read = !attached.is_empty();
                drop(w);
                if queued && pipelines {
                    ctx.queued.notify_waiters();
                }
            }
        } else {
            can_read = wants_read && read_pos < end && read_error_until.is_none();
            if can_read {
                let current = view.borrow().clone();
                match log
                    .read(read_pos, room.min(opts.read_batch), opts.read_bytes)
                    .await
                {
                    Ok(records) if records.is_empty() => can_read = false,
                    Ok(records) => {
                        accept(
                            &mut lock(),
                            &current,
                            opts.ordering,
                            records,
                            &sub_id,
                            &stats,
                        );
                        if pipelines {
                            ctx.queued.notify_waiters();
                        }
                    }
                    Err(e) => {
                        stats.failed(&format!("cannot read the event log: {e}"));
                        read_error_until = Some(Instant::now() + Duration::from_secs(1));
                        can_read = false;
                    }
                }
            }
        }

        let (batches, drains, next_due, position, in_flight, wants_read) = {
            let mut w = lock();
            let mut batches = Vec::new();
            while w.active < lanes_at_once {
                let Some(batch) = w.take_ready(ctx.max_batch) else {
                    break;
                };
                w.active += 1;
                batches.push(batch);
            }
            // Parked lanes whose head is due share the in-flight limit. The clock is read
            // only when some lane waits: this loop runs per delivery batch.
            let mut drains = Vec::new();
            if w.next_due().is_some() {
                let now_ms = chrono::Utc::now().timestamp_millis();
                while w.active < lanes_at_once {
                    let Some(drain) = w.take_due(now_ms, ctx.max_batch) else {
                        break;
                    };
                    w.active += 1;
                    drains.push(drain);
                }
            }
            // A full in-flight limit wakes this runner when a worker ends instead.
            let next_due = (w.active < lanes_at_once).then(|| w.next_due()).flatten();
            // Durable within a commit interval, with every other subscription's cursor.
            if let Some(position) = w.progress() {
                shared.cursors.stage(&sub_id, position);
            }
            (
                batches,
                drains,
                next_due,
                w.commit_position(),
                w.in_flight(),
                w.wants_read(),
            )
        };
        for (lane, batch) in batches {
            workers.spawn(worker::deliver(ctx.clone(), lane, batch));
        }
        for (lane, sequences) in drains {
            workers.spawn(worker::drain(ctx.clone(), lane, sequences));
        }
        stats.position.store(position, Ordering::Relaxed);
        stats.in_flight.store(in_flight as u64, Ordering::Relaxed);
        in_flight_gauge.set(in_flight as i64);
        lag_gauge.set(end.saturating_sub(stats.oldest(position)) as i64);
        if can_read && wants_read {
            continue;
        }

        let retry_read_at = read_error_until.unwrap_or_else(Instant::now);
        let due_at = next_due.map(|ms| {
            let wait = ms
                .saturating_sub(chrono::Utc::now().timestamp_millis())
                .max(0);
            Instant::now() + Duration::from_millis(wait as u64)
        });
        tokio::select! {
            _ = cancel.cancelled() => break RunnerExit::Cancelled,
            Some(Report::Stop { reason }) = reports.recv() => break RunnerExit::Stopped(reason),
            _ = wake.notified() => {}
            changed = log_end.changed(), if log_open && inbox.is_none() => {
                if changed.is_err() {
                    log_open = false;
                }
            }
            changed = view.changed() => {
                if changed.is_err() {
                    break RunnerExit::Cancelled;
                }
                // The scope may have changed: attach again under the new one. Events left
                // in the inbox are at or above the read position and are read again.
                if inbox.take().is_some() {
                    router.detach(&sub_id);
                }
            }
            Some(RunnerCmd::Redrive(entries)) = cmds.recv() => {
                for entry in entries {
                    if !lock().redriving.insert(entry.sequence) {
                        continue;
                    }
                    match parking::read_event(&shared, entry.sequence).await {
                        Some(event) => {
                            let item = Item { event, origin: Origin::Redrive(entry.attempts) };
                            lock().queue(ordering, item);
                        }
                        None => {
                            lock().redriving.remove(&entry.sequence);
                            tracing::warn!(subscription = &*sub_id, sequence = entry.sequence,
                                "dead letter no longer in the log (retention); cannot redrive");
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(retry_read_at), if read_error_until.is_some() => {
                read_error_until = None;
            }
            _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now)), if due_at.is_some() => {}
        }
    };

    router.detach(&sub_id);
    // Stop the workers: their events are unfinished, so the final commit keeps them.
    worker_cancel.cancel();
    workers.close();
    workers.wait().await;
    let position = lock().commit_position();
    shared.cursors.withdraw(&sub_id).await;
    commit(&shared, &sub_id, &stats, position).await;
    stats.running.store(false, Ordering::Relaxed);
    stats.in_flight.store(0, Ordering::Relaxed);
    in_flight_gauge.set(0);
    exit
}

/// Queues the wanted records in their lanes and moves past the rest.
fn accept(
    window: &mut Window,
    view: &View,
    default_ordering: OrderBy,
    records: Vec<Record>,
    sub_id: &str,
    stats: &SubStats,
) {
    let ordering = view.ordering(default_ordering);
    for record in records {
        match LoggedEvent::decode(&record) {
            Ok(event) if view.wants(&event) => {
                if view.passes_record(&record, &event) {
                    window.queue(ordering, Item::live(event));
                } else {
                    // Filtered, not undelivered: the cursor moves past it.
                    stats.filtered.fetch_add(1, Ordering::Relaxed);
                    window.advance(record.sequence);
                }
            }
            Ok(_) => window.advance(record.sequence),
            Err(e) => {
                tracing::warn!(subscription = sub_id, error = %e, "skipping undecodable record");
                window.advance(record.sequence);
            }
        }
    }
}

/// Commits the cursor; a failure is reported and retried at the next commit.
async fn commit(shared: &Shared, sub_id: &str, stats: &SubStats, position: u64) -> bool {
    match shared.log.commit_cursor(sub_id, position).await {
        Ok(()) => {
            stats.cursor.store(position, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::error!(subscription = sub_id, error = %e, "cannot commit cursor");
            false
        }
    }
}

/// Where a subscription without a cursor starts in this log (one partition of the event
/// log). In the partition its `start_sequence` belongs to (the only one, with the embedded
/// engine), exactly there; in another partition, at that partition's end when it was
/// created; lacking that, from the beginning when it asked for everything (0), else at the
/// end.
pub(crate) fn initial_position(log: &dyn crate::log::EventLog, subscription: &Subscription) -> u64 {
    let own = crate::log::partition_of(log.next_sequence());
    if crate::log::partition_of(subscription.start_sequence) == own {
        return subscription.start_sequence;
    }
    match subscription.start_positions.get(own) {
        Some(start) => *start,
        None if subscription.start_sequence == 0 => 0,
        None => log.next_sequence(),
    }
}
