//! [`RabbitmqSink`]: declare what a batch needs, publish it pipelined on the confirm
//! channel, then classify each event by its own confirm.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::connection::{Link, LinkOptions, Manager};
use super::error::RabbitmqError;
use super::message;
use super::topology::{self, GlobalNames, Route};
use super::RabbitmqConfig;
use super::RabbitmqTarget;
use crate::catalog::EventKind;
use crate::delivery::subscription::{SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::{Outcome, Sink};

/// Events per call: enough to keep the confirm pipeline full, small enough that one
/// slow batch does not hold an instance for long.
const MAX_BATCH: usize = 128;

/// Publishes events to Evolution's RabbitMQ topology with publisher confirms. One value
/// serves every RabbitMQ subscription, per-instance and global.
pub struct RabbitmqSink {
    manager: Manager,
    server_url: String,
    global: GlobalNames,
    options: LinkOptions,
}

impl RabbitmqSink {
    /// Starts connecting to `cfg.uri` in the background (call inside a tokio runtime);
    /// `server_url` goes in every envelope; `cancel` closes the connection for good.
    pub fn new(
        cfg: &RabbitmqConfig,
        server_url: String,
        cancel: CancellationToken,
    ) -> Result<RabbitmqSink, RabbitmqError> {
        Self::with_options(cfg, server_url, LinkOptions::default(), cancel)
    }

    /// [`RabbitmqSink::new`] with explicit timeouts and backoff.
    pub fn with_options(
        cfg: &RabbitmqConfig,
        server_url: String,
        options: LinkOptions,
        cancel: CancellationToken,
    ) -> Result<RabbitmqSink, RabbitmqError> {
        // Parse now so a typo in RABBITMQ_URI fails at start, not as endless reconnects.
        cfg.uri
            .parse::<lapin::uri::AMQPUri>()
            .map_err(RabbitmqError::InvalidUri)?;
        Ok(RabbitmqSink {
            manager: Manager::start(cfg.uri.clone(), options.clone(), cancel),
            server_url,
            global: GlobalNames::from_config(cfg),
            options,
        })
    }

    /// Waits up to `timeout` for a connection; the error says why there is none.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), RabbitmqError> {
        self.manager
            .wait_up(timeout)
            .await
            .map(|_| ())
            .map_err(RabbitmqError::Unavailable)
    }

    /// Declares `instance`'s exchange and the queues of `events` (empty = every catalog
    /// event) now, as Evolution's `/rabbitmq/set` does.
    pub async fn ensure_instance_topology(
        &self,
        instance: &str,
        events: &[EventKind],
    ) -> Result<(), RabbitmqError> {
        self.ensure(None, instance, events).await
    }

    /// Declares the global exchange and the queues of `events` (empty = all) now, at start.
    pub async fn ensure_global_topology(&self, events: &[EventKind]) -> Result<(), RabbitmqError> {
        self.ensure(Some(&self.global), "", events).await
    }

    async fn ensure(
        &self,
        global: Option<&GlobalNames>,
        instance: &str,
        events: &[EventKind],
    ) -> Result<(), RabbitmqError> {
        let kinds: Vec<EventKind> = if events.is_empty() {
            EventKind::all().collect()
        } else {
            events.to_vec()
        };
        let routes = kinds
            .into_iter()
            .map(|k| Route::of_kind(global, instance, k))
            .collect();
        let link = self
            .manager
            .wait_up(self.options.connect_timeout)
            .await
            .map_err(RabbitmqError::Unavailable)?;
        topology::declare(&link, &routes, self.options.operation_timeout).await
    }

    /// Publishes the routed events, recording each outcome; the first transport failure
    /// stops the batch (the channel is gone) and leaves the rest unset.
    async fn publish(
        &self,
        link: &Link,
        events: &[LoggedEvent],
        routes: &[Option<Route>],
        outcomes: &mut [Option<Outcome>],
        deadline: Instant,
    ) -> Option<String> {
        let mut pending = Vec::with_capacity(events.len());
        for (i, (event, route)) in events.iter().zip(routes).enumerate() {
            let Some(route) = route else { continue };
            let body = message::body(event, &self.server_url);
            let publish = link.channel.basic_publish(
                route.exchange.as_str().into(),
                route.routing_key.into(),
                // mandatory: an unroutable message comes back instead of vanishing.
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                message::properties(event),
            );
            match timeout_at(deadline, publish).await {
                Ok(Ok(confirm)) => pending.push((i, confirm)),
                Ok(Err(e)) => {
                    let reason = format!("publish failed: {e}");
                    link.mark_broken(&reason);
                    return Some(reason);
                }
                Err(_) => return Some(self.timed_out(link, "publishing")),
            }
        }
        let confirms = futures::future::join_all(
            pending
                .into_iter()
                .map(|(i, confirm)| async move { (i, confirm.await) }),
        );
        let confirmed = match timeout_at(deadline, confirms).await {
            Ok(confirmed) => confirmed,
            Err(_) => return Some(self.timed_out(link, "publisher confirms")),
        };
        let mut lost = None;
        for (i, result) in confirmed {
            let outcome = match result {
                Ok(Confirmation::Ack(None)) => Outcome::Delivered,
                Ok(Confirmation::Ack(Some(returned))) => {
                    // The queue or binding is gone although we declared it: forget it so the
                    // retry declares it again.
                    if let Some(route) = &routes[i] {
                        link.forget_declared(&route.exchange, &route.queue);
                    }
                    retry(format!(
                        "returned by RabbitMQ: {} {} (no queue bound for routing key `{}`)",
                        returned.reply_code, returned.reply_text, returned.delivery.routing_key
                    ))
                }
                Ok(Confirmation::Nack(_)) => retry("nacked by RabbitMQ".into()),
                Ok(Confirmation::NotRequested) => {
                    retry("the channel is not in confirm mode".into())
                }
                Err(e) => {
                    let reason = format!("confirm lost: {e}");
                    lost.get_or_insert_with(|| reason.clone());
                    retry(reason)
                }
            };
            outcomes[i] = Some(outcome);
        }
        if let Some(reason) = &lost {
            link.mark_broken(reason);
        }
        None
    }

    fn timed_out(&self, link: &Link, what: &str) -> String {
        let reason = format!(
            "RabbitMQ did not finish {what} within {:?}",
            self.options.operation_timeout
        );
        // A fresh channel is cheaper than reasoning about confirms that may still arrive.
        link.mark_broken(&reason);
        reason
    }
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        after: None,
        reason,
    }
}

