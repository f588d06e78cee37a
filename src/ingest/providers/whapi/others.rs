//! Whapi chats, contacts, groups, presences, labels and calls into Evolution's events.

use serde_json::{json, Map, Value};

use super::{chat_id_field, check_chat_id, Ctx, P};
use crate::ingest::providers::json;
use crate::ingest::providers::{dedupe_key, user_jid, AdapterError, IncomingEvent};

/// Evolution's chat fields from a Whapi chat (the original stays in `raw`).
fn chat(path: &str, v: &Value) -> Result<Value, AdapterError> {
    let id = chat_id_field(path, v, "id")?;
    let mut out = Map::new();
    out.insert("remoteJid".into(), json!(id));
    for (from, to) in [
        ("name", "name"),
        ("type", "type"),
        ("unread", "unreadMessages"),
        ("timestamp", "conversationTimestamp"),
        ("archive", "archived"),
        ("pin", "pinned"),
        ("mute", "mute"),
        ("mute_until", "muteEndTime"),
        ("read_only", "readOnly"),
        ("not_spam", "notSpam"),
        ("labels", "labels"),
        ("chat_pic", "profilePicUrl"),
    ] {
        if let Some(x) = v.get(from).filter(|x| !x.is_null()) {
            out.insert(to.into(), x.clone());
        }
    }
    Ok(Value::Object(out))
}

/// `chats.*`: upsert, update (patch carries before/after/changes), delete.
pub(super) fn chats(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    match ctx.verb {
        "post" | "put" => {
            let event = if ctx.verb == "post" {
                "chats.upsert"
            } else {
                "chats.update"
            };
            for (path, raw) in ctx.require_items(&["chats"])? {
                let v = json::value(P, &path, raw)?;
                let data = json!([chat(&path, &v)?]);
                out.push(ctx.b.build(event, &path, &data, raw, None, None)?);
            }
        }
        "patch" => {
            for (path, raw) in ctx.require_items(&["chats_updates"])? {
                out.push(patched(ctx, "chats.update", &path, raw, chat)?);
            }
        }
        "delete" => {
            for (path, raw) in ctx.require_items(&["chats_removed"])? {
                let v = json::value(P, &path, raw)?;
                let id = match &v {
                    Value::String(id) => id.as_str(),
                    Value::Object(_) => json::req_str(P, &path, &v, "id")?,
                    other => {
                        return Err(AdapterError::invalid(
                            P,
                            &path,
                            format!("expected a chat id, got {}", json::type_name(other)),
                        ))
                    }
                };
                let id_path = if v.is_object() {
                    json::join(&path, "id")
                } else {
                    path.clone()
                };
                check_chat_id(&id_path, id)?;
                out.push(
                    ctx.b
                        .build("chats.delete", &path, &json!([id]), raw, None, None)?,
                );
            }
        }
        _ => ctx.custom_items(&["chats", "chats_updates", "chats_removed"], out)?,
    }
    Ok(())
}

