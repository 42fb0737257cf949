//! `cipherlink bench link`: the crypto floor, handshakes/s, bulk throughput
//! on one link, overhead bytes per record, and memory per idle link.
//! Everything runs in this process over 127.0.0.1, client and server both,
//! so the numbers include both ends' CPU, as `bench conn` does. The TLS
//! baselines (`bench conn`, and the core Tunnel's throughput through the same
//! [`push`]/[`sink`]) are measured by the command in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::driver::{connect, DriverError, Link, LinkListener};
use crate::keys::{ServerKey, TokenStore};
use crate::proto::{ClientConfig, Connection, ServerEndpoint};
use crate::LinkParams;

/// A bench step that failed.
#[derive(Debug, thiserror::Error)]
#[error("bench link: {0}")]
pub struct BenchError(String);

fn fail(what: impl std::fmt::Display) -> BenchError {
    BenchError(what.to_string())
}

impl From<DriverError> for BenchError {
    fn from(e: DriverError) -> Self {
        fail(e)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Seconds of the handshake case.
    pub duration: Duration,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Bytes through one link (and one TLS tunnel) for the throughput case.
    pub bulk_bytes: u64,
    /// Idle links to hold for the memory case (0 = skip).
    pub idle_links: usize,
    /// Link parameters (tail length, keepalive) of both ends.
    pub params: LinkParams,
    /// This process's CPU time so far (user + system), if the caller can
    /// read it: the handshake case then reports CPU per handshake, which
    /// stays comparable when other work shares the machine.
    pub cpu_clock: Option<fn() -> Option<Duration>>,
}

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

/// A throughput case.
#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    /// Bytes sent.
    pub bytes: u64,
    /// From the first write to the receiver's acknowledgement of the last byte.
    pub seconds: f64,
    /// MiB per second.
    pub mib_per_sec: f64,
}

/// Wire bytes per record beyond the payload.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Payload of each measured record.
    pub payload: usize,
    /// Link, tail length 0: 2 (length) + 3 (type, body length) + 16 (tag).
    pub link_no_padding: f64,
    /// Link with the configured tail length (mean padding included).
    pub link_with_padding: f64,
    /// The tail length used for `link_with_padding`.
    pub tail_length: usize,
    /// TLS 1.3 (AES-GCM): 5 (header) + 1 (inner type) + 16 (tag).
    pub tls13: f64,
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

/// The crypto floor: microseconds per operation on this machine, one core.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The client's ephemeral key with an Elligator2 representative (retries
    /// and loading it into aws-lc included).
    pub ephemeral_us: f64,
    /// The server's plain ephemeral key (loaded into aws-lc, public key computed).
    pub server_ephemeral_us: f64,
    /// The Elligator2 map of a representative to its point (the server, on msg1).
    pub elligator2_map_us: f64,
    /// One X25519 with a key already loaded.
    pub x25519_us: f64,
    /// ML-KEM-768 key generation from a seed.
    pub kem_keygen_us: f64,
    /// ML-KEM-768 encapsulation.
    pub kem_encaps_us: f64,
    /// ML-KEM-768 decapsulation.
    pub kem_decaps_us: f64,
    /// A whole handshake, both ends, in memory (no sockets).
    pub handshake_both_ends_us: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Crypto floor.
    pub floor: Floor,
    /// Handshakes.
    pub handshakes: HandshakeResult,
    /// One link.
    pub bulk_link: BulkResult,
    /// Record overhead.
    pub overhead: Overhead,
    /// Idle memory.
    pub idle: Option<IdleResult>,
}

struct Fixture {
    endpoint: Arc<ServerEndpoint>,
    client: ClientConfig,
}

fn fixture(params: &LinkParams) -> Result<Fixture, BenchError> {
    let mut rng = StdRng::from_os_rng();
    let key = ServerKey::generate(&mut rng);
    let mut store = TokenStore::new();
    let token = store.issue("bench", &mut rng).map_err(fail)?;
    let client = ClientConfig {
        server_key: *key.public(),
        token,
        name: "bench".into(),
        params: params.clone(),
    };
    let endpoint = Arc::new(ServerEndpoint::new(key, store, params.clone()).map_err(fail)?);
    Ok(Fixture { endpoint, client })
}

