//! A `Tunnel`: one TLS session over any byte transport.
//!
//! The lifecycle follows Sandwich: built from a [`Context`], then
//! [`Tunnel::handshake`], [`Tunnel::read`] / [`Tunnel::write_all`], and
//! [`Tunnel::close`] (which sends close_notify). Every step reports a typed
//! error naming the peer; a failed tunnel stays failed.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::error::Elapsed;

use crate::backend::Backend;
use crate::context::{Context, TlsSide};
use crate::credentials::Identity;
use crate::error::Error;
use crate::kx::KeyExchange;
use crate::lean_stream::{LeanClient, LeanServer};

/// Where a tunnel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Built, no handshake yet.
    NotStarted,
    /// The handshake is running.
    Handshaking,
    /// Handshake done: data may flow.
    Established,
    /// Closed by [`Tunnel::close`].
    Closed,
    /// A step failed; the tunnel cannot be used again.
    Failed,
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelState::NotStarted => "not started",
            TunnelState::Handshaking => "handshaking",
            TunnelState::Established => "established",
            TunnelState::Closed => "closed",
            TunnelState::Failed => "failed",
        })
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub protocol: String,
    /// The IANA name of the cipher suite.
    pub cipher_suite: String,
    /// The key-exchange group (none for a TLS 1.2 resumption).
    pub key_exchange: Option<KeyExchange>,
    /// The peer's leaf certificate, if it sent one.
    pub peer_identity: Option<Identity>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// Whether the server had to ask for another key share (HelloRetryRequest).
    pub hello_retry: bool,
}

impl fmt::Display for TunnelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.cipher_suite)?;
        match self.key_exchange {
            Some(kx) => write!(f, " group={kx}")?,
            None => write!(f, " group=none")?,
        }
        if self.resumed {
            f.write_str(" resumed")?;
        }
        if self.hello_retry {
            f.write_str(" hello-retry")?;
        }
        if let Some(alpn) = &self.alpn {
            write!(f, " alpn={alpn}")?;
        }
        match &self.peer_identity {
            Some(id) => write!(f, " peer={}", id.summary()),
            None => f.write_str(" peer=anonymous"),
        }
    }
}

enum Stage<IO> {
    NotStarted(IO),
    Handshaking,
    Established(Box<Backend<IO>>),
    Closed,
    Failed,
}

/// One TLS session over a transport `IO`.
pub struct Tunnel<IO> {
    context: Context,
    peer: String,
    stage: Stage<IO>,
}

impl<IO> fmt::Debug for Tunnel<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("peer", &self.peer)
            .field("state", &self.state())
            .finish()
    }
}

impl<IO> Tunnel<IO> {
    /// The state.
    pub fn state(&self) -> TunnelState {
        match self.stage {
            Stage::NotStarted(_) => TunnelState::NotStarted,
            Stage::Handshaking => TunnelState::Handshaking,
            Stage::Established(_) => TunnelState::Established,
            Stage::Closed => TunnelState::Closed,
            Stage::Failed => TunnelState::Failed,
        }
    }

