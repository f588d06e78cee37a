//! What a JSON body must be before anything from it is stored: the shape every reader
//! downstream can read back.
//!
//! The logs are append-only and kept for good, so a record that our own reader (serde_json,
//! recursion limit 128), `switchyard tail` or a consumer's JSON library cannot decode would
//! break them forever. Every body is therefore checked here before it is parsed, and
//! refused with the path of the first offending value:
//!
//! | limit | value | why |
//! | --- | --- | --- |
//! | nesting depth | [`MAX_DEPTH`] (64) | serde_json stops at 128; stored records wrap a body in a few more levels |
//! | numbers | finite (`1e999` is refused) | a number no `f64` holds is unreadable to most JSON libraries |
//! | strings and keys | valid Unicode (no lone surrogate such as `\ud800`) | strict UTF-8 decoders refuse them |
//! | object keys | at most [`MAX_KEY_BYTES`] | keys are names, not payloads |
//!
//! Strings are otherwise bounded by the body size limit (`ingest.max_body_bytes`).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The deepest nesting of arrays and objects a body may have (the body itself is level 1).
pub const MAX_DEPTH: usize = 64;

/// The longest object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a body was refused: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {problem}")]
pub struct LimitError {
    /// The path of the offending value (`data.key.remoteJid`, `events[3].data`, `$` for the
    /// body itself).
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// True when serde_json itself refused the text (not JSON, or a literal no reader can
    /// hold such as `1e999` or `\ud800`), rather than one of our limits.
    pub syntax: bool,
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn render(path: &[Segment]) -> String {
    let mut out = String::from("$");
    for segment in path {
        match segment {
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Checks `body` (a whole JSON text) against the limits above.
pub fn check(body: &[u8]) -> Result<(), LimitError> {
    let mut path = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result = Checker {
        path: &mut path,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    result.map_err(|e| {
        let syntax = e.is_syntax() || e.is_eof();
        // Our own refusals carry their problem as the message; serde_json's add a position.
        let message = e.to_string();
        let problem = if e.is_data() {
            strip_position(&message)
        } else if message.contains("hex escape") || message.contains("surrogate") {
            // serde_json's words for `\ud800` and friends ("unexpected end of hex escape")
            // do not say what is wrong with the text.
            format!("invalid Unicode escape, e.g. a lone surrogate ({message})")
        } else {
            message
        };
        LimitError {
            path: render(&path),
            problem,
            syntax,
        }
    })
}

/// serde_json appends " at line L column C" to custom errors; our path says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Visits every value once, keeping the path to the current one so an error can name it.
struct Checker<'p> {
    path: &'p mut Vec<Segment>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Checker<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Checker<'_> {
    fn enter<E: serde::de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nested deeper than {MAX_DEPTH} levels of arrays and objects"
            )));
        }
        Ok(depth)
    }
}

impl<'de> Visitor<'de> for Checker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json refuses out-of-range literals itself; this keeps the rule explicit.
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number is not finite"))
        }
    }

    // serde_json decodes escapes before calling these, refusing lone surrogates, so a
    // string that arrives here is valid Unicode.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut index = 0;
        loop {
            self.path.push(Segment::Index(index));
            let more = seq.next_element_seed(Checker {
                path: self.path,
                depth,
            })?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key.len() > MAX_KEY_BYTES {
                self.path.push(Segment::Key(format!(
                    "{}…",
                    key.chars().take(32).collect::<String>()
                )));
                return Err(serde::de::Error::custom(format_args!(
                    "object key longer than {MAX_KEY_BYTES} bytes"
                )));
            }
            self.path.push(Segment::Key(key.into_owned()));
            map.next_value_seed(Checker {
                path: self.path,
                depth,
            })?;
            self.path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn ordinary_bodies_pass() {
        check(br#"{"event":"messages.upsert","data":{"key":{"id":"3EB0"},"n":[1,2.5,-3e10,null,true]}}"#)
            .unwrap();
        check(nested(MAX_DEPTH).as_bytes()).unwrap();
        check("\"caf\\u00e9 \\ud83d\\ude00\"".as_bytes()).unwrap();
    }

    #[test]
    fn too_deep_is_refused_with_its_path() {
        let err = check(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(err.problem.contains("deeper than 64"), "{err}");
        assert_eq!(err.path, format!("${}", "[0]".repeat(MAX_DEPTH)));
        assert!(!err.syntax);
        // Far past serde_json's own recursion limit: still our error, not a stack overflow.
        let body = format!(r#"{{"data":{}}}"#, nested(100_000));
        let err = check(body.as_bytes()).unwrap_err();
        assert!(err.path.starts_with("$.data[0]"), "{err}");
    }

    #[test]
    fn unreadable_values_are_refused_with_their_path() {
        let err = check(br#"{"data":{"n":[1, 1e999]}}"#).unwrap_err();
        assert_eq!(err.path, "$.data.n[1]");
        assert!(err.problem.contains("out of range"), "{err}");
        let err = check(br#"{"data":{"t":"\ud800"}}"#).unwrap_err();
        assert_eq!(err.path, "$.data.t");
        assert!(err.problem.contains("invalid Unicode"), "{err}");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let err = check(format!(r#"{{"data":{{"{long}":1}}}}"#).as_bytes()).unwrap_err();
        assert!(err.problem.contains("key longer"), "{err}");
    }

    #[test]
    fn syntax_errors_say_so() {
        assert!(check(b"{").unwrap_err().syntax);
        assert!(check(b"{} x").unwrap_err().syntax);
        assert!(
            !check(&nested(MAX_DEPTH + 1).into_bytes())
                .unwrap_err()
                .syntax
        );
    }
}
