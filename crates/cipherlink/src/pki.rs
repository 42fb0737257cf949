//! Reading certificates and keys, and who a certificate says its owner is.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::PemSource;
use crate::error::{unix_to_utc, Error};

/// Reads every `CERTIFICATE` block from a PEM source.
pub fn load_certificates(
    field: &'static str,
    source: &PemSource,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = source.read(field)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(field, format!("{}: not valid PEM ({e})", source.describe())))?;
    if certs.is_empty() {
        return Err(Error::config(
            field,
            format!(
                "{}: no `-----BEGIN CERTIFICATE-----` block found (is this a key or a DER file?)",
                source.describe()
            ),
        ));
    }
    for cert in &certs {
        Identity::from_der(cert).map_err(|why| {
            Error::config(
                field,
                format!("{}: certificate does not parse: {why}", source.describe()),
            )
        })?;
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM source.
pub fn load_private_key(
    field: &'static str,
    source: &PemSource,
) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = source.read(field)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        Error::config(
            field,
            format!(
                "{}: no usable private key ({e}); expected a `-----BEGIN PRIVATE KEY-----`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY` block",
                source.describe()
            ),
        )
    })
}

/// Our own X.509 v1 certificate, without `dangerous.accept_legacy_certificates`.
pub(crate) fn v1_refused(cert_source: &PemSource) -> Error {
    Error::config(
        "certificate",
        format!(
            "{} is an X.509 v1 certificate (`openssl x509 -req` without extensions), \
             which cipherlink refuses by default: set `dangerous.accept_legacy_certificates` to use it \
             as OpenSSL does, or make a v3 one with `cipherlink certs`",
            cert_source.describe()
        ),
    )
}

/// Loads a chain and its key, and checks that they belong together and that
/// the leaf is currently valid. An X.509 v1 leaf is refused unless
/// `accept_legacy_certificates` (see [`crate::legacy`]).
pub(crate) fn load_certified_key(
    provider: &CryptoProvider,
    cert_source: &PemSource,
    key_source: &PemSource,
    accept_legacy_certificates: bool,
) -> Result<Arc<CertifiedKey>, Error> {
    let chain = load_certificates("certificate", cert_source)?;
    let key = load_private_key("private_key", key_source)?;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| {
        Error::config(
            "private_key",
            format!("{}: key type not supported ({e})", key_source.describe()),
        )
    })?;
    let certified = CertifiedKey::new(chain, signer);
    let v1_leaf = certified
        .cert
        .first()
        .filter(|leaf| crate::legacy::is_v1(leaf.as_ref()));
    let key_check = match (v1_leaf, accept_legacy_certificates) {
        (None, _) => certified.keys_match(),
        (Some(leaf), true) => {
            let spki = certified.key.public_key();
            if spki.is_some_and(|spki| crate::legacy::v1_key_matches(leaf.as_ref(), spki.as_ref()))
            {
                Ok(())
            } else {
                Err(rustls::Error::InconsistentKeys(
                    rustls::InconsistentKeys::KeyMismatch,
                ))
            }
        }
        (Some(_), false) => return Err(v1_refused(cert_source)),
    };
    match key_check {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(Error::config(
                "private_key",
                format!(
                    "{} does not match the certificate in {}: pass the key that was generated with that certificate",
                    key_source.describe(),
                    cert_source.describe()
                ),
            ));
        }
        Err(other) => {
            return Err(Error::config(
                "certificate",
                format!(
                    "{}: the certificate cannot be used ({other})",
                    cert_source.describe()
                ),
            ));
        }
    }
    let leaf = certified
        .cert
        .first()
        .ok_or_else(|| Error::config("certificate", "empty certificate chain"))?;
    check_currently_valid("certificate", cert_source, leaf)?;
    Ok(Arc::new(certified))
}

