//! Certificates rustls refuses are refused on OpenSSL too, in both roles:
//! OpenSSL's own verifier takes X.509 v2, a CA certificate as the leaf, an
//! extended key usage of Server Gated Crypto alone (its `ssl_server`
//! purpose reads SGC as serverAuth), and keys and signatures rustls does
//! not verify (RSA-1024, Ed448, brainpool, SHA-224); under
//! `accept_cn_only_certificates` the CN was matched past the CA's name
//! constraints on both.
//!
//! Each case runs on the four pairings. A rustls side refuses to present a
//! certificate webpki cannot parse (v2): OpenSSL presents it then, since
//! what is tested is the verifier.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;

use cipherlink::{Config, Context, Dangerous, Implementation};
use cipherlink_test_support::{find, Peer};
use common::{inline, pair, Pair};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, NameConstraints, SanType, SigningKey,
};

/// One DER element at the start of `der`: (whole element, rest).
fn element(der: &[u8]) -> (&[u8], &[u8]) {
    let first = der[1];
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (2 + n, len)
    };
    (&der[..header + len], &der[header + len..])
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

/// `cert` with its version field set to `version` (0: v1, field dropped;
/// 1: v2), extensions kept, signed again with `issuer_key`.
fn with_version(cert: &[u8], issuer_key: &KeyPair, version: u8) -> Vec<u8> {
    let (cert, _) = element(cert);
    let (tbs, rest) = element(content(cert));
    let (algorithm, _) = element(rest);
    let (first, fields) = element(content(tbs));
    assert_eq!(first[0], 0xa0, "a v3 certificate starts with its version");
    let mut body = Vec::new();
    if version > 0 {
        body.extend(encode(0xa0, &[0x02, 0x01, version]));
    }
    body.extend_from_slice(fields);
    let tbs = encode(0x30, &body);
    let mut bits = vec![0u8];
    bits.extend(issuer_key.sign(&tbs).unwrap());
    let mut whole = tbs;
    whole.extend_from_slice(algorithm);
    whole.extend(encode(0x03, &bits));
    encode(0x30, &whole)
}

fn pem(der: &[u8]) -> String {
    use base64_table::encode as b64;
    let text = b64(der);
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

mod base64_table {
    pub fn encode(bytes: &[u8]) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
}

struct Ca {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

fn root(constraints: Option<NameConstraints>) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "peer rules CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.name_constraints = constraints;
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { key, params, pem }
}

/// An intermediate CA under `parent`, as X.509 `version` (2: v3).
fn intermediate(parent: &Ca, constraints: Option<NameConstraints>, version: u8) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "peer rules intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.name_constraints = constraints;
    let cert = params
        .signed_by(&key, &Issuer::new(parent.params.clone(), &parent.key))
        .unwrap();
    let der = match version {
        2 => cert.der().to_vec(),
        v => with_version(cert.der(), &parent.key, v),
    };
    Ca {
        key,
        params,
        pem: pem(&der),
    }
}

/// A leaf (PEM, key PEM) under `ca` with subject CN `cn`, as X.509
/// `version` (2: v3), adjusted by `extras`.
fn leaf(
    ca: &Ca,
    cn: &str,
    version: u8,
    extras: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    extras(&mut params);
    let cert = params
        .signed_by(&key, &Issuer::new(ca.params.clone(), &ca.key))
        .unwrap();
    let der = match version {
        2 => cert.der().to_vec(),
        v => with_version(cert.der(), &ca.key, v),
    };
    (pem(&der), key.serialize_pem())
}

fn named(name: &str) -> impl FnOnce(&mut CertificateParams) + '_ {
    move |p| p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())]
}

fn legacy() -> Dangerous {
    let mut dangerous = Dangerous::default();
    dangerous.accept_legacy_certificates = true;
    dangerous
}

fn cn_only() -> Dangerous {
    let mut dangerous = Dangerous::default();
    dangerous.accept_cn_only_certificates = true;
    dangerous
}

