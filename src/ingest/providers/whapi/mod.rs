//! Whapi.Cloud webhooks: `{"<type>": [...], "event": {"type": "<type>", "event": "<verb>"},
//! "channel_id": "..."}`, one array per verb: `<type>` for post/put, `<type>_updates`
//! (items with `before_update`, `after_update`, `changes`) for patch, `<type>_removed`
//! for delete.
//!
//! | Whapi | Evolution event | `data` |
//! |---|---|---|
//! | messages.post | messages.upsert (reaction/edit/delete actions: messages.upsert with `reactionMessage`, messages.edited, messages.delete) | message |
//! | messages.put | messages.update | message + `status` |
//! | messages.patch | messages.edited | message of `after_update` + `before`/`after`/`changes` |
//! | messages.delete | messages.delete | key |
//! | statuses.post/put | messages.update | `keyId`, `remoteJid`, `fromMe`, `status` |
//! | chats.post / put | chats.upsert / chats.update | `[chat]` |
//! | chats.patch | chats.update | `[chat + before/after/changes]` |
//! | chats.delete | chats.delete | `[jid]` |
//! | contacts.post / put, patch | contacts.upsert / contacts.update | `[contact]` |
//! | groups.post / put, patch | groups.upsert / groups.update | `[group]` |
//! | groups_participants (any verb) | group-participants.update | `{id, participants, action}` |
//! | presences.* | presence.update | `{id, presences}` |
//! | labels.* | labels.edit (`deleted: true` on delete) | label |
//! | calls.* | call | Baileys call |
//! | anything else | `whapi.<type>.<verb>` (custom) | the item, or the whole body |
//!
//! `raw` is each array item verbatim. Chat ids are checked against Whapi's documented
//! pattern `^[\d-]{10,31}@[\w\.]{1,}$` (plus `status@broadcast`, the stories chat).

mod content;
mod messages;
mod others;

use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{self, Obj};
use super::{AdapterError, EventBuilder, IncomingEvent};

const P: &str = "whapi";

/// Whapi's documented chat id pattern, for error messages.
pub const CHAT_ID_PATTERN: &str = r"^[\d-]{10,31}@[\w\.]{1,}$";

/// Normalizes one Whapi webhook body into one event per item.
pub fn normalize(body: &[u8]) -> Result<Vec<IncomingEvent>, AdapterError> {
    let obj = json::body_object(P, body)?;
    let meta_raw = obj
        .get("event")
        .ok_or_else(|| AdapterError::invalid(P, "event", "required field is missing"))?;
    let meta = json::value(P, "event", meta_raw)?;
    let kind = json::req_str(P, "event", &meta, "type")?;
    let verb = json::req_str(P, "event", &meta, "event")?;
    let ctx = Ctx {
        obj: &obj,
        kind,
        verb,
        b: EventBuilder { source: P },
    };
    let mut out = Vec::new();
    match kind {
        "messages" => messages::messages(&ctx, &mut out)?,
        "statuses" => messages::statuses(&ctx, &mut out)?,
        "chats" => others::chats(&ctx, &mut out)?,
        "contacts" => others::contacts(&ctx, &mut out)?,
        "groups" => others::groups(&ctx, &mut out)?,
        "presences" => others::presences(&ctx, &mut out)?,
        "labels" => others::labels(&ctx, &mut out)?,
        "calls" => others::calls(&ctx, &mut out)?,
        _ => ctx.custom_body(body, &mut out)?,
    }
    Ok(out)
}

/// One payload being normalized: its members, its `event.type` and `event.event`.
struct Ctx<'a> {
    obj: &'a Obj<'a>,
    kind: &'a str,
    verb: &'a str,
    b: EventBuilder,
}

