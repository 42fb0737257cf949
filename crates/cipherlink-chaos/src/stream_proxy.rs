//! An unprivileged TCP impairment proxy, in the manner of toxiproxy: it
//! accepts clients, connects each to the upstream, and forwards both
//! directions through a [`Shaper`] (latency, jitter, bandwidth, slicing,
//! stall, reset, bit corruption).
//!
//! This layer only moves bytes and keeps time; every decision is the
//! shaper's. Memory is bounded: each direction holds at most
//! [`ProxyConfig::queue_bytes`] of planned steps, counted as allocated
//! (see `stream_queue`: with `--slice 1` a byte costs some 72), in at most
//! [`QUEUE_CHUNKS`] plans, reading at most [`CHUNK`] bytes at a time; a
//! slow receiver stops the proxy reading, and TCP then slows the sender.
//! Every wait on a peer has a timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use crate::capture::Side;
use crate::recorder::Recorder;
use crate::stream_queue::{Held, QueueBudget, QUEUE_BYTES};
use crate::stream_shaper::{Impairments, Shaper, Step};

/// Largest read from either side.
pub const CHUNK: usize = 16 * 1024;
/// Planned chunks held per direction before the proxy stops reading; reads
/// are cut so that this many plans fit [`ProxyConfig::queue_bytes`].
pub const QUEUE_CHUNKS: usize = 16;

/// Errors of the proxy itself (per-connection failures are logged, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamProxyError {
    /// The listening socket could not be opened.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Accepting failed in a way that stops the proxy.
    #[error("accepting connections: {0}")]
    Accept(io::Error),
}

/// How one connection ended badly (logged with the client's address).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The upstream did not accept.
    #[error("connecting to upstream {upstream}: {source}")]
    Connect {
        /// The upstream address.
        upstream: String,
        /// Why.
        source: io::Error,
    },
    /// A peer sent nothing, or took nothing, for the idle timeout.
    #[error("{side} idle for {after:?} ({what})")]
    Idle {
        /// `client` or `upstream`.
        side: &'static str,
        /// The timeout.
        after: Duration,
        /// `read` or `write`.
        what: &'static str,
    },
    /// A socket error.
    #[error("{side}: {source}")]
    Io {
        /// `client` or `upstream`.
        side: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// The proxy's configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where each client is forwarded (`host:port`).
    pub upstream: String,
    /// Client to upstream.
    pub up: Impairments,
    /// Upstream to client.
    pub down: Impairments,
    /// Seed of every random draw; connection `n`, direction `d` draws from
    /// stream `2n + d` of it.
    pub seed: u64,
    /// Close a connection whose peer neither sends nor takes data this long.
    pub idle_timeout: Duration,
    /// Give up on the upstream's accept after this long.
    pub connect_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Where to record what each side received, as a pcap file.
    pub recorder: Option<Recorder>,
    /// Memory each direction of a connection may hold in planned steps
    /// (at least one byte's plan).
    pub queue_bytes: usize,
}

impl ProxyConfig {
    /// A proxy with no impairment and the default limits.
    pub fn new(listen: SocketAddr, upstream: impl Into<String>) -> Self {
        ProxyConfig {
            listen,
            upstream: upstream.into(),
            up: Impairments::default(),
            down: Impairments::default(),
            seed: 0,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_connections: 1024,
            recorder: None,
            queue_bytes: QUEUE_BYTES,
        }
    }
}

/// A bound proxy; [`StreamProxy::run`] serves it.
#[derive(Debug)]
pub struct StreamProxy {
    listener: TcpListener,
    config: Arc<ProxyConfig>,
}

impl StreamProxy {
    /// Opens the listening socket.
    pub async fn bind(config: ProxyConfig) -> Result<Self, StreamProxyError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StreamProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(StreamProxy {
            listener,
            config: Arc::new(config),
        })
    }

    /// The address clients connect to (with the port the system chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts and forwards until the task is dropped.
    pub async fn run(self) -> Result<(), StreamProxyError> {
        let slots = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let counter = AtomicU64::new(0);
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return Ok(());
            };
            let (client, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before accept:
                // wait a moment and go on, rather than stop serving.
                Err(err) if is_transient(&err) => {
                    tracing::warn!("accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(err) => return Err(StreamProxyError::Accept(err)),
            };
            let index = counter.fetch_add(1, Ordering::Relaxed);
            let config = self.config.clone();
            tokio::spawn(async move {
                match connection(client, &config, index).await {
                    Ok(outcome) => tracing::info!(%peer, index, "connection ended: {outcome}"),
                    Err(err) => tracing::info!(%peer, index, "connection failed: {err}"),
                }
                drop(permit);
            });
        }
    }
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || err.raw_os_error() == Some(24) // EMFILE
        || err.raw_os_error() == Some(23) // ENFILE
}

/// How a connection ended when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions reached end of stream.
    Closed,
    /// `reset_after` fired.
    Reset,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Closed => "closed",
            Outcome::Reset => "reset (--reset-after)",
        })
    }
}

