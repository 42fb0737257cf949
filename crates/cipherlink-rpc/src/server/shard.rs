//! One server thread: a single-threaded runtime that owns whole connections.
//!
//! A connection's HTTP/2 state sits behind locks shared by its connection
//! task and its stream tasks. On a multi-threaded runtime those tasks land on
//! different cores, so every request pays for lock hand-offs and cross-core
//! wake-ups; a single busy channel measured 20,600 req/s that way against
//! 30,900 with everything on one thread. So each shard runs its connections
//! start to finish (TLS handshake, HTTP/2, handlers) on its own thread, and
//! the accept loop spreads connections over the shards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::conn::Conn;
use crate::error::RpcError;
use crate::pb::score_service_server::ScoreServiceServer;
use crate::server::Scorer;

/// An accepted socket on its way to a shard. The permit counts it against
/// the handshakes in progress until its handshake ends.
pub(super) struct Accepted {
    pub tcp: std::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What every shard shares.
#[derive(Clone)]
pub(super) struct ShardSetup {
    pub service: ScoreServiceServer<Scorer>,
    pub tls: Option<TlsAcceptor>,
    pub handshake_timeout: Duration,
    pub max_concurrent_streams: u32,
}

/// Starts shard `index` on a thread of its own. It serves until `stop`
/// changes or its sender is dropped, and until `incoming` is closed.
pub(super) fn spawn(
    index: usize,
    setup: ShardSetup,
    incoming: mpsc::Receiver<Accepted>,
    stop: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<Result<(), RpcError>>, RpcError> {
    std::thread::Builder::new()
        .name(format!("rpc-shard-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RpcError::Serve(format!("server thread {index}: runtime: {e}")))?;
            runtime.block_on(serve(setup, incoming, stop))
        })
        .map_err(|e| RpcError::Serve(format!("cannot start server thread {index}: {e}")))
}

async fn serve(
    setup: ShardSetup,
    incoming: mpsc::Receiver<Accepted>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RpcError> {
    // A bounded queue: when tonic falls behind, handshakes wait.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Conn, std::io::Error>>(64);
    let handshakes = tokio::spawn(handshake_loop(
        incoming,
        setup.tls.clone(),
        setup.handshake_timeout,
        ready_tx,
    ));
    let result = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(setup.max_concurrent_streams))
        .add_service(setup.service)
        .serve_with_incoming_shutdown(ReceiverStream::new(ready_rx), async move {
            // A dropped sender means the server was dropped: stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
        .map_err(|e| RpcError::Serve(crate::error::chain(&e)));
    handshakes.abort();
    result
}

/// Registers each socket with this shard's runtime and hands it to tonic,
/// after a TLS handshake with a time limit when TLS is on.
async fn handshake_loop(
    mut incoming: mpsc::Receiver<Accepted>,
    tls: Option<TlsAcceptor>,
    limit: Duration,
    ready: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    while let Some(accepted) = incoming.recv().await {
        let Accepted { tcp, peer, permit } = accepted;
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, "cannot register the connection: {e}");
                continue;
            }
        };
        let Some(acceptor) = tls.clone() else {
            if ready.send(Ok(Conn::Plain(tcp))).await.is_err() {
                return;
            }
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send(Ok(Conn::Tls(Box::new(tls)))).await;
                }
                // debug, not info: anyone can make these, and logs must not be a lever.
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out after {limit:?}"),
            }
        });
    }
}
