//! What a subscription is: a sink target, a scope, an event filter and a start position.
//!
//! The registry projects its control records into these; the delivery engine runs one
//! cursor per subscription `id`. Ids are stable across restarts because cursors, dead
//! letters and retry state are keyed by them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::catalog::EventKind;
use crate::sinks::SinkKind;

/// One destination that receives events with its own durable cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Stable id: `webhook:{instance}`, `rabbitmq:{instance}`, `global:webhook`,
    /// `hook:{uuid}` for named webhooks, ... Also the cursor's name.
    pub id: String,
    /// Where events go.
    pub target: SinkTarget,
    /// Which instances' events it receives.
    pub scope: Scope,
    /// Which events; empty means all (as Evolution does while the sink is enabled).
    pub events: Vec<EventKind>,
    /// Custom (non-catalog) event names it also receives. When both lists are empty every
    /// event, custom ones included, is delivered; a custom list alone selects only those.
    #[serde(default)]
    pub custom_events: Vec<String>,
    /// Only instances whose own number (E.164, from instance create) is listed; empty = all.
    #[serde(default)]
    pub phone_numbers: Vec<String>,
    /// Where a new cursor starts: the log's end when the subscription was created, or a
    /// replay position the user asked for.
    pub start_sequence: u64,
    /// With a partitioned log (the Kafka engine), each partition's end when the
    /// subscription was created: where a new cursor starts in a partition other than the
    /// one `start_sequence` belongs to. Empty with one partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_positions: Vec<u64>,
    /// Disabled subscriptions keep their cursor but deliver nothing.
    pub enabled: bool,
    /// How it is delivered (`"policy"` in the sink object); unset fields follow the
    /// server's `[delivery]` defaults.
    #[serde(default, skip_serializing_if = "Policy::is_default")]
    pub policy: Policy,
}

/// A subscription's delivery policy: what its sink object's `"policy"` says. Every field is
/// optional; an absent one means the server's default, so changing a default in config
/// changes every subscription that did not choose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Which events keep their relative order (`chat`, `instance` or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<OrderBy>,
}

impl Policy {
    /// Whether nothing is chosen (then nothing is stored).
    pub fn is_default(&self) -> bool {
        *self == Policy::default()
    }
}

/// Which events of a subscription are delivered in sequence order relative to each other.
/// Events in order wait for each other (one in flight at a time, a failing one holds the
/// later ones back); the others proceed in parallel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    /// Events about the same chat of the same instance (`StoredEvent::chat`); events about
    /// no chat are ordered with their instance's other chat-less events.
    #[default]
    Chat,
    /// All events of the same instance (one in flight per instance).
    Instance,
    /// No order: every event on its own.
    #[serde(rename = "none")]
    Unordered,
}

impl OrderBy {
    /// The setting's name, as the API and config spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderBy::Chat => "chat",
            OrderBy::Instance => "instance",
            OrderBy::Unordered => "none",
        }
    }

    /// Parses the API and config spelling.
    pub fn parse(value: &str) -> Option<OrderBy> {
        [OrderBy::Chat, OrderBy::Instance, OrderBy::Unordered]
            .into_iter()
            .find(|o| o.as_str() == value)
    }
}

/// Which instances a subscription covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "instance", rename_all = "snake_case")]
pub enum Scope {
    /// One instance's events.
    Instance(String),
    /// Every instance's events (global sinks, account-wide webhooks).
    AllInstances,
}

/// The sink a subscription delivers to, with that sink's per-subscription settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sink", rename_all = "snake_case")]
pub enum SinkTarget {
    /// An HTTP endpoint.
    Webhook(WebhookTarget),
    /// RabbitMQ: per-instance exchange and queues, or the global exchange.
    Rabbitmq {
        /// True for the global exchange/prefix topology.
        global: bool,
    },
    /// SQS FIFO queues.
    Sqs {
        /// True for the global prefix topology.
        global: bool,
    },
    /// Kafka topics.
    Kafka {
        /// True for the `{prefix}.global.{event}` topics.
        global: bool,
    },
}

/// A webhook endpoint's settings. Its `Debug` hides the secret, so no log line can carry it.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// The endpoint URL.
    pub url: String,
    /// Append `/{kebab-event}` to the URL (Evolution's `byEvents`).
    #[serde(default)]
    pub by_events: bool,
    /// Evolution's `base64` flag (media as base64); stored and echoed.
    #[serde(default)]
    pub base64: bool,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Signing secret; unsigned when absent. `whsec_...` for Standard Webhooks, the secret
    /// string itself (its UTF-8 bytes are the key) for [`SigningScheme::Linq`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How `secret` signs a request. Absent in records written before the field existed,
    /// hence the default.
    #[serde(default, skip_serializing_if = "SigningScheme::is_default")]
    pub signing: SigningScheme,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("by_events", &self.by_events)
            .field("base64", &self.base64)
            .field("headers", &self.headers)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("signing", &self.signing)
            .finish()
    }
}

