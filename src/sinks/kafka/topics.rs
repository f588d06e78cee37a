//! Topic names and topic existence: each topic is created (or, without auto-creation,
//! looked up) once, before the first produce to it, and remembered.
//!
//! Kafka brokers commonly refuse to auto-create topics (and Tansu never does), so producing
//! to a new `{prefix}.{instance}.{event}` topic would otherwise stall until
//! `message.timeout.ms`. Creating it first with the configured partitions and replication
//! factor is what Evolution's `KAFKA_AUTO_CREATE_TOPICS` promises.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::producer::{client_config, KafkaSinkError};
use super::KafkaOptions;
use crate::catalog::kafka_topic;
use crate::envelope::LoggedEvent;

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_LEN: usize = 249;

/// How long one admin request (create, metadata) may take before it counts as failed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a topic cannot be produced to (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name breaks Kafka's rules (an instance or custom event name with characters
    /// outside `[A-Za-z0-9._-]`, or too long): will never work.
    #[error("invalid Kafka topic name `{topic}`: {reason}")]
    Invalid {
        /// The name.
        topic: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Auto-creation is off and the topic does not exist.
    #[error("Kafka topic `{topic}` does not exist and kafka.auto_create_topics is off")]
    Missing {
        /// The name.
        topic: String,
    },
    /// Creating or looking up the topic failed (broker down, not authorized, ...).
    #[error("cannot prepare Kafka topic `{topic}`: {reason}")]
    Admin {
        /// The name.
        topic: String,
        /// The broker's or client's error.
        reason: String,
    },
}

impl TopicError {
    /// Whether waiting can help (everything but an invalid name).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, TopicError::Invalid { .. })
    }
}

/// The topic an event goes to: global mode uses `{prefix}.global.{event}`, per-instance mode
/// `{prefix}.{instance}.{event}` (names from `catalog`, custom events included).
pub fn topic_for(prefix: &str, global: bool, event: &LoggedEvent) -> String {
    let instance = (!global).then_some(event.event.instance.as_str());
    kafka_topic(prefix, instance, &event.event.event)
}

/// Checks a topic name against Kafka's rules.
fn validate(topic: &str) -> Result<(), TopicError> {
    let invalid = |reason| {
        Err(TopicError::Invalid {
            topic: topic.to_owned(),
            reason,
        })
    };
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return invalid("must be 1 to 249 characters long");
    }
    if topic == "." || topic == ".." {
        return invalid("must not be `.` or `..`");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// The topics known to exist, and the admin client that creates or finds the others.
pub(super) struct Topics {
    /// Shared with blocking metadata look-ups, which run on the blocking pool.
    admin: Arc<AdminClient<DefaultClientContext>>,
    known: Mutex<HashSet<String>>,
    auto_create: bool,
    num_partitions: i32,
    replication_factor: i32,
}

impl Topics {
    /// An admin client with the sink's connection settings (SASL/SSL included).
    pub(super) fn new(options: &KafkaOptions) -> Result<Topics, KafkaSinkError> {
        Ok(Topics {
            admin: Arc::new(client_config(options).create()?),
            known: Mutex::new(HashSet::new()),
            auto_create: options.auto_create_topics,
            num_partitions: options.num_partitions,
            replication_factor: options.replication_factor,
        })
    }

    fn is_known(&self, topic: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.contains(topic)
    }

    fn remember(&self, topic: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(topic.to_owned());
    }

    /// Makes sure `topic` exists: created when auto-creation is on ("already exists" counts
    /// as success), looked up otherwise. Only successes are cached, so a topic created by
    /// an operator later is found on the next attempt.
    pub(super) async fn ensure(&self, topic: &str) -> Result<(), TopicError> {
        if self.is_known(topic) {
            return Ok(());
        }
        validate(topic)?;
        if self.auto_create {
            self.create(topic).await?;
        } else {
            self.look_up(topic).await?;
        }
        self.remember(topic);
        Ok(())
    }

    async fn create(&self, topic: &str) -> Result<(), TopicError> {
        let admin_error = |reason: String| TopicError::Admin {
            topic: topic.to_owned(),
            reason,
        };
        let new = NewTopic::new(
            topic,
            self.num_partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| admin_error(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(admin_error(code.to_string())),
            }
        }
        Ok(())
    }

    async fn look_up(&self, topic: &str) -> Result<(), TopicError> {
        let admin = self.admin.clone();
        let name = topic.to_owned();
        // librdkafka's metadata call blocks its thread until the broker answers.
        let found = tokio::task::spawn_blocking(move || {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(&name), ADMIN_TIMEOUT)
                .map_err(|e| e.to_string())?;
            Ok::<bool, String>(
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty()),
            )
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match found {
            Ok(true) => Ok(()),
            Ok(false) => Err(TopicError::Missing {
                topic: topic.to_owned(),
            }),
            Err(reason) => Err(TopicError::Admin {
                topic: topic.to_owned(),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate("evolution.inst-1.messages.upsert").is_ok());
        assert!(validate("p.i_2.linq.message_received").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "evolution.my inst.call",
            "evolution.ção.call",
        ] {
            let err = validate(bad).unwrap_err();
            assert!(!err.is_retryable(), "{bad}");
        }
        assert!(validate(&"a".repeat(250)).is_err());
        assert!(validate(&"a".repeat(249)).is_ok());
    }
}
