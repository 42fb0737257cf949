//! A datagram client fed any datagrams while it waits for msg2 and once
//! open: it never opens or delivers data from noise, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cipherlink_link::fuzzing::fuzz_dgram_client(data);
});
