//! The legacy X.509 v1 path (`dangerous.accept_legacy_certificates`) still
//! applies what OpenSSL applies to such a leaf: the CA's name constraints,
//! the leaf's key usage and extended key usage where present, and the
//! subjectAltName when its OID is there (refusing one that does not parse).
//!
//! The v1 certificates are made here: rcgen writes v3, so each is re-encoded
//! without its version field (and, unless the test needs them, without its
//! extensions) and signed again by the CA's key.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink::credentials::Identity;
use cipherlink::{Config, Context, Dangerous};
use common::{inline, pair, Pair};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SigningKey,
};

/// One DER element at the start of `der`: (tag, whole element, rest).
fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (2 + n, len)
    };
    (tag, &der[..header + len], &der[header + len..])
}

fn content(element: &[u8]) -> &[u8] {
    let first = element[1];
    let header = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    &element[header..]
}

fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(body);
    out
}

/// `v3` re-encoded as version 1 and signed again with `ca_key`.
fn as_v1(v3: &[u8], ca_key: &KeyPair, keep_extensions: bool) -> Vec<u8> {
    let (_, cert, _) = element(v3);
    let (_, tbs, rest) = element(content(cert));
    let (_, algorithm, _) = element(rest);
    let mut fields = content(tbs);
    let mut body = Vec::new();
    while !fields.is_empty() {
        let (tag, field, rest) = element(fields);
        // [0] version: absent means v1. [3] extensions: v3 only.
        if tag != 0xa0 && (tag != 0xa3 || keep_extensions) {
            body.extend_from_slice(field);
        }
        fields = rest;
    }
    let tbs = encode(0x30, &body);
    let signature = ca_key.sign(&tbs).unwrap();
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut cert = tbs;
    cert.extend_from_slice(algorithm);
    cert.extend(encode(0x03, &bits));
    encode(0x30, &cert)
}

