//! The certificate identity parser that names peers (pool senders, logs,
//! allow-lists): any bytes are either an Identity or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(identity) = cipherlink::Identity::from_der(data) {
        let _ = identity.summary();
        let _ = identity.serial_decimal();
        let _ = identity.names().count();
    }
});
