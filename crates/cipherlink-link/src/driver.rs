//! The tokio driver: moves bytes between a TCP socket, the sans-IO core and
//! the application, and arms the core's timer. It holds no protocol logic.
//!
//! The application side of a link is one half of a `tokio::io::duplex` pair
//! wrapped in [`Link`]; the driver task owns the other half, so the link is a
//! plain `AsyncRead + AsyncWrite` and backpressure is the duplex buffer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::proto::{ClientConfig, CloseCode, Connection, Event, ServerEndpoint};

/// Bytes buffered between the driver and the application, each way.
const DUPLEX_BUFFER: usize = 256 * 1024;
/// Largest read from the socket or the application at once (large reads mean
/// fewer wake-ups per byte; the buffer exists only while a read is ready).
const CHUNK: usize = 64 * 1024;
/// Handshakes in progress at once on one listener; more wait in the kernel backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 4096;
/// Authenticated links waiting for [`LinkListener::accept`].
const ACCEPT_QUEUE: usize = 128;

/// Errors of the driver (socket errors besides protocol errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The protocol refused or failed.
    #[error(transparent)]
    Link(#[from] Error),
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// An authenticated link: read and write application bytes.
///
/// Shutting down the write side sends the authenticated close; reading
/// returns end-of-file after the peer's close, or an error naming the reason
/// when the link ended otherwise (truncation, keepalive timeout, tampering).
pub struct Link {
    io: DuplexStream,
    peer: String,
    end: watch::Receiver<Option<Option<Error>>>,
}

impl Link {
    /// The authenticated peer name (the client's token name on the server).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// `None` while open; then `Some(None)` for a clean end or `Some(Some(e))`.
    pub fn end_reason(&self) -> Option<Option<Error>> {
        self.end.borrow().clone()
    }

    /// Waits until the link has ended and returns why (`None`: clean).
    pub async fn closed(&mut self) -> Option<Error> {
        loop {
            if let Some(r) = self.end.borrow().clone() {
                return r;
            }
            if self.end.changed().await.is_err() {
                return self.end.borrow().clone().flatten();
            }
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish()
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let want = buf.remaining() > 0;
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if want && buf.filled().len() == before => {
                // End of file: clean only if the link ended cleanly.
                match self.end.borrow().clone() {
                    Some(Some(e)) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("link to {}: {e}", self.peer),
                    ))),
                    _ => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and yields the ones that authenticate.
pub struct LinkListener {
    rx: mpsc::Receiver<Link>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for LinkListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkListener {
    /// Listens on `addr`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        endpoint: Arc<ServerEndpoint>,
    ) -> Result<Self, DriverError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| DriverError::Io {
            what: "binding the link listener".into(),
            source: e,
        })?;
        let local = listener.local_addr().map_err(|e| DriverError::Io {
            what: "reading the listener address".into(),
            source: e,
        })?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let task = tokio::spawn(accept_loop(listener, endpoint, tx));
        Ok(Self { rx, local, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next authenticated link (`None` if the listener stopped).
    pub async fn accept(&mut self) -> Option<Link> {
        self.rx.recv().await
    }
}

async fn accept_loop(listener: TcpListener, endpoint: Arc<ServerEndpoint>, tx: mpsc::Sender<Link>) {
    let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("link accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection::server(
            Arc::clone(&endpoint),
            Box::new(StdRng::from_os_rng()),
            now(),
            unix_now(),
        );
        tracing::trace!("link connection from {addr}");
        tokio::spawn(drive(
            stream,
            conn,
            Deliver::Listener(tx.clone()),
            Some(permit),
        ));
    }
}

/// Connects to `addr` and completes the handshake.
pub async fn connect(addr: impl ToSocketAddrs, cfg: &ClientConfig) -> Result<Link, DriverError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| DriverError::Io {
            what: "connecting to the link server".into(),
            source: e,
        })?;
    let _ = stream.set_nodelay(true);
    let conn = Connection::client(cfg, Box::new(StdRng::from_os_rng()), now(), unix_now())?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(drive(stream, conn, Deliver::Connect(tx), None));
    match rx.await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Error::HandshakeEof.into()),
    }
}

/// Where an authenticated link goes.
enum Deliver {
    /// To [`LinkListener::accept`] (handshake failures stay silent).
    Listener(mpsc::Sender<Link>),
    /// To [`connect`]'s caller, or the reason it failed.
    Connect(oneshot::Sender<Result<Link, Error>>),
}