fn pem(der: &[u8]) -> String {
    let text = base64(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Ca {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

fn ca(constraints: Option<NameConstraints>) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "legacy rules CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.name_constraints = constraints;
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { key, params, pem }
}

/// A v1 leaf (PEM) and its key; `extras` adjusts the v3 original, whose
/// extensions are kept only when `keep_extensions`.
fn v1_leaf(
    ca: &Ca,
    cn: &str,
    keep_extensions: bool,
    extras: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    extras(&mut params);
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    let v3 = params.signed_by(&key, &issuer).unwrap();
    let der = as_v1(v3.der(), &ca.key, keep_extensions);
    (pem(&der), key.serialize_pem())
}

fn legacy() -> Dangerous {
    let mut dangerous = Dangerous::default();
    dangerous.accept_legacy_certificates = true;
    dangerous
}

/// The client's error (empty if none) when a client that trusts `ca` and
/// expects `server_name` meets a server with `leaf`.
async fn client_sees(ca: &Ca, leaf: &(String, String), server_name: &str) -> String {
    let server = Context::server(&{
        let mut edited = Config::default();
        edited.certificate = Some(inline(&leaf.0));
        edited.private_key = Some(inline(&leaf.1));
        edited.dangerous = legacy();
        edited
    })
    .unwrap();
    let client = Context::client(&{
        let mut edited = Config::default();
        edited.trusted_cas = vec![inline(&ca.pem)];
        edited.server_name = Some(server_name.into());
        edited.dangerous = legacy();
        edited
    })
    .unwrap();
    let (_, c) = pair(&server, &client).await;
    c.err().map(|e| e.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn the_cas_name_constraints_apply_to_a_v1_leaf() {
    let ca = ca(Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".into())],
        excluded_subtrees: vec![GeneralSubtree::DnsName("bad.example.com".into())],
    }));
    let inside = v1_leaf(&ca, "host.example.com", false, |_| {});
    assert_eq!(client_sees(&ca, &inside, "host.example.com").await, "");

    let outside = v1_leaf(&ca, "localhost", false, |_| {});
    let err = client_sees(&ca, &outside, "localhost").await;
    assert!(
        err.contains("localhost") && err.contains("not permitted by the name constraints"),
        "{err}"
    );

    let excluded = v1_leaf(&ca, "x.bad.example.com", false, |_| {});
    let err = client_sees(&ca, &excluded, "x.bad.example.com").await;
    assert!(err.contains("is excluded"), "{err}");
}

#[tokio::test]
async fn a_v1_leafs_key_usages_must_allow_its_role() {
    let ca = ca(None);
    let client_only = v1_leaf(&ca, "localhost", true, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let err = client_sees(&ca, &client_only, "localhost").await;
    assert!(err.contains("serverAuth"), "{err}");

    let server_auth = v1_leaf(&ca, "localhost", true, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    });
    assert_eq!(client_sees(&ca, &server_auth, "localhost").await, "");

    let no_signing = v1_leaf(&ca, "localhost", true, |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    });
    let err = client_sees(&ca, &no_signing, "localhost").await;
    assert!(err.contains("digitalSignature"), "{err}");

    let unknown_critical = v1_leaf(&ca, "localhost", true, |p| {
        let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
    });
    let err = client_sees(&ca, &unknown_critical, "localhost").await;
    assert!(err.contains("critical extension"), "{err}");
}

#[tokio::test]
async fn a_v1_client_certificate_needs_client_auth_where_it_has_an_eku() {
    let ca = ca(None);
    let server_leaf = v1_leaf(&ca, "localhost", false, |_| {});
    let server_only = v1_leaf(&ca, "legacy-client", true, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let server = Context::server(&{
        let mut edited = Config::default();
        edited.certificate = Some(inline(&server_leaf.0));
        edited.private_key = Some(inline(&server_leaf.1));
        edited.trusted_cas = vec![inline(&ca.pem)];
        edited.require_client_cert = true;
        edited.dangerous = legacy();
        edited
    })
    .unwrap();
    let client = Context::client(&{
        let mut edited = Config::default();
        edited.certificate = Some(inline(&server_only.0));
        edited.private_key = Some(inline(&server_only.1));
        edited.trusted_cas = vec![inline(&ca.pem)];
        edited.dangerous = legacy();
        edited
    })
    .unwrap();
    let (s, _) = pair(&server, &client).await;
    let err = s.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("clientAuth"), "{err}");
}

/// subjectAltName content that is not a GeneralNames sequence.
fn garbled_san() -> CustomExtension {
    CustomExtension::from_oid_content(&[2, 5, 29, 17], vec![0x04, 0x02, 0xff, 0xff])
}

#[tokio::test]
async fn subject_alt_name_presence_is_decided_by_its_oid() {
    let ca = ca(None);
    // A SAN that does not parse refuses the certificate; the CN does not stand in.
    let garbled = v1_leaf(&ca, "localhost", true, |p| {
        p.custom_extensions = vec![garbled_san()];
    });
    let err = client_sees(&ca, &garbled, "localhost").await;
    assert!(err.contains("subjectAltName does not parse"), "{err}");

    // A SAN that names another host decides, whatever the CN says.
    let elsewhere = v1_leaf(&ca, "localhost", true, |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName("other.test".try_into().unwrap())];
    });
    let err = client_sees(&ca, &elsewhere, "localhost").await;
    assert!(
        err.contains("subjectAltName does not name localhost"),
        "{err}"
    );

    let named = v1_leaf(&ca, "not-the-host", true, |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
    });
    assert_eq!(client_sees(&ca, &named, "localhost").await, "");
}

#[test]
fn an_unparseable_subject_alt_name_still_counts_as_present() {
    let ca = ca(None);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.custom_extensions = vec![garbled_san()];
    let cert = params
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .unwrap();
    let identity = Identity::from_der(cert.der()).unwrap();
    assert!(identity.has_alt_name_extension);
    assert!(identity.alt_names.is_empty());
}

/// DER of a v1 leaf, as `v1_leaf` makes it.
fn v1_leaf_der(ca: &Ca, cn: &str, extras: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    extras(&mut params);
    let v3 = params
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .unwrap();
    as_v1(v3.der(), &ca.key, true)
}

