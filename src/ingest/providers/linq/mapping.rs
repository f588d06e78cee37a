//! How each Linq event becomes an Evolution event (the table is in the parent module).

use serde_json::{json, Value};

use super::{Linq, Mapped, CHAT_ID, HANDLE, MESSAGE_ID, P};
use crate::ingest::providers::json::{self, first_str};
use crate::ingest::providers::{dedupe_key, AdapterError};

impl Linq<'_> {
    /// The Evolution event for this payload, or `None` for a custom event.
    pub(super) fn map(&self) -> Result<Option<Mapped>, AdapterError> {
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
    pub(super) fn owner(&self) -> Option<String> {
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
