//! The proxy's mux frame decoder and session state, fed any bytes in
//! pieces: never a panic, frames re-encode to their bytes, the decoder and
//! each stream's buffer stay within their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cipherlink_proxy::fuzzing::mux_frames(data);
});
