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
use serde_json::{json, Value};

use super::json::{self, first_str};
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

impl Linq<'_> {
    /// The Evolution event for this payload, or `None` for a custom event.
    fn map(&self) -> Result<Option<Mapped>, AdapterError> {
        let m = match self.event_type {
            "message.received" => self.message("messages.upsert", false)?,
            "message.sent" => self.message("send.message", true)?,
            "message.delivered" => self.receipt("DELIVERY_ACK")?,
            "message.read" => self.receipt("READ")?,
            "message.failed" => self.receipt("ERROR")?,
            "message.edited" => self.edited()?,
            "reaction.added" | "reaction.sent" | "reaction.received" => self.reaction(false)?,
            "reaction.removed" => self.reaction(true)?,
            "participant.added" => self.participants("add")?,
            "participant.removed" => self.participants("remove")?,
            "chat.created" => {
                let chat = self.chat_id()?;
                let data = json!([{ "remoteJid": chat, "name": first_str(self.data, &[&["chat", "display_name"], &["display_name"], &["name"]]), "conversationTimestamp": self.created_at }]);
                self.by_event_id("chats.upsert", chat, data)
            }
            "chat.group_name_updated" => {
                let chat = self.chat_id()?;
                let name = first_str(
                    self.data,
                    &[
                        &["new_name"],
                        &["name"],
                        &["display_name"],
                        &["chat", "display_name"],
                    ],
                );
                self.by_event_id(
                    "groups.update",
                    chat,
                    json!([{ "id": chat, "subject": name }]),
                )
            }
            "chat.group_icon_updated" => {
                let chat = self.chat_id()?;
                let icon = first_str(
                    self.data,
                    &[
                        &["new_icon"],
                        &["icon_url"],
                        &["icon"],
                        &["chat", "icon_url"],
                    ],
                );
                self.by_event_id(
                    "groups.update",
                    chat,
                    json!([{ "id": chat, "pictureUrl": icon }]),
                )
            }
            "chat.typing_indicator.started" | "typing_indicator.received" => {
                self.typing("composing")?
            }
            "chat.typing_indicator.stopped" | "typing_indicator.removed" => {
                self.typing("paused")?
            }
            "contact.created" | "contact.updated" => {
                let event = if self.event_type == "contact.created" {
                    "contacts.upsert"
                } else {
                    "contacts.update"
                };
                let handle = first_str(
                    self.data,
                    &[&["phone_number"], &["handle"], &["email"], &["id"]],
                )
                .ok_or_else(|| {
                    AdapterError::invalid(P, "data.phone_number", "required field is missing")
                })?;
                let name = first_str(self.data, &[&["full_name"], &["name"], &["first_name"]]);
                self.by_event_id(
                    event,
                    handle,
                    json!([{ "remoteJid": handle, "pushName": name }]),
                )
            }
            other => match other.strip_prefix("call.") {
                Some(stage) => {
                    let status = match stage {
                        "initiated" => "offer",
                        "ringing" => "ringing",
                        "answered" => "accept",
                        "ended" | "completed" | "failed" => "terminate",
                        "declined" => "reject",
                        "no_answer" => "timeout",
                        _ => return Ok(None),
                    };
                    self.call(status)?
                }
                None => return Ok(None),
            },
        };
        Ok(Some(m))
    }

    /// The instance owner's handle, when the payload marks it as ours.
    fn owner(&self) -> Option<String> {
        if self.is_me() {
            first_str(self.data, HANDLE).map(str::to_string)
        } else {
            None
        }
    }

    fn is_me(&self) -> bool {
        json::at(self.data, &["sender_handle", "is_me"])
            .or_else(|| self.data.get("is_from_me"))
            .and_then(Value::as_bool)
            .unwrap_or_else(|| json::str_at(self.data, &["direction"]) == Some("outbound"))
    }

    fn chat_id(&self) -> Result<&str, AdapterError> {
        first_str(self.data, CHAT_ID).ok_or_else(|| {
            AdapterError::invalid(
                P,
                "data.chat.id",
                "required field is missing (or data.chat_id)",
            )
        })
    }

    fn message_id(&self) -> Result<&str, AdapterError> {
        first_str(self.data, MESSAGE_ID).ok_or_else(|| {
            AdapterError::invalid(
                P,
                "data.id",
                "required field is missing (or data.message.id)",
            )
        })
    }

    /// Keyed by Linq's `event_id`: unique per event, reused by Linq's retries.
    fn by_event_id(&self, event: &'static str, scope: &str, data: Value) -> Mapped {
        let dedupe = self
            .event_id
            .map(|id| dedupe_key(P, scope, id, event, self.event_type));
        Mapped {
            event,
            data,
            dedupe,
        }
    }

    fn timestamp(&self) -> Option<i64> {
        json::rfc3339_seconds(first_str(
            self.data,
            &[&["sent_at"], &["message", "sent_at"], &["created_at"]],
        ))
        .or(self.created_at)
    }

    /// A message as `messages.upsert` / `send.message` data.
    fn message(&self, event: &'static str, default_from_me: bool) -> Result<Mapped, AdapterError> {
        let id = self.message_id()?;
        let chat = self.chat_id()?;
        let from_me = if event == "send.message" {
            true
        } else {
            self.is_me() || default_from_me
        };
        let mut key = json!({ "remoteJid": chat, "fromMe": from_me, "id": id });
        if let (Some(h), Some(k)) = (first_str(self.data, HANDLE), key.as_object_mut()) {
            k.insert("participant".into(), json!(h));
        }
        let (message_type, message) = self.content();
        let data = json!({
            "key": key,
            "pushName": first_str(self.data, &[&["sender_handle", "name"], &["from_name"]]),
            "message": message,
            "messageType": message_type,
            "messageTimestamp": self.timestamp(),
            "source": first_str(self.data, &[&["service"], &["sender_handle", "service"]]),
        });
        let dedupe = dedupe_key(P, &format!("{chat}|{from_me}"), id, event, "");
        Ok(Mapped {
            event,
            data,
            dedupe: Some(dedupe),
        })
    }

    /// Text parts joined as `conversation`; with a media part, that media's message with
    /// the text as caption.
    fn content(&self) -> (String, Value) {
        let parts = json::at(self.data, &["parts"])
            .or_else(|| json::at(self.data, &["message", "parts"]))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let text: Vec<&str> = parts
            .iter()
            .filter(|p| json::str_at(p, &["type"]) == Some("text"))
            .filter_map(|p| json::str_at(p, &["value"]))
            .collect();
        let text = text.join("\n");
        let media = parts
            .iter()
            .find(|p| json::str_at(p, &["type"]) != Some("text"));
        let Some(media) = media else {
            return ("conversation".into(), json!({ "conversation": text }));
        };
        let mime = first_str(media, &[&["mime_type"], &["content_type"]]).unwrap_or("");
        let t = match mime.split('/').next().unwrap_or("") {
            "image" => "imageMessage",
            "video" => "videoMessage",
            "audio" => "audioMessage",
            _ => "documentMessage",
        };
        let body = json!({
            "url": first_str(media, &[&["url"], &["value"]]),
            "mimetype": (!mime.is_empty()).then_some(mime),
            "fileName": first_str(media, &[&["filename"], &["file_name"]]),
            "caption": (!text.is_empty()).then_some(text),
        });
        (t.to_string(), json!({ t: body }))
    }

    /// Delivery and read receipts for a message as `messages.update`.
    fn receipt(&self, status: &'static str) -> Result<Mapped, AdapterError> {
        let id = self.message_id()?;
        let chat = first_str(self.data, CHAT_ID);
        let data = json!({
            "keyId": id,
            "remoteJid": chat,
            "fromMe": true,
            "status": status,
            "messageTimestamp": json::rfc3339_seconds(first_str(self.data, &[&["read_at"], &["delivered_at"], &["failed_at"]])).or(self.created_at),
        });
        let scope = format!("{}|true", chat.unwrap_or(""));
        Ok(Mapped {
            event: "messages.update",
            data,
            dedupe: Some(dedupe_key(P, &scope, id, "messages.update", status)),
        })
    }

    fn edited(&self) -> Result<Mapped, AdapterError> {
        let mut m = self.message("messages.edited", false)?;
        // Each edit is its own fact: key it by the event, not the message.
        m.dedupe = self
            .event_id
            .map(|e| dedupe_key(P, "", e, "messages.edited", ""))
            .or(m.dedupe);
        Ok(m)
    }

    /// A reaction (tapback) as a `reactionMessage`.
    fn reaction(&self, removed: bool) -> Result<Mapped, AdapterError> {
        let target = first_str(
            self.data,
            &[&["message_id"], &["message", "id"], &["target_message_id"]],
        )
        .ok_or_else(|| AdapterError::invalid(P, "data.message_id", "required field is missing"))?;
        let chat = self.chat_id()?;
        let kind = first_str(
            self.data,
            &[
                &["reaction_type"],
                &["reaction", "type"],
                &["reaction"],
                &["type"],
            ],
        );
        let custom = first_str(
            self.data,
            &[&["custom_emoji"], &["reaction", "emoji"], &["emoji"]],
        );
        let emoji = match (removed, kind, custom) {
            (true, _, _) => "",
            (_, _, Some(e)) => e,
            (_, Some("love"), _) => "\u{2764}\u{fe0f}",
            (_, Some("like"), _) => "\u{1f44d}",
            (_, Some("dislike"), _) => "\u{1f44e}",
            (_, Some("laugh"), _) => "\u{1f602}",
            (_, Some("emphasize"), _) => "\u{203c}\u{fe0f}",
            (_, Some("question"), _) => "\u{2753}",
            (_, Some(other), _) => other,
            _ => "",
        };
        let handle = first_str(self.data, HANDLE);
        let from_me = self.is_me();
        // The reaction's own id when Linq gives one; otherwise the event id stands in.
        let id = first_str(self.data, &[&["id"], &["reaction", "id"]])
            .or(self.event_id)
            .unwrap_or(target);
        let data = json!({
            "key": { "remoteJid": chat, "fromMe": from_me, "id": id, "participant": handle },
            "message": { "reactionMessage": { "key": { "remoteJid": chat, "id": target }, "text": emoji } },
            "messageType": "reactionMessage",
            "messageTimestamp": self.timestamp(),
        });
        let scope = format!("{chat}|{}", handle.unwrap_or(""));
        let status = format!("{}:{emoji}", self.event_type);
        let dedupe = match self.event_id {
            Some(e) => dedupe_key(P, &scope, e, "messages.upsert", &status),
            None => dedupe_key(P, &scope, id, "messages.upsert", &status),
        };
        Ok(Mapped {
            event: "messages.upsert",
            data,
            dedupe: Some(dedupe),
        })
    }

    fn participants(&self, action: &str) -> Result<Mapped, AdapterError> {
        let chat = self.chat_id()?;
        let handles: Vec<Value> = match self.data.get("participants").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(|p| p.as_str().or_else(|| json::str_at(p, &["handle"])))
                .map(|h| json!(h))
                .collect(),
            None => first_str(self.data, HANDLE)
                .map(|h| vec![json!(h)])
                .unwrap_or_default(),
        };
        if handles.is_empty() {
            return Err(AdapterError::invalid(
                P,
                "data.handle",
                "required field is missing (or data.participants)",
            ));
        }
        Ok(self.by_event_id(
            "group-participants.update",
            chat,
            json!({ "id": chat, "participants": handles, "action": action }),
        ))
    }

    fn typing(&self, presence: &str) -> Result<Mapped, AdapterError> {
        let chat = self.chat_id()?;
        let who = first_str(self.data, HANDLE).unwrap_or(chat);
        Ok(self.by_event_id(
            "presence.update",
            chat,
            json!({ "id": chat, "presences": { who: { "lastKnownPresence": presence } } }),
        ))
    }

    fn call(&self, status: &str) -> Result<Mapped, AdapterError> {
        let id =
            first_str(self.data, &[&["id"], &["call_id"], &["call", "id"]]).ok_or_else(|| {
                AdapterError::invalid(P, "data.id", "required field is missing (or data.call_id)")
            })?;
        let chat = first_str(self.data, CHAT_ID);
        let from = first_str(self.data, HANDLE);
        let data = json!({
            "id": id,
            "from": from,
            "chatId": chat.or(from),
            "date": self.timestamp(),
            "isVideo": json::str_at(self.data, &["call_type"]) == Some("video") || self.data.get("is_video").and_then(Value::as_bool).unwrap_or(false),
            "isGroup": false,
            "status": status,
        });
        // Linq's stage, not the Baileys status, tells ended from failed.
        let dedupe = dedupe_key(P, chat.unwrap_or(""), id, "call", self.event_type);
        Ok(Mapped {
            event: "call",
            data,
            dedupe: Some(dedupe),
        })
    }
}
