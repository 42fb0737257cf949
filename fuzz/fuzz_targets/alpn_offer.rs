//! The client's ALPN list, as the OpenSSL implementation's selection
//! callback receives it from the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink::fuzzing::alpn_offer(data);
});