fn ca_der(ca: &Ca) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn the_fuzzing_entry_runs_the_legacy_checks() {
    use cipherlink::fuzzing::{legacy_leaf, SERVER_NAME};
    let ca = ca(Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("localhost".into())],
        excluded_subtrees: vec![],
    }));
    let anchor = ca_der(&ca);
    let good = v1_leaf_der(&ca, SERVER_NAME, |_| {});
    legacy_leaf(&good, &anchor).unwrap();

    let other_host = v1_leaf_der(&ca, "elsewhere.localhost", |_| {});
    let err = legacy_leaf(&other_host, &anchor).unwrap_err().to_string();
    assert!(err.contains("does not name localhost"), "{err}");

    let server_only = v1_leaf_der(&ca, SERVER_NAME, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let err = legacy_leaf(&server_only, &anchor).unwrap_err().to_string();
    assert!(err.contains("clientAuth"), "{err}");

    let outside = v1_leaf_der(&ca, SERVER_NAME, |p| {
        p.subject_alt_names = vec![
            rcgen::SanType::DnsName("localhost".try_into().unwrap()),
            rcgen::SanType::DnsName("evil.test".try_into().unwrap()),
        ];
    });
    let err = legacy_leaf(&outside, &anchor).unwrap_err().to_string();
    assert!(err.contains("not permitted"), "{err}");

    let stranger = self::ca(None);
    let err = legacy_leaf(&good, &ca_der(&stranger))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not signed directly by a trusted CA"), "{err}");

    // Every truncation of a good leaf is refused with an error, never a panic.
    for len in 0..good.len() {
        assert!(legacy_leaf(&good[..len], &anchor).is_err(), "{len}");
    }
    for len in 0..anchor.len() {
        assert!(legacy_leaf(&good, &anchor[..len]).is_err(), "{len}");
    }
}

#[test]
fn the_name_constraints_entry_checks_any_leaf_version() {
    use cipherlink::fuzzing::name_constraints;
    let ca = ca(Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".into())],
        excluded_subtrees: vec![GeneralSubtree::DnsName("bad.example.com".into())],
    }));
    let anchor = ca_der(&ca);
    let inside = v1_leaf_der(&ca, "host.example.com", |_| {});
    name_constraints(&anchor, &inside).unwrap();
    let excluded = v1_leaf_der(&ca, "x.bad.example.com", |_| {});
    let err = name_constraints(&anchor, &excluded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is excluded"), "{err}");
    // A v3 leaf's SAN is checked the same way.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
    let v3 = params
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .unwrap();
    let err = name_constraints(&anchor, v3.der()).unwrap_err().to_string();
    assert!(err.contains("not permitted"), "{err}");
    assert!(name_constraints(&anchor[..10], v3.der()).is_err());
    assert!(name_constraints(&anchor, &[]).is_err());
}

/// A CA under `root` (v3, as CAs are).
fn intermediate(root: &Ca) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "legacy rules intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params
        .signed_by(&key, &Issuer::new(root.params.clone(), &root.key))
        .unwrap()
        .pem();
    Ca { key, params, pem }
}

/// A v3 leaf signed by `ca` with subject CN `cn` and these subjectAltNames
/// (none: no extension at all).
fn v3_leaf(ca: &Ca, cn: &str, alt_names: Vec<rcgen::SanType>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = alt_names;
    let cert = params
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Whether a client of implementation `p.client`, trusting `ca` with
/// `dangerous` and expecting `server_name`, accepts a server of `p.server`
/// presenting `chain` (leaf first) with `key`; the error otherwise.
async fn client_verdict(
    p: Pair,
    ca: &Ca,
    (chain, key): (&str, &str),
    server_name: &str,
    dangerous: Dangerous,
) -> Result<(), String> {
    let server = Context::server(&p.server({
        let mut edited = Config::default();
        edited.certificate = Some(inline(chain));
        edited.private_key = Some(inline(key));
        edited.dangerous = legacy();
        edited
    }))
    .unwrap();
    let client = Context::client(&p.client({
        let mut edited = Config::default();
        edited.trusted_cas = vec![inline(&ca.pem)];
        edited.server_name = Some(server_name.into());
        edited.dangerous = dangerous;
        edited
    }))
    .unwrap();
    let (_, c) = pair(&server, &client).await;
    c.map(drop).map_err(|e| e.to_string())
}

fn cn_only() -> Dangerous {
    let mut dangerous = Dangerous::default();
    dangerous.accept_cn_only_certificates = true;
    dangerous
}

every_pair! {
    /// A v3 certificate that names the server only in its CN is accepted
    /// with `accept_cn_only_certificates` alone: `accept_legacy_certificates`
    /// is about X.509 v1, and does not let the CN stand in (OpenSSL used
    /// to read the CN under it).
    async fn only_the_cn_only_option_lets_a_v3_cn_name_the_server(p: Pair) {
        let ca = ca(None);
        let leaf = v3_leaf(&ca, "localhost", Vec::new());
        let leaf = (leaf.0.as_str(), leaf.1.as_str());
        let err = client_verdict(p, &ca, leaf, "localhost", legacy()).await.unwrap_err();
        assert!(err.contains("not valid for server name"), "{err}");
        let err = client_verdict(p, &ca, leaf, "localhost", Dangerous::default()).await.unwrap_err();
        assert!(err.contains("not valid for server name"), "{err}");
        client_verdict(p, &ca, leaf, "localhost", cn_only()).await.unwrap();
        let mut both = cn_only();
        both.accept_legacy_certificates = true;
        client_verdict(p, &ca, leaf, "localhost", both).await.unwrap();
        // Wildcards are no match for the CN fallback (rustls compares the
        // CN as a name).
        let wild = v3_leaf(&ca, "*.example.com", Vec::new());
        let wild = (wild.0.as_str(), wild.1.as_str());
        assert!(client_verdict(p, &ca, wild, "a.example.com", cn_only()).await.is_err());
    }
}

every_pair! {
    /// The CN stands in only for a certificate with no subjectAltName
    /// extension at all, as on rustls: one whose subjectAltName has an IP
    /// address but no DNS name does not get its CN read for a DNS name.
    async fn the_cn_stands_in_only_without_any_subject_alt_name(p: Pair) {
        let ca = ca(None);
        let ip_only = v3_leaf(
            &ca,
            "localhost",
            vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())],
        );
        let ip_only = (ip_only.0.as_str(), ip_only.1.as_str());
        let err = client_verdict(p, &ca, ip_only, "localhost", cn_only()).await.unwrap_err();
        assert!(err.contains("not valid for server name"), "{err}");
        // Its subjectAltName still counts for what it names.
        client_verdict(p, &ca, ip_only, "127.0.0.1", Dangerous::default()).await.unwrap();
    }
}

