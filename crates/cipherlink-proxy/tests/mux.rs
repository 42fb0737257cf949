//! `mux = true` end to end, for tls and link: many tunnels over one
//! connection with every byte checked, half-close, a stalled tunnel that
//! does not hold up the others, a connection killed mid-transfer (its
//! tunnels fail, the next one works on a new connection), a connection
//! whose server vanished silently (the next tunnel fails over to a new
//! one), and a server that refuses streams past max_connections.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cipherlink_proxy::{ServiceConfig, Transport};
use cipherlink_test_support::echo_server;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MUXED: [Transport; 2] = [Transport::Tls, Transport::Link];

fn mux(config: &mut ServiceConfig) {
    config.mux = true;
}

/// A TCP relay between the proxy client and server that counts the
/// connections it carries and can kill them all (RST) at once, or freeze
/// them (forward nothing more, close nothing: a peer that vanished).
struct Middle {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections numbered below this forward nothing more.
    frozen_below: Arc<AtomicUsize>,
}

/// Copies one direction until the connection's number is frozen; then
/// holds both ends without a byte more.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    number: usize,
    frozen_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if number < frozen_below.load(Ordering::SeqCst) {
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Middle {
    async fn start(target: SocketAddr) -> Middle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(Mutex::new(Vec::new()));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (count, tasks, frozen) = (accepted.clone(), live.clone(), frozen_below.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                let task = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    // Dropped by an abort: both sides see a reset.
                    let _ = inbound.set_zero_linger();
                    let _ = outbound.set_zero_linger();
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::join!(
                        forward(in_r, out_w, number, frozen.clone()),
                        forward(out_r, in_w, number, frozen),
                    );
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        Middle {
            addr,
            accepted,
            live,
            frozen_below,
        }
    }

    fn kill_all(&self) {
        self.live.lock().unwrap().drain(..).for_each(|t| t.abort());
    }

    /// Every connection carried so far goes silent; new ones forward.
    fn freeze_all(&self) {
        self.frozen_below.store(self.accepted(), Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A server pair with a [`Middle`] between its two ends.
async fn pair_via_middle(
    material: &Material,
    transport: Transport,
    backend: SocketAddr,
    adjust: impl Fn(&mut ServiceConfig),
) -> (Pair, Middle) {
    let server = Pair::server(material, transport, backend, &adjust).await;
    let middle = Middle::start(server.addr).await;
    let client = Pair::client(material, transport, middle.addr, &adjust).await;
    (Pair { server, client }, middle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tunnels_share_one_connection_every_byte_checked() {
    let material = Material::new();
    let backend = echo_server().await;
    for transport in MUXED {
        let (pair, middle) = pair_via_middle(&material, transport, backend, mux).await;
        many_echoes_counted(&pair, 100, transport).await;
        assert_eq!(
            middle.accepted(),
            1,
            "{transport:?}: one connection for every tunnel"
        );
    }
}

/// Answers only after the client's EOF.
async fn reply_after_eof_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if stream.read_to_end(&mut all).await.is_ok() {
                    let reply = format!("got {} bytes after EOF", all.len());
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn half_close_travels_through_a_muxed_pair() {
    let material = Material::new();
    let backend = reply_after_eof_server().await;
    for transport in MUXED {
        let pair = Pair::start_with(&material, transport, backend, mux).await;
        for len in [0usize, 12_345, 700_000] {
            let back =
                tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, &vec![7u8; len]))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&back),
                format!("got {len} bytes after EOF"),
                "{transport:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_whose_app_never_reads_does_not_stall_the_others() {
    let material = Material::new();
    let backend = echo_server().await;
    for transport in MUXED {
        let pair = Pair::start_with(&material, transport, backend, mux).await;
        // Writes to the echo and never reads the echo back: every buffer on
        // its path fills, and its stream's windows run out.
        let mut stalled = TcpStream::connect(pair.client.addr).await.unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        let writer = tokio::spawn(async move {
            let chunk = vec![3u8; 64 * 1024];
            while stalled.write_all(&chunk).await.is_ok() {
                count.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
        // Let it fill its path (the amount only bounds how long to wait).
        until("the stalled tunnel to take some bytes", || {
            written.load(Ordering::SeqCst) >= 1 << 20
        })
        .await;
        for seed in 0..20u64 {
            let data = pattern(seed, 300_000);
            let back = tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, &data))
                .await
                .expect("a tunnel moved beside the stalled one")
                .unwrap();
            assert!(back == data, "{transport:?} tunnel {seed}");
        }
        assert!(
            !writer.is_finished(),
            "{transport:?}: the stalled tunnel waits, not fails"
        );
        writer.abort();
    }
}

/// A backend that sends forever.
async fn endless_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![1u8; 16 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_transfer_fails_its_tunnels_and_the_next_works() {
    let material = Material::new();
    let endless = endless_server().await;
    let echo = echo_server().await;
    for transport in MUXED {
        let (pair, middle) = pair_via_middle(&material, transport, endless, mux).await;
        let mut tunnels = Vec::new();
        for _ in 0..3 {
            let mut tunnel = TcpStream::connect(pair.client.addr).await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            // Data flows on each before the cut.
            let n = tokio::time::timeout(DEADLINE, tunnel.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            tunnels.push(tunnel);
        }
        middle.kill_all();
        for mut tunnel in tunnels {
            let mut buf = vec![0u8; 64 * 1024];
            let end = tokio::time::timeout(DEADLINE, async {
                loop {
                    match tunnel.read(&mut buf).await {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(err) => return Err(err),
                    }
                }
            })
            .await
            .expect("a tunnel of the lost connection ended");
            assert!(
                end.is_err(),
                "{transport:?}: a cut tunnel looked like a clean end"
            );
        }
        pair.client.until_failed("the three cut tunnels", 3).await;
        // The next tunnel makes a new connection and works (to an echo: a
        // pair forwarding to it through the same client is not possible,
        // so check the endless backend's bytes arrive again).
        let mut next = TcpStream::connect(pair.client.addr).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, next.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{transport:?}: the next tunnel carried nothing");
        assert_eq!(middle.accepted(), 2, "{transport:?}: one new connection");
    }
    let _ = echo;
}

/// The server end vanishes silently (no FIN, no RST: the middle forwards
/// nothing more). A tunnel opened once the connection has been quiet for
/// the probe threshold probes it, gets no answer within the reply timeout,
/// and goes to a new connection instead of hanging on the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_after_the_server_vanished_silently_goes_to_a_new_connection() {
    let material = Material::new();
    let backend = echo_server().await;
    let keepalive = cipherlink_proxy::mux::KeepaliveConfig::default();
    for transport in MUXED {
        let (pair, middle) = pair_via_middle(&material, transport, backend, mux).await;
        let data = pattern(1, 10_000);
        assert_eq!(round_trip(pair.client.addr, &data).await.unwrap(), data);
        middle.freeze_all();
        tokio::time::sleep(keepalive.probe_after + std::time::Duration::from_secs(1)).await;
        let back = tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, &data))
            .await
            .expect("a tunnel hung on the dead connection")
            .unwrap();
        assert!(back == data, "{transport:?}: the tunnel after the loss");
        assert_eq!(middle.accepted(), 2, "{transport:?}: one new connection");
    }
}

#[tokio::test]
async fn the_server_refuses_streams_past_max_connections_and_frees_them() {
    let material = Material::new();
    let backend = echo_server().await;
    for transport in MUXED {
        let server = Pair::server(&material, transport, backend, &|c: &mut ServiceConfig| {
            c.mux = true;
            c.max_connections = 2;
        })
        .await;
        let client = Pair::client(&material, transport, server.addr, &mux).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut tunnel = TcpStream::connect(client.addr).await.unwrap();
            tunnel.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            tokio::time::timeout(DEADLINE, tunnel.read_exact(&mut one))
                .await
                .unwrap()
                .unwrap();
            held.push(tunnel);
        }
        let refused = tokio::time::timeout(DEADLINE, round_trip(client.addr, b"one too many"))
            .await
            .unwrap();
        assert!(
            refused.is_err(),
            "{transport:?}: a third stream got through: {refused:?}"
        );
        server.until_failed("the refused stream", 1).await;
        drop(held.pop());
        let stats = server.stats.clone();
        until("a stream slot to free", || stats.snapshot().active == 1).await;
        let back = round_trip(client.addr, b"now there is room").await.unwrap();
        assert_eq!(back, b"now there is room", "{transport:?}");
    }
}

#[tokio::test]
async fn mux_is_refused_for_v1_and_plain() {
    for transport in [Transport::V1, Transport::Plain] {
        let mut config = ServiceConfig::new(
            cipherlink_proxy::Role::Client,
            "127.0.0.1:0",
            "127.0.0.1:1",
            transport,
        );
        config.mux = true;
        let material = Material::new();
        let err = cipherlink_proxy::Service::bind("m", &material.secure(config))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`mux`") && err.contains("tls and link"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_stopping_server_lets_open_streams_finish_then_closes_its_connection() {
    let material = Material::new();
    let backend = echo_server().await;
    for transport in MUXED {
        let mut config = material.secure(ServiceConfig::new(
            cipherlink_proxy::Role::Server,
            "127.0.0.1:0",
            backend.to_string(),
            transport,
        ));
        config.mux = true;
        // Far longer than DEADLINE: the service may only end early because
        // its connection closed once its last stream was done.
        let grace = std::time::Duration::from_secs(600);
        let server = Running::start_with_grace("server", config, grace).await;
        let client = Pair::client(&material, transport, server.addr, &mux).await;
        let mut open = TcpStream::connect(client.addr).await.unwrap();
        open.write_all(b"before").await.unwrap();
        let mut six = [0u8; 6];
        open.read_exact(&mut six).await.unwrap();
        server.stop();
        // The open tunnel still carries both ways, and ends cleanly.
        open.write_all(b"after!").await.unwrap();
        open.read_exact(&mut six).await.unwrap();
        assert_eq!(&six, b"after!");
        open.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(DEADLINE, open.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        let mut server = server;
        tokio::time::timeout(DEADLINE, &mut server.task)
            .await
            .expect("the service ended once its only stream was done")
            .unwrap();
        client.until_failed("nothing", 0).await;
        assert_eq!(client.stats.snapshot().completed, 1, "{transport:?}");
    }
}

/// A mux connection that carries no stream for the idle timeout is closed
/// by the server: it must not hold one of `max_connections` forever (with
/// one slot, a second client was locked out for as long as the first
/// client's idle connection stayed open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mux_connection_gives_its_slot_back() {
    let material = Material::new();
    let backend = echo_server().await;
    for transport in MUXED {
        let server = Pair::server(&material, transport, backend, &|c: &mut ServiceConfig| {
            c.mux = true;
            c.max_connections = 1;
            c.idle_timeout = std::time::Duration::from_secs(1);
        })
        .await;
        let first = Pair::client(&material, transport, server.addr, &mux).await;
        let back = round_trip(first.addr, b"first").await.unwrap();
        assert_eq!(back, b"first", "{transport:?}");
        let second = Pair::client(&material, transport, server.addr, &mux).await;
        let start = std::time::Instant::now();
        loop {
            match tokio::time::timeout(DEADLINE, round_trip(second.addr, b"second")).await {
                Ok(Ok(back)) => {
                    assert_eq!(back, b"second", "{transport:?}");
                    break;
                }
                _ => assert!(
                    start.elapsed() < DEADLINE,
                    "{transport:?}: the first client's idle connection kept the only slot"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        drop(first);
    }
}