    /// Who is on the other side, as given when the tunnel was built.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl<IO> Tunnel<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(context: Context, io: IO, peer: String) -> Tunnel<IO> {
        Tunnel {
            context,
            peer,
            stage: Stage::NotStarted(io),
        }
    }

    /// Runs the handshake, bounded by the Context's handshake timeout.
    pub async fn handshake(&mut self) -> Result<(), Error> {
        self.handshake_inner(&[]).await
    }

    /// Client: runs the handshake with `first` queued to leave in the same
    /// flight as the client's Finished, saving a write and a packet on
    /// request/response protocols. This is not 0-RTT early data: nothing is
    /// sent before the server's certificate has been verified. On a server
    /// tunnel `first` is refused.
    pub async fn handshake_and_send(&mut self, first: &[u8]) -> Result<(), Error> {
        if self.context.role() == crate::Role::Server && !first.is_empty() {
            return Err(Error::State {
                op: "send data with the handshake (client only)",
                state: self.state(),
            });
        }
        self.handshake_inner(first).await
    }

    async fn handshake_inner(&mut self, mut first: &[u8]) -> Result<(), Error> {
        let io = match std::mem::replace(&mut self.stage, Stage::Handshaking) {
            Stage::NotStarted(io) => io,
            other => {
                self.stage = other;
                return Err(Error::State {
                    op: "handshake",
                    state: self.state(),
                });
            }
        };
        let limit = self.context.handshake_timeout();
        // The running handshake and the stream it makes are on the heap,
        // and no local holds either across an await: a rustls connection
        // is over a kilobyte, and whatever this future holds inline stays
        // in the state of every task that awaits a handshake for the
        // task's whole life (an async fn's state is as large as its
        // largest await), idle connection or not.
        let result = match self.context.tls() {
            TlsSide::Server(config) => accepting(config, io, limit, &self.peer)
                .await
                .map(|r| r.map(|s| Box::new(Backend::LeanServer(s)))),
            TlsSide::Client(config) => {
                let name = match self.server_name() {
                    Ok(name) => name,
                    Err(err) => {
                        self.stage = Stage::Failed;
                        return Err(err);
                    }
                };
                // Client data past the send bound (64 KiB) goes out after
                // the handshake instead of in its last flight.
                let mut queued = 0;
                let connected = connecting(config, name, io, first, &mut queued, limit, &self.peer)
                    .await
                    .map(|r| r.map(|s| Box::new(Backend::LeanClient(s))));
                first = &first[queued..];
                connected
            }
            #[cfg(feature = "openssl")]
            TlsSide::OpensslServer(side) => Box::pin(tokio::time::timeout(
                limit,
                crate::openssl_tls::stream::accept(side, io, &self.peer),
            ))
            .await
            .map(|r| r.map(|s| Box::new(Backend::Openssl(s)))),
            #[cfg(feature = "openssl")]
            TlsSide::OpensslClient(side) => {
                let host = match self.server_name() {
                    Ok(name) => name.to_str().into_owned(),
                    Err(err) => {
                        self.stage = Stage::Failed;
                        return Err(err);
                    }
                };
                Box::pin(tokio::time::timeout(
                    limit,
                    crate::openssl_tls::stream::connect(side, &host, io, &self.peer),
                ))
                .await
                .map(|r| r.map(|s| Box::new(Backend::Openssl(s))))
            }
        };
        // Refused for what it settled (`handshake_checks`) before it is
        // handed out (a client's data queued with its Finished has left).
        let result = match result {
            Ok(Ok(stream)) => match stream.check_settled(self.context.key_exchange()) {
                Ok(()) => Ok(Ok(stream)),
                Err(error) => Ok(Err(Error::Handshake {
                    peer: self.peer.clone(),
                    error,
                    detail: None,
                })),
            },
            other => other,
        };
        let result = match result {
            Ok(Ok(mut stream)) if !first.is_empty() => {
                let rest = async {
                    stream.write_all(first).await?;
                    stream.flush().await
                };
                match tokio::time::timeout(limit, rest).await {
                    Ok(Ok(())) => Ok(Ok(stream)),
                    Ok(Err(err)) => Ok(Err(Error::from_io(&self.peer, "handshake", err))),
                    Err(elapsed) => Err(elapsed),
                }
            }
            other => other,
        };
        match result {
            Ok(Ok(stream)) => {
                self.stage = Stage::Established(stream);
                Ok(())
            }
            Ok(Err(err)) => {
                self.stage = Stage::Failed;
                Err(err)
            }
            Err(_) => {
                self.stage = Stage::Failed;
                Err(Error::HandshakeTimeout {
                    peer: self.peer.clone(),
                    after: limit,
                })
            }
        }
    }

    fn server_name(&self) -> Result<ServerName<'static>, Error> {
        if let Some(name) = self.context.server_name() {
            return Ok(name.clone());
        }
        let host = host_of(&self.peer);
        ServerName::try_from(host.to_string()).map_err(|_| {
            Error::config(
                "server_name",
                format!(
                    "{host:?} (from peer {}) is not a DNS name or IP address; set `server_name`",
                    self.peer
                ),
            )
        })
    }

    /// What the handshake settled; `None` before it is done.
    pub fn info(&self) -> Option<TunnelInfo> {
        match &self.stage {
            Stage::Established(stream) => Some(stream.info()),
            _ => None,
        }
    }

    /// Whether the session was resumed (cheaper than [`Tunnel::info`], which
    /// parses the peer certificate).
    pub fn resumed(&self) -> bool {
        match &self.stage {
            Stage::Established(stream) => stream.resumed(),
            _ => false,
        }
    }

    fn ready(&mut self, op: &'static str) -> Result<&mut Backend<IO>, Error> {
        let state = self.state();
        match &mut self.stage {
            Stage::Established(stream) => Ok(stream),
            _ => Err(Error::State { op, state }),
        }
    }

    /// Reads decrypted bytes; `Ok(0)` means the peer closed cleanly.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let result = self.ready("read")?.read(buf).await;
        self.settle(result, "read")
    }

    /// Reads what has arrived, at most `max` bytes, into a buffer made for
    /// it; empty means the peer closed cleanly. Unlike [`Tunnel::read`], a
    /// caller waiting here holds no buffer of its own: an idle connection
    /// costs only what rustls keeps, and the buffer lives only while
    /// there is data (a server of many idle clients saves its read buffer
    /// per connection).
    pub async fn read_chunk(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let stream = self.ready("read")?;
        let result = std::future::poll_fn(|cx| stream.poll_read_chunk(cx, max)).await;
        self.settle(result, "read")
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let result = self.ready("read")?.read_exact(buf).await.map(|_| ());
        self.settle(result, "read")
    }

    /// Encrypts and sends all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        let stream = self.ready("write")?;
        let result = match stream.write_all(buf).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        self.settle(result, "write")
    }

    /// Sends `buf` and close_notify in one flight (one write to the
    /// transport instead of two), then shuts the transport's write side: the
    /// shape of a request/response server's last reply.
    pub async fn write_all_and_close(&mut self, buf: &[u8]) -> Result<(), Error> {
        let stream = self.ready("write")?;
        let queued = match stream {
            // Encrypted into the stream's outgoing buffer; close_notify
            // joins it there and both leave in one write.
            Backend::LeanClient(s) => s.queue_plaintext(buf).unwrap_or(0),
            Backend::LeanServer(s) => s.queue_plaintext(buf).unwrap_or(0),
            // OpenSSL writes each record as it is given: no flight to join.
            #[cfg(feature = "openssl")]
            Backend::Openssl(_) => 0,
        };
        if queued < buf.len() {
            // Past rustls' buffer: send the rest the ordinary way first.
            let rest = stream.write_all(&buf[queued..]).await;
            self.settle(rest, "write")?;
        }
        // Shutdown queues close_notify behind the reply and flushes both at once.
        self.close().await
    }

    /// Sends close_notify and shuts the transport's write side.
    pub async fn close(&mut self) -> Result<(), Error> {
        let result = self.ready("close")?.shutdown().await;
        let settled = self.settle(result, "close");
        if settled.is_ok() {
            self.stage = Stage::Closed;
        }
        settled
    }

    fn settle<T>(&mut self, result: io::Result<T>, during: &'static str) -> Result<T, Error> {
        result.map_err(|err| {
            self.stage = Stage::Failed;
            Error::from_io(&self.peer, during, err)
        })
    }

    /// The transport under the TLS session (e.g. the `TcpStream`, to set a
    /// socket option or reset it), while there is one. The TLS
    /// implementation's own stream type stays private: the Tunnel itself is
    /// `AsyncRead + AsyncWrite` (and `tokio::io::split` works on it), so
    /// another TLS implementation can sit behind the same type.
    pub fn transport(&self) -> Option<&IO> {
        match &self.stage {
            Stage::NotStarted(io) => Some(io),
            Stage::Established(stream) => Some(stream.transport()),
            Stage::Handshaking | Stage::Closed | Stage::Failed => None,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tunnel<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.stage {
            Stage::Established(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            _ => Poll::Ready(Err(not_ready(this.state()))),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tunnel<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.stage {
            Stage::Established(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            _ => Poll::Ready(Err(not_ready(this.state()))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.stage {
            Stage::Established(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.stage {
            Stage::Established(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

fn not_ready(state: TunnelState) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("tunnel is {state}, not established"),
    )
}

/// A server handshake within `limit`, boxed (see `handshake_inner`), on
/// the unbuffered stream that holds no buffer while idle (see
/// `lean_stream`).
async fn accepting<IO: AsyncRead + AsyncWrite + Unpin>(
    config: &Arc<rustls::ServerConfig>,
    io: IO,
    limit: Duration,
    peer: &str,
) -> Result<Result<LeanServer<IO>, Error>, Elapsed> {
    let handshake = Box::pin(tokio::time::timeout(
        limit,
        crate::lean_stream::accept(config.clone(), io),
    ));
    handshake
        .await
        .map(|r| r.map_err(|err| Error::from_io(peer, "handshake", err)))
}

/// A client handshake within `limit`, boxed (see `handshake_inner`), on
/// the unbuffered stream that holds no buffer while idle, with as much of
/// `first` as fits queued to leave with the client's Finished; `queued`
/// says how much.
async fn connecting<IO: AsyncRead + AsyncWrite + Unpin>(
    config: &Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    io: IO,
    first: &[u8],
    queued: &mut usize,
    limit: Duration,
    peer: &str,
) -> Result<Result<LeanClient<IO>, Error>, Elapsed> {
    let handshake = Box::pin(tokio::time::timeout(
        limit,
        crate::lean_stream::connect(config.clone(), name, io, first),
    ));
    handshake.await.map(|r| match r {
        Ok((stream, n)) => {
            *queued = n;
            Ok(stream)
        }
        Err(err) => Err(Error::from_io(peer, "handshake", err)),
    })
}

/// The host part of `host:port`, `[v6]:port`, or a bare host.
pub(crate) fn host_of(peer: &str) -> &str {
    if let Some(rest) = peer.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match peer.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;
    use crate::test_fixtures::contexts;

    #[tokio::test]
    async fn read_chunk_returns_what_arrived_up_to_max_then_empty_at_close() {
        let (server, client) = contexts();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (accepted, connected) =
            tokio::join!(server.accept(a, "client"), client.connect(b, "server"));
        let (mut server_side, mut client_side) = (
            accepted.expect("server handshake"),
            connected.expect("client handshake"),
        );
        client_side.write_all(b"hello").await.expect("write");
        assert_eq!(server_side.read_chunk(3).await.expect("read"), b"hel");
        assert_eq!(server_side.read_chunk(100).await.expect("read"), b"lo");
        client_side.close().await.expect("close");
        assert!(server_side.read_chunk(100).await.expect("read").is_empty());
    }

    /// Every task that awaits a handshake carries this future's size for
    /// its whole life; a rustls connection (over a kilobyte) held inline
    /// across an await would put it back into every idle connection.
    #[test]
    fn a_waiting_handshake_holds_no_rustls_connection_inline() {
        let (server, client) = contexts();
        let (a, b) = tokio::io::duplex(64);
        let mut server_side = server.tunnel(a, "client");
        let mut client_side = client.tunnel(b, "server");
        let server_future = std::mem::size_of_val(&server_side.handshake());
        let client_future = std::mem::size_of_val(&client_side.handshake_and_send(b"x"));
        assert!(
            server_future < 1024,
            "server handshake future: {server_future} B"
        );
        assert!(
            client_future < 1024,
            "client handshake future: {client_future} B"
        );
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_of("127.0.0.1:443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("example.com:8443"), "example.com");
    }
}
