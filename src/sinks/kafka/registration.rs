//! The Kafka sink as the server knows it: its descriptor in the registration table. Topics
//! are created on their first record (`topics.rs`), so there is no preparation step.

use std::sync::Arc;

use super::{KafkaOptions, KafkaSink, KafkaTarget};
use crate::config::Config;
use crate::sinks::settings;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, SinkDescriptor, SinkTarget,
};

/// The Kafka sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "kafka",
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

/// An instance's own topics; nothing is stored with the setting.
fn instance_target(_stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    Some(SinkTarget::Kafka(KafkaTarget { global: false }))
}

/// `KAFKA_GLOBAL_ENABLED` (with `KAFKA_ENABLED`).
fn global(config: &Config) -> Option<GlobalTarget> {
    let c = &config.kafka;
    (c.enabled && c.global_enabled).then(|| GlobalTarget {
        target: SinkTarget::Kafka(KafkaTarget { global: true }),
        events: c.global_events.clone(),
    })
}

/// Built when `KAFKA_ENABLED`.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        if !context.config.kafka.enabled {
            return Ok(None);
        }
        let sink = KafkaSink::new(KafkaOptions::from_config(context.config))
            .map_err(|e| BuildError::new(SINK.name, e))?;
        Ok(Some(BuiltSink {
            sink: Arc::new(sink),
            prepare: None,
        }))
    })
}
