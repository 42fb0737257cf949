//! One OpenSSL connection over any transport: the handshake (through
//! tokio-openssl) and what it settled.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context as TaskContext, Poll};

use openssl::ssl::{Ssl, SslRef, SslVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

use super::errors;
use super::{build, ffi, ClientSide, ServerSide, Watch};
use crate::error::Error;
use crate::handshake_checks::Settled;
use crate::kx::KeyExchange;
use crate::pki::Identity;
use crate::tunnel::TunnelInfo;

/// An established OpenSSL session and what only the handshake could tell.
pub(crate) struct Session<IO> {
    pub(crate) stream: SslStream<Transport<IO>>,
    hello_retry: bool,
    /// Whether the ServerHello carried a key share.
    key_share: bool,
}

/// The transport as OpenSSL sees it. OpenSSL flushes its transport after
/// each flight and alert, as it must for a buffered one (`BufWriter`, a
/// framed stream), but the openssl crate turns a flush that cannot finish
/// yet into a hard error (it sets no retry flag for it), which failed the
/// handshake. Here such a flush is reported done to OpenSSL and finished
/// before the next read (the peer answers only once it has the flight),
/// by the end of the handshake, and by the Tunnel's own flush.
pub(crate) struct Transport<IO> {
    io: IO,
    flush_pending: bool,
}

impl<IO> Transport<IO> {
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncWrite + Unpin> Transport<IO> {
    /// Flushes `io` for real, pending until it is done.
    pub(crate) fn poll_flush_now(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.flush_pending = false;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flush_pending {
            // Still pending: its waker is registered, and the read goes on.
            if let Poll::Ready(Err(err)) = this.poll_flush_now(cx) {
                return Poll::Ready(Err(err));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Transport<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    /// OpenSSL's flush (see the type's docs).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_flush_now(cx) {
            Poll::Pending => {
                this.flush_pending = true;
                Poll::Ready(Ok(()))
            }
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Runs a server handshake over `io` (the caller bounds it in time).
pub(crate) async fn accept<IO>(side: &ServerSide, io: IO, peer: &str) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (ssl, watch) = side.connection()?;
    let mut session = start(ssl, io)?;
    let result = Pin::new(&mut session.stream).accept().await;
    let mut session = finish(session, result, &watch, peer, |_| None)?;
    session.hello_retry = watch.notes.hellos.load(Ordering::Relaxed) > 1;
    flushed(session, peer).await
}

/// Runs a client handshake over `io` to `host` (the caller bounds it in time).
pub(crate) async fn connect<IO>(
    side: &ClientSide,
    host: &str,
    io: IO,
    peer: &str,
) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (ssl, watch) = side.connection(host)?;
    let mut session = start(ssl, io)?;
    let result = Pin::new(&mut session.stream).connect().await;
    let mut session = finish(session, result, &watch, peer, |ssl| side.server_name(ssl))?;
    let first = side.first_group();
    session.hello_retry = group_of(session.stream.ssl()).is_some_and(|agreed| agreed != first);
    flushed(session, peer).await
}

/// The session before its handshake. The Tunnel boxes the whole handshake
/// future and then the finished Backend, so the session needs no box of
/// its own.
fn start<IO>(ssl: Ssl, io: IO) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let transport = Transport {
        io,
        flush_pending: false,
    };
    Ok(Session {
        stream: SslStream::new(ssl, transport).map_err(build("connection"))?,
        hello_retry: false,
        key_share: false,
    })
}

/// The session, or the failure in the core's terms; `server_name` is the
/// name a client checked (for the message of a name mismatch).
fn finish<IO: AsyncWrite + Unpin>(
    mut session: Session<IO>,
    result: Result<(), openssl::ssl::Error>,
    watch: &Watch,
    peer: &str,
    server_name: impl Fn(&SslRef) -> Option<&str>,
) -> Result<Session<IO>, Error> {
    match result {
        Ok(()) => {
            session.key_share = watch.notes.key_share.load(Ordering::Relaxed);
            Ok(session)
        }
        Err(err) => {
            // One attempt to deliver the alert OpenSSL queued; the failure
            // is reported either way.
            let waker = std::task::Waker::noop();
            let _ = session
                .stream
                .get_mut()
                .poll_flush_now(&mut TaskContext::from_waker(waker));
            let ssl = session.stream.ssl();
            Err(Error::from_openssl(
                peer,
                "handshake",
                errors::map(err, Some(ssl), Some(&watch.verdict), server_name(ssl)),
            ))
        }
    }
}

/// The session once the handshake's last flight is flushed out of a
/// buffered transport.
async fn flushed<IO: AsyncWrite + Unpin>(
    mut session: Session<IO>,
    peer: &str,
) -> Result<Session<IO>, Error> {
    poll_fn(|cx| session.stream.get_mut().poll_flush_now(cx))
        .await
        .map_err(|err| Error::from_io(peer, "handshake", err))?;
    Ok(session)
}

fn group_of(ssl: &SslRef) -> Option<KeyExchange> {
    ffi::negotiated_group(ssl).and_then(|name| name.parse().ok())
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Session<IO> {
    /// Reads decrypted bytes. The end of the stream counts as clean only
    /// after the peer's close_notify: the openssl crate reports a
    /// transport that simply ended (its BIO has no end-of-file state, so
    /// OpenSSL cannot tell) as a clean end too, which would let an attacker
    /// truncate the stream unnoticed.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        let ended = buf.filled().len() == before && buf.remaining() > 0;
        if ended && !ffi::close_notify_received(self.stream.ssl()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection without TLS close_notify",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO> Session<IO> {
    fn tls13(&self) -> bool {
        self.stream.ssl().version2() == Some(SslVersion::TLS1_3)
    }

    /// The group this handshake used: none for a TLS 1.2 resumption, which
    /// runs no key exchange (OpenSSL reports the resumed session's group).
    fn group(&self) -> Option<KeyExchange> {
        if !self.tls13() && self.resumed() {
            return None;
        }
        group_of(self.stream.ssl())
    }

    /// What the handshake settled, in the same terms as rustls' sessions.
    pub(crate) fn info(&self) -> TunnelInfo {
        let ssl = self.stream.ssl();
        TunnelInfo {
            protocol: ssl.version_str().to_string(),
            cipher_suite: ssl
                .current_cipher()
                .and_then(|c| c.standard_name())
                .unwrap_or("unknown")
                .to_string(),
            key_exchange: self.group(),
            peer_identity: ssl
                .peer_certificate()
                .and_then(|cert| cert.to_der().ok())
                .and_then(|der| Identity::from_der(&der).ok()),
            alpn: ssl
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: ssl.session_reused(),
            hello_retry: self.hello_retry,
        }
    }

    pub(crate) fn resumed(&self) -> bool {
        self.stream.ssl().session_reused()
    }

    /// The peer's certificates (DER) this session holds: the chain after a
    /// full handshake, the leaf after a resumption.
    pub(crate) fn peer_certificates(&self) -> Vec<Vec<u8>> {
        let ssl = self.stream.ssl();
        let mut certs: Vec<Vec<u8>> = ssl
            .peer_cert_chain()
            .map(|chain| chain.iter().filter_map(|c| c.to_der().ok()).collect())
            .unwrap_or_default();
        if let Some(leaf) = ssl.peer_certificate().and_then(|c| c.to_der().ok()) {
            certs.push(leaf);
        }
        certs
    }

    /// What the handshake checks need; `certs` from `peer_certificates`.
    pub(crate) fn settled<'a>(&self, certs: &'a [Vec<u8>]) -> Settled<'a> {
        Settled {
            tls13: self.tls13(),
            resumed: self.resumed(),
            group: self.group(),
            fresh_key_exchange: self.key_share,
            peer_certificates: certs.iter().map(Vec::as_slice).collect(),
            chain_until: self.resumed_chain_date(),
        }
    }

    /// A resumed session's date: that of the chain its full handshake
    /// verified (a server's is in the ticket, a client's came with the
    /// session it offered); `None` after a full handshake.
    fn resumed_chain_date(&self) -> Option<u64> {
        if !self.resumed() {
            return None;
        }
        let ssl = self.stream.ssl();
        if ssl.is_server() {
            return ffi::resumed_chain_date(ssl);
        }
        super::state::indices()
            .ok()
            .and_then(|indices| ssl.ex_data(indices.offered_until))
            .copied()
    }
}
