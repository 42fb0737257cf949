//! Moving bytes between the two sides of one tunnel, both directions at
//! once, each with its own half-close.
//!
//! Why not `tokio::io::copy_bidirectional`: it keeps two buffers for the
//! tunnel's whole life (10,000 idle tunnels would pin them all), it cannot
//! frame v1, and it loses the byte counts when one side fails. Here each
//! direction is a pump that holds a read buffer only while data flows (it
//! is freed whenever a read would block), reads again only after the last
//! chunk was written (so a slow side slows the other: at most one chunk in
//! flight per direction), and counts every byte as it goes.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::error::TunnelError;
use crate::nacl_frame::{Decoder, Opener, Sealer};

/// One direction's byte count: the tunnel's own and its service's total.
#[derive(Clone, Copy)]
pub(crate) struct Count<'a> {
    pub(crate) tunnel: &'a AtomicU64,
    pub(crate) service: &'a AtomicU64,
}

impl Count<'_> {
    pub(crate) fn add(&self, n: usize) {
        self.tunnel.fetch_add(n as u64, Ordering::Relaxed);
        self.service.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The names of a direction's two ends, for errors.
#[derive(Clone, Copy)]
pub(crate) struct Ends {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
}

fn io_error(during: &'static str, side: &'static str) -> impl Fn(io::Error) -> TunnelError {
    move |error| TunnelError::Io {
        during,
        side,
        error,
    }
}

/// Where a chunk bound for a TLS stream starts, modulo a cache line: the
/// length of a TLS record header. rustls copies each chunk into a new
/// record just past its 5-byte header; from a buffer that starts on a line
/// boundary that copy runs between misaligned addresses, which cost the
/// client end of a bulk tunnel over a quarter of its CPU (perf, 2026-12-08,
/// docs/benchmarks.md). Shifted by the same 5 bytes, source and
/// destination line up.
pub(crate) const TLS_RECORD_LEAD: usize = 5;

/// A cache line: the unit [`TLS_RECORD_LEAD`] is counted in.
const LINE: usize = 64;

/// Reads into `buf`, which is allocated when a read starts and freed when
/// the read has to wait: an idle direction holds no buffer. The chunk
/// starts `lead` bytes past a cache line (`lead` 0: at the buffer's
/// start); returns where it starts and its length.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    size: usize,
    lead: usize,
) -> io::Result<(usize, usize)> {
    let room = if lead == 0 { size } else { size + LINE };
    poll_fn(|cx| {
        if buf.len() != room {
            *buf = vec![0; room];
        }
        let start = if lead == 0 {
            0
        } else {
            (lead % LINE + LINE - buf.as_ptr() as usize % LINE) % LINE
        };
        let mut read = ReadBuf::new(&mut buf[start..start + size]);
        match Pin::new(&mut *reader).poll_read(cx, &mut read) {
            Poll::Pending => {
                *buf = Vec::new();
                Poll::Pending
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok((start, read.filled().len()))),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
        }
    })
    .await
}

/// The next chunk's length into `buf` (see [`read_some`]); 0 when the
/// reader has ended.
pub(crate) async fn next_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    size: usize,
    ends: Ends,
) -> Result<usize, TunnelError> {
    let (_, n) = read_some(reader, buf, size, 0)
        .await
        .map_err(io_error("reading", ends.from))?;
    Ok(n)
}

/// Writes all of `bytes` to the direction's far end.
pub(crate) async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    ends: Ends,
) -> Result<(), TunnelError> {
    writer
        .write_all(bytes)
        .await
        .map_err(io_error("writing", ends.to))
}

/// The reader ended: shut the writer's write side, so the half-close
/// travels on.
pub(crate) async fn pass_end<W: AsyncWrite + Unpin>(
    writer: &mut W,
    ends: Ends,
) -> Result<(), TunnelError> {
    writer
        .shutdown()
        .await
        .map_err(io_error("writing", ends.to))
}

/// Copies bytes until the reader ends, then shuts the writer's write side
/// (half-close travels on). Each chunk starts `lead` bytes past a cache
/// line ([`TLS_RECORD_LEAD`] towards a TLS stream, else 0).
pub(crate) async fn pump_bytes<R, W>(
    mut reader: R,
    mut writer: W,
    size: usize,
    lead: usize,
    count: Count<'_>,
    ends: Ends,
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let (start, n) = read_some(&mut reader, &mut buf, size, lead)
            .await
            .map_err(io_error("reading", ends.from))?;
        if n == 0 {
            return pass_end(&mut writer, ends).await;
        }
        send(&mut writer, &buf[start..start + n], ends).await?;
        // TLS holds records until flushed; for TCP this is free.
        writer.flush().await.map_err(io_error("writing", ends.to))?;
        count.add(n);
    }
}

