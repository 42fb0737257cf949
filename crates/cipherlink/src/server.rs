//! A TLS accept loop with limits: many concurrent connections, each
//! handshake bounded by the Context's timeout, a cap on open connections,
//! and counters that show nothing leaks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::error::Error;
use crate::tunnel::Tunnel;

pub use crate::failure_log::{FailureLog, FailureSummary, DEFAULT_SUMMARY_INTERVAL};

/// Counters of one server, shared with whoever wants to watch it.
#[derive(Debug, Default)]
pub struct ServerStats {
    active: AtomicUsize,
    accepted: AtomicU64,
    handshake_failures: AtomicU64,
    completed: AtomicU64,
    handler_failures: AtomicU64,
}

impl ServerStats {
    /// Connections open right now (TCP accepted, not yet finished).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
    /// TCP connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Handshakes that failed or timed out.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }
    /// Connections whose handler returned `Ok`.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
    /// Connections whose handler returned an error after the handshake.
    pub fn handler_failures(&self) -> u64 {
        self.handler_failures.load(Ordering::Relaxed)
    }
}

/// Decrements the active count however the connection task ends (even on panic).
struct ActiveGuard(Arc<ServerStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A bound TLS listener, ready to run.
#[derive(Debug)]
pub struct TlsServer {
    listener: TcpListener,
    context: Context,
    max_connections: usize,
    stats: Arc<ServerStats>,
    failures: Arc<FailureLog>,
}

/// The default cap on simultaneously open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

impl TlsServer {
    /// Binds `addr` with a server Context.
    pub async fn bind(addr: SocketAddr, context: Context) -> Result<TlsServer, Error> {
        let listener = TcpListener::bind(addr).await.map_err(|error| Error::Io {
            peer: addr.to_string(),
            during: "bind",
            error,
        })?;
        Ok(TlsServer::from_listener(listener, context))
    }

    /// Uses an already bound listener.
    pub fn from_listener(listener: TcpListener, context: Context) -> TlsServer {
        TlsServer {
            listener,
            context,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            stats: Arc::default(),
            failures: FailureLog::new("TLS handshakes", DEFAULT_SUMMARY_INTERVAL),
        }
    }

    /// Caps simultaneously open connections; further clients wait in the
    /// kernel's accept backlog.
    pub fn max_connections(mut self, limit: usize) -> TlsServer {
        self.max_connections = limit.max(1);
        self
    }

    /// Where failed handshakes are counted and summarised (by default a
    /// warn line at most every [`DEFAULT_SUMMARY_INTERVAL`], each at debug).
    pub fn failure_log(mut self, log: Arc<FailureLog>) -> TlsServer {
        self.failures = log;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(|error| Error::Io {
            peer: "listener".into(),
            during: "local_addr",
            error,
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Runs the accept loop in a task. Each established tunnel goes to
    /// `handler`; handshake failures are counted and go to the
    /// [`FailureLog`].
    /// Abort the returned handle to stop accepting.
    pub fn spawn<H, F>(self, handler: H) -> JoinHandle<()>
    where
        H: Fn(Tunnel<TcpStream>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), Error>> + Send + 'static,
    {
        tokio::spawn(self.run(handler))
    }

    async fn run<H, F>(self, handler: H)
    where
        H: Fn(Tunnel<TcpStream>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let permits = Arc::new(Semaphore::new(self.max_connections));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            self.stats.active.fetch_add(1, Ordering::AcqRel);
            let guard = ActiveGuard(self.stats.clone());
            let stats = self.stats.clone();
            let context = self.context.clone();
            let handler = handler.clone();
            let failures = self.failures.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let _permit = permit;
                let _ = stream.set_nodelay(true);
                let mut tunnel = context.tunnel(stream, peer.to_string());
                if let Err(err) = tunnel.handshake().await {
                    stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    // Anyone can cause these: debug each, warn a summary.
                    failures.record(&peer, &err);
                    return;
                }
                match handler(tunnel).await {
                    Ok(()) => {
                        stats.completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        stats.handler_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "{err}");
                    }
                }
            });
        }
    }
}
