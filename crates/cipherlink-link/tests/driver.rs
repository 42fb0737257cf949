//! The tokio driver over real TCP on 127.0.0.1.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_link::driver::{connect, LinkListener};
use cipherlink_link::{Error, KeepaliveConfig, LinkParams};
use common::{params_fast, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn echo_server(world: &World) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let mut listener = LinkListener::bind("127.0.0.1:0", world.endpoint.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let task = tokio::spawn(async move {
        while let Some(link) = listener.accept().await {
            tokio::spawn(async move {
                assert_eq!(link.peer(), "alice");
                let (mut r, mut w) = tokio::io::split(link);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, task)
}

async fn echo_once(addr: std::net::SocketAddr, world: &World, data: &[u8]) -> Vec<u8> {
    let link = connect(addr, &world.client_cfg(&world.alice))
        .await
        .unwrap();
    let (mut r, mut w) = tokio::io::split(link);
    let owned = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&owned).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trips_over_tcp() {
    let world = World::new(params_fast());
    let (addr, _server) = echo_server(&world).await;
    for n in [0usize, 1, 64 * 1024, 16 * 1024 * 1024] {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let got = echo_once(addr, &world, &data).await;
        assert!(got == data, "{n} bytes: got {}", got.len());
    }
}

/// `write_all_and_close`: every byte arrives, in order, followed by a clean
/// end of stream; a reply smaller than the send buffer and one many times
/// larger (which must go out in several writes before the close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_all_and_close_delivers_everything_then_a_clean_end() {
    let world = World::new(params_fast());
    let mut listener = LinkListener::bind("127.0.0.1:0", world.endpoint.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 249) as u8).collect();
    let replies = [b"PONG".to_vec(), big];
    let served = replies.clone();
    let server = tokio::spawn(async move {
        for reply in served {
            let mut link = listener.accept().await.unwrap();
            link.write_all_and_close(&reply).await.unwrap();
            // The peer's close, so that nothing it sent is reset.
            let mut rest = Vec::new();
            link.read_to_end(&mut rest).await.unwrap();
        }
    });
    for reply in &replies {
        let mut link = connect(addr, &world.client_cfg(&world.alice))
            .await
            .unwrap();
        let mut got = Vec::new();
        link.read_to_end(&mut got).await.unwrap();
        assert!(
            got == *reply,
            "{} bytes sent, {} read",
            reply.len(),
            got.len()
        );
        link.shutdown().await.unwrap();
        // Writing after the close is refused, naming the peer.
        let after = link.write_all_and_close(b"late").await.unwrap_err();
        assert!(after.to_string().contains("closed for writing"), "{after}");
    }
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_links_to_one_server() {
    let world = std::sync::Arc::new(World::new(params_fast()));
    let (addr, _server) = echo_server(&world).await;
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            let msg = format!("link {i}").into_bytes();
            let got = echo_once(addr, &world, &msg).await;
            assert_eq!(got, msg);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_over_tcp() {
    let world = World::new(params_fast());
    let (addr, _server) = echo_server(&world).await;
    let err = connect(addr, &world.client_cfg(&world.mallory))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cipherlink_link::driver::DriverError::Link(Error::Refused)
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn random_bytes_and_replayed_handshakes_get_no_reply_over_tcp() {
    let world = World::new(params_fast());
    let (addr, _server) = echo_server(&world).await;
    // Random bytes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    s.write_all(&noise).await.unwrap();
    let mut got = Vec::new();
    // The server closes at a random time without a byte (the paused clock runs it forward).
    let _ = s.read_to_end(&mut got).await;
    assert!(
        got.is_empty(),
        "server answered noise with {} bytes",
        got.len()
    );

    // A genuine first message, captured, then replayed.
    let mut client = cipherlink_link::Connection::client(
        &world.client_cfg(&world.alice),
        common::rng(77),
        tokio::time::Instant::now().into_std(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(&msg1).await.unwrap();
    let mut reply = vec![0u8; 34];
    first.read_exact(&mut reply).await.unwrap();
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(&msg1).await.unwrap();
    let mut got = Vec::new();
    let _ = again.read_to_end(&mut got).await;
    assert!(
        got.is_empty(),
        "server answered a replay with {} bytes",
        got.len()
    );
}

#[tokio::test(start_paused = true)]
async fn silent_peer_over_tcp_ends_the_link_with_peer_gone() {
    let params = LinkParams {
        keepalive: KeepaliveConfig {
            min_next_in: Duration::from_secs(8),
            max_next_in: Duration::from_secs(32),
            min_timeout: Duration::from_secs(16),
            max_timeout: Duration::from_secs(32),
            default_timeout: Duration::from_secs(24),
            max_retries: 5,
        },
        ..params_fast()
    };
    let world = World::new(params);
    let mut listener = LinkListener::bind("127.0.0.1:0", world.endpoint.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    // A client that completes the handshake through the core, then goes silent
    // (keeps the socket open, reads nothing, answers nothing).
    let now = tokio::time::Instant::now().into_std();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut client = cipherlink_link::Connection::client(
        &world.client_cfg(&world.alice),
        common::rng(5),
        now,
        unix,
    )
    .unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    s.write_all(&out).await.unwrap();
    let mut link = listener.accept().await.unwrap();
    assert_eq!(link.peer(), "alice");
    let reason = link.closed().await;
    assert_eq!(reason, Some(Error::PeerGone { retries: 5 }));
    let mut buf = [0u8; 8];
    let err = link.read(&mut buf).await.unwrap_err();
    assert!(err.to_string().contains("peer gone"), "{err}");
    drop(s);
}

/// Reads until the server closes: the bytes, or the error (an RST).
async fn until_closed(mut s: TcpStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.map(|_| got)
}

/// Over real sockets, every kind of probe (nothing, 1-49 bytes, 50 and
/// more, 16,500, a replayed first message, one with byte 0 or bytes 0-7
/// changed) sees the same end: no byte, then a FIN (end of file, not a
/// reset), no earlier than the configured close time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_gets_no_byte_then_a_fin_at_the_close_time() {
    let close = Duration::from_millis(400);
    let world = World::new(LinkParams {
        server_close_window: (close, close),
        ..params_fast()
    });
    let mut kinds = common::probe_kinds(&world);
    let (addr, _server) = echo_server(&world).await;
    // A first message answered over TCP (at today's time), then replayed.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut client = cipherlink_link::Connection::client(
        &world.client_cfg(&world.alice),
        common::rng(88),
        std::time::Instant::now(),
        unix,
    )
    .unwrap();
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(&msg1).await.unwrap();
    let mut reply = vec![0u8; 34];
    first.read_exact(&mut reply).await.unwrap();
    kinds.push((
        "a first message answered over TCP, replayed".into(),
        msg1.clone(),
    ));
    let mut b0 = msg1.clone();
    b0[0] ^= 0x80;
    kinds.push(("that replay with byte 0 changed".into(), b0));
    let mut b07 = msg1;
    b07[..8].iter_mut().for_each(|b| *b = !*b);
    kinds.push(("that replay with bytes 0-7 changed".into(), b07));
    // The threshold the old policy had: 50 bytes, then 16,385 more later.
    let noise: Vec<u8> = (0..50 + 16_385u32).map(|i| (i * 7 + 3) as u8).collect();
    kinds.push(("50 bytes, then 16,385 more".into(), noise));
    let mut tasks = Vec::new();
    for (kind, bytes) in kinds {
        tasks.push(tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut s = TcpStream::connect(addr).await.unwrap();
            if kind.starts_with("50 bytes, then") {
                s.write_all(&bytes[..50]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.write_all(&bytes[50..]).await.unwrap();
            } else if !bytes.is_empty() {
                s.write_all(&bytes).await.unwrap();
            }
            let end = tokio::time::timeout(Duration::from_secs(60), until_closed(s))
                .await
                .unwrap_or_else(|_| panic!("{kind}: not closed within 60 s"));
            let took = start.elapsed();
            match end {
                Ok(got) => assert!(got.is_empty(), "{kind}: answered {} bytes", got.len()),
                Err(e) => panic!("{kind}: {e} (a reset, not a FIN)"),
            }
            assert!(
                took >= close,
                "{kind}: closed after {took:?}, before {close:?}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// More silent sockets than the admission caps (per address and in all):
/// the oldest are closed like probes (no byte, a FIN), the table never
/// holds more than the cap, and a real client still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_over_the_cap_do_not_keep_a_client_out() {
    use cipherlink_link::gate::ServerLimits;
    // Long enough that only an eviction closes a silent socket in this test.
    let world = World::new(LinkParams {
        server_close_window: (Duration::from_secs(3600), Duration::from_secs(3600)),
        ..params_fast()
    });
    let limits = ServerLimits {
        max_unauthenticated: 4,
        max_unauthenticated_per_ip: 2,
        ..ServerLimits::default()
    };
    let mut listener = LinkListener::bind_with("127.0.0.1:0", world.endpoint.clone(), limits)
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(async move {
        while let Some(link) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(link);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    // 12 silent sockets from 6 source addresses, 2 each, oldest first.
    let mut silent = Vec::new();
    for i in 0..12u8 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(std::net::SocketAddr::from(([127, 0, 0, 2 + i / 2], 0)))
            .unwrap();
        silent.push(sock.connect(addr).await.unwrap());
        // Accepted in this order (the accept loop is one task).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = echo_once(addr, &world, b"still served").await;
    assert_eq!(got, b"still served");
    // The 8 oldest were evicted to keep 4: each sees a FIN and no byte.
    for (i, s) in silent.drain(..8).enumerate() {
        let end = tokio::time::timeout(Duration::from_secs(30), until_closed(s))
            .await
            .unwrap_or_else(|_| panic!("silent socket {i} still open"));
        assert_eq!(end.unwrap(), b"", "silent socket {i}");
    }
}
