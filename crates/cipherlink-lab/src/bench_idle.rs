//! `cipherlink bench idle`: what an idle connection costs a server in memory.
//!
//! Opens N connections that complete their handshake and then send nothing,
//! and reads the server's resident memory (VmRSS) before and after:
//! `(after - before) / N` is its memory per idle connection. The server runs
//! in a process of its own (spawned, or any server named by its PIDs), so the
//! client's own tunnels are not counted, and each side has its own
//! open-file limit: 10,000 connections need 10,000 descriptors on each side.
//! Plain TCP against a plain echo server of the same shape runs in the same
//! run as the baseline. Before and after are taken with a few warm-up
//! connections already open, so one-time costs (runtime threads, lazily
//! built tables) are not charged to the measured connections.

mod child;
pub mod plain;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cipherlink::certs::{self, CertOptions};
use cipherlink::{Config, Context, PemSource, Tunnel};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fd_limit::{self, FdLimit};
use crate::LabError;

/// Connections opened (and kept) before the "before" reading.
const WARM_UP: usize = 16;
/// One connection's connect and handshake.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// What the idle connections are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleMode {
    /// A full TLS 1.3 handshake, then nothing.
    Tls,
    /// A TCP connection, then nothing: the baseline.
    Plain,
}

impl std::str::FromStr for IdleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tls" => Ok(IdleMode::Tls),
            "plain" => Ok(IdleMode::Plain),
            _ => Err(format!("unknown mode {s:?}; valid: tls, plain")),
        }
    }
}

impl std::fmt::Display for IdleMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdleMode::Tls => "tls",
            IdleMode::Plain => "plain",
        })
    }
}

/// What a spawned server is started with.
#[derive(Debug)]
pub struct ChildSpec<'a> {
    /// TLS (a server like `cipherlink serve --echo`) or plain ([`plain::serve`]).
    pub mode: IdleMode,
    /// The server certificate (PEM file), for TLS.
    pub cert: &'a Path,
    /// Its private key (PEM file), for TLS.
    pub key: &'a Path,
}

/// Builds the command that starts the server for one mode, listening on a
/// port of its choice on 127.0.0.1. The server must print a line
/// `serving ... on ADDR ...` on stderr once it listens, as `cipherlink
/// serve` does.
pub type ChildCommand = Arc<dyn Fn(&ChildSpec<'_>) -> Command + Send + Sync>;

/// Which server is measured.
pub enum IdleServer {
    /// A fresh server process per mode.
    Spawn(ChildCommand),
    /// A running server.
    Target {
        /// Where it listens.
        addr: SocketAddr,
        /// The processes whose memory is summed (e.g. nginx's workers).
        pids: Vec<u32>,
        /// The CA that signed its certificate (needed for TLS).
        ca: Option<PemSource>,
        /// The name to verify (defaults to the address).
        server_name: Option<String>,
    },
}

/// Options of one run.
pub struct IdleBenchOptions {
    /// Idle connections per mode.
    pub connections: usize,
    /// Modes, in order.
    pub modes: Vec<IdleMode>,
    /// The server.
    pub server: IdleServer,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// Told as the run goes (e.g. to draw a progress bar); `None`: nothing.
    pub observer: Option<IdleObserver>,
}

/// What a running benchmark reports as it goes; the caller decides how to
/// show it (the lab prints nothing).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum IdleEvent {
    /// Opening the measured connections of a mode begins.
    Opening {
        /// The mode.
        mode: IdleMode,
        /// How many.
        total: usize,
    },
    /// One more connection opened (or failed to).
    Tried,
    /// Opening the connections of a mode ended.
    Opened,
    /// A limit of this machine that the run had to honour, in words (also
    /// in the report's `limits`).
    Limited(String),
}

/// A callback for [`IdleEvent`]s, called from any thread.
pub type IdleObserver = crate::observer::Observer<IdleEvent>;

/// One mode's result.
#[derive(Debug, Clone, Serialize)]
pub struct IdleCase {
    /// The mode.
    pub mode: IdleMode,
    /// The server measured.
    pub server: String,
    /// The processes whose memory was read.
    pub pids: Vec<u32>,
    /// Connections asked for.
    pub requested: usize,
    /// Connections that connected and (TLS) completed their handshake.
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Of the opened connections, those still open when memory was read
    /// (not closed by the server).
    pub still_open: usize,
    /// Seconds to open them all.
    pub open_seconds: f64,
    /// The server's resident memory with only the warm-up connections open.
    pub rss_before_bytes: u64,
    /// The same with every connection open.
    pub rss_after_bytes: u64,
    /// `(after - before) / opened`.
    pub bytes_per_connection: Option<f64>,
}

