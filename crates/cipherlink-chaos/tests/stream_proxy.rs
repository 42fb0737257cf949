//! The stream proxy on loopback, in front of its own echo server: each
//! impairment must be observable from the client.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::stream_shaper::Impairments;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// Bound on every wait in these tests, so a bug fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);

use cipherlink_test_support::echo_server;

async fn proxy(up: Impairments, down: Impairments, seed: u64) -> SocketAddr {
    let upstream = echo_server().await;
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), upstream.to_string());
    config.up = up;
    config.down = down;
    config.seed = seed;
    config.idle_timeout = LIMIT;
    let proxy = StreamProxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().expect("proxy addr");
    tokio::spawn(proxy.run());
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn none() -> Impairments {
    Impairments::default()
}

#[tokio::test]
async fn passes_data_unchanged_without_impairments() {
    let addr = proxy(none(), none(), 0).await;
    let mut c = connect(addr).await;
    let sent = data(200_000);
    let (mut r, mut w) = c.split();
    let write = async {
        w.write_all(&sent).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let mut got = Vec::new();
    let read = r.read_to_end(&mut got);
    let ((), n) = timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .expect("in time");
    n.expect("read");
    assert_eq!(got, sent);
}

#[tokio::test]
async fn latency_is_added_both_ways() {
    let latency = Impairments {
        latency: Duration::from_millis(100),
        ..none()
    };
    let addr = proxy(latency, latency, 0).await;
    let mut c = connect(addr).await;
    let t0 = Instant::now();
    c.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    timeout(LIMIT, c.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let rtt = t0.elapsed();
    assert_eq!(&buf, b"ping");
    assert!(rtt >= Duration::from_millis(200), "round trip {rtt:?}");
}

#[tokio::test]
async fn bandwidth_limits_throughput() {
    let slow = Impairments {
        bandwidth: Some(1_000_000),
        ..none()
    };
    let addr = proxy(slow, none(), 0).await;
    let mut c = connect(addr).await;
    let sent = data(50_000);
    let t0 = Instant::now();
    let (mut r, mut w) = c.split();
    let write = async { w.write_all(&sent).await.expect("write") };
    let mut got = vec![0u8; sent.len()];
    let read = r.read_exact(&mut got);
    let ((), n) = timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .expect("in time");
    n.expect("read");
    let elapsed = t0.elapsed();
    assert_eq!(got, sent);
    // 400,000 bits at 1 mbit/s.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[tokio::test]
async fn slices_arrive_as_small_reads() {
    let sliced = Impairments {
        slice: NonZeroUsize::new(7),
        slice_delay: Duration::from_millis(25),
        ..none()
    };
    let addr = proxy(none(), sliced, 0).await;
    let mut c = connect(addr).await;
    let sent = data(70);
    let t0 = Instant::now();
    c.write_all(&sent).await.expect("write");
    c.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    let mut reads = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = timeout(LIMIT, c.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        if n == 0 {
            break;
        }
        reads.push(n);
        got.extend_from_slice(&buf[..n]);
        // Each 7-byte write is one segment on loopback, so a read can join
        // slices (when this reader is late) but never split one: every
        // read ends on a slice boundary.
        assert_eq!(got.len() % 7, 0, "reads {reads:?}");
    }
    let took = t0.elapsed();
    assert_eq!(got, sent);
    // Ten slices, 25 ms apart: the last cannot come sooner than 225 ms
    // after the first was sent (unsliced, all of it takes about 1 ms).
    assert!(
        took >= Duration::from_millis(225),
        "{took:?}, reads {reads:?}"
    );
    println!("reads {reads:?}");
}

#[tokio::test]
async fn stall_holds_the_next_byte_until_released() {
    let stall = Impairments {
        stall_after: Some(40),
        stall_for: Some(Duration::from_millis(300)),
        ..none()
    };
    let addr = proxy(none(), stall, 0).await;
    let mut c = connect(addr).await;
    let sent = data(100);
    let t0 = Instant::now();
    c.write_all(&sent).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut byte_41_at = None;
    while got.len() < sent.len() {
        let n = timeout(LIMIT, c.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "early end after {} bytes", got.len());
        if got.len() <= 40 && got.len() + n > 40 {
            byte_41_at = Some(t0.elapsed());
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, sent);
    let at = byte_41_at.expect("byte 41 arrived");
    assert!(at >= Duration::from_millis(300), "byte 41 after {at:?}");
}

#[tokio::test]
async fn stall_forever_delivers_nothing_more_until_close() {
    let stall = Impairments {
        stall_after: Some(40),
        ..none()
    };
    let addr = proxy(none(), stall, 0).await;
    let mut c = connect(addr).await;
    let sent = data(100);
    c.write_all(&sent).await.expect("write");
    c.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    timeout(LIMIT, c.read_to_end(&mut got))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(got, sent[..40]);
}

#[tokio::test]
async fn reset_after_bytes() {
    let reset = Impairments {
        reset_after: Some(50),
        ..none()
    };
    let addr = proxy(none(), reset, 0).await;
    let mut c = connect(addr).await;
    let sent = data(100);
    c.write_all(&sent).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let err = loop {
        match timeout(LIMIT, c.read(&mut buf)).await.expect("in time") {
            Ok(0) => panic!("clean end after {} bytes, not a reset", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(got.len() <= 50, "{} bytes before the reset", got.len());
    assert_eq!(got, sent[..got.len()]);
}

/// Sends 100,000 bytes up through `--corrupt 0.3 --slice 100` and returns what came back.
async fn corrupted_echo(seed: u64) -> Vec<u8> {
    let corrupt = Impairments {
        corrupt: 0.3,
        slice: NonZeroUsize::new(100),
        ..none()
    };
    let addr = proxy(corrupt, none(), seed).await;
    let mut c = connect(addr).await;
    let sent = data(100_000);
    let (mut r, mut w) = c.split();
    let write = async { w.write_all(&sent).await.expect("write") };
    let mut got = vec![0u8; sent.len()];
    let read = r.read_exact(&mut got);
    let ((), n) = timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .expect("in time");
    n.expect("read");
    got
}

#[tokio::test]
async fn corruption_flips_bits_at_the_configured_rate_reproducibly() {
    let sent = data(100_000);
    let got = corrupted_echo(5).await;
    let mut corrupted = 0u32;
    for (a, b) in sent.chunks(100).zip(got.chunks(100)) {
        let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert!(bits <= 1, "{bits} bits flipped in one slice");
        corrupted += bits;
    }
    let rate = f64::from(corrupted) / 1000.0;
    assert!((rate - 0.3).abs() < 0.05, "corrupted slices: {rate}");
    // The same seed gives the same bytes, whatever the reads' sizes were.
    assert_eq!(corrupted_echo(5).await, got);
    assert_ne!(corrupted_echo(6).await, got);
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    // A port with nothing behind it: bind, learn the port, close.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), dead_addr.to_string());
    let proxy = StreamProxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().expect("addr");
    tokio::spawn(proxy.run());
    let mut c = connect(addr).await;
    let mut buf = Vec::new();
    let n = timeout(LIMIT, c.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
