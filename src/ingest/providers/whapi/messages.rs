//! Whapi messages and statuses into Evolution's `messages.*` events and Baileys' message
//! content (`conversation`, `imageMessage`, `reactionMessage`, ...).

use serde_json::{json, Map, Value};

use super::content::{content, context_info};
use super::{chat_id_field, owner_jid, Ctx, P};
use crate::ingest::providers::json;
use crate::ingest::providers::{dedupe_key, AdapterError, IncomingEvent};

/// `messages.post|put|patch|delete`.
pub(super) fn messages(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    match ctx.verb {
        "post" | "put" => {
            for (path, raw) in ctx.require_items(&["messages"])? {
                let v = json::value(P, &path, raw)?;
                let (event, data, key_id, status) = if ctx.verb == "post" {
                    posted(&path, &v)?
                } else {
                    let mut data = upsert(&path, &v)?;
                    let status = v
                        .get("status")
                        .and_then(Value::as_str)
                        .map(evolution_status);
                    if let (Some(obj), Some(s)) = (data.as_object_mut(), status) {
                        obj.insert("status".into(), json!(s));
                    }
                    let id = json::req_str(P, &path, &v, "id")?.to_string();
                    (
                        "messages.update",
                        data,
                        id,
                        status.unwrap_or("").to_string(),
                    )
                };
                let scope = scope(&v);
                let dedupe = dedupe_key(P, &scope, &key_id, event, &status);
                out.push(
                    ctx.b
                        .build(event, &path, &data, raw, owner_jid(&v), Some(dedupe))?,
                );
            }
        }
        "patch" => {
            for (path, raw) in ctx.require_items(&["messages_updates"])? {
                let v = json::value(P, &path, raw)?;
                let after_path = json::join(&path, "after_update");
                let after = v.get("after_update").ok_or_else(|| {
                    AdapterError::invalid(P, &after_path, "required field is missing")
                })?;
                let mut data = upsert(&after_path, after)?;
                if let Some(obj) = data.as_object_mut() {
                    obj.insert(
                        "before".into(),
                        v.get("before_update").cloned().unwrap_or(Value::Null),
                    );
                    obj.insert("after".into(), after.clone());
                    obj.insert(
                        "changes".into(),
                        v.get("changes").cloned().unwrap_or(json!([])),
                    );
                }
                // An edit is a new version of the message: the changed fields tell versions
                // apart, so a second edit of the same message is never merged with the first.
                let changes = v.get("changes").map(Value::to_string).unwrap_or_default();
                let id = json::req_str(P, &after_path, after, "id")?;
                let status = format!(
                    "{}:{changes}",
                    after
                        .get("timestamp")
                        .map(Value::to_string)
                        .unwrap_or_default()
                );
                let dedupe = dedupe_key(P, &scope(after), id, "messages.edited", &status);
                out.push(ctx.b.build(
                    "messages.edited",
                    &path,
                    &data,
                    raw,
                    owner_jid(after),
                    Some(dedupe),
                )?);
            }
        }
        "delete" => {
            for (path, raw) in ctx.require_items(&["messages_removed", "messages"])? {
                let v = json::value(P, &path, raw)?;
                // Whapi lists removed messages as ids, or as message objects.
                let (data, id, scope) = match &v {
                    Value::String(id) if !id.is_empty() => {
                        (json!({ "id": id }), id.clone(), String::new())
                    }
                    Value::Object(_) => {
                        let id = json::req_str(P, &path, &v, "id")?.to_string();
                        (key(&path, &v)?, id, scope(&v))
                    }
                    other => {
                        return Err(AdapterError::invalid(
                            P,
                            &path,
                            format!(
                                "expected a message id or a message, got {}",
                                json::type_name(other)
                            ),
                        ))
                    }
                };
                let dedupe = dedupe_key(P, &scope, &id, "messages.delete", "");
                out.push(ctx.b.build(
                    "messages.delete",
                    &path,
                    &data,
                    raw,
                    owner_jid(&v),
                    Some(dedupe),
                )?);
            }
        }
        _ => ctx.custom_items(&["messages", "messages_updates", "messages_removed"], out)?,
    }
    Ok(())
}

/// `statuses.*`: delivery receipts for messages we sent, as `messages.update`.
pub(super) fn statuses(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    for (path, raw) in ctx.require_items(&["statuses"])? {
        let v = json::value(P, &path, raw)?;
        let id = json::req_str(P, &path, &v, "id")?;
        let whapi_status = json::req_str(P, &path, &v, "status")?;
        let status = evolution_status(whapi_status);
        let chat = json::opt_str(P, &path, &v, "recipient_id")?.map(super::super::user_jid);
        let mut data = Map::new();
        data.insert("keyId".into(), json!(id));
        data.insert("remoteJid".into(), json!(chat));
        data.insert("fromMe".into(), json!(true));
        data.insert("status".into(), json!(status));
        if let Some(ts) = json::timestamp(v.get("timestamp")) {
            data.insert("messageTimestamp".into(), json!(ts));
        }
        if let Some(viewer) = json::str_at(&v, &["viewer_id"]) {
            data.insert("participant".into(), json!(super::super::user_jid(viewer)));
        }
        let scope = format!("{}|true", chat.as_deref().unwrap_or(""));
        // A viewer's receipt in a group is its own fact: two members reading the same
        // message are two events.
        let status_key = match json::str_at(&v, &["viewer_id"]) {
            Some(viewer) => format!("{status}:{viewer}"),
            None => status.to_string(),
        };
        let dedupe = dedupe_key(P, &scope, id, "messages.update", &status_key);
        out.push(ctx.b.build(
            "messages.update",
            &path,
            &Value::Object(data),
            raw,
            None,
            Some(dedupe),
        )?);
    }
    Ok(())
}

