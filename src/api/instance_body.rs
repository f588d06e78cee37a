//! Reading Evolution's create-instance body, in both of its forms: v2 nests each sink in an
//! object (`"rabbitmq":{"enabled":true,"events":[...]}`), v1 spreads them in flat fields
//! (`rabbitmq_enabled`, `rabbitmq_events`, `webhook` as a URL string).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::catalog::EventKind;
use crate::delivery::subscription::{OrderBy, Policy, WebhookTarget};
use crate::registry::records::{MetaSettings, ProviderSettings, SinkKind};
use crate::sinks::webhook::SigningKey;

/// Settings Evolution echoes under `settings`.
const SETTINGS: &[&str] = &[
    "reject_call",
    "msg_call",
    "groups_ignore",
    "always_online",
    "read_messages",
    "read_status",
    "sync_full_history",
];

/// Fields this module reads itself; everything else is stored and echoed as `extra`.
const HANDLED: &[&str] = &[
    "instanceName",
    "token",
    "number",
    "integration",
    "qrcode",
    "webhook",
    "webhook_by_events",
    "webhook_base64",
    "webhookByEvents",
    "webhookBase64",
    "events",
    "rabbitmq",
    "rabbitmq_enabled",
    "rabbitmq_events",
    "sqs",
    "sqs_enabled",
    "sqs_events",
    "websocket",
    "websocket_enabled",
    "websocket_events",
    "kafka",
    "kafka_enabled",
    "kafka_events",
    "providers",
];

/// One sink's settings as given in a body.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRequest {
    /// On or off.
    pub enabled: bool,
    /// Events; empty = all.
    pub events: Vec<EventKind>,
    /// Webhook target (webhook only).
    pub webhook: Option<WebhookTarget>,
    /// The sink object's `"policy"`.
    pub policy: Policy,
}

/// A parsed create-instance body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    /// Instance name.
    pub name: String,
    /// Token the caller chose, if any.
    pub token: Option<String>,
    /// The owner's number.
    pub number: Option<String>,
    /// Evolution's integration name.
    pub integration: Option<String>,
    /// Sinks set at creation.
    pub sinks: BTreeMap<SinkKind, SinkRequest>,
    /// `settings` echoed back.
    pub settings: Map<String, Value>,
    /// Stored and echoed, not acted on.
    pub extra: Map<String, Value>,
    /// Provider settings.
    pub providers: ProviderSettings,
}

/// Instance names end up in URLs, queue, topic and SQS queue names; SQS allows only
/// alphanumerics, `-` and `_` (80 characters, `.fifo` and the event included).
pub fn validate_instance_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "instanceName",
            "must be 1 to 64 characters of letters, digits, `-` and `_`",
        ))
    }
}

fn string_field(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(field, "must be a string")),
    }
}

fn bool_field(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::validation(field, "must be true or false")),
    }
}

/// Reads an events list; every name in any Evolution spelling.
pub fn events_field(body: &Map<String, Value>, field: &str) -> Result<Vec<EventKind>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => EventKind::parse(s).map_err(ApiError::from),
                _ => Err(ApiError::validation(
                    &format!("{field}[{i}]"),
                    "must be a string",
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::validation(
            field,
            "must be an array of event names",
        )),
    }
}

fn headers_field(
    body: &Map<String, Value>,
    field: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Ok((k.clone(), other.to_string())),
            })
            .collect(),
        Some(_) => Err(ApiError::validation(
            field,
            "must be an object of header names to values",
        )),
    }
}

