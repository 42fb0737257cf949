//! Heap per idle tunnel, both proxy ends and the echo backend, counted by
//! dhat (this binary's allocator): `cipherlink bench proxy`'s idle case
//! (RSS growth over many idle tunnels) as an exact count. A multiplexed
//! tunnel has fewer sockets than a plain one (the shared connection is
//! amortised), so it must not cost more heap than a plain pair's tunnel
//! beyond its stream's own state (a session entry and a stream handle,
//! about what the plain pair's second socket costs): anything kept per
//! stream after its data (buffers, timers, read chunks) shows here.
//!
//! One test, so that nothing else allocates while dhat counts.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_proxy::{ServiceConfig, Transport};
use cipherlink_test_support::echo_server;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Tunnels kept open before the first count (connections, lazily grown
/// tables), as the bench's warm-up does.
const WARM_UP: usize = 8;
/// A stream's own state beyond what a plain tunnel holds: measured at 60 B
/// (2026-12-07); a 1 KiB chunk or a timer kept per stream breaks it.
const STREAM_STATE: usize = 512;
/// Tunnels counted.
const TUNNELS: usize = 200;

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

/// One idle tunnel: proven by a one-byte echo, then silent.
async fn idle_tunnel(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await.unwrap();
    stream
}

/// The live heap once it stopped moving: the last tunnel's tasks finish
/// their turn (a read that frees its buffer) just after its echo.
async fn settled() -> usize {
    let mut last = live_bytes();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = live_bytes();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Heap bytes per idle tunnel through `addr` (after a warm-up), and the
/// tunnels to keep until the count is done.
async fn per_tunnel(addr: std::net::SocketAddr) -> (usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    for _ in 0..WARM_UP {
        held.push(idle_tunnel(addr).await);
    }
    let before = settled().await;
    // Sixteen at a time, as the bench opens them.
    let mut opening = tokio::task::JoinSet::new();
    for worker in 0..16 {
        opening.spawn(async move {
            let mut mine = Vec::new();
            for _ in (worker..TUNNELS).step_by(16) {
                mine.push(idle_tunnel(addr).await);
            }
            mine
        });
    }
    while let Some(mine) = opening.join_next().await {
        held.extend(mine.unwrap());
    }
    let after = settled().await;
    (after.saturating_sub(before) / TUNNELS, held)
}

async fn pair_cost(
    material: &Material,
    transport: Transport,
    backend: std::net::SocketAddr,
    muxed: bool,
) -> usize {
    let adjust = |config: &mut ServiceConfig| config.mux = muxed;
    let pair = Pair::start_with(material, transport, backend, adjust).await;
    let (bytes, held) = per_tunnel(pair.client.addr).await;
    drop(held);
    drop(pair);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_muxed_tunnel_costs_no_more_heap_than_a_plain_one() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let material = Material::new();
    let backend = echo_server().await;
    let (direct, held) = per_tunnel(backend).await;
    drop(held);
    let plain = pair_cost(&material, Transport::Plain, backend, false).await;
    let tls = pair_cost(&material, Transport::Tls, backend, false).await;
    let muxed = pair_cost(&material, Transport::Tls, backend, true).await;
    let link_muxed = pair_cost(&material, Transport::Link, backend, true).await;
    eprintln!(
        "heap per idle tunnel (both proxy ends and the backend): direct {direct} B, plain \
         {plain} B, tls {tls} B, tls+mux {muxed} B, link+mux {link_muxed} B"
    );
    assert!(
        muxed <= plain + STREAM_STATE,
        "an idle tls+mux tunnel holds {muxed} B of heap, a plain pair's {plain} B"
    );
    assert!(
        link_muxed <= plain + STREAM_STATE,
        "an idle link+mux tunnel holds {link_muxed} B of heap, a plain pair's {plain} B"
    );
}
