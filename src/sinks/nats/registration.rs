//! The NATS sink as the server knows it: its descriptor in the registration table. Subjects
//! exist as soon as something is published to them, so there is no preparation step.

use std::sync::Arc;

use super::{NatsOptions, NatsSink, NatsTarget};
use crate::config::Config;
use crate::sinks::settings;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, SinkDescriptor, SinkTarget,
};

/// The NATS sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "nats",
    // A subject needs no declaring, and a custom event's dotted name is a valid subject
    // tail (`{instance}.linq.message_received`).
    carries_custom_events: true,
    instance_target,
    read_settings: settings::enabled_only,
    show_settings: settings::nothing_to_show,
    read_flat: None,
    flat_fields: &[],
    global,
    config: super::config::CONFIG,
    build,
};

/// An instance's own subjects; nothing is stored with the setting.
fn instance_target(_stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    Some(SinkTarget::Nats(NatsTarget { global: false }))
}

/// `NATS_GLOBAL_ENABLED` (with `NATS_ENABLED`).
fn global(config: &Config) -> Option<GlobalTarget> {
    let c = &config.nats;
    (c.enabled && c.global_enabled).then(|| GlobalTarget {
        target: SinkTarget::Nats(NatsTarget { global: true }),
        events: c.global_events.clone(),
    })
}

/// Built when `NATS_ENABLED`; it connects in the background, so a server that is down at
/// start never keeps Switchyard from starting.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        if !context.config.nats.enabled {
            return Ok(None);
        }
        let sink = NatsSink::start(
            NatsOptions::from_config(context.config),
            context.shutdown.clone(),
            context.tasks,
        )
        .await
        .map_err(|e| BuildError::new(SINK.name, e))?;
        Ok(Some(BuiltSink {
            sink: Arc::new(sink),
            prepare: None,
        }))
    })
}
