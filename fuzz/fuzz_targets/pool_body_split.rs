//! The in-place split of a 5.x HTTP body into its id and inner document:
//! what it returns must lie inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_id, inner)) = cipherlink_pool::fuzzing::split_body(data) {
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        let inner_start = inner.as_ptr() as usize;
        assert!(inner_start >= start && inner_start + inner.len() <= end);
    }
});
