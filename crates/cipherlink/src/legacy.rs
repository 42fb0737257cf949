//! X.509 v1 certificates, accepted only when
//! `dangerous.accept_legacy_certificates` is set.
//!
//! `openssl x509 -req` without an extension file writes v1 certificates, and
//! test suites that make their certificates that way (the gRPC latency
//! suite's RSA-4096 set is one) work with OpenSSL and gRPC's C core, which
//! accept them. webpki, under rustls, parses only v3 and refuses them before
//! it looks at anything else.
//!
//! The verifiers here wrap the standard ones and always try them first. Only
//! when a v1 leaf fails there do they check what OpenSSL's stack checks for
//! such a leaf: a trusted CA's signature directly over it (no
//! intermediates), its validity period, that it is not a CA, the CA's name
//! constraints (`name_constraints.rs`) and key usage, the leaf's key
//! usage and extended key usage where present (OpenSSL's purpose check),
//! no critical extension left unread, and for a server that it names the
//! expected host. Its name is in subjectAltName when that extension is
//! present (found by its OID; one that does not parse refuses the
//! certificate) and otherwise in the subject CN, the only other place a v1
//! certificate has. Extensions belong to v3, but OpenSSL reads them in any
//! version, and so does this check. Handshake signatures are checked with the
//! key taken from the certificate, since webpki will not parse it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    Oid, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::time::ASN1Time;

/// Certificate signature algorithms the legacy path accepts: what rustls
/// accepts for v3 chains. SHA-1 and MD5 signatures are refused.
const SIGNATURE_ALGORITHMS: [Oid<'static>; 8] = [
    OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA,
    OID_PKCS1_RSASSAPSS,
    OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
];

/// The smallest RSA key a CA may sign a legacy leaf with, bits (webpki's floor).
const MIN_RSA_BITS: usize = 2048;

/// Extensions this check reads, so may be critical.
const UNDERSTOOD_EXTENSIONS: [Oid<'static>; 4] = [
    OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
];

/// What the leaf is checked for, as OpenSSL's `ssl_server` / `ssl_client`
/// purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Server,
    Client,
}

/// Why a v1 certificate failed the legacy check.
#[derive(Debug, thiserror::Error)]
#[error("X.509 v1 certificate: {0}")]
pub struct LegacyRejected(String);

impl LegacyRejected {
    pub(crate) fn fuzz(reason: &str) -> Self {
        Self(reason.into())
    }
}

/// A parsed X.509 v1 leaf.
struct V1Leaf<'a>(X509Certificate<'a>);

