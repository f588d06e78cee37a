//! Cloud API items (messages, statuses, calls) in Evolution's shapes.

use serde_json::{json, Map, Value};

use super::P;
use crate::ingest::providers::json::{self, str_at};
use crate::ingest::providers::{dedupe_key, user_jid, AdapterError};

/// A Cloud API message as Evolution's `messages.upsert` data, and its dedupe key.
pub(super) fn message(
    path: &str,
    v: &Value,
    contacts: &Value,
) -> Result<(Value, String), AdapterError> {
    let id = json::req_str(P, path, v, "id")?;
    let from = json::req_str(P, path, v, "from")?;
    let kind = json::req_str(P, path, v, "type")?;
    let remote = user_jid(from);
    let push_name = contacts.as_array().and_then(|cs| {
        cs.iter()
            .find(|c| str_at(c, &["wa_id"]) == Some(from))
            .or_else(|| cs.first())
            .and_then(|c| str_at(c, &["profile", "name"]))
    });
    let (message_type, content) = content(kind, v, &remote);
    let mut data = Map::new();
    data.insert(
        "key".into(),
        json!({ "remoteJid": remote, "fromMe": false, "id": id }),
    );
    data.insert("pushName".into(), json!(push_name));
    data.insert("message".into(), content);
    data.insert("messageType".into(), json!(message_type));
    data.insert(
        "messageTimestamp".into(),
        json!(json::timestamp(v.get("timestamp"))),
    );
    if let Some(c) = v.get("context") {
        let mut ctx = Map::new();
        if let Some(q) = str_at(c, &["id"]) {
            ctx.insert("stanzaId".into(), json!(q));
        }
        if let Some(p) = str_at(c, &["from"]) {
            ctx.insert("participant".into(), json!(user_jid(p)));
        }
        if let Some(f) = c.get("forwarded").or_else(|| c.get("frequently_forwarded")) {
            ctx.insert("isForwarded".into(), f.clone());
        }
        data.insert("contextInfo".into(), Value::Object(ctx));
    }
    data.insert("source".into(), json!("cloud_api"));
    let key = dedupe_key(P, &format!("{remote}|false"), id, "messages.upsert", "");
    Ok((Value::Object(data), key))
}