/// Reports `Retry` for every event after a failed one bound for the same queue, so the
/// engine re-sends that queue's tail in order (see the module docs).
fn keep_queue_order(outcomes: &mut [Outcome], routes: &[Option<Route>]) {
    let mut failed: HashSet<&Route> = HashSet::new();
    for (outcome, route) in outcomes.iter_mut().zip(routes) {
        let Some(route) = route else { continue };
        match outcome {
            Outcome::Retry { .. } => {
                failed.insert(route);
            }
            Outcome::Delivered if failed.contains(route) => {
                *outcome = retry(format!(
                    "re-sent after an earlier event for queue `{}` failed, to keep its order",
                    route.queue
                ));
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Sink for RabbitmqSink {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let global = match subscription.target {
            SinkTarget::Rabbitmq(RabbitmqTarget { global }) => global.then_some(&self.global),
            _ => {
                let reason = format!("subscription `{}` is not a RabbitMQ one", subscription.id);
                return vec![Outcome::Permanent { reason }; events.len()];
            }
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let routes: Vec<Option<Route>> = events
            .iter()
            .zip(outcomes.iter_mut())
            .map(
                |(e, outcome)| match Route::of(global, &e.event.instance, &e.event.event) {
                    Ok(route) => Some(route),
                    Err(err) => {
                        *outcome = Some(Outcome::Permanent {
                            reason: err.to_string(),
                        });
                        None
                    }
                },
            )
            .collect();
        let unsent = match self.manager.current() {
            Err(reason) => Some(reason),
            Ok(link) => {
                self.publish_batch(&link, events, &routes, &mut outcomes)
                    .await
            }
        };
        let unsent = unsent.unwrap_or_else(|| "not published".into());
        let mut outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| retry(unsent.clone())))
            .collect();
        keep_queue_order(&mut outcomes, &routes);
        outcomes
    }
}

impl RabbitmqSink {
    /// Declares what the batch needs, then publishes; returns why events stayed unsent.
    async fn publish_batch(
        &self,
        link: &Arc<Link>,
        events: &[LoggedEvent],
        routes: &[Option<Route>],
        outcomes: &mut [Option<Outcome>],
    ) -> Option<String> {
        let deadline = Instant::now() + self.options.operation_timeout;
        let needed: BTreeSet<Route> = routes.iter().flatten().cloned().collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = topology::declare(link, &needed, left).await {
            // A refused declaration leaves the connection up; a dead connection does not.
            if !link.connection.status().connected() {
                link.mark_broken(&e.to_string());
            }
            return Some(e.to_string());
        }
        self.publish(link, events, routes, outcomes, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(queue: &str) -> Option<Route> {
        Some(Route {
            exchange: "i".into(),
            queue: queue.into(),
            routing_key: "call",
        })
    }

    #[test]
    fn a_failure_makes_later_events_of_its_queue_retry_only() {
        let routes = vec![route("q1"), route("q1"), route("q2"), route("q1"), None];
        let mut outcomes = vec![
            Outcome::Delivered,
            retry("nacked".into()),
            Outcome::Delivered,
            Outcome::Delivered,
            Outcome::Permanent {
                reason: "custom".into(),
            },
        ];
        keep_queue_order(&mut outcomes, &routes);
        assert_eq!(outcomes[0], Outcome::Delivered);
        assert!(matches!(outcomes[1], Outcome::Retry { .. }));
        assert_eq!(outcomes[2], Outcome::Delivered);
        assert!(matches!(outcomes[3], Outcome::Retry { .. }));
        assert!(matches!(outcomes[4], Outcome::Permanent { .. }));
    }
}
