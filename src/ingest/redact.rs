//! Credentials out of `raw`: what a gateway sends may carry secrets of its own (Evolution
//! puts its instance `apikey` and the URL it posted to, `?token=` included, in every
//! envelope), and `raw` goes to every webhook, queue and listener downstream.
//!
//! Redacted, with the value replaced by [`REDACTED`]:
//! - the value of any object key that names a credential ([`is_credential_name`]:
//!   `apikey`, `token`, `access_token`, `secret`, `password`, `authorization`, ...);
//! - in any string that is a URL: the password of its user-info, and the values of query
//!   parameters whose names are credentials (`?token=`, `&apikey=`, `&sig=`, ...).
//!
//! A payload with nothing to redact keeps its exact bytes (the common case; no
//! re-serialization).

use serde_json::value::RawValue;
use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// Whether a key or parameter name names a credential. Compared without case, `-` and `_`,
/// so `apiKey`, `api_key` and `X-Api-Key` are one name.
pub fn is_credential_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    const EXACT: &[&str] = &[
        "apikey",
        "xapikey",
        "token",
        "accesstoken",
        "refreshtoken",
        "authtoken",
        "idtoken",
        "bearer",
        "secret",
        "clientsecret",
        "appsecret",
        "password",
        "passwd",
        "pwd",
        "authorization",
        "auth",
        "signature",
        "sig",
        "verifytoken",
        "hubverifytoken",
        "privatekey",
        "sessionkey",
        "cookie",
    ];
    EXACT.contains(&folded.as_str())
        || folded.ends_with("token")
        || folded.ends_with("secret")
        || folded.ends_with("password")
        || folded.ends_with("apikey")
}

/// `raw` with its credentials redacted; the same bytes when it has none.
pub fn redact(raw: Box<RawValue>) -> Box<RawValue> {
    // Most payloads name no credential at all: answer those without decoding them.
    if !might_hold_credentials(raw.get()) {
        return raw;
    }
    let Ok(mut value) = serde_json::from_str::<Value>(raw.get()) else {
        // Not ours to judge here: the body passed `ingest::limits` already.
        return raw;
    };
    if !redact_value(&mut value) {
        return raw;
    }
    serde_json::value::to_raw_value(&value).unwrap_or(raw)
}

/// Whether `text` might hold something [`redact`] removes: every credential name contains
/// one of these markers (compared without case), and a URL's user-info shows as `://`
/// followed by an `@` before the host ends. False means certainly nothing to redact.
fn might_hold_credentials(text: &str) -> bool {
    const MARKERS: &[&[u8]] = &[
        b"key", b"token", b"secret", b"pass", b"pwd", b"auth", b"sig", b"cookie", b"bearer",
    ];
    let lower = text.as_bytes().to_ascii_lowercase();
    if MARKERS
        .iter()
        .any(|m| memchr::memmem::find(&lower, m).is_some())
    {
        return true;
    }
    memchr::memmem::find_iter(&lower, b"://").any(|at| {
        lower[at + 3..]
            .iter()
            .take_while(|b| {
                !matches!(b, b'/' | b'"' | b'?' | b'#' | b'\\') && !b.is_ascii_whitespace()
            })
            .any(|b| *b == b'@')
    })
}

/// Redacts in place; true when anything changed.
fn redact_value(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                if is_credential_name(key) && !v.is_null() && v.as_str() != Some(REDACTED) {
                    if matches!(v, Value::Object(_) | Value::Array(_)) {
                        changed |= redact_value(v);
                    } else {
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    }
                } else {
                    changed |= redact_value(v);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_value(v) | c),
        Value::String(s) => match redact_url(s) {
            Some(redacted) => {
                *s = redacted;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// A URL with its credentials redacted, or `None` when `text` is not a URL or has none.
fn redact_url(text: &str) -> Option<String> {
    if !(text.contains("://") && (text.contains('?') || text.contains('@'))) {
        return None;
    }
    let mut url = url::Url::parse(text).ok()?;
    let mut changed = false;
    if url.password().is_some() {
        changed |= url.set_password(Some(REDACTED)).is_ok();
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs
            .iter()
            .any(|(k, v)| is_credential_name(k) && v != REDACTED)
        {
            let mut query = url.query_pairs_mut();
            query.clear();
            for (k, v) in &pairs {
                let v = if is_credential_name(k) { REDACTED } else { v };
                query.append_pair(k, v);
            }
            drop(query);
            changed = true;
        }
    }
    changed.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> String {
        redact(RawValue::from_string(json.into()).unwrap())
            .get()
            .to_string()
    }

    #[test]
    fn credential_keys_and_url_tokens_are_redacted() {
        let out: Value = serde_json::from_str(&run(
            r#"{"event":"messages.upsert","apikey":"B6D7-SECRET","destination":"http://sy:8080/ingest/i/evolution?token=tok123&x=1","data":{"key":{"id":"3EB0"}},"nested":{"accessToken":"abc","list":[{"Authorization":"Bearer z"}]},"hook":"https://u:pw@example.com/x"}"#,
        ))
        .unwrap();
        assert_eq!(out["apikey"], REDACTED);
        let destination = out["destination"].as_str().unwrap();
        assert!(!destination.contains("tok123"), "{destination}");
        assert!(
            destination.contains("token=%5Bredacted%5D"),
            "{destination}"
        );
        assert!(destination.contains("x=1"), "{destination}");
        assert_eq!(out["nested"]["accessToken"], REDACTED);
        assert_eq!(out["nested"]["list"][0]["Authorization"], REDACTED);
        assert!(!out["hook"].as_str().unwrap().contains("pw"));
        assert_eq!(out["data"]["key"]["id"], "3EB0");
    }

    #[test]
    fn nothing_to_redact_keeps_the_bytes() {
        let body = r#"{ "a" : 1,"url":"https://example.com/x?page=2" }"#;
        assert_eq!(run(body), body);
        // null credentials are nothing to hide
        let body = r#"{"apikey":null}"#;
        assert_eq!(run(body), body);
    }

    #[test]
    fn the_quick_look_never_misses_what_redaction_finds() {
        for text in [
            r#"{"apiKey":"x"}"#,
            r#"{"X-Api-Key":"x"}"#,
            r#"{"u":"https://h/x?Token=1"}"#,
            r#"{"u":"https://user:pw@example.com/"}"#,
            r#"{"client_secret":"x"}"#,
            r#"{"PASSWD":"x"}"#,
            r#"{"pass_word":"x"}"#,
            r#"{"Authorization":"x"}"#,
            r#"{"sig":"x"}"#,
        ] {
            assert!(might_hold_credentials(text), "{text}");
        }
        for text in [
            r#"{"from":"5511@s.whatsapp.net","text":{"body":"hi"},"link":"https://example.com/a@b"}"#,
            r#"{"id":"3EB0","type":"text"}"#,
        ] {
            assert!(!might_hold_credentials(text), "{text}");
        }
    }

    #[test]
    fn names() {
        for name in [
            "apikey",
            "apiKey",
            "X-Api-Key",
            "token",
            "verify_token",
            "app_secret",
        ] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in [
            "keyId",
            "remoteJid",
            "id",
            "message",
            "pushName",
            "tokens_used",
        ] {
            assert!(!is_credential_name(name), "{name}");
        }
    }
}
