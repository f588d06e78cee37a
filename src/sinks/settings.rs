//! A sink's own part of a per-instance settings object (`/{name}/set/{instance}`, or the
//! create body's `"{name}": {...}`), read by the sink's descriptor. The API reads what every
//! sink shares (`events`, `policy`) itself.

use serde_json::{Map, Value};

use super::SinkTarget;

/// What a sink reads from its settings object.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSettings {
    /// On or off.
    pub enabled: bool,
    /// The sink's own settings, stored with the instance's sink (a webhook's endpoint); the
    /// descriptor's `instance_target` turns them into the subscription's target.
    pub stored: Option<SinkTarget>,
}

/// A request field that is wrong: where it is and what it must be. The API answers it as a
/// validation error naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path (`webhook.url`).
    pub field: String,
    /// What it must be (`must be an absolute http(s) URL`).
    pub rule: String,
}

impl FieldError {
    /// `field` breaks `rule`.
    pub fn new(field: &str, rule: impl std::fmt::Display) -> FieldError {
        FieldError {
            field: field.to_owned(),
            rule: rule.to_string(),
        }
    }
}

/// The settings of a sink that has none besides `enabled` (off unless said).
pub fn enabled_only(
    obj: &Map<String, Value>,
    _prefix: &str,
) -> Result<InstanceSettings, FieldError> {
    Ok(InstanceSettings {
        enabled: bool_field(obj, "enabled")?.unwrap_or(false),
        stored: None,
    })
}

/// Shows nothing more: for sinks that store no settings of their own.
pub fn nothing_to_show(_stored: &SinkTarget, _view: &mut Map<String, Value>) {}

/// A string field; absent, null and empty are all "not given".
pub fn string_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// A boolean field; absent and null are "not given".
pub fn bool_field(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FieldError::new(field, "must be true or false")),
    }
}
