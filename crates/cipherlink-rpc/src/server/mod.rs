//! `cipherlink rpc serve`: the ScoreService over TLS 1.3, mutual TLS, or
//! (only when asked) plaintext.
//!
//! tonic serves connections that this module accepts and handshakes itself
//! (`serve_with_incoming`): every socket gets TCP_NODELAY, every handshake a
//! timeout, and a failed handshake (garbage, wrong CA, no client certificate)
//! costs only that connection.

mod conn;
mod service;
mod shard;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub use conn::Conn;
pub use service::Scorer;

use crate::error::RpcError;
use crate::pb::score_service_server::ScoreServiceServer;
use crate::timer::Timer;
use shard::ShardSetup;

/// Largest request accepted by default: gRPC's usual 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

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
            max_concurrent_streams: 4096,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            threads: 0,
        }
    }
}

/// A server with its socket bound, not yet serving.
pub struct BoundServer {
    listener: TcpListener,
    opts: ServerOptions,
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
        Ok(Self { listener, opts })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        self.listener.local_addr().map_err(|source| RpcError::Bind {
            addr: self.opts.addr,
            source,
        })
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
        let setup = ShardSetup {
            service: ScoreServiceServer::new(Scorer::new(opts.delay, timer))
                .max_decoding_message_size(opts.max_request_bytes),
            tls: opts.tls.clone().map(TlsAcceptor::from),
            handshake_timeout: opts.handshake_timeout,
            handshakes: Arc::new(Semaphore::new(opts.max_handshakes.max(1))),
            max_concurrent_streams: opts.max_concurrent_streams,
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
