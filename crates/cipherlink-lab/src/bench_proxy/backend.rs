//! The backend every pair forwards to: it echoes, or swallows and counts,
//! as the connection's first byte asks. It runs in a helper process
//! (`cipherlink bench proxy --backend-only`), so that the bench process only
//! generates load and the backend's sockets do not share its open-file limit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::LabError;

/// First byte: echo everything back.
pub const MODE_ECHO: u8 = b'E';
/// First byte: then the length to expect (8 bytes, big-endian); swallow
/// that many bytes (or up to the end of input), then reply with the count
/// (8 bytes, big-endian). The length, not a half-close, ends the transfer:
/// shadowsocks and obfs4 close both ways when their client half-closes.
pub const MODE_SINK: u8 = b'S';

/// Listens on `addr`, tells `ready` where, and serves until the process ends.
pub async fn serve_backend(
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), LabError> {
    let failed = |source| LabError::Listen {
        who: "the bench's backend",
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    ready(local);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(backend_conn(stream));
            }
            // Out of files for a moment (the idle case fills the table):
            // the bench counts the failed tunnel; keep serving the others.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn backend_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut mode = [0u8; 1];
    if stream.read_exact(&mut mode).await.is_err() {
        return;
    }
    if mode[0] != MODE_ECHO && mode[0] != MODE_SINK {
        return;
    }
    let mut expected = u64::MAX;
    if mode[0] == MODE_SINK {
        let mut length = [0u8; 8];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        expected = u64::from_be_bytes(length);
    }
    // Small until data comes: 10,000 idle echo tunnels must cost the
    // backend little, and a bulk sink grows into the large buffer at once.
    let mut buf = vec![0u8; 4 * 1024];
    let mut total = 0u64;
    while total < expected {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        if mode[0] == MODE_ECHO && stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if n == buf.len() && buf.len() < 256 * 1024 {
            buf.resize(256 * 1024, 0);
        }
    }
    if mode[0] == MODE_SINK {
        let _ = stream.write_all(&total.to_be_bytes()).await;
    }
    let _ = stream.shutdown().await;
}
