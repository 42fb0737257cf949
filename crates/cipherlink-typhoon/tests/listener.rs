//! The listener under attack by clients that hold a token: one token
//! filling the session table, an INIT with another token sent from a
//! client's address, an owner that does not read while a client floods.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use cipherlink_typhoon::driver::{connect, Accepted, TyphoonListener};
use cipherlink_typhoon::engine::Random;
use cipherlink_typhoon::{Engine, Event, ServerKey, TyphoonSettings};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

/// INITs answered after 50-100 ms, handshakes every 1-2 s, three retries.
fn settings() -> TyphoonSettings {
    TyphoonSettings {
        min_next_in: 1_000,
        max_next_in: 2_000,
        default_rtt: 200,
        min_rtt: 100,
        max_rtt: 500,
        min_timeout: 1_000,
        max_timeout: 3_000,
        default_timeout: 2_000,
        max_retries: 3,
        ..TyphoonSettings::default()
    }
}

fn key() -> ServerKey {
    ServerKey::generate(&mut StdRng::seed_from_u64(5))
}

async fn listener(max_sessions: usize) -> TyphoonListener {
    let admit = Arc::new(|t: &[u8]| match t {
        b"alice-token" => Some("alice".to_string()),
        b"bob-token" => Some("bob".to_string()),
        _ => None,
    });
    TyphoonListener::bind_capped("127.0.0.1:0", key(), admit, settings(), max_sessions)
        .await
        .unwrap()
}

async fn accept(l: &mut TyphoonListener) -> Accepted {
    tokio::time::timeout(Duration::from_secs(30), l.accept())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_fill_the_table_against_another() {
    let mut l = listener(2).await;
    let addr = l.local_addr().to_string();
    let s = settings();
    let pk = *key().public();
    // alice holds every place, each past its server INIT.
    let a1 = connect(&addr, &pk, b"alice-token", &s).await.unwrap();
    let mut first = accept(&mut l).await;
    let _a2 = connect(&addr, &pk, b"alice-token", &s).await.unwrap();
    let _second = accept(&mut l).await;
    // bob still gets in, in the place of alice's oldest session.
    let bob = tokio::time::timeout(
        Duration::from_secs(60),
        connect(&addr, &pk, b"bob-token", &s),
    )
    .await
    .unwrap();
    assert!(bob.is_ok(), "bob was refused: {bob:?}");
    assert_eq!(accept(&mut l).await.name, "bob");
    assert!(first.session.reader.recv().await.is_err());
    drop(a1);
}

fn rng(seed: u64) -> Random {
    Box::new(StdRng::seed_from_u64(seed))
}

/// Sends what the engine has ready, reads until it is established.
async fn handshake(sock: &UdpSocket, e: &mut Engine, clock: &tokio::time::Instant) {
    let mut buf = vec![0u8; 70_000];
    while let Some(d) = e.poll_transmit() {
        sock.send(&d).await.unwrap();
    }
    while !e.is_established() {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        e.handle_datagram(clock.elapsed().as_millis() as u64, &buf[..n]);
    }
    assert!(matches!(e.poll_event(), Some(Event::Connected { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_with_another_token_does_not_replace_a_clients_session() {
    let mut l = listener(16).await;
    let pk = *key().public();
    let (sock, mut alice, mut served) = raw_client(&mut l, b"alice-token", 1).await;
    assert_eq!(served.name, "alice");
    // bob (or anyone holding a token) sends an INIT from alice's address.
    let mut bob = Engine::client(settings(), pk, b"bob-token", rng(2), 0).unwrap();
    sock.send(&bob.poll_transmit().unwrap()).await.unwrap();
    // Datagrams from one socket are read in order: alice's data comes
    // after bob's INIT, and reaches her session only if it still stands.
    alice.send(0, b"still alice").unwrap();
    sock.send(&alice.poll_transmit().unwrap()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), served.session.reader.recv())
        .await
        .unwrap();
    assert_eq!(got, Ok(Some(b"still alice".to_vec())));
}

/// A raw client on its own socket, established, and its served session.
async fn raw_client(
    l: &mut TyphoonListener,
    token: &[u8],
    seed: u64,
) -> (UdpSocket, Engine, Accepted) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(l.local_addr()).await.unwrap();
    let clock = tokio::time::Instant::now();
    let mut e = Engine::client(settings(), *key().public(), token, rng(seed), 0).unwrap();
    handshake(&sock, &mut e, &clock).await;
    let served = accept(l).await;
    (sock, e, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_does_not_read_holds_a_bounded_number_of_bytes() {
    let mut l = listener(16).await;
    let (sock, mut alice, mut served) = raw_client(&mut l, b"alice-token", 1).await;
    let (bob_sock, mut bob, mut bob_served) = raw_client(&mut l, b"bob-token", 2).await;
    let msg = vec![7u8; 60_000];
    for _ in 0..40 {
        alice.send(0, &msg).unwrap();
        sock.send(&alice.poll_transmit().unwrap()).await.unwrap();
        // Paced so that the socket's buffer does not drop them first.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // On loopback a datagram is in the listener's buffer when `send`
    // returns: bob's, sent now, is read after every one of alice's.
    bob.send(0, b"after the flood").unwrap();
    bob_sock.send(&bob.poll_transmit().unwrap()).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), bob_served.session.reader.recv()).await;
    assert_eq!(m.unwrap(), Ok(Some(b"after the flood".to_vec())));
    // Only what is queued now: nothing more comes.
    let mut held = 0;
    while let Ok(Ok(Some(m))) =
        tokio::time::timeout(Duration::from_millis(200), served.session.reader.recv()).await
    {
        held += m.len();
    }
    assert!(held > 0, "nothing arrived");
    assert!(
        held <= cipherlink_typhoon::driver::INBOX_BYTES,
        "{held} bytes held for an owner that did not read"
    );
}