impl<'a> V1Leaf<'a> {
    /// `None` unless `der` parses and is version 1.
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        (cert.version().0 == 0).then_some(Self(cert))
    }

    /// Everything the verifiers check: [`Self::check_chain`], then the name
    /// when one is given (a server whose name check is on).
    fn check(
        &self,
        anchors: &[CertificateDer<'static>],
        now: UnixTime,
        purpose: Purpose,
        name: Option<&ServerName<'_>>,
    ) -> Result<(), String> {
        let alt_names = self.check_chain(anchors, now, purpose)?;
        match name {
            Some(name) => self.check_name(alt_names.as_deref(), name),
            None => Ok(()),
        }
    }

    /// Signature by one of the anchors directly, validity, not a CA, the
    /// extensions for `purpose`, and the signing CA's constraints. Returns
    /// the subjectAltName entries, if the extension is present.
    fn check_chain(
        &self,
        anchors: &[CertificateDer<'static>],
        now: UnixTime,
        purpose: Purpose,
    ) -> Result<Option<Vec<GeneralName<'a>>>, String> {
        let secs = i64::try_from(now.as_secs()).map_err(|_| "clock out of range".to_string())?;
        let at = ASN1Time::from_timestamp(secs).map_err(|e| e.to_string())?;
        let validity = self.0.validity();
        if !validity.is_valid_at(at) {
            return Err(format!(
                "outside its validity period ({} .. {})",
                validity.not_before, validity.not_after
            ));
        }
        match self.0.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => return Err("is a CA certificate, not a leaf".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("unreadable basicConstraints: {e}")),
        }
        let algorithm = &self.0.signature_algorithm.algorithm;
        if *algorithm != self.0.tbs_certificate.signature.algorithm {
            return Err("its two signature algorithm fields differ".into());
        }
        if !SIGNATURE_ALGORITHMS.contains(algorithm) {
            return Err(format!(
                "signed with {algorithm}, which is not accepted (SHA-256 or stronger with \
                 RSA, ECDSA or Ed25519 is)"
            ));
        }
        self.check_extensions(purpose)?;
        let alt_names = self.alt_names()?;
        let issuer = self.0.issuer().as_raw();
        for anchor in anchors {
            if anchor.as_ref() == self.0.as_ref() {
                return Err("is one of the trust anchors, not a leaf".into());
            }
            let Ok((_, ca)) = X509Certificate::from_der(anchor.as_ref()) else {
                continue;
            };
            if ca.subject().as_raw() != issuer {
                continue;
            }
            if let Ok(PublicKey::RSA(rsa)) = ca.public_key().parsed() {
                if rsa.key_size() < MIN_RSA_BITS {
                    return Err(format!(
                        "signed with a {}-bit RSA key (at least {MIN_RSA_BITS} needed)",
                        rsa.key_size()
                    ));
                }
            }
            if self.0.verify_signature(Some(ca.public_key())).is_ok() {
                match ca.key_usage() {
                    Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                        return Err(format!(
                            "its CA {} has a key usage without keyCertSign",
                            ca.subject()
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("its CA's keyUsage does not parse ({e})")),
                }
                crate::name_constraints::check(&self.0, alt_names.as_deref().unwrap_or(&[]), &ca)?;
                return Ok(alt_names);
            }
        }
        Err(not_signed_directly(&self.0.issuer().to_string()))
    }

    /// No critical extension this check does not read; key usage and
    /// extended key usage, where present, allow `purpose` (as OpenSSL's
    /// purpose check, except that key usage must allow digitalSignature:
    /// every handshake here is signed, so keyEncipherment or keyAgreement
    /// alone, which OpenSSL also takes, could not be used).
    fn check_extensions(&self, purpose: Purpose) -> Result<(), String> {
        if let Some(ext) = self
            .0
            .extensions()
            .iter()
            .find(|ext| ext.critical && !UNDERSTOOD_EXTENSIONS.contains(&ext.oid))
        {
            return Err(format!(
                "has a critical extension {} that is not understood",
                ext.oid
            ));
        }
        match self.0.key_usage() {
            Ok(Some(ku)) if !ku.value.digital_signature() => {
                return Err(format!(
                    "its key usage ({}) does not allow digitalSignature",
                    ku.value
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("its keyUsage does not parse ({e})")),
        }
        match self.0.extended_key_usage() {
            Ok(Some(eku)) => {
                let (allowed, wanted) = match purpose {
                    Purpose::Server => (eku.value.server_auth, "serverAuth"),
                    Purpose::Client => (eku.value.client_auth, "clientAuth"),
                };
                if !allowed {
                    return Err(format!("its extended key usage does not include {wanted}"));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("its extendedKeyUsage does not parse ({e})")),
        }
        Ok(())
    }

    /// The subjectAltName entries when the extension is present, found by
    /// its OID: one that does not parse refuses the certificate rather than
    /// counting as absent (which would let the CN stand in for it).
    fn alt_names(&self) -> Result<Option<Vec<GeneralName<'a>>>, String> {
        let present = self
            .0
            .extensions()
            .iter()
            .any(|ext| ext.oid == OID_X509_EXT_SUBJECT_ALT_NAME);
        if !present {
            return Ok(None);
        }
        match self.0.subject_alternative_name() {
            Ok(Some(san)) => Ok(Some(san.value.general_names.clone())),
            Ok(None) => Err("its subjectAltName cannot be read".into()),
            Err(e) => Err(format!("its subjectAltName does not parse ({e})")),
        }
    }

    /// The server name: among the subjectAltName entries when there are
    /// any (as OpenSSL and RFC 6125 do), else the subject CN.
    fn check_name(
        &self,
        alt_names: Option<&[GeneralName<'_>]>,
        name: &ServerName<'_>,
    ) -> Result<(), String> {
        let wanted = match name {
            ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => return Err("unsupported server name kind".into()),
        };
        let matches = match alt_names {
            Some(alt_names) => alt_names.iter().any(|alt| match (alt, name) {
                (GeneralName::DNSName(dns), ServerName::DnsName(_)) => {
                    dns.trim_end_matches('.').eq_ignore_ascii_case(&wanted)
                }
                (GeneralName::IPAddress(bytes), ServerName::IpAddress(ip)) => {
                    *bytes == ip_octets(std::net::IpAddr::from(*ip)).as_slice()
                }
                _ => false,
            }),
            None => self
                .0
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .any(|cn| cn.eq_ignore_ascii_case(&wanted)),
        };
        if matches {
            Ok(())
        } else if alt_names.is_some() {
            Err(format!("its subjectAltName does not name {wanted}"))
        } else {
            Err(format!(
                "subject {} does not name {wanted}",
                self.0.subject()
            ))
        }
    }

    fn public_key(&self) -> &[u8] {
        self.0.public_key().raw
    }
}

fn ip_octets(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Whether `der` is an X.509 v1 certificate.
pub(crate) fn is_v1(der: &[u8]) -> bool {
    V1Leaf::parse(der).is_some()
}

/// Whether a v1 leaf carries the public key `spki` (DER SubjectPublicKeyInfo):
/// rustls' own key-match check parses the leaf with webpki, which refuses v1.
pub(crate) fn v1_key_matches(leaf: &[u8], spki: &[u8]) -> bool {
    V1Leaf::parse(leaf).is_some_and(|leaf| leaf.public_key() == spki)
}

/// The fuzzing entry points' view of the checks above (see
/// [`crate::fuzzing`]): the same functions, on bytes from anywhere.
pub(crate) mod fuzz_access {
    use super::*;

    /// The server check with name check (for `name`) and the client check,
    /// against the single anchor `anchor_der`; the server's refusal first.
    pub(crate) fn v1_leaf(
        leaf_der: &[u8],
        anchor_der: &[u8],
        now: UnixTime,
        name: &ServerName<'_>,
    ) -> Result<(), LegacyRejected> {
        let leaf = V1Leaf::parse(leaf_der)
            .ok_or_else(|| LegacyRejected("does not parse as X.509 version 1".into()))?;
        let anchors = [CertificateDer::from(anchor_der.to_vec())];
        let server = leaf.check(&anchors, now, Purpose::Server, Some(name));
        let client = leaf.check(&anchors, now, Purpose::Client, None);
        server.and(client).map_err(LegacyRejected)
    }

    /// The CA's name constraints over a leaf of any version, its
    /// subjectAltName found by OID as on the legacy path.
    pub(crate) fn name_constraints(
        anchor_der: &[u8],
        leaf_der: &[u8],
    ) -> Result<(), LegacyRejected> {
        let parse = |der, what: &str| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| LegacyRejected(format!("the {what} does not parse ({e})")))
        };
        let leaf = V1Leaf(parse(leaf_der, "leaf")?);
        let ca = parse(anchor_der, "anchor")?;
        let alt_names = leaf.alt_names().map_err(LegacyRejected)?;
        crate::name_constraints::check(&leaf.0, alt_names.as_deref().unwrap_or(&[]), &ca)
            .map_err(LegacyRejected)
    }
}

/// The refusal of a v1 leaf whose issuer is not one of the trust anchors
/// (it sits under an intermediate): the OpenSSL implementation's words for
/// what [`V1Leaf::check_chain`] reports.
#[cfg(feature = "openssl")]
pub(crate) fn not_issued_by_an_anchor(der: &[u8]) -> rustls::Error {
    let issuer = X509Certificate::from_der(der)
        .map(|(_, cert)| cert.issuer().to_string())
        .unwrap_or_else(|_| "unreadable".into());
    rejected(not_signed_directly(&issuer))
}

fn not_signed_directly(issuer: &str) -> String {
    format!("not signed directly by a trusted CA (issuer {issuer})")
}

fn rejected(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        LegacyRejected(reason),
    ))))
}

