//! Transports that buffer what is written until they are flushed
//! (`tokio::io::BufWriter`, framed streams): each side must flush its
//! flight before it waits for the answer, on either implementation; and a
//! flush that cannot finish at once is not an error.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use cipherlink::{Context, Error, Tunnel};
use common::{bundle, Pair};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, DuplexStream, ReadBuf};

/// A transport whose flush says Pending once each time (waking at once)
/// before it flushes, as a flush that must wait for the socket does.
struct SlowFlush<IO> {
    inner: IO,
    waited: bool,
}

impl<IO: AsyncRead + Unpin> AsyncRead for SlowFlush<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SlowFlush<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.waited {
            this.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.waited = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A handshake and a PING/PONG with both sides over `wrap`ped pipes.
async fn exchange<IO: AsyncRead + AsyncWrite + Unpin>(
    server: &Context,
    client: &Context,
    wrap: impl Fn(DuplexStream) -> IO,
) -> (Result<Tunnel<IO>, Error>, Result<Tunnel<IO>, Error>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let serve = async {
        let mut tunnel = server.accept(wrap(a), "test-client").await?;
        let mut ping = [0u8; 4];
        tunnel.read_exact(&mut ping).await?;
        tunnel.write_all(b"PONG").await?;
        Ok(tunnel)
    };
    let call = async {
        let mut tunnel = client.connect(wrap(b), "localhost").await?;
        tunnel.write_all(b"PING").await?;
        let mut pong = [0u8; 4];
        tunnel.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"PONG");
        Ok(tunnel)
    };
    tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, call) })
        .await
        .expect("a flight stayed in a buffer: the handshake stalled")
}

every_pair! {
    /// Each flight reaches the peer through a `BufWriter`, the client's
    /// (with mutual TLS) and the server's, whose session ticket follows.
    async fn a_handshake_over_buffered_transports(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.mtls_server_config(&b)).unwrap();
        let client = Context::client(&p.mtls_client_config(&b)).unwrap();
        for _ in 0..2 {
            let (s, c) = exchange(&server, &client, BufWriter::new).await;
            s.unwrap();
            c.unwrap();
        }
    }
}

every_pair! {
    /// A flush that is pending at first (the socket is busy) is waited
    /// for, not taken for a failure.
    async fn a_flush_that_must_wait_is_not_a_failure(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.mtls_server_config(&b)).unwrap();
        let client = Context::client(&p.mtls_client_config(&b)).unwrap();
        let (s, c) = exchange(&server, &client, |io| BufWriter::new(SlowFlush {
            inner: io,
            waited: false,
        })).await;
        let (s, c) = (s.unwrap(), c.unwrap());
        assert!(s.info().is_some() && c.info().is_some());
    }
}
