//! What a listener holds for sockets that are not links (docs §6), over
//! real sockets: handshake slots bounded by the admission caps, one
//! descriptor budget for handshaking, probing and lingering sockets, the
//! linger after a FIN, and the client's own time limit.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_link::driver::{connect, LinkListener};
use cipherlink_link::gate::ServerLimits;
use cipherlink_link::{Connection, EndpointOptions, Error, LinkParams, ServerEndpoint};
use common::{params_fast, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Probes stay silent for an hour: only an eviction or the peer closes them.
fn params_slow_close() -> LinkParams {
    LinkParams {
        server_close_window: (Duration::from_secs(3600), Duration::from_secs(3600)),
        ..params_fast()
    }
}

fn endpoint(world: &World, max_handshakes: usize) -> Arc<ServerEndpoint> {
    let mut store = cipherlink_link::TokenStore::new();
    store.add("alice", world.alice.clone()).unwrap();
    let options = EndpointOptions {
        max_handshakes,
        private_replay: true,
        ..EndpointOptions::default()
    };
    Arc::new(
        ServerEndpoint::with_options(world.key.clone(), store, world.params.clone(), options)
            .unwrap(),
    )
}

/// An echo server on `endpoint` with `limits`.
async fn serve(endpoint: Arc<ServerEndpoint>, limits: ServerLimits) -> SocketAddr {
    let mut listener = LinkListener::bind_with("127.0.0.1:0", endpoint, limits)
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
    addr
}

/// A fresh first message for the server's clock (today's hour window).
fn first_message(world: &World, seed: u64) -> Vec<u8> {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = Connection::client(
        &world.client_cfg(&world.alice),
        common::rng(seed),
        std::time::Instant::now(),
        unix,
    )
    .unwrap();
    let mut m = Vec::new();
    c.poll_transmit(&mut m);
    m
}

async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((ip, 0))).unwrap();
    sock.connect(addr).await.unwrap()
}

/// A real client connects within 20 s and echoes.
async fn real_client_gets_in(addr: SocketAddr, world: &World) {
    let mut cfg = world.client_cfg(&world.alice);
    cfg.params.handshake_timeout = Duration::from_secs(20);
    let link = connect(addr, &cfg)
        .await
        .unwrap_or_else(|e| panic!("a real client was kept out: {e}"));
    let (mut r, mut w) = tokio::io::split(link);
    w.write_all(b"in").await.unwrap();
    w.shutdown().await.unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"in");
}

/// The red-team PoC over TCP: one recorded 50-byte header, sent on many
/// sockets, used to take every handshake slot (its mark went into the
/// replay filter only once a whole message decrypted), and a real client
/// then found none. Now one header holds one slot at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recorded_header_on_many_sockets_leaves_a_real_client_a_slot() {
    let world = World::new(params_slow_close());
    let endpoint = endpoint(&world, 8);
    let limits = ServerLimits {
        max_unauthenticated: 256,
        max_unauthenticated_per_ip: 256,
        ..ServerLimits::default()
    };
    let addr = serve(endpoint.clone(), limits).await;
    let header = first_message(&world, 1)[..50].to_vec();
    let mut copies = Vec::new();
    for i in 0..32u8 {
        let mut s = connect_from([127, 0, 1, i], addr).await;
        s.write_all(&header).await.unwrap();
        copies.push(s);
    }
    // Let the server read them all before the real client comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(endpoint.handshakes_in_progress() <= 1);
    real_client_gets_in(addr, &world).await;
}

/// First messages whose MAC verified stay under the per-address cap until
/// they are complete: from one address, the oldest of them are evicted
/// (closed: no byte, a FIN) and give their handshake slots back, so one
/// holder of `S` cannot hold more slots than its address's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_no_more_handshakes_than_its_admission_cap() {
    let world = World::new(params_slow_close());
    let endpoint = endpoint(&world, 4096);
    let limits = ServerLimits {
        max_unauthenticated: 64,
        max_unauthenticated_per_ip: 2,
        ..ServerLimits::default()
    };
    let addr = serve(endpoint.clone(), limits).await;
    let mut started = Vec::new();
    for i in 0..10u64 {
        let mut s = connect_from([127, 0, 0, 3], addr).await;
        // A genuine header and a little more, never the whole message.
        s.write_all(&first_message(&world, 100 + i)[..100])
            .await
            .unwrap();
        started.push(s);
        // Read by the server (and past its MAC) before the next arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, mut s) in started.drain(..8).enumerate() {
        let mut got = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("handshake {i} from one address was never evicted"));
        end.unwrap();
        assert!(
            got.is_empty(),
            "handshake {i}: answered {} bytes",
            got.len()
        );
    }
    assert!(endpoint.handshakes_in_progress() <= 2);
    real_client_gets_in(addr, &world).await;
}

