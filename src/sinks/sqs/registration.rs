//! The SQS sink as the server knows it: its descriptor in the registration table, and its
//! preparation step (creating a subscription's FIFO queues).

use std::sync::Arc;

use async_trait::async_trait;

use super::{SqsSink, SqsTarget};
use crate::config::Config;
use crate::delivery::subscription::{Scope, Subscription};
use crate::sinks::settings;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, Prepare, SinkDescriptor,
    SinkTarget,
};

/// The SQS sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "sqs",
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

/// An instance's own queues; nothing is stored with the setting.
fn instance_target(_stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    Some(SinkTarget::Sqs(SqsTarget { global: false }))
}

/// `SQS_GLOBAL_ENABLED` (with `SQS_ENABLED`).
fn global(config: &Config) -> Option<GlobalTarget> {
    let c = &config.sqs;
    (c.enabled && c.global_enabled).then(|| GlobalTarget {
        target: SinkTarget::Sqs(SqsTarget { global: true }),
        events: c.global_events.clone(),
    })
}

/// Built when `SQS_ENABLED`.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        let config = context.config;
        if !config.sqs.enabled {
            return Ok(None);
        }
        let sink = SqsSink::new(
            &config.sqs,
            config.server.url.clone(),
            config.server.name.clone(),
        )
        .await
        .map_err(|e| BuildError::new(SINK.name, e))?
        .with_s3(&config.s3)
        .await;
        let sink = Arc::new(sink);
        Ok(Some(BuiltSink {
            sink: sink.clone(),
            prepare: Some(sink),
        }))
    })
}

#[async_trait]
impl Prepare for SqsSink {
    async fn prepare(&self, subscription: &Subscription) -> Result<(), String> {
        let events = &subscription.events;
        let created = match (&subscription.target, &subscription.scope) {
            (SinkTarget::Sqs(SqsTarget { global: true }), _) => {
                self.ensure_global_queues(events).await
            }
            (SinkTarget::Sqs(_), Scope::Instance(instance)) => {
                self.ensure_instance_queues(instance, events).await
            }
            _ => return Ok(()),
        };
        created.map(|_| ()).map_err(|e| e.to_string())
    }
}
