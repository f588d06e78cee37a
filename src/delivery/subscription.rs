//! What a subscription is: a sink target, a scope, an event filter and a start position.
//!
//! The registry projects its control records into these; the delivery engine runs one
//! cursor per subscription `id`. Ids are stable across restarts because cursors, dead
//! letters and retry state are keyed by them.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::EventKind;
pub use crate::filter::Filter;
pub use crate::sinks::SinkTarget;

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
    /// Which events; empty means all (as Evolution does while the sink is enabled), the
    /// operational `switchyard.*` ones excepted: those only when listed.
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
    /// Which of the events it selects by scope and name it receives, by content
    /// (`"filter"` in the sink object, [`Filter`]); empty = all. Compiled once when the
    /// subscription starts or changes; an event it drops still moves the cursor.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub filter: Filter,
}

/// A subscription's delivery policy: what its sink object's `"policy"` says. Every field is
/// optional; an absent one means the server's default, so changing a default in config
/// changes every subscription that did not choose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Which events keep their relative order (`chat`, `instance` or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<OrderBy>,
    /// Attempts per event, the first included, before it is dead-lettered (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The waits after the first, second, ... failed attempt, in milliseconds, instead of
    /// the exponential schedule; the last one repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delays_ms: Option<Vec<u64>>,
    /// A webhook request's timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// HTTP statuses that dead-letter at once instead of being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_retryable_status_codes: Option<Vec<u16>>,
    /// Most events per second, over all of the subscription's lanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Most lanes (chats, with `ordering = chat`) in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Consecutive failed attempts after which the subscription is disabled; 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_after_failures: Option<u32>,
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

/// Everything the delivery engine needs from the registry, published whole on every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionSet {
    /// Every cursor-driven subscription, enabled or not.
    pub subscriptions: Vec<Subscription>,
    /// Instance name -> the instance's own number, for phone-number filters.
    pub instance_numbers: HashMap<String, String>,
    /// Instance name -> its token, sent as `apikey` in envelopes; empty unless
    /// `auth.expose_in_envelope` is set.
    pub instance_tokens: HashMap<String, Arc<str>>,
}

impl Subscription {
    /// Whether this subscription wants an event of `instance` named `event` (dotted).
    /// `instance_number` is the instance's own number, for `phone_numbers` filters.
    pub fn wants(&self, instance: &str, instance_number: Option<&str>, event: &str) -> bool {
        self.enabled && self.selects(instance, instance_number, event)
    }

    /// Whether the subscription's scope covers `instance`.
    pub fn covers(&self, instance: &str) -> bool {
        match &self.scope {
            Scope::Instance(name) => name == instance,
            Scope::AllInstances => true,
        }
    }

    /// [`Subscription::wants`], enabled or not: what its scope and filters select.
    pub fn selects(&self, instance: &str, instance_number: Option<&str>, event: &str) -> bool {
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
            // "Every event" is Evolution's: the server's own events are opt-in.
            return !kind.is_some_and(EventKind::is_operational);
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
    use crate::sinks::rabbitmq::RabbitmqTarget;
    use crate::sinks::webhook::WebhookTarget;

    fn sub(scope: Scope, events: Vec<EventKind>) -> Subscription {
        Subscription {
            policy: Default::default(),
            filter: Default::default(),
            id: "t".into(),
            target: SinkTarget::Rabbitmq(RabbitmqTarget { global: false }),
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
    fn operational_events_only_when_listed() {
        let all = sub(Scope::AllInstances, vec![]);
        assert!(!all.wants("x", None, "switchyard.instance.silent"));
        let mut hook = all.clone();
        hook.target = SinkTarget::Webhook(WebhookTarget::default());
        assert!(!hook.wants("x", None, "switchyard.subscription.failing"));
        let listed = sub(
            Scope::AllInstances,
            vec![EventKind::SwitchyardInstanceSilent],
        );
        assert!(listed.wants("x", None, "switchyard.instance.silent"));
        assert!(!listed.wants("x", None, "switchyard.subscription.failing"));
    }

    #[test]
    fn disabled_wants_nothing() {
        let mut s = sub(Scope::AllInstances, vec![]);
        s.enabled = false;
        assert!(!s.wants("x", None, "call"));
    }
}
