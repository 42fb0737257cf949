//! Certificate verifiers layered on rustls' WebPKI ones.
//!
//! Each wraps the standard verifier, so the chain is always checked first;
//! they only add a rule (an identity allow-list) or relax one documented,
//! opt-in rule (CN-only legacy server certificates).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::pki::Identity;

/// The handshake-signature methods every wrapper here passes to `self.inner`
/// unchanged: the wrappers only add or relax a rule about the certificate.
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// A client's certificate chain was valid, but its identity is not allowed in.
#[derive(Debug, thiserror::Error)]
#[error("client identity {presented} is not in `allowed_identities` ({allowed})")]
pub struct IdentityNotAllowed {
    /// The names the certificate carries.
    pub presented: String,
    /// The allow-list.
    pub allowed: String,
}

/// Verifies the client chain, then requires one of its names on a list.
#[derive(Debug)]
pub(crate) struct AllowListClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) allowed: Vec<String>,
}

impl ClientCertVerifier for AllowListClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = Identity::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if identity
            .names()
            .any(|name| self.allowed.iter().any(|allowed| allowed == name))
        {
            return Ok(verified);
        }
        let presented = identity.names().collect::<Vec<_>>().join(", ");
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(IdentityNotAllowed {
                presented: if presented.is_empty() {
                    identity.subject
                } else {
                    presented
                },
                allowed: self.allowed.join(", "),
            })),
        )))
    }

    delegate_signature_checks!();
}

/// WebPKI server verification, except that a certificate with no
/// subjectAltName at all is accepted when its subject CN equals the server
/// name (RFC 6125 section 6.4.4's legacy fallback, which gRPC and OpenSSL
/// clients apply). WebPKI checks the chain before the name, so reaching the
/// name error means the chain was already valid.
#[derive(Debug)]
pub(crate) struct CnFallbackServerVerifier {
    pub(crate) inner: Arc<WebPkiServerVerifier>,
    /// Accept any name at all (the chain must still verify): what
    /// tno.mpc.communication does with `check_hostname=False`.
    pub(crate) any_name: bool,
}

impl ServerCertVerifier for CnFallbackServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match result {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.any_name || cn_matches_without_san(end_entity, server_name) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    delegate_signature_checks!();
}

fn cn_matches_without_san(end_entity: &CertificateDer<'_>, server_name: &ServerName<'_>) -> bool {
    let Ok(identity) = Identity::from_der(end_entity) else {
        return false;
    };
    !identity.has_alt_name_extension
        && identity
            .common_name
            .is_some_and(|cn| cn.eq_ignore_ascii_case(&server_name.to_str()))
}

/// Remembers server chains that verified recently, so a client that
/// reconnects to the same server skips re-verifying the chain (an ECDSA
/// P-256 verification is ~70 us, a fifth of a full handshake's public-key
/// work). Only the chain check is cached: the handshake signature
/// (CertificateVerify), which proves the server holds the key *now*, is
/// verified on every handshake. An entry lasts at most [`CHAIN_CACHE_TTL`] and
/// never past the leaf's notAfter; the Context's trust anchors are immutable,
/// so a cached verdict cannot outlive the roots it was made with.
#[derive(Debug)]
pub(crate) struct ChainCache {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, u64>>,
}

/// How long a verified chain is trusted without re-verification.
pub(crate) const CHAIN_CACHE_TTL: u64 = 300;
/// Entries kept at most; the cache is emptied when full (no server has that many chains).
const CHAIN_CACHE_CAPACITY: usize = 64;

impl ChainCache {
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>) -> ChainCache {
        ChainCache {
            inner,
            entries: Default::default(),
        }
    }

    fn key(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
    ) -> Vec<u8> {
        let name = server_name.to_str();
        let mut key = Vec::with_capacity(
            name.len()
                + end_entity.len()
                + intermediates.iter().map(|c| c.len() + 4).sum::<usize>()
                + 8,
        );
        // Length-prefix every part so no two different inputs share a key.
        for part in std::iter::once(name.as_bytes())
            .chain(std::iter::once(end_entity.as_ref()))
            .chain(intermediates.iter().map(|c| c.as_ref()))
        {
            key.extend_from_slice(&(part.len() as u32).to_be_bytes());
            key.extend_from_slice(part);
        }
        key
    }
}

impl ServerCertVerifier for ChainCache {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = ChainCache::key(end_entity, intermediates, server_name);
        let now_secs = now.as_secs();
        if let Ok(entries) = self.entries.lock() {
            if entries.get(&key).is_some_and(|&until| now_secs < until) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(identity) = Identity::from_der(end_entity) {
            let not_after = u64::try_from(identity.not_after).unwrap_or(0);
            let until = (now_secs + CHAIN_CACHE_TTL).min(not_after);
            if let Ok(mut entries) = self.entries.lock() {
                if entries.len() >= CHAIN_CACHE_CAPACITY {
                    entries.clear();
                }
                entries.insert(key, until);
            }
        }
        Ok(verified)
    }

    delegate_signature_checks!();
}
