//! JSON navigation shared by the adapters: borrowed raw slices (so `raw` stays verbatim)
//! and typed look-ups whose errors carry the field's full path.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::AdapterError;

/// An object's members, each still the provider's own JSON text.
pub(super) type Obj<'a> = BTreeMap<String, &'a RawValue>;

/// `base.key`, or `key` at the root.
pub(super) fn join(base: &str, key: &str) -> String {
    if base.is_empty() || base == "$" {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[i]`.
pub(super) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// The name of a JSON value's type, for "expected X, got Y" messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a request body as a JSON object whose members stay raw.
pub(super) fn body_object<'a>(
    provider: &'static str,
    body: &'a [u8],
) -> Result<Obj<'a>, AdapterError> {
    serde_json::from_slice::<Obj<'a>>(body)
        .map_err(|e| AdapterError::invalid(provider, "$", format!("not a JSON object: {e}")))
}

/// Parses a raw member as an object whose members stay raw.
pub(super) fn object<'a>(
    provider: &'static str,
    path: &str,
    raw: &'a RawValue,
) -> Result<Obj<'a>, AdapterError> {
    serde_json::from_str::<Obj<'a>>(raw.get())
        .map_err(|_| expected(provider, path, raw, "an object"))
}

/// Parses a raw member as an array whose items stay raw.
pub(super) fn array<'a>(
    provider: &'static str,
    path: &str,
    raw: &'a RawValue,
) -> Result<Vec<&'a RawValue>, AdapterError> {
    serde_json::from_str::<Vec<&'a RawValue>>(raw.get())
        .map_err(|_| expected(provider, path, raw, "an array"))
}

/// Parses a raw member into a value to read fields from.
pub(super) fn value(
    provider: &'static str,
    path: &str,
    raw: &RawValue,
) -> Result<Value, AdapterError> {
    serde_json::from_str::<Value>(raw.get())
        .map_err(|e| AdapterError::invalid(provider, path, format!("invalid JSON: {e}")))
}

fn expected(provider: &'static str, path: &str, raw: &RawValue, what: &str) -> AdapterError {
    let got = serde_json::from_str::<Value>(raw.get())
        .map(|v| type_name(&v))
        .unwrap_or("invalid JSON");
    AdapterError::invalid(provider, path, format!("expected {what}, got {got}"))
}

/// The string at a nested path, if every step exists and the leaf is a string.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The value at a nested path.
pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The first string found among several candidate paths (providers rename fields across
/// payload versions).
pub(super) fn first_str<'a>(v: &'a Value, paths: &[&[&str]]) -> Option<&'a str> {
    paths.iter().find_map(|p| str_at(v, p))
}

/// A required string member: missing, null or another type is an error naming the field.
pub(super) fn req_str<'a>(
    provider: &'static str,
    base: &str,
    v: &'a Value,
    key: &str,
) -> Result<&'a str, AdapterError> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(AdapterError::invalid(
            provider,
            join(base, key),
            "must not be empty",
        )),
        Some(other) => Err(AdapterError::invalid(
            provider,
            join(base, key),
            format!("expected a string, got {}", type_name(other)),
        )),
        None => Err(AdapterError::invalid(
            provider,
            join(base, key),
            "required field is missing",
        )),
    }
}

/// An optional string member: absent or null is `None`, another type is an error.
pub(super) fn opt_str<'a>(
    provider: &'static str,
    base: &str,
    v: &'a Value,
    key: &str,
) -> Result<Option<&'a str>, AdapterError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AdapterError::invalid(
            provider,
            join(base, key),
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

/// A Unix timestamp given as a number or a numeric string (Meta sends strings).
pub(super) fn timestamp(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An RFC 3339 time as a Unix timestamp in seconds (Linq sends `created_at` / `sent_at`).
pub(super) fn rfc3339_seconds(s: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join() {
        assert_eq!(join("$", "a"), "a");
        assert_eq!(join("a", "b"), "a.b");
        assert_eq!(index("a", 2), "a[2]");
    }

    #[test]
    fn raw_members_stay_verbatim() {
        let body = br#"{"a": [ {"x" : 1},{"y":2} ], "b":"s"}"#;
        let obj = body_object("t", body).unwrap();
        let items = array("t", "a", obj["a"]).unwrap();
        assert_eq!(items[0].get(), r#"{"x" : 1}"#);
        let err = array("t", "b", obj["b"]).unwrap_err();
        assert_eq!(err.to_string(), "t: b: expected an array, got a string");
    }

    #[test]
    fn typed_lookups_name_the_field() {
        let v: Value = serde_json::json!({"a": 1, "b": "", "c": "x"});
        assert_eq!(
            req_str("t", "m[0]", &v, "a").unwrap_err().to_string(),
            "t: m[0].a: expected a string, got a number"
        );
        assert_eq!(req_str("t", "m[0]", &v, "b").unwrap_err().field(), "m[0].b");
        assert_eq!(
            req_str("t", "m[0]", &v, "z").unwrap_err().rule(),
            "required field is missing"
        );
        assert_eq!(req_str("t", "m[0]", &v, "c").unwrap(), "x");
        assert_eq!(opt_str("t", "m", &v, "z").unwrap(), None);
        assert!(opt_str("t", "m", &v, "a").is_err());
    }

    #[test]
    fn timestamps_from_numbers_and_strings() {
        assert_eq!(timestamp(Some(&serde_json::json!(17))), Some(17));
        assert_eq!(timestamp(Some(&serde_json::json!("17"))), Some(17));
        assert_eq!(timestamp(Some(&serde_json::json!("x"))), None);
        assert_eq!(
            rfc3339_seconds(Some("2026-02-05T19:31:13.736Z")),
            Some(1_770_319_873)
        );
    }
}