/// The handshake-signature methods of both verifiers: the standard check,
/// then the certificate's raw key for what webpki cannot parse.
macro_rules! raw_key_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            // TLS 1.2 has no raw-key path in rustls; v1 peers need TLS 1.3.
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs).or_else(
                |original| match V1Leaf::parse(cert.as_ref()) {
                    Some(leaf) => verify_tls13_signature_with_raw_key(
                        message,
                        &SubjectPublicKeyInfoDer::from(leaf.public_key()),
                        dss,
                        &self.algs,
                    ),
                    None => Err(original),
                },
            )
        }

        crate::verify::delegate_key_kinds!();
    };
}

/// A client's server verifier that also accepts v1 server certificates.
#[derive(Debug)]
pub(crate) struct LegacyServerVerifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) anchors: Vec<CertificateDer<'static>>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
    /// Check the CN against the server name (off with `dangerous.skip_server_name_check`).
    pub(crate) check_name: bool,
}

impl ServerCertVerifier for LegacyServerVerifier {
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
        let Some(leaf) = V1Leaf::parse(end_entity.as_ref()) else {
            return Err(original);
        };
        let name = self.check_name.then_some(server_name);
        leaf.check(&self.anchors, now, Purpose::Server, name)
            .map(|()| ServerCertVerified::assertion())
            .map_err(rejected)
    }

    raw_key_signature_checks!();
}

/// A server's client verifier that also accepts v1 client certificates
/// (no name check, as for any client certificate; an allow-list wrapped
/// around this one still applies).
#[derive(Debug)]
pub(crate) struct LegacyClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) anchors: Vec<CertificateDer<'static>>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for LegacyClientVerifier {
    crate::verify::delegate_client_auth_policy!();

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
        let Some(leaf) = V1Leaf::parse(end_entity.as_ref()) else {
            return Err(original);
        };
        leaf.check(&self.anchors, now, Purpose::Client, None)
            .map(|()| ClientCertVerified::assertion())
            .map_err(rejected)
    }

    raw_key_signature_checks!();
}
