//! One accepted connection, plain or TLS, as the stream type tonic serves.
//!
//! tonic implements its `Connected` trait for rustls streams only when its own
//! TLS features are on; the lab does TLS itself (so it can use its verifiers
//! and measure the handshake), hence this small wrapper. It also carries the
//! two limits an established connection has: it holds one of the server's
//! connection slots until it is dropped, and it fails its next read or write
//! once nothing has moved either way for the idle timeout, which makes
//! hyper close it (HTTP/2 has no idle timeout of its own in hyper).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// An accepted connection.
pub struct Conn {
    io: Io,
    /// One of the server's connection slots, free again when tonic drops this.
    _slot: Option<OwnedSemaphorePermit>,
    idle: Option<IdleTimer>,
}

enum Io {
    /// Plaintext (`--insecure`).
    Plain(TcpStream),
    /// After a completed TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// A plaintext connection.
    pub(super) fn plain(
        tcp: TcpStream,
        slot: OwnedSemaphorePermit,
        idle: Option<Duration>,
    ) -> Conn {
        Conn::new(Io::Plain(tcp), slot, idle)
    }

    /// A connection after its TLS handshake.
    pub(super) fn tls(
        tls: TlsStream<TcpStream>,
        slot: OwnedSemaphorePermit,
        idle: Option<Duration>,
    ) -> Conn {
        Conn::new(Io::Tls(Box::new(tls)), slot, idle)
    }

    fn new(io: Io, slot: OwnedSemaphorePermit, idle: Option<Duration>) -> Conn {
        Conn {
            io,
            _slot: Some(slot),
            idle: idle.map(IdleTimer::new),
        }
    }

    /// The error that ends an idle connection, once its timer has run out
    /// while the transport had nothing to do.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let idle = self.idle.as_mut()?;
        idle.expired(cx).then(|| {
            tracing::debug!("closing a connection idle for {:?}", idle.limit);
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connection idle for {:?}", idle.limit),
            )
        })
    }

    fn touch(&mut self) {
        if let Some(idle) = self.idle.as_mut() {
            idle.last = Instant::now();
        }
    }
}

/// The idle deadline. Activity only records its time; the timer itself is
/// moved only when it fires early, so busy connections do not touch the
/// timer wheel on every read.
struct IdleTimer {
    limit: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        let now = Instant::now();
        IdleTimer {
            limit,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Whether `limit` has passed since the last activity; otherwise the
    /// timer is armed to wake `cx` when it might have.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last + self.limit;
            if deadline <= Instant::now() {
                return true;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

// No handler asks who is calling: no `getpeername` per connection.
impl Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.touch(),
            Poll::Pending => {
                if let Some(err) = this.idle_expired(cx) {
                    return Poll::Ready(Err(err));
                }
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Conn {
    /// Written bytes are activity; a peer that takes none of our bytes for
    /// the idle timeout is as idle as one that sends none.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) if n > 0 => self.touch(),
            Poll::Pending => {
                if let Some(err) = self.idle_expired(cx) {
                    return Poll::Ready(Err(err));
                }
            }
            _ => {}
        }
        polled
    }
}
