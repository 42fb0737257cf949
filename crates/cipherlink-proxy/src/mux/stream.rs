//! One stream of a mux connection, as a byte stream for the relay: reads
//! end at the peer's FIN, shutdown sends ours, dropping it without both
//! ends closed resets it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::driver::{lock, SharedSession};
use super::frame::Reason;

/// A stream; see the module docs.
pub struct MuxStream {
    session: SharedSession,
    id: u32,
    /// Client: the server must accept the stream before this fires.
    accept_by: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id).finish()
    }
}

impl MuxStream {
    pub(crate) fn new(session: SharedSession, id: u32, accept_within: Option<Duration>) -> Self {
        let accept_by = accept_within.map(|limit| (Box::pin(tokio::time::sleep(limit)), limit));
        MuxStream {
            session,
            id,
            accept_by,
        }
    }

    #[cfg(test)]
    pub(crate) fn session_for_tests(&self) -> SharedSession {
        self.session.clone()
    }

    /// The stream's id on its connection.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Server: tells the client the service is connected.
    pub fn accept(&self) {
        lock(&self.session).accept(self.id);
    }

    /// Why this stream can carry nothing more (the peer reset it, or the
    /// connection ended), if so.
    pub fn dead(&self) -> Option<io::Error> {
        lock(&self.session).dead(self.id)
    }

    /// Resets the stream both ways, telling the peer `reason`.
    pub fn reset(&self, reason: Reason) {
        lock(&self.session).reset(self.id, reason);
    }

    /// Client: fails with TimedOut once the server has neither accepted
    /// nor answered the stream in time (then resets it).
    fn check_accepted(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some((timer, limit)) = &mut self.accept_by else {
            return Ok(());
        };
        if lock(&self.session).is_accepted(self.id)? {
            self.accept_by = None;
            return Ok(());
        }
        if timer.as_mut().poll(cx).is_ready() {
            let limit = *limit;
            self.reset(Reason::Aborted);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server did not accept the mux stream within {limit:?}"),
            ));
        }
        Ok(())
    }
}

use std::future::Future;

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_accepted(cx)?;
        let target = buf.initialize_unfilled();
        match lock(&this.session).poll_read(this.id, cx, target) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_accepted(cx)?;
        lock(&this.session).poll_write(this.id, cx, data)
    }

    /// Frames go out as the driver writes them; it flushes the connection
    /// after each batch.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(lock(&self.session).shutdown(self.id))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        lock(&self.session).drop_stream(self.id);
    }
}
