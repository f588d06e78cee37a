//! Fuzzes the Evolution adapter: any body, with and without a by-events path segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::ingest::providers::evolution;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the path event so the by-events branch is explored too.
    let (path, body) = match data.split_first() {
        Some((b, rest)) if b % 3 == 0 => (Some("messages-upsert"), rest),
        Some((b, rest)) if b % 3 == 1 => (Some(std::str::from_utf8(rest).unwrap_or("x")), rest),
        _ => (None, data),
    };
    let _ = evolution::normalize(body, path);
});
