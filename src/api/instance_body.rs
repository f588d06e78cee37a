//! Reading Evolution's create-instance body, in both of its forms: v2 nests each sink in an
//! object (`"{sink}":{"enabled":true,"events":[...]}`), v1 spreads them in flat fields
//! (`{sink}_enabled`, `{sink}_events`, or the sink's own flat form, read by its descriptor).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::catalog::EventKind;
use crate::delivery::subscription::{OrderBy, Policy};
use crate::filter::{Filter, FilterError};
use crate::registry::records::{MetaSettings, ProviderSettings};
use crate::sinks::settings::{self, FieldError};
use crate::sinks::{SinkKind, SinkTarget};

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

/// Fields this module reads itself besides each sink's (see [`handled`]); everything else
/// is stored and echoed as `extra`.
const HANDLED: &[&str] = &[
    "instanceName",
    "token",
    "number",
    "integration",
    "qrcode",
    "providers",
];

/// Whether the create body's field `name` is read here: ours, or a sink's (`{sink}`, and
/// its flat v1 fields).
fn handled(name: &str) -> bool {
    HANDLED.contains(&name)
        || SinkKind::ALL.iter().any(|kind| {
            let sink = kind.as_str();
            let flat_fields = kind.descriptor().filter(|d| d.read_flat.is_some());
            name == sink
                || match flat_fields {
                    Some(d) => d.flat_fields.contains(&name),
                    None => name
                        .strip_prefix(sink)
                        .is_some_and(|rest| rest == "_enabled" || rest == "_events"),
                }
        })
}

/// One sink's settings as given in a body.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRequest {
    /// On or off.
    pub enabled: bool,
    /// Events; empty = all.
    pub events: Vec<EventKind>,
    /// The sink's own settings, stored with it (a webhook's endpoint).
    pub stored: Option<SinkTarget>,
    /// The sink object's `"policy"`.
    pub policy: Policy,
    /// The sink object's `"filter"`.
    pub filter: Filter,
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

/// Reads the settings object of sink `kind` (`/{kind}/set`, or the create body's
/// `"{kind}": {...}`): the sink's own fields through its descriptor, then the `events` and
/// `policy` every sink shares.
pub fn sink_object(
    kind: SinkKind,
    obj: &Map<String, Value>,
    prefix: &str,
) -> Result<SinkRequest, ApiError> {
    let own = match kind.descriptor() {
        Some(sink) => (sink.read_settings)(obj, prefix),
        None => settings::enabled_only(obj, prefix),
    }
    .map_err(field_error)?;
    Ok(SinkRequest {
        enabled: own.enabled,
        events: events_field(obj, "events").map_err(|e| prefixed(e, prefix))?,
        stored: own.stored,
        policy: policy_field(obj, prefix)?,
        filter: filter_value(obj.get("filter"), &format!("{prefix}.filter"))?,
    })
}

/// Reads a `"filter"` value found at `name` (`{"from_me": false, "chat_types": [...], ...}`,
/// see [`Filter`]); absent or null is no filter. A bad one is a 400 naming the full path
/// (`webhook.filter.chats.allow[2]`) and the problem.
pub fn filter_value(value: Option<&Value>, name: &str) -> Result<Filter, ApiError> {
    let Some(value) = value else {
        return Ok(Filter::default());
    };
    Filter::from_value(value).map_err(|e| filter_error(e, name))
}

/// A [`FilterError`] as the API answers it: its path (`filter...` or a query parameter's
/// name) placed under `name`, where the filter was found.
pub fn filter_error(e: FilterError, name: &str) -> ApiError {
    let path = match e.path.strip_prefix("filter") {
        Some(rest) => format!("{name}{rest}"),
        None => e.path,
    };
    ApiError::validation(&path, e.problem)
}

/// A sink's field error as the API answers it.
fn field_error(e: FieldError) -> ApiError {
    ApiError::validation(&e.field, e.rule)
}

/// Reads a sink object's `"policy"` (`{"ordering": "chat", "max_attempts": 3, ...}`, see
/// [`Policy`]); absent or null is the server's defaults. A key it does not know is refused,
/// so a typo never silently means "default".
pub fn policy_field(obj: &Map<String, Value>, prefix: &str) -> Result<Policy, ApiError> {
    policy_value(obj.get("policy"), &format!("{prefix}.policy"))
}

/// The policy settings, as the error for an unknown one lists them.
const POLICY_KEYS: &str = "ordering, max_attempts, retry_delays_ms, timeout_ms, \
                           non_retryable_status_codes, rate_per_second, max_in_flight, \
                           disable_after_failures";

/// Longest retry delay or request timeout a policy may ask for: one day.
const MAX_POLICY_MS: u64 = 86_400_000;

