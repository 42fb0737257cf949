//! A trust anchor's nameConstraints (RFC 5280 section 4.2.1.10), applied to
//! the X.509 v1 leaves of [`crate::legacy`].
//!
//! webpki applies name constraints to the v3 chains it verifies, but it
//! never sees the v1 leaves that the legacy path accepts, so the legacy path
//! applies them itself, as OpenSSL's `NAME_CONSTRAINTS_check` does: the
//! subject DN against directoryName subtrees, e-mail addresses against
//! rfc822Name subtrees, and DNS names and IP addresses from subjectAltName
//! against theirs. A v1 server certificate's only name is its subject CN,
//! so without DNS names in a subjectAltName the CN is checked as a DNS name
//! (or an IP address). A constraint on a name form not handled here (URI,
//! otherName, ...) refuses any leaf carrying a name of that form: failing
//! closed, where OpenSSL would check it.

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, GeneralSubtree};
use x509_parser::x509::X509Name;

/// A name of the leaf, in the forms constraints are written in.
enum LeafName<'a> {
    Dns(String),
    Ip(Vec<u8>),
    Email(String),
    Dir(&'a X509Name<'a>),
    /// A subjectAltName entry of another form, named for messages.
    Other(&'static str),
}

impl LeafName<'_> {
    /// The GeneralName form name, which a subtree must share to apply.
    fn form(&self) -> &'static str {
        match self {
            LeafName::Dns(_) => "DNS",
            LeafName::Ip(_) => "IP",
            LeafName::Email(_) => "email",
            LeafName::Dir(_) => "directoryName",
            LeafName::Other(form) => form,
        }
    }

    fn describe(&self) -> String {
        match self {
            LeafName::Dns(name) | LeafName::Email(name) => name.clone(),
            LeafName::Ip(bytes) => ip_text(bytes),
            LeafName::Dir(name) => name.to_string(),
            LeafName::Other(form) => format!("a {form} name"),
        }
    }

    /// Whether `base` (of the same form) covers this name; `None` for a
    /// form not handled here.
    fn within(&self, base: &GeneralName<'_>) -> Option<bool> {
        match (self, base) {
            (LeafName::Dns(name), GeneralName::DNSName(base)) => Some(dns_within(name, base)),
            (LeafName::Ip(addr), GeneralName::IPAddress(base)) => Some(ip_within(addr, base)),
            (LeafName::Email(addr), GeneralName::RFC822Name(base)) => {
                Some(email_within(addr, base))
            }
            (LeafName::Dir(name), GeneralName::DirectoryName(base)) => Some(dir_within(name, base)),
            _ => None,
        }
    }
}

fn form_of(name: &GeneralName<'_>) -> &'static str {
    match name {
        GeneralName::DNSName(_) => "DNS",
        GeneralName::IPAddress(_) => "IP",
        GeneralName::RFC822Name(_) => "email",
        GeneralName::DirectoryName(_) => "directoryName",
        GeneralName::URI(_) => "URI",
        GeneralName::OtherName(..) => "otherName",
        GeneralName::RegisteredID(_) => "registeredID",
        GeneralName::X400Address(_) => "x400Address",
        GeneralName::EDIPartyName(_) => "ediPartyName",
        GeneralName::Invalid(..) => "invalid",
    }
}

/// Checks every name of `leaf` against `ca`'s name constraints. `alt_names`
/// is the leaf's subjectAltName, already parsed (an unparseable one was
/// refused before this).
pub(crate) fn check(
    leaf: &X509Certificate<'_>,
    alt_names: &[GeneralName<'_>],
    ca: &X509Certificate<'_>,
) -> Result<(), String> {
    match ca.name_constraints() {
        Ok(None) => Ok(()),
        Ok(Some(nc)) => check_names(leaf, alt_names, nc.value, &ca.subject().to_string()),
        Err(e) => Err(format!(
            "the CA {} has nameConstraints that do not parse ({e})",
            ca.subject()
        )),
    }
}

/// Checks the names of a leaf whose subject CN stands in for its server
/// name (`dangerous.accept_cn_only_certificates`: it has no subjectAltName)
/// against the nameConstraints of one CA of its path, given as the content
/// of the extension's SEQUENCE (as webpki keeps a trust anchor's). webpki
/// applies constraints to subjectAltName entries only, so without this a
/// CA constrained to `example.com` could vouch for a CN of `localhost`.
pub(crate) fn check_cn_only_leaf(
    leaf_der: &[u8],
    constraints_content: &[u8],
    ca: &str,
) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("the certificate does not parse ({e})"))?;
    let mut sequence = vec![0x30];
    let len = constraints_content.len();
    match u32::try_from(len) {
        Ok(short) if short < 0x80 => sequence.push(short as u8),
        Ok(long) => {
            let bytes = long.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            sequence.push(0x80 | (4 - skip) as u8);
            sequence.extend_from_slice(&bytes[skip..]);
        }
        Err(_) => return Err(format!("the CA {ca} has nameConstraints too long to read")),
    }
    sequence.extend_from_slice(constraints_content);
    let (_, constraints) = x509_parser::extensions::NameConstraints::from_der(&sequence)
        .map_err(|e| format!("the CA {ca} has nameConstraints that do not parse ({e})"))?;
    check_names(&leaf, &[], &constraints, ca)
}

