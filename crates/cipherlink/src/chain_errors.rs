//! Refusals of a peer's chain that webpki's error kinds do not tell apart,
//! told apart for the message: a certificate of X.509 v2 (webpki reports
//! every non-v3 version as `UnsupportedCertVersion`, which the core
//! explains as v1) and a key or signature algorithm rustls does not verify
//! (an RSA-1024 CA shows as `BadSignature`, which reads as a CA that only
//! shares the trusted CA's name). Both implementations report them alike:
//! the wrappers here sit outermost in the verifiers that rustls runs and
//! OpenSSL runs after its own checks, and `weakness` names what OpenSSL's
//! security level refused.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::verify::{delegate_client_auth_policy, delegate_signature_checks};

/// A peer certificate of X.509 version 2: neither implementation takes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "peer certificate {subject} is X.509 v2, which is not accepted (v3 is; \
     `dangerous.accept_legacy_certificates` admits v1 leaves only): reissue it as v3"
)]
pub struct CertificateVersion2 {
    /// The certificate's subject.
    pub subject: String,
}

/// A certificate of the peer's chain, or the trust anchor that signed it,
/// uses a key or signature algorithm rustls does not verify.
#[derive(Debug, thiserror::Error)]
#[error(
    "peer certificate chain: {0}, which is not accepted (RSA keys of 2048 bits or more, ECDSA \
     on P-256, P-384 or P-521, Ed25519 or ML-DSA; signatures with SHA-256 or stronger)"
)]
pub struct WeakCertificate(pub String);

const RSA: &str = "1.2.840.113549.1.1.1";
const RSA_PSS: &str = "1.2.840.113549.1.1.10";
const EC: &str = "1.2.840.10045.2.1";
const ED25519: &str = "1.3.101.112";
const ML_DSA: [&str; 3] = [
    "2.16.840.1.101.3.4.3.17",
    "2.16.840.1.101.3.4.3.18",
    "2.16.840.1.101.3.4.3.19",
];
const CURVES: [&str; 3] = ["1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35"];
/// Certificate signature algorithms rustls verifies (aws-lc-rs).
const SIGNATURES: [&str; 11] = [
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    RSA_PSS,
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.2.840.10045.4.3.4",
    ED25519,
    ML_DSA[0],
    ML_DSA[1],
    ML_DSA[2],
];
/// The smallest RSA key rustls verifies with.
const MIN_RSA_BITS: usize = 2048;

/// Names of the algorithms and curves found in old or foreign chains that
/// the x509-parser registry does not name.
const NAMES: [(&str, &str); 14] = [
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10045.4.3.1", "ecdsa-with-SHA224"),
    ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    ("1.2.840.113549.1.1.14", "sha224WithRSAEncryption"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.10040.4.3", "dsa-with-SHA1"),
    ("2.16.840.1.101.3.4.3.2", "dsa-with-SHA256"),
    ("1.3.101.113", "Ed448"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
    ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ("1.3.132.0.10", "secp256k1"),
    ("1.2.840.10045.3.1.1", "prime192v1"),
];

fn name_of(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let id = oid.to_id_string();
    if let Some((_, name)) = NAMES.iter().find(|(known, _)| *known == id) {
        return (*name).to_string();
    }
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or(id)
}

/// What, if anything, about the certificate `der` rustls does not verify:
/// its own key, or the algorithm it is signed with.
pub(crate) fn weakness(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let spki = cert.public_key();
    let key_algorithm = spki.algorithm.algorithm.to_id_string();
    let key = match key_algorithm.as_str() {
        RSA | RSA_PSS => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() < MIN_RSA_BITS => {
                Some(format!("has a {}-bit RSA key", rsa.key_size()))
            }
            _ => None,
        },
        EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(curve) if CURVES.contains(&curve.to_id_string().as_str()) => None,
                Some(curve) => Some(format!("has a key on curve {}", name_of(&curve))),
                None => Some("has an EC key without a named curve".into()),
            }
        }
        ED25519 => None,
        other if ML_DSA.contains(&other) => None,
        _ => Some(format!("has an {} key", name_of(&spki.algorithm.algorithm))),
    };
    if let Some(key) = key {
        return Some(format!("{subject} {key}"));
    }
    let signature = &cert.signature_algorithm.algorithm;
    if !SIGNATURES.contains(&signature.to_id_string().as_str()) {
        return Some(format!("{subject} is signed with {}", name_of(signature)));
    }
    None
}