/// A run's results.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connections asked for per mode.
    pub connections: usize,
    /// This (client) process's open-file limit after raising it.
    pub client_fd_limit: FdLimit,
    /// What the limits did not allow, in words (empty if nothing).
    pub limits: Vec<String>,
    /// One per mode.
    pub cases: Vec<IdleCase>,
}

/// Runs the benchmark and returns its report.
pub async fn run(options: &IdleBenchOptions) -> Result<IdleReport, LabError> {
    let fds = fd_limit::raise()
        .map_err(|e| LabError::Setup(format!("reading the open-file limit: {e}")))?;
    let mut limits = Vec::new();
    // Past the limit, sockets fail and so would reading the server's
    // memory: open what fits, and say so.
    let fits = fds.connections().saturating_sub(WARM_UP);
    let connections = options.connections.min(fits);
    if connections < options.connections {
        let note = format!(
            "this process may open {} files (hard limit {}): opening {} connections, not the {} asked for \
             (raise the hard limit with `ulimit -Hn` as root)",
            fds.soft, fds.hard, connections, options.connections
        );
        IdleObserver::emit(options.observer.as_ref(), IdleEvent::Limited(note.clone()));
        limits.push(note);
    }
    if connections == 0 {
        return Err(LabError::Setup(format!(
            "the open-file limit ({}) leaves no room for connections",
            fds.soft
        )));
    }
    let bundle = certs::generate(&CertOptions::default())?;
    let dir = tempfile::tempdir().map_err(|e| LabError::Setup(format!("temp dir: {e}")))?;
    bundle.write_to(dir.path())?;
    let mut cases = Vec::with_capacity(options.modes.len());
    for &mode in &options.modes {
        let case = match &options.server {
            IdleServer::Spawn(command) => {
                let spec = ChildSpec {
                    mode,
                    cert: &dir.path().join("server.crt"),
                    key: &dir.path().join("server.key"),
                };
                let command = command(&spec);
                let label = describe(&command);
                let server = child::spawn(command)?;
                let client = match mode {
                    IdleMode::Tls => Client::Tls(client_context(
                        PemSource::inline(bundle.ca.cert.clone()),
                        Some("localhost".into()),
                    )?),
                    IdleMode::Plain => Client::Plain { echo: true },
                };
                let case = measure(
                    options,
                    connections,
                    mode,
                    label,
                    server.addr,
                    vec![server.pid()],
                    client,
                )
                .await?;
                drop(server);
                case
            }
            IdleServer::Target {
                addr,
                pids,
                ca,
                server_name,
            } => {
                let client = match (mode, ca) {
                    (IdleMode::Tls, Some(ca)) => {
                        Client::Tls(client_context(ca.clone(), server_name.clone())?)
                    }
                    (IdleMode::Tls, None) => {
                        return Err(LabError::Setup(
                            "TLS against a target needs the CA that signed its certificate".into(),
                        ))
                    }
                    // Any server's port: no echo to expect.
                    (IdleMode::Plain, _) => Client::Plain { echo: false },
                };
                let label = format!("target {addr}");
                measure(
                    options,
                    connections,
                    mode,
                    label,
                    *addr,
                    pids.clone(),
                    client,
                )
                .await?
            }
        };
        cases.push(case);
    }
    Ok(IdleReport {
        connections: options.connections,
        client_fd_limit: fds,
        limits,
        cases,
    })
}

fn client_context(ca: PemSource, server_name: Option<String>) -> Result<Context, LabError> {
    let mut config = Config::builder()
        .trusted_ca(ca)
        // Every connection a full handshake, as a fleet of distinct clients.
        .resumption(false);
    if let Some(name) = server_name {
        config = config.server_name(name);
    }
    Ok(Context::client(&config.build())?)
}

