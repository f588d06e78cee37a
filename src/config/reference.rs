//! The configuration reference: every key, the env names that set it, its default and its
//! doc line, rendered from the code itself so the README's table cannot drift.
//!
//! The keys and defaults come from `Config::default()` serialized; the descriptions are the
//! `///` lines of the fields in `config/mod.rs`, `config/sections.rs` and each sink's
//! `config.rs` (from the sinks' registration table), read from the source compiled into the
//! binary (`include_str!`), so the doc comment stays the one place a key is described.
//! `switchyard config-reference` prints the table; `tests/config_reference.rs` checks that
//! the README holds exactly this rendering.

use std::collections::HashMap;

use serde_json::Value;

use super::evolution_env::{event_lists, evolution_env};
use super::{Config, ENV_PREFIX};
use crate::catalog::EventKind;
use crate::sinks::SINKS;

/// The sources of the config structs, whose `///` lines are the descriptions.
fn sources() -> impl Iterator<Item = &'static str> {
    let own = [include_str!("mod.rs"), include_str!("sections.rs")];
    own.into_iter()
        .chain(SINKS.iter().map(|sink| sink.config.source))
}

/// Environment variables the binary reads that are not config keys.
pub const PROCESS_ENV: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "log filter, e.g. `info` or `switchyard=debug` (default `info`)",
    ),
    (
        "SWITCHYARD_LOG_FORMAT",
        "`json` for JSON log lines (default: plain text)",
    ),
];

/// One configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReference {
    /// The dotted key, as in the TOML file (`log.fsync`).
    pub key: String,
    /// Environment names that set it, Switchyard's own first.
    pub env: Vec<String>,
    /// The default, rendered for people (`unset`, `127.0.0.1:8080`, `400,401`).
    pub default: String,
    /// The field's doc comment, joined into one line.
    pub doc: String,
}

/// A field of a config struct as written in the source.
struct Field {
    name: String,
    ty: String,
    doc: String,
}

/// `struct name -> fields in source order`, read from the config source.
fn parse_structs(source: &str) -> HashMap<String, Vec<Field>> {
    let mut out: HashMap<String, Vec<Field>> = HashMap::new();
    let mut current: Option<String> = None;
    let mut doc: Vec<&str> = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
            continue;
        }
        if line.starts_with("#[") {
            continue; // attributes sit between a doc comment and its item
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            current = rest.strip_suffix('{').map(|name| name.trim().to_string());
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("pub ")) {
            if let Some((field, ty)) = rest.split_once(':') {
                let ty = ty.trim().trim_end_matches(',').trim();
                // A type named by its path is found by its name.
                let ty = ty.rsplit("::").next().unwrap_or(ty);
                out.entry(name.clone()).or_default().push(Field {
                    name: field.trim().to_string(),
                    ty: ty.to_string(),
                    doc: doc.join(" "),
                });
            }
        }
        doc.clear();
    }
    out
}

/// Renders a default value for the table.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::String(s) if s.is_empty() => "empty".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let text = n.to_string();
            text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
        }
        Value::Bool(b) => b.to_string(),
        Value::Array(items) if items.is_empty() => "empty".into(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "empty".into(),
        Value::Object(_) => value.to_string(),
    }
}

/// The env names that set `key` (`section.field`).
fn env_names(section: &str, field: &str, default: &Value) -> Vec<String> {
    let key = format!("{section}.{field}");
    let mut env = Vec::new();
    if !default.is_object() {
        env.push(format!(
            "{ENV_PREFIX}_{}__{}",
            section.to_ascii_uppercase(),
            field.to_ascii_uppercase()
        ));
    }
    env.extend(
        evolution_env()
            .filter(|(_, k)| *k == key)
            .map(|(name, _)| name.to_string()),
    );
    env.extend(
        event_lists()
            .filter(|(_, k)| *k == key)
            .map(|(prefix, _)| format!("{prefix}<EVENT>")),
    );
    env
}

