//! What a network peer can do to the driver: fill the listener with silent
//! sockets, replay a recorded INIT, trickle a message, outlive its token's
//! revocation; and that no token reaches a `Debug` line.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cipherlink_port::decode::ServerInitDecoder;
use cipherlink_port::driver::{connect, Accepted, PendingLimits, PortListener};

/// Caps small enough to fill from one test process's descriptors.
const LIMITS: PendingLimits = PendingLimits {
    total: 256,
    per_group: 64,
};
const MAX_PENDING: usize = LIMITS.total;
const MAX_PENDING_PER_IP: usize = LIMITS.per_group;
use cipherlink_port::wire::{self, ClientInitRandom};
use cipherlink_port::{Error, PortSettings, PublicKey, ServerKey, SessionKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use zeroize::Zeroizing;

/// A generous bound for "it finished"; never a timing assertion.
const FINISH: Duration = Duration::from_secs(30);

fn settings(timeout_secs: u64) -> PortSettings {
    PortSettings {
        timeout: Duration::from_secs(timeout_secs),
        ..PortSettings::default()
    }
}

/// A listener admitting `alice-token` as "alice" and `bob-token` as "bob",
/// unless `revoked` says alice's was revoked.
async fn listener(
    key: &ServerKey,
    timeout_secs: u64,
    revoked: Arc<AtomicBool>,
) -> (PortListener, SocketAddr) {
    let admit = Arc::new(move |t: &[u8]| match t {
        b"alice-token" if !revoked.load(Ordering::SeqCst) => Some("alice".to_string()),
        b"bob-token" => Some("bob".to_string()),
        _ => None,
    });
    let l = PortListener::bind_with_limits(
        "127.0.0.1:0",
        key.clone(),
        admit,
        settings(timeout_secs),
        LIMITS,
    )
    .await
    .unwrap();
    let addr = l.local_addr();
    (l, addr)
}

fn client_init(server: &PublicKey, token: &[u8]) -> (SessionKey, Vec<u8>) {
    let mut rng = StdRng::from_os_rng();
    let r = ClientInitRandom {
        ephemeral: Zeroizing::new(rng.random()),
        n: rng.random(),
        header_nonce: rng.random(),
        token_nonce: rng.random(),
        tail: vec![7; 10],
    };
    wire::client_init(server, token, 0, 0, &r).unwrap()
}

/// Sends `init` on a first connection; the user port the server INIT names.
async fn first_connection(addr: SocketAddr, key: &SessionKey, init: &[u8]) -> u16 {
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(init).await.unwrap();
    let mut decoder = ServerInitDecoder::new(key.clone());
    let mut buf = [0u8; 1024];
    loop {
        let n = first.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed without a server INIT");
        if let Some(port) = decoder.decode(&mut &buf[..n]).unwrap() {
            return port;
        }
    }
}

/// A TCP connection from `from` that sends nothing.
async fn silent_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    s.connect(to).await.unwrap()
}

async fn accept_name(l: &mut PortListener) -> Accepted {
    tokio::time::timeout(FINISH, l.accept())
        .await
        .expect("an admitted client")
        .expect("the listener runs")
}

#[tokio::test]
async fn silent_sockets_do_not_lock_a_client_out() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(1));
    let (mut l, addr) = listener(&key, 30, Arc::default()).await;
    // As many silent sockets as the listener holds, from several addresses:
    // before, each took a place for PORT_TIMEOUT and the next connection
    // was closed at once, whoever made it.
    let mut silent = Vec::new();
    for i in 0..MAX_PENDING {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
        silent.push(silent_from(from, addr).await);
    }
    let s = tokio::time::timeout(
        FINISH,
        connect(&addr.to_string(), key.public(), b"bob-token", &settings(30)),
    )
    .await
    .expect("connect finished");
    let mut s = s.expect("a client gets in while silent sockets fill the listener");
    let mut a = accept_name(&mut l).await;
    assert_eq!(a.name, "bob");
    s.writer.send(b"hi").await.unwrap();
    assert_eq!(a.session.reader.recv().await.unwrap().unwrap(), b"hi");
    drop(silent);
}

#[tokio::test]
async fn a_flood_from_one_address_does_not_evict_another_addresses_client() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(2));
    let (mut l, addr) = listener(&key, 30, Arc::default()).await;
    let (session, init) = client_init(key.public(), b"alice-token");
    let port = first_connection(addr, &session, &init).await;
    // Its user port waits; one address floods the listener meanwhile.
    let flooder = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let mut silent = Vec::new();
    for _ in 0..MAX_PENDING + MAX_PENDING_PER_IP {
        silent.push(silent_from(flooder, addr).await);
    }
    // The flood's newest sockets are held (its oldest were evicted).
    let mut newest = silent.pop().unwrap();
    let mut oldest = silent.remove(0);
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(FINISH, oldest.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the flood's oldest socket was closed: {r:?}"
    );
    let r = tokio::time::timeout(Duration::from_millis(200), newest.read(&mut b)).await;
    assert!(r.is_err(), "the flood's newest socket is still held: {r:?}");
    let data = TcpStream::connect(SocketAddr::new(addr.ip(), port))
        .await
        .unwrap();
    let a = accept_name(&mut l).await;
    assert_eq!(a.name, "alice");
    assert_eq!(a.session.peer(), data.local_addr().unwrap());
}

