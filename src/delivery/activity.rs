//! Per-instance activity: when each instance last had an event, a `messages.upsert`, and
//! whether its gateway last reported the connection closed. Fed by every partition's
//! delivery tail (`router::tail`), which reads each record once anyway; read by the alerts
//! watcher (`switchyard.instance.silent`) and by `/metrics`
//! (`switchyard_instance_silence_seconds`).
//!
//! The tail pays for it on every record, so it reads only the record header (instance and
//! event name, no JSON) and takes one lock per batch; only a `connection.update`, which is
//! rare, is decoded to read its `state`. Times are the log's receive times, so a restart
//! that reads a backlog again sees the instance as silent since its true last event.
//! The server's own events (`switchyard.*`) are not activity: a silent instance's
//! `switchyard.instance.silent` must not end its own silence.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::catalog::OPERATIONAL_PREFIX;
use crate::envelope::{header_instance_event, LoggedEvent};
use crate::log::Record;

/// What was seen of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Receive time of its newest event, UTC milliseconds.
    pub last_event_ms: i64,
    /// Receive time of its newest `messages.upsert`, if it had one.
    pub last_message_ms: Option<i64>,
    /// Receive time of a `connection.update` with `state: close` that no other
    /// `connection.update` followed.
    pub closed_at_ms: Option<i64>,
}

/// Every instance's [`Seen`], shared by the partitions' tails.
#[derive(Debug, Default)]
pub struct Activity {
    instances: Mutex<HashMap<Box<str>, Seen>>,
}

/// The part of a `connection.update`'s `data` read here.
#[derive(Deserialize)]
struct ConnectionState<'a> {
    #[serde(borrow, default)]
    state: Option<std::borrow::Cow<'a, str>>,
}

impl Activity {
    /// Notes the events of `records` (consecutive records of one partition). Records
    /// without a header (written before headers existed) are not counted.
    pub fn observe(&self, records: &[Record]) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            let Some((instance, event)) = header_instance_event(&record.payload) else {
                continue;
            };
            if event.starts_with(OPERATIONAL_PREFIX) {
                continue;
            }
            // One hash lookup per record; a name is copied only the first time.
            match instances.get_mut(instance) {
                Some(seen) => note(seen, event, record),
                None => {
                    let mut seen = Seen::default();
                    note(&mut seen, event, record);
                    instances.insert(instance.into(), seen);
                }
            }
        }
    }

    /// A copy of every instance's activity.
    pub fn snapshot(&self) -> Vec<(String, Seen)> {
        let instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances
            .iter()
            .map(|(name, seen)| (name.to_string(), *seen))
            .collect()
    }

    /// Forgets an instance (deleted: its silence is not news).
    pub fn forget(&self, instance: &str) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.remove(instance);
    }
}

/// Notes one record of the instance `seen` describes.
fn note(seen: &mut Seen, event: &str, record: &Record) {
    let at = record.timestamp_ms;
    seen.last_event_ms = seen.last_event_ms.max(at);
    match event {
        "messages.upsert" => {
            seen.last_message_ms = Some(seen.last_message_ms.map_or(at, |m| m.max(at)));
        }
        "connection.update" => {
            seen.closed_at_ms = connection_closed(record).then_some(at);
        }
        _ => {}
    }
}

/// Whether a `connection.update` record says `state: close` (Evolution's closed session).
fn connection_closed(record: &Record) -> bool {
    let Ok(event) = LoggedEvent::decode(record) else {
        return false;
    };
    serde_json::from_str::<ConnectionState<'_>>(event.event.data.get())
        .ok()
        .and_then(|c| c.state)
        .is_some_and(|state| state == "close")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StoredEvent;

    fn record(sequence: u64, at: i64, instance: &str, event: &str, data: &str) -> Record {
        let stored = StoredEvent {
            id: uuid::Uuid::now_v7(),
            instance: instance.into(),
            instance_id: None,
            event: event.into(),
            chat: None,
            data: serde_json::value::RawValue::from_string(data.into()).expect("JSON"),
            sender: None,
            source: None,
            raw: None,
            key: None,
            request: None,
        };
        Record {
            sequence,
            timestamp_ms: at,
            payload: stored.to_bytes().expect("encodes"),
        }
    }

    #[test]
    fn tracks_events_messages_and_closed_connections_but_not_its_own_events() {
        let activity = Activity::default();
        activity.observe(&[
            record(1, 100, "a", "messages.upsert", "{}"),
            record(2, 200, "a", "presence.update", "{}"),
            record(3, 250, "b", "connection.update", r#"{"state":"close"}"#),
            record(4, 900, "a", "switchyard.instance.silent", "{}"),
        ]);
        let mut all = activity.snapshot();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            all,
            vec![
                (
                    "a".to_string(),
                    Seen {
                        last_event_ms: 200,
                        last_message_ms: Some(100),
                        closed_at_ms: None
                    }
                ),
                (
                    "b".to_string(),
                    Seen {
                        last_event_ms: 250,
                        last_message_ms: None,
                        closed_at_ms: Some(250)
                    }
                ),
            ]
        );
        activity.observe(&[record(
            5,
            300,
            "b",
            "connection.update",
            r#"{"state":"open"}"#,
        )]);
        let b = activity.snapshot().into_iter().find(|(n, _)| n == "b");
        assert_eq!(b.map(|(_, s)| s.closed_at_ms), Some(None));
        activity.forget("a");
        assert_eq!(activity.snapshot().len(), 1);
    }
}
