//! One server thread: a single-threaded runtime that owns whole connections.
//!
//! A connection's HTTP/2 state sits behind locks shared by its connection
//! task and its stream tasks. On a multi-threaded runtime those tasks land on
//! different cores, so every request pays for lock hand-offs and cross-core
//! wake-ups; a single busy channel measured 20,600 req/s that way against
//! 30,900 with everything on one thread. So each shard runs its connections
//! start to finish (accept, TLS handshake, HTTP/2, handlers) on its own
//! thread. Every shard accepts from the same listening socket: whichever is
//! free takes the next connection, and no connection waits for a hand-off
//! from another thread.

use std::time::Duration;

use cipherlink::server::FailureLog;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::conn::Conn;
use crate::error::RpcError;
use crate::pb::score_service_server::ScoreServiceServer;
use crate::server::Scorer;

/// What every shard shares.
#[derive(Clone)]
pub(super) struct ShardSetup {
    pub service: ScoreServiceServer<Scorer>,
    pub tls: Option<TlsAcceptor>,
    pub handshake_timeout: Duration,
    /// Handshakes in progress, all shards together.
    pub handshakes: Arc<Semaphore>,
    /// Open connections, all shards together.
    pub connections: Arc<Semaphore>,
    pub idle_timeout: Option<Duration>,
    pub failures: Arc<FailureLog>,
    pub max_concurrent_streams: u32,
    pub max_header_list_bytes: u32,
}

/// Starts shard `index` on a thread of its own, accepting from its copy of
/// the listening socket. It serves until `stop` changes or its sender is
/// dropped, and says so on `ended` when it returns.
pub(super) fn spawn(
    index: usize,
    setup: ShardSetup,
    listener: std::net::TcpListener,
    stop: watch::Receiver<bool>,
    ended: mpsc::Sender<()>,
) -> Result<std::thread::JoinHandle<Result<(), RpcError>>, RpcError> {
    std::thread::Builder::new()
        .name(format!("rpc-shard-{index}"))
        .spawn(move || {
            // Says so on `ended` however the thread ends, panics included.
            let _ended = EndedGuard(ended);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RpcError::Serve(format!("server thread {index}: runtime: {e}")))
                .and_then(|runtime| runtime.block_on(serve(setup, listener, stop)))
        })
        .map_err(|e| RpcError::Serve(format!("cannot start server thread {index}: {e}")))
}

struct EndedGuard(mpsc::Sender<()>);

impl Drop for EndedGuard {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

async fn serve(
    setup: ShardSetup,
    listener: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RpcError> {
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|e| RpcError::Serve(format!("registering the listening socket: {e}")))?;
    // A bounded queue: when tonic falls behind, handshakes wait.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Conn, std::io::Error>>(64);
    let acceptor = tokio::spawn(accept_loop(listener, setup.clone(), ready_tx));
    let result = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(setup.max_concurrent_streams))
        .http2_max_header_list_size(Some(setup.max_header_list_bytes))
        .add_service(setup.service)
        .serve_with_incoming_shutdown(ReceiverStream::new(ready_rx), async move {
            // A dropped sender means the server was dropped: stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
        .map_err(|e| RpcError::Serve(crate::error::chain(&e)));
    acceptor.abort();
    result
}

/// Accepts connections and hands them to tonic, after a TLS handshake with a
/// time limit when TLS is on. Each holds a connection slot from before its
/// accept until tonic drops it.
async fn accept_loop(
    listener: TcpListener,
    setup: ShardSetup,
    ready: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    let limit = setup.handshake_timeout;
    let idle = setup.idle_timeout;
    loop {
        // All slots taken: the next clients wait in the listen backlog.
        let slot = tokio::select! {
            slot = setup.connections.clone().acquire_owned() => slot,
            () = ready.closed() => return,
        };
        let Ok(slot) = slot else { return };
        // Ends when tonic stops taking connections (shutdown).
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Too many handshakes in progress: this one waits, and the rest stay
        // in the listen backlog.
        let Ok(permit) = setup.handshakes.clone().acquire_owned().await else {
            return;
        };
        // Small request/response messages: Nagle + delayed ACK would add 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let Some(acceptor) = setup.tls.clone() else {
            drop(permit);
            if ready.send(Ok(Conn::plain(tcp, slot, idle))).await.is_err() {
                return;
            }
            continue;
        };
        let ready = ready.clone();
        let failures = setup.failures.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send(Ok(Conn::tls(tls, slot, idle))).await;
                }
                // Anyone can cause these: debug each, a warn summary at most
                // every interval, so logs are not a lever.
                Ok(Err(e)) => failures.record(&peer, &format_args!("TLS handshake failed: {e}")),
                Err(_) => failures.record(
                    &peer,
                    &format_args!("TLS handshake timed out after {limit:?}"),
                ),
            }
        });
    }
}
