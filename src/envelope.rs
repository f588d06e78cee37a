//! The stored event and the envelope each sink sends.
//!
//! The log stores a [`StoredEvent`] as JSON behind a small header (`log::header`, tags in
//! [`header_tag`]) that repeats what routing reads, the instance, the event name, the
//! chat and the event's filter facts ([`crate::filter::EventFacts`], extracted once when
//! the record is encoded at ingest), so the delivery tail decides where a record goes,
//! and which subscriptions' filters it passes, without scanning its JSON. Records written
//! before the header are JSON alone and still read; records without facts (written before
//! them) have them extracted on read ([`record_facts`]). The sequence and
//! receive time are the log record's own, so they are never stored twice. `data` and `raw`
//! stay raw JSON text from ingest to the wire: no sink re-parses a payload it only
//! forwards.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::filter::EventFacts;
use crate::log::header::{self, HeaderError};
use crate::log::Record;

/// The tags of an event record's header fields (`log::header`); the values are UTF-8 but
/// for [`header_tag::FACTS`].
/// Tags are never reused: a reader skips the ones it does not know.
pub mod header_tag {
    /// The instance name (`StoredEvent::instance`).
    pub const INSTANCE: u8 = 1;
    /// The dotted event name (`StoredEvent::event`).
    pub const EVENT: u8 = 2;
    /// The chat (`StoredEvent::chat`); absent for events about no chat.
    pub const CHAT: u8 = 3;
    /// The event's filter facts, [`crate::filter::EventFacts::to_bytes`] (binary, not
    /// UTF-8; its own version byte first). Absent in records written before it: readers
    /// extract the facts from the JSON then ([`super::record_facts`]).
    pub const FACTS: u8 = 4;
    /// The WhatsApp message id ([`super::message_id`]), empty when the event has none.
    /// Absent in records written before it: readers extract it from the JSON then.
    pub const MESSAGE_ID: u8 = 5;
}

/// What the log stores for one event: the payload of one event-log record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique id, stable across redeliveries (the webhook-id, SQS dedup id, AMQP message_id).
    pub id: Uuid,
    /// The instance the event belongs to.
    pub instance: String,
    /// The id of that instance when the event was stored: names are reused after a delete,
    /// ids never, so a re-created instance never reads its predecessor's events. Absent
    /// in records written before it existed (their receive time decides, see
    /// [`LoggedEvent::belongs_to`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
    /// Dotted event name (`messages.upsert`), or a provider's own name for custom events.
    pub event: String,
    /// The chat the event is about (a JID), derived at ingest by [`crate::chat::chat_of`]:
    /// the ordering key within the instance, the SQS group and the Kafka key. Absent for
    /// events about no chat, and in records written before the field existed (readers
    /// derive it then, see [`LoggedEvent::decode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
    /// The event body, as received (or as normalized from a provider's payload).
    pub data: Box<RawValue>,
    /// The instance owner's JID, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The provider the event came from (`evolution`, `whapi`, `meta`, `linq`); none for
    /// canonical ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The provider's original payload, with credentials redacted; only where it adds to
    /// `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<RawValue>>,
    /// This event's idempotency key: a canonical event's `id`, or a provider's retry key.
    /// Another event with the same key for the same instance within the window is not
    /// stored again (`ingest::idempotency` rebuilds its index from these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The `Idempotency-Key` of the request that stored this event, on every event of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// An event read back from the log: the stored event with its position and receive time.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    /// The log position.
    pub sequence: u64,
    /// When the log accepted it.
    pub received_at: DateTime<Utc>,
    /// The stored fields.
    pub event: StoredEvent,
    /// The WhatsApp message id ([`message_id`]): from the record's header, where ingest put
    /// it once, so the attempt log and lookups never parse `data` for it.
    pub message_id: Option<Box<str>>,
    /// The instance token its envelopes carry as `apikey` (`auth.expose_in_envelope`, as
    /// Evolution's `AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES`); set by whoever sends the
    /// event, never stored.
    pub apikey: Option<std::sync::Arc<str>>,
}

