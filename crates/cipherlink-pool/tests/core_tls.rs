//! Two Rust parties with TLS from the core library's Context and
//! certificates from `cipherlink::certs::generate`: the core's checks and
//! key-exchange policy, and the Pool's identity by issuer and serial.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink::certs::{generate, CertOptions};
use cipherlink::PemSource;
use cipherlink_pool::{tls, PeerConfig, Pool, PoolConfig, Value};
use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn core_context_tls_between_rust_parties() {
    // The core's client verifies the server's name (the host dialled): the
    // server leaf names 127.0.0.1, the client leaf is named for localhost.
    let bundle = generate(&CertOptions {
        client_name: "localhost".into(),
        ..CertOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let pem = |s: &str| PemSource::inline(s);
    let configs = |p: &cipherlink::certs::Pem| {
        tls::core_configs(pem(&p.cert), pem(&p.key), pem(&bundle.ca.cert))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (alice_port, bob_port) = (free_port(), free_port());

    let (s, c) = configs(&bundle.server);
    let mut cfg = PoolConfig::new("Alice", loopback(alice_port))
        .tls(s, c)
        .peer(PeerConfig::new("Bob", "localhost", bob_port).with_cert(der(&bundle.client.cert)));
    cfg.limits = test_limits();
    let alice = Pool::start(cfg).await.unwrap_or_else(|e| panic!("{e}"));

    let (s, c) = configs(&bundle.client);
    let mut cfg = PoolConfig::new("Bob", loopback(bob_port)).tls(s, c).peer(
        PeerConfig::new("Alice", "127.0.0.1", alice_port).with_cert(der(&bundle.server.cert)),
    );
    cfg.limits = test_limits();
    let bob = Pool::start(cfg).await.unwrap_or_else(|e| panic!("{e}"));

    let big = Value::from(vec![7; 300_000]);
    alice
        .send("Bob", &big, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = bob
        .recv("Alice", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, big);
    bob.send("Alice", &Value::str("back"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alice.recv("Bob", None).await.ok(), Some(Value::str("back")));
    alice.shutdown().await;
    bob.shutdown().await;
}
