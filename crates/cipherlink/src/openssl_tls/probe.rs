//! What the OpenSSL built into this cipherlink supports, asked of the
//! library itself (a scratch context accepts or refuses each name), never
//! read from a table of ours. OpenSSL knows every group by the name
//! [`KeyExchange::name`] gives (the IANA registry's, `P-256` for NIST curves).

use std::sync::OnceLock;

use openssl::ssl::{SslContextBuilder, SslMethod};

use crate::kx::KeyExchange;

fn scratch() -> Option<SslContextBuilder> {
    SslContextBuilder::new(SslMethod::tls()).ok()
}

/// Whether OpenSSL offers `kx` here (asked once per group, then remembered).
pub fn supports_group(kx: KeyExchange) -> bool {
    static SUPPORTED: OnceLock<Vec<KeyExchange>> = OnceLock::new();
    SUPPORTED
        .get_or_init(|| {
            KeyExchange::ALL
                .into_iter()
                .filter(|kx| scratch().is_some_and(|mut b| b.set_groups_list(kx.name()).is_ok()))
                .collect()
        })
        .contains(&kx)
}

/// The groups of ours OpenSSL supports, in our preference order.
pub fn groups() -> Vec<KeyExchange> {
    KeyExchange::ALL
        .into_iter()
        .filter(|kx| supports_group(*kx))
        .collect()
}

/// TLS 1.3 cipher suites (IANA names) OpenSSL accepts here.
pub fn tls13_suites() -> Vec<&'static str> {
    [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256",
        "TLS_AES_128_CCM_8_SHA256",
    ]
    .into_iter()
    .filter(|suite| scratch().is_some_and(|mut b| b.set_ciphersuites(suite).is_ok()))
    .collect()
}

/// Signature algorithms (TLS names) OpenSSL accepts here, among those a
/// TLS 1.3 peer may ask for (including ML-DSA, which OpenSSL 3.5+ has).
pub fn signature_algorithms() -> Vec<&'static str> {
    [
        "ecdsa_secp256r1_sha256",
        "ecdsa_secp384r1_sha384",
        "ecdsa_secp521r1_sha512",
        "ed25519",
        "ed448",
        "rsa_pss_rsae_sha256",
        "rsa_pss_rsae_sha384",
        "rsa_pss_rsae_sha512",
        "rsa_pss_pss_sha256",
        "rsa_pkcs1_sha256",
        "rsa_pkcs1_sha384",
        "rsa_pkcs1_sha512",
        "mldsa44",
        "mldsa65",
        "mldsa87",
    ]
    .into_iter()
    .filter(|alg| scratch().is_some_and(|mut b| b.set_sigalgs_list(alg).is_ok()))
    .collect()
}
