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