impl Deliver {
    async fn send(self, r: Result<Link, Error>) {
        match (self, r) {
            (Self::Listener(tx), Ok(link)) => {
                let _ = tx.send(link).await;
            }
            (Self::Listener(_), Err(_)) => {}
            (Self::Connect(tx), r) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// The per-connection task: runs until the core is closed and its bytes are flushed.
async fn drive(
    stream: TcpStream,
    mut conn: Connection,
    connected: Deliver,
    mut handshake_permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut connected = Some(connected);
    let mut app: Option<(
        tokio::io::ReadHalf<DuplexStream>,
        tokio::io::WriteHalf<DuplexStream>,
    )> = None;
    let mut end_tx: Option<watch::Sender<Option<Option<Error>>>> = None;
    let mut out: Vec<u8> = Vec::new();
    let mut out_pos = 0;
    let mut to_app: Vec<u8> = Vec::new();
    let mut to_app_pos = 0;
    let (mut sock_eof, mut app_eof, mut app_finished) = (false, false, false);
    let mut ended: Option<Option<Error>> = None;
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);

    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Connected { peer } => {
                    handshake_permit = None;
                    let (mine, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
                    let (etx, erx) = watch::channel(None);
                    end_tx = Some(etx);
                    app = Some(tokio::io::split(mine));
                    let link = Link {
                        io: theirs,
                        peer,
                        end: erx,
                    };
                    if let Some(c) = connected.take() {
                        c.send(Ok(link)).await;
                    }
                }
                Event::PeerFinished => {}
                Event::Closed { error } => {
                    if let Some(c) = connected.take() {
                        c.send(Err(error.clone().unwrap_or(Error::HandshakeEof)))
                            .await;
                    }
                    if let Some(e) = &error {
                        tracing::debug!("link ended: {e}");
                    }
                    ended = Some(error);
                }
            }
        }
        if handshake_permit.is_some() && (conn.is_open() || conn.probe_reason().is_some()) {
            // Probes cost no crypto; only real handshakes count against the limit.
            handshake_permit = None;
        }
        if out_pos == out.len() {
            out.clear();
            out_pos = 0;
            conn.poll_transmit(&mut out);
            if out.is_empty() && out.capacity() > 4 * CHUNK {
                // An idle link keeps no bulk-sized buffer.
                out = Vec::new();
            }
        }
        if to_app_pos == to_app.len() && to_app.capacity() > CHUNK {
            to_app = Vec::new();
            to_app_pos = 0;
        }
        if to_app_pos == to_app.len() && conn.recv_pending() > 0 {
            to_app.resize(conn.recv_pending().min(DUPLEX_BUFFER), 0);
            let n = conn.recv(&mut to_app);
            to_app.truncate(n);
            to_app_pos = 0;
        }
        let to_app_empty = to_app_pos == to_app.len();
        if to_app_empty && !app_finished && (conn.recv_finished() || ended.is_some()) {
            if let Some(tx) = &end_tx {
                tx.send_replace(Some(ended.clone().flatten()));
            }
            if let Some((_, w)) = &mut app {
                let _ = w.shutdown().await;
            }
            app_finished = true;
        }
        if conn.is_closed() && out_pos == out.len() && (to_app_empty || app.is_none()) {
            break;
        }
        let deadline = conn.poll_timeout();
        if let Some(d) = deadline {
            // One timer per link, re-armed only when the deadline moves.
            let d = tokio::time::Instant::from_std(d);
            if timer.deadline() != d {
                timer.as_mut().reset(d);
            }
        }
        let cap = conn.send_capacity().min(CHUNK);
        let app_readable = app.is_some() && !app_eof && cap > 0;
        let want_sock = !sock_eof && conn.wants_input();
        let writing = out_pos < out.len();
        let (app_rd, app_wr) = match &mut app {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        tokio::select! {
            r = read_chunk(&mut rd, CHUNK), if want_sock => match r {
                Ok(b) if b.is_empty() => {
                    sock_eof = true;
                    conn.handle_eof(now());
                }
                Ok(b) => conn.handle_input(now(), &b),
                Err(_) => {
                    sock_eof = true;
                    conn.handle_eof(now());
                }
            },
            r = wr.write(&out[out_pos..]), if writing => match r {
                Ok(n) if n > 0 => out_pos += n,
                _ => {
                    // The peer is unreachable: nothing more can be sent.
                    out.clear();
                    out_pos = 0;
                    conn.abort(CloseCode::Shutdown, "socket write failed");
                    conn.poll_transmit(&mut Vec::new());
                    if ended.is_none() {
                        ended = Some(Some(Error::Truncated));
                    }
                }
            },
            r = async { match app_rd { Some(r) => read_chunk(r, cap).await, None => std::future::pending().await } }, if app_readable => match r {
                Ok(b) if !b.is_empty() => {
                    // At most `cap` bytes, which fit in the send buffer: all are taken.
                    let _ = conn.send(&b);
                }
                _ => {
                    app_eof = true;
                    conn.close_write();
                }
            },
            r = async { match app_wr { Some(w) => w.write(&to_app[to_app_pos..]).await, None => std::future::pending().await } }, if !to_app_empty => match r {
                Ok(n) if n > 0 => to_app_pos += n,
                _ => {
                    // The application dropped the link: stop delivering.
                    to_app.clear();
                    to_app_pos = 0;
                    app = None;
                    if !app_eof {
                        app_eof = true;
                        conn.close_write();
                    }
                }
            },
            _ = timer.as_mut(), if deadline.is_some() => conn.handle_timeout(now()),
        }
    }
    let _ = wr.shutdown().await;
    if let Some(tx) = &end_tx {
        tx.send_replace(Some(ended.clone().flatten()));
    }
    if let Some(c) = connected.take() {
        c.send(Err(ended.flatten().unwrap_or(Error::HandshakeEof)))
            .await;
    }
}

/// Reads up to `max` bytes into a fresh vector (empty at end of file).
///
/// The read buffer lives on the stack only while a read is ready, so an idle
/// link holds no read buffers (memory per idle link).
async fn read_chunk<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    std::future::poll_fn(|cx| {
        let mut stack = [0u8; CHUNK];
        let mut rb = ReadBuf::new(&mut stack[..max.min(CHUNK)]);
        match Pin::new(&mut *r).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().to_vec())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
