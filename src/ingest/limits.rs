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
//! Strings are otherwise bounded by the body size limit (`ingest.max_body_bytes`). Syntax is
//! not judged here: the parser that reads the body next refuses broken JSON itself.

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
///
/// A quick scan ([`suspect`]) clears the common body without decoding it; only a body it
/// cannot clear is checked value by value ([`check_exact`]), which names the path. The
/// scan costs a tenth of the exact check, which costs as much as parsing the body.
pub fn check(body: &[u8]) -> Result<(), LimitError> {
    if suspect(body) {
        check_exact(body)
    } else {
        Ok(())
    }
}

/// Whether `body` might break a limit. Never false for a body [`check_exact`] refuses (the
/// fuzz target `record` holds it to that); may be true for one it accepts (a long key
/// written with escapes, an exponent that is in range), which the exact check then clears.
/// It reads JSON's structure without validating it: syntax is the parser's job, so on
/// anything odd it answers true.
pub fn suspect(body: &[u8]) -> bool {
    if std::str::from_utf8(body).is_err() {
        return true;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => match scan_string(body, i + 1) {
                Some(end) => {
                    let is_key =
                        body[end + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':');
                    if is_key && end - (i + 1) > MAX_KEY_BYTES {
                        return true;
                    }
                    i = end + 1;
                }
                None => return true,
            },
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let number = &body[start..i];
                // Without an exponent, only a literal of over 308 digits leaves f64's range.
                if number.len() > 300 || number.iter().any(|b| matches!(b, b'e' | b'E')) {
                    let finite = std::str::from_utf8(number)
                        .ok()
                        .and_then(|n| n.parse::<f64>().ok())
                        .is_some_and(f64::is_finite);
                    if !finite {
                        return true;
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// The index of the quote closing the string whose text starts at `from`, or `None` when
/// the string is unterminated or has an escape the exact check must judge (a `\u` escape
/// of a surrogate that is not a proper pair).
fn scan_string(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[at] == b'"' {
            return Some(at);
        }
        match body.get(at + 1)? {
            b'u' => {
                let unit = hex4(body.get(at + 2..at + 6)?)?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by an escaped low one.
                    if body.get(at + 6..at + 8)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(body.get(at + 8..at + 12)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    from = at + 12;
                } else if (0xDC00..0xE000).contains(&unit) {
                    return None;
                } else {
                    from = at + 6;
                }
            }
            _ => from = at + 2,
        }
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Checks `body` value by value, naming the path of the first offending value.
pub fn check_exact(body: &[u8]) -> Result<(), LimitError> {
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
    fn the_scan_clears_ordinary_bodies_and_flags_every_refusal() {
        let ordinary = br#"{"event":"messages.upsert","data":{"key":{"id":"3EB0","fromMe":false},"t":"a\"b\\c \u00e9 \ud83d\ude00","n":[1,-2.5,3e10,1E-5]}}"#;
        assert!(!suspect(ordinary));
        check_exact(ordinary).unwrap();
        for refused in [
            nested(MAX_DEPTH + 1),
            r#"[1e999]"#.to_string(),
            r#"{"t":"\ud800"}"#.to_string(),
            r#"{"t":"\udc00"}"#.to_string(),
            r#"{"t":"\ud800\u0041"}"#.to_string(),
            format!(r#"{{"{}":1}}"#, "k".repeat(MAX_KEY_BYTES + 1)),
            format!("[{}]", "9".repeat(400)),
        ] {
            assert!(suspect(refused.as_bytes()), "{refused:.80}");
            assert!(check(refused.as_bytes()).is_err(), "{refused:.80}");
        }
        // Invalid UTF-8 is for the exact check (and the parser) to judge.
        assert!(suspect(b"\"\xff\""));
        // A suspect the exact check clears: a long value that is not a key.
        let long_value = format!(r#"{{"k":"{}"}}"#, "v".repeat(MAX_KEY_BYTES + 1));
        assert!(check(long_value.as_bytes()).is_ok());
    }

    #[test]
    fn syntax_errors_say_so() {
        // `check` leaves syntax to the parser that reads the body next; the exact check,
        // when it runs, says so.
        assert!(check(b"{").is_ok());
        assert!(check_exact(b"{").unwrap_err().syntax);
        assert!(check_exact(b"{} x").unwrap_err().syntax);
        assert!(
            !check(&nested(MAX_DEPTH + 1).into_bytes())
                .unwrap_err()
                .syntax
        );
    }
}
