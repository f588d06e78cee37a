//! The Kafka [`Sink`]: one record per event (key, headers, envelope with `timestamp`), the
//! whole batch enqueued at once, every delivery report awaited, each outcome classified.
//!
//! Order: events are enqueued in sequence order, and events with one key go to one
//! partition; the idempotent producer keeps that order through its own retries. When one
//! event of a batch fails, the engine retries it later, after the batch's other events.

use std::collections::HashMap;

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::producer::{producer, KafkaSinkError};
use super::topics::{topic_for, Topics};
use super::KafkaTarget;
use super::{KafkaOptions, KeyBy};
use crate::catalog;
use crate::delivery::subscription::{SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::{Outcome, Sink, Submitted};

/// Produces events to Kafka topics with an idempotent producer.
pub struct KafkaSink {
    producer: FutureProducer,
    topics: Topics,
    options: KafkaOptions,
}

/// One event of a batch on its way: finished (failed before or at enqueue, or its report
/// is in) or waiting for its delivery report.
enum Pending {
    Done(Outcome),
    Waiting(DeliveryFuture),
}

impl KafkaSink {
    /// A sink with its producer and admin client. Connecting is lazy: a broker that is down
    /// now makes sends retry, not start-up fail.
    pub fn new(options: KafkaOptions) -> Result<KafkaSink, KafkaSinkError> {
        Ok(KafkaSink {
            producer: producer(&options)?,
            topics: Topics::new(&options)?,
            options,
        })
    }

    /// Makes sure every topic of the batch exists; returns the failure per topic.
    async fn prepare<'t>(&self, topics: &'t [String]) -> HashMap<&'t str, Outcome> {
        let mut failed = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for topic in topics {
            if !seen.insert(topic.as_str()) {
                continue;
            }
            if let Err(e) = self.topics.ensure(topic).await {
                let outcome = if e.is_retryable() {
                    retry(e.to_string())
                } else {
                    Outcome::Permanent {
                        reason: e.to_string(),
                    }
                };
                failed.insert(topic.as_str(), outcome);
            }
        }
        failed
    }

    /// Enqueues one event. On a full producer queue it waits for the batch's oldest
    /// outstanding report (which frees room) and tries again, so back-pressure never
    /// reorders or drops.
    async fn enqueue(
        &self,
        topic: &str,
        global: bool,
        event: &LoggedEvent,
        pending: &mut [Pending],
        oldest: &mut usize,
    ) -> Pending {
        let mut envelope = event.envelope(&self.options.server_url);
        let timestamp = event.received_at.timestamp_millis();
        envelope.timestamp = Some(timestamp);
        let body = envelope.to_vec();
        let key = record_key(self.options.key_by, global, event);
        let timestamp_text = timestamp.to_string();
        let id = event.event.id.to_string();
        let headers = [
            ("event", event.event.event.as_str()),
            ("instance", event.event.instance.as_str()),
            ("origin", self.options.server_url.as_str()),
            ("timestamp", timestamp_text.as_str()),
            ("event_id", id.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new_with_capacity(5), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(&body)
            .timestamp(timestamp)
            .headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Pending::Waiting(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if !wait_oldest(pending, oldest).await {
                        return Pending::Done(retry("the Kafka producer queue is full".into()));
                    }
                    record = back;
                }
                Err((e, _)) => return Pending::Done(classify(&e)),
            }
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn max_batch(&self) -> usize {
        self.options.max_batch.max(1)
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        self.submit(subscription, events).await.await
    }

    fn pipelines(&self) -> bool {
        true
    }

    async fn submit(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Submitted {
        let SinkTarget::Kafka(KafkaTarget { global }) = subscription.target else {
            let reason = "not a Kafka subscription".to_owned();
            let outcomes = events
                .iter()
                .map(|_| Outcome::Permanent {
                    reason: reason.clone(),
                })
                .collect();
            return Box::pin(std::future::ready(outcomes));
        };
        let prefix = &self.options.topic_prefix;
        let topics: Vec<String> = events
            .iter()
            .map(|e| topic_for(prefix, global, e))
            .collect();
        let failed = self.prepare(&topics).await;
        let mut pending: Vec<Pending> = Vec::with_capacity(events.len());
        let mut oldest = 0;
        for (event, topic) in events.iter().zip(&topics) {
            let next = match failed.get(topic.as_str()) {
                Some(outcome) => Pending::Done(outcome.clone()),
                None => {
                    self.enqueue(topic, global, event, &mut pending, &mut oldest)
                        .await
                }
            };
            pending.push(next);
        }
        // Everything is queued in the producer; the reports arrive in the producer's order.
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(pending.len());
            for item in pending {
                outcomes.push(match item {
                    Pending::Done(outcome) => outcome,
                    Pending::Waiting(mut delivery) => report(&mut delivery).await,
                });
            }
            outcomes
        })
    }
}