/// Reads a `"policy"` value found at `name` (see [`policy_field`]).
pub fn policy_value(value: Option<&Value>, name: &str) -> Result<Policy, ApiError> {
    let field = |f: &str| format!("{name}.{f}");
    let policy = match value {
        None | Some(Value::Null) => return Ok(Policy::default()),
        Some(Value::Object(policy)) => policy,
        Some(_) => return Err(ApiError::validation(name, "must be an object")),
    };
    // A whole number in `range`, or the error naming the field.
    let number = |key: &str, value: &Value, range: std::ops::RangeInclusive<u64>| {
        value.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
            ApiError::validation(
                &field(key),
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
    };
    let mut out = Policy::default();
    for (key, value) in policy {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "ordering" => {
                out.ordering = Some(value.as_str().and_then(OrderBy::parse).ok_or_else(|| {
                    ApiError::validation(&field(key), "must be \"chat\", \"instance\" or \"none\"")
                })?);
            }
            "max_attempts" => out.max_attempts = Some(number(key, value, 1..=1000)? as u32),
            "retry_delays_ms" => {
                let list = value.as_array().filter(|l| !l.is_empty() && l.len() <= 100);
                let list = list.ok_or_else(|| {
                    ApiError::validation(&field(key), "must be a list of 1 to 100 delays")
                })?;
                let delays = list
                    .iter()
                    .enumerate()
                    .map(|(i, d)| number(&format!("{key}[{i}]"), d, 0..=MAX_POLICY_MS))
                    .collect::<Result<Vec<u64>, ApiError>>()?;
                out.retry_delays_ms = Some(delays);
            }
            "timeout_ms" => out.timeout_ms = Some(number(key, value, 1..=MAX_POLICY_MS)?),
            "non_retryable_status_codes" => {
                let list = value.as_array().ok_or_else(|| {
                    ApiError::validation(&field(key), "must be a list of HTTP statuses")
                })?;
                let codes = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| number(&format!("{key}[{i}]"), c, 400..=599).map(|c| c as u16))
                    .collect::<Result<Vec<u16>, ApiError>>()?;
                out.non_retryable_status_codes = Some(codes);
            }
            "rate_per_second" => {
                out.rate_per_second = Some(number(key, value, 1..=1_000_000)? as u32)
            }
            "max_in_flight" => out.max_in_flight = Some(number(key, value, 1..=10_000)? as u32),
            "disable_after_failures" => {
                out.disable_after_failures = Some(number(key, value, 0..=1_000_000)? as u32)
            }
            other => {
                return Err(ApiError::validation(
                    &field(other),
                    format!("is not a policy setting (known: {POLICY_KEYS})"),
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

/// Parses a create-instance body.
pub fn parse_create(body: &Value) -> Result<CreateRequest, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::validation("body", "must be a JSON object"));
    };
    let name = string_field(body, "instanceName")?
        .ok_or_else(|| ApiError::validation("instanceName", "is required"))?;
    validate_instance_name(&name)?;
    let mut sinks = BTreeMap::new();
    for kind in SinkKind::ALL.iter().copied() {
        let key = kind.as_str();
        let read_flat = kind.descriptor().and_then(|d| d.read_flat);
        match (body.get(key), read_flat) {
            (Some(Value::Object(obj)), _) => {
                sinks.insert(kind, sink_object(kind, obj, key)?);
            }
            (_, Some(read_flat)) => {
                if let Some(obj) = read_flat(body).map_err(field_error)? {
                    sinks.insert(kind, sink_object(kind, &obj, key)?);
                }
            }
            (None | Some(Value::Null), None) => {
                let enabled = bool_field(body, &format!("{key}_enabled"))?;
                if let Some(enabled) = enabled {
                    sinks.insert(
                        kind,
                        SinkRequest {
                            enabled,
                            events: events_field(body, &format!("{key}_events"))?,
                            stored: None,
                            policy: Policy::default(),
                            filter: Default::default(),
                        },
                    );
                }
            }
            (Some(_), None) => return Err(ApiError::validation(key, "must be an object")),
        }
    }
    let settings = SETTINGS
        .iter()
        .filter_map(|k| Some(((*k).to_string(), body.get(*k)?.clone())))
        .collect();
    let extra = body
        .iter()
        .filter(|(k, _)| !handled(k) && !SETTINGS.contains(&k.as_str()))
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
        let Some(SinkTarget::Webhook(target)) = hook.stored.as_ref() else {
            panic!("a webhook target")
        };
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
        let Some(SinkTarget::Webhook(target)) = req.sinks[&SinkKind::Webhook].stored.clone() else {
            panic!("a webhook target")
        };
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