pub(crate) fn check_currently_valid(
    field: &'static str,
    source: &PemSource,
    cert: &CertificateDer<'_>,
) -> Result<(), Error> {
    let identity = Identity::from_der(cert).map_err(|why| Error::config(field, why))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if now > identity.not_after {
        return Err(Error::config(
            field,
            format!(
                "{}: certificate {} expired on {}; issue a new one (e.g. `cipherlink certs`)",
                source.describe(),
                identity.subject,
                unix_to_utc(identity.not_after.max(0) as u64)
            ),
        ));
    }
    if now < identity.not_before {
        return Err(Error::config(
            field,
            format!(
                "{}: certificate {} is not valid before {}; check the clock",
                source.describe(),
                identity.subject,
                unix_to_utc(identity.not_before.max(0) as u64)
            ),
        ));
    }
    Ok(())
}

/// What a certificate says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject DN, as `CN=..., O=...`.
    pub subject: String,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// DNS names and IP addresses from subjectAltName.
    pub alt_names: Vec<String>,
    /// Whether the certificate has a subjectAltName extension at all.
    pub has_alt_name_extension: bool,
    /// The issuer DN.
    pub issuer: String,
    /// The value of the first RDN of the issuer DN, in certificate order
    /// (what tno.mpc.communication uses to identify a party).
    pub issuer_first_rdn_value: Option<String>,
    /// The serial number, big-endian bytes without leading zeros.
    pub serial: Vec<u8>,
    /// Validity start, seconds since the epoch.
    pub not_before: i64,
    /// Validity end, seconds since the epoch.
    pub not_after: i64,
}

/// A DER certificate's notAfter (seconds since the epoch), read without
/// the rest of [`Identity`]: the session checks date every resumption.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl Identity {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Identity, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        // Presence by the extension's OID: one whose contents do not parse
        // still counts as present (with no names), so that the CN never
        // stands in for a subjectAltName that could not be read.
        let has_alt_name_extension = cert
            .extensions()
            .iter()
            .any(|ext| ext.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME);
        let alt_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => ip_to_string(bytes),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let issuer_first_rdn_value = cert
            .issuer()
            .iter()
            .next()
            .and_then(|rdn| rdn.iter().next())
            .and_then(|attr| attr.as_str().ok())
            .map(str::to_string);
        let serial = cert.raw_serial();
        let first_nonzero = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
        Ok(Identity {
            subject: cert.subject().to_string(),
            common_name,
            alt_names,
            has_alt_name_extension,
            issuer: cert.issuer().to_string(),
            issuer_first_rdn_value,
            serial: serial[first_nonzero..].to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The serial number as a decimal string.
    pub fn serial_decimal(&self) -> String {
        decimal_from_be_bytes(&self.serial)
    }

    /// The names this identity answers to: CN, then subjectAltNames.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.common_name
            .iter()
            .chain(self.alt_names.iter())
            .map(String::as_str)
    }

    /// A one-line summary: `CN=x (SAN a, b), issuer ..., serial ...`.
    pub fn summary(&self) -> String {
        let names = if self.alt_names.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.alt_names.join(", "))
        };
        format!("{}{} issued by {}", self.subject, names, self.issuer)
    }
}

fn ip_to_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(octets).to_string())
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

/// Big-endian unsigned bytes to decimal, for serial numbers of any length.
pub fn decimal_from_be_bytes(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0];
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            let value = u32::from(*digit) * 256 + carry;
            *digit = (value % 10) as u8;
            carry = value / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_serials_match_python_int() {
        // The tno notes' example: serial 0x0A1B2C3D4E is 43405557070.
        assert_eq!(
            decimal_from_be_bytes(&[0x0a, 0x1b, 0x2c, 0x3d, 0x4e]),
            "43405557070"
        );
        assert_eq!(decimal_from_be_bytes(&[]), "0");
        assert_eq!(
            decimal_from_be_bytes(&[0xff; 16]),
            "340282366920938463463374607431768211455"
        );
    }

    #[test]
    fn empty_pem_names_the_field() {
        let err = load_certificates("trusted_cas", &PemSource::inline("-----BEGIN nothing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trusted_cas"), "{err}");
    }
}