/// Plaintext in, v1 frames out (one frame per read). With `announce`, an
/// empty frame goes first, before anything is read.
pub(crate) async fn pump_seal<R, W>(
    mut reader: R,
    mut writer: W,
    mut sealer: Sealer,
    size: usize,
    count: Count<'_>,
    ends: Ends,
    announce: bool,
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let v1_error = |error| TunnelError::V1 {
        side: ends.from,
        error,
    };
    let mut buf = Vec::new();
    let mut frame = Vec::new();
    if announce {
        sealer.seal(&[], &mut frame).map_err(v1_error)?;
        send(&mut writer, &frame, ends).await?;
    }
    loop {
        let n = next_chunk(&mut reader, &mut buf, size, ends).await?;
        if n == 0 {
            return pass_end(&mut writer, ends).await;
        }
        frame.clear();
        sealer.seal(&buf[..n], &mut frame).map_err(v1_error)?;
        send(&mut writer, &frame, ends).await?;
        count.add(n);
    }
}

/// A v1 receiving half: the decoder and opener, and the plaintext of a
/// frame opened before the plaintext side existed (a server's first frame).
pub(crate) struct Receiving {
    pub(crate) decoder: Decoder,
    pub(crate) opener: Opener,
    pub(crate) first: Vec<u8>,
}

/// v1 frames in, plaintext out, after the first frame's plaintext. An end of
/// stream inside a frame is an error.
pub(crate) async fn pump_open<R, W>(
    mut reader: R,
    mut writer: W,
    receiving: Receiving,
    size: usize,
    count: Count<'_>,
    ends: Ends,
) -> Result<(), TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let v1_error = |error| TunnelError::V1 {
        side: ends.from,
        error,
    };
    let Receiving {
        mut decoder,
        mut opener,
        first,
    } = receiving;
    if !first.is_empty() {
        send(&mut writer, &first, ends).await?;
        count.add(first.len());
    }
    drop(first);
    let mut buf = Vec::new();
    loop {
        let n = next_chunk(&mut reader, &mut buf, size, ends).await?;
        if n == 0 {
            decoder
                .finish()
                .map_err(|e| v1_error(crate::nacl_frame::V1Error::Frame(e)))?;
            return pass_end(&mut writer, ends).await;
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let Some(frame) = decoder
                .decode(&mut input)
                .map_err(|e| v1_error(crate::nacl_frame::V1Error::Frame(e)))?
            else {
                continue;
            };
            let plaintext = opener.open(frame).map_err(v1_error)?;
            send(&mut writer, plaintext, ends).await?;
            count.add(plaintext.len());
        }
        if !decoder.is_mid_frame() {
            decoder.release();
        }
    }
}

/// Runs both directions until both have ended cleanly, or one fails (the
/// other is then dropped), or no byte moved for `idle`, or the proxy cuts
/// its tunnels at the end of a shutdown (`cut`).
pub(crate) async fn drive(
    up: impl Future<Output = Result<(), TunnelError>>,
    down: impl Future<Output = Result<(), TunnelError>>,
    idle: Option<Duration>,
    moved: [&AtomicU64; 2],
    cut: &CancellationToken,
) -> Result<(), TunnelError> {
    let total = || moved[0].load(Ordering::Relaxed) + moved[1].load(Ordering::Relaxed);
    tokio::pin!(up, down);
    // Checked once per `idle`: a tunnel idle for `idle` is closed within 2 x idle.
    let period = idle.unwrap_or(Duration::from_secs(86_400));
    let timer = tokio::time::sleep(period);
    tokio::pin!(timer);
    let (mut up_done, mut down_done) = (false, false);
    let mut last = total();
    loop {
        tokio::select! {
            result = &mut up, if !up_done => {
                result?;
                up_done = true;
            }
            result = &mut down, if !down_done => {
                result?;
                down_done = true;
            }
            () = cut.cancelled() => return Err(TunnelError::Shutdown),
            () = &mut timer => {
                let now = total();
                if let (Some(limit), true) = (idle, now == last) {
                    return Err(TunnelError::Idle(limit));
                }
                last = now;
                timer.as_mut().reset(tokio::time::Instant::now() + period);
            }
        }
        if up_done && down_done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A chunk starts `lead` bytes past a cache line, holds at most `size`
    /// bytes, and a read that has to wait leaves no buffer behind.
    #[tokio::test]
    async fn chunks_start_at_their_lead_and_a_wait_frees_the_buffer() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
        a.write_all(&data).await.unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for lead in [TLS_RECORD_LEAD, 0, 63, TLS_RECORD_LEAD] {
            let (start, n) = read_some(&mut b, &mut buf, 10_000, lead).await.unwrap();
            assert!(n > 0 && n <= 10_000, "{n}");
            assert_eq!((buf.as_ptr() as usize + start) % LINE, lead, "lead {lead}");
            got.extend_from_slice(&buf[start..start + n]);
        }
        assert_eq!(got, data);
        let waited = tokio::time::timeout(
            Duration::from_millis(20),
            read_some(&mut b, &mut buf, 10_000, TLS_RECORD_LEAD),
        )
        .await;
        assert!(waited.is_err(), "a read with nothing to read returned");
        assert_eq!(buf.capacity(), 0, "a waiting read kept its buffer");
    }
}