/// A log record that does not hold a valid stored event.
#[derive(Debug, thiserror::Error)]
#[error("record {sequence} is not a valid event")]
pub struct DecodeError {
    /// The record's sequence.
    pub sequence: u64,
    /// What is wrong with it.
    #[source]
    pub source: EventFormatError,
}

/// Why a stored event cannot be encoded, or a record cannot be decoded as one.
#[derive(Debug, thiserror::Error)]
pub enum EventFormatError {
    /// The JSON part.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The header (a field over 64 KiB when encoding; cut short when decoding).
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Event-log records that could not be decoded, counted at every read that met one (a
/// record read by three subscriptions counts three times). Such a record can only come
/// from outside (ingest holds bodies to `ingest::limits`); readers skip it and go on.
static UNREADABLE_READS: AtomicU64 = AtomicU64::new(0);

/// How many reads met an undecodable event record since the process started.
pub fn unreadable_reads() -> u64 {
    UNREADABLE_READS.load(Ordering::Relaxed)
}

impl StoredEvent {
    /// Serializes for appending to the log: the header, then the JSON. An error means
    /// nothing may be appended: the log never holds a default in place of an event.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, EventFormatError> {
        // Sized up front: growing a Vec through a 1 KiB payload was a visible share of
        // ingest CPU (realloc in the profile).
        let raw = self.raw.as_ref().map_or(0, |r| r.get().len());
        let mut out = Vec::with_capacity(self.data.get().len() + raw + 320);
        let mut fields: Vec<(u8, &[u8])> = vec![
            (header_tag::INSTANCE, self.instance.as_bytes()),
            (header_tag::EVENT, self.event.as_bytes()),
        ];
        if let Some(chat) = &self.chat {
            fields.push((header_tag::CHAT, chat.as_bytes()));
        }
        // Extracted here, once per event: ingest encodes each event once.
        let (facts, message) = EventFacts::extract_with_message_id(&self.event, &self.data);
        let facts = facts.to_bytes();
        fields.push((header_tag::FACTS, &facts));
        // A message's id came with its facts (one parse); other kinds are looked at here.
        let message = match message {
            Some(id) => id.and_then(bounded_message_id),
            None => message_id(&self.data),
        };
        fields.push((
            header_tag::MESSAGE_ID,
            message.as_deref().unwrap_or_default().as_bytes(),
        ));
        header::write(&mut out, &fields)?;
        serde_json::to_writer(&mut out, self)?;
        Ok(bytes::Bytes::from(out))
    }
}

/// The JSON part of an event record (what follows its header, if it has one).
pub fn event_json(payload: &[u8]) -> Result<&[u8], HeaderError> {
    header::split(payload).map(|(_, json)| json)
}

/// The instance an event record belongs to, read from its header; `None` for a record
/// without one (written before headers), whose JSON must then be read.
pub fn header_instance(payload: &[u8]) -> Option<&str> {
    let (fields, _) = header::split(payload).ok()?;
    std::str::from_utf8(fields.get(header_tag::INSTANCE)?).ok()
}

/// The instance and event name of an event record, read from its header; `None` for a
/// record without one (written before headers). What per-instance activity tracking reads
/// of every record, without decoding its JSON.
pub fn header_instance_event(payload: &[u8]) -> Option<(&str, &str)> {
    let (fields, _) = header::split(payload).ok()?;
    let instance = std::str::from_utf8(fields.get(header_tag::INSTANCE)?).ok()?;
    let event = std::str::from_utf8(fields.get(header_tag::EVENT)?).ok()?;
    Some((instance, event))
}

/// The filter facts of the event record `payload`, which decodes to `event`: from its
/// header's [`header_tag::FACTS`] field, else (records written before it, or a field that
/// does not read) extracted from the event's `data` as ingest does now.
pub fn record_facts(payload: &[u8], event: &StoredEvent) -> EventFacts {
    header::split(payload)
        .ok()
        .and_then(|(fields, _)| fields.get(header_tag::FACTS))
        .and_then(|bytes| EventFacts::from_bytes(bytes).ok())
        .unwrap_or_else(|| EventFacts::extract(&event.event, &event.data))
}

/// Longest WhatsApp message id kept (longer ones are not ids; they are not indexed).
const MAX_MESSAGE_ID: usize = 256;

/// The WhatsApp message id of an event's `data`: `key.id` (messages, sends, edits), else
/// `keyId` (Evolution's `messages.update`). Parsed only when the text mentions a key;
/// ingest stores it in the record's header ([`header_tag::MESSAGE_ID`]).
pub fn message_id(data: &RawValue) -> Option<String> {
    let text = data.get();
    if !text.trim_start().starts_with('{')
        || memchr::memmem::find(text.as_bytes(), b"\"key").is_none()
    {
        return None;
    }
    #[derive(Deserialize)]
    struct Key<'a> {
        #[serde(borrow, default)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow, default)]
        key: Option<Key<'a>>,
        #[serde(rename = "keyId", borrow, default)]
        key_id: Option<std::borrow::Cow<'a, str>>,
    }
    let parsed: Data<'_> = serde_json::from_str(text).ok()?;
    let id = parsed.key.and_then(|k| k.id).or(parsed.key_id)?;
    bounded_message_id(id.into_owned())
}

