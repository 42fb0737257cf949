//! `cipherlink bench proxy`: one-connection throughput, new connections/s
//! and memory per idle tunnel, through a proxy pair per transport, against
//! a plain pair, a stunnel4 pair and direct TCP, all in the same run (a
//! shared 2-core machine is too noisy to compare runs).
//!
//! Every proxy is a separate process (`cipherlink proxy server|client`, and
//! `stunnel4` for the reference), as in use; the backend runs in a helper
//! process too, so that the bench process only generates load. Processes
//! here may hold 20,000 files, so 10,000 idle tunnels are spread over as
//! many proxy pairs as needed ([`IDLE_PER_PAIR`] each); the memory figure is
//! the RSS growth of all proxy processes divided by the tunnels.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::config::Transport;

/// Most idle tunnels one proxy pair holds (two sockets each per process).
pub const IDLE_PER_PAIR: usize = 4_000;
/// The backend's first byte: echo everything back.
const MODE_ECHO: u8 = b'E';
/// The backend's first byte: swallow everything, reply with the count.
const MODE_SINK: u8 = b'S';

/// A bench step that failed.
#[derive(Debug, thiserror::Error)]
#[error("bench proxy: {0}")]
pub struct BenchError(String);

fn fail(what: impl std::fmt::Display) -> BenchError {
    BenchError(what.to_string())
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `cipherlink` binary (for the proxies and the backend helper).
    pub program: PathBuf,
    /// Our transports to measure (plain is always measured as the base).
    pub transports: Vec<Transport>,
    /// Bytes sent through one connection for the throughput case.
    pub bytes: u64,
    /// Seconds per connection-rate case.
    pub duration: Duration,
    /// Connections in flight at once for the connection-rate case.
    pub concurrency: usize,
    /// Idle tunnels to hold for the memory case (0 = skip).
    pub idle: usize,
    /// stunnel4, for the reference pair (None = skip).
    pub stunnel: Option<PathBuf>,
    /// Key-exchange groups for our TLS pair (None = the core's default).
    pub groups: Option<Vec<cipherlink::KeyExchange>>,
    /// `--buffer-size` for our proxies (None = their default).
    pub buffer_size: Option<usize>,
}

/// One row: a way of getting from the client to the backend.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `direct`, `plain`, `tls`, `v1`, `link`, `stunnel`.
    pub case: String,
    /// One connection, one direction, MB/s (10^6 bytes).
    pub throughput_mb_s: f64,
    /// New tunnels per second (connect, 4-byte echo, close).
    pub conns_per_s: f64,
    /// Connections that failed during the rate case.
    pub conn_errors: u64,
    /// Idle tunnels held for the memory case.
    pub idle_tunnels: usize,
    /// RSS growth of all proxy processes per idle tunnel pair, KiB.
    pub idle_kib_per_pair: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One row per case, direct first.
    pub rows: Vec<Row>,
    /// tls throughput / plain throughput.
    pub tls_vs_plain_throughput: Option<f64>,
    /// tls conns/s / stunnel conns/s.
    pub tls_vs_stunnel_conns: Option<f64>,
    /// Bytes per throughput case.
    pub bytes: u64,
    /// Seconds per rate case.
    pub duration_s: f64,
    /// Concurrency of the rate case.
    pub concurrency: usize,
}

/// Runs the echo/sink backend until the process ends (the helper process).
pub async fn serve_backend(addr: SocketAddr) -> Result<(), BenchError> {
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    println!(
        "backend listening on {}",
        listener.local_addr().map_err(fail)?
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(backend_conn(stream));
    }
}

