//! Two Rust parties with TLS from the core library's Context and
//! certificates from `cipherlink::certs::generate` (the shared `TestPki`,
//! by file path as `pool serve --tls` takes them): the core's checks and
//! key-exchange policy, and the Pool's identity by issuer and serial.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink::certs::CertOptions;
use cipherlink::PemSource;
use cipherlink_pool::{tls, PeerConfig, Pool, PoolConfig, Value};
use cipherlink_test_support::pki::TestPki;
use common::*;

#[tokio::test]
async fn core_context_tls_between_rust_parties() {
    // The core's client verifies the server's name (the host dialled): the
    // server leaf names 127.0.0.1, the client leaf is named for localhost.
    let pki = TestPki::with_options(&CertOptions {
        client_name: "localhost".into(),
        ..CertOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let configs = |p: &Leaf| {
        tls::core_configs(
            PemSource::path(&p.cert_path),
            PemSource::path(&p.key_path),
            PemSource::path(&p.ca_path),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let (alice_l, bob_l) = (bind(), bind());
    let (alice_port, bob_port) = (port_of(&alice_l), port_of(&bob_l));

    let (s, c) = configs(&pki.server);
    let mut cfg = PoolConfig::new("Alice", loopback(0))
        .tls(s, c)
        .peer(PeerConfig::new("Bob", "localhost", bob_port).with_cert(pki.client.cert_der.clone()));
    cfg.limits = test_limits();
    let alice = Pool::with_listener(cfg, alice_l)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (s, c) = configs(&pki.client);
    let mut cfg = PoolConfig::new("Bob", loopback(0)).tls(s, c).peer(
        PeerConfig::new("Alice", "127.0.0.1", alice_port).with_cert(pki.server.cert_der.clone()),
    );
    cfg.limits = test_limits();
    let bob = Pool::with_listener(cfg, bob_l)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

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
