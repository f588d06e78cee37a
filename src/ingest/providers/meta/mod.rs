//! Meta's WhatsApp Cloud API webhooks: the `GET` verification handshake, the
//! `X-Hub-Signature-256` check, and notifications
//! `{"object":"whatsapp_business_account","entry":[{"id":"<waba>","changes":[{"field":"messages",
//! "value":{"metadata":{...},"contacts":[...],"messages":[...],"statuses":[...]}}]}]}`.
//!
//! | Meta | Evolution event |
//! |---|---|
//! | `messages` change, `value.messages[i]` | messages.upsert (reactions as `reactionMessage`) |
//! | `messages` change, `value.statuses[i]` | messages.update (`status` in Baileys' names) |
//! | `calls` change, `value.calls[i]` | call |
//! | any other change field, or a `messages` change with neither list | `meta.<field>` (custom), `data` = `value` |
//!
//! `raw` is the item (`value.messages[i]`, `value.statuses[i]`, `value.calls[i]`) verbatim,
//! or the whole change for custom events. `sender` is the business number from
//! `value.metadata.display_phone_number`, as a JID. Verify the signature over the exact
//! body bytes *before* calling [`normalize`].

use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

mod items;

use items::{call, message, status};

use super::json::{self, str_at};
use super::{user_jid, AdapterError, EventBuilder, IncomingEvent};

const P: &str = "meta";