/// A `*_updates` item: Evolution's fields from `after_update`, plus Whapi's `before`,
/// `after` and `changes` so consumers see what changed.
fn patched(
    ctx: &Ctx<'_>,
    event: &str,
    path: &str,
    raw: &serde_json::value::RawValue,
    shape: fn(&str, &Value) -> Result<Value, AdapterError>,
) -> Result<IncomingEvent, AdapterError> {
    let v = json::value(P, path, raw)?;
    let after_path = json::join(path, "after_update");
    let after = v
        .get("after_update")
        .ok_or_else(|| AdapterError::invalid(P, &after_path, "required field is missing"))?;
    let mut item = shape(&after_path, after)?;
    if let Some(before) = v.get("before_update").filter(|b| !b.is_null()) {
        // Validates the before-image too: a malformed id there is as wrong as one after.
        shape(&json::join(path, "before_update"), before)?;
    }
    if let Some(obj) = item.as_object_mut() {
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
    ctx.b.build(event, path, &json!([item]), raw, None, None)
}

/// Evolution's contact fields from a Whapi contact.
fn contact(path: &str, v: &Value) -> Result<Value, AdapterError> {
    let id = json::req_str(P, path, v, "id")?;
    Ok(json!({
        "remoteJid": user_jid(id),
        "pushName": v.get("pushname").filter(|x| !x.is_null()).or_else(|| v.get("name")),
        "profilePicUrl": v.get("profile_pic"),
        "isBusiness": v.get("is_business"),
    }))
}

/// `contacts.*`.
pub(super) fn contacts(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    match ctx.verb {
        "post" | "put" => {
            let event = if ctx.verb == "post" {
                "contacts.upsert"
            } else {
                "contacts.update"
            };
            for (path, raw) in ctx.require_items(&["contacts"])? {
                let v = json::value(P, &path, raw)?;
                out.push(ctx.b.build(
                    event,
                    &path,
                    &json!([contact(&path, &v)?]),
                    raw,
                    None,
                    None,
                )?);
            }
        }
        "patch" => {
            for (path, raw) in ctx.require_items(&["contacts_updates"])? {
                out.push(patched(ctx, "contacts.update", &path, raw, contact)?);
            }
        }
        // Evolution has no contact-removed event.
        _ => ctx.custom_items(&["contacts_removed", "contacts", "contacts_updates"], out)?,
    }
    Ok(())
}

/// Evolution's (Baileys') group metadata from a Whapi group.
fn group(path: &str, v: &Value) -> Result<Value, AdapterError> {
    let id = chat_id_field(path, v, "id")?;
    let participants: Vec<Value> = v
        .get("participants")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let rank = json::str_at(p, &["rank"]);
                    json!({
                        "id": json::str_at(p, &["id"]).map(user_jid),
                        "admin": match rank { Some("admin") => json!("admin"), Some("creator") => json!("superadmin"), _ => Value::Null },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    for (from, to) in [
        ("name", "subject"),
        ("created_at", "creation"),
        ("description", "desc"),
        ("chat_pic", "pictureUrl"),
    ] {
        if let Some(x) = v.get(from).filter(|x| !x.is_null()) {
            out.insert(to.into(), x.clone());
        }
    }
    if let Some(owner) = json::str_at(v, &["created_by"]) {
        out.insert("owner".into(), json!(user_jid(owner)));
    }
    if v.get("participants").is_some() {
        out.insert("participants".into(), Value::Array(participants));
        out.insert(
            "size".into(),
            json!(out
                .get("participants")
                .and_then(Value::as_array)
                .map(Vec::len)),
        );
    }
    Ok(Value::Object(out))
}

/// `groups.*`; participant changes become `group-participants.update`.
pub(super) fn groups(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    if let Some(items) = ctx.items(&["groups_participants"])? {
        for (path, raw) in items {
            let v = json::value(P, &path, raw)?;
            let id = chat_id_field(&path, &v, "group_id")?;
            let action = json::req_str(P, &path, &v, "action")?;
            let participants: Vec<Value> = v
                .get("participants")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    AdapterError::invalid(
                        P,
                        json::join(&path, "participants"),
                        "required array is missing",
                    )
                })?
                .iter()
                .filter_map(|p| p.as_str().or_else(|| json::str_at(p, &["id"])))
                .map(|p| json!(user_jid(p)))
                .collect();
            let data = json!({ "id": id, "participants": participants, "action": action });
            out.push(
                ctx.b
                    .build("group-participants.update", &path, &data, raw, None, None)?,
            );
        }
        return Ok(());
    }
    match ctx.verb {
        "post" | "put" => {
            let event = if ctx.verb == "post" {
                "groups.upsert"
            } else {
                "groups.update"
            };
            for (path, raw) in ctx.require_items(&["groups"])? {
                let v = json::value(P, &path, raw)?;
                out.push(ctx.b.build(
                    event,
                    &path,
                    &json!([group(&path, &v)?]),
                    raw,
                    None,
                    None,
                )?);
            }
        }
        "patch" => {
            for (path, raw) in ctx.require_items(&["groups_updates"])? {
                out.push(patched(ctx, "groups.update", &path, raw, group)?);
            }
        }
        // Leaving or losing a group has no Evolution event of its own.
        _ => ctx.custom_items(&["groups_removed", "groups", "groups_updates"], out)?,
    }
    Ok(())
}

/// `presences.*` as `presence.update`: `{id, presences: {jid: {lastKnownPresence}}}`.
pub(super) fn presences(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    for (path, raw) in ctx.require_items(&["presences"])? {
        let v = json::value(P, &path, raw)?;
        let contact = json::req_str(P, &path, &v, "contact_id")?;
        let chat = json::opt_str(P, &path, &v, "chat_id")?;
        let status = json::req_str(P, &path, &v, "status")?;
        let presence = match status {
            "online" => "available",
            "offline" => "unavailable",
            "typing" => "composing",
            "recording" => "recording",
            "pending" | "paused" => "paused",
            _ => "unavailable",
        };
        let jid = user_jid(contact);
        let mut entry = json!({ "lastKnownPresence": presence });
        if let (Some(seen), Some(obj)) = (
            v.get("last_seen").filter(|x| !x.is_null()),
            entry.as_object_mut(),
        ) {
            obj.insert("lastSeen".into(), seen.clone());
        }
        let data = json!({ "id": chat.unwrap_or(&jid), "presences": { jid.clone(): entry } });
        out.push(
            ctx.b
                .build("presence.update", &path, &data, raw, None, None)?,
        );
    }
    Ok(())
}

/// `labels.*` as `labels.edit` (`deleted: true` for delete).
pub(super) fn labels(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    let names: &[&str] = match ctx.verb {
        "patch" => &["labels_updates", "labels"],
        "delete" => &["labels_removed", "labels"],
        _ => &["labels"],
    };
    for (path, raw) in ctx.require_items(names)? {
        let v = json::value(P, &path, raw)?;
        let label = v.get("after_update").unwrap_or(&v);
        let label_path = if v.get("after_update").is_some() {
            json::join(&path, "after_update")
        } else {
            path.clone()
        };
        let id = match label {
            Value::String(s) => s.as_str(),
            _ => json::req_str(P, &label_path, label, "id")?,
        };
        let data = json!({
            "id": id,
            "name": label.get("name"),
            "color": label.get("color"),
            "deleted": ctx.verb == "delete",
        });
        out.push(ctx.b.build("labels.edit", &path, &data, raw, None, None)?);
    }
    Ok(())
}

/// `calls.*` as `call`, in Baileys' call shape.
pub(super) fn calls(ctx: &Ctx<'_>, out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
    for (path, raw) in ctx.require_items(&["calls"])? {
        let v = json::value(P, &path, raw)?;
        let id = json::req_str(P, &path, &v, "id")?;
        let chat = chat_id_field(&path, &v, "chat_id")?;
        let status = json::opt_str(P, &path, &v, "status")?.unwrap_or("offer");
        let data = json!({
            "id": id,
            "from": json::str_at(&v, &["from"]).map(user_jid),
            "chatId": chat,
            "date": json::timestamp(v.get("timestamp")),
            "isVideo": v.get("video").and_then(Value::as_bool).unwrap_or(false),
            "isGroup": chat.ends_with("@g.us"),
            "status": status,
        });
        let dedupe = dedupe_key(P, chat, id, "call", status);
        out.push(ctx.b.build("call", &path, &data, raw, None, Some(dedupe))?);
    }
    Ok(())
}
