//! Keeps one runner per enabled subscription in step with the registry's set, and carries
//! out the commands (replay, redrive) that must be ordered with runner starts and stops.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::engine::{DisableRequest, Redrive, ReplayFrom, Shared};
use crate::delivery::error::DeliveryError;
use crate::delivery::parking;
use crate::delivery::runner::{self, RunnerArgs, RunnerCmd, RunnerExit, View};
use crate::delivery::state::StateRecord;
use crate::delivery::subscription::{OrderBy, Scope, Subscription, SubscriptionSet};
use crate::sinks::{SinkKind, SinkRegistry};

/// Requests from [`crate::delivery::DeliveryEngine`].
pub(crate) enum Command {
    Replay {
        id: String,
        from: ReplayFrom,
        reply: oneshot::Sender<Result<u64, DeliveryError>>,
    },
    Redrive {
        id: String,
        which: Redrive,
        reply: oneshot::Sender<Result<usize, DeliveryError>>,
    },
}

/// A runner's end: subscription id, runner generation, why.
type Exit = (String, u64, RunnerExit);

/// How long one preparation step (see [`crate::sinks::Prepare`]) may take before it is
/// abandoned; sends prepare what they need anyway.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);

struct RunnerHandle {
    generation: u64,
    kind: SinkKind,
    /// The ordering its window was built with: a change restarts the runner, since lanes
    /// of two orderings in one window could deliver a chat's events out of order.
    ordering: OrderBy,
    view: watch::Sender<Arc<View>>,
    cmds: mpsc::UnboundedSender<RunnerCmd>,
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

/// The task that owns the runners.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    sinks: SinkRegistry,
    set_rx: watch::Receiver<Arc<SubscriptionSet>>,
    commands: mpsc::UnboundedReceiver<Command>,
    exits: (mpsc::UnboundedSender<Exit>, mpsc::UnboundedReceiver<Exit>),
    runners: HashMap<String, RunnerHandle>,
    /// Subscriptions the engine stopped (410, failure run), held until the registry
    /// publishes a new set: re-enabling, or any later change, lets them resume from their
    /// cursor. (A set is republished whole, so an unrelated change also resumes them; the
    /// worst case is one more failed attempt and another disable request.)
    held: HashSet<String>,
    generation: u64,
}

