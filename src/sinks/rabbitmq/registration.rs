//! The RabbitMQ sink as the server knows it: its descriptor in the registration table, and
//! its preparation step (declaring a subscription's exchange, queues and bindings).

use std::sync::Arc;

use async_trait::async_trait;

use super::{RabbitmqSink, RabbitmqTarget};
use crate::config::Config;
use crate::delivery::subscription::{Scope, Subscription};
use crate::sinks::settings;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, Prepare, SinkDescriptor,
    SinkTarget,
};

/// The RabbitMQ sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "rabbitmq",
    // Queues are named after Evolution's events: a custom event has none.
    carries_custom_events: false,
    instance_target,
    read_settings: settings::enabled_only,
    show_settings: settings::nothing_to_show,
    read_flat: None,
    flat_fields: &[],
    global,
    config: super::config::CONFIG,
    build,
};

/// An instance's own exchange and queues; nothing is stored with the setting.
fn instance_target(_stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    Some(SinkTarget::Rabbitmq(RabbitmqTarget { global: false }))
}

/// `RABBITMQ_GLOBAL_ENABLED` (with `RABBITMQ_ENABLED`).
fn global(config: &Config) -> Option<GlobalTarget> {
    let c = &config.rabbitmq;
    (c.enabled && c.global_enabled).then(|| GlobalTarget {
        target: SinkTarget::Rabbitmq(RabbitmqTarget { global: true }),
        events: c.global_events.clone(),
    })
}

/// Built when `RABBITMQ_ENABLED`; it connects in the background, so a broker that is down
/// at start never keeps the server from starting.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        let config = context.config;
        if !config.rabbitmq.enabled {
            return Ok(None);
        }
        let sink = RabbitmqSink::new(
            &config.rabbitmq,
            config.server.url.clone(),
            context.shutdown.clone(),
        )
        .map_err(|e| BuildError::new(SINK.name, e))?;
        let sink = Arc::new(sink);
        Ok(Some(BuiltSink {
            sink: sink.clone(),
            prepare: Some(sink),
        }))
    })
}

#[async_trait]
impl Prepare for RabbitmqSink {
    async fn prepare(&self, subscription: &Subscription) -> Result<(), String> {
        let events = &subscription.events;
        let declared = match (&subscription.target, &subscription.scope) {
            (SinkTarget::Rabbitmq(RabbitmqTarget { global: true }), _) => {
                self.ensure_global_topology(events).await
            }
            (SinkTarget::Rabbitmq(_), Scope::Instance(instance)) => {
                self.ensure_instance_topology(instance, events).await
            }
            _ => return Ok(()),
        };
        declared.map_err(|e| e.to_string())
    }
}
