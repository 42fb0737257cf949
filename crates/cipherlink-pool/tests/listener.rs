//! A Pool serves on a listener bound before it starts, std or tokio: both
//! parties know each other's ports first, and the party is reachable there.

mod common;

use cipherlink_pool::{ConfigError, PeerConfig, Pool, PoolConfig, PoolError, Value};
use common::*;

#[tokio::test]
async fn parties_serve_on_listeners_bound_before_they_start() {
    init_logs();
    let alice_l = bind();
    let bob_l = tokio::net::TcpListener::bind(loopback(0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let alice_addr = alice_l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let bob_addr = bob_l.local_addr().unwrap_or_else(|e| panic!("{e}"));

    let mut cfg = PoolConfig::new("Alice", loopback(0)).peer(PeerConfig::new(
        "Bob",
        "127.0.0.1",
        bob_addr.port(),
    ));
    cfg.limits = test_limits();
    let alice = Pool::with_listener(cfg, alice_l)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = PoolConfig::new("Bob", loopback(0)).peer(PeerConfig::new(
        "Alice",
        "127.0.0.1",
        alice_addr.port(),
    ));
    cfg.limits = test_limits();
    let bob = Pool::with_listener(cfg, bob_l)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alice.local_addr(), alice_addr);
    assert_eq!(bob.local_addr(), bob_addr);

    alice
        .send("Bob", &Value::str("over a std listener's peer"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Bob knows the sender as Alice: her announced port is her listener's.
    assert_eq!(
        bob.recv("Alice", None).await.ok(),
        Some(Value::str("over a std listener's peer"))
    );
    bob.send("Alice", &Value::int(7), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alice.recv("Bob", None).await.ok(), Some(Value::int(7)));
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test]
async fn a_given_listener_does_not_skip_the_configuration_checks() {
    let cfg = PoolConfig::new("Alice", loopback(0)).peer(PeerConfig::new("Alice", "127.0.0.1", 1));
    let e = Pool::with_listener(cfg, bind()).await.err();
    assert!(
        matches!(e, Some(PoolError::Config(ConfigError::PeerIsSelf(_)))),
        "{e:?}"
    );
}