/// [`check_cn_only_leaf`] for an intermediate CA of the path (DER).
pub(crate) fn check_leaf_under(leaf_der: &[u8], ca_der: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("the certificate does not parse ({e})"))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| format!("a CA of its chain does not parse ({e})"))?;
    check(&leaf, &[], &ca)
}

fn check_names(
    leaf: &X509Certificate<'_>,
    alt_names: &[GeneralName<'_>],
    constraints: &x509_parser::extensions::NameConstraints<'_>,
    ca: &str,
) -> Result<(), String> {
    let permitted = constraints.permitted_subtrees.as_deref().unwrap_or(&[]);
    let excluded = constraints.excluded_subtrees.as_deref().unwrap_or(&[]);
    for name in leaf_names(leaf, alt_names) {
        check_one(&name, permitted, excluded).map_err(|why| {
            format!(
                "{} ({}) {why} by the name constraints of CA {ca}",
                name.describe(),
                name.form(),
            )
        })?;
    }
    Ok(())
}

fn check_one(
    name: &LeafName<'_>,
    permitted: &[GeneralSubtree<'_>],
    excluded: &[GeneralSubtree<'_>],
) -> Result<(), &'static str> {
    let same_form = |subtree: &&GeneralSubtree<'_>| form_of(&subtree.base) == name.form();
    for subtree in excluded.iter().filter(same_form) {
        match name.within(&subtree.base) {
            Some(false) => {}
            Some(true) => return Err("is excluded"),
            None => return Err("cannot be checked, so is refused"),
        }
    }
    let mut forms_permitted = permitted.iter().filter(same_form).peekable();
    if forms_permitted.peek().is_none() {
        return Ok(());
    }
    for subtree in forms_permitted {
        match name.within(&subtree.base) {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => return Err("cannot be checked, so is refused"),
        }
    }
    Err("is not permitted")
}

fn leaf_names<'a>(
    leaf: &'a X509Certificate<'a>,
    alt_names: &[GeneralName<'_>],
) -> Vec<LeafName<'a>> {
    let mut names = Vec::new();
    if leaf.subject().iter().next().is_some() {
        names.push(LeafName::Dir(leaf.subject()));
    }
    for email in leaf.subject().iter_email() {
        match email.as_str() {
            Ok(email) => names.push(LeafName::Email(email.to_string())),
            Err(_) => names.push(LeafName::Other("email")),
        }
    }
    let mut has_dns = false;
    for name in alt_names {
        names.push(match name {
            GeneralName::DNSName(dns) => {
                has_dns = true;
                LeafName::Dns((*dns).to_string())
            }
            GeneralName::IPAddress(ip) => LeafName::Ip(ip.to_vec()),
            GeneralName::RFC822Name(email) => LeafName::Email((*email).to_string()),
            other => LeafName::Other(form_of(other)),
        });
    }
    if !has_dns {
        for cn in leaf.subject().iter_common_name() {
            let Ok(cn) = cn.as_str() else { continue };
            names.push(match cn.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => LeafName::Ip(ip.octets().to_vec()),
                Ok(IpAddr::V6(ip)) => LeafName::Ip(ip.octets().to_vec()),
                Err(_) => LeafName::Dns(cn.to_string()),
            });
        }
    }
    names
}

