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
use shard::{Accepted, ShardSetup};

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

    /// Serves until `shutdown` completes (or until this future is dropped).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RpcError> {
        let opts = self.opts;
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
            max_concurrent_streams: opts.max_concurrent_streams,
        };
        let count = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Dropping `stop` (this future dropped, or returning) stops the shards too.
        let (stop, stopped) = watch::channel(false);
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, rx) = mpsc::channel(64);
            threads.push(shard::spawn(index, setup.clone(), rx, stopped.clone())?);
            queues.push(tx);
        }
        let handshakes = opts
            .tls
            .is_some()
            .then(|| Arc::new(Semaphore::new(opts.max_handshakes.max(1))));
        tokio::select! {
            () = accept_loop(&self.listener, handshakes, &queues) => {}
            () = shutdown => {}
        }
        let _ = stop.send(true);
        drop(queues);
        let joined = tokio::task::spawn_blocking(move || {
            threads.into_iter().try_for_each(|t| {
                t.join()
                    .map_err(|_| RpcError::Serve("a server thread panicked".into()))?
            })
        })
        .await;
        joined.map_err(|e| RpcError::Serve(format!("joining the server threads: {e}")))?
    }
}

/// Accepts connections and deals them to the shards in turn. Returns only
/// when every shard has gone.
async fn accept_loop(
    listener: &TcpListener,
    handshakes: Option<Arc<Semaphore>>,
    queues: &[mpsc::Sender<Accepted>],
) {
    let mut next = 0usize;
    loop {
        // Too many handshakes in progress: leave the rest in the listen backlog.
        let permit = match &handshakes {
            Some(limit) => match limit.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
            None => None,
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small request/response messages: Nagle + delayed ACK would add 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, "cannot hand the connection to a server thread: {e}");
                continue;
            }
        };
        let mut accepted = Accepted { tcp, peer, permit };
        // A shard whose queue is full is skipped; one that has gone is skipped for good.
        let mut tries = 0;
        loop {
            let queue = &queues[next % queues.len()];
            next = next.wrapping_add(1);
            match queue.try_send(accepted) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Full(back)) if tries < queues.len() => {
                    accepted = back;
                    tries += 1;
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    // Every shard is backed up: wait for this one.
                    if queue.send(back).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    if queues.iter().all(mpsc::Sender::is_closed) {
                        return;
                    }
                    accepted = back;
                }
            }
        }
    }
}