/// Server-side sockets of the listener on `port` that hold a descriptor
/// in this process (inode 0: closed, only the kernel's TIME_WAIT or
/// FIN_WAIT record is left).
fn server_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            let listening = f[3] == "0A";
            u16::from_str_radix(local_port, 16).unwrap() == port && !listening && f[9] != "0"
        })
        .count()
}

/// More silent sockets than the descriptor budget: the evicted ones are
/// closed at once (a fixed 5 s linger used to keep them open outside any
/// count), so the server never holds more sockets that are not links than
/// the budget, and a real client still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_past_the_budget_hold_no_more_descriptors_than_it() {
    let world = World::new(params_slow_close());
    let limits = ServerLimits {
        max_unauthenticated: 8,
        max_unauthenticated_per_ip: 8,
        linger: (Duration::from_secs(60), Duration::from_secs(60)),
        ..ServerLimits::default()
    };
    let addr = serve(world.endpoint.clone(), limits).await;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // The 32 oldest were evicted: each sees the server's FIN.
    for (i, s) in silent.iter_mut().take(32).enumerate() {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("silent socket {i} was not evicted"))
            .unwrap();
        assert_eq!(n, 0, "silent socket {i} was answered");
    }
    // Each evicted socket's descriptor is closed as soon as its task runs.
    let mut held = server_sockets(addr.port());
    for _ in 0..10 {
        if held <= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = server_sockets(addr.port());
    }
    assert!(
        held <= 8,
        "the server holds {held} sockets that are not links"
    );
    real_client_gets_in(addr, &world).await;
    drop(silent);
}

/// After a probe's FIN the server keeps reading until the peer closes (or
/// its drawn linger, 15-45 s by default): a byte sent 6 s after the FIN is
/// read and dropped, not answered with a reset (a fixed 5 s linger was
/// visible to any prober that way), and the peer's own close ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_after_the_servers_fin_gets_no_reset_while_it_lingers() {
    let close = Duration::from_millis(300);
    let world = World::new(LinkParams {
        server_close_window: (close, close),
        ..params_fast()
    });
    let addr = serve(world.endpoint.clone(), ServerLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"not a first message").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the probe was answered");
    tokio::time::sleep(Duration::from_secs(6)).await;
    s.write_all(b"x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A reset shows as the socket's error (reads return the end of stream
    // after the FIN either way).
    assert!(s.take_error().unwrap().is_none(), "a reset after the FIN");
    s.write_all(b"y").await.expect("a reset after the FIN");
    s.shutdown().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(end.unwrap(), 0, "a reset after the FIN");
}

/// `connect` is bounded by the handshake timeout even when the TCP
/// connect itself never completes (a server whose accept queue is full
/// drops the SYN, and the system would retry it for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_bounded_when_the_tcp_connect_never_completes() {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted): the next SYN is dropped.
    let mut queued = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(s) => queued.push(s.unwrap()),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let world = World::new(LinkParams {
        handshake_timeout: Duration::from_secs(1),
        ..params_fast()
    });
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        connect(addr, &world.client_cfg(&world.alice)),
    )
    .await
    .expect("connect outlived its handshake timeout by far");
    let err = result.expect_err("connected to a server that never accepts");
    assert!(
        matches!(
            err,
            cipherlink_link::driver::DriverError::Link(Error::HandshakeTimeout)
        ),
        "{err}"
    );
    drop(listener);
}

/// Links the application has not taken wait in a queue of 128, and
/// `max_waiting_links` more for a while; a link past those is closed with
/// "server busy" instead of waiting in a task of its own (those held a
/// socket each, with nothing to bound them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_the_application_does_not_take_are_bounded() {
    const LINKS: usize = 200;
    const WAITING: usize = 8;
    const QUEUE: usize = 128 + WAITING;
    let world = World::new(params_fast());
    let limits = ServerLimits {
        max_waiting_links: WAITING,
        ..ServerLimits::default()
    };
    // Bound, never accepted from.
    let listener = LinkListener::bind_with("127.0.0.1:0", world.endpoint.clone(), limits)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let cfg = world.client_cfg(&world.alice);
    let mut links = Vec::new();
    for _ in 0..LINKS {
        links.push(connect(addr, &cfg).await.unwrap());
    }
    let mut held = server_sockets(addr.port());
    for _ in 0..50 {
        if held <= QUEUE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = server_sockets(addr.port());
    }
    assert!(held <= QUEUE, "the server holds {held} links nobody took");
    // The last one found the queue full: its reads fail naming the reason.
    let mut last = links.pop().unwrap();
    let mut buf = [0u8; 8];
    let err = tokio::time::timeout(Duration::from_secs(20), last.read(&mut buf))
        .await
        .expect("the busy server never closed the link")
        .expect_err("a link past the queue read data");
    assert!(err.to_string().contains("server busy"), "{err}");
    drop(listener);
}