/// Awaits the oldest outstanding report of `pending` (from `oldest` on) and records it;
/// false when nothing of this batch is outstanding.
async fn wait_oldest(pending: &mut [Pending], oldest: &mut usize) -> bool {
    while let Some(item) = pending.get_mut(*oldest) {
        *oldest += 1;
        if let Pending::Waiting(delivery) = item {
            let outcome = report(delivery).await;
            *item = Pending::Done(outcome);
            return true;
        }
    }
    false
}

/// What a delivery report says.
async fn report(delivery: &mut DeliveryFuture) -> Outcome {
    match delivery.await {
        Ok(Ok(_)) => Outcome::Delivered,
        Ok(Err((e, _))) => classify(&e),
        Err(_) => retry("the Kafka producer went away before reporting".into()),
    }
}

/// A record over the size limit or to an invalid topic can never succeed; anything else
/// (timeouts, broker down, leader changes, authorization being fixed) may.
fn classify(e: &KafkaError) -> Outcome {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidTopic,
        ) => Outcome::Permanent {
            reason: format!("Kafka refused the message: {e}"),
        },
        _ => retry(format!("Kafka delivery failed: {e}")),
    }
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        after: None,
        reason,
    }
}

/// The message key of an event on its instance's own topic: the instance name, or with
/// [`KeyBy::Chat`] the chat it is about (`StoredEvent::chat`, derived at ingest; the
/// instance when the event is about no chat, as connection updates are).
pub fn message_key(key_by: KeyBy, event: &LoggedEvent) -> String {
    match (&event.event.chat, key_by) {
        (Some(chat), KeyBy::Chat) => chat.clone(),
        _ => event.event.instance.clone(),
    }
}

/// The key of an event's record: [`message_key`] on the instance's own topics; on a global
/// topic Evolution's `{instance}-{event}` ([`catalog::kafka_global_key`]), which keeps each
/// instance's events of the topic in one partition, in order, as the instance key does on
/// its own topics. With [`KeyBy::Chat`] an event about a chat is keyed by the chat in both
/// modes: that setting asks for conversations spread over partitions.
pub fn record_key(key_by: KeyBy, global: bool, event: &LoggedEvent) -> String {
    let by_chat = key_by == KeyBy::Chat && event.event.chat.is_some();
    if global && !by_chat {
        catalog::kafka_global_key(&event.event.instance, &event.event.event)
    } else {
        message_key(key_by, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StoredEvent;
    use serde_json::value::RawValue;

    /// An event as ingest stores it: its chat derived from its data.
    fn event(data: &str) -> LoggedEvent {
        let data = RawValue::from_string(data.into()).unwrap();
        LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: 1,
            received_at: chrono::Utc::now(),
            event: StoredEvent {
                id: uuid::Uuid::now_v7(),
                instance: "inst".into(),
                event: "messages.upsert".into(),
                chat: crate::chat::chat_of("messages.upsert", &data),
                data,
                sender: None,
                source: None,
                raw: None,
                instance_id: None,
                key: None,
                request: None,
            },
        }
    }

    #[test]
    fn keys_are_the_instance_or_the_chat() {
        let with_chat = event(r#"{"key":{"remoteJid":"5511@s.whatsapp.net","id":"A"}}"#);
        assert_eq!(message_key(KeyBy::Instance, &with_chat), "inst");
        assert_eq!(message_key(KeyBy::Chat, &with_chat), "5511@s.whatsapp.net");
        assert_eq!(record_key(KeyBy::Instance, false, &with_chat), "inst");
        assert_eq!(
            record_key(KeyBy::Instance, true, &with_chat),
            "inst-messages.upsert"
        );
        assert_eq!(
            record_key(KeyBy::Chat, true, &with_chat),
            "5511@s.whatsapp.net"
        );
        let no_chat = event(r#"{"state":"open"}"#);
        assert_eq!(
            record_key(KeyBy::Chat, true, &no_chat),
            "inst-messages.upsert"
        );
        for data in [
            r#"{"state":"open"}"#,
            r#"[1,2]"#,
            r#"{"key":{"remoteJid":""}}"#,
        ] {
            assert_eq!(message_key(KeyBy::Chat, &event(data)), "inst", "{data}");
        }
    }

    #[test]
    fn size_and_topic_errors_are_permanent_the_rest_retried() {
        let e = |code| KafkaError::MessageProduction(code);
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidTopic,
        ] {
            assert!(matches!(classify(&e(code)), Outcome::Permanent { .. }));
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(matches!(classify(&e(code)), Outcome::Retry { .. }));
        }
    }
}
