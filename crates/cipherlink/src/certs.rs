//! Throwaway PKIs: a CA with a server and a client leaf, as PEM.
//!
//! The layout is the gRPC suite's (`ca.crt ca.key server.crt server.key
//! client.crt client.key`). Issuer and subject DNs start with CN, because
//! tno.mpc.communication identifies a party by the first RDN of its issuer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::Error;
use cipherlink_files::{Access, Existing};

/// The key algorithm of every key in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA over P-256 with SHA-256: the cheapest handshake.
    #[default]
    P256,
    /// ECDSA over P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with SHA-256 (PKCS#1 v1.5 certificate signatures).
    Rsa2048,
    /// RSA 4096 with SHA-256, as the gRPC suite's openssl commands make.
    Rsa4096,
}

impl KeyAlgorithm {
    /// The names accepted on the command line.
    pub const NAMES: &'static str = "p256, p384, ed25519, rsa2048, rsa4096";

    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyAlgorithm::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        }
    }

    fn is_rsa(self) -> bool {
        matches!(self, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa4096)
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "p256" | "ecdsap256" | "prime256v1" => Ok(KeyAlgorithm::P256),
            "p384" | "ecdsap384" => Ok(KeyAlgorithm::P384),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            "rsa2048" | "rsa" => Ok(KeyAlgorithm::Rsa2048),
            "rsa4096" => Ok(KeyAlgorithm::Rsa4096),
            _ => Err(format!(
                "unknown key algorithm {s:?}; valid: {}",
                KeyAlgorithm::NAMES
            )),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::P384 => "p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa2048",
            KeyAlgorithm::Rsa4096 => "rsa4096",
        })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertOptions {
    /// Key algorithm for the CA and both leaves.
    pub algorithm: KeyAlgorithm,
    /// Validity in days, from `not_before`.
    pub days: u32,
    /// Start of validity; defaults to one hour ago (tolerates clock skew).
    pub not_before: Option<OffsetDateTime>,
    /// Extra server names (DNS names or IP addresses) beyond localhost and 127.0.0.1.
    pub server_names: Vec<String>,
    /// The CA's common name.
    pub ca_name: String,
    /// The client leaf's common name (and DNS subjectAltName).
    pub client_name: String,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            algorithm: KeyAlgorithm::default(),
            days: 365,
            not_before: None,
            server_names: Vec::new(),
            ca_name: "cipherlink test CA".to_string(),
            client_name: "client".to_string(),
        }
    }
}

/// One certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its PKCS#8 private key.
    pub key: String,
}

/// A CA and the two leaves it signed.
#[derive(Debug, Clone)]
pub struct CertBundle {
    /// The CA (self-signed).
    pub ca: Pem,
    /// The server leaf: CN=localhost, SAN localhost, 127.0.0.1, ::1 and the extra names.
    pub server: Pem,
    /// The client leaf.
    pub client: Pem,
}

impl CertBundle {
    /// A server Config presenting the server leaf (everything else default).
    pub fn server_config(&self) -> crate::Config {
        crate::Config::builder()
            .identity(
                crate::PemSource::inline(self.server.cert.clone()),
                crate::PemSource::inline(self.server.key.clone()),
            )
            .build()
    }

    /// A client Config trusting this bundle's CA (everything else default).
    pub fn client_config(&self) -> crate::Config {
        crate::Config::builder()
            .trusted_ca(crate::PemSource::inline(self.ca.cert.clone()))
            .build()
    }

    /// [`CertBundle::client_config`] that also presents the client leaf.
    pub fn mtls_client_config(&self) -> crate::Config {
        let mut config = self.client_config();
        config.certificate = Some(crate::PemSource::inline(self.client.cert.clone()));
        config.private_key = Some(crate::PemSource::inline(self.client.key.clone()));
        config
    }
}

/// Generates a bundle.
pub fn generate(options: &CertOptions) -> Result<CertBundle, Error> {
    if options.days == 0 {
        return Err(Error::config("days", "must be at least 1"));
    }
    let not_before = options
        .not_before
        .unwrap_or_else(|| OffsetDateTime::now_utc() - Duration::hours(1));
    let not_after = not_before + Duration::days(i64::from(options.days));

    let ca_key = options.algorithm.generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn(&options.ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let (server, client) = leaves(options, not_before, not_after, &issuer)?;
    Ok(CertBundle {
        ca: Pem {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        },
        server,
        client,
    })
}

/// New server and client leaves under an existing CA (`ca.crt`/`ca.key` as
/// [`generate`] wrote them), as mkcert re-issues under its CA. The leaves
/// end no later than the CA does; an expired CA is refused.
pub fn generate_under(ca: &Pem, options: &CertOptions) -> Result<CertBundle, Error> {
    if options.days == 0 {
        return Err(Error::config("days", "must be at least 1"));
    }
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)?;
    let (ca_not_after, ca_public_key) = read_ca(&ca.cert)?;
    if ca_public_key != rcgen::PublicKeyData::subject_public_key_info(&ca_key) {
        return Err(Error::config(
            "ca",
            "the existing CA key does not belong to its certificate (ca.key and ca.crt differ)",
        ));
    }
    let not_before = options
        .not_before
        .unwrap_or_else(|| OffsetDateTime::now_utc() - Duration::hours(1));
    let not_after = (not_before + Duration::days(i64::from(options.days))).min(ca_not_after);
    if not_after <= OffsetDateTime::now_utc() {
        return Err(Error::config(
            "ca",
            format!("the existing CA expired on {ca_not_after}; make a new one"),
        ));
    }
    let (server, client) = leaves(options, not_before, not_after, &issuer)?;
    Ok(CertBundle {
        ca: ca.clone(),
        server,
        client,
    })
}

