//! The options for legacy certificates, and the error that names them.
//!
//! The original suite's openssl commands make X.509 v1 certificates (what `openssl
//! x509 -req` writes without an extension file) that name the host only in
//! the subject CN. gRPC's C core accepts them; rustls does not. The checks
//! that accept them as gRPC does live in the core ([`cipherlink::legacy`]).

/// The field of [`super::ServerTls`] / [`super::ClientTls`] that turns
/// X.509 v1 acceptance on, as error messages name it.
pub const LEGACY_FIELD: &str = "accept_legacy_certificates";

/// The field of [`super::ClientTls`] that accepts a server certificate
/// naming its host only in the CN, as error messages name it.
pub const CN_ONLY_FIELD: &str = "accept_cn_only_certificates";

/// A legacy-shaped certificate was refused because acceptance is off.
#[derive(Debug, thiserror::Error)]
#[error(
    "certificate \"{subject}\" is {shape}: rustls accepts only X.509 v3 certificates whose \
     subjectAltName names the host. Set `{LEGACY_FIELD}` to accept it as gRPC's own TLS \
     stack does (CN fallback, CA-signed leaf only), or make new certificates with \
     `cipherlink certs`"
)]
pub struct LegacyCertificate {
    /// The certificate's subject.
    pub subject: String,
    /// "an X.509 v1 certificate" or "a certificate without subjectAltName".
    pub shape: &'static str,
}
