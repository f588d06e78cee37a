//! The chat an event is about: the ordering key within an instance.
//!
//! Derived once, at ingest, from the event kind and its `data` (in Evolution's shapes, which
//! every provider adapter produces), and stored in the record (`StoredEvent::chat`), so
//! delivery orders, the SQS sink groups and the Kafka sink keys by the same value without
//! parsing payloads again. Records stored before the field existed derive it on read, by
//! this same function.
//!
//! | event kinds | where the chat is |
//! |---|---|
//! | `messages.*`, `send.message` | `key.remoteJid`, else `remoteJid` (status updates) |
//! | `chats.*`, `contacts.*` | each element's `remoteJid`, else `id` (or the element itself, a JID string, as `chats.delete` sends) |
//! | `presence.update`, `groups.*`, `group-participants.update` | `id` |
//! | `call` | `chatId`, else `from` |
//! | `labels.association` | `chatId` |
//!
//! A list names one chat only when every element names the same one. Everything else
//! (connection updates, QR codes, custom provider events, a list spanning chats) is about
//! no chat: its events are ordered with the instance as a whole.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::catalog::EventKind;

/// Where an event kind names its chat, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// `key.remoteJid`.
    KeyRemoteJid,
    /// `remoteJid`.
    RemoteJid,
    /// `id`.
    Id,
    /// `chatId`.
    ChatId,
    /// `from`.
    From,
}

/// The fields of `kind` that name its chat, in the order they are tried.
fn fields_of(kind: EventKind) -> &'static [Field] {
    use EventKind::*;
    match kind {
        MessagesSet | MessagesUpsert | MessagesEdited | MessagesUpdate | MessagesDelete
        | SendMessage | SendMessageUpdate => &[Field::KeyRemoteJid, Field::RemoteJid],
        ContactsSet | ContactsUpsert | ContactsUpdate | ChatsSet | ChatsUpsert | ChatsUpdate
        | ChatsDelete => &[Field::RemoteJid, Field::Id],
        PresenceUpdate | GroupsUpsert | GroupsUpdate | GroupParticipantsUpdate => &[Field::Id],
        Call => &[Field::ChatId, Field::From],
        LabelsAssociation => &[Field::ChatId],
        _ => &[],
    }
}

/// The fields an object may name its chat with; all others are skipped unparsed.
#[derive(Deserialize)]
struct About {
    key: Option<KeyAbout>,
    #[serde(rename = "remoteJid")]
    remote_jid: Option<Value>,
    id: Option<Value>,
    #[serde(rename = "chatId")]
    chat_id: Option<Value>,
    from: Option<Value>,
}

#[derive(Deserialize)]
struct KeyAbout {
    #[serde(rename = "remoteJid")]
    remote_jid: Option<Value>,
}

/// A non-empty string, or nothing.
fn jid(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl About {
    /// The first of `fields` that holds a JID.
    fn chat(&self, fields: &[Field]) -> Option<String> {
        fields.iter().find_map(|field| {
            jid(match field {
                Field::KeyRemoteJid => self.key.as_ref()?.remote_jid.as_ref(),
                Field::RemoteJid => self.remote_jid.as_ref(),
                Field::Id => self.id.as_ref(),
                Field::ChatId => self.chat_id.as_ref(),
                Field::From => self.from.as_ref(),
            })
        })
    }
}

/// The chat `data` of an `event` (a dotted name) is about, if it is about exactly one.
pub fn chat_of(event: &str, data: &RawValue) -> Option<String> {
    let kind = EventKind::parse(event).ok()?;
    let fields = fields_of(kind);
    if fields.is_empty() {
        return None;
    }
    let text = data.get().trim_start();
    if text.starts_with('{') {
        return serde_json::from_str::<About>(text).ok()?.chat(fields);
    }
    if !text.starts_with('[') {
        return None;
    }
    // Lists (chats, contacts, groups) are short and rare next to messages: a Value is fine.
    let elements: Vec<Value> = serde_json::from_str(text).ok()?;
    let mut chats = elements.into_iter().map(|element| match element {
        Value::String(s) if !s.is_empty() => Some(s),
        other => serde_json::from_value::<About>(other).ok()?.chat(fields),
    });
    let first = chats.next()??;
    chats
        .all(|c| c.as_deref() == Some(&*first))
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(event: &str, data: &str) -> Option<String> {
        chat_of(event, &RawValue::from_string(data.into()).unwrap())
    }

    #[test]
    fn messages_name_their_chat_in_the_key() {
        let upsert = r#"{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0"},
                         "message":{"conversation":"hi"},"remoteJid":"other"}"#;
        assert_eq!(
            chat("messages.upsert", upsert).as_deref(),
            Some("5511@s.whatsapp.net")
        );
        let status = r#"{"keyId":"3EB0","remoteJid":"5511@s.whatsapp.net","status":"READ"}"#;
        assert_eq!(
            chat("messages.update", status).as_deref(),
            Some("5511@s.whatsapp.net")
        );
        assert_eq!(chat("send.message", r#"{"key":{"remoteJid":""}}"#), None);
        assert_eq!(
            chat("messages.delete", r#"{"id":"3EB0"}"#),
            None,
            "a message id"
        );
    }

    #[test]
    fn lists_name_a_chat_only_when_all_elements_agree() {
        let one =
            r#"[{"remoteJid":"a@s.whatsapp.net","name":"A"},{"remoteJid":"a@s.whatsapp.net"}]"#;
        assert_eq!(
            chat("chats.upsert", one).as_deref(),
            Some("a@s.whatsapp.net")
        );
        let two = r#"[{"remoteJid":"a@s.whatsapp.net"},{"remoteJid":"b@s.whatsapp.net"}]"#;
        assert_eq!(chat("chats.upsert", two), None);
        assert_eq!(
            chat("chats.delete", r#"["a@s.whatsapp.net"]"#).as_deref(),
            Some("a@s.whatsapp.net")
        );
        assert_eq!(
            chat("groups.update", r#"[{"id":"123@g.us","subject":"x"}]"#).as_deref(),
            Some("123@g.us")
        );
        assert_eq!(chat("contacts.upsert", "[]"), None);
    }

    #[test]
    fn other_kinds_and_custom_events_name_none() {
        assert_eq!(
            chat(
                "presence.update",
                r#"{"id":"a@s.whatsapp.net","presences":{}}"#
            )
            .as_deref(),
            Some("a@s.whatsapp.net")
        );
        assert_eq!(
            chat("call", r#"{"id":"c1","from":"a@s.whatsapp.net"}"#).as_deref(),
            Some("a@s.whatsapp.net")
        );
        assert_eq!(chat("connection.update", r#"{"state":"open"}"#), None);
        assert_eq!(chat("whapi.channel.patch", r#"{"id":"x"}"#), None);
        assert_eq!(chat("presence.update", r#"{"id":17}"#), None);
        assert_eq!(chat("presence.update", "null"), None);
    }
}
