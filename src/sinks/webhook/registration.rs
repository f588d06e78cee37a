//! The webhook sink as the server knows it: its descriptor in the registration table.

use std::sync::Arc;

use super::{settings, WebhookOptions, WebhookSink, WebhookTarget};
use crate::config::Config;
use crate::sinks::{
    BuildContext, BuildError, BuildFuture, BuiltSink, GlobalTarget, SinkDescriptor, SinkTarget,
};

/// The webhook sink in the registration table.
pub const SINK: SinkDescriptor = SinkDescriptor {
    name: "webhook",
    carries_custom_events: true,
    instance_target,
    read_settings: settings::read,
    show_settings: settings::show,
    read_flat: Some(settings::read_flat),
    flat_fields: settings::FLAT_FIELDS,
    global,
    config: super::config::CONFIG,
    build,
};

/// An instance's webhook delivers once it has a URL.
fn instance_target(stored: Option<&SinkTarget>) -> Option<SinkTarget> {
    match stored {
        Some(SinkTarget::Webhook(hook)) if !hook.url.is_empty() => {
            Some(SinkTarget::Webhook(hook.clone()))
        }
        _ => None,
    }
}

/// `WEBHOOK_GLOBAL_ENABLED` with a `WEBHOOK_GLOBAL_URL`.
fn global(config: &Config) -> Option<GlobalTarget> {
    let w = &config.webhook;
    (w.global_enabled && !w.global_url.is_empty()).then(|| GlobalTarget {
        target: SinkTarget::Webhook(WebhookTarget {
            url: w.global_url.clone(),
            by_events: w.global_by_events,
            ..WebhookTarget::default()
        }),
        events: w.global_events.clone(),
    })
}

/// Always built: webhooks need no server of their own to be configured.
fn build<'a>(context: &'a BuildContext<'a>) -> BuildFuture<'a> {
    Box::pin(async move {
        let sink = WebhookSink::new(WebhookOptions::from_config(context.config))
            .map_err(|e| BuildError::new(SINK.name, e))?;
        Ok(Some(BuiltSink {
            sink: Arc::new(sink),
            prepare: None,
        }))
    })
}