#[tokio::test]
async fn a_replayed_client_init_gets_silence() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(3));
    let (_l, addr) = listener(&key, 1, Arc::default()).await;
    let (session, init) = client_init(key.public(), b"alice-token");
    first_connection(addr, &session, &init).await;
    // A recording of that INIT, replayed: before, it got a user port of
    // its own (from anywhere, and the replayer's address may take it).
    let mut replay = TcpStream::connect(addr).await.unwrap();
    replay.write_all(&init).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(FINISH, replay.read_to_end(&mut got))
        .await
        .expect("closed after PORT_TIMEOUT");
    assert!(r.is_ok() || got.is_empty(), "{r:?}");
    assert!(
        got.is_empty(),
        "a replayed INIT got {} bytes of answer",
        got.len()
    );
}

#[tokio::test]
async fn a_token_revoked_while_its_user_port_waits_gets_no_session() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(4));
    let revoked = Arc::new(AtomicBool::new(false));
    let (mut l, addr) = listener(&key, 30, revoked.clone()).await;
    let (session, init) = client_init(key.public(), b"alice-token");
    let port = first_connection(addr, &session, &init).await;
    revoked.store(true, Ordering::SeqCst);
    let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), port))
        .await
        .unwrap();
    // Bob comes next; the first session the application sees must be his.
    let _bob = connect(&addr.to_string(), key.public(), b"bob-token", &settings(30))
        .await
        .unwrap();
    let a = accept_name(&mut l).await;
    assert_eq!(a.name, "bob", "alice's revoked token still got a session");
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(FINISH, data.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "alice's data connection is closed: {r:?}"
    );
}

/// One message sent a byte at a time, each byte just inside PORT_TIMEOUT:
/// the message as a whole must arrive within PORT_TIMEOUT.
#[tokio::test]
async fn a_message_trickled_a_byte_at_a_time_times_out() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(5));
    let (mut l, addr) = listener(&key, 2, Arc::default()).await;
    let (session, init) = client_init(key.public(), b"bob-token");
    let port = first_connection(addr, &session, &init).await;
    let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), port))
        .await
        .unwrap();
    let mut a = accept_name(&mut l).await;
    let msg = wire::data(&session, b"slow", &[1; 24], &[2; 24], &[]).unwrap();
    // Virtual time from here: the byte gaps and the deadline are exact.
    tokio::time::pause();
    let reader = tokio::spawn(async move { a.session.reader.recv().await });
    for &byte in &msg {
        data.write_all(&[byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if reader.is_finished() {
            break;
        }
    }
    let r = reader.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn no_token_in_debug_output() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(6));
    let (mut l, addr) = listener(&key, 30, Arc::default()).await;
    let _s = connect(&addr.to_string(), key.public(), b"bob-token", &settings(30))
        .await
        .unwrap();
    let a = accept_name(&mut l).await;
    let shown = format!("{a:?}");
    // Debug of the bytes b"bob-token" starts with these decimals.
    assert!(!shown.contains("98, 111, 98"), "{shown}");
    assert!(shown.contains("bob"), "the name is shown: {shown}");
    let file = cipherlink_port::ConnectionFile {
        name: "bob".into(),
        server: addr.to_string(),
        server_key: *key.public(),
        token: Zeroizing::new(b"bob-token".to_vec()),
    };
    let shown = format!("{file:?}");
    assert!(!shown.contains("98, 111, 98"), "{shown}");
    assert!(!shown.contains(&hex::encode(b"bob-token")), "{shown}");
}

/// A message whose start arrives with the previous message's last tail byte
/// has a deadline of its own, not what was left of the previous one's.
#[tokio::test]
async fn the_next_message_after_a_slow_tail_gets_its_own_deadline() {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(7));
    let (mut l, addr) = listener(&key, 2, Arc::default()).await;
    let (session, init) = client_init(key.public(), b"bob-token");
    let port = first_connection(addr, &session, &init).await;
    let mut data = TcpStream::connect(SocketAddr::new(addr.ip(), port))
        .await
        .unwrap();
    let mut a = accept_name(&mut l).await;
    let first = wire::data(&session, b"one", &[1; 24], &[2; 24], &[9; 4]).unwrap();
    let second = wire::data(&session, b"two", &[3; 24], &[4; 24], &[]).unwrap();
    tokio::time::pause();
    data.write_all(&first[..first.len() - 1]).await.unwrap();
    assert_eq!(a.session.reader.recv().await.unwrap().unwrap(), b"one");
    let reader = tokio::spawn(async move { a.session.reader.recv().await });
    // Each part well inside PORT_TIMEOUT (2 s) of the wait it ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rest = vec![first[first.len() - 1]];
    rest.extend_from_slice(&second[..10]);
    data.write_all(&rest).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    data.write_all(&second[10..]).await.unwrap();
    let r = reader.await.unwrap();
    assert_eq!(r.unwrap().as_deref(), Some(&b"two"[..]));
}