impl Supervisor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        sinks: SinkRegistry,
        set_rx: watch::Receiver<Arc<SubscriptionSet>>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Supervisor {
        Supervisor {
            shared,
            sinks,
            set_rx,
            commands,
            exits: mpsc::unbounded_channel(),
            runners: HashMap::new(),
            held: HashSet::new(),
            generation: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let cancel = self.shared.cancel.clone();
        let mut set_open = true;
        self.set_rx.mark_changed();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = self.set_rx.changed(), if set_open => {
                    // The registry went away: keep delivering the last set until shutdown.
                    if changed.is_err() {
                        set_open = false;
                        self.shared.router.first_set_started();
                        continue;
                    }
                    self.held.clear();
                    self.reconcile().await;
                    self.shared.router.first_set_started();
                }
                Some(command) = self.commands.recv() => self.command(command).await,
                Some((id, generation, exit)) = self.exits.1.recv() => {
                    self.runner_ended(id, generation, exit).await;
                }
            }
        }
        // Cancel every runner first so they wind down in parallel, then wait for each.
        for handle in self.runners.values() {
            handle.cancel.cancel();
        }
        for (_, handle) in self.runners.drain() {
            let _ = handle.join.await;
        }
    }

    /// Starts, updates and stops runners to match the current set.
    async fn reconcile(&mut self) {
        let set = self.set_rx.borrow_and_update().clone();
        let numbers = Arc::new(set.instance_numbers.clone());
        let tokens = Arc::new(set.instance_tokens.clone());
        let mut seen = HashSet::new();
        for sub in &set.subscriptions {
            seen.insert(sub.id.clone());
            let stats = self.shared.stats_for(&sub.id);
            if !sub.enabled {
                stats.set_stopped(None);
                self.stop(&sub.id).await;
                continue;
            }
            if self.held.contains(&sub.id) {
                continue;
            }
            let kind = sub.target.kind();
            let Some(sink) = self.sinks.get(kind) else {
                stats.set_stopped(Some(format!("no {kind} sink is configured")));
                self.stop(&sub.id).await;
                continue;
            };
            // Compiled once per start or change of its filter, not at every registry change.
            let running = self.runners.get(&sub.id).map(|h| h.view.borrow().clone());
            let filter = match running.filter(|v| v.subscription.filter == sub.filter) {
                Some(view) => view.filter.clone(),
                None => match sub.filter.compile_narrowing() {
                    Ok(filter) => filter,
                    Err(e) => {
                        // The API validates every filter it stores; only a record written by
                        // a different version could get here.
                        stats.set_stopped(Some(format!("its filter does not compile: {e}")));
                        self.stop(&sub.id).await;
                        continue;
                    }
                },
            };
            stats.set_stopped(None);
            let view = Arc::new(View {
                subscription: Arc::new(sub.clone()),
                instance_numbers: numbers.clone(),
                instance_tokens: tokens.clone(),
                filter,
            });
            match self.runners.get(&sub.id) {
                Some(handle)
                    if handle.kind == kind
                        && handle.ordering == view.ordering(self.shared.options.ordering)
                        // The policy shapes the window and the workers: a change restarts.
                        && handle.view.borrow().subscription.policy == sub.policy =>
                {
                    let settings_changed = *handle.view.borrow().subscription != *sub;
                    handle.view.send_if_modified(|current| {
                        let changed = **current != *view;
                        if changed {
                            *current = view.clone();
                        }
                        changed
                    });
                    if settings_changed {
                        self.prepare(sub, kind);
                    }
                }
                _ => {
                    // A subscription without a cursor has never run here: its destination
                    // is prepared as it starts. One with a cursor was prepared when it
                    // first started (a restart does not declare every queue again); the
                    // configured global ones are prepared at every start, as config may
                    // have changed their topology.
                    let new = matches!(self.shared.log.cursor(&sub.id).await, Ok(None));
                    self.stop(&sub.id).await;
                    self.start(sub, kind, sink, view);
                    if new || sub.scope == Scope::AllInstances {
                        self.prepare(sub, kind);
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .runners
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.stop(&id).await;
            self.shared.forget(&id);
        }
        self.drop_orphan_cursors(&seen).await;
    }

    /// Deletes the cursors of subscriptions that no longer exist (a deleted instance or
    /// webhook, a global sink removed from config): a cursor nobody reads would otherwise
    /// hold back retention forever. Runs after their runners stopped, so none re-commits.
    async fn drop_orphan_cursors(&self, live: &HashSet<String>) {
        let cursors = match self.shared.log.cursors().await {
            Ok(cursors) => cursors,
            Err(e) => {
                tracing::warn!(error = %e, "listing cursors failed");
                return;
            }
        };
        for (name, _) in cursors
            .into_iter()
            .filter(|(name, _)| !parking::cursor_is_live(name, live))
        {
            match self.shared.log.delete_cursor(&name).await {
                Ok(()) => {
                    tracing::info!(cursor = %name, "deleted the cursor of a removed subscription")
                }
                Err(e) => tracing::warn!(cursor = %name, error = %e, "deleting a cursor failed"),
            }
        }
    }

    fn start(
        &mut self,
        sub: &Subscription,
        kind: SinkKind,
        sink: Arc<dyn crate::sinks::Sink>,
        view: Arc<View>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        let ordering = view.ordering(self.shared.options.ordering);
        let (view_tx, view_rx) = watch::channel(view);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let cancel = self.shared.cancel.child_token();
        // Until the first set is running, the tail waits for each runner to attach.
        let gate = (!self.shared.router.gate_open()).then(|| {
            self.shared.router.runner_starting();
            runner::GateTicket(self.shared.router.clone())
        });
        let args = RunnerArgs {
            gate,
            shared: self.shared.clone(),
            sub_id: Arc::from(sub.id.as_str()),
            view: view_rx,
            sink,
            kind,
            stats: self.shared.stats_for(&sub.id),
            cmds: cmd_rx,
            cancel: cancel.clone(),
        };
        let exits = self.exits.0.clone();
        let id = sub.id.clone();
        let join = self.shared.tracker.spawn(async move {
            let exit = runner::run(args).await;
            let _ = exits.send((id, generation, exit));
        });
        self.runners.insert(
            sub.id.clone(),
            RunnerHandle {
                generation,
                kind,
                ordering,
                view: view_tx,
                cmds: cmd_tx,
                cancel,
                join,
            },
        );
    }

    /// Runs the sink's preparation step for `sub` in the background (declaring its queues,
    /// see [`crate::sinks::Prepare`]): it never holds delivery or the supervisor back.
    fn prepare(&self, sub: &Subscription, kind: SinkKind) {
        let Some(preparer) = self.sinks.preparer(kind) else {
            return;
        };
        let sub = sub.clone();
        let cancel = self.shared.cancel.clone();
        self.shared.tracker.spawn(async move {
            let prepared = tokio::select! {
                _ = cancel.cancelled() => return,
                prepared = tokio::time::timeout(PREPARE_TIMEOUT, preparer.prepare(&sub)) => prepared,
            };
            match prepared {
                Ok(Ok(())) => {
                    tracing::info!(subscription = %sub.id, sink = %kind, "destination prepared")
                }
                Ok(Err(error)) => tracing::warn!(
                    subscription = %sub.id, sink = %kind, %error,
                    "preparing the destination failed; each send prepares what it needs"
                ),
                Err(_) => tracing::warn!(
                    subscription = %sub.id, sink = %kind,
                    "preparing the destination timed out; each send prepares what it needs"
                ),
            }
        });
    }

    /// Stops a runner and waits until it has committed its cursor.
    async fn stop(&mut self, id: &str) {
        if let Some(handle) = self.runners.remove(id) {
            handle.cancel.cancel();
            let _ = handle.join.await;
        }
    }

    async fn runner_ended(&mut self, id: String, generation: u64, exit: RunnerExit) {
        let current = self.runners.get(&id).map(|h| h.generation);
        if current != Some(generation) {
            return; // an older runner of a restarted subscription
        }
        self.stop(&id).await;
        if let RunnerExit::Stopped(reason) = exit {
            tracing::warn!(subscription = %id, %reason, "delivery stopped; asking to disable");
            self.shared.stats_for(&id).set_stopped(Some(reason.clone()));
            self.held.insert(id.clone());
            let _ = self.shared.disable_requests.send(DisableRequest {
                subscription: id,
                reason,
            });
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Replay { id, from, reply } => {
                let _ = reply.send(self.replay(&id, from).await);
            }
            Command::Redrive { id, which, reply } => {
                let _ = reply.send(self.redrive(&id, which));
            }
        }
    }

    fn known(&self, id: &str) -> bool {
        self.set_rx
            .borrow()
            .subscriptions
            .iter()
            .any(|s| s.id == id)
    }

    async fn replay(&mut self, id: &str, from: ReplayFrom) -> Result<u64, DeliveryError> {
        if !self.known(id) {
            return Err(DeliveryError::UnknownSubscription(id.to_owned()));
        }
        let log = self.shared.log.clone();
        let sequence = match from {
            ReplayFrom::Sequence(s) => s.max(log.first_sequence()),
            ReplayFrom::Time(ms) => log.sequence_at(ms).await?,
        };
        // Stop first, so the runner's final commit cannot overwrite the new position.
        self.stop(id).await;
        log.commit_cursor(id, sequence).await?;
        self.shared
            .state
            .record(StateRecord::Reset {
                subscription: id.to_owned(),
                from: sequence,
            })
            .await?;
        // The reset voided the parked lanes: their events are delivered again from the new
        // position or not at all, so nothing is held for them any more.
        log.delete_cursor(&parking::hold_cursor(id)).await?;
        let stats = self.shared.stats_for(id);
        stats
            .cursor
            .store(sequence, std::sync::atomic::Ordering::Relaxed);
        self.held.remove(id);
        self.reconcile().await;
        Ok(sequence)
    }

    fn redrive(&mut self, id: &str, which: Redrive) -> Result<usize, DeliveryError> {
        if !self.known(id) {
            return Err(DeliveryError::UnknownSubscription(id.to_owned()));
        }
        let chosen: Vec<_> = self
            .shared
            .state
            .dead_letters(id)
            .into_iter()
            .filter(|d| match &which {
                Redrive::All => true,
                Redrive::Sequences(s) => s.contains(&d.sequence),
                Redrive::Ids(ids) => ids.contains(&d.id),
            })
            .collect();
        if chosen.is_empty() {
            return Ok(0);
        }
        let handle = self
            .runners
            .get(id)
            .ok_or_else(|| DeliveryError::NotRunning(id.to_owned()))?;
        let count = chosen.len();
        handle
            .cmds
            .send(RunnerCmd::Redrive(chosen))
            .map_err(|_| DeliveryError::NotRunning(id.to_owned()))?;
        Ok(count)
    }
}
