//! [`EventFacts`]: what the structured clauses of a filter look at, extracted once per event.
//!
//! Extraction reads only the few fields filters need, with a borrowed partial parse (the
//! approach of [`crate::chat`]): every other field of `data`, the message body included,
//! is skipped by the parser without being built. The facts are small (a few dozen bytes)
//! and have a compact binary form ([`EventFacts::to_bytes`]) to be stored beside the event,
//! so routing never parses a payload for a structured clause.
//!
//! | event kinds | facts |
//! |---|---|
//! | `messages.*`, `send.message` | `key.X`, else the top-level `X` (status updates and deletes carry the key's fields at the top), for X in `remoteJid`, `remoteJidAlt`, `fromMe`, `participant`, `participantAlt`; and `messageType` |
//! | other kinds about a chat ([`crate::chat::chat_of`]) | the chat (and its type) only |
//! | everything else | none |

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::jid::{chat_type_of, normalize_id, MAX_ID_LEN};
use super::ChatType;
use crate::catalog::EventKind;

/// The version byte [`EventFacts::to_bytes`] writes first.
const VERSION: u8 = 1;

/// What filters need to know about one event, every JID normalized by
/// [`super::normalize_id`]. A fact the event does not carry is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFacts {
    from_me: Option<bool>,
    chat_type: Option<ChatType>,
    chat: Option<Box<str>>,
    chat_alt: Option<Box<str>>,
    participant: Option<Box<str>>,
    participant_alt: Option<Box<str>>,
    message_type: Option<Box<str>>,
}

