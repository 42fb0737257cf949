//! A link UDP server end under one token holder's sessions: the link's
//! token-fair admission (docs/link-protocol.md §11.6) must hold at the
//! proxy's own bound on sessions, or one token locks the others out.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use cipherlink_link::dgram::driver;
use cipherlink_link::{ClientConfig, LinkParams, ServerKey, TokenStore};
use cipherlink_proxy::udp::{header, UdpService};
use cipherlink_proxy::{LinkConfig, Role, ServiceConfig, Transport};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Generous: only stops a hung test.
const DEADLINE: Duration = Duration::from_secs(60);
/// The sessions a server end holds with a small `max_flows`.
const SESSIONS: usize = 1024;

async fn echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_holding_every_link_session_does_not_lock_another_token_out() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let dir = tempfile::tempdir().unwrap();
    let key = ServerKey::generate(&mut rng);
    let mut store = TokenStore::new();
    let alice = store.issue("alice", &mut rng).unwrap();
    let bob = store.issue("bob", &mut rng).unwrap();
    for (name, text) in [
        ("server.key", key.to_text()),
        ("tokens.txt", store.to_text()),
    ] {
        write_private(&dir.path().join(name), &text);
    }
    let mut config = ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        echo().await.to_string(),
        Transport::Link,
    );
    config.udp = true;
    config.max_flows = 16;
    config.link = Some(LinkConfig {
        server_key: Some(dir.path().join("server.key")),
        token_store: Some(dir.path().join("tokens.txt")),
        connection_file: None,
    });
    let service = UdpService::bind("server", &config).await.unwrap();
    let server = service.local_addr().to_string();
    let stats = service.stats();
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(service.run(stopped, None));
    let client = |token, name: &str| ClientConfig {
        server_key: *key.public(),
        token,
        name: name.into(),
        params: LinkParams::default(),
    };
    // Alice takes every session the server end holds.
    let mut held = Vec::new();
    for _ in 0..SESSIONS / 32 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (server, alice) = (server.clone(), client(alice.clone(), "alice"));
            batch.spawn(async move { driver::connect(&server, alice).await.unwrap() });
        }
        held.extend(batch.join_all().await);
    }
    let start = tokio::time::Instant::now();
    while stats.snapshot().sessions < SESSIONS {
        assert!(start.elapsed() < DEADLINE, "{:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Bob's session still carries his datagrams.
    let mut bob = driver::connect(&server, client(bob, "bob")).await.unwrap();
    let hello = header::encode(1, b"bob");
    loop {
        if let Err(e) = bob.writer.send(&hello).await {
            panic!("bob is locked out: {e}; {:?}", stats.snapshot());
        }
        if let Ok(reply) = tokio::time::timeout(Duration::from_secs(1), bob.reader.recv()).await {
            assert_eq!(reply.unwrap().as_deref(), Some(&hello[..]));
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "bob is locked out: {:?}",
            stats.snapshot()
        );
    }
    drop(held);
}