/// `id` if it can be a WhatsApp message id: not empty, at most [`MAX_MESSAGE_ID`] bytes.
fn bounded_message_id(id: String) -> Option<String> {
    (!id.is_empty() && id.len() <= MAX_MESSAGE_ID).then_some(id)
}

/// Whether an event stored under `stored_id` (absent in older records) and received at
/// `received_at` belongs to the instance `id` created at `created_at`.
pub fn belongs_to(
    stored_id: Option<Uuid>,
    received_at: DateTime<Utc>,
    id: Uuid,
    created_at: DateTime<Utc>,
) -> bool {
    match stored_id {
        Some(own) => own == id,
        None => received_at >= created_at,
    }
}

impl LoggedEvent {
    /// Decodes an event-log record.
    pub fn decode(record: &Record) -> Result<LoggedEvent, DecodeError> {
        let parsed = event_json(&record.payload)
            .map_err(EventFormatError::from)
            .and_then(|json| Ok(serde_json::from_slice::<StoredEvent>(json)?));
        let mut event = parsed.map_err(|source| {
            UNREADABLE_READS.fetch_add(1, Ordering::Relaxed);
            DecodeError {
                sequence: record.sequence,
                source,
            }
        })?;
        if event.chat.is_none() {
            // Older records carry no chat; an event about none derives none again.
            event.chat = crate::chat::chat_of(&event.event, &event.data);
        }
        let stored_message_id = header::split(&record.payload)
            .ok()
            .and_then(|(fields, _)| fields.get(header_tag::MESSAGE_ID))
            .and_then(|bytes| std::str::from_utf8(bytes).ok());
        let message_id = match stored_message_id {
            Some("") => None,
            Some(id) => Some(id.into()),
            // Written before the header had it.
            None => message_id(&event.data).map(String::into_boxed_str),
        };
        Ok(LoggedEvent {
            message_id,
            sequence: record.sequence,
            received_at: Utc
                .timestamp_millis_opt(record.timestamp_ms)
                .single()
                .unwrap_or_default(),
            event,
            apikey: None,
        })
    }

    /// Whether this event belongs to the instance `id`, created at `created_at`: by its
    /// stored instance id, or, for records older than that field, by being received after
    /// the instance was created.
    pub fn belongs_to(&self, id: Uuid, created_at: DateTime<Utc>) -> bool {
        belongs_to(self.event.instance_id, self.received_at, id, created_at)
    }