/// Checks `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of body>` in constant time.
/// A missing or malformed header, or an empty app secret, is `false` (fail closed).
pub fn verify_signature(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    if app_secret.is_empty() {
        return false;
    }
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `GET` handshake: `hub.mode=subscribe`, `hub.verify_token` equal (constant time) to
/// the instance's token, and `hub.challenge` to echo back as the 200 body. A wrong token is
/// [`ErrorKind::Unauthorized`](super::ErrorKind::Unauthorized) (answer 403); anything else
/// wrong is `Invalid` (400). The challenge must be 1-256 visible ASCII characters, so the
/// echo can never carry markup.
pub fn verify_handshake(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    expected_token: &str,
) -> Result<String, AdapterError> {
    if mode != Some("subscribe") {
        return Err(AdapterError::invalid(
            P,
            "hub.mode",
            "must be \"subscribe\"",
        ));
    }
    let token = token.unwrap_or("");
    if expected_token.is_empty() || !bool::from(token.as_bytes().ct_eq(expected_token.as_bytes())) {
        return Err(AdapterError::unauthorized(
            P,
            "hub.verify_token",
            "does not match the instance's verify token",
        ));
    }
    match challenge {
        Some(c)
            if !c.is_empty()
                && c.len() <= 256
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') =>
        {
            Ok(c.to_string())
        }
        Some(_) => Err(AdapterError::invalid(
            P,
            "hub.challenge",
            "must be 1-256 characters of A-Z a-z 0-9 - _ .",
        )),
        None => Err(AdapterError::invalid(
            P,
            "hub.challenge",
            "required parameter is missing",
        )),
    }
}

/// Normalizes one (already signature-checked) notification body.
pub fn normalize(body: &[u8]) -> Result<Vec<IncomingEvent>, AdapterError> {
    let obj = json::body_object(P, body)?;
    if let Some(raw) = obj.get("object") {
        let object = json::value(P, "object", raw)?;
        if object.as_str() != Some("whatsapp_business_account") {
            return Err(AdapterError::invalid(
                P,
                "object",
                "must be \"whatsapp_business_account\"",
            ));
        }
    }
    let entries = obj
        .get("entry")
        .ok_or_else(|| AdapterError::invalid(P, "entry", "required field is missing"))?;
    let b = EventBuilder { source: P };
    let mut out = Vec::new();
    for (i, entry_raw) in json::array(P, "entry", entries)?.into_iter().enumerate() {
        let entry_path = json::index("entry", i);
        let entry = json::object(P, &entry_path, entry_raw)?;
        let changes_path = json::join(&entry_path, "changes");
        let Some(changes) = entry.get("changes") else {
            return Err(AdapterError::invalid(
                P,
                changes_path,
                "required field is missing",
            ));
        };
        for (j, change_raw) in json::array(P, &changes_path, changes)?
            .into_iter()
            .enumerate()
        {
            let change_path = json::index(&changes_path, j);
            change(&b, &change_path, change_raw, &mut out)?;
        }
    }
    Ok(out)
}

/// One `entry[i].changes[j]`.
fn change(
    b: &EventBuilder,
    path: &str,
    raw: &RawValue,
    out: &mut Vec<IncomingEvent>,
) -> Result<(), AdapterError> {
    let change = json::object(P, path, raw)?;
    let field_path = json::join(path, "field");
    let field = match change.get("field") {
        Some(f) => json::value(P, &field_path, f)?,
        None => {
            return Err(AdapterError::invalid(
                P,
                field_path,
                "required field is missing",
            ))
        }
    };
    let field = field
        .as_str()
        .ok_or_else(|| AdapterError::invalid(P, &field_path, "expected a string"))?
        .to_string();
    let value_path = json::join(path, "value");
    let value_raw = change
        .get("value")
        .ok_or_else(|| AdapterError::invalid(P, &value_path, "required field is missing"))?;
    let value = json::object(P, &value_path, value_raw)?;
    let metadata = match value.get("metadata") {
        Some(m) => json::value(P, &json::join(&value_path, "metadata"), m)?,
        None => Value::Null,
    };
    let sender = str_at(&metadata, &["display_phone_number"]).map(user_jid);
    let contacts = match value.get("contacts") {
        Some(c) => json::value(P, &json::join(&value_path, "contacts"), c)?,
        None => Value::Null,
    };
    // Each list item becomes one event: (list key, event name, item mapper).
    type Mapper<'a> = Box<dyn Fn(&str, &Value) -> Result<(Value, String), AdapterError> + 'a>;
    let lists: Vec<(&str, &str, Mapper)> = match field.as_str() {
        "messages" => vec![
            (
                "messages",
                "messages.upsert",
                Box::new(|p: &str, v: &Value| message(p, v, &contacts)),
            ),
            (
                "statuses",
                "messages.update",
                Box::new(|p: &str, v: &Value| status(p, v)),
            ),
        ],
        "calls" => vec![("calls", "call", Box::new(|p: &str, v: &Value| call(p, v)))],
        _ => Vec::new(),
    };
    let mut handled = false;
    for (key, event, map) in &lists {
        let Some(list) = value.get(*key) else {
            continue;
        };
        handled = true;
        let list_path = json::join(&value_path, key);
        for (k, item) in json::array(P, &list_path, list)?.into_iter().enumerate() {
            let item_path = json::index(&list_path, k);
            let v = json::value(P, &item_path, item)?;
            let (data, dedupe) = map(&item_path, &v)?;
            out.push(b.build(event, &item_path, &data, item, sender.clone(), Some(dedupe))?);
        }
    }
    if !handled {
        let name = format!("{P}.{field}");
        super::check_event_token(P, &field_path, &name)?;
        let data = json::value(P, &value_path, value_raw)?;
        out.push(b.build(&name, &value_path, &data, raw, sender, None)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sign(b"s3cret", body);
        assert!(verify_signature(b"s3cret", body, Some(&good)));
        assert!(verify_signature(
            b"s3cret",
            body,
            Some(&good.to_uppercase().replace("SHA256=", "sha256="))
        ));
        assert!(!verify_signature(b"other", body, Some(&good)));
        assert!(!verify_signature(b"s3cret", b"{}", Some(&good)));
        assert!(!verify_signature(b"s3cret", body, None));
        assert!(!verify_signature(b"s3cret", body, Some("sha256=zz")));
        assert!(!verify_signature(
            b"s3cret",
            body,
            Some(good.trim_start_matches("sha256="))
        ));
        assert!(!verify_signature(b"", body, Some(&sign(b"", body))));
    }

    #[test]
    fn handshake() {
        assert_eq!(
            verify_handshake(Some("subscribe"), Some("tok"), Some("1158201444"), "tok").unwrap(),
            "1158201444"
        );
        let bad = verify_handshake(Some("subscribe"), Some("nope"), Some("1"), "tok").unwrap_err();
        assert_eq!(bad.kind(), super::super::ErrorKind::Unauthorized);
        assert_eq!(bad.field(), "hub.verify_token");
        assert_eq!(
            verify_handshake(Some("x"), Some("tok"), Some("1"), "tok")
                .unwrap_err()
                .field(),
            "hub.mode"
        );
        assert_eq!(
            verify_handshake(Some("subscribe"), Some("tok"), None, "tok")
                .unwrap_err()
                .field(),
            "hub.challenge"
        );
        assert!(verify_handshake(Some("subscribe"), Some("tok"), Some("<b>"), "tok").is_err());
        assert!(verify_handshake(Some("subscribe"), Some(""), Some("1"), "").is_err());
    }
}
