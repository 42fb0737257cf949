//! A link client core after a real handshake, fed any bytes as records:
//! nothing forged is ever delivered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cipherlink_link::fuzzing::fuzz_client_records(data);
});
