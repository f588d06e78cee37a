//! The registration table: every sink the server knows, one line each.
//!
//! A line names the sink's kind, the per-subscription settings type its folder defines and
//! its descriptor; [`SinkKind`], [`SinkTarget`] and [`SINKS`] are generated from the lines,
//! so a sink listed here is known everywhere at once, and a match over sinks can never miss
//! one.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::descriptor::SinkDescriptor;
use super::{kafka, nats, pusher, rabbitmq, sqs, webhook};

/// Generates the types of the table from its lines: `Kind(TargetType) => DESCRIPTOR`.
macro_rules! sink_table {
    ($($(#[$doc:meta])* $kind:ident($target:ty) => $descriptor:path,)*) => {
        /// A kind of per-instance sink setting (`/{kind}/set/{instance}`) and of subscription
        /// target: the key of a [`crate::sinks::SinkRegistry`]. Stored in control records by
        /// its name, so a variant is never renamed.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum SinkKind {
            $($(#[$doc])* $kind,)*
            /// WebSocket and socket.io listeners: per-instance settings without a sink, since
            /// listeners read the log themselves (`crate::websocket`).
            Websocket,
        }

        impl SinkKind {
            /// Every kind: the table's, then the listeners'.
            pub const ALL: &'static [SinkKind] = &[$(SinkKind::$kind,)* SinkKind::Websocket];

            /// The sink behind this kind (none for the listeners).
            pub fn descriptor(self) -> Option<&'static SinkDescriptor> {
                match self {
                    $(SinkKind::$kind => Some(&$descriptor),)*
                    SinkKind::Websocket => None,
                }
            }
        }

        /// Where a subscription's events go: its sink, with the settings that sink's folder
        /// defines. Stored in control records as `{"sink": "<name>", ...settings}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "sink", rename_all = "snake_case")]
        pub enum SinkTarget {
            $($(#[$doc])* $kind($target),)*
        }

        impl SinkTarget {
            /// The sink kind that serves this target (the key of the engine's sink registry).
            pub fn kind(&self) -> SinkKind {
                match self {
                    $(SinkTarget::$kind(_) => SinkKind::$kind,)*
                }
            }
        }

        /// Every sink's descriptor, in table order.
        pub static SINKS: &[&SinkDescriptor] = &[$(&$descriptor,)*];
    };
}

sink_table! {
    /// HTTP webhooks.
    Webhook(webhook::WebhookTarget) => webhook::SINK,
    /// RabbitMQ.
    Rabbitmq(rabbitmq::RabbitmqTarget) => rabbitmq::SINK,
    /// Amazon SQS (or a compatible server).
    Sqs(sqs::SqsTarget) => sqs::SINK,
    /// Kafka topics.
    Kafka(kafka::KafkaTarget) => kafka::SINK,
    /// NATS subjects (JetStream-acked where a stream captures them).
    Nats(nats::NatsTarget) => nats::SINK,
    /// Pusher Channels apps.
    Pusher(pusher::PusherTarget) => pusher::SINK,
}

impl SinkKind {
    /// The name in routes, bodies, subscription ids and metrics labels (`/rabbitmq/set`,
    /// `{"rabbitmq":{...}}`): the descriptor's.
    pub fn as_str(self) -> &'static str {
        self.descriptor().map_or("websocket", |d| d.name)
    }

    /// Parses a route segment.
    pub fn parse(name: &str) -> Option<SinkKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SinkTarget {
    /// Whether "all events" includes custom (provider-only) events for this target (see
    /// [`SinkDescriptor::carries_custom_events`]).
    pub fn carries_custom_events(&self) -> bool {
        self.kind()
            .descriptor()
            .is_some_and(|d| d.carries_custom_events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_descriptors_names() {
        for kind in SinkKind::ALL.iter().copied() {
            let stored = serde_json::to_value(kind).unwrap();
            assert_eq!(stored, serde_json::json!(kind.as_str()));
            assert_eq!(SinkKind::parse(kind.as_str()), Some(kind));
        }
        let names: Vec<&str> = SINKS.iter().map(|d| d.name).collect();
        let kinds: Vec<&str> = SinkKind::ALL
            .iter()
            .filter_map(|k| k.descriptor())
            .map(|d| d.name)
            .collect();
        assert_eq!(names, kinds);
    }

    #[test]
    fn every_sink_owns_a_config_section_named_after_it() {
        let config = serde_json::to_value(crate::config::Config::default()).unwrap();
        for sink in SINKS {
            assert!(
                config[sink.name].is_object(),
                "`Config` has no `{}` section",
                sink.name
            );
            let section = &sink.config;
            let own = |key: &str| {
                key.strip_prefix(sink.name)
                    .is_some_and(|k| k.starts_with('.'))
            };
            let keys = section
                .evolution_env
                .iter()
                .map(|(_, key)| *key)
                .chain(section.event_list.map(|(_, key)| key))
                .chain(section.list_keys.iter().copied());
            for key in keys {
                assert!(own(key), "{}: `{key}` is another section's key", sink.name);
            }
        }
    }

    #[test]
    fn a_target_is_stored_under_its_kinds_name() {
        let target = SinkTarget::Rabbitmq(rabbitmq::RabbitmqTarget { global: true });
        let stored = serde_json::to_value(&target).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"sink": "rabbitmq", "global": true})
        );
        let read: SinkTarget = serde_json::from_value(stored).unwrap();
        assert_eq!(read, target);
    }
}