    /// The receive time as Evolution's `date_time`: RFC 3339, UTC, milliseconds.
    pub fn date_time(&self) -> String {
        self.received_at
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The envelope with the fields every sink shares; sinks add theirs with the builder
    /// methods before serializing.
    pub fn envelope<'a>(&'a self, server_url: &'a str) -> Envelope<'a> {
        Envelope {
            event: &self.event.event,
            instance: &self.event.instance,
            data: &self.event.data,
            destination: None,
            date_time: self.date_time(),
            sender: self.event.sender.as_deref(),
            server_url,
            apikey: self.apikey.as_deref(),
            id: self.event.id,
            sequence: self.sequence,
            source: self.event.source.as_deref(),
            raw: self.event.raw.as_deref(),
            timestamp: None,
            data_type: None,
            server: None,
        }
    }
}

/// Evolution's envelope plus our `id` and `sequence`; field order follows Evolution's.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// Dotted event name.
    pub event: &'a str,
    /// Instance name.
    pub instance: &'a str,
    /// The event body.
    pub data: &'a RawValue,
    /// Webhook only: the URL the envelope was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a str>,
    /// Receive time, RFC 3339 UTC.
    pub date_time: String,
    /// The instance owner's JID (null when unknown, as Evolution sends it).
    pub sender: Option<&'a str>,
    /// This server's public URL (`SERVER_URL`).
    pub server_url: &'a str,
    /// Evolution sends the instance token here; we send null unless configured to expose it.
    pub apikey: Option<&'a str>,
    /// Unique, stable event id.
    pub id: Uuid,
    /// Log position.
    pub sequence: u64,
    /// Provider the event came from, for provider ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    /// The provider's original payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<&'a RawValue>,
    /// Kafka only: receive time in epoch milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// SQS only: always `"json"`.
    #[serde(rename = "dataType", skip_serializing_if = "Option::is_none")]
    pub data_type: Option<&'static str>,
    /// SQS only: the server name (Evolution sends its `SERVER_NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'a str>,
}

/// Room for an envelope's fields around its `data` (names, ids, times, URLs).
const ENVELOPE_OVERHEAD: usize = 512;

