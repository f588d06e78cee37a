//! [`NatsSink`]: publish a batch in order (with a JetStream ack where a stream captures the
//! subject, core elsewhere), confirm it, classify each event.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::ErrorCode;
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{server_addrs, Capture, Connection};
use super::subject::{check, subject_for};
use super::{NatsError, NatsOptions, NatsTarget};
use crate::delivery::subscription::{SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::{Outcome, Sink};

/// Publishes events to NATS subjects. One value serves every NATS subscription,
/// per-instance and global, over one connection.
pub struct NatsSink {
    connection: Connection,
    options: NatsOptions,
}

/// An event of the batch after its publish: waiting for its confirmation, or decided.
enum Sent {
    /// Published; its stream's ack is due.
    Ack(PublishAckFuture),
    /// Published core; confirmed by the batch's round trip.
    Core,
    /// Decided before or at publishing.
    Done(Outcome),
}

impl NatsSink {
    /// Starts connecting to `options.uri` in the background (call inside a tokio runtime);
    /// the sink's background work runs on `tasks` until `cancel`. Fails only on a URI that
    /// names no server.
    pub async fn start(
        options: NatsOptions,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<NatsSink, NatsError> {
        let addrs = server_addrs(&options.uri).map_err(NatsError::InvalidUri)?;
        let connection = Connection::start(addrs, options.clone(), cancel, tasks).await?;
        Ok(NatsSink {
            connection,
            options,
        })
    }

    /// Waits up to `timeout` for the connection; the error says why there is none.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.connection.unavailable() {
                None => return Ok(()),
                Some(reason) if Instant::now() >= deadline => return Err(reason),
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Publishes `events` in order to their `subjects` until the first failure, which
    /// decides the rest as `Retry` (they would only be duplicates ahead of it).
    async fn publish(
        &self,
        global: bool,
        events: &[LoggedEvent],
        subjects: &[Result<String, Outcome>],
        deadline: Instant,
    ) -> Vec<Sent> {
        let mut sent: Vec<Sent> = Vec::with_capacity(events.len());
        let mut captures: HashMap<&str, Result<Capture, String>> = HashMap::new();
        let mut stopped: Option<String> = None;
        for (event, subject) in events.iter().zip(subjects) {
            let subject = match (subject, &stopped) {
                (Err(outcome), _) => {
                    sent.push(Sent::Done(outcome.clone()));
                    continue;
                }
                (Ok(_), Some(reason)) => {
                    sent.push(Sent::Done(retry(format!(
                        "not sent: an earlier event of the batch failed ({reason})"
                    ))));
                    continue;
                }
                (Ok(subject), None) => subject.as_str(),
            };
            if !captures.contains_key(subject) {
                let left = deadline.saturating_duration_since(Instant::now());
                captures.insert(subject, self.connection.capture(subject, left).await);
            }
            let next = match &captures[subject] {
                Err(reason) => Sent::Done(retry(reason.clone())),
                Ok(capture) => {
                    self.publish_one(*capture, global, subject, event, deadline)
                        .await
                }
            };
            if let Sent::Done(Outcome::Retry { reason, .. }) = &next {
                stopped = Some(reason.clone());
            }
            sent.push(next);
        }
        sent
    }

    /// Publishes one event: a JetStream publish whose ack is awaited later, or a core one.
    async fn publish_one(
        &self,
        capture: Capture,
        global: bool,
        subject: &str,
        event: &LoggedEvent,
        deadline: Instant,
    ) -> Sent {
        let body = Bytes::from(event.envelope(&self.options.server_url).to_vec());
        let headers = headers(event, global);
        let timed_out = || {
            retry(format!(
                "NATS did not take the publish to `{subject}` within {:?}",
                self.options.operation_timeout
            ))
        };
        match capture {
            Capture::Stream => {
                let message = PublishMessage::build().payload(body).headers(headers);
                let publish = self
                    .connection
                    .jetstream
                    .send_publish(subject.to_owned(), message);
                match timeout_at(deadline, publish).await {
                    Ok(Ok(ack)) => Sent::Ack(ack),
                    Ok(Err(e)) => Sent::Done(classify_jetstream(self, subject, &e)),
                    Err(_) => Sent::Done(timed_out()),
                }
            }
            Capture::Core => {
                let publish =
                    self.connection
                        .client
                        .publish_with_headers(subject.to_owned(), headers, body);
                match timeout_at(deadline, publish).await {
                    Ok(Ok(())) => Sent::Core,
                    Ok(Err(e)) => Sent::Done(classify_core(subject, &e)),
                    Err(_) => Sent::Done(timed_out()),
                }
            }
        }
    }
}

/// The headers of an event's message: `Nats-Msg-Id`, which a stream dedupes on (core
/// publishes included), and `event_id`, `event`, `instance` and `sequence` for consumers
/// that route, filter or dedupe without parsing the body.
///
/// `Nats-Msg-Id` is the event id on an instance's subjects and `{id}:global` on the global
/// ones: the same event goes to both when both are on, and a stream capturing both
/// subjects (dedupe is per stream, not per subject) would otherwise keep only the first
/// and a consumer of the other subject would never see the event.
fn headers(event: &LoggedEvent, global: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = event.event.id.to_string();
    let msg_id = if global {
        format!("{id}:global")
    } else {
        id.clone()
    };
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert("event_id", id);
    headers.insert("Content-Type", "application/json");
    headers.insert("event", event.event.event.as_str());
    headers.insert("instance", event.event.instance.as_str());
    headers.insert("sequence", event.sequence.to_string());
    headers
}

/// A JetStream publish or ack that failed: too large for the server or the stream is
/// permanent; anything else (no ack in time, the stream gone, the connection lost) may
/// pass, and what is known about the subject's stream is forgotten so the next attempt
/// looks again.
fn classify_jetstream(
    sink: &NatsSink,
    subject: &str,
    e: &async_nats::jetstream::context::PublishError,
) -> Outcome {
    if e.kind() == PublishErrorKind::MaxPayloadExceeded || too_large_for_stream(e) {
        return Outcome::Permanent {
            reason: format!("NATS refused the message for `{subject}`: {e}"),
        };
    }
    sink.connection.forget(subject);
    retry(format!("JetStream publish to `{subject}` failed: {e}"))
}

/// Whether the stream refused the message as larger than its `max_msg_size`.
fn too_large_for_stream(e: &async_nats::jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|api| api.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
}

/// A core publish the client refused: an invalid subject or a message over `max_payload`
/// never passes; a closed client may after the reconnect.
fn classify_core(subject: &str, e: &async_nats::client::PublishError) -> Outcome {
    use async_nats::client::PublishErrorKind as Kind;
    match e.kind() {
        Kind::MaxPayloadExceeded | Kind::InvalidSubject => Outcome::Permanent {
            reason: format!("NATS refused the message for `{subject}`: {e}"),
        },
        Kind::Send => retry(format!("NATS publish to `{subject}` failed: {e}")),
    }
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        after: None,
        reason,
    }
}

/// Reports `Retry` for every event after the first one that will be retried, so the engine
/// sends the lane's tail again in order behind it (see the module docs). Permanent events
/// go to dead letters and hold nothing back.
fn keep_lane_order(outcomes: &mut [Outcome]) {
    let Some(first) = outcomes
        .iter()
        .position(|o| matches!(o, Outcome::Retry { .. }))
    else {
        return;
    };
    for outcome in &mut outcomes[first + 1..] {
        if *outcome == Outcome::Delivered {
            *outcome = retry(
                "re-sent after an earlier event of its lane failed, to keep its order".into(),
            );
        }
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn max_batch(&self) -> usize {
        self.options.max_batch.max(1)
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let SinkTarget::Nats(NatsTarget { global }) = subscription.target else {
            let reason = format!("subscription `{}` is not a NATS one", subscription.id);
            return vec![Outcome::Permanent { reason }; events.len()];
        };
        if let Some(reason) = self.connection.unavailable() {
            return vec![retry(reason); events.len()];
        }
        let deadline = Instant::now() + self.options.operation_timeout;
        let prefix = self.options.prefix.as_deref();
        let subjects: Vec<Result<String, Outcome>> = events
            .iter()
            .map(|e| {
                let subject = subject_for(global, prefix, e);
                check(&subject)
                    .map(|()| subject)
                    .map_err(|e| Outcome::Permanent {
                        reason: e.to_string(),
                    })
            })
            .collect();
        let sent = self.publish(global, events, &subjects, deadline).await;
        let core = if sent.iter().any(|s| matches!(s, Sent::Core)) {
            let left = deadline.saturating_duration_since(Instant::now());
            Some(self.connection.round_trip(left).await)
        } else {
            None
        };
        let mut outcomes = Vec::with_capacity(sent.len());
        for (item, subject) in sent.into_iter().zip(&subjects) {
            let subject = subject.as_deref().unwrap_or_default();
            outcomes.push(match item {
                Sent::Done(outcome) => outcome,
                Sent::Core => match &core {
                    Some(Ok(())) => Outcome::Delivered,
                    Some(Err(reason)) => retry(reason.clone()),
                    None => retry("not confirmed".into()),
                },
                // Polled once even past the deadline: an ack already in counts.
                Sent::Ack(ack) => match timeout_at(deadline, ack).await {
                    Ok(Ok(_)) => Outcome::Delivered,
                    Ok(Err(e)) => classify_jetstream(self, subject, &e),
                    Err(_) => {
                        self.connection.forget(subject);
                        retry(format!(
                            "no JetStream ack for `{subject}` within {:?}",
                            self.options.operation_timeout
                        ))
                    }
                },
            });
        }
        keep_lane_order(&mut outcomes);
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_makes_every_later_delivered_event_retry() {
        let permanent = Outcome::Permanent {
            reason: "too large".into(),
        };
        let mut outcomes = vec![
            Outcome::Delivered,
            permanent.clone(),
            Outcome::Delivered,
            retry("no ack".into()),
            Outcome::Delivered,
            permanent.clone(),
        ];
        keep_lane_order(&mut outcomes);
        assert_eq!(outcomes[0], Outcome::Delivered);
        assert_eq!(outcomes[1], permanent);
        assert_eq!(outcomes[2], Outcome::Delivered);
        assert!(matches!(outcomes[3], Outcome::Retry { .. }));
        assert!(matches!(outcomes[4], Outcome::Retry { .. }));
        assert_eq!(outcomes[5], permanent);
    }

    #[test]
    fn oversized_and_invalid_messages_are_permanent() {
        use async_nats::client::{PublishError, PublishErrorKind as Kind};
        for kind in [Kind::MaxPayloadExceeded, Kind::InvalidSubject] {
            let outcome = classify_core("s", &PublishError::new(kind));
            assert!(matches!(outcome, Outcome::Permanent { .. }), "{kind:?}");
        }
        let outcome = classify_core("s", &PublishError::new(Kind::Send));
        assert!(matches!(outcome, Outcome::Retry { .. }));
    }

    #[test]
    fn headers_carry_the_event_id_for_dedupe() {
        let event = LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: 42,
            received_at: chrono::Utc::now(),
            event: crate::envelope::StoredEvent {
                id: uuid::Uuid::now_v7(),
                instance: "shop".into(),
                event: "messages.upsert".into(),
                chat: None,
                data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
                sender: None,
                source: None,
                raw: None,
                instance_id: None,
                key: None,
                request: None,
            },
        };
        let h = headers(&event, false);
        let id = event.event.id.to_string();
        assert_eq!(h.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id.as_str()));
        assert_eq!(h.get("event_id").map(|v| v.as_str()), Some(id.as_str()));
        // The same event on a global subject: another message id, so a stream capturing
        // both subjects keeps both.
        let g = headers(&event, true);
        let global_id = format!("{id}:global");
        assert_eq!(
            g.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(global_id.as_str())
        );
        assert_eq!(g.get("event_id").map(|v| v.as_str()), Some(id.as_str()));
        assert_eq!(h.get("sequence").map(|v| v.as_str()), Some("42"));
        assert_eq!(h.get("instance").map(|v| v.as_str()), Some("shop"));
    }
}