/// The version-2 certificate among `chain`, if one is.
fn version_2(chain: &[&[u8]]) -> Option<String> {
    chain.iter().find_map(|der| {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        (cert.version().0 == 1).then(|| cert.subject().to_string())
    })
}

/// `err` told apart where webpki's kind says too little (see the module
/// docs), from the presented `chain` (leaf first) and the explicit trust
/// `anchors` that issued one of its certificates.
fn explain(
    err: rustls::Error,
    chain: &[&[u8]],
    anchors: &[CertificateDer<'static>],
) -> rustls::Error {
    let other = |e: Arc<dyn std::error::Error + Send + Sync>| {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e)))
    };
    match &err {
        rustls::Error::InvalidCertificate(CertificateError::Other(inner))
            if matches!(
                inner.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::UnsupportedCertVersion)
            ) =>
        {
            match version_2(chain) {
                Some(subject) => other(Arc::new(CertificateVersion2 { subject })),
                None => err,
            }
        }
        rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
        ) => {
            let issuers = anchors.iter().map(|a| a.as_ref()).filter(|anchor| {
                let subject = X509Certificate::from_der(anchor)
                    .map(|(_, ca)| ca.subject().as_raw().to_vec())
                    .ok();
                chain.iter().any(|der| {
                    X509Certificate::from_der(der)
                        .is_ok_and(|(_, cert)| Some(cert.issuer().as_raw()) == subject.as_deref())
                })
            });
            let found = chain.iter().copied().chain(issuers).find_map(weakness);
            match found {
                Some(why) => other(Arc::new(WeakCertificate(why))),
                None => err,
            }
        }
        _ => err,
    }
}

fn parts<'a>(
    end_entity: &'a CertificateDer<'_>,
    intermediates: &'a [CertificateDer<'_>],
) -> Vec<&'a [u8]> {
    std::iter::once(end_entity.as_ref())
        .chain(intermediates.iter().map(|c| c.as_ref()))
        .collect()
}

/// A server verifier whose refusals are told apart (see [`explain`]).
#[derive(Debug)]
pub(crate) struct ExplainingServerVerifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) anchors: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ExplainingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|err| explain(err, &parts(end_entity, intermediates), &self.anchors))
    }

    delegate_signature_checks!();
}

/// A client verifier whose refusals are told apart (see [`explain`]).
#[derive(Debug)]
pub(crate) struct ExplainingClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) anchors: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for ExplainingClientVerifier {
    delegate_client_auth_policy!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|err| explain(err, &parts(end_entity, intermediates), &self.anchors))
    }

    delegate_signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn webpki_error(e: webpki::Error) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }

    fn cert(version: u8) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "odd");
        let v3 = params.self_signed(&key).expect("cert").der().to_vec();
        // Only the version byte changes: [0] { INTEGER 2 } after the
        // TBSCertificate's header; the signature is not looked at here.
        let at = v3
            .windows(5)
            .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
            .expect("version field");
        let mut edited = v3;
        edited[at + 4] = version;
        edited
    }

    #[test]
    fn a_v2_certificate_is_named_as_v2_and_a_v1_left_to_the_v1_message() {
        let v2 = cert(1);
        let explained = explain(
            webpki_error(webpki::Error::UnsupportedCertVersion),
            &[&v2],
            &[],
        );
        let message = crate::error::explain_tls(&explained);
        assert!(
            message.contains("X.509 v2") && message.contains("odd"),
            "{message}"
        );
        assert!(!message.contains("v1 ("), "{message}");
        let v3 = cert(2);
        let unexplained = explain(
            webpki_error(webpki::Error::UnsupportedCertVersion),
            &[&v3],
            &[],
        );
        let message = crate::error::explain_tls(&unexplained);
        assert!(message.contains("X.509 v1"), "{message}");
    }

    #[test]
    fn a_weak_key_is_named_instead_of_a_ca_sharing_its_name() {
        let der = include_bytes!("../tests/data/rsa1024-ca.der");
        assert_eq!(
            weakness(der).as_deref(),
            Some("CN=rsa1024 has a 1024-bit RSA key")
        );
        let leaf = cert(2);
        let explained = explain(
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
            &[&leaf, der],
            &[],
        );
        let message = crate::error::explain_tls(&explained);
        assert!(message.contains("1024-bit RSA"), "{message}");
        assert!(!message.contains("share its name"), "{message}");
        // A good chain keeps the error it had.
        assert!(weakness(&leaf).is_none());
    }
}
