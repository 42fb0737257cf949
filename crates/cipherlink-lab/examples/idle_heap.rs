//! Where an idle TLS connection's server memory goes: a heap profile.
//!
//! `cargo run -p cipherlink-lab --example idle_heap [CONNECTIONS]` opens that
//! many TLS connections (default 1,000) to an in-process `TlsServer` with a
//! handler shaped like `cipherlink serve --echo`, leaves them idle, and
//! prints the heap the server side still holds per connection, by
//! allocation site (from dhat's record of every allocation; client-side
//! allocations are told apart by their call stacks and left out). It writes
//! the full profile to `target/idle-heap.json` for dhat's viewer (generated
//! output stays under `target/`, out of the repository). `cipherlink
//! bench idle` measures the whole process (RSS); this says which bytes.

#![allow(clippy::unwrap_used)] // A developer's tool: fail loudly.

use std::collections::HashMap;
use std::time::Duration;

use cipherlink::certs::{self, CertOptions};
use cipherlink::server::TlsServer;
use cipherlink::{Config, Context, PemSource};
use serde_json::Value;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Under the workspace's `target/`, wherever the example is run from.
const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/idle-heap.json");

fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .map_or(1000, |n| n.parse().expect("CONNECTIONS is a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(connections));
    report(connections);
}

async fn run(connections: usize) {
    let bundle = certs::generate(&CertOptions::default()).unwrap();
    let server_ctx = Context::server(&{
        let mut edited = Config::default();
        edited.certificate = Some(PemSource::inline(bundle.server.cert.clone()));
        edited.private_key = Some(PemSource::inline(bundle.server.key.clone()));
        edited
    })
    .unwrap();
    let client = Context::client(&{
        let mut edited = Config::default();
        edited.trusted_cas = vec![PemSource::inline(bundle.ca.cert.clone())];
        edited.server_name = Some("localhost".into());
        edited.resumption = false;
        edited
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        TlsServer::from_listener(listener, server_ctx.clone()).max_connections(connections + 100);
    let _task = server.spawn(|mut tunnel| async move {
        // As serve --echo: an idle timeout around a read that holds no buffer.
        loop {
            let read = tokio::time::timeout(Duration::from_secs(300), tunnel.read_chunk(16 * 1024));
            let Ok(chunk) = read.await else {
                return tunnel.close().await;
            };
            let chunk = chunk?;
            if chunk.is_empty() {
                return tunnel.close().await;
            }
            tunnel.write_all(&chunk).await?;
        }
    });
    let open = |n| {
        let client = client.clone();
        async move {
            let mut open = Vec::with_capacity(n);
            for _ in 0..n {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                open.push(client.connect(stream, addr.to_string()).await.unwrap());
            }
            open
        }
    };
    // What each waiting connection's task carries inline: the largest
    // future it awaits decides the size of its state, idle or not.
    let probe = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tunnel = server_ctx.tunnel(probe, "probe");
    let tunnel_size = std::mem::size_of_val(&tunnel);
    let server_handshake = std::mem::size_of_val(&tunnel.handshake());
    let probe = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client_handshake = std::mem::size_of_val(&client.tunnel(probe, "probe").handshake());
    println!(
        "inline sizes: server handshake future {server_handshake} B, \
         client handshake future {client_handshake} B, Tunnel {tunnel_size} B"
    );
    drop(tunnel);
    // One-time costs (runtime, lazily built tables) before the profile starts.
    let _warm = open(16).await;
    let profiler = dhat::Profiler::builder()
        .file_name(PROFILE)
        // Whole stacks: the server's frames are far from rustls' allocations.
        .trim_backtraces(None)
        .build();
    let _idle = open(connections).await;
    // The server finishes each handshake a little after its client.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(profiler);
}

/// Sums what is still allocated at the end per allocation site, for the
/// stacks that run through the server.
fn report(connections: usize) {
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(PROFILE).unwrap()).unwrap();
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap_or(""))
        .collect();
    let mut sites: HashMap<String, (u64, u64)> = HashMap::new();
    let (mut total, mut blocks, mut client) = (0, 0, 0);
    for pp in profile["pps"].as_array().unwrap() {
        let bytes = pp["eb"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let stack: Vec<&str> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .collect();
        if !stack.iter().any(|f| f.contains("cipherlink::server::")) {
            client += bytes;
            continue;
        }
        let count = pp["ebk"].as_u64().unwrap_or(0);
        total += bytes;
        blocks += count;
        let entry = sites.entry(site(&stack)).or_default();
        entry.0 += bytes;
        entry.1 += count;
    }
    let n = connections as f64;
    println!(
        "server heap per idle connection: {:.0} bytes in {:.1} blocks ({} connections; client side {:.0} bytes each)",
        total as f64 / n,
        blocks as f64 / n,
        connections,
        client as f64 / n
    );
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|site| std::cmp::Reverse(site.1 .0));
    for (site, (bytes, count)) in sites.iter().take(20) {
        println!(
            "{:>8.0} B {:>5.2} blocks  {site}",
            *bytes as f64 / n,
            *count as f64 / n
        );
    }
    println!("full profile: {PROFILE} (dhat viewer)");
}

/// The allocating code: the innermost frames past the allocator's own.
fn site(stack: &[&str]) -> String {
    const PLUMBING: [&str; 11] = [
        "backtrace::",
        "<backtrace::",
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "std::",
        "dhat::",
        "<dhat::",
        "[root]",
        "__rust",
    ];
    stack
        .iter()
        .map(|f| {
            // "0xADDR: function (file:line:col)" -> "function (file:line)"
            let f = f.split_once(": ").map_or(*f, |(_, rest)| rest);
            f.trim()
        })
        .filter(|f| !PLUMBING.iter().any(|p| f.starts_with(p)))
        .take(2)
        .collect::<Vec<_>>()
        .join("  <-  ")
}
