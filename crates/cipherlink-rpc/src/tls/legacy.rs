//! Certificates in the seed's legacy shape: X.509 v1 (what `openssl x509 -req`
//! writes without an extension file) or v3 without a subjectAltName, naming
//! the host only in the subject CN.
//!
//! rustls (through webpki) refuses both: webpki parses only v3 certificates and
//! matches names only against subjectAltName, as RFC 6125 asks. gRPC's C core
//! (OpenSSL/BoringSSL underneath) still falls back to the CN when there is no
//! subjectAltName, which is why the seed's Python suite works with them.
//!
//! The verifiers here, used only when the user asked for legacy acceptance
//! (`--legacy-cn-certs`), wrap rustls' own and always try the standard check
//! first. When it fails on a legacy-shaped certificate they accept it after
//! checking what gRPC's stack checks: the signature of a trusted CA directly
//! over the leaf (no intermediates), the validity period, that it is not a
//! CA, and (server side) that the CN equals the expected name. Without the
//! option the core Context is used, and such a certificate is refused with
//! a message that names the option ([`LegacyCertificate`] for our own).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// The flag and env var that turn legacy acceptance on, for error messages.
pub const LEGACY_OPTION: &str = "--legacy-cn-certs (env TLS_LEGACY_CN=1)";

/// A legacy-shaped certificate was refused because acceptance is off.
#[derive(Debug, thiserror::Error)]
#[error(
    "certificate \"{subject}\" is {shape}: rustls accepts only X.509 v3 certificates whose \
     subjectAltName names the host. Pass {LEGACY_OPTION} to accept it as gRPC's own TLS \
     stack does (CN fallback, CA-signed leaf only), or make new certificates with \
     `cipherlink certs`"
)]
pub struct LegacyCertificate {
    /// The certificate's subject.
    pub subject: String,
    /// "an X.509 v1 certificate" or "a certificate without subjectAltName".
    pub shape: &'static str,
}

/// Why a legacy-shaped certificate failed the legacy check too.
#[derive(Debug, thiserror::Error)]
#[error("legacy certificate check: {0}")]
struct LegacyRejected(String);

/// Parsed facts about a leaf that the legacy path needs.
struct Leaf<'a> {
    cert: X509Certificate<'a>,
    /// X.509 v1, or v3 without subjectAltName: what webpki refuses.
    legacy: bool,
}

impl<'a> Leaf<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let legacy =
            cert.version().0 < 2 || cert.subject_alternative_name().ok().flatten().is_none();
        Some(Self { cert, legacy })
    }

    /// Signature by one of the anchors directly, validity, not a CA.
    fn check_chain(
        &self,
        anchors: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), String> {
        let secs = i64::try_from(now.as_secs()).map_err(|_| "clock out of range".to_string())?;
        let at = ASN1Time::from_timestamp(secs).map_err(|e| e.to_string())?;
        if !self.cert.validity().is_valid_at(at) {
            return Err(format!(
                "outside its validity period ({} .. {})",
                self.cert.validity().not_before,
                self.cert.validity().not_after
            ));
        }
        if let Ok(Some(bc)) = self.cert.basic_constraints() {
            if bc.value.ca {
                return Err("is a CA certificate, not a leaf".into());
            }
        }
        let issuer = self.cert.issuer().as_raw();
        for anchor in anchors {
            let Ok((_, ca)) = X509Certificate::from_der(anchor.as_ref()) else {
                continue;
            };
            if ca.subject().as_raw() == issuer
                && self.cert.verify_signature(Some(ca.public_key())).is_ok()
            {
                return Ok(());
            }
        }
        Err(format!(
            "not signed directly by a trusted CA (issuer {})",
            self.cert.issuer()
        ))
    }

    /// The CN fallback: with no subjectAltName, a subject CN equal to the name.
    fn check_name(&self, name: &ServerName<'_>) -> Result<(), String> {
        let wanted = match name {
            ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => return Err("unsupported server name kind".into()),
        };
        let matches = self
            .cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .any(|cn| cn.eq_ignore_ascii_case(&wanted));
        if matches {
            Ok(())
        } else {
            Err(format!(
                "subject {} does not name {wanted}",
                self.cert.subject()
            ))
        }
    }
}

/// The handshake-signature methods both legacy verifiers share: checked
/// with the provider's algorithms directly, because webpki's own path
/// refuses to parse a v1 certificate before it would check a signature.
macro_rules! legacy_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The SubjectPublicKeyInfo of a certificate, for checking handshake
/// signatures of certificates webpki will not parse.
fn spki(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(SubjectPublicKeyInfoDer::from(
        parsed.public_key().raw.to_vec(),
    ))
}

fn tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    // The standard path first; the raw-key path only for what webpki cannot parse.
    rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        .or_else(|_| verify_tls13_signature_with_raw_key(message, &spki(cert)?, dss, algs))
}

fn tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    // The lab speaks TLS 1.3 only; a TLS 1.2 signature means a misconfigured peer.
    rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
}

/// Server certificate verifier with the legacy fallback described above.
#[derive(Debug)]
pub struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// Wraps rustls' verifier built over the same anchors.
    pub fn new(
        inner: Arc<WebPkiServerVerifier>,
        anchors: Vec<CertificateDer<'static>>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            inner,
            anchors,
            algs,
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let standard = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let Err(original) = standard else {
            return standard;
        };
        let Some(leaf) = Leaf::parse(end_entity.as_ref()) else {
            return Err(original);
        };
        if !leaf.legacy {
            return Err(original);
        }
        leaf.check_chain(&self.anchors, now)
            .and_then(|()| leaf.check_name(server_name))
            .map(|()| ServerCertVerified::assertion())
            .map_err(|reason| {
                tracing::debug!(%original, %reason, "legacy server certificate refused");
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    LegacyRejected(reason),
                ))))
            })
    }

    legacy_signature_checks!();
}

/// Client certificate verifier (mutual TLS) with the legacy fallback; no name
/// check, as for any client certificate.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    /// Wraps rustls' verifier built over the same anchors.
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        anchors: Vec<CertificateDer<'static>>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            inner,
            anchors,
            algs,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
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
        let standard = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        let Err(original) = standard else {
            return standard;
        };
        let Some(leaf) = Leaf::parse(end_entity.as_ref()) else {
            return Err(original);
        };
        // A client certificate needs no subjectAltName; only v1 is legacy here.
        if leaf.cert.version().0 >= 2 {
            return Err(original);
        }
        leaf.check_chain(&self.anchors, now)
            .map(|()| ClientCertVerified::assertion())
            .map_err(|reason| {
                tracing::debug!(%original, %reason, "legacy client certificate refused");
                original
            })
    }

    legacy_signature_checks!();
}

/// Pairs our own certificate chain with its key. rustls checks that they
/// match by parsing the leaf with webpki, which refuses v1 certificates; for
/// those (when accepted) the public keys are compared here instead.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, crate::error::RpcError> {
    let signing = provider.key_provider.load_private_key(key)?;
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    let Err(original) = ck.keys_match() else {
        return Ok(Arc::new(ck));
    };
    let Some(leaf_der) = ck.cert.first() else {
        return Err(original.into());
    };
    let Some(leaf) = Leaf::parse(leaf_der.as_ref()) else {
        return Err(original.into());
    };
    if leaf.cert.version().0 >= 2 {
        return Err(original.into());
    }
    let same_key = ck
        .key
        .public_key()
        .is_some_and(|spki| spki.as_ref() == leaf.cert.public_key().raw);
    if same_key {
        Ok(Arc::new(ck))
    } else {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch).into())
    }
}
