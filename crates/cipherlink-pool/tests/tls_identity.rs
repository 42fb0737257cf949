//! TLS sender identity between Rust parties: issuer first RDN + serial, as
//! the package computes it, and refusal (401) of anyone else.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink_pool::{PeerConfig, PoolError, SendError, Value, WireVersion};
use common::*;

async fn send_with(
    bob_pins: &Leaf,
    alice: &Leaf,
    bob_cert: &Leaf,
) -> Result<cipherlink_pool::MessageId, PoolError> {
    let (alice_l, bob_l) = (bind(), bind());
    let bob_port = port_of(&bob_l);
    let bob = {
        let mut cfg = cipherlink_pool::PoolConfig::new("Bob", loopback(0))
            .tls(bob_cert.server_config(), bob_cert.client_config());
        // Bob knows Alice by the certificate he pinned for her.
        cfg.peers = vec![PeerConfig::new("Alice", "127.0.0.1", port_of(&alice_l))
            .with_cert(bob_pins.cert_der.clone())];
        cfg.limits = test_limits();
        cipherlink_pool::Pool::with_listener(cfg, bob_l)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let alice_pool = rust_party_on(
        alice_l,
        "Alice",
        WireVersion::V5,
        vec![PeerConfig::new("Bob", "127.0.0.1", bob_port).with_cert(bob_cert.cert_der.clone())],
        Some(alice),
    )
    .await;
    let res = alice_pool.send("Bob", &Value::str("hi"), None).await;
    if res.is_ok() {
        assert_eq!(bob.recv("Alice", None).await.ok(), Some(Value::str("hi")));
    }
    alice_pool.shutdown().await;
    bob.shutdown().await;
    res
}

fn is_401(r: &Result<cipherlink_pool::MessageId, PoolError>) -> bool {
    matches!(
        r,
        Err(PoolError::Send {
            source: SendError::Status { status: 401, .. },
            ..
        })
    )
}

#[tokio::test]
async fn pinned_certificate_identifies_the_sender() {
    init_logs();
    let ca = TestCa::new();
    let (alice, bob) = (ca.leaf("alice", 0x0A1B2C3D4E), ca.leaf("bob", 7));
    assert!(send_with(&alice, &alice, &bob).await.is_ok());
}

#[tokio::test]
async fn another_certificate_from_the_same_ca_is_refused() {
    init_logs();
    let ca = TestCa::new();
    let (alice, mallory, bob) = (
        ca.leaf("alice", 11),
        ca.leaf("mallory", 12),
        ca.leaf("bob", 13),
    );
    let r = send_with(&alice, &mallory, &bob).await;
    assert!(is_401(&r), "{r:?}");
}

#[tokio::test]
async fn issuer_dn_not_starting_with_cn_is_refused_as_the_package_does() {
    init_logs();
    // /C=NL/O=TNO/CN=Test CA: the receiving side computes "NL:<serial>", the
    // registering side "Test CA:<serial>"; they never match (tno-wire.md 2).
    let ca = TestCa::with_dn(&[
        (rcgen::DnType::CountryName, "NL"),
        (rcgen::DnType::OrganizationName, "TNO"),
        (rcgen::DnType::CommonName, "Test CA"),
    ]);
    let (alice, bob) = (ca.leaf("alice", 21), ca.leaf("bob", 22));
    let r = send_with(&alice, &alice, &bob).await;
    assert!(is_401(&r), "{r:?}");
}

/// Mallory, holding a certificate from the same CA, listens where Alice
/// believes Bob is, and would take Alice's messages (she knows Alice's
/// certificate). The chain is valid and names are not checked, so only the
/// check of the answering server against Bob's registered certificate
/// stops the message: Mallory gets nothing and Alice an error naming Bob.
#[tokio::test]
async fn a_server_with_another_certificate_at_the_peers_address_gets_nothing() {
    init_logs();
    let ca = TestCa::new();
    let (alice, bob, mallory) = (
        ca.leaf("alice", 31),
        ca.leaf("bob", 32),
        ca.leaf("mallory", 33),
    );
    let alice_l = bind();
    let mallory_pool = {
        let mut cfg = cipherlink_pool::PoolConfig::new("Mallory", loopback(0))
            .tls(mallory.server_config(), mallory.client_config());
        cfg.peers = vec![PeerConfig::new("Alice", "127.0.0.1", port_of(&alice_l))
            .with_cert(alice.cert_der.clone())];
        cfg.limits = test_limits();
        cipherlink_pool::Pool::start(cfg)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let alice_pool = rust_party_on(
        alice_l,
        "Alice",
        WireVersion::V5,
        vec![
            PeerConfig::new("Bob", "127.0.0.1", mallory_pool.local_addr().port())
                .with_cert(bob.cert_der.clone()),
        ],
        Some(&alice),
    )
    .await;
    let r = alice_pool
        .send("Bob", &Value::str("for Bob only"), None)
        .await;
    match &r {
        Err(
            e @ PoolError::Send {
                peer,
                source: SendError::WrongServer { found, .. },
                ..
            },
        ) => {
            assert_eq!(peer, "Bob");
            assert!(found.contains(":33"), "{found}");
            assert!(e.to_string().contains("\"Bob\""), "{e}");
        }
        other => panic!("expected a wrong-server error, got {other:?}"),
    }
    assert_eq!(
        mallory_pool.try_recv("Alice", None).ok().flatten(),
        None,
        "Mallory received Alice's message"
    );
    assert_eq!(mallory_pool.stats()[0].bytes_received, 0);
    alice_pool.shutdown().await;
    mallory_pool.shutdown().await;
}

#[test]
fn ids_match_the_packages_format() {
    let ca = TestCa::new();
    let alice = ca.leaf("alice", 0x0A1B2C3D4E);
    assert_eq!(
        cipherlink_pool::identity::presented_cert_id(&alice.cert_der).ok(),
        Some("Test CA:43405557070".to_string())
    );
    assert_eq!(
        cipherlink_pool::identity::registered_cert_id(&alice.cert_der).ok(),
        Some("Test CA:43405557070".to_string())
    );
}
