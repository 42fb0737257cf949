//! `cipherlink rpc serve`: the ScoreService over TLS 1.3, mutual TLS, or
//! (only when asked) plaintext.
//!
//! tonic serves connections that this module accepts and handshakes itself
//! (`serve_with_incoming`): every socket gets TCP_NODELAY, every handshake a
//! timeout, and a failed handshake (garbage, wrong CA, no client certificate)
//! costs only that connection, and a debug line (a warn summary at most
//! every 10 s: [`cipherlink::server::FailureLog`]).
//!
//! What one client can hold is bounded: open connections (`max_connections`,
//! further ones wait in the listen backlog), handshakes in progress
//! (`max_handshakes`), time without traffic on an established connection
//! (`idle_timeout`), and per connection, streams x request size
//! (`max_concurrent_streams` x `max_request_bytes`, 1024 x 64 KiB = 64 MiB by
//! default: tonic buffers each request whole before decoding it) and header
//! lists (16 KiB a stream).

mod conn;
mod service;
mod shard;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink::server::{FailureLog, DEFAULT_SUMMARY_INTERVAL};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub use conn::Conn;
pub use service::{Answered, Scorer};

use crate::error::RpcError;
use crate::pb::score_service_server::ScoreServiceServer;
use crate::timer::Timer;
use shard::ShardSetup;

/// Largest request accepted by default: 64 KiB, far above the lab's
/// requests (tens of bytes), so that with [`DEFAULT_MAX_CONCURRENT_STREAMS`]
/// a connection buffers at most 64 MiB (gRPC's usual 4 MiB would allow
/// 4 GiB). Raise it for large payloads, and lower the streams with it.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// HTTP/2 streams one client may have open at once, by default.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Connections open at once, by default (all server threads together).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long an established connection may go without a byte either way.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Above this, streams x request size is warned about at start.
const LARGE_CONNECTION_BUFFER: u64 = 256 * 1024 * 1024;

/// Largest header list of one request (hyper's own default, said here).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Artificial delay per call.
    pub delay: Duration,
    /// TLS configuration; `None` means plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Use the precise timer for the delay instead of tokio's 1 ms wheel.
    pub precise_timer: bool,
    /// HTTP/2 streams one client may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest request message accepted; larger ones get RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
    /// Time allowed for a TLS handshake before the socket is dropped.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more wait in the accept queue.
    pub max_handshakes: usize,
    /// Connections open at once (handshaking or established, all threads
    /// together); more wait in the listen backlog.
    pub max_connections: usize,
    /// Close an established connection after this long without a byte in
    /// either direction; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// Where failed handshakes are counted and summarised.
    pub failure_log: Arc<FailureLog>,
    /// Server threads, each running whole connections (a connection never
    /// moves between threads); 0 means one per core.
    pub threads: usize,
}

impl ServerOptions {
    /// Defaults for everything but the address, delay and TLS.
    pub fn new(addr: SocketAddr, delay: Duration, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self {
            addr,
            delay,
            tls,
            precise_timer: true,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            failure_log: FailureLog::new("TLS handshakes", DEFAULT_SUMMARY_INTERVAL),
            threads: 0,
        }
    }
}

/// A server with its socket bound, not yet serving.
pub struct BoundServer {
    listener: TcpListener,
    opts: ServerOptions,
    /// Counted only when asked for: one shared atomic per call costs a
    /// cache line moving between the server threads at 100k calls/s.
    answered: Option<Answered>,
}

impl BoundServer {
    /// Binds the listening socket (port 0 picks a free one).
    pub async fn bind(opts: ServerOptions) -> Result<Self, RpcError> {
        let listener = TcpListener::bind(opts.addr)
            .await
            .map_err(|source| RpcError::Bind {
                addr: opts.addr,
                source,
            })?;
        Ok(Self {
            listener,
            opts,
            answered: None,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        self.listener.local_addr().map_err(|source| RpcError::Bind {
            addr: self.opts.addr,
            source,
        })
    }

    /// The count of calls this server answers once running (counting
    /// starts with this call; a server nobody asks does not count).
    pub fn answered(&mut self) -> Answered {
        self.answered.get_or_insert_with(Answered::default).clone()
    }

    /// Serves until `shutdown` completes (or until this future is dropped,
    /// or a server thread fails).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RpcError> {
        let opts = self.opts;
        let bind_err = |source| RpcError::Bind {
            addr: opts.addr,
            source,
        };
        let listener = self.listener.into_std().map_err(bind_err)?;
        let timer = if opts.precise_timer && !opts.delay.is_zero() {
            Timer::precise()
        } else {
            Timer::Tokio
        };
        let per_connection =
            u64::from(opts.max_concurrent_streams).saturating_mul(opts.max_request_bytes as u64);
        if per_connection > LARGE_CONNECTION_BUFFER {
            tracing::warn!(
                "max_concurrent_streams x max_request_bytes lets one connection buffer {} MiB \
                 of requests",
                per_connection >> 20
            );
        }
        let setup = ShardSetup {
            service: ScoreServiceServer::new(Scorer::new(opts.delay, timer, self.answered))
                .max_decoding_message_size(opts.max_request_bytes),
            tls: opts.tls.clone().map(TlsAcceptor::from),
            handshake_timeout: opts.handshake_timeout,
            handshakes: Arc::new(Semaphore::new(opts.max_handshakes.max(1))),
            connections: Arc::new(Semaphore::new(opts.max_connections.max(1))),
            idle_timeout: opts.idle_timeout,
            failures: opts.failure_log.clone(),
            max_concurrent_streams: opts.max_concurrent_streams,
            max_header_list_bytes: MAX_HEADER_LIST_BYTES,
        };
        let count = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Dropping `stop` (this future dropped, or returning) stops the shards too.
        let (stop, stopped) = watch::channel(false);
        let (ended, mut first_end) = mpsc::channel(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let listener = listener.try_clone().map_err(bind_err)?;
            let shard = shard::spawn(
                index,
                setup.clone(),
                listener,
                stopped.clone(),
                ended.clone(),
            );
            threads.push(shard?);
        }
        drop(ended);
        let ended_early = tokio::select! {
            () = shutdown => false,
            _ = first_end.recv() => true,
        };
        let _ = stop.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            threads.into_iter().try_for_each(|t| {
                t.join()
                    .map_err(|_| RpcError::Serve("a server thread panicked".into()))?
            })
        })
        .await
        .map_err(|e| RpcError::Serve(format!("joining the server threads: {e}")))?;
        joined?;
        if ended_early {
            return Err(RpcError::Serve("a server thread stopped on its own".into()));
        }
        Ok(())
    }
}