every_pair! {
    /// Under `accept_legacy_certificates` a v1 certificate is accepted only
    /// as a leaf signed directly by a trusted CA: not under an
    /// intermediate (OpenSSL accepted one anywhere in the chain).
    async fn a_v1_server_certificate_must_be_issued_by_a_trust_anchor(p: Pair) {
        let root = ca(None);
        let direct = v1_leaf(&root, "localhost", false, |_| {});
        client_verdict(p, &root, (&direct.0, &direct.1), "localhost", legacy()).await.unwrap();

        let middle = intermediate(&root);
        let under = v1_leaf(&middle, "localhost", false, |_| {});
        let chain = format!("{}{}", under.0, middle.pem);
        let err = client_verdict(p, &root, (&chain, &under.1), "localhost", legacy())
            .await
            .unwrap_err();
        assert!(err.contains("not signed directly by a trusted CA"), "{err}");
    }
}

every_pair! {
    /// The same rule for a client's v1 certificate.
    async fn a_v1_client_certificate_must_be_issued_by_a_trust_anchor(p: Pair) {
        let root = ca(None);
        let server_leaf = v3_leaf(
            &root,
            "localhost",
            vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())],
        );
        let server = Context::server(&p.server({
            let mut edited = Config::default();
            edited.certificate = Some(inline(&server_leaf.0));
            edited.private_key = Some(inline(&server_leaf.1));
            edited.trusted_cas = vec![inline(&root.pem)];
            edited.require_client_cert = true;
            edited.dangerous = legacy();
            edited
        }))
        .unwrap();
        let client_with = |chain: String, key: &str| {
            Context::client(&p.client({
                let mut edited = Config::default();
                edited.certificate = Some(inline(&chain));
                edited.private_key = Some(inline(key));
                edited.trusted_cas = vec![inline(&root.pem)];
                edited.server_name = Some("localhost".into());
                edited.dangerous = legacy();
                edited
            }))
            .unwrap()
        };
        let direct = v1_leaf(&root, "legacy-client", false, |_| {});
        let (s, c) = pair(&server, &client_with(direct.0.clone(), &direct.1)).await;
        s.unwrap();
        c.unwrap();

        let middle = intermediate(&root);
        let under = v1_leaf(&middle, "legacy-client", false, |_| {});
        let client = client_with(format!("{}{}", under.0, middle.pem), &under.1);
        let (s, _) = pair(&server, &client).await;
        let err = s.unwrap_err().to_string();
        assert!(err.contains("not signed directly by a trusted CA"), "{err}");
    }
}