async fn connection(
    mut client: TcpStream,
    config: &ProxyConfig,
    index: u64,
) -> Result<Outcome, ConnectionError> {
    let mut upstream = match timeout(
        config.connect_timeout,
        TcpStream::connect(config.upstream.as_str()),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(ConnectionError::Connect {
                upstream: config.upstream.clone(),
                source,
            })
        }
        Err(_) => {
            return Err(ConnectionError::Connect {
                upstream: config.upstream.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", config.connect_timeout),
                ),
            })
        }
    };
    // Slices must leave as separate segments.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let start = Instant::now();
    let recorder = config.recorder.as_ref();
    if let (Some(r), Ok(from), Ok(to)) = (recorder, client.peer_addr(), upstream.peer_addr()) {
        r.open(index, from, to);
    }
    let outcome = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = Direction {
            from: "client",
            to: "upstream",
            shaper: Shaper::new(config.up, config.seed, index.wrapping_mul(2)),
            queue: QueueBudget::new(config.queue_bytes, config.up.segment(), CHUNK, QUEUE_CHUNKS),
            idle: config.idle_timeout,
            start,
            record: recorder.map(|r| (r.clone(), index, Side::Client)),
        };
        let down = Direction {
            from: "upstream",
            to: "client",
            shaper: Shaper::new(config.down, config.seed, index.wrapping_mul(2) + 1),
            queue: QueueBudget::new(
                config.queue_bytes,
                config.down.segment(),
                CHUNK,
                QUEUE_CHUNKS,
            ),
            idle: config.idle_timeout,
            start,
            record: recorder.map(|r| (r.clone(), index, Side::Server)),
        };
        let up = up.run(client_read, upstream_write);
        let down = down.run(upstream_read, client_write);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let ended = tokio::select! {
                r = &mut up, if !up_done => { up_done = true; r }
                r = &mut down, if !down_done => { down_done = true; r }
            };
            match ended? {
                Outcome::Reset => break Outcome::Reset,
                Outcome::Closed if up_done && down_done => break Outcome::Closed,
                Outcome::Closed => {}
            }
        }
    };
    if outcome == Outcome::Reset {
        // With a zero linger time, closing sends RST instead of FIN.
        for stream in [&client, &upstream] {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
        if let Some(r) = recorder {
            r.reset(index);
        }
    }
    if let Some(r) = recorder {
        r.close(index).await;
    }
    Ok(outcome)
}

struct Direction {
    from: &'static str,
    to: &'static str,
    shaper: Shaper,
    queue: QueueBudget,
    idle: Duration,
    start: Instant,
    /// Recorder, connection index, and the side whose bytes these are.
    record: Option<(Recorder, u64, Side)>,
}

impl Direction {
    async fn run<R, W>(self, mut source: R, mut sink: W) -> Result<Outcome, ConnectionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (tx, mut rx) = mpsc::channel::<(Vec<Step>, Held)>(QUEUE_CHUNKS);
        let Direction {
            from,
            to,
            mut shaper,
            queue,
            idle,
            start,
            record,
        } = self;
        let reader = async move {
            let mut buf = vec![0u8; queue.read_limit()];
            loop {
                // Room for what this read can become, before taking it.
                let Some(mut held) = queue.reserve().await else {
                    return Ok(());
                };
                let n = match timeout(idle, source.read(&mut buf)).await {
                    Err(_) => {
                        return Err(ConnectionError::Idle {
                            side: from,
                            after: idle,
                            what: "read",
                        })
                    }
                    Ok(Err(source)) => return Err(ConnectionError::Io { side: from, source }),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => n,
                };
                let mut steps = shaper.plan(&buf[..n], start.elapsed());
                // An empty plan (blackholed or reset) still reads on, to see the close.
                if steps.is_empty() {
                    continue;
                }
                held.settle(&mut steps);
                if tx.send((steps, held)).await.is_err() {
                    return Ok(());
                }
            }
        };
        let writer = async move {
            let io = |source| ConnectionError::Io { side: to, source };
            // The plan's charge is paid back once its last step is done.
            while let Some((steps, _held)) = rx.recv().await {
                for step in steps {
                    match step {
                        Step::Write { at, data } => {
                            sleep_until(start + at).await;
                            match timeout(idle, sink.write_all(&data)).await {
                                Err(_) => {
                                    return Err(ConnectionError::Idle {
                                        side: to,
                                        after: idle,
                                        what: "write",
                                    })
                                }
                                Ok(result) => result.map_err(io)?,
                            }
                            if let Some((r, conn, side)) = &record {
                                r.data(*conn, *side, data);
                            }
                        }
                        Step::Pause(pause) => tokio::time::sleep(pause).await,
                        Step::Reset => return Ok(Outcome::Reset),
                        Step::Blackhole => {
                            // Discard until the source closes, then close too.
                            while rx.recv().await.is_some() {}
                        }
                    }
                }
            }
            let _ = timeout(idle, sink.shutdown()).await;
            if let Some((r, conn, side)) = &record {
                r.fin(*conn, *side);
            }
            Ok(Outcome::Closed)
        };
        tokio::pin!(reader, writer);
        let mut reader_done = false;
        loop {
            tokio::select! {
                r = &mut reader, if !reader_done => {
                    // The writer sees the channel close once it has drained it.
                    r?;
                    reader_done = true;
                }
                r = &mut writer => return r,
            }
        }
    }
}

#[cfg(test)]
#[path = "stream_proxy_tests.rs"]
mod tests;
