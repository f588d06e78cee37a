//! A webhook's per-instance settings as Evolution's bodies give them: the `/webhook/set`
//! object and the create body's `"webhook"` (an object, or in v1 a URL string with flat
//! `webhook_by_events`, `webhook_base64` and `events` fields), and how `find` shows them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{SigningKey, WebhookTarget, JWT_KEY_HEADER};
use crate::sinks::settings::{bool_field, string_field, FieldError, InstanceSettings};
use crate::sinks::SinkTarget;

/// Create-body fields the v1 form reads besides `webhook` itself.
pub(super) const FLAT_FIELDS: &[&str] = &[
    "webhook_by_events",
    "webhook_base64",
    "webhookByEvents",
    "webhookBase64",
    "events",
];

/// Reads the webhook object: on when it has a URL (unless it says otherwise), the URL
/// required when on and absolute http(s), Evolution's three spellings of `byEvents` and
/// `base64`, `headers` (a `jwt_key` among them must not be empty), and a signing `secret`
/// that must parse.
pub(super) fn read(obj: &Map<String, Value>, prefix: &str) -> Result<InstanceSettings, FieldError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let url =
        string_field(obj, "url").map_err(|_| FieldError::new(&field("url"), "must be a string"))?;
    let enabled = bool_field(obj, "enabled")?.unwrap_or(url.is_some());
    if enabled && url.is_none() {
        return Err(FieldError::new(
            &field("url"),
            "is required when the webhook is enabled",
        ));
    }
    if let Some(url) = &url {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(FieldError::new(
                    &field("url"),
                    "must be an absolute http(s) URL",
                ))
            }
        }
    }
    let by_events = bool_field(obj, "byEvents")?
        .or(bool_field(obj, "webhookByEvents")?)
        .or(bool_field(obj, "webhook_by_events")?)
        .unwrap_or(false);
    let base64 = bool_field(obj, "base64")?
        .or(bool_field(obj, "webhookBase64")?)
        .or(bool_field(obj, "webhook_base64")?)
        .unwrap_or(false);
    let secret = string_field(obj, "secret")?;
    if let Some(secret) = &secret {
        SigningKey::from_secret(secret).map_err(|e| FieldError::new(&field("secret"), e))?;
    }
    let headers = headers_field(obj, "headers")?;
    if headers.get(JWT_KEY_HEADER).is_some_and(String::is_empty) {
        // An empty HMAC key signs nothing a receiver could trust (Evolution's library
        // throws on it at every send): refuse it here instead.
        return Err(FieldError::new(
            &field(&format!("headers.{JWT_KEY_HEADER}")),
            "must not be empty",
        ));
    }
    Ok(InstanceSettings {
        enabled,
        stored: Some(SinkTarget::Webhook(WebhookTarget {
            url: url.unwrap_or_default(),
            by_events,
            base64,
            headers,
            secret,
            ..WebhookTarget::default()
        })),
    })
}

/// The v1 create body's webhook (`"webhook": "<url>"` with flat fields), as the object it
/// stands for; nothing when the body sets no webhook that way.
pub(super) fn read_flat(
    body: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, FieldError> {
    match body.get("webhook") {
        Some(Value::String(url)) if !url.is_empty() => {
            let mut flat = Map::new();
            flat.insert("url".into(), Value::String(url.clone()));
            for (from, to) in [
                ("webhook_by_events", "byEvents"),
                ("webhook_base64", "base64"),
            ] {
                if let Some(v) = body.get(from) {
                    flat.insert(to.into(), v.clone());
                }
            }
            if let Some(events) = body.get("events") {
                flat.insert("events".into(), events.clone());
            }
            Ok(Some(flat))
        }
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
        Some(_) => Err(FieldError::new(
            "webhook",
            "must be a URL string or an object",
        )),
    }
}

/// What `/webhook/find` shows of the endpoint (Evolution's field names, both spellings).
/// Secrets are never shown, only whether there is one: the signing `secret` as `signed`,
/// the `jwt_key` header (left out of `headers`) as `jwt`.
pub(super) fn show(stored: &SinkTarget, view: &mut Map<String, Value>) {
    let SinkTarget::Webhook(hook) = stored else {
        return;
    };
    let headers: BTreeMap<&str, &str> = hook
        .headers
        .iter()
        .filter(|(name, _)| *name != JWT_KEY_HEADER)
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    view.insert("url".into(), json!(hook.url));
    view.insert("headers".into(), json!(headers));
    view.insert("webhookByEvents".into(), json!(hook.by_events));
    view.insert("webhookBase64".into(), json!(hook.base64));
    view.insert("byEvents".into(), json!(hook.by_events));
    view.insert("base64".into(), json!(hook.base64));
    view.insert("signed".into(), json!(hook.secret.is_some()));
    view.insert(
        "jwt".into(),
        json!(hook.headers.contains_key(JWT_KEY_HEADER)),
    );
}

fn headers_field(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<BTreeMap<String, String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect()),
        Some(_) => Err(FieldError::new(
            field,
            "must be an object of header names to values",
        )),
    }
}
