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
//!
//! What was seen survives a restart: the alerts watcher stores it with its episodes and
//! seeds it back ([`Activity::seed`]). Every field is a maximum of receive times (the
//! connection state goes with the newest `connection.update`), so a seeded [`Seen`] and what
//! a tail reads again of a backlog merge to the same result in any order
//! ([`Seen::merge`]).

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
    /// Receive time of its newest `connection.update`, whatever its state: an older one read
    /// again (a backlog after a restart) must not reopen or close the connection.
    pub connection_update_ms: Option<i64>,
}

impl Seen {
    /// Adds what `other` saw: the same as having read both's records, in any order.
    pub fn merge(&mut self, other: &Seen) {
        self.last_event_ms = self.last_event_ms.max(other.last_event_ms);
        self.last_message_ms = self.last_message_ms.max(other.last_message_ms);
        // The newer connection.update decides; on a tie the one already here stays.
        if other.connection_update_ms > self.connection_update_ms {
            self.connection_update_ms = other.connection_update_ms;
            self.closed_at_ms = other.closed_at_ms;
        }
    }
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

    /// Adds `seen` to what is known of `instance` ([`Seen::merge`]): what an earlier process
    /// saw, restored at start, whether the tail already read newer records or not.
    pub fn seed(&self, instance: &str, seen: &Seen) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        match instances.get_mut(instance) {
            Some(known) => known.merge(seen),
            None => {
                instances.insert(instance.into(), *seen);
            }
        }
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
        // Only a connection.update at least as new as the last one counts: reading an older
        // one again must not undo a newer state.
        "connection.update" if seen.connection_update_ms.is_none_or(|last| at >= last) => {
            seen.connection_update_ms = Some(at);
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
                        closed_at_ms: None,
                        connection_update_ms: None,
                    }
                ),
                (
                    "b".to_string(),
                    Seen {
                        last_event_ms: 250,
                        last_message_ms: None,
                        closed_at_ms: Some(250),
                        connection_update_ms: Some(250),
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

    #[test]
    fn a_seed_and_a_reread_backlog_merge_in_any_order() {
        // Before a restart: messages until 500, closed at 400, open again at 450, then
        // closed at 600. The seed carries that; the tail then reads the backlog again from
        // 100 (an older close and open among it) and one newer event.
        let seed = Seen {
            last_event_ms: 600,
            last_message_ms: Some(500),
            closed_at_ms: Some(600),
            connection_update_ms: Some(600),
        };
        let backlog = [
            record(1, 100, "a", "messages.upsert", "{}"),
            record(2, 400, "a", "connection.update", r#"{"state":"close"}"#),
            record(3, 450, "a", "connection.update", r#"{"state":"open"}"#),
            record(4, 500, "a", "messages.upsert", "{}"),
            record(5, 600, "a", "connection.update", r#"{"state":"close"}"#),
            record(6, 700, "a", "presence.update", "{}"),
        ];
        let expected = Seen {
            last_event_ms: 700,
            ..seed
        };
        for split in 0..=backlog.len() {
            // Seeded before the tail read `split` records, then the rest.
            let activity = Activity::default();
            activity.observe(&backlog[..split]);
            activity.seed("a", &seed);
            activity.observe(&backlog[split..]);
            assert_eq!(
                activity.snapshot(),
                vec![("a".to_string(), expected)],
                "{split}"
            );
        }
        // An older seed adds nothing to newer knowledge.
        let activity = Activity::default();
        activity.observe(&backlog);
        activity.seed(
            "a",
            &Seen {
                last_event_ms: 300,
                last_message_ms: Some(300),
                closed_at_ms: None,
                connection_update_ms: Some(300),
            },
        );
        assert_eq!(activity.snapshot(), vec![("a".to_string(), expected)]);
    }
}
