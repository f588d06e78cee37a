//! The event catalog: one canonical id per Evolution event type, and every spelling of it.
//!
//! Evolution API (and CodeChat before it) spells the same event many ways: `MESSAGES_UPSERT`
//! in subscription lists and env keys, `messages.upsert` in the envelope, `messages-upsert`
//! as a webhook URL suffix, `messagesUpsert` in CodeChat's per-event booleans, and derived
//! queue and topic names in each broker. Consumers break when one of those drifts, so every
//! spelling is computed here, from one table, by one function each.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// One Evolution event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ApplicationStartup,
    InstanceCreate,
    InstanceDelete,
    QrcodeUpdated,
    ConnectionUpdate,
    StatusInstance,
    MessagesSet,
    MessagesUpsert,
    MessagesEdited,
    MessagesUpdate,
    MessagesDelete,
    SendMessage,
    SendMessageUpdate,
    ContactsSet,
    ContactsUpsert,
    ContactsUpdate,
    PresenceUpdate,
    ChatsSet,
    ChatsUpsert,
    ChatsUpdate,
    ChatsDelete,
    GroupsUpsert,
    GroupsUpdate,
    GroupParticipantsUpdate,
    Call,
    TypebotStart,
    TypebotChangeStatus,
    LabelsEdit,
    LabelsAssociation,
    RemoveInstance,
    LogoutInstance,
    /// Operational (`switchyard.*`): a subscription failed `alerts.failing_after` times in a row.
    SwitchyardSubscriptionFailing,
    /// Operational: a failing subscription delivered again.
    SwitchyardSubscriptionRecovered,
    /// Operational: the server disabled a subscription (a failure run, 410 Gone).
    SwitchyardSubscriptionDisabled,
    /// Operational: a subscription dead-lettered an event.
    SwitchyardSubscriptionDeadLettered,
    /// Operational: a subscription's lag stayed above `alerts.lag_threshold`.
    SwitchyardSubscriptionLagExceeded,
    /// Operational: an instance went silent (no events, no messages, or connection closed).
    SwitchyardInstanceSilent,
}

/// The table every spelling derives from: (kind, dotted name as Evolution emits it).
///
/// The dotted name is the one fact that cannot be derived (`group-participants.update`
/// keeps a hyphen, `typebot.change-status` too); everything else follows by rule.
const TABLE: &[(EventKind, &str)] = &[
    (EventKind::ApplicationStartup, "application.startup"),
    (EventKind::InstanceCreate, "instance.create"),
    (EventKind::InstanceDelete, "instance.delete"),
    (EventKind::QrcodeUpdated, "qrcode.updated"),
    (EventKind::ConnectionUpdate, "connection.update"),
    (EventKind::StatusInstance, "status.instance"),
    (EventKind::MessagesSet, "messages.set"),
    (EventKind::MessagesUpsert, "messages.upsert"),
    (EventKind::MessagesEdited, "messages.edited"),
    (EventKind::MessagesUpdate, "messages.update"),
    (EventKind::MessagesDelete, "messages.delete"),
    (EventKind::SendMessage, "send.message"),
    (EventKind::SendMessageUpdate, "send.message.update"),
    (EventKind::ContactsSet, "contacts.set"),
    (EventKind::ContactsUpsert, "contacts.upsert"),
    (EventKind::ContactsUpdate, "contacts.update"),
    (EventKind::PresenceUpdate, "presence.update"),
    (EventKind::ChatsSet, "chats.set"),
    (EventKind::ChatsUpsert, "chats.upsert"),
    (EventKind::ChatsUpdate, "chats.update"),
    (EventKind::ChatsDelete, "chats.delete"),
    (EventKind::GroupsUpsert, "groups.upsert"),
    (EventKind::GroupsUpdate, "groups.update"),
    (
        EventKind::GroupParticipantsUpdate,
        "group-participants.update",
    ),
    (EventKind::Call, "call"),
    (EventKind::TypebotStart, "typebot.start"),
    (EventKind::TypebotChangeStatus, "typebot.change-status"),
    (EventKind::LabelsEdit, "labels.edit"),
    (EventKind::LabelsAssociation, "labels.association"),
    (EventKind::RemoveInstance, "remove.instance"),
    (EventKind::LogoutInstance, "logout.instance"),
];