/// Reads the webhook object of `/webhook/set` or of a v2 create body.
pub fn webhook_object(obj: &Map<String, Value>, prefix: &str) -> Result<SinkRequest, ApiError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let url = string_field(obj, "url")
        .map_err(|_| ApiError::validation(&field("url"), "must be a string"))?;
    let enabled = bool_field(obj, "enabled")?.unwrap_or(url.is_some());
    if enabled && url.is_none() {
        return Err(ApiError::validation(
            &field("url"),
            "is required when the webhook is enabled",
        ));
    }
    if let Some(url) = &url {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(ApiError::validation(
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
        SigningKey::from_secret(secret).map_err(|e| ApiError::validation(&field("secret"), e))?;
    }
    Ok(SinkRequest {
        enabled,
        events: events_field(obj, "events").map_err(|e| prefixed(e, prefix))?,
        webhook: Some(WebhookTarget {
            url: url.unwrap_or_default(),
            by_events,
            base64,
            headers: headers_field(obj, "headers")?,
            secret,
            ..WebhookTarget::default()
        }),
        policy: policy_field(obj, prefix)?,
    })
}

/// Reads a sink object's `"policy"` (`{"ordering": "chat" | "instance" | "none"}`);
/// absent or null is the server's defaults. A key it does not know is refused, so a typo
/// never silently means "default".
pub fn policy_field(obj: &Map<String, Value>, prefix: &str) -> Result<Policy, ApiError> {
    policy_value(obj.get("policy"), &format!("{prefix}.policy"))
}

/// Reads a `"policy"` value found at `name` (see [`policy_field`]).
pub fn policy_value(value: Option<&Value>, name: &str) -> Result<Policy, ApiError> {
    let field = |f: &str| format!("{name}{f}");
    let policy = match value {
        None | Some(Value::Null) => return Ok(Policy::default()),
        Some(Value::Object(policy)) => policy,
        Some(_) => return Err(ApiError::validation(&field(""), "must be an object")),
    };
    let mut out = Policy::default();
    for (key, value) in policy {
        match (key.as_str(), value) {
            ("ordering", Value::Null) => {}
            ("ordering", Value::String(name)) if OrderBy::parse(name).is_some() => {
                out.ordering = OrderBy::parse(name);
            }
            ("ordering", _) => {
                return Err(ApiError::validation(
                    &field(".ordering"),
                    "must be \"chat\", \"instance\" or \"none\"",
                ))
            }
            (other, _) => {
                return Err(ApiError::validation(
                    &field(&format!(".{other}")),
                    "is not a policy setting (known: ordering)",
                ))
            }
        }
    }
    Ok(out)
}

fn prefixed(mut e: ApiError, prefix: &str) -> ApiError {
    e.message = format!("{prefix}: {}", e.message);
    e
}

/// Reads a broker sink object (`{"enabled":true,"events":[...]}`).
pub fn broker_object(obj: &Map<String, Value>, prefix: &str) -> Result<SinkRequest, ApiError> {
    Ok(SinkRequest {
        enabled: bool_field(obj, "enabled")?.unwrap_or(false),
        events: events_field(obj, "events").map_err(|e| prefixed(e, prefix))?,
        webhook: None,
        policy: policy_field(obj, prefix)?,
    })
}

/// Parses a create-instance body.
pub fn parse_create(body: &Value) -> Result<CreateRequest, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::validation("body", "must be a JSON object"));
    };
    let name = string_field(body, "instanceName")?
        .ok_or_else(|| ApiError::validation("instanceName", "is required"))?;
    validate_instance_name(&name)?;
    let mut sinks = BTreeMap::new();
    match body.get("webhook") {
        Some(Value::Object(obj)) => {
            sinks.insert(SinkKind::Webhook, webhook_object(obj, "webhook")?);
        }
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
            sinks.insert(SinkKind::Webhook, webhook_object(&flat, "webhook")?);
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => {
            return Err(ApiError::validation(
                "webhook",
                "must be a URL string or an object",
            ))
        }
    }
    for kind in [
        SinkKind::Rabbitmq,
        SinkKind::Sqs,
        SinkKind::Websocket,
        SinkKind::Kafka,
    ] {
        let key = kind.as_str();
        match body.get(key) {
            Some(Value::Object(obj)) => {
                sinks.insert(kind, broker_object(obj, key)?);
            }
            None | Some(Value::Null) => {
                let enabled = bool_field(body, &format!("{key}_enabled"))?;
                if let Some(enabled) = enabled {
                    sinks.insert(
                        kind,
                        SinkRequest {
                            enabled,
                            events: events_field(body, &format!("{key}_events"))?,
                            webhook: None,
                            policy: Policy::default(),
                        },
                    );
                }
            }
            Some(_) => return Err(ApiError::validation(key, "must be an object")),
        }
    }
    let settings = SETTINGS
        .iter()
        .filter_map(|k| Some(((*k).to_string(), body.get(*k)?.clone())))
        .collect();
    let extra = body
        .iter()
        .filter(|(k, _)| !HANDLED.contains(&k.as_str()) && !SETTINGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(CreateRequest {
        name,
        token: string_field(body, "token")?,
        number: string_field(body, "number")?,
        integration: string_field(body, "integration")?,
        sinks,
        settings,
        extra,
        providers: parse_providers(body.get("providers"))?,
    })
}

