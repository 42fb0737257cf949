//! The in-process PONG servers the connection benchmark measures against.

use std::net::SocketAddr;
use std::sync::Arc;

use cipherlink::server::{ServerStats, TlsServer};
use cipherlink::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{BenchError, PING, PONG};

/// A running benchmark server; aborted on drop.
pub struct PongServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// TLS counters (none for plain).
    pub stats: Option<Arc<ServerStats>>,
    task: JoinHandle<()>,
}

impl Drop for PongServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn loopback_listener() -> Result<TcpListener, BenchError> {
    TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| BenchError::Setup(format!("binding 127.0.0.1:0: {e}")))
}

/// Plain TCP: read PING, write PONG, close.
pub async fn plain() -> Result<PongServer, BenchError> {
    let listener = loopback_listener().await?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut ping = [0u8; PING.len()];
                if stream.read_exact(&mut ping).await.is_ok() && ping == *PING {
                    let _ = stream.write_all(PONG).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(PongServer {
        addr,
        stats: None,
        task,
    })
}

/// TLS: handshake, read PING, write PONG, close_notify.
pub async fn tls(context: Context) -> Result<PongServer, BenchError> {
    let server = TlsServer::from_listener(loopback_listener().await?, context);
    let addr = server
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let stats = server.stats();
    let task = server.spawn(|mut tunnel| async move {
        let mut ping = [0u8; PING.len()];
        tunnel.read_exact(&mut ping).await?;
        tunnel.write_all_and_close(PONG).await
    });
    Ok(PongServer {
        addr,
        stats: Some(stats),
        task,
    })
}
