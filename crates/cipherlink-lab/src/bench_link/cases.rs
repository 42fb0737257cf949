//! The cases over real sockets on 127.0.0.1: handshakes/s, one link's bulk
//! throughput, and memory per idle link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cipherlink_link::driver::{connect, Link, LinkListener};
use cipherlink_link::proto::{ClientConfig, ServerEndpoint};
use cipherlink_link::{LinkParams, ServerKey, TokenStore};

use super::bulk::{push, sink, BulkResult};
use super::LinkBenchOptions;
use crate::LabError;

/// The handshake case.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeResult {
    /// Completed connect + handshake + PING/PONG + close.
    pub connections: u64,
    /// Failed ones.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Completed per second.
    pub per_sec: f64,
    /// Median connect-to-PONG time.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Process CPU time (both ends, kernel included) per completed handshake.
    pub cpu_us_per_handshake: Option<f64>,
}

/// The idle-memory case.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Idle links held (each has both ends in this process).
    pub links: usize,
    /// Process RSS before opening them.
    pub rss_before: u64,
    /// Process RSS with all of them open.
    pub rss_after: u64,
    /// RSS growth per link, both ends (client and server) together.
    pub bytes_per_link_both_ends: f64,
    /// Half of that: one end, as a server holding many clients sees it.
    pub bytes_per_link_end: f64,
}

/// A server key with one client's token, and that client's configuration.
pub(super) struct Fixture {
    pub(super) endpoint: Arc<ServerEndpoint>,
    pub(super) client: ClientConfig,
}

impl Fixture {
    pub(super) fn new(params: &LinkParams) -> Result<Fixture, LabError> {
        let mut rng = StdRng::from_os_rng();
        let key = ServerKey::generate(&mut rng);
        let mut store = TokenStore::new();
        let token = store.issue("bench", &mut rng)?;
        let client = ClientConfig {
            server_key: *key.public(),
            token,
            name: "bench".into(),
            params: params.clone(),
        };
        let endpoint = Arc::new(ServerEndpoint::new(key, store, params.clone())?);
        Ok(Fixture { endpoint, client })
    }

    async fn listen(&self) -> Result<(LinkListener, SocketAddr), LabError> {
        let listener = LinkListener::bind("127.0.0.1:0", self.endpoint.clone()).await?;
        let addr = listener.local_addr();
        Ok((listener, addr))
    }
}

/// Server side of the handshake case: PING -> PONG and the close in one
/// write (as `bench conn`'s TLS server answers), then the client's close.
async fn pong(mut link: Link) {
    let mut ping = [0u8; 4];
    if link.read_exact(&mut ping).await.is_ok() {
        let _ = link.write_all_and_close(b"PONG").await;
    } else {
        let _ = link.shutdown().await;
    }
    let mut rest = Vec::new();
    let _ = link.read_to_end(&mut rest).await;
}

async fn one_handshake(addr: SocketAddr, cfg: &ClientConfig) -> Result<(), String> {
    let mut link = connect(addr, cfg).await.map_err(|e| e.to_string())?;
    link.write_all(b"PING").await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 4];
    link.read_exact(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if &reply != b"PONG" {
        return Err(format!("expected PONG, got {reply:?}"));
    }
    link.shutdown().await.map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    link.read_to_end(&mut rest)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    completed: u64,
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn handshake_worker(addr: SocketAddr, cfg: ClientConfig, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), one_handshake(addr, &cfg)).await {
            Ok(Ok(())) => {
                tally.completed += 1;
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latencies_us.push(us);
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
            Err(_) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| "timed out".into());
            }
        }
    }
    tally
}

/// Connect, handshake, PING/PONG, close, as many times as fit in the
/// duration, `concurrency` at once.
pub(super) async fn handshakes(
    fx: &Fixture,
    options: &LinkBenchOptions,
) -> Result<HandshakeResult, LabError> {
    let (mut listener, addr) = fx.listen().await?;
    let server = tokio::spawn(async move {
        while let Some(link) = listener.accept().await {
            tokio::spawn(pong(link));
        }
    });
    let cpu_before = crate::cpu::process_cpu_time();
    let start = Instant::now();
    let deadline = start + options.duration;
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| tokio::spawn(handshake_worker(addr, fx.client.clone(), deadline)))
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.map_err(|source| LabError::Task {
            what: "a handshake worker",
            source,
        })?;
        total.completed += tally.completed;
        total.latencies_us.extend(tally.latencies_us);
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = crate::cpu::process_cpu_time();
    server.abort();
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let ok = total.completed;
    Ok(HandshakeResult {
        connections: ok,
        errors: total.errors,
        first_error: total.first_error,
        seconds,
        per_sec: ok as f64 / seconds,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        cpu_us_per_handshake: match (cpu_before, cpu_after) {
            (Some(b), Some(a)) if ok > 0 => {
                Some(a.saturating_sub(b).as_secs_f64() * 1e6 / ok as f64)
            }
            _ => None,
        },
    })
}

/// `bytes` through one link.
pub(super) async fn link_bulk(fx: &Fixture, bytes: u64) -> Result<BulkResult, LabError> {
    let (mut listener, addr) = fx.listen().await?;
    let server = tokio::spawn(async move {
        if let Some(link) = listener.accept().await {
            let _ = sink(link, bytes).await;
        }
    });
    let link = connect(addr, &fx.client).await?;
    let (mut r, mut w) = tokio::io::split(link);
    let result = push(&mut w, &mut r, bytes)
        .await
        .map_err(|source| LabError::Io {
            what: "the link bulk transfer",
            source,
        })?;
    let _ = w.shutdown().await;
    let _ = server.await;
    Ok(result)
}

fn rss_bytes() -> Result<u64, LabError> {
    const STATM: &str = "/proc/self/statm";
    let statm = std::fs::read_to_string(STATM).map_err(|source| LabError::Proc {
        pid: std::process::id(),
        path: STATM.into(),
        source,
    })?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or(LabError::ProcFormat {
            path: STATM.into(),
            field: "resident pages",
        })?;
    Ok(pages * 4096)
}

/// Opens `links` links (64 handshakes at a time), holds both ends, and
/// measures how much the process grew.
pub(super) async fn idle(fx: &Fixture, links: usize) -> Result<IdleResult, LabError> {
    let (mut listener, addr) = fx.listen().await?;
    let rss_before = rss_bytes()?;
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(link) = listener.accept().await {
            held.push(link);
            if held.len() == links {
                break;
            }
        }
        held
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opens = Vec::with_capacity(links);
    for _ in 0..links {
        let cfg = fx.client.clone();
        // Taken before spawning, so that no more than 64 tasks (and their
        // garbage) exist at once while the memory is being measured.
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LabError::Setup("the idle case's handshake gate closed".into()))?;
        opens.push(tokio::spawn(async move {
            let link = connect(addr, &cfg).await;
            drop(permit);
            link
        }));
    }
    let mut clients = Vec::with_capacity(links);
    for open in opens {
        let link = open.await.map_err(|source| LabError::Task {
            what: "an idle link's handshake",
            source,
        })??;
        clients.push(link);
    }
    let servers = server.await.map_err(|source| LabError::Task {
        what: "the idle links' server",
        source,
    })?;
    // Let handshake garbage be returned to the allocator before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = rss_bytes()?;
    let grown = rss_after.saturating_sub(rss_before) as f64;
    let n = clients.len().min(servers.len()).max(1) as f64;
    drop(clients);
    drop(servers);
    Ok(IdleResult {
        links,
        rss_before,
        rss_after,
        bytes_per_link_both_ends: grown / n,
        bytes_per_link_end: grown / n / 2.0,
    })
}