/// The CA certificate's end of validity and its public key (SPKI DER).
fn read_ca(cert_pem: &str) -> Result<(OffsetDateTime, Vec<u8>), Error> {
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| Error::config("ca", format!("the existing CA certificate: {why}"));
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        '_,
        x509_parser::error::X509Error,
    >>::from_der(&der)
    .map_err(|e| bad(e.to_string()))?;
    Ok((
        cert.validity().not_after.to_datetime(),
        cert.public_key().raw.to_vec(),
    ))
}

/// The server leaf (localhost, 127.0.0.1, ::1 and the extra names) and the
/// client leaf, both under `issuer`.
fn leaves(
    options: &CertOptions,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(Pem, Pem), Error> {
    let mut server_names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for name in &options.server_names {
        if !server_names.contains(name) {
            server_names.push(name.clone());
        }
    }
    let server = leaf(
        options,
        "localhost",
        &server_names,
        not_before,
        not_after,
        issuer,
    )?;
    let client = leaf(
        options,
        &options.client_name,
        std::slice::from_ref(&options.client_name),
        not_before,
        not_after,
        issuer,
    )?;
    Ok((server, client))
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    // CN first: tno.mpc.communication reads the first RDN of the issuer.
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "cipherlink");
    dn
}

fn leaf(
    options: &CertOptions,
    common_name: &str,
    names: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<Pem, Error> {
    let key = options.algorithm.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => name.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = if options.algorithm.is_rsa() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    // Both purposes: a Pool party uses one certificate to serve and to call.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl CertBundle {
    /// Writes the six files into `dir` (created if needed) through
    /// `cipherlink_files`: keys 0600 whatever mode an existing file had, and
    /// a symlink in the way is replaced, not followed (which could write a
    /// key wherever it points).
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let mut written = write_files(
            dir,
            [
                ("ca.crt", &self.ca.cert, Access::Public),
                ("ca.key", &self.ca.key, Access::Private),
            ],
        )?;
        written.extend(self.write_leaves_to(dir)?);
        Ok(written)
    }

    /// Writes the four leaf files only, leaving `ca.crt` and `ca.key` as
    /// they are (after [`generate_under`]).
    pub fn write_leaves_to(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        write_files(
            dir,
            [
                ("server.crt", &self.server.cert, Access::Public),
                ("server.key", &self.server.key, Access::Private),
                ("client.crt", &self.client.cert, Access::Public),
                ("client.key", &self.client.key, Access::Private),
            ],
        )
    }
}

fn write_files<const N: usize>(
    dir: &Path,
    files: [(&str, &String, Access); N],
) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    for (name, contents, access) in files {
        let path = dir.join(name);
        cipherlink_files::write(&path, contents.as_bytes(), access, Existing::Replace)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Identity;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn identity(pem: &str) -> Identity {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        Identity::from_der(&der).unwrap()
    }

    #[test]
    fn bundle_has_names_usages_and_cn_first_issuer() {
        let bundle = generate(&CertOptions {
            server_names: vec!["example.test".into(), "10.1.2.3".into()],
            ..CertOptions::default()
        })
        .unwrap();
        let server = identity(&bundle.server.cert);
        assert_eq!(server.common_name.as_deref(), Some("localhost"));
        for name in ["localhost", "127.0.0.1", "::1", "example.test", "10.1.2.3"] {
            assert!(server.alt_names.iter().any(|n| n == name), "{name}");
        }
        assert_eq!(
            server.issuer_first_rdn_value.as_deref(),
            Some("cipherlink test CA")
        );
        assert!(server.not_after - server.not_before >= 365 * 86_400);
        let client = identity(&bundle.client.cert);
        assert_eq!(client.common_name.as_deref(), Some("client"));
    }

    #[test]
    fn zero_days_is_refused() {
        let err = generate(&CertOptions {
            days: 0,
            ..CertOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("`days`"));
    }
}