/// Bytes that are not a valid [`EventFacts`] encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event facts: {0}")]
pub struct FactsError(&'static str);

impl EventFacts {
    /// The facts of an event named `event_name` (any spelling the catalog knows) with this
    /// `data`. Never fails: a field of the wrong type, or `data` that is not the expected
    /// shape, only leaves the facts it would have given `None`.
    pub fn extract(event_name: &str, data: &RawValue) -> EventFacts {
        Self::extract_with_message_id(event_name, data).0
    }

    /// [`EventFacts::extract`], and the WhatsApp message id (`key.id`, else `keyId`) read
    /// by the same parse, so ingest parses a message once for both: `None` for kinds whose
    /// `data` is not a message (not parsed here), `Some(None)` for a message without one.
    pub fn extract_with_message_id(
        event_name: &str,
        data: &RawValue,
    ) -> (EventFacts, Option<Option<String>>) {
        let Ok(kind) = EventKind::parse(event_name) else {
            return (EventFacts::default(), None);
        };
        if is_message_kind(kind) {
            let text = data.get().trim_start();
            if !text.starts_with('{') {
                return (EventFacts::default(), Some(None));
            }
            return serde_json::from_str::<MessageAbout>(text)
                .map(|about| (about.facts(), Some(about.message_id())))
                .unwrap_or((EventFacts::default(), Some(None)));
        }
        // Chats, contacts, presence, groups, calls, labels: rare next to messages, and
        // about a chat at most, which `chat_of` already knows how to find.
        let chat = crate::chat::chat_of(event_name, data).and_then(|c| id(&c));
        let facts = EventFacts {
            chat_type: chat.as_deref().and_then(chat_type_of),
            chat,
            ..EventFacts::default()
        };
        (facts, None)
    }

    /// Whether the event sent it (`key.fromMe`); `None` when it does not say.
    pub fn from_me(&self) -> Option<bool> {
        self.from_me
    }

    /// The kind of the chat the event is about, from the chat's JID.
    pub fn chat_type(&self) -> Option<ChatType> {
        self.chat_type
    }

    /// The chat's JID (`key.remoteJid`), normalized.
    pub fn chat(&self) -> Option<&str> {
        self.chat.as_deref()
    }

    /// The chat's other JID (`key.remoteJidAlt`: the phone JID of a `@lid` chat), normalized.
    pub fn chat_alt(&self) -> Option<&str> {
        self.chat_alt.as_deref()
    }

    /// The sender within a group (`key.participant`), normalized.
    pub fn participant(&self) -> Option<&str> {
        self.participant.as_deref()
    }

    /// The participant's other JID (`key.participantAlt`), normalized.
    pub fn participant_alt(&self) -> Option<&str> {
        self.participant_alt.as_deref()
    }

    /// Evolution's `messageType` (`conversation`, `imageMessage`, ...).
    pub fn message_type(&self) -> Option<&str> {
        self.message_type.as_deref()
    }

    /// The chat's JIDs: both match a chat list.
    pub fn chats(&self) -> impl Iterator<Item = &str> + Clone {
        self.chat().into_iter().chain(self.chat_alt())
    }

    /// The participant's JIDs: both match a participant list.
    pub fn participants(&self) -> impl Iterator<Item = &str> + Clone {
        self.participant().into_iter().chain(self.participant_alt())
    }

    /// Whether the event carries no fact at all (it is about no chat).
    pub fn is_empty(&self) -> bool {
        *self == EventFacts::default()
    }

    /// The compact binary form, version 1:
    ///
    /// ```text
    /// byte 0   version (1)
    /// byte 1   bits 0-1: from_me (0 unknown, 1 false, 2 true)
    ///          bits 2-4: chat type (0 unknown, 1 direct, 2 group, 3 broadcast, 4 newsletter)
    ///          bits 5-7: 0
    /// byte 2   which strings follow: bit 0 chat, 1 chat_alt, 2 participant,
    ///          3 participant_alt, 4 message_type; bits 5-7: 0
    /// then     each present string in that order: one length byte (1-255), UTF-8 bytes
    /// ```
    ///
    /// Nothing follows the last string. A direct text message takes about 45 bytes; an
    /// event with no facts takes 3.
    pub fn to_bytes(&self) -> Vec<u8> {
        let strings = self.strings();
        let mut out =
            Vec::with_capacity(3 + strings.iter().flatten().map(|s| 1 + s.len()).sum::<usize>());
        let from_me = match self.from_me {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        let chat_type = self.chat_type.map_or(0, |t| t.code());
        out.push(VERSION);
        out.push(from_me | (chat_type << 2));
        let mut present = 0u8;
        for (bit, s) in strings.iter().enumerate() {
            if s.is_some() {
                present |= 1 << bit;
            }
        }
        out.push(present);
        for s in strings.iter().flatten() {
            // Every string was capped at MAX_ID_LEN (255) when it was extracted or decoded.
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// Reads what [`EventFacts::to_bytes`] wrote; any other bytes give an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<EventFacts, FactsError> {
        let [version, flags, present, rest @ ..] = bytes else {
            return Err(FactsError("shorter than its 3-byte header"));
        };
        let mut rest: &[u8] = rest;
        if *version != VERSION {
            return Err(FactsError("unknown version"));
        }
        if flags & 0b1110_0000 != 0 || present & 0b1110_0000 != 0 {
            return Err(FactsError("reserved bits set"));
        }
        let from_me = match flags & 0b11 {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(FactsError("bad from_me")),
        };
        let chat_type = match (flags >> 2) & 0b111 {
            0 => None,
            code => Some(ChatType::from_code(code).ok_or(FactsError("bad chat type"))?),
        };
        let mut strings: [Option<Box<str>>; 5] = Default::default();
        for (bit, slot) in strings.iter_mut().enumerate() {
            if present & (1 << bit) == 0 {
                continue;
            }
            let [len, tail @ ..] = rest else {
                return Err(FactsError("truncated"));
            };
            let len = usize::from(*len);
            if len == 0 || tail.len() < len {
                return Err(FactsError("bad string length"));
            }
            let text = std::str::from_utf8(&tail[..len]).map_err(|_| FactsError("not UTF-8"))?;
            *slot = Some(text.into());
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err(FactsError("trailing bytes"));
        }
        let [chat, chat_alt, participant, participant_alt, message_type] = strings;
        Ok(EventFacts {
            from_me,
            chat_type,
            chat,
            chat_alt,
            participant,
            participant_alt,
            message_type,
        })
    }

    /// The string facts in encoding order.
    fn strings(&self) -> [Option<&str>; 5] {
        [
            self.chat(),
            self.chat_alt(),
            self.participant(),
            self.participant_alt(),
            self.message_type(),
        ]
    }
}

/// The kinds whose `data` is a message (or its key).
fn is_message_kind(kind: EventKind) -> bool {
    use EventKind::*;
    matches!(
        kind,
        MessagesSet
            | MessagesUpsert
            | MessagesEdited
            | MessagesUpdate
            | MessagesDelete
            | SendMessage
            | SendMessageUpdate
    )
}

/// A normalized id, boxed.
fn id(raw: &str) -> Option<Box<str>> {
    normalize_id(raw).map(String::into_boxed_str)
}

/// A message's fields filters read; all others (the message body above all) are skipped
/// by the parser without being built. Lenient: a field of an unexpected type reads as
/// absent instead of failing the whole parse.
#[derive(Deserialize)]
struct MessageAbout<'a> {
    #[serde(borrow)]
    key: Option<Lenient<KeyAbout<'a>>>,
    #[serde(rename = "remoteJid", borrow)]
    remote_jid: Option<Scalar<'a>>,
    #[serde(rename = "remoteJidAlt", borrow)]
    remote_jid_alt: Option<Scalar<'a>>,
    #[serde(rename = "fromMe", borrow)]
    from_me: Option<Scalar<'a>>,
    #[serde(borrow)]
    participant: Option<Scalar<'a>>,
    #[serde(rename = "participantAlt", borrow)]
    participant_alt: Option<Scalar<'a>>,
    #[serde(rename = "messageType", borrow)]
    message_type: Option<Scalar<'a>>,
    /// Evolution's `messages.update` names its message here rather than in `key.id`.
    #[serde(rename = "keyId", borrow)]
    key_id: Option<Scalar<'a>>,
}

/// The key's fields. (Not `#[serde(flatten)]`ed into [`MessageAbout`]: flattening buffers
/// every unknown field, the message body included.)
#[derive(Deserialize)]
struct KeyAbout<'a> {
    #[serde(rename = "remoteJid", borrow)]
    remote_jid: Option<Scalar<'a>>,
    #[serde(rename = "remoteJidAlt", borrow)]
    remote_jid_alt: Option<Scalar<'a>>,
    #[serde(rename = "fromMe", borrow)]
    from_me: Option<Scalar<'a>>,
    #[serde(borrow)]
    participant: Option<Scalar<'a>>,
    #[serde(rename = "participantAlt", borrow)]
    participant_alt: Option<Scalar<'a>>,
    #[serde(borrow)]
    id: Option<Scalar<'a>>,
}

impl MessageAbout<'_> {
    /// `key.id`, else `keyId`, when a string (unbounded: the caller applies its own bound).
    fn message_id(&self) -> Option<String> {
        let key = self.key.as_ref().and_then(|k| k.0.as_ref());
        key.and_then(|k| k.id.as_ref())
            .and_then(Scalar::as_str)
            .or_else(|| self.key_id.as_ref().and_then(Scalar::as_str))
            .map(str::to_owned)
    }

    fn facts(&self) -> EventFacts {
        let key = self.key.as_ref().and_then(|k| k.0.as_ref());
        // `key.X`, else the top-level `X`, as `chat::chat_of` picks the chat.
        let from_me = key
            .and_then(|k| k.from_me.as_ref())
            .and_then(Scalar::as_bool)
            .or_else(|| self.from_me.as_ref().and_then(Scalar::as_bool));
        let jid = |in_key: Option<&Scalar<'_>>, top: &Option<Scalar<'_>>| {
            in_key
                .and_then(Scalar::as_str)
                .and_then(id)
                .or_else(|| top.as_ref().and_then(Scalar::as_str).and_then(id))
        };
        let chat = jid(key.and_then(|k| k.remote_jid.as_ref()), &self.remote_jid);
        EventFacts {
            from_me,
            chat_type: chat.as_deref().and_then(chat_type_of),
            chat,
            chat_alt: jid(
                key.and_then(|k| k.remote_jid_alt.as_ref()),
                &self.remote_jid_alt,
            ),
            participant: jid(key.and_then(|k| k.participant.as_ref()), &self.participant),
            participant_alt: jid(
                key.and_then(|k| k.participant_alt.as_ref()),
                &self.participant_alt,
            ),
            message_type: self
                .message_type
                .as_ref()
                .and_then(Scalar::as_str)
                .filter(|t| !t.is_empty() && t.len() <= MAX_ID_LEN)
                .map(Into::into),
        }
    }
}

