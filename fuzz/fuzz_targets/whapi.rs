//! Fuzzes the Whapi adapter with arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::ingest::providers::whapi;

fuzz_target!(|data: &[u8]| {
    let _ = whapi::normalize(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = whapi::is_chat_id(s);
    }
});
