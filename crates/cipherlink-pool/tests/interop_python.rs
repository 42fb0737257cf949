//! Rust parties against real `tno.mpc.communication` parties (5.x and 4.x),
//! plain and TLS. Each test skips loudly when its Python peer is not installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink_pool::{MessageId, PeerConfig, Pool, Value, WireVersion};
use cipherlink_test_support::Peer;
use common::*;

fn default_id(wire: WireVersion, k: usize) -> MessageId {
    match wire {
        WireVersion::V5 => MessageId::Str(k.to_string()),
        WireVersion::V4 => MessageId::from(k as i64),
    }
}

fn peer(name: &str, port: u16, cert: Option<&Leaf>) -> PeerConfig {
    let p = PeerConfig::new(name, "127.0.0.1", port);
    match cert {
        Some(c) => p.with_cert(c.cert_der.clone()),
        None => p,
    }
}

/// Python Alice sends the catalog with default ids, then with custom ids in
/// reverse order; a Rust Bob checks each and echoes it with the same id;
/// Alice checks the echoes.
async fn python_alice_rust_bob(py_peer: Peer, wire: WireVersion, use_tls: bool, test: &str) {
    init_logs();
    let Some(py) = python(py_peer, test) else {
        return;
    };
    let ca = TestCa::new();
    let (alice_c, bob_c) = (ca.leaf("alice", 0x0A1B2C3D4E), ca.leaf("bob", 0x0A1B2C3D4F));
    let tls = use_tls.then_some((&alice_c, &bob_c));
    let alice_port = port_for_python();
    let bob = rust_party(
        "Bob",
        wire,
        vec![peer("Alice", alice_port, tls.map(|t| t.0))],
        tls.map(|t| t.1),
    )
    .await;
    let mut args = vec![
        "--name=Alice".to_string(),
        format!("--port={alice_port}"),
        peer_arg(
            "Bob",
            bob.local_addr().port(),
            tls.map(|t| t.1.cert_path.as_path()),
        ),
        "--mode=alice".into(),
    ];
    if let Some((a, _)) = tls {
        args.extend(a.tls_args());
    }
    let py = PyParty::spawn(&py, &args);

    let cases = cases();
    let mut seen = 0;
    while seen < 2 * cases.len() {
        let got = bob
            .recv_any(Some(WAIT))
            .await
            .unwrap_or_else(|e| panic!("after {seen} messages: {e}"));
        let expected = cases
            .iter()
            .enumerate()
            .find(|(k, (name, _))| {
                got.id == default_id(wire, *k) || got.id == MessageId::Str(custom_id(name))
            })
            .map(|(_, (name, v))| (name, v))
            .unwrap_or_else(|| panic!("unexpected id {}", got.id));
        assert_eq!(
            &got.value, expected.1,
            "case {} (id {})",
            expected.0, got.id
        );
        bob.send("Alice", &got.value, Some(got.id.clone()))
            .await
            .unwrap_or_else(|e| panic!("echo {}: {e}", got.id));
        seen += 1;
    }
    py.expect_success().await;
    bob.shutdown().await;
}

