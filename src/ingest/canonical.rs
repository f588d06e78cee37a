//! Our own ingest shape: `{"event":"messages.upsert","data":{...}}` or `{"events":[...]}`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::IncomingEvent;
use crate::catalog::EventKind;

/// Why a canonical body was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Not JSON, or not the expected shape.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A field is missing or breaks a rule.
    #[error("`{field}`: {rule}")]
    Field {
        /// Path of the field (`events[3].data`).
        field: String,
        /// What is wrong.
        rule: String,
    },
    /// An event name not in the catalog.
    #[error("`{field}`: {message}")]
    UnknownEvent {
        /// Path of the field.
        field: String,
        /// The catalog's message, listing the valid names.
        message: String,
    },
    /// More events than one request may carry.
    #[error("a batch holds at most {limit} events; this one has {count}")]
    TooMany {
        /// Events in the request.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Why an operational event (`switchyard.*`) is refused from outside.
pub const OPERATIONAL_RULE: &str =
    "`switchyard.*` events are the server's own (operational events); they cannot be ingested";

/// The longest event `id` a client may give (it is an idempotency key, not a payload).
pub const MAX_EVENT_ID_BYTES: usize = 256;

#[derive(Deserialize)]
struct One {
    event: Option<String>,
    data: Option<Box<RawValue>>,
    sender: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    event: Option<String>,
    data: Option<Box<RawValue>>,
    sender: Option<String>,
    id: Option<String>,
    events: Option<Vec<One>>,
}

fn convert(one: One, path: &str) -> Result<IncomingEvent, CanonicalError> {
    let name = one.event.ok_or_else(|| CanonicalError::Field {
        field: format!("{path}event"),
        rule: "is required".into(),
    })?;
    let kind = EventKind::parse(&name).map_err(|e| CanonicalError::UnknownEvent {
        field: format!("{path}event"),
        message: e.to_string(),
    })?;
    if kind.is_operational() {
        return Err(CanonicalError::Field {
            field: format!("{path}event"),
            rule: OPERATIONAL_RULE.into(),
        });
    }
    let data = one.data.ok_or_else(|| CanonicalError::Field {
        field: format!("{path}data"),
        rule: "is required (an object with the event's body)".into(),
    })?;
    // The client's own event id makes a resent event a duplicate (`idempotency`).
    let dedupe_key = match one.id {
        None => None,
        Some(id) if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES => {
            return Err(CanonicalError::Field {
                field: format!("{path}id"),
                rule: format!("must be 1 to {MAX_EVENT_ID_BYTES} bytes"),
            })
        }
        Some(id) => Some(format!("id:{id}")),
    };
    Ok(IncomingEvent {
        event: kind.dotted().to_string(),
        data,
        sender: one.sender,
        source: None,
        raw: None,
        dedupe_key,
    })
}

/// Parses a canonical body into events, single or batch, at most `max_events`.
pub fn parse(body: &[u8], max_events: usize) -> Result<Vec<IncomingEvent>, CanonicalError> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| CanonicalError::Json(e.to_string()))?;
    match body.events {
        Some(events) => {
            if body.event.is_some() || body.id.is_some() {
                return Err(CanonicalError::Field {
                    field: "event".into(),
                    rule: "give either `event` and `data`, or `events`, not both".into(),
                });
            }
            if events.is_empty() {
                return Err(CanonicalError::Field {
                    field: "events".into(),
                    rule: "must hold at least one event".into(),
                });
            }
            if events.len() > max_events {
                return Err(CanonicalError::TooMany {
                    count: events.len(),
                    limit: max_events,
                });
            }
            events
                .into_iter()
                .enumerate()
                .map(|(i, one)| convert(one, &format!("events[{i}].")))
                .collect()
        }
        None => Ok(vec![convert(
            One {
                event: body.event,
                data: body.data,
                sender: body.sender,
                id: body.id,
            },
            "",
        )?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_batch_in_any_spelling() {
        let one = parse(br#"{"event":"MESSAGES_UPSERT","data":{"a":1}}"#, 10).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event, "messages.upsert");
        assert_eq!(one[0].data.get(), r#"{"a":1}"#);
        let batch = parse(
            br#"{"events":[{"event":"chats.update","data":{}},{"event":"GROUP_UPDATE","data":[1]}]}"#,
            10,
        )
        .unwrap();
        assert_eq!(batch[1].event, "groups.update");
    }

    #[test]
    fn an_event_id_is_its_idempotency_key() {
        let one = parse(br#"{"event":"call","id":"abc","data":{}}"#, 10).unwrap();
        assert_eq!(one[0].dedupe_key.as_deref(), Some("id:abc"));
        let batch = parse(
            br#"{"events":[{"event":"call","id":"x1","data":{}},{"event":"call","data":{}}]}"#,
            10,
        )
        .unwrap();
        assert_eq!(batch[0].dedupe_key.as_deref(), Some("id:x1"));
        assert_eq!(batch[1].dedupe_key, None);
        let err = parse(br#"{"event":"call","id":"","data":{}}"#, 10).unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(
            br#"{"events":[{"event":"call","data":{}},{"event":"nope","data":{}}]}"#,
            10,
        )
        .unwrap_err();
        assert!(err.to_string().contains("events[1].event"), "{err}");
        assert!(err.to_string().contains("MESSAGES_UPSERT"), "{err}");
        let err = parse(br#"{"event":"call"}"#, 10).unwrap_err();
        assert!(err.to_string().contains("`data`"), "{err}");
        assert!(matches!(parse(b"{", 10), Err(CanonicalError::Json(_))));
        assert!(matches!(
            parse(
                br#"{"events":[{"event":"call","data":{}},{"event":"call","data":{}}]}"#,
                1
            ),
            Err(CanonicalError::TooMany { count: 2, limit: 1 })
        ));
        assert!(parse(br#"{"events":[]}"#, 1).is_err());
    }
}
