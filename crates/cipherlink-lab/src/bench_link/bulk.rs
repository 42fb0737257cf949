//! One stream's throughput: the same writer and counting sink for a link and
//! a TLS tunnel, so the two numbers differ only by the transport.

use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;

/// A throughput case.
#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    /// Bytes sent.
    pub bytes: u64,
    /// From the first write to the receiver's acknowledgement of the last byte.
    pub seconds: f64,
    /// MiB per second.
    pub mib_per_sec: f64,
}

/// Sends `bytes` through `w` while `r`'s peer counts them and answers one
/// byte at the end.
pub(super) async fn push<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    w: &mut W,
    r: &mut R,
    bytes: u64,
) -> std::io::Result<BulkResult> {
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        w.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    w.flush().await?;
    let mut ack = [0u8; 1];
    r.read_exact(&mut ack).await?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(BulkResult {
        bytes,
        seconds,
        mib_per_sec: bytes as f64 / (1024.0 * 1024.0) / seconds,
    })
}

/// Reads exactly `bytes`, then answers one byte.
pub(super) async fn sink<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    bytes: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left = left.saturating_sub(n as u64);
    }
    s.write_all(b"!").await?;
    s.flush().await?;
    let _ = s.shutdown().await;
    let _ = s.read(&mut buf).await;
    Ok(())
}
