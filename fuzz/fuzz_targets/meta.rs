//! Fuzzes the Meta adapter: notification bodies, the signature check and the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::ingest::providers::meta;

fuzz_target!(|data: &[u8]| {
    let _ = meta::normalize(data);
    let text = String::from_utf8_lossy(data);
    let _ = meta::verify_signature(b"secret", data, Some(&text));
    let mut parts = text.splitn(3, '&');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let _ = meta::verify_handshake(a, b, c, "token");
});
