//! An open datagram session fed records sealed under real keys with
//! fuzzer-chosen plaintexts and counters: the parsing behind the tag.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_link::fuzzing::fuzz_dgram_records(data);
});