async fn backend_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut mode = [0u8; 1];
    if stream.read_exact(&mut mode).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        if mode[0] == MODE_ECHO && stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    if mode[0] == MODE_SINK {
        let _ = stream.write_all(&total.to_be_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

/// Key material for every pair, in one temporary folder.
struct Material {
    dir: tempfile::TempDir,
}

impl Material {
    fn new() -> Result<Material, BenchError> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let bundle = cipherlink::certs::generate(&cipherlink::certs::CertOptions::default())
            .map_err(fail)?;
        for (name, text) in [
            ("ca.crt", &bundle.ca.cert),
            ("server.crt", &bundle.server.cert),
            ("server.key", &bundle.server.key),
        ] {
            std::fs::write(dir.path().join(name), text).map_err(fail)?;
        }
        for name in ["v1-server", "v1-client"] {
            crate::v1::keys::write_key_pair(dir.path(), name, crate::v1::keys::Existing::Refuse)
                .map_err(fail)?;
        }
        // The files `cipherlink link keygen` and `link invite` write; every
        // link pair's client uses the one token (a token may hold many links).
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let key = cipherlink_link::ServerKey::generate(&mut rng);
        let mut tokens = cipherlink_link::TokenStore::new();
        let token = tokens.issue("bench", &mut rng).map_err(fail)?;
        let file = cipherlink_link::ConnectionFile {
            name: "bench".into(),
            // Each pair's client is given its server with --connect.
            server: "127.0.0.1:1".into(),
            server_key: *key.public(),
            token,
            tail_length: cipherlink_link::LinkParams::default().tail_length,
        };
        for (name, text) in [
            ("link-server.key", key.to_text()),
            ("link-tokens.txt", tokens.to_text()),
            ("bench.link", file.to_text()),
        ] {
            cipherlink_files::write(
                &dir.path().join(name),
                text.as_bytes(),
                cipherlink_files::Access::Private,
                cipherlink_files::Existing::Refuse,
            )
            .map_err(fail)?;
        }
        Ok(Material { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn spare_addr() -> Result<SocketAddr, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    listener.local_addr().map_err(fail)
}

fn spawn(program: &Path, args: &[String]) -> Result<Child, BenchError> {
    Command::new(program)
        .args(args)
        // Errors only, as stunnel's `debug = 3`: per-tunnel logs are not
        // what is measured, and the readiness probes would log as failures.
        .env("CIPHERLINK_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("starting {}: {e}", program.display())))
}

/// Waits until `addr` accepts a TCP connection (bounded).
async fn wait_listening(addr: SocketAddr, who: &str) -> Result<(), BenchError> {
    let start = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(fail(format!("{who} did not listen on {addr} within 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A running pair (or nothing, for `direct`): where clients connect, and
/// the processes whose memory counts.
struct Pair {
    entry: SocketAddr,
    children: Vec<Child>,
}

async fn our_pair(
    options: &BenchOptions,
    material: &Material,
    transport: Transport,
    backend: SocketAddr,
) -> Result<Pair, BenchError> {
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    let name = transport.name().to_string();
    let mut server = vec![
        "proxy".into(),
        "server".into(),
        "--listen".into(),
        server_addr.to_string(),
        "--forward".into(),
        backend.to_string(),
        "--transport".into(),
        name.clone(),
        "--max-connections".into(),
        "20000".into(),
    ];
    let mut client = vec![
        "proxy".into(),
        "client".into(),
        "--listen".into(),
        client_addr.to_string(),
        "--connect".into(),
        server_addr.to_string(),
        "--transport".into(),
        name,
        "--max-connections".into(),
        "20000".into(),
    ];
    if let Some(size) = options.buffer_size {
        for args in [&mut server, &mut client] {
            args.extend(["--buffer-size".into(), size.to_string()]);
        }
    }
    match transport {
        Transport::Tls => {
            server.extend(["--cert".into(), material.path("server.crt")]);
            server.extend(["--key".into(), material.path("server.key")]);
            client.extend(["--ca".into(), material.path("ca.crt")]);
            if let Some(groups) = &options.groups {
                // The proxies' own --groups, in the names it parses.
                let list = groups
                    .iter()
                    .map(|g| g.name())
                    .collect::<Vec<_>>()
                    .join(",");
                server.extend(["--groups".into(), list.clone()]);
                client.extend(["--groups".into(), list]);
            }
        }
        Transport::V1 => {
            server.extend(["--v1-key".into(), material.path("v1-server.key")]);
            server.extend(["--v1-peer".into(), material.path("v1-client.pub")]);
            client.extend(["--v1-key".into(), material.path("v1-client.key")]);
            client.extend(["--v1-peer".into(), material.path("v1-server.pub")]);
        }
        Transport::Link => {
            server.extend(["--link-key".into(), material.path("link-server.key")]);
            server.extend(["--link-tokens".into(), material.path("link-tokens.txt")]);
            client.extend(["--link-file".into(), material.path("bench.link")]);
        }
        Transport::Plain => {}
    }
    let children = vec![
        spawn(&options.program, &server)?,
        spawn(&options.program, &client)?,
    ];
    wait_listening(server_addr, "proxy server").await?;
    wait_listening(client_addr, "proxy client").await?;
    Ok(Pair {
        entry: client_addr,
        children,
    })
}

async fn stunnel_pair(
    stunnel: &Path,
    material: &Material,
    backend: SocketAddr,
) -> Result<Pair, BenchError> {
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    let common = "foreground = yes\npid =\ndebug = 3\n";
    let server = format!(
        "{common}[server]\naccept = {server_addr}\nconnect = {backend}\ncert = {}\nkey = {}\n",
        material.path("server.crt"),
        material.path("server.key")
    );
    let client = format!(
        "{common}[client]\nclient = yes\naccept = {client_addr}\nconnect = {server_addr}\n\
         CAfile = {}\nverifyChain = yes\ncheckHost = localhost\n",
        material.path("ca.crt")
    );
    let mut children = Vec::new();
    for (name, text) in [
        ("stunnel-server.conf", server),
        ("stunnel-client.conf", client),
    ] {
        let path = material.dir.path().join(name);
        std::fs::write(&path, text).map_err(fail)?;
        children.push(spawn(stunnel, &[path.display().to_string()])?);
    }
    wait_listening(server_addr, "stunnel server").await?;
    wait_listening(client_addr, "stunnel client").await?;
    Ok(Pair {
        entry: client_addr,
        children,
    })
}

/// Sends `bytes` through one connection to the sink; MB/s from the first
/// byte to the sink's count (which proves every byte arrived).
async fn throughput(entry: SocketAddr, bytes: u64) -> Result<f64, BenchError> {
    let mut stream = TcpStream::connect(entry).await.map_err(fail)?;
    let _ = stream.set_nodelay(true);
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    stream.write_all(&[MODE_SINK]).await.map_err(fail)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).await.map_err(fail)?;
        left -= n as u64;
    }
    stream.shutdown().await.map_err(fail)?;
    let mut count = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(600), stream.read_exact(&mut count))
        .await
        .map_err(|_| fail("throughput: no count from the sink"))?
        .map_err(fail)?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(count);
    if got != bytes {
        return Err(fail(format!("throughput: sink got {got} of {bytes} bytes")));
    }
    Ok(bytes as f64 / secs / 1e6)
}

async fn one_conn(entry: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(entry).await?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&[MODE_ECHO, b'p', b'i', b'n', b'g'])
        .await?;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await?;
    if &back != b"ping" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

/// Connections per second over `duration`, `concurrency` at a time.
async fn conn_rate(
    entry: SocketAddr,
    duration: Duration,
    concurrency: usize,
) -> Result<(f64, u64), BenchError> {
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        workers.spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(10), one_conn(entry)).await {
                    Ok(Ok(())) => ok += 1,
                    _ => errors += 1,
                }
            }
            (ok, errors)
        });
    }
    let (mut ok, mut errors) = (0, 0);
    while let Some(done) = workers.join_next().await {
        let (o, e) = done.map_err(fail)?;
        ok += o;
        errors += e;
    }
    Ok((ok as f64 / start.elapsed().as_secs_f64(), errors))
}

fn rss_kib(child: &Child) -> Result<u64, BenchError> {
    let pid = child.id().ok_or_else(|| fail("a proxy process exited"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(fail)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| fail("no VmRSS in /proc"))
}

/// Opens `count` idle tunnels spread over pairs of `transport`; returns
/// RSS growth per tunnel pair in KiB.
async fn idle_memory(
    options: &BenchOptions,
    material: &Material,
    transport: Transport,
    backend: SocketAddr,
    count: usize,
) -> Result<f64, BenchError> {
    let pairs_needed = count.div_ceil(IDLE_PER_PAIR);
    let mut pairs = Vec::new();
    for _ in 0..pairs_needed {
        pairs.push(our_pair(options, material, transport, backend).await?);
    }
    // Warm up each pair (first handshake, allocator arenas) before the baseline.
    for pair in &pairs {
        one_conn(pair.entry).await.map_err(fail)?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: u64 = pairs
        .iter()
        .flat_map(|p| p.children.iter())
        .map(rss_kib)
        .sum::<Result<u64, _>>()?;
    let mut open = Vec::with_capacity(count);
    for i in 0..count {
        let entry = pairs[i % pairs.len()].entry;
        let mut stream = TcpStream::connect(entry).await.map_err(fail)?;
        // One echo proves the tunnel reaches the backend, then it idles.
        stream.write_all(&[MODE_ECHO, b'i']).await.map_err(fail)?;
        let mut one = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut one))
            .await
            .map_err(|_| fail(format!("idle tunnel {i} got no echo")))?
            .map_err(fail)?;
        open.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: u64 = pairs
        .iter()
        .flat_map(|p| p.children.iter())
        .map(rss_kib)
        .sum::<Result<u64, _>>()?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// Runs every case; `progress` gets a line as each result comes in.
pub async fn run(options: &BenchOptions, progress: impl Fn(&str)) -> Result<Report, BenchError> {
    let material = Material::new()?;
    let backend = spare_addr()?;
    let _helper = spawn(
        &options.program,
        &[
            "bench".into(),
            "proxy".into(),
            "--backend-only".into(),
            backend.to_string(),
        ],
    )?;
    wait_listening(backend, "backend helper").await?;
    let mut cases: Vec<String> = vec!["direct".into(), "plain".into()];
    for t in &options.transports {
        if *t != Transport::Plain {
            cases.push(t.name().into());
        }
    }
    if options.stunnel.is_some() {
        cases.push("stunnel".into());
    }
    let mut rows = Vec::new();
    for case in cases {
        let pair = match case.as_str() {
            "direct" => None,
            "stunnel" => match &options.stunnel {
                Some(stunnel) => Some(stunnel_pair(stunnel, &material, backend).await?),
                None => None,
            },
            name => {
                let transport: Transport = name.parse().map_err(fail)?;
                Some(our_pair(options, &material, transport, backend).await?)
            }
        };
        let entry = pair.as_ref().map_or(backend, |p| p.entry);
        let mb_s = throughput(entry, options.bytes).await?;
        let (rate, errors) = conn_rate(entry, options.duration, options.concurrency).await?;
        drop(pair);
        let (idle_tunnels, per_pair) = match case.parse::<Transport>() {
            Ok(transport) if options.idle > 0 => (
                options.idle,
                Some(idle_memory(options, &material, transport, backend, options.idle).await?),
            ),
            _ => (0, None),
        };
        let row = Row {
            case,
            throughput_mb_s: mb_s,
            conns_per_s: rate,
            conn_errors: errors,
            idle_tunnels,
            idle_kib_per_pair: per_pair,
        };
        progress(&format_row(&row));
        rows.push(row);
    }
    let find = |name: &str| rows.iter().find(|r| r.case == name);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Ok(Report {
        tls_vs_plain_throughput: ratio(
            find("tls").map(|r| r.throughput_mb_s),
            find("plain").map(|r| r.throughput_mb_s),
        ),
        tls_vs_stunnel_conns: ratio(
            find("tls").map(|r| r.conns_per_s),
            find("stunnel").map(|r| r.conns_per_s),
        ),
        rows,
        bytes: options.bytes,
        duration_s: options.duration.as_secs_f64(),
        concurrency: options.concurrency,
    })
}

/// One printed line per case.
pub fn format_row(row: &Row) -> String {
    let idle = match row.idle_kib_per_pair {
        Some(kib) => format!(
            "  idle: {:.1} KiB/tunnel pair ({} tunnels)",
            kib, row.idle_tunnels
        ),
        None => String::new(),
    };
    format!(
        "{:<8} {:>8.1} MB/s  {:>8.0} conns/s ({} errors){idle}",
        row.case, row.throughput_mb_s, row.conns_per_s, row.conn_errors
    )
}
