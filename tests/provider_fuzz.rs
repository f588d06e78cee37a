//! Property tests standing in for the cargo-fuzz targets (`fuzz/`) where nightly is not
//! available: arbitrary bytes, byte-mutated fixtures and structurally mutated fixtures
//! (any JSON node replaced by a value of another type) never panic any adapter, and every
//! error names its provider and a field. `PROPTEST_CASES` scales the run
//! (`scripts/fuzz-smoke.sh` raises it).

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use switchyard::ingest::providers::{evolution, linq, meta, whapi, AdapterError};
use switchyard::ingest::IncomingEvent;

const PROVIDERS: &[&str] = &["evolution", "whapi", "meta", "linq"];

fn run(provider: &str, body: &[u8]) -> Result<Vec<IncomingEvent>, AdapterError> {
    match provider {
        "evolution" => {
            let _ = evolution::normalize(body, Some("messages-upsert"));
            evolution::normalize(body, None)
        }
        "whapi" => whapi::normalize(body),
        "meta" => {
            let _ = meta::verify_signature(b"k", body, Some(&String::from_utf8_lossy(body)));
            meta::normalize(body)
        }
        _ => linq::normalize(body),
    }
}

fn check(provider: &str, body: &[u8]) {
    match run(provider, body) {
        Ok(events) => {
            for e in events {
                assert_eq!(e.source, Some(provider));
                assert!(!e.event.is_empty());
                // Evolution keeps no raw (its data is the body's own); the others do.
                assert_eq!(e.raw.is_some(), provider != "evolution");
            }
        }
        Err(e) => {
            assert_eq!(e.provider(), provider);
            assert!(!e.field().is_empty());
            assert!(e.to_string().starts_with(provider));
        }
    }
}

/// Every fixture body, with its provider.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/providers");
    let mut out = Vec::new();
    for provider in PROVIDERS {
        let Ok(entries) = std::fs::read_dir(root.join(provider)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
        {
            if let Ok(body) = std::fs::read(&path) {
                out.push((*provider, body));
            }
        }
    }
    out
}

/// Every node's address in a JSON value: keys and indexes from the root.
fn paths(v: &Value, here: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = here.clone();
                p.push(Value::String(k.clone()));
                paths(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let mut p = here.clone();
                p.push(Value::from(i));
                paths(child, p, out);
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, step| match step {
        Value::String(k) => cur.get_mut(k.as_str()),
        Value::Number(n) => cur.get_mut(n.as_u64()? as usize),
        _ => None,
    })
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("919984351847@s.whatsapp.net".into())),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([{}])),
        Just(serde_json::json!({"type": "x", "event": "post"})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), p in 0..PROVIDERS.len()) {
        check(PROVIDERS[p], &body);
    }

    #[test]
    fn byte_mutated_fixtures_never_panic(pick in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8)) {
        let all = fixtures();
        let (provider, body) = &all[pick.index(all.len())];
        let mut body = body.clone();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => { body.remove(i); }
                _ => body.insert(i, byte),
            }
        }
        check(provider, &body);
    }

    #[test]
    fn structurally_mutated_fixtures_never_panic(pick in any::<prop::sample::Index>(), at in proptest::collection::vec(any::<prop::sample::Index>(), 1..4), with in proptest::collection::vec(replacement(), 1..4)) {
        let all = fixtures();
        let (provider, body) = &all[pick.index(all.len())];
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return Ok(()); };
        for (a, w) in at.iter().zip(with) {
            let mut all_paths = Vec::new();
            paths(&v, Vec::new(), &mut all_paths);
            let path = &all_paths[a.index(all_paths.len())];
            if let Some(node) = node_mut(&mut v, path) {
                *node = w;
            }
        }
        let mutated = serde_json::to_vec(&v).unwrap();
        check(provider, &mutated);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for p in PROVIDERS {
        assert!(run(p, deep.as_bytes()).is_err());
        let wrapped = format!(
            r#"{{"event":{{"type":"messages","event":"post"}},"messages":{deep},"data":{deep},"entry":{deep}}}"#
        );
        assert!(run(p, wrapped.as_bytes()).is_err());
    }
}
