//! UDP services in one process: a plain pair in front of an echo service,
//! floods of flows and of source addresses that must stay within
//! `max_flows` (flows, sessions and descriptors), and datagrams too large
//! for the transport, dropped and counted in both directions.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_proxy::udp::{header, UdpService, UdpSnapshot, UdpStats};
use cipherlink_proxy::{Role, ServiceConfig, Transport};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Generous: only stops a hung test.
const DEADLINE: Duration = Duration::from_secs(30);
/// Asking the echo service for this gets a datagram of [`BIG`] bytes.
const ASK_BIG: &[u8] = b"send me a big one";
/// One byte more than a plain message holds with the flow header.
const BIG: usize = cipherlink_proxy::udp::MAX_UDP_PAYLOAD - header::HEADER_LEN + 1;

/// A UDP echo service (with one large answer on request).
async fn echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let reply = if &buf[..n] == ASK_BIG {
                vec![7u8; BIG]
            } else {
                buf[..n].to_vec()
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

fn udp(role: Role, connect: SocketAddr, max_flows: usize) -> ServiceConfig {
    let mut c = ServiceConfig::new(role, "127.0.0.1:0", connect.to_string(), Transport::Plain);
    c.udp = true;
    c.max_flows = max_flows;
    c
}

/// Binds and runs `config`; its address and counters. Runs until the
/// returned sender is dropped.
async fn start(
    name: &str,
    config: ServiceConfig,
) -> (SocketAddr, Arc<UdpStats>, watch::Sender<bool>) {
    let service = UdpService::bind(name, &config).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let addr = service.local_addr();
    let stats = service.stats();
    tokio::spawn(service.run(stopped, None));
    (addr, stats, stop)
}

struct Pair {
    client: SocketAddr,
    client_stats: Arc<UdpStats>,
    server: SocketAddr,
    server_stats: Arc<UdpStats>,
    _stops: [watch::Sender<bool>; 2],
}

async fn pair(max_flows: usize) -> Pair {
    let service = echo().await;
    let (server, server_stats, s1) = start("server", udp(Role::Server, service, max_flows)).await;
    let (client, client_stats, s2) = start("client", udp(Role::Client, server, max_flows)).await;
    Pair {
        client,
        client_stats,
        server,
        server_stats,
        _stops: [s1, s2],
    }
}

/// Sends `data` from `socket` to `to` until an answer comes (UDP may lose
/// one), and returns it.
async fn ask(socket: &UdpSocket, to: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65_536];
    let start = tokio::time::Instant::now();
    loop {
        socket.send_to(data, to).await.unwrap();
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            return buf[..r.unwrap()].to_vec();
        }
        assert!(start.elapsed() < DEADLINE, "no answer from {to}");
    }
}

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Waits until `done` holds for the counters (a deadline only stops a hang).
async fn until(stats: &UdpStats, done: impl Fn(&UdpSnapshot) -> bool) -> UdpSnapshot {
    let start = tokio::time::Instant::now();
    loop {
        let s = stats.snapshot();
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < DEADLINE, "counters stuck at {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Descriptors open in this process, once the tasks of evicted flows
/// (aborted, dropped at their next turn) have had their turn.
async fn open_descriptors() -> usize {
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn a_plain_pair_returns_each_flow_its_own_replies() {
    let p = pair(16).await;
    let (a, b) = (socket().await, socket().await);
    for round in 0..3 {
        assert_eq!(
            ask(&a, p.client, format!("a{round}").as_bytes()).await,
            format!("a{round}").as_bytes()
        );
        assert_eq!(
            ask(&b, p.client, format!("b{round}").as_bytes()).await,
            format!("b{round}").as_bytes()
        );
    }
    let s = p.client_stats.snapshot();
    assert_eq!((s.flows, s.opened, s.sessions), (2, 2, 1), "{s:?}");
    assert!(s.up >= 6 && s.down >= 6, "{s:?}");
    let s = p.server_stats.snapshot();
    assert_eq!((s.flows, s.sessions), (2, 1), "{s:?}");
    // Each datagram went through at the first try, a new flow's first too
    // (a fresh socket the reactor has not seen writable yet).
    assert_eq!((s.up, s.queue_full, s.errors), (6, 0, 0), "{s:?}");
}

#[tokio::test]
async fn a_flood_of_source_addresses_holds_at_most_max_flows() {
    const CAP: usize = 8;
    let p = pair(CAP).await;
    let before = open_descriptors().await;
    for i in 0..100u32 {
        // A new source address (port) each time: a new flow at both ends.
        let s = socket().await;
        let data = i.to_be_bytes();
        assert_eq!(ask(&s, p.client, &data).await, data);
        assert!(p.client_stats.snapshot().flows <= CAP);
        assert!(p.server_stats.snapshot().flows <= CAP);
        // Each flow of the server end is a socket: they are closed with it.
        assert!(
            open_descriptors().await <= before + CAP + 2,
            "descriptors grow"
        );
    }
    let c = p.client_stats.snapshot();
    assert_eq!(
        (c.flows, c.opened, c.evicted),
        (CAP, 100, 100 - CAP as u64),
        "{c:?}"
    );
    let s = p.server_stats.snapshot();
    assert_eq!(s.flows, CAP, "{s:?}");
    assert!(s.evicted >= 100 - CAP as u64, "{s:?}");
}

#[tokio::test]
async fn a_flood_of_flow_ids_at_a_plain_server_end_holds_at_most_max_flows() {
    const CAP: usize = 16;
    let service = echo().await;
    let (server, stats, _stop) = start("server", udp(Role::Server, service, CAP)).await;
    let before = open_descriptors().await;
    let attacker = socket().await;
    for flow in 0..2_000u32 {
        let _ = attacker.send_to(&header::encode(flow, b"x"), server).await;
        // Garbage too: no header, an unknown kind.
        let _ = attacker.send_to(&[1, 2], server).await;
        let _ = attacker.send_to(&[9, 0, 0, 0, 0, 1], server).await;
        if flow % 100 == 0 {
            assert!(stats.snapshot().flows <= CAP);
            assert!(
                open_descriptors().await <= before + CAP + 2,
                "descriptors grow"
            );
        }
    }
    // The last comes back on its flow (after the earlier flows' echoes):
    // everything before it was taken.
    let last = header::encode(99_999, b"last");
    let mut buf = vec![0u8; 65_536];
    let start = tokio::time::Instant::now();
    'asking: loop {
        attacker.send_to(&last, server).await.unwrap();
        while let Ok(n) =
            tokio::time::timeout(Duration::from_secs(1), attacker.recv(&mut buf)).await
        {
            if buf[..n.unwrap()] == last[..] {
                break 'asking;
            }
        }
        assert!(start.elapsed() < DEADLINE, "no answer on flow 99999");
    }
    let s = until(&stats, |s| s.malformed > 0).await;
    assert_eq!(s.flows, CAP, "{s:?}");
    assert_eq!(s.evicted, s.opened - CAP as u64, "{s:?}");
    assert!(s.opened > CAP as u64 * 4, "{s:?}");
}

#[tokio::test]
async fn a_flood_of_source_addresses_at_a_plain_server_end_holds_at_most_max_flows_sessions() {
    const CAP: usize = 4;
    let service = echo().await;
    let (server, stats, _stop) = start("server", udp(Role::Server, service, CAP)).await;
    let mut held = Vec::new();
    for i in 0..40u32 {
        let s = socket().await;
        let answer = ask(&s, server, &header::encode(1, &i.to_be_bytes())).await;
        assert_eq!(header::decode(&answer).unwrap(), (1, &i.to_be_bytes()[..]));
        held.push(s);
    }
    // Each evicted address's session ends, with its flows.
    let s = until(&stats, |s| s.sessions <= CAP).await;
    assert!(s.flows <= CAP, "{s:?}");
    assert_eq!(s.opened, 40, "{s:?}");
}

#[tokio::test]
async fn a_datagram_too_large_for_the_transport_is_dropped_and_counted_both_ways() {
    let p = pair(16).await;
    let app = socket().await;
    // Up: the client end drops it and says so; nothing reaches the server end.
    app.send_to(&vec![1u8; BIG], p.client).await.unwrap();
    let c = until(&p.client_stats, |s| s.too_large == 1).await;
    assert_eq!((c.up, c.opened), (0, 0), "{c:?}");
    assert_eq!(ask(&app, p.client, b"small").await, b"small");
    // One byte less fits.
    let fits = vec![2u8; BIG - 1];
    assert_eq!(ask(&app, p.client, &fits).await, fits);
    // Down: the service's answer is too large for the way back.
    app.send_to(ASK_BIG, p.client).await.unwrap();
    let s = until(&p.server_stats, |s| s.too_large == 1).await;
    assert_eq!(s.down, 2, "{s:?}");
    assert_eq!(ask(&app, p.client, b"after").await, b"after");
    let _ = p.server;
}

#[tokio::test]
async fn a_flood_of_flow_ids_from_one_session_leaves_another_sessions_flow_alone() {
    const CAP: usize = 8;
    let service = echo().await;
    let (server, stats, _stop) = start("server", udp(Role::Server, service, CAP)).await;
    // Two plain sessions (two source addresses): the victim's flow first.
    let victim = socket().await;
    let hello = header::encode(7, b"victim");
    assert_eq!(ask(&victim, server, &hello).await, hello);
    let attacker = socket().await;
    for flow in 0..200u32 {
        let _ = attacker.send_to(&header::encode(flow, b"x"), server).await;
    }
    // Its last flow's echo: every datagram before it was taken.
    let last = header::encode(99_999, b"last");
    let mut buf = vec![0u8; 65_536];
    let start = tokio::time::Instant::now();
    'asking: loop {
        attacker.send_to(&last, server).await.unwrap();
        while let Ok(n) =
            tokio::time::timeout(Duration::from_secs(1), attacker.recv(&mut buf)).await
        {
            if buf[..n.unwrap()] == last[..] {
                break 'asking;
            }
        }
        assert!(start.elapsed() < DEADLINE, "no answer on flow 99999");
    }
    let flooded = stats.snapshot();
    assert!(flooded.evicted > 0, "{flooded:?}");
    // The victim's flow is still there: no new socket for it.
    assert_eq!(ask(&victim, server, &hello).await, hello);
    let s = stats.snapshot();
    assert_eq!(
        s.opened, flooded.opened,
        "the victim's flow was evicted: {s:?}"
    );
    assert_eq!(s.flows, CAP, "{s:?}");
}
