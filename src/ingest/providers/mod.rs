//! Provider adapters: one module per gateway dialect, each a pure function from a webhook
//! body to [`IncomingEvent`](super::IncomingEvent)s in Evolution's names and shapes.
//!
//! # Rules every adapter follows
//! - **`raw`**: a batch payload (Whapi's arrays, Meta's `entry[].changes[].value` lists)
//!   becomes one event per item, and `raw` is that item's JSON text, byte for byte as the
//!   provider sent it (sliced out of the body, never re-serialized) unless it carries a
//!   credential, which is redacted (`ingest::redact`). A single-event payload (Linq's
//!   envelope) keeps the whole body as `raw`. Evolution keeps none: its `data` is the
//!   body's own, and its envelope carries the gateway's `apikey` and the URL it posted to
//!   (`ingest.keep_evolution_raw` keeps it, redacted). Storing the
//!   whole batch with every item would multiply storage by the batch size; the batch's own
//!   context (Whapi's `channel_id`, Meta's `metadata`) is folded into `data` instead.
//! - **`data`**: Evolution's shape for the events Evolution shapes (`messages.upsert`:
//!   `key.remoteJid`, `key.fromMe`, `key.id`, `pushName`, `message`, `messageType`,
//!   `messageTimestamp`; `messages.update`: `keyId`, `remoteJid`, `fromMe`, `status`; ...).
//!   Events Evolution sends as arrays (`chats.*`, `contacts.*`, `groups.*`) carry a
//!   one-element array, so consumers that iterate `data` keep working.
//! - **`dedupe_key`**: `source|chat|fromMe|message id|event|status` (see [`dedupe_key`]),
//!   only when the payload carries a stable provider id; otherwise `None`, so two
//!   different things are never merged.
//! - **custom events**: a provider event with no Evolution counterpart is kept under
//!   `<provider>.<its own name>` (`linq.phone_number.status_updated`,
//!   `meta.message_template_status_update`, `whapi.users.patch`), with the provider's
//!   payload as `data`. No Evolution event starts with a provider name, so the two
//!   namespaces never collide.
//! - **errors** name the provider, the JSON path of the offending field and the rule it
//!   broke ([`AdapterError`]); nothing input-reachable panics (fuzzed in `fuzz/`).

pub mod evolution;
pub mod linq;
pub mod meta;
pub mod whapi;

mod json;

use serde_json::value::RawValue;
use serde_json::Value;

use super::IncomingEvent;

/// Why an adapter rejected a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The payload is malformed or breaks a documented rule: HTTP 400.
    Invalid,
    /// A credential (signature, verify token) did not match: HTTP 401 or 403.
    Unauthorized,
}

/// A payload an adapter cannot normalize: which provider, which field, which rule.
///
/// Displays as `whapi: chats[0].id: "abc" does not match ^[\d-]{10,31}@[\w\.]{1,}$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {field}: {rule}")]
pub struct AdapterError {
    provider: &'static str,
    field: String,
    rule: String,
    kind: ErrorKind,
}

impl AdapterError {
    /// A malformed payload: `field` is a JSON path (`entry[0].changes[1].value`), or `$`
    /// for the body as a whole.
    pub fn invalid(
        provider: &'static str,
        field: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        AdapterError {
            provider,
            field: field.into(),
            rule: rule.into(),
            kind: ErrorKind::Invalid,
        }
    }

    /// A credential that did not match.
    pub fn unauthorized(
        provider: &'static str,
        field: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        AdapterError {
            provider,
            field: field.into(),
            rule: rule.into(),
            kind: ErrorKind::Unauthorized,
        }
    }

    /// The provider whose payload this is (`whapi`, `meta`, `linq`, `evolution`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The JSON path of the offending field (`$` for the whole body).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the field broke, in words.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Whether this is a bad payload (400) or a bad credential (401/403).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Builds the dedupe key every adapter uses: `source|scope|id|event|status`.
///
/// `scope` is the chat (and direction) the id lives in: WhatsApp message ids are only
/// unique per chat and sender, so the id alone could merge two different messages.
pub fn dedupe_key(source: &str, scope: &str, id: &str, event: &str, status: &str) -> String {
    format!("{source}|{scope}|{id}|{event}|{status}")
}

/// Serializes an adapter-built `data` value. A `Value` always serializes; the error arm
/// exists only so no input can reach a panic.
fn to_raw(
    provider: &'static str,
    field: &str,
    value: &Value,
) -> Result<Box<RawValue>, AdapterError> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| AdapterError::invalid(provider, field, format!("cannot serialize: {e}")))
}

/// Copies a provider's JSON text into an owned raw value, verbatim.
fn own_raw(raw: &RawValue) -> Box<RawValue> {
    raw.to_owned()
}

/// Assembles one event; every adapter goes through here so the fields stay consistent.
struct EventBuilder {
    source: &'static str,
}

impl EventBuilder {
    fn build(
        &self,
        event: &str,
        field: &str,
        data: &Value,
        raw: &RawValue,
        sender: Option<String>,
        dedupe_key: Option<String>,
    ) -> Result<IncomingEvent, AdapterError> {
        Ok(IncomingEvent {
            event: event.to_string(),
            data: to_raw(self.source, field, data)?,
            sender,
            source: Some(self.source),
            raw: Some(super::redact::redact(own_raw(raw))),
            dedupe_key,
        })
    }
}

/// Turns a phone number into a WhatsApp user JID; a value that already has a domain is
/// kept as it is.
fn user_jid(phone: &str) -> String {
    if phone.contains('@') {
        phone.to_string()
    } else {
        let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
        format!("{digits}@s.whatsapp.net")
    }
}

/// Checks a custom event name from a provider: a short dotted token, so it is safe as a
/// queue, topic or URL suffix downstream.
fn check_event_token(provider: &'static str, field: &str, name: &str) -> Result<(), AdapterError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(AdapterError::invalid(
            provider,
            field,
            format!("{name:?} is not an event name (1-100 of a-z 0-9 . _ -)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_provider_field_and_rule() {
        let err = AdapterError::invalid("whapi", "chats[0].id", "\"abc\" does not match X");
        assert_eq!(
            err.to_string(),
            "whapi: chats[0].id: \"abc\" does not match X"
        );
        assert_eq!(err.field(), "chats[0].id");
        assert_eq!(err.provider(), "whapi");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn user_jid_keeps_domains_and_strips_plus() {
        assert_eq!(user_jid("+55 11 9999"), "55119999@s.whatsapp.net");
        assert_eq!(user_jid("1203@g.us"), "1203@g.us");
    }

    #[test]
    fn event_tokens() {
        assert!(check_event_token("linq", "event_type", "phone_number.status_updated").is_ok());
        assert!(check_event_token("linq", "event_type", "").is_err());
        assert!(check_event_token("linq", "event_type", "a/b").is_err());
        assert!(check_event_token("linq", "event_type", &"a".repeat(101)).is_err());
    }
}