/// The server's own events (`switchyard.*`): spelled by the same rules as Evolution's, but
/// never part of "every event" (an empty event list, `EventKind::all`), only delivered to
/// subscriptions that list them, and written only by the server (ingest refuses them).
const OPERATIONAL: &[(EventKind, &str)] = &[
    (
        EventKind::SwitchyardSubscriptionFailing,
        "switchyard.subscription.failing",
    ),
    (
        EventKind::SwitchyardSubscriptionRecovered,
        "switchyard.subscription.recovered",
    ),
    (
        EventKind::SwitchyardSubscriptionDisabled,
        "switchyard.subscription.disabled",
    ),
    (
        EventKind::SwitchyardSubscriptionDeadLettered,
        "switchyard.subscription.dead_lettered",
    ),
    (
        EventKind::SwitchyardSubscriptionLagExceeded,
        "switchyard.subscription.lag_exceeded",
    ),
    (
        EventKind::SwitchyardInstanceSilent,
        "switchyard.instance.silent",
    ),
];

/// The namespace of the server's own events: no gateway event may use it.
pub const OPERATIONAL_PREFIX: &str = "switchyard.";

/// CodeChat names that do not follow the camelCase rule.
const CODECHAT_EXCEPTIONS: &[(EventKind, &str)] = &[
    (EventKind::QrcodeUpdated, "qrcodeUpdate"),
    (EventKind::StatusInstance, "stateInstance"),
    (EventKind::GroupsUpdate, "groupUpdate"),
];

/// An event name that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event `{name}`; valid events are: {}", EventKind::every().map(EventKind::upper).collect::<Vec<_>>().join(", "))]
pub struct UnknownEvent {
    /// The name as given.
    pub name: String,
}

impl EventKind {
    /// Every Evolution event kind, in catalog order: what "all events" means. The
    /// operational ones are not in it (see [`EventKind::operational`]).
    pub fn all() -> impl Iterator<Item = EventKind> {
        TABLE.iter().map(|(kind, _)| *kind)
    }

    /// The server's own events (`switchyard.*`), subscribable only by name.
    pub fn operational() -> impl Iterator<Item = EventKind> {
        OPERATIONAL.iter().map(|(kind, _)| *kind)
    }

    /// Every kind a name can select: Evolution's, then the operational ones.
    pub fn every() -> impl Iterator<Item = EventKind> {
        Self::all().chain(Self::operational())
    }

    /// Whether this is one of the server's own events (`switchyard.*`).
    pub fn is_operational(self) -> bool {
        OPERATIONAL.iter().any(|(kind, _)| *kind == self)
    }

    /// Every UPPER name, for error messages that list the valid ones.
    pub fn all_upper() -> Vec<String> {
        Self::all().map(|k| k.upper()).collect()
    }

