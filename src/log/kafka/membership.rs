//! Which event partitions this process delivers: a Kafka consumer group over the events
//! topic, used only for its membership. The group protocol shares the partitions among the
//! processes and, when one dies (no heartbeat within the session timeout), gives its
//! partitions to the others. The member consumes nothing: it pauses what it is assigned.
//!
//! On a revocation librdkafka calls back before the partitions move; the callback publishes
//! the smaller assignment and waits (bounded) until the process reports those partitions
//! stopped, so their final cursor commits land before another process starts them.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::TopicPartitionList;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{client_config, engine_error, KafkaLogOptions};
use crate::log::LogError;

/// Longest wait in a revocation for this process to stop the revoked partitions.
const REVOKE_WAIT: Duration = Duration::from_secs(20);

/// The partitions whose delivery runs here, shared with the rebalance callback.
#[derive(Default)]
struct Running {
    partitions: Mutex<BTreeSet<i32>>,
    changed: Condvar,
}

struct GroupContext {
    assigned: watch::Sender<BTreeSet<i32>>,
    running: Arc<Running>,
    cancel: CancellationToken,
}

impl ClientContext for GroupContext {}

fn partitions(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let revoked = partitions(revoked);
        tracing::info!(?revoked, "delivery partitions revoked");
        self.assigned
            .send_modify(|set| set.retain(|p| !revoked.contains(p)));
        if self.cancel.is_cancelled() {
            return; // shutting down: delivery stops on its own
        }
        let guard = self
            .running
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (_guard, timeout) = self
            .running
            .changed
            .wait_timeout_while(guard, REVOKE_WAIT, |running| {
                running.iter().any(|p| revoked.contains(p))
            })
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            tracing::warn!(?revoked, "revoked partitions did not stop in time");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                // Membership only: fetching the events here would read them twice.
                if let Err(e) = consumer.pause(assigned) {
                    tracing::warn!(error = %e, "pausing the membership consumer");
                }
                let set = partitions(assigned);
                tracing::info!(partitions = ?set, "delivery partitions assigned");
                self.assigned.send_replace(set);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "delivery group rebalance"),
        }
    }
}

/// This process's membership in the delivery group.
pub struct Membership {
    assigned: watch::Receiver<BTreeSet<i32>>,
    running: Arc<Running>,
}

impl Membership {
    /// Joins the group `{prefix}.delivery` on the events topic, polling on its own thread
    /// until `cancel`.
    pub(super) fn join(
        options: &KafkaLogOptions,
        cancel: CancellationToken,
    ) -> Result<Membership, LogError> {
        let (assigned_tx, assigned) = watch::channel(BTreeSet::new());
        let running = Arc::new(Running::default());
        let context = GroupContext {
            assigned: assigned_tx,
            running: running.clone(),
            cancel: cancel.clone(),
        };
        let session_ms = options.session_timeout.as_millis().max(1000);
        let mut cfg = client_config(options);
        cfg.set("group.id", format!("{}.delivery", options.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 3).to_string())
            .set("partition.assignment.strategy", "roundrobin");
        let consumer: BaseConsumer<GroupContext> = cfg
            .create_with_context(context)
            .map_err(|e| engine_error("creating the delivery group member", e))?;
        let topic = format!("{}.events", options.topic_prefix);
        consumer
            .subscribe(&[&topic])
            .map_err(|e| engine_error("joining the delivery group", e))?;
        std::thread::Builder::new()
            .name("switchyard-group".into())
            .spawn(move || {
                while !cancel.is_cancelled() {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::warn!(error = %e, "delivery group member");
                    }
                }
                // Leaving now (not at the session timeout) hands the partitions over at once.
                drop(consumer);
            })
            .map_err(|e| engine_error("starting the delivery group thread", e))?;
        Ok(Membership { assigned, running })
    }

    /// The assigned partitions, republished on every rebalance.
    pub fn assigned(&self) -> watch::Receiver<BTreeSet<i32>> {
        self.assigned.clone()
    }

    /// Reports the partitions whose delivery runs now (after starts and stops).
    pub fn set_running(&self, partitions: BTreeSet<i32>) {
        let mut running = self
            .running
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *running = partitions;
        self.running.changed.notify_all();
    }
}