/// Runs every case, printing a line per case.
pub async fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.concurrency == 0 {
        return Err(fail("--concurrency must be at least 1"));
    }
    let fx = fixture(&opts.params)?;
    let floor = floor(&fx)?;
    println!(
        "link crypto floor (us): client ephemeral+Elligator2 {:.1}, Elligator2 map {:.1}, server ephemeral {:.1}, X25519 {:.1}, ML-KEM-768 keygen {:.1} encaps {:.1} decaps {:.1}; in-memory handshake, both ends {:.1}",
        floor.ephemeral_us,
        floor.elligator2_map_us,
        floor.server_ephemeral_us,
        floor.x25519_us,
        floor.kem_keygen_us,
        floor.kem_encaps_us,
        floor.kem_decaps_us,
        floor.handshake_both_ends_us
    );
    let handshakes = handshake_case(&fx, opts).await?;
    let cpu = handshakes
        .cpu_us_per_handshake
        .map(|c| format!(", {c:.0} cpu-us each"))
        .unwrap_or_default();
    println!(
        "link handshakes: {:.0}/s ({} in {:.1} s, {} errors), p50 {} us, p99 {} us{cpu}",
        handshakes.per_sec,
        handshakes.connections,
        handshakes.seconds,
        handshakes.errors,
        handshakes.p50_us,
        handshakes.p99_us
    );
    let bulk_link = link_bulk(&fx, opts.bulk_bytes).await?;
    println!(
        "bulk, one link, {} MiB: {:.0} MiB/s",
        opts.bulk_bytes >> 20,
        bulk_link.mib_per_sec
    );
    let overhead = overhead(&opts.params)?;
    println!(
        "overhead per {}-byte record: link {:.1} B without padding, {:.1} B with tail {} (mean); TLS 1.3 {:.0} B",
        overhead.payload,
        overhead.link_no_padding,
        overhead.link_with_padding,
        overhead.tail_length,
        overhead.tls13
    );
    let idle = if opts.idle_links > 0 {
        let r = idle_case(&fx, opts.idle_links).await?;
        println!(
            "idle links: {} held, {:.1} KiB per link end ({:.1} KiB per link, both ends in this process)",
            r.links,
            r.bytes_per_link_end / 1024.0,
            r.bytes_per_link_both_ends / 1024.0
        );
        Some(r)
    } else {
        None
    };
    Ok(BenchReport {
        floor,
        handshakes,
        bulk_link,
        overhead,
        idle,
    })
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

async fn one_handshake(addr: std::net::SocketAddr, cfg: &ClientConfig) -> Result<(), String> {
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

async fn handshake_case(fx: &Fixture, opts: &BenchOptions) -> Result<HandshakeResult, BenchError> {
    let mut listener = LinkListener::bind("127.0.0.1:0", fx.endpoint.clone()).await?;
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        while let Some(link) = listener.accept().await {
            tokio::spawn(pong(link));
        }
    });
    let cpu_before = opts.cpu_clock.and_then(|clock| clock());
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let cfg = fx.client.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut lat, mut errs, mut first) = (0u64, Vec::new(), 0u64, None);
            while Instant::now() < deadline {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), one_handshake(addr, &cfg)).await
                {
                    Ok(Ok(())) => {
                        ok += 1;
                        lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                    Ok(Err(e)) => {
                        errs += 1;
                        first.get_or_insert(e);
                    }
                    Err(_) => {
                        errs += 1;
                        first.get_or_insert_with(|| "timed out".to_string());
                    }
                }
            }
            (ok, lat, errs, first)
        }));
    }
    let (mut ok, mut lat, mut errors, mut first_error) = (0, Vec::new(), 0, None);
    for w in workers {
        let (o, l, e, f) = w.await.map_err(fail)?;
        ok += o;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = opts.cpu_clock.and_then(|clock| clock());
    server.abort();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(HandshakeResult {
        connections: ok,
        errors,
        first_error,
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

const BULK_CHUNK: usize = 64 * 1024;

/// Sends `bytes` through `w` while `r`'s peer counts them and answers one byte at the end.
pub async fn push<W: tokio::io::AsyncWrite + Unpin, R: tokio::io::AsyncRead + Unpin>(
    w: &mut W,
    r: &mut R,
    bytes: u64,
) -> Result<BulkResult, BenchError> {
    let chunk = vec![0x5au8; BULK_CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BULK_CHUNK as u64) as usize;
        w.write_all(&chunk[..n]).await.map_err(fail)?;
        left -= n as u64;
    }
    w.flush().await.map_err(fail)?;
    let mut ack = [0u8; 1];
    r.read_exact(&mut ack).await.map_err(fail)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(BulkResult {
        bytes,
        seconds,
        mib_per_sec: bytes as f64 / (1024.0 * 1024.0) / seconds,
    })
}

/// Reads exactly `bytes`, then answers one byte.
pub async fn sink<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    bytes: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BULK_CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left = left.saturating_sub(n as u64);
    }
    s.write_all(b"!").await?;
    s.flush().await?;
    let _ = s.shutdown().await;
    let _ = s.read(&mut buf).await;
    Ok(())
}

async fn link_bulk(fx: &Fixture, bytes: u64) -> Result<BulkResult, BenchError> {
    let mut listener = LinkListener::bind("127.0.0.1:0", fx.endpoint.clone()).await?;
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        if let Some(link) = listener.accept().await {
            let _ = sink(link, bytes).await;
        }
    });
    let link = connect(addr, &fx.client).await?;
    let (mut r, mut w) = tokio::io::split(link);
    let result = push(&mut w, &mut r, bytes).await?;
    let _ = w.shutdown().await;
    let _ = server.await;
    Ok(result)
}