/// A Context built by `build` on `implementation`, or on the other one
/// when this one refuses to present the certificate: rustls parses its own
/// leaf with webpki, which reads v3 and v1 only, and OpenSSL's security
/// level refuses a leaf signed with SHA-1.
fn presenter(
    implementation: Implementation,
    config: Config,
    build: fn(&Config) -> Result<Context, cipherlink::Error>,
) -> Context {
    let mut config = config;
    config.implementation = implementation;
    match build(&config) {
        Ok(context) => context,
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("certificate") && !text.contains("private_key"),
                "{text}"
            );
            config.implementation = if implementation == Implementation::Rustls {
                Implementation::Openssl
            } else {
                Implementation::Rustls
            };
            build(&config).unwrap()
        }
    }
}

/// Whether a `p.client` client trusting `ca` with `dangerous` accepts a
/// server presenting `chain` with `key` for `name`; the error otherwise.
async fn client_verdict(
    p: Pair,
    ca: &str,
    (chain, key): (&str, &str),
    name: &str,
    dangerous: Dangerous,
) -> Result<(), String> {
    let mut server = Config::default();
    server.certificate = Some(inline(chain));
    server.private_key = Some(inline(key));
    server.dangerous = legacy();
    let server = presenter(p.server, server, Context::server);
    let client = Context::client(&p.client({
        let mut edited = Config::default();
        edited.trusted_cas = vec![inline(ca)];
        edited.server_name = Some(name.into());
        edited.dangerous = dangerous;
        edited
    }))
    .unwrap();
    let (_, c) = pair(&server, &client).await;
    c.map(drop).map_err(|e| e.to_string())
}

/// Whether a `p.server` server trusting `ca` with `dangerous` accepts a
/// client presenting `chain` with `key`; the error otherwise.
async fn server_verdict(
    p: Pair,
    ca: &Ca,
    (chain, key): (&str, &str),
    dangerous: Dangerous,
) -> Result<(), String> {
    let own = leaf(ca, "localhost", 2, named("localhost"));
    let server = Context::server(&p.server({
        let mut edited = Config::default();
        edited.certificate = Some(inline(&own.0));
        edited.private_key = Some(inline(&own.1));
        edited.trusted_cas = vec![inline(&ca.pem)];
        edited.require_client_cert = true;
        edited.dangerous = dangerous;
        edited
    }))
    .unwrap();
    let mut client = Config::default();
    client.certificate = Some(inline(chain));
    client.private_key = Some(inline(key));
    client.trusted_cas = vec![inline(&ca.pem)];
    client.server_name = Some("localhost".into());
    client.dangerous = legacy();
    let client = presenter(p.client, client, Context::client);
    let (s, _) = pair(&server, &client).await;
    s.map(drop).map_err(|e| e.to_string())
}

/// Object identifiers of the Server Gated Crypto purposes.
const MS_SGC: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 10, 3, 3];
const NS_SGC: &[u64] = &[2, 16, 840, 1, 113730, 4, 1];

fn only_eku(oid: &'static [u64]) -> impl FnOnce(&mut CertificateParams) {
    move |p| {
        p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(oid.to_vec())];
    }
}

every_pair! {
    /// A server's chain: only v3 certificates (and the trust anchor), no
    /// CA as the leaf, serverAuth where an extended key usage is present.
    async fn a_server_chain_is_held_to_rustls_rules(p: Pair) {
        let ca = root(None);
        let good = leaf(&ca, "localhost", 2, named("localhost"));
        client_verdict(p, &ca.pem, (&good.0, &good.1), "localhost", Dangerous::default())
            .await
            .unwrap();

        let v2 = leaf(&ca, "localhost", 1, named("localhost"));
        let err = client_verdict(p, &ca.pem, (&v2.0, &v2.1), "localhost", Dangerous::default())
            .await
            .unwrap_err();
        assert!(err.contains("X.509 v2"), "v2 leaf: {err}");

        let middle = intermediate(&ca, None, 1);
        let under = leaf(&middle, "localhost", 2, named("localhost"));
        let chain = format!("{}{}", under.0, middle.pem);
        let err = client_verdict(p, &ca.pem, (&chain, &under.1), "localhost", Dangerous::default())
            .await
            .unwrap_err();
        assert!(err.contains("X.509 v2"), "v2 intermediate: {err}");

        let ca_leaf = leaf(&ca, "localhost", 2, |p| {
            named("localhost")(p);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        });
        let err = client_verdict(p, &ca.pem, (&ca_leaf.0, &ca_leaf.1), "localhost", Dangerous::default())
            .await
            .unwrap_err();
        assert!(err.contains("CaUsedAsEndEntity"), "CA:TRUE leaf: {err}");

        for sgc in [MS_SGC, NS_SGC] {
            let sgc_only = leaf(&ca, "localhost", 2, only_eku(sgc));
            let err = client_verdict(p, &ca.pem, (&sgc_only.0, &sgc_only.1), "localhost", Dangerous::default())
                .await
                .unwrap_err();
            assert!(err.contains("extended key usage"), "SGC-only leaf {sgc:?}: {err}");
        }
    }
}

