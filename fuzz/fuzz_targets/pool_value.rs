//! The Pool's msgpack value decoder: any bytes decode or fail, and what a
//! value is charged never exceeds the stated multiple of its wire size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_value, charged)) = cipherlink_pool::fuzzing::decode_value(data) {
        assert!(
            charged <= cipherlink_pool::fuzzing::memory_bound(data.len()),
            "charged {charged} bytes for {} wire bytes",
            data.len()
        );
    }
});
