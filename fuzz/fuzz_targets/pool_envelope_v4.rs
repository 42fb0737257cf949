//! The Pool server's decoder of a received 4.x body (`{"object", "id"}`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_pool::fuzzing::decode_envelope_v4(data);
});
