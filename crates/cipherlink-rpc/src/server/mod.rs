//! `cipherlink rpc serve`: the ScoreService over TLS 1.3, mutual TLS, or
//! (only when asked) plaintext.
//!
//! tonic serves connections that this module accepts and handshakes itself
//! (`serve_with_incoming`): every socket gets TCP_NODELAY, every handshake a
//! timeout, and a failed handshake (garbage, wrong CA, no client certificate)
//! costs only that connection.

mod conn;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

pub use conn::Conn;
pub use service::Scorer;

use crate::error::RpcError;
use crate::pb::score_service_server::ScoreServiceServer;
use crate::timer::Timer;

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

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RpcError> {
        let opts = self.opts;
        let timer = if opts.precise_timer && !opts.delay.is_zero() {
            Timer::precise()
        } else {
            Timer::Tokio
        };
        let service = ScoreServiceServer::new(Scorer::new(opts.delay, timer))
            .max_decoding_message_size(opts.max_request_bytes);
        // A bounded queue: when tonic falls behind, accepting pauses.
        let (tx, rx) = mpsc::channel::<Result<Conn, std::io::Error>>(64);
        let acceptor = tokio::spawn(accept_loop(self.listener, opts.clone(), tx));
        let result = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(opts.max_concurrent_streams))
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
            .await
            .map_err(|e| RpcError::Serve(crate::error::chain(&e)));
        acceptor.abort();
        result
    }
}

async fn accept_loop(
    listener: TcpListener,
    opts: ServerOptions,
    tx: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    let acceptor = opts.tls.clone().map(TlsAcceptor::from);
    let handshakes = Arc::new(Semaphore::new(opts.max_handshakes.max(1)));
    loop {
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
        let Some(acceptor) = acceptor.clone() else {
            if tx.send(Ok(Conn::Plain(tcp))).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let tx = tx.clone();
        let limit = opts.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                }
                // debug, not info: anyone can make these, and logs must not be a lever.
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out after {limit:?}"),
            }
        });
    }
}