/// A JSON value as far as facts care: a string, a boolean, or anything else (skipped
/// without being built).
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Other,
}

impl Scalar<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// `T` when the value has T's shape, else `None` (the value skipped): a `key` that is not
/// an object must not lose the top-level fields.
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(LenientVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(event: &str, data: &str) -> EventFacts {
        EventFacts::extract(event, &RawValue::from_string(data.into()).unwrap())
    }

    #[test]
    fn a_group_message_gives_every_fact() {
        let f = facts(
            "messages.upsert",
            r#"{"key":{"remoteJid":"120363@g.us","fromMe":false,"id":"3EB0",
                "participant":"98765:4@lid","participantAlt":"5511988887777@s.whatsapp.net"},
                "pushName":"Ana","messageType":"imageMessage",
                "message":{"imageMessage":{"url":"https://x","caption":"hi \"there\""}}}"#,
        );
        assert_eq!(f.from_me(), Some(false));
        assert_eq!(f.chat_type(), Some(ChatType::Group));
        assert_eq!(f.chat(), Some("120363@g.us"));
        assert_eq!(f.chat_alt(), None);
        assert_eq!(f.participant(), Some("98765@lid"));
        assert_eq!(f.participant_alt(), Some("5511988887777@s.whatsapp.net"));
        assert_eq!(f.message_type(), Some("imageMessage"));
        assert_eq!(
            f.participants().collect::<Vec<_>>(),
            ["98765@lid", "5511988887777@s.whatsapp.net"]
        );
    }

    #[test]
    fn a_lid_chat_keeps_its_phone_jid() {
        let f = facts(
            "MESSAGES_UPSERT",
            r#"{"key":{"remoteJid":"123456@lid","remoteJidAlt":"5511999990000@s.whatsapp.net",
                "fromMe":true,"id":"A"},"messageType":"conversation","message":{"conversation":"x"}}"#,
        );
        assert_eq!(f.chat_type(), Some(ChatType::Direct));
        assert_eq!(
            f.chats().collect::<Vec<_>>(),
            ["123456@lid", "5511999990000@s.whatsapp.net"]
        );
        assert_eq!(f.from_me(), Some(true));
    }

    #[test]
    fn status_updates_carry_the_key_at_the_top() {
        let f = facts(
            "messages.update",
            r#"{"keyId":"A","remoteJid":"5511@c.us","fromMe":true,"status":"READ"}"#,
        );
        assert_eq!(f.chat(), Some("5511@s.whatsapp.net"));
        assert_eq!(f.chat_type(), Some(ChatType::Direct));
        assert_eq!(f.from_me(), Some(true));
        assert_eq!(f.message_type(), None);
    }

    #[test]
    fn escaped_strings_and_wrong_types_do_not_lose_other_facts() {
        let f = facts(
            "send.message",
            r#"{"key":{"remoteJid":"5511999990000\u0040s.whatsapp.net","fromMe":"yes",
                "participant":17},"messageType":["x"]}"#,
        );
        assert_eq!(f.chat(), Some("5511999990000@s.whatsapp.net"));
        assert_eq!(f.from_me(), None);
        assert_eq!(f.participant(), None);
        assert_eq!(f.message_type(), None);
        let f = facts(
            "messages.upsert",
            r#"{"key":"weird","remoteJid":"1@g.us","fromMe":false}"#,
        );
        assert_eq!(f.chat(), Some("1@g.us"));
        assert_eq!(f.from_me(), Some(false));
    }

    #[test]
    fn other_kinds_give_the_chat_only_and_chatless_events_nothing() {
        let f = facts("presence.update", r#"{"id":"120363@g.us","presences":{}}"#);
        assert_eq!(f.chat_type(), Some(ChatType::Group));
        assert_eq!(f.from_me(), None);
        assert!(facts("connection.update", r#"{"state":"open"}"#).is_empty());
        assert!(facts("whapi.custom", r#"{"key":{"remoteJid":"1@g.us"}}"#).is_empty());
        assert!(facts("messages.upsert", "[1,2]").is_empty());
        assert!(facts("messages.upsert", "null").is_empty());
        assert!(facts("messages.upsert", r#"{"key":{"remoteJid":"not a jid"}}"#).is_empty());
    }

    #[test]
    fn bytes_round_trip() {
        let samples = [
            EventFacts::default(),
            facts(
                "messages.upsert",
                r#"{"key":{"remoteJid":"123@lid","remoteJidAlt":"5511999990000@s.whatsapp.net",
                    "participant":"1@lid","participantAlt":"5511@s.whatsapp.net","fromMe":false},
                    "messageType":"conversation"}"#,
            ),
            facts(
                "messages.upsert",
                r#"{"key":{"remoteJid":"status@broadcast","fromMe":true}}"#,
            ),
            facts("chats.upsert", r#"[{"remoteJid":"1@newsletter"}]"#),
        ];
        for f in samples {
            let bytes = f.to_bytes();
            assert_eq!(EventFacts::from_bytes(&bytes), Ok(f.clone()), "{bytes:?}");
        }
        assert_eq!(EventFacts::default().to_bytes(), [1, 0, 0]);
    }

    #[test]
    fn garbage_bytes_are_errors_never_panics() {
        let good = facts(
            "messages.upsert",
            r#"{"key":{"remoteJid":"5511999990000@s.whatsapp.net","fromMe":false},
                "messageType":"conversation"}"#,
        )
        .to_bytes();
        for bad in [
            &[][..],
            &[1, 0][..],
            &[2, 0, 0][..],
            &[1, 3, 0][..],
            &[1, 5 << 2, 0][..],
            &[1, 0x80, 0][..],
            &[1, 0, 0x20][..],
            &[1, 0, 1][..],
            &[1, 0, 1, 0][..],
            &[1, 0, 1, 5, b'a'][..],
            &[1, 0, 1, 1, 0xff][..],
            &[1, 0, 0, 7][..],
        ] {
            assert!(EventFacts::from_bytes(bad).is_err(), "{bad:?}");
        }
        // Every truncation of a valid encoding, and every one-byte corruption, decodes to
        // an error or to some facts, never a panic.
        for len in 0..good.len() {
            assert!(EventFacts::from_bytes(&good[..len]).is_err());
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = good.clone();
            let at = (state as usize) % bytes.len();
            bytes[at] = (state >> 32) as u8;
            let _ = EventFacts::from_bytes(&bytes);
            let random: Vec<u8> = (0..(state % 40) as usize)
                .map(|i| (state >> (i % 56)) as u8)
                .collect();
            let _ = EventFacts::from_bytes(&random);
        }
    }
}