/// How a webhook request is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningScheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
    /// `{id}.{timestamp}.{body}` (Svix's Standard Webhooks).
    #[default]
    StandardWebhooks,
    /// Linq's: `X-Webhook-Signature: <hex>` over `{timestamp}.{body}`, with
    /// `X-Webhook-Timestamp` and `X-Webhook-Event`, so Linq receivers verify unchanged.
    Linq,
}

impl SigningScheme {
    fn is_default(&self) -> bool {
        *self == SigningScheme::StandardWebhooks
    }
}

/// Everything the delivery engine needs from the registry, published whole on every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionSet {
    /// Every cursor-driven subscription, enabled or not.
    pub subscriptions: Vec<Subscription>,
    /// Instance name -> the instance's own number, for phone-number filters.
    pub instance_numbers: HashMap<String, String>,
}

impl SinkTarget {
    /// Whether "all events" includes custom (provider-only) events for this target.
    /// RabbitMQ and SQS queues are named after Evolution's events, and a custom event has
    /// no Evolution queue: sending it would only fill dead letters.
    pub fn carries_custom_events(&self) -> bool {
        !matches!(self, SinkTarget::Rabbitmq { .. } | SinkTarget::Sqs { .. })
    }

    /// The sink kind that serves this target (the key of the engine's sink registry).
    pub fn kind(&self) -> SinkKind {
        match self {
            SinkTarget::Webhook(_) => SinkKind::Webhook,
            SinkTarget::Rabbitmq { .. } => SinkKind::Rabbitmq,
            SinkTarget::Sqs { .. } => SinkKind::Sqs,
            SinkTarget::Kafka { .. } => SinkKind::Kafka,
        }
    }
}

impl Subscription {
    /// Whether this subscription wants an event of `instance` named `event` (dotted).
    /// `instance_number` is the instance's own number, for `phone_numbers` filters.
    pub fn wants(&self, instance: &str, instance_number: Option<&str>, event: &str) -> bool {
        if !self.enabled {
            return false;
        }
        if let Scope::Instance(name) = &self.scope {
            if name != instance {
                return false;
            }
        }
        if !self.phone_numbers.is_empty() {
            let Some(number) = instance_number else {
                return false;
            };
            let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
            let number = digits(number);
            if !self.phone_numbers.iter().any(|p| digits(p) == number) {
                return false;
            }
        }
        let kind = EventKind::parse(event).ok();
        let listed_custom = || self.custom_events.iter().any(|c| c == event);
        if kind.is_none() && !self.target.carries_custom_events() && !listed_custom() {
            return false;
        }
        if self.events.is_empty() && self.custom_events.is_empty() {
            return true;
        }
        match kind {
            Some(kind) => self.events.contains(&kind),
            None => listed_custom(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(scope: Scope, events: Vec<EventKind>) -> Subscription {
        Subscription {
            policy: Default::default(),
            id: "t".into(),
            target: SinkTarget::Rabbitmq { global: false },
            scope,
            events,
            custom_events: vec![],
            phone_numbers: vec![],
            start_sequence: 1,
            start_positions: Vec::new(),
            enabled: true,
        }
    }

    #[test]
    fn empty_event_list_means_all() {
        let s = sub(Scope::Instance("a".into()), vec![]);
        assert!(s.wants("a", None, "messages.upsert"));
        assert!(
            !s.wants("a", None, "linq.thing.custom"),
            "a RabbitMQ queue has no name for a custom event"
        );
        let mut hook = s.clone();
        hook.target = SinkTarget::Webhook(WebhookTarget::default());
        assert!(hook.wants("a", None, "linq.thing.custom"));
        assert!(!s.wants("b", None, "messages.upsert"));
    }

    #[test]
    fn event_filter_accepts_any_spelling_of_listed_kinds() {
        let s = sub(Scope::AllInstances, vec![EventKind::MessagesUpdate]);
        assert!(s.wants("x", None, "messages.update"));
        assert!(!s.wants("x", None, "messages.upsert"));
        assert!(!s.wants("x", None, "linq.custom"));
    }

    #[test]
    fn custom_events_alone_select_only_themselves() {
        let mut s = sub(Scope::AllInstances, vec![]);
        s.custom_events = vec!["linq.phone_number.status_updated".into()];
        assert!(s.wants("x", None, "linq.phone_number.status_updated"));
        assert!(!s.wants("x", None, "messages.upsert"));
        assert!(!s.wants("x", None, "linq.other"));
    }

    #[test]
    fn phone_filter_matches_instance_number() {
        let mut s = sub(Scope::AllInstances, vec![]);
        s.phone_numbers = vec!["+5511999990000".into()];
        assert!(s.wants("x", Some("5511999990000"), "call"));
        assert!(!s.wants("x", Some("5511999990001"), "call"));
        assert!(!s.wants("x", None, "call"));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let target = WebhookTarget {
            secret: Some("whsec_topsecret".into()),
            ..WebhookTarget::default()
        };
        let shown = format!("{target:?}");
        assert!(!shown.contains("topsecret") && shown.contains("redacted"));
    }

    #[test]
    fn disabled_wants_nothing() {
        let mut s = sub(Scope::AllInstances, vec![]);
        s.enabled = false;
        assert!(!s.wants("x", None, "call"));
    }
}
