//! Entry points for the `cargo fuzz` targets in the repository's `fuzz/`
//! folder: checks that otherwise run only inside a TLS handshake, callable
//! on arbitrary bytes. Not an API; hidden from the documentation and free to
//! change with the fuzz targets.
//!
//! Each runs the same functions the verifiers run, not a copy, so a crash
//! found here is a crash a peer could cause.

use rustls::pki_types::{ServerName, UnixTime};

pub use crate::legacy::LegacyRejected;

/// The instant the fuzzing entry points check validity at: fixed, so that a
/// crashing input reproduces on any day (2026-01-01T00:00:00Z).
pub const NOW_SECS: u64 = 1_767_225_600;

/// The server name [`legacy_leaf`] checks the leaf against.
pub const SERVER_NAME: &str = "localhost";

/// The legacy X.509 v1 path on `leaf_der` with `anchor_der` as the only trust
/// anchor: parse as v1, signature by the anchor, validity at [`NOW_SECS`],
/// not a CA, the anchor's key usage and name constraints, the leaf's key usage
/// and EKU, subjectAltName found by OID, and the name ([`SERVER_NAME`], in
/// the SAN or else the CN). Runs both the server check (with the name) and
/// the client check, as `LegacyServerVerifier` and `LegacyClientVerifier` do.
pub fn legacy_leaf(leaf_der: &[u8], anchor_der: &[u8]) -> Result<(), LegacyRejected> {
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW_SECS));
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|_| LegacyRejected::fuzz("invalid fixed server name"))?;
    crate::legacy::fuzz_access::v1_leaf(leaf_der, anchor_der, now, &name)
}

/// `anchor_der`'s nameConstraints applied to every name of `leaf_der` (a
/// certificate of any version; its subjectAltName found by OID), without the
/// signature and the other checks, so the fuzzer reaches the constraint
/// matching without forging signatures.
pub fn name_constraints(anchor_der: &[u8], leaf_der: &[u8]) -> Result<(), LegacyRejected> {
    crate::legacy::fuzz_access::name_constraints(anchor_der, leaf_der)
}

/// The ALPN list a client offers, parsed as the OpenSSL implementation's
/// selection callback parses it, and a choice made from it; a choice must
/// be one of the offered names, byte for byte.
pub fn alpn_offer(offered: &[u8]) -> Option<usize> {
    let ours = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let names = crate::alpn::parse(offered)?;
    if let Some(chosen) = crate::alpn::pick(&ours, offered) {
        assert!(names.contains(&chosen) && ours.iter().any(|o| o == chosen));
    }
    Some(names.len())
}
