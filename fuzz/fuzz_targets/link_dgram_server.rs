//! A datagram server fed any datagrams from a few addresses: it answers
//! nothing and opens nothing (docs/link-protocol.md §11.3), and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_link::fuzzing::fuzz_dgram_server(data);
});
