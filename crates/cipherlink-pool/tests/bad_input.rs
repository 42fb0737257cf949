//! Hostile or broken requests: each gets the right status and a logged
//! reason, nothing already accepted is lost, and the party keeps serving.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_pool::{
    envelope, Limits, MessageId, PeerConfig, Pool, PoolConfig, PoolError, RetryPolicy, SendError,
    Value, WireVersion,
};
use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn post(cookie: Option<u16>, body: &[u8]) -> Vec<u8> {
    post_cookie(cookie.map(|p| p.to_string()).as_deref(), body)
}

fn post_cookie(cookie: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /some/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(p) = cookie {
        r.push_str(&format!("Cookie: a=b; server_port={p}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

fn body(id: &str, v: &Value) -> Vec<u8> {
    envelope::encode(WireVersion::V5, &MessageId::from(id), v).unwrap_or_else(|e| panic!("{e}"))
}

async fn bob(alice_port: u16) -> Pool {
    let mut cfg =
        PoolConfig::new("Bob", loopback(0)).peer(PeerConfig::new("Alice", "127.0.0.1", alice_port));
    cfg.limits = Limits {
        max_body: 4096,
        max_buffered_per_peer: 3,
        body_timeout: Duration::from_millis(500),
        recv_timeout: Some(Duration::from_secs(5)),
        ..Limits::default()
    };
    Pool::start(cfg).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_the_party_keeps_serving() {
    init_logs();
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob(alice_port).await;
    let addr = bob.local_addr();
    let a = Some(alice_port);

    let r = raw(
        addr,
        b"GET /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "Connection working (GET)")
    );

    let r = raw(
        addr,
        b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);

    let r = raw(addr, &post(a, &body("m1", &Value::str("first")))).await;
    assert_eq!((r.status, r.body.as_str()), (200, "Message received"));

    let r = raw(addr, &post(None, &body("x", &Value::Nil))).await;
    assert_eq!((r.status, r.body.as_str()), (400, "400: Bad Request"));

    let r = raw(addr, &post(Some(1), &body("x", &Value::Nil))).await;
    assert_eq!(r.status, 401);
    assert!(
        r.head.contains("Server did not recognize sender."),
        "{}",
        r.head
    );

    // The cookie must be the port exactly, as the package compares strings.
    let r = raw(
        addr,
        &post_cookie(Some(&format!("0{alice_port}")), &body("x", &Value::Nil)),
    )
    .await;
    assert_eq!(r.status, 401);

    let r = raw(addr, &post(a, &[0xc1])).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Reserved"), "{}", r.body);

    let good = body("m2", &Value::str("truncated"));
    let r = raw(addr, &post(a, &good[..good.len() - 3])).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("ends early"), "{}", r.body);

    let v4 = envelope::encode(WireVersion::V4, &"m3".into(), &Value::str("old"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = raw(addr, &post(a, &v4)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("4.x") && r.body.contains("5.x"),
        "{}",
        r.body
    );

    let r = raw(
        addr,
        format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: server_port={alice_port}\r\nContent-Length: 5000\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);

    let r = raw(
        addr,
        format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: server_port={alice_port}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 411);

    // A duplicate of a buffered id is refused; the first is kept.
    let r = raw(addr, &post(a, &body("m1", &Value::str("second")))).await;
    assert_eq!(r.status, 409);

    // Buffer limit 3: m1 plus two more.
    for id in ["f1", "f2"] {
        assert_eq!(
            raw(addr, &post(a, &body(id, &Value::int(1)))).await.status,
            200
        );
    }
    assert_eq!(
        raw(addr, &post(a, &body("f3", &Value::int(1))))
            .await
            .status,
        429
    );

    // A body that stops arriving.
    let mut stalled = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nCookie: server_port={alice_port}\r\nContent-Length: 100\r\n\r\n"
    )
    .into_bytes();
    stalled.extend_from_slice(&[0x82; 10]);
    let started = std::time::Instant::now();
    let r = raw(addr, &stalled).await;
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Nothing accepted was lost, and the party still serves.
    assert_eq!(
        bob.recv("Alice", Some("m1".into())).await.ok(),
        Some(Value::str("first"))
    );
    assert_eq!(
        bob.try_recv("Alice", Some("f1".into())).ok().flatten(),
        Some(Value::int(1))
    );
    assert_eq!(
        bob.try_recv("Alice", Some("f2".into())).ok().flatten(),
        Some(Value::int(1))
    );
    assert_eq!(
        raw(addr, &post(a, &body("m9", &Value::Bool(true))))
            .await
            .status,
        200
    );
    assert_eq!(
        bob.recv("Alice", Some("m9".into())).await.ok(),
        Some(Value::Bool(true))
    );
    bob.shutdown().await;
}

#[tokio::test]
async fn recv_times_out_with_a_typed_error() {
    let alice_l = bind();
    let bob = bob(port_of(&alice_l)).await;
    let e = bob
        .recv_timeout("Alice", None, Some(Duration::from_millis(100)))
        .await;
    assert!(matches!(e, Err(PoolError::RecvTimeout { .. })), "{e:?}");
    assert!(matches!(
        bob.recv("Nobody", None).await,
        Err(PoolError::UnknownPeer(_))
    ));
    bob.shutdown().await;
}

async fn alice_to(port: u16, attempts: u32) -> Pool {
    let mut cfg =
        PoolConfig::new("Alice", loopback(0)).peer(PeerConfig::new("Bob", "127.0.0.1", port));
    cfg.limits.request_timeout = Duration::from_millis(500);
    cfg.retry = RetryPolicy {
        attempts,
        wait: Duration::from_millis(50),
    };
    Pool::start(cfg).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_peer_that_stops_answering_gives_a_timeout_not_a_hang() {
    init_logs();
    // Accepts, reads the request, never answers.
    let silent = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = silent.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = silent.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            held.push(s);
        }
    });
    let alice = alice_to(port, 3).await;
    let started = std::time::Instant::now();
    let e = alice.send("Bob", &Value::str("hello?"), None).await;
    assert!(
        matches!(
            e,
            Err(PoolError::Send {
                source: SendError::Timeout { .. },
                ..
            })
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
    alice.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_resets_connections_exhausts_the_retries() {
    let closer = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = closer.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = closer.accept().await {
            drop(s);
        }
    });
    let alice = alice_to(port, 3).await;
    let e = alice.send("Bob", &Value::int(1), None).await;
    assert!(
        matches!(
            e,
            Err(PoolError::Send {
                source: SendError::RetriesExhausted { attempts: 3, .. },
                ..
            })
        ),
        "{e:?}"
    );
    // Alice still serves.
    let r = raw(
        alice.local_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    task.abort();
    alice.shutdown().await;
}

/// The nesting limit holds for sending as for receiving: a value deeper
/// than `max_depth` is refused before any I/O (Bob is not even listening).
#[tokio::test]
async fn a_value_nested_past_the_limit_is_not_sent() {
    // Bound, never accepted on: nothing else may answer as Bob.
    let bob_l = bind();
    let mut cfg = PoolConfig::new("Alice", loopback(0)).peer(PeerConfig::new(
        "Bob",
        "127.0.0.1",
        port_of(&bob_l),
    ));
    cfg.limits.max_depth = 4;
    let alice = Pool::start(cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let mut deep = Value::Nil;
    for _ in 0..10 {
        deep = Value::List(vec![deep]);
    }
    let e = alice.send("Bob", &deep, None).await;
    assert!(matches!(e, Err(PoolError::Encode { .. })), "{e:?}");
    assert_eq!(alice.stats()[0].sent, 0);
    alice.shutdown().await;
}

/// Bob, expecting Alice on `alice_port`, with default limits but one.
async fn bob_with(alice_port: u16, set: impl FnOnce(&mut Limits)) -> Pool {
    let mut cfg =
        PoolConfig::new("Bob", loopback(0)).peer(PeerConfig::new("Alice", "127.0.0.1", alice_port));
    set(&mut cfg.limits);
    Pool::start(cfg).await.unwrap()
}

/// Unreceived messages are bounded in bytes as well as in number: past the
/// byte limit a sender gets 429 with the reason, and once Bob receives what
/// is buffered, the sender's message is taken again. Nothing accepted is lost.
#[tokio::test]
async fn buffered_bytes_are_bounded_per_sender() {
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob_with(alice_port, |limits| {
        limits.max_buffered_bytes_per_peer = 3000
    })
    .await;
    let addr = bob.local_addr();
    let big = |id: &str| body(id, &Value::from(vec![7u8; 2000]));
    assert_eq!(
        raw(addr, &post(Some(alice_port), &big("m1"))).await.status,
        200
    );
    let r = raw(addr, &post(Some(alice_port), &big("m2"))).await;
    assert_eq!(r.status, 429, "{}", r.head);
    assert!(r.body.contains("3000 bytes"), "{}", r.body);
    let first = bob.recv("Alice", Some("m1".into())).await.unwrap();
    assert_eq!(first, Value::from(vec![7u8; 2000]));
    assert_eq!(
        raw(addr, &post(Some(alice_port), &big("m2"))).await.status,
        200
    );
    assert!(bob.recv("Alice", Some("m2".into())).await.is_ok());
    bob.shutdown().await;
}

/// Connections beyond `max_incoming_connections` wait in the listen backlog:
/// while one idle connection holds the only slot, a request on a second one
/// is not served; when the first goes (closed by the server when idle), it
/// is. No sleeping: by the time the second is answered, the first must
/// already have been closed (its end of stream is there to read).
#[tokio::test]
async fn incoming_connections_are_bounded() {
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob_with(alice_port, |limits| {
        limits.max_incoming_connections = 1;
        limits.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = bob.local_addr();
    let idle = std::net::TcpStream::connect(addr).unwrap();
    let request_bytes = post(Some(alice_port), &body("m1", &Value::Nil));
    let answer = raw(addr, &request_bytes).await;
    assert_eq!(answer.status, 200);
    idle.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut &idle, &mut byte);
    assert!(
        matches!(read, Ok(0)),
        "the second connection was served while the first held the slot: {read:?}"
    );
    assert_eq!(
        bob.recv("Alice", Some("m1".into())).await.unwrap(),
        Value::Nil
    );
    bob.shutdown().await;
}