    /// `messages.upsert`: the envelope's `event` field, and the socket.io event name.
    pub fn dotted(self) -> &'static str {
        TABLE
            .iter()
            .chain(OPERATIONAL)
            .find(|(kind, _)| *kind == self)
            .map(|(_, dotted)| *dotted)
            .unwrap_or_default()
    }

    /// `MESSAGES_UPSERT`: subscription lists and env keys (`WEBHOOK_EVENTS_MESSAGES_UPSERT`).
    pub fn upper(self) -> String {
        self.dotted().replace(['.', '-'], "_").to_ascii_uppercase()
    }

    /// `messages-upsert`: the suffix a by-events webhook appends to its URL.
    pub fn kebab(self) -> String {
        self.upper().replace('_', "-").to_ascii_lowercase()
    }

    /// `messagesUpsert`: CodeChat's per-event boolean field names.
    pub fn codechat(self) -> String {
        if let Some((_, name)) = CODECHAT_EXCEPTIONS.iter().find(|(k, _)| *k == self) {
            return (*name).to_string();
        }
        let mut out = String::new();
        for (i, word) in self.upper().split('_').enumerate() {
            let lower = word.to_ascii_lowercase();
            if i == 0 {
                out.push_str(&lower);
            } else {
                let mut chars = lower.chars();
                if let Some(first) = chars.next() {
                    out.push(first.to_ascii_uppercase());
                    out.extend(chars);
                }
            }
        }
        out
    }

    /// RabbitMQ routing key: the dotted name.
    pub fn rabbitmq_routing_key(self) -> &'static str {
        self.dotted()
    }

    /// RabbitMQ queue in per-instance mode: `{instance}.{dotted}`.
    pub fn rabbitmq_instance_queue(self, instance: &str) -> String {
        format!("{instance}.{}", self.dotted())
    }

    /// RabbitMQ queue in global mode: `{prefix}.{dotted}`, or just `{dotted}` when the prefix
    /// is unset (Evolution would create `undefined.{dotted}` queues there).
    pub fn rabbitmq_global_queue(self, prefix: Option<&str>) -> String {
        match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => format!("{prefix}.{}", self.dotted()),
            None => self.dotted().to_string(),
        }
    }

    /// `messages_upsert`: the event part of SQS queue names.
    pub fn sqs_event(self) -> String {
        self.upper().to_ascii_lowercase()
    }

    /// SQS FIFO queue in per-instance mode: `{instance}_{event}.fifo`.
    pub fn sqs_instance_queue(self, instance: &str) -> String {
        format!("{instance}_{}.fifo", self.sqs_event())
    }

    /// SQS FIFO queue in global mode: `{prefix}_{event}.fifo`.
    pub fn sqs_global_queue(self, prefix: &str) -> String {
        format!("{prefix}_{}.fifo", self.sqs_event())
    }

    /// The one SQS queue used when global mode forces a single queue.
    pub fn sqs_single_queue(prefix: &str) -> String {
        format!("{prefix}_singlequeue.fifo")
    }

    /// Kafka topic in per-instance mode: `{prefix}.{instance}.{dotted}`.
    pub fn kafka_instance_topic(self, prefix: &str, instance: &str) -> String {
        format!("{prefix}.{instance}.{}", self.dotted())
    }

    /// Kafka topic in global mode: `{prefix}.global.{dotted}`.
    pub fn kafka_global_topic(self, prefix: &str) -> String {
        format!("{prefix}.global.{}", self.dotted())
    }

    /// Parses any spelling: UPPER, dotted, kebab or CodeChat camelCase; `GROUP_UPDATE` is
    /// accepted as Evolution's own lists spell `GROUPS_UPDATE` that way.
    pub fn parse(name: &str) -> Result<EventKind, UnknownEvent> {
        let trimmed = name.trim();
        if trimmed.eq_ignore_ascii_case("GROUP_UPDATE") || trimmed == "group.update" {
            return Ok(EventKind::GroupsUpdate);
        }
        // Dotted, UPPER, kebab and mixed spellings: the dotted name with `.` and `-` read
        // as `_`, in any case. Compared byte by byte, because delivery parses the name of
        // every event it filters and this must not allocate.
        let fold = |b: u8| match b {
            b'.' | b'-' => b'_',
            b => b.to_ascii_uppercase(),
        };
        let same_name = |dotted: &str| {
            dotted.len() == trimmed.len()
                && dotted
                    .bytes()
                    .zip(trimmed.bytes())
                    .all(|(d, t)| fold(d) == fold(t))
        };
        if let Some((kind, _)) = TABLE
            .iter()
            .chain(OPERATIONAL)
            .find(|(_, dotted)| same_name(dotted))
        {
            return Ok(*kind);
        }
        static CODECHAT: LazyLock<Vec<(String, EventKind)>> =
            LazyLock::new(|| EventKind::every().map(|k| (k.codechat(), k)).collect());
        if let Some((_, kind)) = CODECHAT.iter().find(|(name, _)| name == trimmed) {
            return Ok(*kind);
        }
        Err(UnknownEvent {
            name: name.to_string(),
        })
    }

    /// Parses a list of names; the first unknown one is the error.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<EventKind>, UnknownEvent> {
        names.iter().map(|n| Self::parse(n.as_ref())).collect()
    }
}

/// The Kafka topic of an event by name: per instance (`{prefix}.{instance}.{dotted}`) or,
/// with `instance = None`, global (`{prefix}.global.{dotted}`). Catalog events use their
/// dotted name whatever spelling `event` has; custom events (a provider's own names such as
/// `linq.message_received`) follow the same pattern with their name as stored, so a
/// consumer can subscribe to `{prefix}.{instance}.linq.*` the way it does for Evolution's.
pub fn kafka_topic(prefix: &str, instance: Option<&str>, event: &str) -> String {
    match (EventKind::parse(event), instance) {
        (Ok(kind), Some(instance)) => kind.kafka_instance_topic(prefix, instance),
        (Ok(kind), None) => kind.kafka_global_topic(prefix),
        (Err(_), Some(instance)) => format!("{prefix}.{instance}.{}", event.trim()),
        (Err(_), None) => format!("{prefix}.global.{}", event.trim()),
    }
}