/// Wire bytes per record, measured on the sans-IO core.
fn overhead(params: &LinkParams) -> Result<Overhead, BenchError> {
    const PAYLOAD: usize = 1024;
    const RECORDS: usize = 2000;
    let measure = |tail: usize| -> Result<f64, BenchError> {
        let p = LinkParams {
            tail_length: tail,
            ..params.clone()
        };
        let fx = fixture(&p)?;
        let now = Instant::now();
        let mut client = Connection::client(&fx.client, Box::new(StdRng::from_os_rng()), now, 0)
            .map_err(fail)?;
        let mut server =
            Connection::server(fx.endpoint.clone(), Box::new(StdRng::from_os_rng()), now, 0);
        crate::fuzzing::exchange(&mut client, &mut server, now);
        if !client.is_open() {
            return Err(fail("in-memory handshake failed"));
        }
        let mut wire = Vec::new();
        let payload = vec![0u8; PAYLOAD];
        let mut total = 0usize;
        for _ in 0..RECORDS {
            client.send(&payload).map_err(fail)?;
            client.poll_transmit(&mut wire);
            total += wire.len();
            wire.clear();
        }
        Ok(total as f64 / RECORDS as f64 - PAYLOAD as f64)
    };
    Ok(Overhead {
        payload: PAYLOAD,
        link_no_padding: measure(0)?,
        link_with_padding: measure(params.tail_length)?,
        tail_length: params.tail_length,
        tls13: 22.0,
    })
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

async fn idle_case(fx: &Fixture, links: usize) -> Result<IdleResult, BenchError> {
    let mut listener = LinkListener::bind("127.0.0.1:0", fx.endpoint.clone()).await?;
    let addr = listener.local_addr();
    let rss_before = rss_bytes().ok_or_else(|| fail("cannot read /proc/self/statm"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Link>(links.max(1));
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
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opens = Vec::new();
    for _ in 0..links {
        let cfg = fx.client.clone();
        let tx = tx.clone();
        let permit = sem.clone().acquire_owned().await.map_err(fail)?;
        opens.push(tokio::spawn(async move {
            let r = connect(addr, &cfg).await;
            drop(permit);
            match r {
                Ok(l) => tx.send(l).await.map_err(|_| "holder gone".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    drop(tx);
    for o in opens {
        o.await.map_err(fail)?.map_err(fail)?;
    }
    let mut clients = Vec::with_capacity(links);
    while let Some(l) = rx.recv().await {
        clients.push(l);
    }
    let servers = server.await.map_err(fail)?;
    // Let handshake garbage be returned to the allocator before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = rss_bytes().ok_or_else(|| fail("cannot read /proc/self/statm"))?;
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

fn per_op(n: u32, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    let t = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(n))
}

fn floor(fx: &Fixture) -> Result<Floor, BenchError> {
    use crate::proto::crypto::{self, Ephemeral, KemSecret, PlainEphemeral};
    const N: u32 = 200;
    let mut rng = StdRng::from_os_rng();
    let e = Ephemeral::generate(&mut rng).map_err(fail)?;
    let peer = crypto::point_from_representative(&e.representative);
    let kem = KemSecret::generate(&mut rng);
    let ek = kem.public_bytes();
    let (ct, _) = crypto::kem_encapsulate(&ek, &mut rng).map_err(fail)?;
    Ok(Floor {
        ephemeral_us: per_op(N, || Ephemeral::generate(&mut rng).map(drop).map_err(fail))?,
        server_ephemeral_us: per_op(N, || {
            PlainEphemeral::generate(&mut rng).map(drop).map_err(fail)
        })?,
        elligator2_map_us: per_op(N, || {
            std::hint::black_box(crypto::point_from_representative(&e.representative));
            Ok(())
        })?,
        x25519_us: per_op(N, || e.dh(&peer).map(drop).map_err(fail))?,
        kem_keygen_us: per_op(N, || {
            drop(KemSecret::generate(&mut rng).public_bytes());
            Ok(())
        })?,
        kem_encaps_us: per_op(N, || {
            crypto::kem_encapsulate(&ek, &mut rng)
                .map(drop)
                .map_err(fail)
        })?,
        kem_decaps_us: per_op(N, || kem.decapsulate(&ct).map(drop).map_err(fail))?,
        handshake_both_ends_us: per_op(N, || {
            let now = Instant::now();
            let mut c = Connection::client(&fx.client, Box::new(StdRng::from_os_rng()), now, 0)
                .map_err(fail)?;
            // A fresh endpoint each time: the replay filter would otherwise grow.
            let mut s =
                Connection::server(fx.endpoint.clone(), Box::new(StdRng::from_os_rng()), now, 0);
            crate::fuzzing::exchange(&mut c, &mut s, now);
            if c.is_open() {
                Ok(())
            } else {
                Err(fail("in-memory handshake failed"))
            }
        })?,
    })
}
