//! Fuzzes the JSON-to-record path: any body that `ingest::limits` accepts must come out of
//! the log readable, by our reader and by a plain `serde_json::Value` reader, whether it is
//! stored as an event (canonical `data`, with its redacted provider `raw`) or wrapped into a
//! control record (an instance's echoed extra fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use switchyard_fuzz::ingest::{canonical, limits, redact};

/// The shape of an event-log record (`envelope::StoredEvent`), as far as nesting goes.
#[derive(Serialize, Deserialize)]
struct Record {
    instance: String,
    event: String,
    data: Box<RawValue>,
    #[serde(default)]
    raw: Option<Box<RawValue>>,
}

fuzz_target!(|data: &[u8]| {
    let exact = limits::check_exact(data);
    // The quick scan may flag a body the exact check accepts, never the other way round,
    // except for broken syntax, which it leaves to the parser that reads the body next:
    // serde's `IgnoredAny` is that parser's syntax check without decoding any value.
    let parses = serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok();
    if exact.is_err() && parses {
        assert!(
            limits::suspect(data),
            "the scan cleared a refused body: {exact:?}"
        );
        assert!(limits::check(data).is_err());
    }
    if exact.is_err() {
        return;
    }
    // Accepted: a plain reader can read it, and so can one after a round trip.
    let value: Value = serde_json::from_slice(data).expect("accepted bodies parse as a Value");
    let text = serde_json::to_vec(&value).expect("a Value serializes");
    serde_json::from_slice::<Value>(&text).expect("and reads back");

    // As a control record: the body echoed inside an instance record, three levels down.
    let control = serde_json::json!({"type": "instance_created", "extra": {"junk": value}});
    let bytes = serde_json::to_vec(&control).expect("a control record serializes");
    serde_json::from_slice::<Value>(&bytes).expect("a control record reads back");

    // As event records: canonical events with the whole body as (redacted) raw.
    let raw = std::str::from_utf8(data)
        .ok()
        .and_then(|t| RawValue::from_string(t.to_string()).ok())
        .map(redact::redact);
    if let Ok(events) = canonical::parse(data, 1000) {
        for e in events {
            let record = Record {
                instance: "fuzz".into(),
                event: e.event,
                data: e.data,
                raw: raw.clone(),
            };
            let bytes = serde_json::to_vec(&record).expect("a record serializes");
            let back: Record = serde_json::from_slice(&bytes).expect("a record reads back");
            serde_json::from_str::<Value>(back.data.get()).expect("its data reads as a Value");
        }
    }
});
