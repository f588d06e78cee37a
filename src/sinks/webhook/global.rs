//! The global webhook (`WEBHOOK_GLOBAL_*`): one subscription over every instance.

use crate::catalog::{EventKind, UnknownEvent};
use crate::config::WebhookConfig;
use crate::delivery::subscription::{Scope, SinkTarget, Subscription, WebhookTarget};

/// The global webhook's subscription id (and cursor name).
pub const GLOBAL_WEBHOOK_ID: &str = "global:webhook";

/// The global webhook's subscription, or `None` when `webhook.global_enabled` is off.
/// `start_sequence` is where a first start begins (normally the log's end); later starts
/// resume from the cursor. An empty `global_events` list means every event.
pub fn global_subscription(
    cfg: &WebhookConfig,
    start_sequence: u64,
) -> Result<Option<Subscription>, UnknownEvent> {
    if !cfg.global_enabled || cfg.global_url.is_empty() {
        return Ok(None);
    }
    Ok(Some(Subscription {
        id: GLOBAL_WEBHOOK_ID.to_owned(),
        target: SinkTarget::Webhook(WebhookTarget {
            url: cfg.global_url.clone(),
            by_events: cfg.global_by_events,
            ..WebhookTarget::default()
        }),
        scope: Scope::AllInstances,
        events: EventKind::parse_list(&cfg.global_events)?,
        custom_events: Vec::new(),
        phone_numbers: Vec::new(),
        start_sequence,
        enabled: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn from_evolution_env_names() {
        let env = [
            ("WEBHOOK_GLOBAL_ENABLED", "true"),
            ("WEBHOOK_GLOBAL_URL", "https://hooks.example.com/in"),
            ("WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS", "true"),
            ("WEBHOOK_EVENTS_MESSAGES_UPSERT", "true"),
            ("WEBHOOK_EVENTS_CALL", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let cfg = Config::load(None, env).unwrap();
        let sub = global_subscription(&cfg.webhook, 42).unwrap().unwrap();
        assert_eq!(sub.id, GLOBAL_WEBHOOK_ID);
        assert_eq!(sub.scope, Scope::AllInstances);
        assert_eq!(sub.start_sequence, 42);
        let SinkTarget::Webhook(t) = &sub.target else {
            panic!()
        };
        assert_eq!(t.url, "https://hooks.example.com/in");
        assert!(t.by_events);
        let mut events = sub.events.clone();
        events.sort();
        assert_eq!(events, vec![EventKind::MessagesUpsert, EventKind::Call]);
    }

    #[test]
    fn off_by_default() {
        assert!(global_subscription(&WebhookConfig::default(), 1)
            .unwrap()
            .is_none());
    }
}
