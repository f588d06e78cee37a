//! Where an event goes (exchange, queue, routing key) and the idempotent declaration of it.
//!
//! Names come only from [`EventKind`]'s RabbitMQ methods, so the queue declared is the queue
//! published to. Per-instance mode: a durable topic exchange named after the instance and a
//! durable quorum queue `{instance}.{dotted}` bound with `{dotted}`. Global mode: the
//! configured exchange and `{prefix}.{dotted}` (just `{dotted}` without a prefix).

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::ExchangeKind;

use super::connection::Link;
use super::error::RabbitmqError;
use super::RabbitmqConfig;
use crate::catalog::EventKind;

/// The global-mode names taken from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct GlobalNames {
    /// `RABBITMQ_EXCHANGE_NAME`.
    pub(crate) exchange: String,
    /// `RABBITMQ_PREFIX_KEY`, when set and not empty.
    pub(crate) prefix: Option<String>,
}

impl GlobalNames {
    /// Reads the names from the sink's configuration.
    pub(crate) fn from_config(cfg: &RabbitmqConfig) -> GlobalNames {
        GlobalNames {
            exchange: cfg.exchange_name.clone(),
            prefix: cfg.prefix_key.clone().filter(|p| !p.is_empty()),
        }
    }
}

/// Where one event is published, and the queue that must exist for it to land.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Route {
    /// The exchange published to.
    pub(crate) exchange: String,
    /// The queue bound to it with `routing_key`.
    pub(crate) queue: String,
    /// The dotted event name.
    pub(crate) routing_key: &'static str,
}

impl Route {
    /// The route of `event` (dotted or any catalog spelling) of `instance`.
    pub(crate) fn of(
        global: Option<&GlobalNames>,
        instance: &str,
        event: &str,
    ) -> Result<Route, RabbitmqError> {
        // Stored events carry the dotted name: match it without the allocating parse.
        let kind = EventKind::all()
            .find(|k| k.dotted() == event)
            .or_else(|| EventKind::parse(event).ok())
            .ok_or_else(|| RabbitmqError::NotInCatalog(event.to_owned()))?;
        Ok(Route::of_kind(global, instance, kind))
    }

    /// The route of a catalog event kind.
    pub(crate) fn of_kind(global: Option<&GlobalNames>, instance: &str, kind: EventKind) -> Route {
        match global {
            Some(names) => Route {
                exchange: names.exchange.clone(),
                queue: kind.rabbitmq_global_queue(names.prefix.as_deref()),
                routing_key: kind.rabbitmq_routing_key(),
            },
            None => Route {
                exchange: instance.to_owned(),
                queue: kind.rabbitmq_instance_queue(instance),
                routing_key: kind.rabbitmq_routing_key(),
            },
        }
    }
}

/// Declares every route not yet declared on `link`, on one short-lived channel, so that a
/// refused declaration (a queue of another type already there) closes only that channel.
pub(crate) async fn declare(
    link: &Link,
    routes: &BTreeSet<Route>,
    timeout: Duration,
) -> Result<(), RabbitmqError> {
    let missing: Vec<&Route> = routes
        .iter()
        .filter(|r| !link.is_declared(&r.exchange, &r.queue))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what = format!("{} queue(s)", missing.len());
    match tokio::time::timeout(timeout, declare_missing(link, &missing)).await {
        Ok(result) => result,
        Err(_) => Err(RabbitmqError::Timeout {
            what: format!("declaring {what}"),
            after: timeout,
        }),
    }
}

async fn declare_missing(link: &Link, missing: &[&Route]) -> Result<(), RabbitmqError> {
    let channel =
        link.connection
            .create_channel()
            .await
            .map_err(|source| RabbitmqError::Declare {
                what: "a channel for declarations".into(),
                source,
            })?;
    let result = declare_on(&channel, link, missing).await;
    // Best effort: after a refused declaration the broker has closed it already.
    let _ = channel.close(200, "declared".into()).await;
    result
}

async fn declare_on(
    channel: &lapin::Channel,
    link: &Link,
    missing: &[&Route],
) -> Result<(), RabbitmqError> {
    let exchanges: BTreeSet<&str> = missing.iter().map(|r| r.exchange.as_str()).collect();
    for exchange in exchanges {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|source| RabbitmqError::Declare {
                what: format!("topic exchange `{exchange}`"),
                source,
            })?;
    }
    for route in missing {
        let mut arguments = FieldTable::default();
        // Evolution declares quorum queues; an equal declaration is what makes ours a no-op
        // on queues Evolution already created.
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(route.queue.as_str().into(), options, arguments)
            .await
            .map_err(|source| RabbitmqError::Declare {
                what: format!("quorum queue `{}`", route.queue),
                source,
            })?;
        channel
            .queue_bind(
                route.queue.as_str().into(),
                route.exchange.as_str().into(),
                route.routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| RabbitmqError::Declare {
                what: format!(
                    "binding of `{}` to `{}` with `{}`",
                    route.queue, route.exchange, route.routing_key
                ),
                source,
            })?;
        link.mark_declared(&route.exchange, &route.queue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_instance_route_uses_the_instance_exchange() {
        let r = Route::of(None, "shop", "MESSAGES_UPSERT").unwrap();
        assert_eq!(r.exchange, "shop");
        assert_eq!(r.queue, "shop.messages.upsert");
        assert_eq!(r.routing_key, "messages.upsert");
    }

    #[test]
    fn global_route_with_and_without_prefix() {
        let mut names = GlobalNames {
            exchange: "evolution_exchange".into(),
            prefix: Some("acme".into()),
        };
        let r = Route::of(Some(&names), "shop", "group-participants.update").unwrap();
        assert_eq!(r.exchange, "evolution_exchange");
        assert_eq!(r.queue, "acme.group-participants.update");
        names.prefix = None;
        let r = Route::of(Some(&names), "shop", "call").unwrap();
        assert_eq!(r.queue, "call");
    }

    #[test]
    fn custom_events_have_no_route() {
        assert!(Route::of(None, "shop", "linq.reaction.added").is_err());
    }
}
