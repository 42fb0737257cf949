//! The legacy X.509 v1 path (opt-in `dangerous.accept_legacy_certificates`):
//! any leaf and anchor bytes are accepted or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two big-endian bytes give the leaf's length; the anchor follows it.
    let [hi, lo, rest @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (leaf, anchor) = rest.split_at(cut);
    let _ = cipherlink::fuzzing::legacy_leaf(leaf, anchor);
    let _ = cipherlink::fuzzing::name_constraints(anchor, leaf);
});