impl<'a> Ctx<'a> {
    /// The items of the first present array among `names`, with each item's path.
    /// `Ok(None)` when none is present.
    fn items(&self, names: &[&str]) -> Result<Option<Vec<(String, &'a RawValue)>>, AdapterError> {
        for name in names {
            if let Some(raw) = self.obj.get(*name) {
                let items = json::array(P, name, raw)?;
                return Ok(Some(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| (json::index(name, i), r))
                        .collect(),
                ));
            }
        }
        Ok(None)
    }

    /// Like [`Ctx::items`], but a payload with none of the arrays is an error naming the
    /// one the verb calls for.
    fn require_items(&self, names: &[&str]) -> Result<Vec<(String, &'a RawValue)>, AdapterError> {
        self.items(names)?.ok_or_else(|| {
            AdapterError::invalid(
                P,
                names.first().copied().unwrap_or("$"),
                format!("required for {}.{}", self.kind, self.verb),
            )
        })
    }

    /// The name of a custom event for this payload: `whapi.<type>.<verb>`.
    fn custom_name(&self) -> Result<String, AdapterError> {
        let name = format!("{P}.{}.{}", self.kind, self.verb);
        super::check_event_token(P, "event", &name)?;
        Ok(name)
    }

    /// A payload kind we do not map: one custom event holding the whole body.
    fn custom_body(&self, body: &[u8], out: &mut Vec<IncomingEvent>) -> Result<(), AdapterError> {
        let raw: Box<RawValue> = serde_json::from_slice(body)
            .map_err(|e| AdapterError::invalid(P, "$", format!("not JSON: {e}")))?;
        let data = json::value(P, "$", &raw)?;
        out.push(
            self.b
                .build(&self.custom_name()?, "$", &data, &raw, None, None)?,
        );
        Ok(())
    }

    /// A custom event per item of the given arrays.
    fn custom_items(
        &self,
        names: &[&str],
        out: &mut Vec<IncomingEvent>,
    ) -> Result<(), AdapterError> {
        let name = self.custom_name()?;
        for (path, raw) in self.require_items(names)? {
            let data = json::value(P, &path, raw)?;
            out.push(self.b.build(&name, &path, &data, raw, None, None)?);
        }
        Ok(())
    }
}

/// Whether `s` matches `^[\d-]{10,31}@[\w\.]{1,}$` (ASCII `\w`, as in JavaScript, where
/// Whapi's schema comes from). Checked by hand: one pattern does not justify a regex
/// engine in the dependency tree.
pub fn is_chat_id(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    (10..=31).contains(&user.len())
        && user.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Checks a chat id field, naming it in the error.
fn check_chat_id(path: &str, id: &str) -> Result<(), AdapterError> {
    // WhatsApp's stories pseudo-chat: messages in it are real, the pattern just omits it.
    if id == "status@broadcast" || is_chat_id(id) {
        Ok(())
    } else {
        Err(AdapterError::invalid(
            P,
            path,
            format!("{id:?} does not match {CHAT_ID_PATTERN}"),
        ))
    }
}

/// The item's string field `key`, required and a valid chat id.
fn chat_id_field<'v>(path: &str, v: &'v Value, key: &str) -> Result<&'v str, AdapterError> {
    let id = json::req_str(P, path, v, key)?;
    check_chat_id(&json::join(path, key), id)?;
    Ok(id)
}

/// The sender for events whose payload names the channel's own number: a message we sent
/// has the channel's phone in `from`.
fn owner_jid(v: &Value) -> Option<String> {
    if v.get("from_me").and_then(Value::as_bool) == Some(true) {
        json::str_at(v, &["from"]).map(super::user_jid)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_id_pattern() {
        assert!(is_chat_id("919984351847@s.whatsapp.net"));
        assert!(is_chat_id("120363025246125486@g.us"));
        assert!(is_chat_id("5511999999-1600000000@g.us"));
        assert!(is_chat_id("1234567890@c_u.s"));
        assert!(!is_chat_id("123456789@s.whatsapp.net")); // 9 digits
        assert!(!is_chat_id(&format!("{}@g.us", "1".repeat(32))));
        assert!(is_chat_id(&format!("{}@g.us", "1".repeat(31))));
        assert!(!is_chat_id("919984351847@"));
        assert!(!is_chat_id("919984351847"));
        assert!(!is_chat_id("91998435184a@s.whatsapp.net"));
        assert!(!is_chat_id("919984351847@s.what-sapp.net"));
        assert!(!is_chat_id("919984351847@a@b"));
        assert!(!is_chat_id("[email\u{a0}protected]"));
        assert!(!is_chat_id("919984351847@s.whatsäpp.net"));
    }
}