/// The Kafka record key of an event on a global topic: Evolution's `{instance}-{event}`,
/// the event in its dotted name (the envelope's `event`) whatever spelling `event` has;
/// custom events keep their name as stored, as in [`kafka_topic`].
pub fn kafka_global_key(instance: &str, event: &str) -> String {
    match EventKind::parse(event) {
        Ok(kind) => format!("{instance}-{}", kind.dotted()),
        Err(_) => format!("{instance}-{}", event.trim()),
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dotted())
    }
}

impl FromStr for EventKind {
    type Err = UnknownEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.upper())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventKind::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kafka_global_keys_are_instance_dash_dotted_event() {
        assert_eq!(
            kafka_global_key("inst", "MESSAGES_UPSERT"),
            "inst-messages.upsert"
        );
        assert_eq!(
            kafka_global_key("inst", "group-participants.update"),
            "inst-group-participants.update"
        );
        assert_eq!(
            kafka_global_key("inst", "linq.message_received"),
            "inst-linq.message_received"
        );
    }

    #[test]
    fn kafka_topics_by_name_cover_catalog_and_custom_events() {
        assert_eq!(
            kafka_topic("evolution", Some("inst"), "MESSAGES_UPSERT"),
            "evolution.inst.messages.upsert"
        );
        assert_eq!(
            kafka_topic("evolution", None, "messages.upsert"),
            "evolution.global.messages.upsert"
        );
        assert_eq!(
            kafka_topic("p", Some("inst"), "linq.message_received"),
            "p.inst.linq.message_received"
        );
        assert_eq!(kafka_topic("p", None, "linq.foo"), "p.global.linq.foo");
    }

    #[test]
    fn spellings_match_evolution() {
        let k = EventKind::GroupParticipantsUpdate;
        assert_eq!(k.dotted(), "group-participants.update");
        assert_eq!(k.upper(), "GROUP_PARTICIPANTS_UPDATE");
        assert_eq!(k.kebab(), "group-participants-update");
        assert_eq!(k.codechat(), "groupParticipantsUpdate");
        assert_eq!(k.rabbitmq_routing_key(), "group-participants.update");
        assert_eq!(
            k.rabbitmq_instance_queue("inst"),
            "inst.group-participants.update"
        );
        assert_eq!(
            k.sqs_instance_queue("inst"),
            "inst_group_participants_update.fifo"
        );
        assert_eq!(
            k.kafka_instance_topic("evolution", "inst"),
            "evolution.inst.group-participants.update"
        );
        assert_eq!(
            EventKind::SendMessageUpdate.sqs_instance_queue("a"),
            "a_send_message_update.fifo"
        );
        assert_eq!(
            EventKind::TypebotChangeStatus.kebab(),
            "typebot-change-status"
        );
        assert_eq!(EventKind::MessagesUpsert.codechat(), "messagesUpsert");
        assert_eq!(EventKind::QrcodeUpdated.codechat(), "qrcodeUpdate");
        assert_eq!(EventKind::StatusInstance.codechat(), "stateInstance");
        assert_eq!(EventKind::GroupsUpdate.codechat(), "groupUpdate");
        assert_eq!(EventKind::Call.upper(), "CALL");
        assert_eq!(
            EventKind::MessagesUpsert.kafka_global_topic("evolution"),
            "evolution.global.messages.upsert"
        );
        assert_eq!(
            EventKind::MessagesUpsert.sqs_global_queue("global"),
            "global_messages_upsert.fifo"
        );
        assert_eq!(
            EventKind::sqs_single_queue("global"),
            "global_singlequeue.fifo"
        );
    }

    #[test]
    fn global_rabbitmq_queue_never_says_undefined() {
        let k = EventKind::MessagesUpsert;
        assert_eq!(k.rabbitmq_global_queue(None), "messages.upsert");
        assert_eq!(k.rabbitmq_global_queue(Some("")), "messages.upsert");
        assert_eq!(k.rabbitmq_global_queue(Some("evo")), "evo.messages.upsert");
    }

    #[test]
    fn group_update_is_an_alias() {
        assert_eq!(
            EventKind::parse("GROUP_UPDATE"),
            Ok(EventKind::GroupsUpdate)
        );
        assert_eq!(
            EventKind::parse("GROUPS_UPDATE"),
            Ok(EventKind::GroupsUpdate)
        );
        assert_eq!(
            EventKind::parse("groups.update"),
            Ok(EventKind::GroupsUpdate)
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = EventKind::parse("MESSAGES_UPSERTED").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("MESSAGES_UPSERTED"));
        assert!(text.contains("MESSAGES_UPSERT,"));
        assert!(text.contains("LOGOUT_INSTANCE"));
    }

    #[test]
    fn every_spelling_is_distinct_across_kinds() {
        let all: Vec<_> = EventKind::all().collect();
        assert_eq!(all.len(), 31);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.dotted(), b.dotted());
                assert_ne!(a.upper(), b.upper());
                assert_ne!(a.kebab(), b.kebab());
                assert_ne!(a.codechat(), b.codechat());
                assert_ne!(a.sqs_event(), b.sqs_event());
            }
        }
    }

    #[test]
    fn operational_events_are_spelled_by_the_same_rules_and_never_in_all() {
        let k = EventKind::SwitchyardSubscriptionDeadLettered;
        assert_eq!(k.dotted(), "switchyard.subscription.dead_lettered");
        assert_eq!(k.upper(), "SWITCHYARD_SUBSCRIPTION_DEAD_LETTERED");
        assert_eq!(k.kebab(), "switchyard-subscription-dead-lettered");
        assert_eq!(k.codechat(), "switchyardSubscriptionDeadLettered");
        assert_eq!(
            EventKind::SwitchyardInstanceSilent.rabbitmq_instance_queue("inst"),
            "inst.switchyard.instance.silent"
        );
        assert_eq!(
            EventKind::SwitchyardInstanceSilent.sqs_instance_queue("inst"),
            "inst_switchyard_instance_silent.fifo"
        );
        assert_eq!(
            kafka_topic("evolution", None, "switchyard.subscription.failing"),
            "evolution.global.switchyard.subscription.failing"
        );
        assert!(EventKind::all().all(|k| !k.is_operational()));
        assert_eq!(EventKind::operational().count(), 6);
        assert!(EventKind::operational().all(|k| k.dotted().starts_with(OPERATIONAL_PREFIX)));
        let every: Vec<_> = EventKind::every().collect();
        for (i, a) in every.iter().enumerate() {
            for b in &every[i + 1..] {
                assert_ne!(a.upper(), b.upper());
                assert_ne!(a.codechat(), b.codechat());
            }
        }
    }

    fn any_kind() -> impl Strategy<Value = EventKind> {
        let every: Vec<EventKind> = EventKind::every().collect();
        (0..every.len()).prop_map(move |i| every[i])
    }

    proptest! {
        #[test]
        fn every_spelling_round_trips(kind in any_kind()) {
            prop_assert_eq!(EventKind::parse(kind.dotted()), Ok(kind));
            prop_assert_eq!(EventKind::parse(&kind.upper()), Ok(kind));
            prop_assert_eq!(EventKind::parse(&kind.kebab()), Ok(kind));
            prop_assert_eq!(EventKind::parse(&kind.codechat()), Ok(kind));
            prop_assert_eq!(EventKind::parse(kind.rabbitmq_routing_key()), Ok(kind));
            prop_assert_eq!(EventKind::parse(&kind.sqs_event()), Ok(kind));
            let queue = kind.rabbitmq_instance_queue("inst-1");
            prop_assert_eq!(EventKind::parse(queue.strip_prefix("inst-1.").unwrap_or_default()), Ok(kind));
            let sqs = kind.sqs_instance_queue("inst-1");
            let middle = sqs.strip_prefix("inst-1_").and_then(|s| s.strip_suffix(".fifo")).unwrap_or_default();
            prop_assert_eq!(EventKind::parse(middle), Ok(kind));
            let topic = kind.kafka_instance_topic("evolution", "inst-1");
            prop_assert_eq!(EventKind::parse(topic.strip_prefix("evolution.inst-1.").unwrap_or_default()), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap_or_default();
            prop_assert_eq!(serde_json::from_str::<EventKind>(&json).ok(), Some(kind));
        }

        #[test]
        fn arbitrary_text_never_panics(name in ".{0,40}") {
            let _ = EventKind::parse(&name);
        }
    }
}
