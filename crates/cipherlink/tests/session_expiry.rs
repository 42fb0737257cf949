//! A resumed session does not outlive the peer certificate it was verified
//! with: once the certificate has expired, resuming is refused (by the
//! client for a server's certificate, by the server for a client's) and
//! the full handshake that follows refuses the certificate. Without this,
//! each resumption handed out a fresh ticket lifetime and the certificate
//! kept being accepted.
//!
//! The certificates expire a few seconds after they are made, and the
//! tests wait for that on the real clock: OpenSSL has no clock to inject.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink::{Config, Context};
use common::{inline, pair, Pair};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use time::OffsetDateTime;

/// How long the short-lived certificates live: long enough for two
/// handshakes on a loaded machine.
const LIFETIME: time::Duration = time::Duration::seconds(5);

struct Pki {
    ca: String,
    long: (String, String),
    short: (String, String),
    /// The short-lived leaf's notAfter (Unix seconds).
    short_until: i64,
}

/// A CA, a long-lived leaf and one that expires `LIFETIME` from now, both
/// for localhost and usable by either role.
fn pki() -> Pki {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "expiry CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let leaf = |not_after: OffsetDateTime| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &Issuer::new(ca.clone(), &ca_key))
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let short_until = now + LIFETIME;
    Pki {
        long: leaf(now + time::Duration::days(30)),
        short: leaf(short_until),
        ca: ca_pem,
        short_until: short_until.unix_timestamp(),
    }
}

/// Returns once the clock is past `not_after`.
async fn wait_until_expired(not_after: i64) {
    while OffsetDateTime::now_utc().unix_timestamp() <= not_after {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn server(p: Pair, pki: &Pki, own: &(String, String), mutual: bool) -> Context {
    let mut config = Config::default();
    config.certificate = Some(inline(&own.0));
    config.private_key = Some(inline(&own.1));
    if mutual {
        config.trusted_cas = vec![inline(&pki.ca)];
        config.require_client_cert = true;
    }
    Context::server(&p.server(config)).unwrap()
}

fn client(p: Pair, pki: &Pki, own: Option<&(String, String)>) -> Context {
    let mut config = Config::default();
    config.trusted_cas = vec![inline(&pki.ca)];
    config.server_name = Some("localhost".into());
    if let Some((cert, key)) = own {
        config.certificate = Some(inline(cert));
        config.private_key = Some(inline(key));
    }
    Context::client(&p.client(config)).unwrap()
}

/// A full handshake, then a resumed one (the client reads the ticket in
/// `pair`'s PING/PONG).
async fn resume_once(server: &Context, client: &Context) {
    let (s, c) = pair(server, client).await;
    s.unwrap();
    c.unwrap();
    let (s, c) = pair(server, client).await;
    s.unwrap();
    assert!(c.unwrap().resumed(), "the second handshake did not resume");
}

every_pair! {
    /// The client does not resume a session with a server whose
    /// certificate has expired since.
    async fn a_server_certificate_past_its_date_is_not_resumed(p: Pair) {
        let pki = pki();
        let server = server(p, &pki, &pki.short, false);
        let client = client(p, &pki, None);
        resume_once(&server, &client).await;
        wait_until_expired(pki.short_until).await;
        let (_, c) = pair(&server, &client).await;
        let err = c.map(|t| t.resumed()).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }
}

every_pair! {
    /// The server does not resume a session with a client whose
    /// certificate has expired since.
    async fn a_client_certificate_past_its_date_is_not_resumed(p: Pair) {
        let pki = pki();
        let server = server(p, &pki, &pki.long, true);
        let client = client(p, &pki, Some(&pki.short));
        resume_once(&server, &client).await;
        wait_until_expired(pki.short_until).await;
        let (s, _) = pair(&server, &client).await;
        let err = s.map(|t| t.resumed()).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }
}

/// A root CA, an intermediate under it that expires `LIFETIME` from now,
/// and a 30-day leaf for localhost under the intermediate: (root PEM,
/// leaf chain PEM, leaf key PEM, the intermediate's notAfter).
fn short_intermediate() -> (String, String, String, i64) {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::default();
    root.distinguished_name
        .push(DnType::CommonName, "expiry root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root_pem = root.self_signed(&root_key).unwrap().pem();
    let middle_key = KeyPair::generate().unwrap();
    let mut middle = CertificateParams::default();
    middle
        .distinguished_name
        .push(DnType::CommonName, "short-lived intermediate");
    middle.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    middle.not_before = now - time::Duration::hours(1);
    middle.not_after = now + LIFETIME;
    let middle_pem = middle
        .signed_by(&middle_key, &Issuer::new(root.clone(), &root_key))
        .unwrap()
        .pem();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(30);
    let leaf_pem = leaf
        .signed_by(&key, &Issuer::new(middle.clone(), &middle_key))
        .unwrap()
        .pem();
    (
        root_pem,
        format!("{leaf_pem}{middle_pem}"),
        key.serialize_pem(),
        middle.not_after.unix_timestamp(),
    )
}

every_pair! {
    /// The server does not resume a session whose client chain has expired
    /// since, though the client's leaf has not: an intermediate did
    /// (OpenSSL's session keeps the leaf only).
    async fn a_client_chain_past_its_intermediates_date_is_not_resumed(p: Pair) {
        let pki = pki();
        let (root, chain, key, until) = short_intermediate();
        let server = Context::server(&p.server({
            let mut config = Config::default();
            config.certificate = Some(inline(&pki.long.0));
            config.private_key = Some(inline(&pki.long.1));
            config.trusted_cas = vec![inline(&root)];
            config.require_client_cert = true;
            config
        }))
        .unwrap();
        let client = client(p, &pki, Some(&(chain, key)));
        resume_once(&server, &client).await;
        wait_until_expired(until).await;
        let (s, _) = pair(&server, &client).await;
        let err = s.map(|t| t.resumed()).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }
}

every_pair! {
    /// A client resumes only while a full handshake would pass: OpenSSL
    /// dates the trust anchor, so once it has expired an OpenSSL client
    /// neither verifies the server nor resumes with it (rustls does not
    /// date an anchor, and does both).
    async fn a_client_resumes_only_while_a_full_handshake_would_pass(p: Pair) {
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "short-lived CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.not_before = now - time::Duration::hours(1);
        ca.not_after = now + LIFETIME;
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
        leaf.not_before = now - time::Duration::hours(1);
        leaf.not_after = now + time::Duration::days(30);
        let leaf = (
            leaf.signed_by(&key, &Issuer::new(ca.clone(), &ca_key)).unwrap().pem(),
            key.serialize_pem(),
        );
        let pki = Pki { ca: ca_pem, long: leaf.clone(), short: leaf, short_until: 0 };
        let server = server(p, &pki, &pki.long, false);
        let newcomer = client(p, &pki, None);
        let client = client(p, &pki, None);
        resume_once(&server, &client).await;
        wait_until_expired(ca.not_after.unix_timestamp()).await;
        let (_, fresh) = pair(&server, &newcomer).await;
        let (_, again) = pair(&server, &client).await;
        match (fresh, again) {
            (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
            (Err(full), Ok(resumed)) => panic!(
                "resumed ({}) where a full handshake fails: {full}",
                resumed.resumed()
            ),
            (Ok(_), Err(err)) => panic!("a full handshake passes, the same client fails: {err}"),
        }
        if p.client == cipherlink::Implementation::Openssl {
            let (_, refused) = pair(&server, &client).await;
            assert!(refused.is_err(), "the OpenSSL client accepted an expired anchor");
        }
    }
}