/// Every configuration key in source order, with env names, default and description.
pub fn keys() -> Vec<KeyReference> {
    let structs: HashMap<String, Vec<Field>> = sources().flat_map(parse_structs).collect();
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let Some(sections) = defaults.as_object() else {
        return Vec::new();
    };
    let no_fields = Vec::new();
    let top = structs.get("Config").unwrap_or(&no_fields);
    // Source order first; anything serialized but not found in the source still appears
    // (with an empty description, which the unit tests refuse).
    let mut order: Vec<(&str, &str)> = top
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str()))
        .collect();
    for name in sections.keys() {
        if !order.iter().any(|(n, _)| n == name) {
            order.push((name.as_str(), ""));
        }
    }
    let mut out = Vec::new();
    for (section, ty) in order {
        let Some(values) = sections.get(section).and_then(Value::as_object) else {
            continue;
        };
        let fields = structs.get(ty).unwrap_or(&no_fields);
        let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        names.extend(
            values
                .keys()
                .map(String::as_str)
                .filter(|k| !fields.iter().any(|f| f.name == *k)),
        );
        for field in names {
            let Some(default) = values.get(field) else {
                continue;
            };
            let doc = fields
                .iter()
                .find(|f| f.name == field)
                .map(|f| f.doc.clone())
                .unwrap_or_default();
            out.push(KeyReference {
                key: format!("{section}.{field}"),
                env: env_names(section, field, default),
                default: render(default),
                doc,
            });
        }
    }
    out
}

/// True when the binary reads `name` from the environment: `SWITCHYARD_<SECTION>__<KEY>` of a
/// real key, an Evolution name, an Evolution `<PREFIX>_EVENTS_<EVENT>` entry with a known
/// event, or one of [`PROCESS_ENV`].
pub fn reads_env(name: &str) -> bool {
    if PROCESS_ENV.iter().any(|(n, _)| *n == name) {
        return true;
    }
    if evolution_env().any(|(n, _)| n == name) {
        return true;
    }
    if event_lists().any(|(prefix, _)| {
        name.strip_prefix(prefix)
            .is_some_and(|event| EventKind::parse(event).is_ok())
    }) {
        return true;
    }
    keys().iter().any(|k| k.env.iter().any(|e| e == name))
}

/// The Markdown table of every key (the README holds exactly this between its markers).
pub fn markdown_table() -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let code = |s: &str| format!("`{}`", escape(s));
    let mut out = String::from("| key | environment | default | description |\n");
    out.push_str("|---|---|---|---|\n");
    for k in keys() {
        let env = if k.env.is_empty() {
            "file only".to_string()
        } else {
            k.env.iter().map(|e| code(e)).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            code(&k.key),
            env,
            code(&k.default),
            escape(&k.doc)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_description_and_an_env_name_or_is_a_map() {
        let keys = keys();
        assert!(keys.len() > 40, "{}", keys.len());
        for k in &keys {
            assert!(!k.doc.is_empty(), "{} has no doc comment", k.key);
            if k.key != "kafka.properties" {
                assert!(!k.env.is_empty(), "{} has no env name", k.key);
            }
        }
        let listen = keys.iter().find(|k| k.key == "server.listen").unwrap();
        assert_eq!(listen.env, vec!["SWITCHYARD_SERVER__LISTEN"]);
        assert_eq!(listen.default, "127.0.0.1:8080");
        let attempts = keys
            .iter()
            .find(|k| k.key == "delivery.max_attempts")
            .unwrap();
        assert!(attempts
            .env
            .contains(&"WEBHOOK_RETRY_MAX_ATTEMPTS".to_string()));
    }

    #[test]
    fn every_evolution_name_maps_to_a_real_key() {
        let keys = keys();
        for (name, key) in evolution_env().chain(event_lists()) {
            assert!(
                keys.iter().any(|k| k.key == key),
                "{name} maps to unknown key {key}"
            );
        }
    }

    #[test]
    fn reads_env_knows_the_names_and_refuses_typos() {
        assert!(reads_env("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGETS"));
        assert!(reads_env("RABBITMQ_URI"));
        assert!(reads_env("WEBHOOK_EVENTS_MESSAGES_UPSERT"));
        assert!(reads_env("RUST_LOG"));
        assert!(!reads_env("SWITCHYARD_WEBHOOK__ALLOW_PRIVATE_TARGET"));
        assert!(!reads_env("WEBHOOK_EVENTS_NOT_AN_EVENT"));
        assert!(!reads_env("RABBITMQ_URL"));
    }
}
