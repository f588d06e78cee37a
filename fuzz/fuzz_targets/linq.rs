//! Fuzzes the Linq adapter with arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::ingest::providers::linq;

fuzz_target!(|data: &[u8]| {
    let _ = linq::normalize(data);
});
