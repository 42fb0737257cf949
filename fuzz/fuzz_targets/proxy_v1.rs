//! The proxy's v1 frame decoder and NaCl-box opener, fed any bytes in two
//! pieces: never a panic, never more buffered than one bounded frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cipherlink_proxy::fuzzing::decode_v1(data);
});
