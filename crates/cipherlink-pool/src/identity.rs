//! Who sent a request: the package's two ways of naming a sender.
//!
//! * Plain HTTP: `"{remote_ip}:{server_port cookie}"`, compared as a string
//!   with the peer's `"{gethostbyname(addr)}:{port}"`. 5.x first rewrites a
//!   leading `localhost`, `127.0.0.1` or `::1` on either side to `localhost`;
//!   4.x compares exactly.
//! * TLS: `"{issuer first RDN value}:{decimal serial}"` from the client
//!   certificate, compared with the registered certificate's
//!   `"{issuer CN}:{decimal serial}"`. The two agree only when the issuer DN
//!   starts with CN, which is why certificates for parties must be issued by
//!   a CA whose subject DN starts with CN.

use std::borrow::Cow;
use std::net::IpAddr;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::envelope::WireVersion;

/// The network id of a request: `"{remote}:{cookie}"`, the cookie as sent.
pub fn request_address_id(remote: IpAddr, cookie_port: &str) -> String {
    format!("{}:{cookie_port}", remote.to_canonical())
}

/// The network id the package computes for a registered peer.
pub fn peer_address_id(ip: IpAddr, port: u16) -> String {
    format!("{}:{port}", ip.to_canonical())
}

/// Whether two network ids name the same party, as the given version compares them.
pub fn same_network_id(version: WireVersion, a: &str, b: &str) -> bool {
    comparable_network_id(version, a) == comparable_network_id(version, b)
}

/// The form in which the given version compares network ids: as they are
/// (4.x), or with 5.x's `_is_same_network_id` rewriting: each of the three
/// spellings, in order, replaces its first occurrence with `localhost` when
/// the id starts with it. A registered peer's form is computed once.
pub fn comparable_network_id(version: WireVersion, id: &str) -> Cow<'_, str> {
    let mut id = Cow::Borrowed(id);
    if version == WireVersion::V5 {
        for local in ["localhost", "127.0.0.1", "::1"] {
            if id.starts_with(local) {
                id = Cow::Owned(id.replacen(local, "localhost", 1));
            }
        }
    }
    id
}

/// The id the receiving side computes from a presented client certificate
/// (DER): the first attribute value of the first RDN of the issuer, in
/// certificate order, then the serial in decimal.
pub fn presented_cert_id(der: &[u8]) -> Result<String, String> {
    let identity = cipherlink::Identity::from_der(der)?;
    let value = identity
        .issuer_first_rdn_value
        .as_deref()
        .ok_or("the issuer's first attribute is missing or not a string")?;
    Ok(format!("{value}:{}", identity.serial_decimal()))
}

/// The id the package computes for a registered peer certificate (DER):
/// pyOpenSSL's `issuer.CN` (the first CN attribute) and the decimal serial.
pub fn registered_cert_id(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let cn = match cert.issuer().iter_common_name().next() {
        Some(attr) => attr
            .as_str()
            .map_err(|e| format!("issuer CN is not a string: {e}"))?
            .to_string(),
        // pyOpenSSL gives None, which Python formats as "None".
        None => "None".to_string(),
    };
    Ok(format!(
        "{cn}:{}",
        cipherlink::credentials::decimal_from_be_bytes(cert.raw_serial())
    ))
}

/// Who a peer's server must be under TLS: the registered certificate's
/// issuer (its DN, as encoded) and serial number, which name one
/// certificate among those a CA issued. The sending side checks the
/// answering server against it; chain and name checks cannot, since every
/// party's certificate chains to the same CA and names are not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerIdentity {
    issuer: Vec<u8>,
    serial: Vec<u8>,
    /// `issuer:serial`, for messages.
    label: String,
}

impl ServerIdentity {
    /// The identity of a registered certificate (DER).
    pub(crate) fn from_der(der: &[u8]) -> Result<ServerIdentity, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(ServerIdentity {
            issuer: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
            label: format!(
                "{}:{}",
                cert.issuer(),
                cipherlink::credentials::decimal_from_be_bytes(cert.raw_serial())
            ),
        })
    }

    /// `issuer:serial` of the registered certificate.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Whether a presented certificate is the registered one; if not, what
    /// it is instead.
    pub(crate) fn check(&self, presented: Option<&[u8]>) -> Result<(), String> {
        let Some(der) = presented else {
            return Err("(no certificate)".into());
        };
        let other = ServerIdentity::from_der(der).map_err(|e| format!("(unreadable: {e})"))?;
        if other.issuer == self.issuer && other.serial == self.serial {
            Ok(())
        } else {
            Err(other.label)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_normalizes_localhost_spellings() {
        assert!(same_network_id(
            WireVersion::V5,
            "127.0.0.1:5",
            "localhost:5"
        ));
        assert!(same_network_id(WireVersion::V5, "::1:5", "127.0.0.1:5"));
        assert!(!same_network_id(
            WireVersion::V5,
            "127.0.0.1:5",
            "127.0.0.1:6"
        ));
        assert!(!same_network_id(
            WireVersion::V4,
            "127.0.0.1:5",
            "localhost:5"
        ));
        // The cookie must be the decimal port exactly.
        assert!(!same_network_id(
            WireVersion::V5,
            "127.0.0.1:062010",
            "127.0.0.1:62010"
        ));
    }
}
