//! Whapi message bodies as Baileys' message content (`conversation`, `imageMessage`,
//! `reactionMessage`, ...) and `contextInfo`.

use serde_json::{json, Map, Value};

use crate::ingest::providers::{json, user_jid};

/// Whapi's `context` (quotes, mentions, forwards) as Baileys' `contextInfo`.
pub(super) fn context_info(v: &Value) -> Option<Value> {
    let c = v.get("context")?;
    let mut out = Map::new();
    copy(
        c,
        &mut out,
        &[("quoted_id", "stanzaId"), ("forwarded", "isForwarded")],
    );
    if let Some(author) = json::str_at(c, &["quoted_author"]) {
        out.insert("participant".into(), json!(user_jid(author)));
    }
    if let Some(Value::Array(m)) = c.get("mentions") {
        let jids: Vec<Value> = m
            .iter()
            .filter_map(Value::as_str)
            .map(|s| json!(user_jid(s)))
            .collect();
        out.insert("mentionedJid".into(), Value::Array(jids));
    }
    Some(Value::Object(out))
}

/// Copies present, non-null fields from `src` under new names.
fn copy(src: &Value, out: &mut Map<String, Value>, fields: &[(&str, &str)]) {
    for (from, to) in fields {
        match src.get(*from) {
            None | Some(Value::Null) => {}
            Some(v) => {
                out.insert((*to).to_string(), v.clone());
            }
        }
    }
}

/// Baileys' message content for a Whapi message type: (messageType, message).
pub(super) fn content(kind: &str, v: &Value) -> (String, Value) {
    let body = v.get(kind).unwrap_or(&Value::Null);
    let mut m = Map::new();
    let message_type = match kind {
        "text" => {
            let text = json::str_at(body, &["body"]).unwrap_or("");
            return ("conversation".into(), json!({ "conversation": text }));
        }
        "image" | "video" | "gif" | "short" | "audio" | "voice" | "document" | "sticker" => {
            copy(
                body,
                &mut m,
                &[
                    ("link", "url"),
                    ("mime_type", "mimetype"),
                    ("file_size", "fileLength"),
                    ("sha256", "fileSha256"),
                    ("caption", "caption"),
                    ("file_name", "fileName"),
                    ("filename", "fileName"),
                    ("seconds", "seconds"),
                    ("width", "width"),
                    ("height", "height"),
                    ("preview", "jpegThumbnail"),
                    ("id", "mediaId"),
                ],
            );
            if kind == "voice" {
                m.insert("ptt".into(), json!(true));
            }
            if kind == "gif" {
                m.insert("gifPlayback".into(), json!(true));
            }
            match kind {
                "image" => "imageMessage",
                "video" | "gif" | "short" => "videoMessage",
                "audio" | "voice" => "audioMessage",
                "document" => "documentMessage",
                _ => "stickerMessage",
            }
        }
        "location" | "live_location" => {
            copy(
                body,
                &mut m,
                &[
                    ("latitude", "degreesLatitude"),
                    ("longitude", "degreesLongitude"),
                    ("name", "name"),
                    ("address", "address"),
                    ("url", "url"),
                    ("caption", "caption"),
                ],
            );
            if kind == "location" {
                "locationMessage"
            } else {
                "liveLocationMessage"
            }
        }
        "contact" => {
            copy(body, &mut m, &[("name", "displayName"), ("vcard", "vcard")]);
            "contactMessage"
        }
        "contact_list" => {
            let list = body
                .get("list")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let contacts: Vec<Value> = list
                .iter()
                .map(|c| json!({ "displayName": c.get("name"), "vcard": c.get("vcard") }))
                .collect();
            m.insert("contacts".into(), Value::Array(contacts));
            "contactsArrayMessage"
        }
        "link_preview" => {
            copy(
                body,
                &mut m,
                &[
                    ("body", "text"),
                    ("url", "matchedText"),
                    ("title", "title"),
                    ("description", "description"),
                ],
            );
            "extendedTextMessage"
        }
        "poll" => {
            m.insert(
                "name".into(),
                body.get("title").cloned().unwrap_or(Value::Null),
            );
            let options = body
                .get("options")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let options: Vec<Value> = options
                .into_iter()
                .map(|o| json!({ "optionName": o }))
                .collect();
            m.insert("options".into(), Value::Array(options));
            "pollCreationMessage"
        }
        "action" => return action(v),
        other => {
            // No Baileys counterpart we know: keep Whapi's own object under `<type>Message`.
            let name = format!("{other}Message");
            return (name.clone(), json!({ name: body }));
        }
    };
    (
        message_type.to_string(),
        json!({ message_type: Value::Object(m) }),
    )
}

/// Whapi `action` messages: reactions become `reactionMessage`, the rest
/// `protocolMessage` with Whapi's action kept.
fn action(v: &Value) -> (String, Value) {
    let a = v.get("action").unwrap_or(&Value::Null);
    let chat = json::str_at(v, &["chat_id"]);
    match json::str_at(a, &["type"]) {
        Some("reaction") => {
            let target_key = json!({
                "remoteJid": chat,
                "id": a.get("target"),
            });
            // An empty emoji removes a reaction, as in WhatsApp itself.
            let text = json::str_at(a, &["emoji"]).unwrap_or("");
            (
                "reactionMessage".into(),
                json!({ "reactionMessage": { "key": target_key, "text": text } }),
            )
        }
        Some("ephemeral") => (
            "protocolMessage".into(),
            json!({ "protocolMessage": { "type": "EPHEMERAL_SETTING", "ephemeralExpiration": a.get("ephemeral"), "whapiAction": a } }),
        ),
        _ => (
            "protocolMessage".into(),
            json!({ "protocolMessage": { "whapiAction": a } }),
        ),
    }
}
