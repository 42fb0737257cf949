//! The proxy's v1 frame decoder and NaCl-box opener, fed any bytes in two
//! pieces: never a panic, never more buffered than one bounded frame (the
//! smaller first-frame bound until a frame came out); and the same bytes
//! as nonces for a strict and a compatible receiver, checked against a
//! model of what each accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cipherlink_proxy::fuzzing::decode_v1(data);
    cipherlink_proxy::fuzzing::v1_nonces(data);
});
