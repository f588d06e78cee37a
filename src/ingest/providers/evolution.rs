//! Evolution API's own webhook envelope, as its webhook sink sends it:
//! `{"event":"messages.upsert","instance":"x","data":{...},"destination":"...",
//! "date_time":"...","sender":"...@s.whatsapp.net","server_url":"...","apikey":null}`.
//!
//! `data` is already in Evolution's shape and is stored verbatim; there is no `raw`: it would
//! repeat `data` and carry the gateway's `apikey` and `destination` URL (`?token=`). The
//! API adds the redacted body when `ingest.keep_evolution_raw` asks for it.
//! The `event` may be in any spelling [`EventKind::parse`] accepts. In by-events mode
//! Evolution posts to `{url}/{kebab-event}`; the path's event is used when the body has
//! none, and a body that names a different event is an error (a misrouted or forged
//! post). The body's `instance` is Evolution's name for it and is not checked: the
//! Switchyard instance in the URL is authoritative.

use serde_json::Value;

use super::json::{self, str_at};
use super::{dedupe_key, AdapterError, IncomingEvent};
use crate::catalog::EventKind;

const P: &str = "evolution";

/// Normalizes one Evolution webhook body. `path_event` is the `{kebab-event}` segment of a
/// by-events URL, if any.
pub fn normalize(
    body: &[u8],
    path_event: Option<&str>,
) -> Result<Vec<IncomingEvent>, AdapterError> {
    let obj = json::body_object(P, body)?;
    let body_kind = match obj.get("event") {
        None => None,
        Some(raw) => match json::value(P, "event", raw)? {
            Value::Null => None,
            Value::String(name) => Some(parse_event(&name).map_err(|_| {
                AdapterError::invalid(P, "event", format!("{name:?} is not an Evolution event"))
            })?),
            other => {
                return Err(AdapterError::invalid(
                    P,
                    "event",
                    format!("expected a string, got {}", json::type_name(&other)),
                ))
            }
        },
    };
    let path_kind = path_event
        .map(|name| {
            parse_event(name).map_err(|_| {
                AdapterError::invalid(
                    P,
                    "(url event)",
                    format!("{name:?} is not an Evolution event"),
                )
            })
        })
        .transpose()?;
    let kind = match (body_kind, path_kind) {
        (Some(b), Some(p)) if b != p => {
            return Err(AdapterError::invalid(
                P,
                "event",
                format!("body says {} but the URL names {}", b.dotted(), p.dotted()),
            ))
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(AdapterError::invalid(
                P,
                "event",
                "required field is missing (and the URL names no event)",
            ))
        }
    };
    let data_raw = match obj.get("data") {
        Some(raw) if raw.get().trim() != "null" => *raw,
        _ => {
            return Err(AdapterError::invalid(
                P,
                "data",
                "required field is missing",
            ))
        }
    };
    let sender = match obj.get("sender") {
        None => None,
        Some(raw) => match json::value(P, "sender", raw)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            other => {
                return Err(AdapterError::invalid(
                    P,
                    "sender",
                    format!("expected a string, got {}", json::type_name(&other)),
                ))
            }
        },
    };
    let dedupe = message_dedupe_key(kind, data_raw);
    Ok(vec![IncomingEvent {
        event: kind.dotted().to_string(),
        data: data_raw.to_owned(),
        sender,
        source: Some(P),
        raw: None,
        dedupe_key: dedupe,
    }])
}

/// Any spelling of an event. The dotted and kebab names Evolution actually sends are
/// matched without allocating; [`EventKind::parse`] (which builds every spelling to
/// compare) handles the rest.
fn parse_event(name: &str) -> Result<EventKind, crate::catalog::UnknownEvent> {
    EventKind::all()
        .find(|k| k.dotted() == name)
        .map(Ok)
        .unwrap_or_else(|| EventKind::parse(name))
}

/// The dedupe key of a message event: Baileys' key (chat, direction, id) plus the status.
/// Other events, and message events without an id, get none.
fn message_dedupe_key(kind: EventKind, data: &serde_json::value::RawValue) -> Option<String> {
    use EventKind::*;
    if !matches!(
        kind,
        MessagesUpsert
            | MessagesEdited
            | MessagesDelete
            | MessagesUpdate
            | SendMessage
            | SendMessageUpdate
    ) {
        return None;
    }
    let v: Value = serde_json::from_str(data.get()).ok()?;
    let id = json::first_str(&v, &[&["key", "id"], &["keyId"]])?;
    let chat = json::first_str(&v, &[&["key", "remoteJid"], &["remoteJid"]]).unwrap_or("");
    let from_me = json::at(&v, &["key", "fromMe"])
        .or_else(|| v.get("fromMe"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let status = str_at(&v, &["status"]).unwrap_or("");
    Some(dedupe_key(
        P,
        &format!("{chat}|{from_me}"),
        id,
        kind.dotted(),
        status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_spelling_and_path_event_agree() {
        let body = br#"{"event":"MESSAGES_UPSERT","instance":"i","data":{"key":{"id":"A","remoteJid":"1@s.whatsapp.net","fromMe":false}}}"#;
        let ev = normalize(body, Some("messages-upsert")).unwrap();
        assert_eq!(ev[0].event, "messages.upsert");
        assert_eq!(
            ev[0].dedupe_key.as_deref(),
            Some("evolution|1@s.whatsapp.net|false|A|messages.upsert|")
        );
    }

    #[test]
    fn mismatch_is_an_error() {
        let body = br#"{"event":"messages.update","data":{}}"#;
        let err = normalize(body, Some("messages-upsert")).unwrap_err();
        assert_eq!(err.field(), "event");
    }
}
