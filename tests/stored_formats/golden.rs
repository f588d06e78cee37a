//! The golden-fixture check behind `tests/stored_formats.rs`, shared with the delivery-state
//! unit test in `src/delivery/state.rs` (through `#[path]`, since that record type is
//! private to the crate), so both say the same thing when a stored shape changes.
//!
//! A fixture is one record as the code wrote it when the fixture was taken. Logs on disk and
//! in Kafka hold records like it, so it must decode forever and mean the same thing.

use std::path::PathBuf;

use serde_json::Value;

/// Set (to anything) to write the fixtures of samples that have none yet. Existing fixtures
/// are never rewritten: regenerating must not paper over a changed shape.
pub const UPDATE_ENV: &str = "UPDATE_STORED_FIXTURES";

/// What to do when a check fails, printed with every failure.
const HOW_TO_PROCEED: &str = "\
Stored formats are pinned (ARCHITECTURE.md, cross-cutting concerns): each fixture is a record \
as an earlier version wrote it, and logs hold records like it. Do not edit, delete or \
regenerate an existing fixture to make this pass. A new kind of record is a new variant; a \
new field is optional (`#[serde(default)]`, omitted when absent) so that old records decode \
unchanged; a field's meaning never changes. Add a sample for the new shape and run with \
UPDATE_STORED_FIXTURES=1, which writes missing fixtures only, then review and commit them.";

/// Checks the fixtures of `tests/fixtures/stored/{dir}`.
///
/// `samples` are records as the code encodes them today, by fixture name (without `.json`);
/// `roundtrip` decodes a record with today's type and encodes it again (an error means it
/// does not decode). Every sample must have its fixture and equal it, and every `*.json` in
/// the directory (samples' or hand-written older shapes) must decode and re-encode to
/// itself. JSON values are compared, so key order and whitespace do not matter.
pub fn check(
    dir: &str,
    type_name: &str,
    samples: &[(&str, Vec<u8>)],
    roundtrip: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stored")
        .join(dir);
    let update = std::env::var_os(UPDATE_ENV).is_some();
    let mut failures = Vec::new();

    for (name, bytes) in samples {
        let path = root.join(format!("{name}.json"));
        let written = parse(bytes).unwrap_or_else(|e| panic!("sample {name} is not JSON: {e}"));
        if !path.exists() {
            if update {
                std::fs::create_dir_all(&root).expect("create the fixture directory");
                let mut text = serde_json::to_string_pretty(&written).expect("render JSON");
                text.push('\n');
                std::fs::write(&path, text).expect("write the fixture");
                eprintln!("created {}", path.display());
            } else {
                failures.push(format!(
                    "{}: missing; run with {UPDATE_ENV}=1 to create it",
                    path.display()
                ));
                continue;
            }
        }
        let fixture = std::fs::read(&path).expect("read the fixture");
        match parse(&fixture) {
            Ok(pinned) if pinned == written => {}
            Ok(pinned) => failures.push(format!(
                "{}: the code now writes this {type_name} differently:\n{}",
                path.display(),
                diff(&pinned, &written)
            )),
            Err(e) => failures.push(format!("{}: not JSON: {e}", path.display())),
        }
    }

    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    for path in &files {
        let fixture = std::fs::read(path).expect("read the fixture");
        let pinned = match parse(&fixture) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: not JSON: {e}", path.display()));
                continue;
            }
        };
        match roundtrip(&fixture) {
            Err(e) => failures.push(format!(
                "{}: no longer decodes as {type_name}: {e}",
                path.display()
            )),
            Ok(again) => match parse(&again) {
                Ok(again) if again == pinned => {}
                Ok(again) => failures.push(format!(
                    "{}: decodes as {type_name} but encodes back differently (a field \
                     renamed, dropped or reinterpreted?):\n{}",
                    path.display(),
                    diff(&pinned, &again)
                )),
                Err(e) => failures.push(format!("{}: re-encoded is not JSON: {e}", path.display())),
            },
        }
    }

    assert!(
        failures.is_empty(),
        "{} stored-format failure(s):\n\n{}\n\n{HOW_TO_PROCEED}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The paths where `now` differs from `pinned`, one line each (at most 20).
fn diff(pinned: &Value, now: &Value) -> String {
    let mut lines = Vec::new();
    walk("$", pinned, now, &mut lines);
    lines.truncate(20);
    lines.join("\n")
}

fn walk(path: &str, pinned: &Value, now: &Value, out: &mut Vec<String>) {
    match (pinned, now) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => walk(&format!("{path}.{key}"), value, other, out),
                    None => out.push(format!("  {path}.{key}: pinned {value}, now absent")),
                }
            }
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                out.push(format!("  {path}.{key}: not pinned, now {value}"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if pinned != now => out.push(format!("  {path}: pinned {pinned}, now {now}")),
        _ => {}
    }
}
