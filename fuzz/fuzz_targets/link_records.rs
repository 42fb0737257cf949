//! Both ends of a link after a real handshake, fed records sealed under the
//! real keys with fuzzer-chosen plaintexts: the record parsing behind the tag.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_link::fuzzing::fuzz_records(data);
});