/// Reads `"providers":{"meta":{"appSecret":"...","verifyToken":"..."}}`.
pub fn parse_providers(value: Option<&Value>) -> Result<ProviderSettings, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ProviderSettings::default());
    };
    let Value::Object(providers) = value else {
        return Err(ApiError::validation("providers", "must be an object"));
    };
    let meta = match providers.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => Some(MetaSettings {
            app_secret: string_field(meta, "appSecret")
                .map_err(|_| ApiError::validation("providers.meta.appSecret", "must be a string"))?
                .ok_or_else(|| ApiError::validation("providers.meta.appSecret", "is required"))?,
            verify_token: string_field(meta, "verifyToken")
                .map_err(|_| {
                    ApiError::validation("providers.meta.verifyToken", "must be a string")
                })?
                .unwrap_or_default(),
        }),
        Some(_) => return Err(ApiError::validation("providers.meta", "must be an object")),
    };
    Ok(ProviderSettings { meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_flat_body_from_the_seed() {
        let body = json!({
            "instanceName": "teste-docs", "token": "t0k", "qrcode": true, "number": "5511999990000",
            "integration": "WHATSAPP-BAILEYS", "webhook": "https://example.com/hook",
            "webhook_by_events": true, "events": ["APPLICATION_STARTUP"], "reject_call": true,
            "msg_call": "", "websocket_enabled": true, "websocket_events": ["APPLICATION_STARTUP"],
            "rabbitmq_enabled": true, "rabbitmq_events": ["MESSAGES_UPSERT", "GROUP_UPDATE"],
            "sqs_enabled": false, "typebot_url": "https://t", "typebot_expire": 123,
            "proxy": {"host": "h", "port": "1", "protocol": "http"}, "chatwoot_account_id": 123
        });
        let req = parse_create(&body).unwrap();
        assert_eq!(req.name, "teste-docs");
        let hook = &req.sinks[&SinkKind::Webhook];
        assert!(hook.enabled);
        assert_eq!(hook.events, vec![EventKind::ApplicationStartup]);
        let target = hook.webhook.as_ref().unwrap();
        assert!(target.by_events);
        assert_eq!(target.url, "https://example.com/hook");
        assert_eq!(
            req.sinks[&SinkKind::Rabbitmq].events,
            vec![EventKind::MessagesUpsert, EventKind::GroupsUpdate]
        );
        assert!(!req.sinks[&SinkKind::Sqs].enabled);
        assert!(req.sinks[&SinkKind::Websocket].enabled);
        assert_eq!(req.settings["reject_call"], json!(true));
        assert_eq!(req.extra["typebot_expire"], json!(123));
        assert_eq!(req.extra["proxy"]["host"], json!("h"));
        assert_eq!(req.extra["chatwoot_account_id"], json!(123));
    }

    #[test]
    fn v2_nested_body() {
        let body = json!({
            "instanceName": "inst_2",
            "webhook": {"url": "https://example.com/h", "byEvents": false, "base64": true,
                        "headers": {"authorization": "Bearer x"}, "events": ["MESSAGES_UPSERT"]},
            "rabbitmq": {"enabled": true, "events": ["messages.upsert"]},
            "kafka": {"enabled": true, "events": []},
            "providers": {"meta": {"appSecret": "s", "verifyToken": "v"}}
        });
        let req = parse_create(&body).unwrap();
        let target = req.sinks[&SinkKind::Webhook].webhook.clone().unwrap();
        assert!(target.base64);
        assert_eq!(target.headers["authorization"], "Bearer x");
        assert!(req.sinks[&SinkKind::Kafka].enabled);
        assert_eq!(req.providers.meta.unwrap().verify_token, "v");
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_create(&json!({"instanceName": "a b"})).unwrap_err();
        assert!(err.message.contains("instanceName"));
        let err = parse_create(&json!({})).unwrap_err();
        assert!(err.message.contains("instanceName"));
        let err = parse_create(
            &json!({"instanceName": "a", "rabbitmq": {"enabled": true, "events": ["NOPE"]}}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("NOPE") && err.message.contains("rabbitmq"),
            "{}",
            err.message
        );
        let err =
            parse_create(&json!({"instanceName": "a", "webhook": {"url": "ftp://x"}})).unwrap_err();
        assert!(err.message.contains("webhook.url"));
    }
}
