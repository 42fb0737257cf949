//! A cipherlink TLS session through the stream proxy: with bits flipped on
//! the wire it must fail with an error, never hand over altered data; with
//! the same setup and no corruption it must work (so the failure is the
//! corruption's doing).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use cipherlink::certs::{self, CertOptions};
use cipherlink::Context;
use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::stream_shaper::Impairments;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn contexts() -> (Context, Context) {
    let bundle = certs::generate(&CertOptions::default()).expect("test certificates");
    let server = Context::server(&bundle.server_config()).expect("server context");
    let client = Context::client(&bundle.client_config()).expect("client context");
    (server, client)
}

/// A TLS echo server; returns its address.
async fn tls_echo(server: Context) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tunnel)) = timeout(LIMIT, server.accept(tcp, peer.to_string())).await
                else {
                    return;
                };
                while let Ok(Ok(chunk)) = timeout(LIMIT, tunnel.read_chunk(16 * 1024)).await {
                    if chunk.is_empty() || tunnel.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = timeout(LIMIT, tunnel.close()).await;
            });
        }
    });
    addr
}

async fn proxy_to(upstream: SocketAddr, corrupt: f64, seed: u64) -> SocketAddr {
    let imp = Impairments {
        corrupt,
        slice: NonZeroUsize::new(512),
        ..Impairments::default()
    };
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), upstream.to_string());
    config.up = imp;
    config.down = imp;
    config.seed = seed;
    config.idle_timeout = LIMIT;
    let proxy = StreamProxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().expect("addr");
    tokio::spawn(proxy.run());
    addr
}

fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// Connects through the proxy, sends the payload, reads the echo; returns
/// the bytes that came back and how it ended.
async fn exchange(addr: SocketAddr, client: &Context) -> (Vec<u8>, Result<(), String>) {
    let sent = payload();
    let mut got = Vec::new();
    let result = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tunnel = client
            .connect(tcp, "localhost")
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut target = 0;
        for block in sent.chunks(10_000) {
            tunnel
                .write_all(block)
                .await
                .map_err(|e| format!("write: {e}"))?;
            target += block.len();
            while got.len() < target {
                let chunk = tunnel
                    .read_chunk(16 * 1024)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if chunk.is_empty() {
                    return Err("closed early".to_string());
                }
                got.extend_from_slice(&chunk);
            }
        }
        Ok(())
    };
    let result = match timeout(LIMIT, result).await {
        Ok(r) => r,
        Err(_) => Err("timed out".to_string()),
    };
    (got, result)
}

#[tokio::test]
async fn clean_proxy_carries_tls() {
    let (server, client) = contexts();
    let upstream = tls_echo(server).await;
    let addr = proxy_to(upstream, 0.0, 1).await;
    let (got, result) = exchange(addr, &client).await;
    assert_eq!(result, Ok(()));
    assert_eq!(got, payload());
}

/// One exchange through `rate` corruption (seed `seed`): it must fail, not
/// hang, and what arrived before the failure is exactly what was sent.
/// Returns how many good bytes arrived.
async fn fails_cleanly(
    upstream: std::net::SocketAddr,
    client: &Context,
    sent: &[u8],
    rate: f64,
    seed: u64,
) -> usize {
    let addr = proxy_to(upstream, rate, seed).await;
    let (got, result) = exchange(addr, client).await;
    let Err(reason) = result else {
        panic!(
            "seed {seed}: TLS delivered everything through {}% corruption",
            rate * 100.0
        );
    };
    assert_ne!(reason, "timed out", "seed {seed}: hung instead of failing");
    assert_eq!(
        got,
        sent[..got.len()],
        "seed {seed}: altered bytes delivered"
    );
    println!(
        "seed {seed}: failed after {} good bytes: {reason}",
        got.len()
    );
    got.len()
}

#[tokio::test]
async fn corrupted_tls_fails_cleanly_never_delivers_wrong_data() {
    let (server, client) = contexts();
    let upstream = tls_echo(server).await;
    let sent = payload();
    for seed in 0..5 {
        fails_cleanly(upstream, &client, &sent, 0.3, seed).await;
    }
}

#[tokio::test]
async fn rare_corruption_mid_stream_is_caught_after_good_data() {
    // At 1% of 512-byte slices the handshake usually survives and the
    // flip lands in application data: the record's MAC must catch it.
    let (server, client) = contexts();
    let upstream = tls_echo(server).await;
    let sent = payload();
    let mut delivered_before_failure = 0;
    for seed in 0..5 {
        delivered_before_failure += fails_cleanly(upstream, &client, &sent, 0.01, seed).await;
    }
    assert!(
        delivered_before_failure > 0,
        "no run got past the handshake"
    );
}
