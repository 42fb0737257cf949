//! Throughput through one tunnel: `bytes` to the backend's sink, which
//! answers with its count once it has them all, so every byte is proven to
//! have arrived.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench_proxy::backend::MODE_SINK;
use crate::bench_proxy::client::{ConnError, Entry};
use crate::error::BulkFailure;
use crate::LabError;

/// MB/s (10^6 bytes) from the first byte sent to the sink's count.
pub(in crate::bench_proxy) async fn run(
    entry: &Entry,
    bytes: u64,
    pair: &str,
) -> Result<f64, LabError> {
    // Generous: a minute plus one second per MB (1 MB/s is far below any pair).
    let limit = Duration::from_secs(60 + bytes / 1_000_000);
    let fail = |reason| LabError::Bulk {
        pair: pair.to_string(),
        reason,
    };
    let start = Instant::now();
    let got = tokio::time::timeout(limit, send(entry, bytes))
        .await
        .map_err(|_| fail(BulkFailure::TimedOut(limit)))?
        .map_err(fail)?;
    let secs = start.elapsed().as_secs_f64();
    if got != bytes {
        return Err(fail(BulkFailure::Short { got, sent: bytes }));
    }
    Ok(bytes as f64 / secs.max(1e-9) / 1e6)
}

async fn send(entry: &Entry, bytes: u64) -> Result<u64, BulkFailure> {
    let mut stream = entry.open().await.map_err(|e| match e {
        ConnError::Socks(e) => BulkFailure::Socks(e),
        ConnError::Connect { source, .. } | ConnError::Io(source) => BulkFailure::Io(source),
        other => BulkFailure::Io(std::io::Error::other(other.to_string())),
    })?;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut head = [0u8; 9];
    head[0] = MODE_SINK;
    head[1..].copy_from_slice(&bytes.to_be_bytes());
    stream.write_all(&head).await?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await?;
    Ok(u64::from_be_bytes(count))
}
