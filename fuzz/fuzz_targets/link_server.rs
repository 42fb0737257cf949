//! A link server core fed any bytes as a first message: it never answers
//! and never accepts (probe resistance), and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cipherlink_link::fuzzing::fuzz_server(data);
});