/// Whapi's status words in Evolution's (Baileys') status names.
fn evolution_status(s: &str) -> &'static str {
    match s {
        "failed" => "ERROR",
        "pending" => "PENDING",
        "sent" | "server" => "SERVER_ACK",
        "delivered" => "DELIVERY_ACK",
        "read" => "READ",
        "played" => "PLAYED",
        "deleted" => "DELETED",
        _ => "UNKNOWN",
    }
}

/// The chat and direction a message id lives in.
fn scope(v: &Value) -> String {
    let chat = json::str_at(v, &["chat_id"]).unwrap_or("");
    let from_me = v.get("from_me").and_then(Value::as_bool).unwrap_or(false);
    format!("{chat}|{from_me}")
}

/// A new message: usually `messages.upsert`; some actions are Evolution's other events.
/// Returns (event, data, message id for the dedupe key, status part of the key).
fn posted(path: &str, v: &Value) -> Result<(&'static str, Value, String, String), AdapterError> {
    let id = json::req_str(P, path, v, "id")?.to_string();
    if json::str_at(v, &["type"]) == Some("action") {
        let action_type = json::str_at(v, &["action", "type"]).unwrap_or("");
        let target = json::str_at(v, &["action", "target"]);
        match (action_type, target) {
            ("delete", Some(target)) => {
                let mut k = key(path, v)?;
                if let Some(obj) = k.as_object_mut() {
                    obj.insert("id".into(), json!(target));
                }
                return Ok(("messages.delete", k, id, String::new()));
            }
            ("edit", Some(target)) => {
                let mut data = upsert(path, v)?;
                if let Some(obj) = data.as_object_mut() {
                    obj.insert("editedMessageId".into(), json!(target));
                }
                return Ok(("messages.edited", data, id, String::new()));
            }
            _ => {}
        }
    }
    Ok(("messages.upsert", upsert(path, v)?, id, String::new()))
}

/// Baileys' message key: `{remoteJid, fromMe, id, participant?}`.
fn key(path: &str, v: &Value) -> Result<Value, AdapterError> {
    let id = json::req_str(P, path, v, "id")?;
    let chat = chat_id_field(path, v, "chat_id")?;
    let from_me = v.get("from_me").and_then(Value::as_bool).unwrap_or(false);
    let mut key = json!({ "remoteJid": chat, "fromMe": from_me, "id": id });
    // In a group the author is a participant distinct from the chat.
    if chat.ends_with("@g.us") {
        if let (Some(from), Some(obj)) = (json::str_at(v, &["from"]), key.as_object_mut()) {
            obj.insert("participant".into(), json!(super::super::user_jid(from)));
        }
    }
    Ok(key)
}

/// A Whapi message in `messages.upsert` shape.
fn upsert(path: &str, v: &Value) -> Result<Value, AdapterError> {
    let key = key(path, v)?;
    let kind = json::opt_str(P, path, v, "type")?.unwrap_or("unknown");
    let (message_type, message) = content(kind, v);
    let mut data = Map::new();
    data.insert("key".into(), key);
    data.insert("pushName".into(), json!(json::str_at(v, &["from_name"])));
    data.insert("message".into(), message);
    data.insert("messageType".into(), json!(message_type));
    data.insert(
        "messageTimestamp".into(),
        json!(json::timestamp(v.get("timestamp"))),
    );
    if let Some(ctx) = context_info(v) {
        data.insert("contextInfo".into(), ctx);
    }
    if let Some(source) = json::str_at(v, &["source"]) {
        data.insert("source".into(), json!(source));
    }
    Ok(Value::Object(data))
}

#[cfg(test)]
mod tests {
    use super::super::check_chat_id;
    use super::*;

    #[test]
    fn statuses_map_to_baileys_names() {
        assert_eq!(evolution_status("read"), "READ");
        assert_eq!(evolution_status("delivered"), "DELIVERY_ACK");
        assert_eq!(evolution_status("weird"), "UNKNOWN");
    }

    #[test]
    fn unknown_types_keep_whapi_object() {
        let v = json!({"type": "order", "order": {"id": "1"}});
        let (t, m) = content("order", &v);
        assert_eq!(t, "orderMessage");
        assert_eq!(m["orderMessage"]["id"], "1");
    }

    #[test]
    fn chat_ids_are_checked() {
        let v = json!({"id": "X", "chat_id": "abc"});
        let err = key("messages[0]", &v).unwrap_err();
        assert_eq!(err.field(), "messages[0].chat_id");
        assert!(check_chat_id("x", "status@broadcast").is_ok());
    }
}
