//! Linq (iMessage / RCS / SMS) webhooks: one event per request,
//! `{"api_version":"v3","webhook_version":"2026-02-03","event_type":"message.received",
//! "event_id":"...","created_at":"...","trace_id":"...","partner_id":"...","data":{...}}`.
//! Both payload versions are read (2026-02-03: `data.id`, `data.chat.id`,
//! `data.sender_handle`; 2025-01-01: `data.message.id`, `data.chat_id`, `data.from`), and the
//! v2 API's event names where they differ.
//!
//! | Linq `event_type` | Evolution event |
//! |---|---|
//! | message.received | messages.upsert (`fromMe: false`) |
//! | message.sent | send.message (`fromMe: true`) |
//! | message.delivered / message.read / message.failed | messages.update (DELIVERY_ACK / READ / ERROR) |
//! | message.edited | messages.edited |
//! | reaction.added (v2: reaction.sent, reaction.received) | messages.upsert of a `reactionMessage` |
//! | reaction.removed | messages.upsert of a `reactionMessage` with empty text (WhatsApp's removal) |
//! | participant.added / participant.removed | group-participants.update (add / remove) |
//! | chat.created | chats.upsert |
//! | chat.group_name_updated / chat.group_icon_updated | groups.update |
//! | chat.typing_indicator.started / .stopped (v2: typing_indicator.received / .removed) | presence.update (composing / paused) |
//! | call.initiated, ringing, answered, ended, failed, declined, no_answer (v2: call.completed) | call (offer, ringing, accept, terminate, terminate, reject, timeout) |
//! | contact.created / contact.updated (v2) | contacts.upsert / contacts.update |
//! | anything else (phone_number.status_updated, chat.group_*_update_failed, ...) | `linq.<event_type>` (custom), `data` = Linq's `data` verbatim |
//!
//! `raw` is the whole body. Linq chat ids are not WhatsApp JIDs; they are used as
//! `remoteJid` as given. The dedupe key uses the message id for message events (so a
//! message re-announced under a new `event_id` is still stored once) and Linq's
//! `event_id` for everything else.

use serde_json::value::RawValue;
use serde_json::Value;

mod mapping;

use super::json;
use super::{dedupe_key, AdapterError, EventBuilder, IncomingEvent};

const P: &str = "linq";

const MESSAGE_ID: &[&[&str]] = &[&["id"], &["message", "id"], &["message_id"]];
const CHAT_ID: &[&[&str]] = &[&["chat", "id"], &["chat_id"]];
const HANDLE: &[&[&str]] = &[
    &["sender_handle", "handle"],
    &["from"],
    &["handle", "handle"],
    &["handle"],
    &["participant", "handle"],
    &["participant_handle"],
    &["from_handle"],
];

/// Normalizes one Linq webhook body.
pub fn normalize(body: &[u8]) -> Result<Vec<IncomingEvent>, AdapterError> {
    let obj = json::body_object(P, body)?;
    let raw: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|e| AdapterError::invalid(P, "$", format!("not JSON: {e}")))?;
    // Only the envelope fields the mapping reads; absent ones stay absent so a missing
    // `event_type` is reported as missing, not as null.
    let mut env = serde_json::Map::new();
    for name in ["event_type", "event_id", "created_at"] {
        if let Some(r) = obj.get(name) {
            env.insert(name.to_string(), json::value(P, name, r)?);
        }
    }
    let env = Value::Object(env);
    let event_type = json::req_str(P, "", &env, "event_type")?;
    super::check_event_token(P, "event_type", event_type)?;
    let event_id = json::opt_str(P, "", &env, "event_id")?;
    let created_at = json::rfc3339_seconds(json::str_at(&env, &["created_at"]));
    let data_raw = obj
        .get("data")
        .copied()
        .ok_or_else(|| AdapterError::invalid(P, "data", "required field is missing"))?;
    let data = json::value(P, "data", data_raw)?;
    if !data.is_object() {
        return Err(AdapterError::invalid(
            P,
            "data",
            format!("expected an object, got {}", json::type_name(&data)),
        ));
    }
    let d = Linq {
        data: &data,
        event_type,
        event_id,
        created_at,
    };
    let b = EventBuilder { source: P };
    let Some(mapped) = d.map()? else {
        // No Evolution counterpart: keep Linq's event under its own name, data verbatim.
        let name = format!("{P}.{event_type}");
        let dedupe = event_id.map(|id| dedupe_key(P, "", id, &name, ""));
        return Ok(vec![IncomingEvent {
            event: name,
            data: data_raw.to_owned(),
            sender: None,
            source: Some(P),
            raw: Some(raw),
            dedupe_key: dedupe,
        }]);
    };
    Ok(vec![b.build(
        mapped.event,
        "data",
        &mapped.data,
        &raw,
        d.owner(),
        mapped.dedupe,
    )?])
}

/// One mapped event.
struct Mapped {
    event: &'static str,
    data: Value,
    dedupe: Option<String>,
}

/// The parts of a Linq payload the mapping reads.
struct Linq<'a> {
    data: &'a Value,
    event_type: &'a str,
    event_id: Option<&'a str>,
    created_at: Option<i64>,
}