/// `cipherlink serve` from `/path/to/cipherlink serve --listen ...`.
fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned());
    let words: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| !a.starts_with('-'))
        .collect();
    std::iter::once(program)
        .chain(words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How the client opens a connection.
#[derive(Clone)]
enum Client {
    /// A full handshake with this Context.
    Tls(Context),
    /// TCP; with `echo`, one byte there and back: it paces the opening to
    /// what the server accepts (plain connects alone outrun its accept
    /// queue, and dropped SYNs cost a second each) and shows the server
    /// holds the connection, as a TLS handshake does.
    Plain { echo: bool },
}

enum Conn {
    Tls(Box<Tunnel<TcpStream>>),
    Plain(TcpStream),
}

async fn measure(
    options: &IdleBenchOptions,
    connections: usize,
    mode: IdleMode,
    server: String,
    addr: SocketAddr,
    pids: Vec<u32>,
    client: Client,
) -> Result<IdleCase, LabError> {
    let warm = open_all(addr, &client, WARM_UP, options.concurrency, None).await;
    if let Some(err) = warm.first_error.filter(|_| warm.conns.is_empty()) {
        return Err(LabError::Setup(format!(
            "{server} at {addr}: no warm-up connection opened: {err}"
        )));
    }
    let rss_before = crate::procfs::settled_rss(&pids).await?;
    let observer = options.observer.as_ref();
    IdleObserver::emit(
        observer,
        IdleEvent::Opening {
            mode,
            total: connections,
        },
    );
    let start = Instant::now();
    let mut opened = open_all(addr, &client, connections, options.concurrency, observer).await;
    let open_seconds = start.elapsed().as_secs_f64();
    IdleObserver::emit(observer, IdleEvent::Opened);
    let rss_after = crate::procfs::settled_rss(&pids).await?;
    let mut still_open = 0;
    for conn in &mut opened.conns {
        still_open += usize::from(is_open(conn).await);
    }
    let count = opened.conns.len();
    drop(opened.conns);
    drop(warm.conns);
    Ok(IdleCase {
        mode,
        server,
        pids,
        requested: options.connections,
        opened: count,
        failed: opened.failed,
        first_error: opened.first_error,
        still_open,
        open_seconds,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_connection: (count > 0)
            .then(|| (rss_after as f64 - rss_before as f64) / count as f64),
    })
}

struct Opened {
    conns: Vec<Conn>,
    failed: usize,
    first_error: Option<String>,
}

/// Opens `count` connections, `concurrency` at a time, and keeps them.
async fn open_all(
    addr: SocketAddr,
    client: &Client,
    count: usize,
    concurrency: usize,
    observer: Option<&IdleObserver>,
) -> Opened {
    let next = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let workers: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let (next, first_error, client, observer) = (
                next.clone(),
                first_error.clone(),
                client.clone(),
                observer.cloned(),
            );
            tokio::spawn(async move {
                let mut conns = Vec::new();
                let mut failed = 0;
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let opening = tokio::time::timeout(OPEN_TIMEOUT, open(addr, &client));
                    match opening.await {
                        Ok(Ok(conn)) => conns.push(conn),
                        outcome => {
                            failed += 1;
                            let message = match outcome {
                                Ok(Err(message)) => message,
                                _ => format!("not open within {OPEN_TIMEOUT:?}"),
                            };
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert(message);
                            }
                        }
                    }
                    IdleObserver::emit(observer.as_ref(), IdleEvent::Tried);
                }
                (conns, failed)
            })
        })
        .collect();
    let mut opened = Opened {
        conns: Vec::with_capacity(count),
        failed: 0,
        first_error: None,
    };
    for worker in workers {
        match worker.await {
            Ok((conns, failed)) => {
                opened.conns.extend(conns);
                opened.failed += failed;
            }
            Err(e) => {
                opened
                    .first_error
                    .get_or_insert(format!("opening task: {e}"));
            }
        }
    }
    if let Ok(mut first) = first_error.lock() {
        if let Some(message) = first.take() {
            opened.first_error = Some(message);
        }
    }
    opened
}

async fn open(addr: SocketAddr, client: &Client) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    match client {
        Client::Plain { echo: false } => Ok(Conn::Plain(stream)),
        Client::Plain { echo: true } => {
            let mut stream = stream;
            let mut byte = [b'.'];
            stream
                .write_all(&byte)
                .await
                .map_err(|e| format!("write to {addr}: {e}"))?;
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| format!("read echo from {addr}: {e}"))?;
            Ok(Conn::Plain(stream))
        }
        Client::Tls(context) => {
            let _ = stream.set_nodelay(true);
            let tunnel = context
                .connect(stream, addr.to_string())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Conn::Tls(Box::new(tunnel)))
        }
    }
}

/// Whether the server still holds `conn`: one look at what arrived, without
/// waiting. A closed connection shows its end (FIN, close_notify) at once;
/// an open one has nothing, or a session ticket, which the tunnel takes in.
async fn is_open(conn: &mut Conn) -> bool {
    match conn {
        Conn::Plain(stream) => match stream.try_read(&mut [0u8; 1]) {
            Ok(n) => n > 0,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        },
        Conn::Tls(tunnel) => {
            tokio::select! {
                biased;
                read = tunnel.read_chunk(1) => matches!(read, Ok(data) if !data.is_empty()),
                () = std::future::ready(()) => true,
            }
        }
    }
}

/// `pid 1,2,3`.
pub fn pids_text(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!("pid {}", list.join(","))
}

impl IdleReport {
    /// The extra bytes per idle connection of TLS over plain TCP, when both ran.
    pub fn tls_over_plain(&self) -> Option<f64> {
        let per = |mode| {
            self.cases
                .iter()
                .find(|c| c.mode == mode)
                .and_then(|c| c.bytes_per_connection)
        };
        Some(per(IdleMode::Tls)? - per(IdleMode::Plain)?)
    }
}