/// The mirror: a Rust Alice sends, a Python Bob checks and echoes.
async fn rust_alice_python_bob(py_peer: Peer, wire: WireVersion, use_tls: bool, test: &str) {
    init_logs();
    let Some(py) = python(py_peer, test) else {
        return;
    };
    let ca = TestCa::new();
    let (alice_c, bob_c) = (ca.leaf("alice", 1001), ca.leaf("bob", 1002));
    let tls = use_tls.then_some((&alice_c, &bob_c));
    let bob_port = port_for_python();
    let alice = rust_party(
        "Alice",
        wire,
        vec![peer("Bob", bob_port, tls.map(|t| t.1))],
        tls.map(|t| t.0),
    )
    .await;
    let mut args = vec![
        "--name=Bob".to_string(),
        format!("--port={bob_port}"),
        peer_arg(
            "Alice",
            alice.local_addr().port(),
            tls.map(|t| t.0.cert_path.as_path()),
        ),
        "--mode=echo".into(),
    ];
    if let Some((_, b)) = tls {
        args.extend(b.tls_args());
    }
    let mut py = PyParty::spawn(&py, &args);
    py.wait_for("READY").await;

    let cases = cases();
    for (name, v) in &cases {
        let id = alice
            .send("Bob", v, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(matches!(id, MessageId::Str(_) | MessageId::Int(_)));
    }
    for (name, v) in cases.iter().rev() {
        alice
            .send("Bob", v, Some(MessageId::Str(custom_id(name))))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, v) in &cases {
        let got = alice
            .recv("Bob", None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got, v, "echo of {name}");
    }
    for (name, v) in &cases {
        let got = alice
            .recv("Bob", Some(MessageId::Str(custom_id(name))))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got, v, "echo of custom {name}");
    }
    py.expect_success().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python5_alice_rust_bob_plain() {
    python_alice_rust_bob(
        Peer::PythonTno5,
        WireVersion::V5,
        false,
        "python5_alice_rust_bob_plain",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python4_alice_rust_bob_plain() {
    python_alice_rust_bob(
        Peer::PythonTno4,
        WireVersion::V4,
        false,
        "python4_alice_rust_bob_plain",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python5_alice_rust_bob_tls() {
    python_alice_rust_bob(
        Peer::PythonTno5,
        WireVersion::V5,
        true,
        "python5_alice_rust_bob_tls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python4_alice_rust_bob_tls() {
    python_alice_rust_bob(
        Peer::PythonTno4,
        WireVersion::V4,
        true,
        "python4_alice_rust_bob_tls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_alice_python5_bob_plain() {
    rust_alice_python_bob(
        Peer::PythonTno5,
        WireVersion::V5,
        false,
        "rust_alice_python5_bob_plain",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_alice_python4_bob_plain() {
    rust_alice_python_bob(
        Peer::PythonTno4,
        WireVersion::V4,
        false,
        "rust_alice_python4_bob_plain",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_alice_python5_bob_tls() {
    rust_alice_python_bob(
        Peer::PythonTno5,
        WireVersion::V5,
        true,
        "rust_alice_python5_bob_tls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_alice_python4_bob_tls() {
    rust_alice_python_bob(
        Peer::PythonTno4,
        WireVersion::V4,
        true,
        "rust_alice_python4_bob_tls",
    )
    .await;
}

/// Rust Alice, Python Bob and Rust Carol; each broadcasts to the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_three_parties_mixed_languages() {
    init_logs();
    let Some(py) = python(Peer::PythonTno5, "broadcast_three_parties_mixed_languages") else {
        return;
    };
    let (a_listener, c_listener) = (bind(), bind());
    let (a_port, c_port) = (port_of(&a_listener), port_of(&c_listener));
    let b_port = port_for_python();
    let start = |name: &'static str, listener, peers: Vec<PeerConfig>| async move {
        let mut cfg = cipherlink_pool::PoolConfig::new(name, loopback(0));
        cfg.peers = peers;
        cfg.limits = test_limits();
        Pool::with_listener(cfg, listener)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let alice = start(
        "Alice",
        a_listener,
        vec![peer("Bob", b_port, None), peer("Carol", c_port, None)],
    )
    .await;
    let carol = start(
        "Carol",
        c_listener,
        vec![peer("Alice", a_port, None), peer("Bob", b_port, None)],
    )
    .await;
    let mut bob = PyParty::spawn(
        &py,
        &[
            "--name=Bob".into(),
            format!("--port={b_port}"),
            peer_arg("Alice", a_port, None),
            peer_arg("Carol", c_port, None),
            "--mode=bcast".into(),
        ],
    );
    bob.wait_for("READY").await;

    alice
        .broadcast(&Value::str("hello all"), Some("b1".into()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Default ids: every peer's send counter advanced once already, so both get "1".
    alice
        .broadcast(&Value::int(42), None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from_bob = Value::dict([
        ("from", Value::str("Bob")),
        ("got", Value::str("hello all")),
    ]);
    assert_eq!(
        carol.recv("Alice", Some("b1".into())).await.ok(),
        Some(Value::str("hello all"))
    );
    assert_eq!(
        carol.recv("Bob", Some("b2".into())).await.ok(),
        Some(from_bob.clone())
    );
    assert_eq!(carol.recv("Alice", None).await.ok(), Some(Value::int(42)));
    assert_eq!(
        alice.recv("Bob", Some("b2".into())).await.ok(),
        Some(from_bob)
    );
    // recv_all, and a None value sent before it was asked for.
    alice
        .broadcast(&Value::Nil, Some("late".into()), Some(&["Carol"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all = carol
        .recv_all(Some(&["Alice"]), Some("late".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all, vec![("Alice".to_string(), Value::Nil)]);
    bob.expect_success().await;
    alice.shutdown().await;
    carol.shutdown().await;
}

/// The Rust side sends before the Python side listens: retries carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_started_after_rust_sender() {
    init_logs();
    let Some(py) = python(Peer::PythonTno5, "python_started_after_rust_sender") else {
        return;
    };
    // Stands in for Bob until the sender has tried once: that attempt meets
    // a connection closed at once, so the sender must retry (waiting for
    // the attempt instead of sleeping and hoping one was made). Python Bob
    // binds its port by number after the stand-in closes.
    let stand_in = tokio::net::TcpListener::bind(loopback(0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bob_port = stand_in
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let alice = rust_party(
        "Alice",
        WireVersion::V5,
        vec![peer("Bob", bob_port, None)],
        None,
    )
    .await;
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.send("Bob", &Value::str("late hello"), None).await })
    };
    let (attempt, _) = tokio::time::timeout(WAIT, stand_in.accept())
        .await
        .unwrap_or_else(|_| panic!("the sender never tried"))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(attempt);
    drop(stand_in);
    assert!(!sender.is_finished(), "the send should still be retrying");
    let bob = PyParty::spawn(
        &py,
        &[
            "--name=Bob".into(),
            format!("--port={bob_port}"),
            peer_arg("Alice", alice.local_addr().port(), None),
            "--mode=one".into(),
        ],
    );
    let sent = tokio::time::timeout(WAIT, sender)
        .await
        .unwrap_or_else(|_| panic!("send did not finish"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sent.ok(), Some(MessageId::from("0")));
    assert_eq!(
        alice.recv("Bob", None).await.ok(),
        Some(Value::str("late hello"))
    );
    bob.expect_success().await;
    alice.shutdown().await;
}
