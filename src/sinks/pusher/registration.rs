//! The Pusher sink as the server knows it: its descriptor in the registration table.

use std::sync::Arc;

use super::{settings, PusherSink, PusherTarget};
use crate::config::Config;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, SinkDescriptor, SinkTarget,
};

/// The Pusher sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "pusher",
    // Any event name is a Pusher event name.
    carries_custom_events: true,
    instance_target,
    read_settings: settings::read,
    show_settings: settings::show,
    read_flat: None,
    flat_fields: &[],
    global,
    config: super::config::CONFIG,
    build,
};

/// An instance's own app, once its settings name one.
fn instance_target(stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    match stored {
        Some(SinkTarget::Pusher(PusherTarget { app: Some(app) })) => {
            Some(SinkTarget::Pusher(PusherTarget {
                app: Some(app.clone()),
            }))
        }
        _ => None,
    }
}

/// `PUSHER_GLOBAL_ENABLED` (with `PUSHER_ENABLED`): the app itself stays in the config, so
/// its secret is never in a subscription.
fn global(config: &Config) -> Option<GlobalTarget> {
    config.pusher.global_app().map(|_| GlobalTarget {
        target: SinkTarget::Pusher(PusherTarget::default()),
        events: config.pusher.global_events.clone(),
    })
}

/// Built when `PUSHER_ENABLED`.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        let config = context.config;
        if !config.pusher.enabled {
            return Ok(None);
        }
        let sink = PusherSink::new(&config.pusher, config.server.url.clone())
            .map_err(|e| BuildError::new(SINK.name, e))?;
        Ok(Some(BuiltSink {
            sink: Arc::new(sink),
            prepare: None,
        }))
    })
}