every_pair! {
    /// The same for a client's chain.
    async fn a_client_chain_is_held_to_rustls_rules(p: Pair) {
        let ca = root(None);
        let good = leaf(&ca, "client", 2, |_| {});
        server_verdict(p, &ca, (&good.0, &good.1), Dangerous::default()).await.unwrap();

        let v2 = leaf(&ca, "client", 1, |_| {});
        let err = server_verdict(p, &ca, (&v2.0, &v2.1), Dangerous::default()).await.unwrap_err();
        assert!(err.contains("X.509 v2"), "v2 leaf: {err}");

        let middle = intermediate(&ca, None, 1);
        let under = leaf(&middle, "client", 2, |_| {});
        let chain = format!("{}{}", under.0, middle.pem);
        let err = server_verdict(p, &ca, (&chain, &under.1), Dangerous::default()).await.unwrap_err();
        assert!(err.contains("X.509 v2"), "v2 intermediate: {err}");

        let ca_leaf = leaf(&ca, "client", 2, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        });
        let err = server_verdict(p, &ca, (&ca_leaf.0, &ca_leaf.1), Dangerous::default())
            .await
            .unwrap_err();
        assert!(err.contains("CaUsedAsEndEntity"), "CA:TRUE leaf: {err}");

        let sgc_only = leaf(&ca, "client", 2, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(MS_SGC.to_vec())];
        });
        let err = server_verdict(p, &ca, (&sgc_only.0, &sgc_only.1), Dangerous::default())
            .await
            .unwrap_err();
        assert!(err.contains("extended key usage"), "SGC-only leaf: {err}");
    }
}

every_pair! {
    /// `accept_legacy_certificates` admits a v1 leaf under the legacy
    /// path's rules, not OpenSSL's: not a CA, serverAuth (or clientAuth)
    /// where an extended key usage is present.
    async fn an_admitted_v1_leaf_still_meets_the_legacy_rules(p: Pair) {
        let ca = root(None);
        let plain = leaf(&ca, "localhost", 0, |_| {});
        client_verdict(p, &ca.pem, (&plain.0, &plain.1), "localhost", legacy()).await.unwrap();

        let ca_leaf = leaf(&ca, "localhost", 0, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        });
        let err = client_verdict(p, &ca.pem, (&ca_leaf.0, &ca_leaf.1), "localhost", legacy())
            .await
            .unwrap_err();
        assert!(err.contains("is a CA certificate"), "v1 CA:TRUE leaf: {err}");

        let sgc_only = leaf(&ca, "localhost", 0, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(MS_SGC.to_vec())];
        });
        let err = client_verdict(p, &ca.pem, (&sgc_only.0, &sgc_only.1), "localhost", legacy())
            .await
            .unwrap_err();
        assert!(err.contains("serverAuth"), "v1 SGC-only leaf: {err}");

        let client_ca = leaf(&ca, "client", 0, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        });
        let err = server_verdict(p, &ca, (&client_ca.0, &client_ca.1), legacy())
            .await
            .unwrap_err();
        assert!(err.contains("is a CA certificate"), "v1 CA:TRUE client: {err}");
    }
}

fn dns(name: &str) -> GeneralSubtree {
    GeneralSubtree::DnsName(name.into())
}

