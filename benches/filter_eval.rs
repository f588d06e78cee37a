//! What subscription filters cost per event, against baselines measured in the same run.
//!
//! 1. **Extraction** (once per event, at ingest): `EventFacts::extract` over a mix of
//!    message events (text, an image with its media fields, a group message with a
//!    participant, a `@lid` chat, a status update), against a full
//!    `serde_json::from_str::<Value>` of the same `data`.
//! 2. **Evaluation** (once per event, at routing): decoding the event's stored facts and
//!    evaluating 1,000 structured filters (from_me, chat types, allow and deny lists,
//!    message types, in a mix), against the unfiltered router's 1,000 no-op checks (one
//!    `matches_everything()` per subscription).
//! 3. For scale: the same 1,000 filters each with a `match` expression on
//!    `data.pushName`, `data` parsed once per event (`LazyData`).
//!
//! Rounds alternate the two sides of each ratio; medians are printed.
//! Run: `cargo bench --bench filter_eval` (or, reusing the test build's dependencies,
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench filter_eval`).
//! Knobs (env): `BENCH_ROUNDS` (7), `BENCH_SUBSCRIPTIONS` (1000).

use std::hint::black_box;
use std::time::Instant;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchyard::filter::{CompiledFilter, EventFacts, Filter, LazyData};

/// The allocator the `switchyard` binary runs with, for both sides of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (event name, data) as Evolution sends them.
fn events() -> Vec<(&'static str, Box<RawValue>)> {
    let raw = |v: Value| RawValue::from_string(v.to_string()).expect("json");
    let context = json!({"expiration": 0, "ephemeralSettingTimestamp": "0",
                         "disappearingMode": {"initiator": "CHANGED_IN_CHAT"}});
    vec![
        (
            "messages.upsert",
            raw(json!({
                "key": {"remoteJid": "5511999990000@s.whatsapp.net", "fromMe": false, "id": "3EB0A1B2C3D4E5F6"},
                "pushName": "Ana", "status": "DELIVERY_ACK", "messageType": "conversation",
                "message": {"conversation": "Oi! Tudo bem? Queria saber do pedido 4411.",
                            "messageContextInfo": {"deviceListMetadataVersion": 2}},
                "contextInfo": context, "messageTimestamp": 1764806400,
                "instanceId": "6f0c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "source": "android"
            })),
        ),
        (
            "messages.upsert",
            raw(json!({
                "key": {"remoteJid": "120363025246125486@g.us", "fromMe": false, "id": "3EB0FFEE",
                        "participant": "98765432109876@lid", "participantAlt": "5521988887777@s.whatsapp.net"},
                "pushName": "Bruno", "messageType": "imageMessage",
                "message": {"imageMessage": {
                    "url": "https://mmg.whatsapp.net/v/t62.7118-24/12345678_123456789012345_1234567890123456789_n.enc?ccb=11-4&oh=01_Q5AaIabcdefghijklmnopqrstuvwxyz&oe=67890ABC&_nc_sid=5e03e0&mms3=true",
                    "mimetype": "image/jpeg", "caption": "olha isso \"aqui\"",
                    "fileSha256": "n4BhFoZ7ZDk5Wg7eJ0tXz3JqH1qFv0M8aZ0x9l2K3mE=", "fileLength": "183726",
                    "height": 1280, "width": 960, "mediaKey": "q6Kk0mXg3u1J4pZ5bQ7yH2dW8eR9tY0uI1oP3aS4dF5=",
                    "fileEncSha256": "u8Hj6kL9mN2bV4cX7zQ1wE3rT5yU8iO0pA2sD4fG6hJ=",
                    "directPath": "/v/t62.7118-24/12345678_123456789012345_1234567890123456789_n.enc?ccb=11-4",
                    "mediaKeyTimestamp": "1764806390",
                    "jpegThumbnail": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABsSFBcUERsXFhceHBsgKEIrKCUlKFE6PTBCYFVlZF9VXVtqeJmBanGQc1tdhbWGkJ6jq62rZ4C8ybqmx5moq6T/2wBDARweHigjKE4rK06kbl1upKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKT/wAARCABIAEgDASIAAhEBAxEB/8QAGgAAAgMBAQAAAAAAAAAAAAAAAAQBAgMFBv/EACcQAAICAQQBAwUBAAAAAAAAAAECAAMRBBIhMUETIlEFMmFxgZH/xAAWAQEBAQAAAAAAAAAAAAAAAAAAAQL/xAAWEQEBAQAAAAAAAAAAAAAAAAAAEQH/2gAMAwEAAhEDEQA/APU"
                }},
                "messageTimestamp": 1764806401, "instanceId": "6f0c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
            })),
        ),
        (
            "messages.upsert",
            raw(json!({
                "key": {"remoteJid": "98765432109876@lid", "remoteJidAlt": "5521988887777@s.whatsapp.net",
                        "fromMe": false, "id": "3EB0AUDIO"},
                "pushName": "Alice", "messageType": "audioMessage",
                "message": {"audioMessage": {"url": "https://mmg.whatsapp.net/v/t62.7117-24/x.enc", "mimetype": "audio/ogg; codecs=opus",
                            "seconds": 7, "ptt": true, "fileLength": "12345"}},
                "messageTimestamp": 1764806402, "instanceId": "6f0c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
            })),
        ),
        (
            "send.message",
            raw(json!({
                "key": {"remoteJid": "5531977776666@s.whatsapp.net", "fromMe": true, "id": "BAE5F00D"},
                "pushName": "Loja", "status": "PENDING", "messageType": "extendedTextMessage",
                "message": {"extendedTextMessage": {"text": "Seu pedido saiu para entrega: https://loja.example/p/4411",
                            "contextInfo": context}},
                "messageTimestamp": 1764806403, "instanceId": "6f0c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
            })),
        ),
        (
            "messages.update",
            raw(
                json!({"messageId": "cm4x", "keyId": "BAE5F00D", "remoteJid": "5531977776666@s.whatsapp.net",
                       "fromMe": true, "participant": "5531977776666@s.whatsapp.net", "status": "READ",
                       "instanceId": "6f0c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}),
            ),
        ),
    ]
}

/// `n` filters in a mix of every structured clause, as 1,000 subscriptions might hold.
fn structured_filters(n: usize) -> Vec<CompiledFilter> {
    let shapes = [
        json!({"from_me": false, "chat_types": ["direct"]}),
        json!({"chat_types": ["direct", "newsletter"]}),
        json!({"chats": {"allow": ["+55 11 99999-0000", "5521988887777"]}}),
        json!({"message_types": ["imageMessage"]}),
        json!({"chats": {"deny": ["status@broadcast", "120363025246125486@g.us"]}, "from_me": false}),
        json!({"participants": {"allow": ["5521988887777", "5531977776666", "5541966665555"]}}),
        json!({"chat_types": ["group"], "message_types": ["conversation", "extendedTextMessage", "imageMessage"]}),
        json!({"chats": {"allow": (0..50).map(|i| format!("55119{i:08}")).collect::<Vec<_>>()}}),
    ];
    (0..n)
        .map(|i| {
            let filter = Filter::from_value(&shapes[i % shapes.len()]).expect("filter");
            filter.compile().expect("compiles")
        })
        .collect()
}

/// The same filters, each with a `match` expression on `data.pushName`.
fn expression_filters(n: usize) -> Vec<CompiledFilter> {
    (0..n)
        .map(|i| {
            let letter = char::from(b'A' + (i % 26) as u8).to_string();
            let filter = Filter::from_value(&json!({
                "from_me": false,
                "match": {"data.pushName": {"$startsWith": letter}}
            }))
            .expect("filter");
            filter.compile().expect("compiles")
        })
        .collect()
}

/// Nanoseconds per event of `work` over `events`, repeated `reps` times.
fn time_per_event(events: usize, reps: usize, mut work: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut sink = 0;
    for _ in 0..reps {
        sink += work();
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / (events * reps) as f64
}

fn main() {
    let rounds = env_or("BENCH_ROUNDS", 7).max(1);
    let subscriptions = env_or("BENCH_SUBSCRIPTIONS", 1000).max(1);
    let events = events();
    let n = events.len();

    // 1. Extraction against a full parse.
    let extract = || {
        events
            .iter()
            .map(|(name, data)| black_box(EventFacts::extract(name, data)).to_bytes().len())
            .sum::<usize>()
    };
    let parse = || {
        events
            .iter()
            .map(
                |(_, data)| match black_box(serde_json::from_str::<Value>(data.get())) {
                    Ok(Value::Object(o)) => o.len(),
                    _ => 0,
                },
            )
            .sum::<usize>()
    };
    // The floor of any extraction: serde_json reading `data` once, building nothing.
    let scan = || {
        events
            .iter()
            .map(|(_, data)| {
                usize::from(black_box(serde_json::from_str::<IgnoredAny>(data.get())).is_ok())
            })
            .sum::<usize>()
    };
    let reps = 20_000;
    let (mut facts_ns, mut parse_ns, mut scan_ns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        facts_ns.push(time_per_event(n, reps, extract));
        parse_ns.push(time_per_event(n, reps, parse));
        scan_ns.push(time_per_event(n, reps, scan));
    }
    let (f, p, s) = (median(facts_ns), median(parse_ns), median(scan_ns));
    let bytes: usize = events.iter().map(|(_, d)| d.get().len()).sum::<usize>() / n;
    println!(
        "extract: {f:.0} ns/event (facts: {} bytes stored), full serde_json::Value parse {p:.0} ns/event ({bytes} bytes of data on average): ratio {:.2}x",
        events
            .iter()
            .map(|(name, d)| EventFacts::extract(name, d).to_bytes().len())
            .sum::<usize>()
            / n,
        f / p
    );
    println!("extract: the scan floor (serde_json reading data into IgnoredAny) {s:.0} ns/event: extraction {:.2}x of it", f / s);

    // 2. Evaluation of structured filters against no-op checks, per event.
    let stored: Vec<(Vec<u8>, &RawValue)> = events
        .iter()
        .map(|(name, d)| (EventFacts::extract(name, d).to_bytes(), &**d))
        .collect();
    let structured = structured_filters(subscriptions);
    let unfiltered = vec![CompiledFilter::default(); subscriptions];
    let evaluate = |filters: &[CompiledFilter]| {
        stored
            .iter()
            .map(|(bytes, raw)| {
                let facts = EventFacts::from_bytes(black_box(bytes)).expect("facts");
                let data = LazyData::new(raw);
                filters
                    .iter()
                    .filter(|f| black_box(*f).matches(&facts, &data))
                    .count()
            })
            .sum::<usize>()
    };
    let no_op = || {
        stored
            .iter()
            .map(|_| {
                unfiltered
                    .iter()
                    .filter(|f| black_box(*f).matches_everything())
                    .count()
            })
            .sum::<usize>()
    };
    let selected = evaluate(&structured);
    let reps = 400;
    let (mut eval_ns, mut noop_ns) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        eval_ns.push(time_per_event(n, reps, || evaluate(&structured)));
        noop_ns.push(time_per_event(n, reps, no_op));
    }
    let (e, o) = (median(eval_ns), median(noop_ns));
    println!(
        "evaluate: {subscriptions} structured filters {e:.0} ns/event ({:.1} ns/filter, {:.0}% of them match), {subscriptions} no-op checks {o:.0} ns/event: ratio {:.1}x",
        e / subscriptions as f64,
        100.0 * selected as f64 / (n * subscriptions) as f64,
        e / o
    );

    // 3. Expressions: data parsed once per event, then 1,000 evaluations.
    let expressions = expression_filters(subscriptions);
    let mut expr_ns = Vec::new();
    for _ in 0..rounds {
        expr_ns.push(time_per_event(n, reps / 4, || evaluate(&expressions)));
    }
    let x = median(expr_ns);
    println!(
        "evaluate: {subscriptions} filters with a match expression {x:.0} ns/event ({:.1} ns/filter, data parsed once per event): {:.1}x the structured ones",
        x / subscriptions as f64,
        x / e
    );
}
