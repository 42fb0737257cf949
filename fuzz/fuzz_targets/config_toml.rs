//! The TOML configuration loader: any text is either a Config or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cipherlink::Config::from_toml(text, std::path::Path::new("fuzz.toml"));
    }
});