/// Baileys' content for a Cloud API message type: (messageType, message).
fn content(kind: &str, v: &Value, remote: &str) -> (String, Value) {
    let body = v.get(kind).cloned().unwrap_or(Value::Null);
    let pick = |fields: &[(&str, &str)]| {
        let mut m = Map::new();
        for (from, to) in fields {
            if let Some(x) = body.get(*from).filter(|x| !x.is_null()) {
                m.insert((*to).to_string(), x.clone());
            }
        }
        m
    };
    let media = [
        ("id", "mediaId"),
        ("mime_type", "mimetype"),
        ("sha256", "fileSha256"),
        ("caption", "caption"),
        ("filename", "fileName"),
        ("url", "url"),
    ];
    let (t, m) = match kind {
        "text" => {
            return (
                "conversation".into(),
                json!({ "conversation": str_at(&body, &["body"]).unwrap_or("") }),
            )
        }
        "image" => ("imageMessage", pick(&media)),
        "video" => ("videoMessage", pick(&media)),
        "document" => ("documentMessage", pick(&media)),
        "sticker" => ("stickerMessage", pick(&media)),
        "audio" => {
            let mut m = pick(&media);
            m.insert(
                "ptt".into(),
                json!(body.get("voice").and_then(Value::as_bool).unwrap_or(false)),
            );
            ("audioMessage", m)
        }
        "location" => (
            "locationMessage",
            pick(&[
                ("latitude", "degreesLatitude"),
                ("longitude", "degreesLongitude"),
                ("name", "name"),
                ("address", "address"),
                ("url", "url"),
            ]),
        ),
        "reaction" => {
            let mut m = Map::new();
            // The reacted-to message is one we sent (Cloud API only notifies inbound).
            m.insert(
                "key".into(),
                json!({ "remoteJid": remote, "fromMe": true, "id": body.get("message_id") }),
            );
            // No emoji means the reaction was removed, as in WhatsApp itself.
            m.insert(
                "text".into(),
                json!(str_at(&body, &["emoji"]).unwrap_or("")),
            );
            ("reactionMessage", m)
        }
        "button" => (
            "buttonsResponseMessage",
            pick(&[
                ("payload", "selectedButtonId"),
                ("text", "selectedDisplayText"),
            ]),
        ),
        "interactive" => match str_at(&body, &["type"]) {
            Some("button_reply") => {
                let r = body.get("button_reply").cloned().unwrap_or(Value::Null);
                let mut m = Map::new();
                m.insert(
                    "selectedButtonId".into(),
                    r.get("id").cloned().unwrap_or(Value::Null),
                );
                m.insert(
                    "selectedDisplayText".into(),
                    r.get("title").cloned().unwrap_or(Value::Null),
                );
                ("buttonsResponseMessage", m)
            }
            Some("list_reply") => {
                let r = body.get("list_reply").cloned().unwrap_or(Value::Null);
                let mut m = Map::new();
                m.insert(
                    "title".into(),
                    r.get("title").cloned().unwrap_or(Value::Null),
                );
                m.insert(
                    "description".into(),
                    r.get("description").cloned().unwrap_or(Value::Null),
                );
                m.insert(
                    "singleSelectReply".into(),
                    json!({ "selectedRowId": r.get("id") }),
                );
                ("listResponseMessage", m)
            }
            _ => {
                let mut m = Map::new();
                m.insert("cloudApi".into(), body.clone());
                ("interactiveResponseMessage", m)
            }
        },
        "contacts" => {
            let list = v
                .get("contacts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let contacts: Vec<Value> = list
                .iter()
                .map(|c| json!({ "displayName": c.pointer("/name/formatted_name"), "cloudApi": c }))
                .collect();
            let mut m = Map::new();
            m.insert("contacts".into(), Value::Array(contacts));
            ("contactsArrayMessage", m)
        }
        other => {
            // No Baileys counterpart: keep Meta's own object under `<type>Message`.
            let name = format!("{other}Message");
            return (name.clone(), json!({ name: body }));
        }
    };
    (t.to_string(), json!({ t: Value::Object(m) }))
}

/// A Cloud API status as Evolution's `messages.update` data, and its dedupe key.
pub(super) fn status(path: &str, v: &Value) -> Result<(Value, String), AdapterError> {
    let id = json::req_str(P, path, v, "id")?;
    let meta_status = json::req_str(P, path, v, "status")?;
    let status = match meta_status {
        "sent" => "SERVER_ACK",
        "delivered" => "DELIVERY_ACK",
        "read" => "READ",
        "played" => "PLAYED",
        "failed" => "ERROR",
        "deleted" => "DELETED",
        _ => "UNKNOWN",
    };
    let remote = json::opt_str(P, path, v, "recipient_id")?.map(user_jid);
    let mut data = json!({
        "keyId": id,
        "remoteJid": remote,
        "fromMe": true,
        "status": status,
        "messageTimestamp": json::timestamp(v.get("timestamp")),
    });
    if let (Some(errors), Some(obj)) = (v.get("errors"), data.as_object_mut()) {
        obj.insert("errors".into(), errors.clone());
    }
    let scope = format!("{}|true", remote.as_deref().unwrap_or(""));
    Ok((data, dedupe_key(P, &scope, id, "messages.update", status)))
}

/// A Cloud API call event as Baileys' call shape, and its dedupe key.
pub(super) fn call(path: &str, v: &Value) -> Result<(Value, String), AdapterError> {
    let id = json::req_str(P, path, v, "id")?;
    let event = json::opt_str(P, path, v, "event")?.unwrap_or("");
    let from = json::opt_str(P, path, v, "from")?.map(user_jid);
    let status = match event {
        "connect" => "offer",
        "terminate" => "terminate",
        other => other,
    };
    let data = json!({
        "id": id,
        "from": from,
        "chatId": from,
        "date": json::timestamp(v.get("timestamp")),
        "isVideo": false,
        "isGroup": false,
        "status": status,
        "direction": v.get("direction"),
    });
    let key = dedupe_key(P, from.as_deref().unwrap_or(""), id, "call", status);
    Ok((data, key))
}