impl Envelope<'_> {
    /// Serializes the envelope to JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // Sized for the body plus the envelope's own fields, so the buffer is not grown
        // (copied) several times per event.
        let mut buf = Vec::with_capacity(self.data.get().len() + ENVELOPE_OVERHEAD);
        // Strings, numbers and already-valid raw JSON: serialization cannot fail.
        match serde_json::to_writer(&mut buf, self) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LoggedEvent {
        let stored = StoredEvent {
            id: Uuid::nil(),
            instance: "inst".into(),
            event: "messages.upsert".into(),
            data: RawValue::from_string(r#"{"key":{"id":"A1"}}"#.into()).unwrap(),
            sender: Some("5511@s.whatsapp.net".into()),
            source: None,
            raw: None,
            instance_id: None,
            key: None,
            request: None,
            chat: None,
        };
        let record = Record {
            sequence: 7,
            timestamp_ms: 1_758_749_877_432,
            payload: stored.to_bytes().unwrap(),
        };
        LoggedEvent::decode(&record).unwrap()
    }

    #[test]
    fn envelope_has_evolution_fields_and_ours() {
        let ev = sample();
        let mut env = ev.envelope("http://localhost:8080");
        env.destination = Some("https://example.com/hook");
        let v: serde_json::Value = serde_json::from_slice(&env.to_vec()).unwrap();
        assert_eq!(v["event"], "messages.upsert");
        assert_eq!(v["instance"], "inst");
        assert_eq!(v["data"]["key"]["id"], "A1");
        assert_eq!(v["destination"], "https://example.com/hook");
        assert_eq!(v["date_time"], "2025-09-24T21:37:57.432Z");
        assert_eq!(v["sender"], "5511@s.whatsapp.net");
        assert_eq!(v["server_url"], "http://localhost:8080");
        assert!(v["apikey"].is_null());
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["id"], "00000000-0000-0000-0000-000000000000");
        assert!(v.get("dataType").is_none());
        assert!(v.get("timestamp").is_none());
    }

    #[test]
    fn broker_envelopes_omit_destination() {
        let ev = sample();
        let v: serde_json::Value =
            serde_json::from_slice(&ev.envelope("http://x").to_vec()).unwrap();
        assert!(v.get("destination").is_none());
    }

    #[test]
    fn a_record_that_is_not_an_event_is_an_error() {
        let record = Record {
            sequence: 3,
            timestamp_ms: 0,
            payload: bytes::Bytes::from_static(b"not json"),
        };
        let err = LoggedEvent::decode(&record).unwrap_err();
        assert_eq!(err.sequence, 3);
    }

    #[test]
    fn facts_come_from_the_header_and_older_records_get_them_extracted() {
        let data = r#"{"key":{"remoteJid":"5511988887777@s.whatsapp.net","fromMe":false,"id":"A1"},"messageType":"imageMessage"}"#;
        let stored = StoredEvent {
            data: RawValue::from_string(data.into()).unwrap(),
            ..sample().event
        };
        let expected = EventFacts::extract(&stored.event, &stored.data);
        assert_eq!(expected.message_type(), Some("imageMessage"));
        let record = stored.to_bytes().unwrap();
        let (fields, _) = header::split(&record).unwrap();
        assert_eq!(
            fields.get(header_tag::FACTS),
            Some(&expected.to_bytes()[..]),
            "stored at encode"
        );
        assert_eq!(record_facts(&record, &stored), expected);
        // A record written before the tag (here: JSON alone) has them extracted on read.
        let old = serde_json::to_vec(&stored).unwrap();
        assert_eq!(record_facts(&old, &stored), expected);
    }

    #[test]
    fn the_message_id_is_stored_in_the_header_and_older_records_get_it_extracted() {
        let record = |data: &str| Record {
            sequence: 9,
            timestamp_ms: 0,
            payload: StoredEvent {
                data: RawValue::from_string(data.into()).unwrap(),
                ..sample().event
            }
            .to_bytes()
            .unwrap(),
        };
        let with = record(r#"{"key":{"remoteJid":"5511@s.whatsapp.net","id":"3EB0C3"}}"#);
        let (fields, _) = header::split(&with.payload).unwrap();
        assert_eq!(fields.get(header_tag::MESSAGE_ID), Some(&b"3EB0C3"[..]));
        assert_eq!(
            LoggedEvent::decode(&with).unwrap().message_id.as_deref(),
            Some("3EB0C3")
        );
        let without = record(r#"{"state":"open"}"#);
        let (fields, _) = header::split(&without.payload).unwrap();
        assert_eq!(
            fields.get(header_tag::MESSAGE_ID),
            Some(&b""[..]),
            "stored as none"
        );
        assert_eq!(LoggedEvent::decode(&without).unwrap().message_id, None);
        // A record written before the tag (JSON alone) has it extracted on read.
        let old = Record {
            payload: bytes::Bytes::from(
                serde_json::to_vec(&LoggedEvent::decode(&with).unwrap().event).unwrap(),
            ),
            ..with
        };
        assert_eq!(
            LoggedEvent::decode(&old).unwrap().message_id.as_deref(),
            Some("3EB0C3")
        );
    }

    #[test]
    fn ingest_reads_the_message_id_with_the_facts_as_message_id_reads_it() {
        for (event, data) in [
            (
                "messages.upsert",
                r#"{"key":{"remoteJid":"5511@s.whatsapp.net","id":"3EB0A1"}}"#,
            ),
            (
                "messages.update",
                r#"{"keyId":"3EB0B2","status":"READ","remoteJid":"x"}"#,
            ),
            ("messages.upsert", r#"{"key":{"id":""}}"#),
            ("messages.upsert", r#"[1,2]"#),
            ("connection.update", r#"{"state":"open"}"#),
            ("my.custom.event", r#"{"key":{"id":"C1"}}"#),
        ] {
            let stored = StoredEvent {
                event: event.into(),
                data: raw(data),
                ..sample().event
            };
            let record = Record {
                sequence: 1,
                timestamp_ms: 0,
                payload: stored.to_bytes().unwrap(),
            };
            assert_eq!(
                LoggedEvent::decode(&record).unwrap().message_id.as_deref(),
                message_id(&stored.data).as_deref(),
                "{event} {data}"
            );
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn message_ids_come_from_key_id_or_key_id_field() {
        let upsert = raw(
            r#"{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0A1"},"message":{"conversation":"hi"}}"#,
        );
        assert_eq!(message_id(&upsert).as_deref(), Some("3EB0A1"));
        let update = raw(r#"{"keyId":"3EB0B2","status":"READ","remoteJid":"x"}"#);
        assert_eq!(message_id(&update).as_deref(), Some("3EB0B2"));
        for none in [
            r#"{"state":"open"}"#,
            r#"[1,2]"#,
            r#"{"key":"text"}"#,
            r#"{"key":{"id":""}}"#,
        ] {
            assert_eq!(message_id(&raw(none)), None, "{none}");
        }
    }
}
