//! A link server core fed first messages that pass the MAC and the tag,
//! with fuzzer-chosen contents: the token lookup, the proof and the
//! ML-KEM encapsulation behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_link::fuzzing::fuzz_server_msg1(data);
});