every_pair! {
    /// With `accept_cn_only_certificates`, the CN that stands in for the
    /// server name is held to the name constraints of every CA of the
    /// path, as a DNS name in subjectAltName would be.
    async fn a_cn_standing_in_is_held_to_name_constraints(p: Pair) {
        let permitted = root(Some(NameConstraints {
            permitted_subtrees: vec![dns("example.com")],
            excluded_subtrees: vec![],
        }));
        let inside = leaf(&permitted, "host.example.com", 2, |_| {});
        client_verdict(p, &permitted.pem, (&inside.0, &inside.1), "host.example.com", cn_only())
            .await
            .unwrap();
        let outside = leaf(&permitted, "localhost", 2, |_| {});
        let err = client_verdict(p, &permitted.pem, (&outside.0, &outside.1), "localhost", cn_only())
            .await
            .unwrap_err();
        assert!(err.contains("localhost (DNS) is not permitted"), "{err}");

        let excluding = root(Some(NameConstraints {
            permitted_subtrees: vec![],
            excluded_subtrees: vec![dns("localhost")],
        }));
        let excluded = leaf(&excluding, "localhost", 2, |_| {});
        let err = client_verdict(p, &excluding.pem, (&excluded.0, &excluded.1), "localhost", cn_only())
            .await
            .unwrap_err();
        assert!(err.contains("localhost (DNS) is excluded"), "{err}");

        // An intermediate's constraints count as much as the anchor's.
        let top = root(None);
        let middle = intermediate(&top, Some(NameConstraints {
            permitted_subtrees: vec![dns("example.com")],
            excluded_subtrees: vec![],
        }), 2);
        let under = leaf(&middle, "localhost", 2, |_| {});
        let chain = format!("{}{}", under.0, middle.pem);
        let err = client_verdict(p, &top.pem, (&chain, &under.1), "localhost", cn_only())
            .await
            .unwrap_err();
        assert!(err.contains("localhost (DNS) is not permitted"), "{err}");
    }
}

/// Runs `openssl` in `dir`, failing the test on an error.
fn run(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = std::process::Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .env_remove("OPENSSL_CONF")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA whose key is made by `genpkey` with `key_args`, and a P-256 leaf
/// for localhost it signs with `digest` (empty: the key's own), by
/// `openssl`: (CA PEM, leaf PEM, leaf key PEM).
pub fn openssl_chain(openssl: &Path, key_args: &[&str], digest: &str) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut genpkey = vec!["genpkey", "-out", "ca.key"];
    genpkey.extend_from_slice(key_args);
    run(openssl, d, &genpkey);
    let mut req = vec![
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-subj",
        "/CN=odd CA",
        "-days",
        "30",
        "-out",
        "ca.crt",
    ];
    req.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    req.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    if !digest.is_empty() {
        req.push(digest);
    }
    run(openssl, d, &req);
    run(
        openssl,
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "leaf.key",
        ],
    );
    run(
        openssl,
        d,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    let mut x509 = vec![
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-out",
        "leaf.crt",
    ];
    if !digest.is_empty() {
        x509.push(digest);
    }
    run(openssl, d, &x509);
    let read = |file: &str| std::fs::read_to_string(d.join(file)).unwrap();
    (read("ca.crt"), read("leaf.crt"), read("leaf.key"))
}

every_pair! {
    /// Keys and signatures rustls does not verify are refused on OpenSSL
    /// too (OpenSSL verifies them all at its default security level), and
    /// the error names what is weak.
    async fn keys_and_signatures_rustls_refuses_are_refused(p: Pair) {
        let Some(openssl) = find(Peer::Openssl, "keys_and_signatures_rustls_refuses_are_refused") else {
            return;
        };
        let cases: [(&str, &[&str], &str, &str); 5] = [
            ("RSA-1024 CA", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "-sha256", "1024-bit RSA"),
            ("SHA-1", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha1", "ecdsa-with-SHA1"),
            ("SHA-224", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha224", "ecdsa-with-SHA224"),
            ("Ed448 CA", &["-algorithm", "ED448"], "", "Ed448"),
            ("brainpool CA", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"], "-sha256", "brainpoolP256r1"),
        ];
        for (what, key_args, digest, named) in cases {
            let (ca, leaf, key) = openssl_chain(&openssl, key_args, digest);
            let err = client_verdict(p, &ca, (&leaf, &key), "localhost", Dangerous::default())
                .await
                .unwrap_err();
            assert!(err.contains(named), "{what}: {err}");
        }
    }
}