/// RFC 5280: `example.com` covers itself and every name under it; a leading
/// dot (`.example.com`, as OpenSSL reads it) covers only names under it.
fn dns_within(name: &str, base: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let base = base.trim_end_matches('.').to_ascii_lowercase();
    if base.is_empty() {
        return true;
    }
    if base.starts_with('.') {
        return name.ends_with(&base);
    }
    name == base || name.ends_with(&format!(".{base}"))
}

/// The base is an address and a mask of the same length.
fn ip_within(addr: &[u8], base: &[u8]) -> bool {
    if base.len() != addr.len() * 2 {
        return false;
    }
    let (net, mask) = base.split_at(addr.len());
    addr.iter()
        .zip(net)
        .zip(mask)
        .all(|((a, n), m)| a & m == n & m)
}

/// `user@host` matches exactly; `host` any mailbox at that host; `.host`
/// any mailbox at a host under it.
fn email_within(addr: &str, base: &str) -> bool {
    let addr = addr.to_ascii_lowercase();
    let base = base.to_ascii_lowercase();
    if base.contains('@') {
        return addr == base;
    }
    let Some((_, host)) = addr.rsplit_once('@') else {
        return false;
    };
    if base.starts_with('.') {
        host.ends_with(&base)
    } else {
        host == base
    }
}

/// The base's RDNs are the first RDNs of the name, attribute by attribute
/// (strings compared case-insensitively with outer spaces trimmed, roughly
/// OpenSSL's canonical form; other values byte for byte).
fn dir_within(name: &X509Name<'_>, base: &X509Name<'_>) -> bool {
    let mut rdns = name.iter();
    base.iter().all(|want| {
        let Some(have) = rdns.next() else {
            return false;
        };
        let (want, have): (Vec<_>, Vec<_>) = (want.iter().collect(), have.iter().collect());
        want.len() == have.len()
            && want.iter().zip(&have).all(|(w, h)| {
                w.attr_type() == h.attr_type()
                    && match (w.as_str(), h.as_str()) {
                        (Ok(w), Ok(h)) => w.trim().eq_ignore_ascii_case(h.trim()),
                        _ => w.as_slice() == h.as_slice(),
                    }
            })
    })
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            <[u8; 4]>::try_from(bytes).map_or_else(|_| hex(bytes), |b| IpAddr::from(b).to_string())
        }
        16 => {
            <[u8; 16]>::try_from(bytes).map_or_else(|_| hex(bytes), |b| IpAddr::from(b).to_string())
        }
        _ => hex(bytes),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_subtrees_as_rfc_5280_and_openssl_read_them() {
        assert!(dns_within("example.com", "example.com"));
        assert!(dns_within("a.Example.com", "example.COM"));
        assert!(!dns_within("badexample.com", "example.com"));
        assert!(!dns_within("example.com", ".example.com"));
        assert!(dns_within("a.example.com", ".example.com"));
        assert!(dns_within("localhost", ""));
    }

    #[test]
    fn ip_subtrees_are_address_and_mask() {
        let net = [10, 1, 0, 0, 255, 255, 0, 0];
        assert!(ip_within(&[10, 1, 2, 3], &net));
        assert!(!ip_within(&[10, 2, 2, 3], &net));
        assert!(!ip_within(&[0; 16], &net));
    }

    #[test]
    fn email_subtrees() {
        assert!(email_within("a@example.com", "example.com"));
        assert!(!email_within("a@x.example.com", "example.com"));
        assert!(email_within("a@x.example.com", ".example.com"));
        assert!(email_within("A@example.com", "a@example.com"));
        assert!(!email_within("b@example.com", "a@example.com"));
    }
}
