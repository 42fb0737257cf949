//! Certificate verifiers layered on rustls' WebPKI ones.
//!
//! Each wraps the standard verifier, so the chain is always checked first;
//! they only add a rule (an identity allow-list) or relax one documented,
//! opt-in rule (CN-only legacy server certificates).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use x509_parser::prelude::FromDer;

use crate::pki::Identity;

/// The handshake-signature methods a wrapping verifier passes to `self.inner`
/// unchanged: the wrappers only add or relax a rule about the certificate
/// (or, in [`crate::chain_cache`], remember a verdict about it).
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

        $crate::verify::delegate_key_kinds!();
    };
}
pub(crate) use delegate_signature_checks;

/// Which signature schemes and key forms a wrapping verifier takes: those
/// of `self.inner`.
macro_rules! delegate_key_kinds {
    () => {
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }

        fn requires_raw_public_keys(&self) -> bool {
            self.inner.requires_raw_public_keys()
        }
    };
}
pub(crate) use delegate_key_kinds;

/// The policy methods of a wrapping client-certificate verifier: whether and
/// from whom a certificate is asked is `self.inner`'s to say.
macro_rules! delegate_client_auth_policy {
    () => {
        fn offer_client_auth(&self) -> bool {
            self.inner.offer_client_auth()
        }

        fn client_auth_mandatory(&self) -> bool {
            self.inner.client_auth_mandatory()
        }

        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
    };
}
pub(crate) use delegate_client_auth_policy;

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
    delegate_client_auth_policy!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_allowed(end_entity, &self.allowed)?;
        Ok(verified)
    }

    delegate_signature_checks!();
}

/// Whether the certificate `der` names one of `allowed` (subjectAltName
/// DNS/IP entries or the subject CN); the refusal lists what it presented.
/// Both implementations' client-certificate checks use it.
pub(crate) fn check_allowed(der: &[u8], allowed: &[String]) -> Result<(), rustls::Error> {
    let identity = Identity::from_der(der)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if identity
        .names()
        .any(|name| allowed.iter().any(|a| a == name))
    {
        return Ok(());
    }
    let presented = identity.names().collect::<Vec<_>>().join(", ");
    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
        OtherError(Arc::new(IdentityNotAllowed {
            presented: if presented.is_empty() {
                identity.subject
            } else {
                presented
            },
            allowed: allowed.join(", "),
        })),
    )))
}

/// A server certificate whose subject CN stood in for its server name
/// (`dangerous.accept_cn_only_certificates`) names what a CA of its chain
/// may not vouch for.
#[derive(Debug, thiserror::Error)]
#[error(
    "the certificate names the server only in its subject CN \
     (`dangerous.accept_cn_only_certificates`), and {0}"
)]
pub struct CnOutsideNameConstraints(pub String);

/// WebPKI server verification, except that a certificate with no
/// subjectAltName at all is accepted when its subject CN equals the server
/// name (RFC 6125 section 6.4.4's legacy fallback, which gRPC and OpenSSL
/// clients apply) and the nameConstraints of every CA of its path allow
/// that CN as a DNS name (webpki applies them to subjectAltName entries
/// only). WebPKI checks the chain before the name, so reaching the name
/// error means the chain was already valid.
#[derive(Debug)]
pub(crate) struct CnFallbackServerVerifier {
    pub(crate) inner: Arc<WebPkiServerVerifier>,
    /// Accept any name at all (the chain must still verify): what
    /// tno.mpc.communication does with `check_hostname=False`.
    pub(crate) any_name: bool,
    /// The verifier's roots and algorithms, to find the path a CN-only
    /// certificate was verified through.
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
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
            )) if self.any_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if cn_matches_without_san(end_entity, server_name) => {
                self.cn_within_name_constraints(end_entity, intermediates, now)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    delegate_signature_checks!();
}

impl CnFallbackServerVerifier {
    /// The CN of `end_entity` (which stands in for its server name) checked
    /// against the nameConstraints of each CA of the path webpki verified
    /// it through: the same path the inner verifier found, from the same
    /// inputs.
    fn cn_within_name_constraints(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let refused = |why: String| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                CnOutsideNameConstraints(why),
            ))))
        };
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let path = cert
            .verify_for_usage(
                self.algs.all,
                &self.roots.roots,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| refused(format!("its chain no longer verifies ({e})")))?;
        for ca in path.intermediate_certificates() {
            crate::name_constraints::check_leaf_under(end_entity.as_ref(), ca.der().as_ref())
                .map_err(refused)?;
        }
        let anchor = path.anchor();
        if let Some(constraints) = &anchor.name_constraints {
            let subject = x509_parser::x509::X509Name::from_der(anchor.subject.as_ref())
                .map(|(_, name)| name.to_string())
                .unwrap_or_else(|_| "(unreadable subject)".into());
            crate::name_constraints::check_cn_only_leaf(
                end_entity.as_ref(),
                constraints.as_ref(),
                &subject,
            )
            .map_err(refused)?;
        }
        Ok(())
    }
}

/// Whether `end_entity` has no subjectAltName extension at all and its
/// subject CN is `server_name` (both implementations' CN fallback).
pub(crate) fn cn_matches_without_san(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
) -> bool {
    let Ok(identity) = Identity::from_der(end_entity) else {
        return false;
    };
    !identity.has_alt_name_extension
        && identity
            .common_name
            .is_some_and(|cn| cn.eq_ignore_ascii_case(&server_name.to_str()))
}
