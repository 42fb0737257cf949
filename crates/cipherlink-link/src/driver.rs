//! The tokio driver: moves bytes between a TCP socket, the sans-IO core and
//! the application, and arms the core's timer. It holds no protocol logic.
//!
//! Like tokio-rustls, a [`Link`] does its I/O inside its own `poll_*`
//! methods: `poll_read` reads the socket into the core and hands decrypted
//! bytes straight to the caller's buffer; `poll_write` seals the caller's
//! bytes straight into the core's output and writes that to the socket. There
//! is no copy through an in-process pipe and no task switch per chunk.
//!
//! Keepalive still has to run while the application is not polling (a link
//! held idle in a pool, say). For that each link has one small background
//! task that sleeps until the core's next deadline and otherwise watches the
//! socket only while the application is not parked in a read of its own (an
//! application waiting in `poll_read` is woken by the socket and the link's
//! own timer, so a busy link costs the background task nothing). When it wakes
//! it makes non-blocking progress (read what is there, run the timer, write
//! what is queued) and wakes the application. The handshake runs in the
//! caller's task (`connect`) or one task per accepted socket (the listener).
//!
//! Bounds: the socket is read only while the core wants input, and the
//! core's output is taken only once the previous output is fully written, so
//! a link holds at most the core's own bounded buffers plus one output batch.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::error::Error;
use crate::gate::Ticket;
pub use crate::listener::LinkListener;
use crate::proto::handshake::TransportKeys;
use crate::proto::rng::ErasingRng;
use crate::proto::{ClientConfig, CloseCode, Connection, Event};

/// Largest read from the socket at once (large reads mean fewer wake-ups per
/// byte).
const CHUNK: usize = 64 * 1024;

thread_local! {
    /// The socket read buffer, one per runtime thread rather than per link
    /// (an idle link holds none) or per read: a fresh zeroed 64 KiB array for
    /// every read cost ~1-2 us of memset, several times per handshake, most
    /// of them for reads that found nothing.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
}

/// Reads once from `stream` (into the thread's buffer) and hands the bytes
/// to `conn`; a read of nothing is the peer's end of stream, which `conn`
/// is told as well. `Ok(true)`: end of stream.
fn read_into(stream: &TcpStream, conn: &mut Connection) -> io::Result<bool> {
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let n = stream.try_read(&mut buf[..])?;
        if n == 0 {
            conn.handle_eof(now());
        } else {
            conn.handle_input(now(), &buf[..n]);
        }
        Ok(n == 0)
    })
}

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

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// State shared by the [`Link`] and its background task.
struct Shared {
    stream: TcpStream,
    core: Mutex<Core>,
    /// Wakes the background task when the application hands it work
    /// (the link was dropped, or output is stuck while nobody writes).
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves a consistent-enough core:
        // every method leaves it in a valid state between statements.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Core {
    conn: Connection,
    /// Bytes taken from the core, written up to `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    sock_eof: bool,
    /// `None` while open; then why the link ended (`None` inside: cleanly).
    ended: Option<Option<Error>>,
    write_closed: bool,
    dropped: bool,
    /// The application is parked in `poll_read` (woken by the socket itself).
    app_reading: bool,
    /// The application is parked in `poll_write`/`poll_flush`.
    app_writing: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    closed_waker: Option<Waker>,
    /// The core's timer while the application polls reads.
    timer: Pin<Box<Sleep>>,
}

fn store(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

impl Core {
    fn pump_events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            if let Event::Closed { error } = ev {
                match &error {
                    Some(Error::Revoked) => tracing::warn!(
                        "link of {}: closed: its token was revoked",
                        self.conn.peer().unwrap_or("?")
                    ),
                    Some(e) => tracing::debug!("link ended: {e}"),
                    None => {}
                }
                if self.ended.is_none() {
                    self.ended = Some(error);
                }
            }
        }
    }

    /// Sends the authenticated close once: no more data from us.
    fn close_write(&mut self) {
        if !self.write_closed {
            self.write_closed = true;
            self.conn.close_write();
            self.pump_events();
        }
    }

    fn out_pending(&self) -> bool {
        self.out_pos < self.out.len() || self.conn.has_transmit()
    }

    fn write_failed(&mut self) {
        // The peer is unreachable: nothing more can be sent.
        self.out.clear();
        self.out_pos = 0;
        if self.ended.is_none() {
            self.ended = Some(Some(Error::Truncated));
        }
        self.conn.abort(CloseCode::Shutdown, "socket write failed");
        self.conn.poll_transmit(&mut Vec::new());
        self.pump_events();
    }

    /// Writes queued output. `Ready(Ok)` once all of it is written; with no
    /// `cx` a full socket returns `Pending` without registering a waker.
    fn flush(
        &mut self,
        stream: &TcpStream,
        mut cx: Option<&mut Context<'_>>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
                self.conn.poll_transmit(&mut self.out);
                if self.out.is_empty() {
                    if self.out.capacity() > 4 * CHUNK {
                        // An idle link keeps no bulk-sized buffer.
                        self.out = Vec::new();
                    }
                    return Poll::Ready(Ok(()));
                }
            }
            match stream.try_write(&self.out[self.out_pos..]) {
                Ok(n) if n > 0 => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let Some(cx) = cx.as_deref_mut() else {
                        return Poll::Pending;
                    };
                    match stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => {
                            self.write_failed();
                            return Poll::Ready(Err(e));
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => {
                    self.write_failed();
                    return Poll::Ready(Err(match r {
                        Err(e) => e,
                        Ok(_) => io::ErrorKind::WriteZero.into(),
                    }));
                }
            }
        }
    }

    /// Reads one batch from the socket into the core. `Ready(true)`: the core
    /// took input or end of file; `Ready(false)`: the core wants no input.
    fn read_socket(&mut self, stream: &TcpStream, mut cx: Option<&mut Context<'_>>) -> Poll<bool> {
        loop {
            if self.sock_eof || !self.conn.wants_input() {
                return Poll::Ready(false);
            }
            match read_into(stream, &mut self.conn) {
                Ok(eof) => self.sock_eof |= eof,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let Some(cx) = cx.as_deref_mut() else {
                        return Poll::Pending;
                    };
                    match stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(_)) => {
                            self.sock_eof = true;
                            self.conn.handle_eof(now());
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.sock_eof = true;
                    self.conn.handle_eof(now());
                }
            }
            self.pump_events();
            return Poll::Ready(true);
        }
    }

    /// Runs the core's timer if due; otherwise arms `timer` with `cx`.
    fn run_timer(&mut self, cx: Option<&mut Context<'_>>) -> bool {
        let Some(d) = self.conn.poll_timeout() else {
            return false;
        };
        if now() >= d {
            self.conn.handle_timeout(now());
            self.pump_events();
            return true;
        }
        if let Some(cx) = cx {
            let d = tokio::time::Instant::from_std(d);
            if self.timer.deadline() != d {
                self.timer.as_mut().reset(d);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                self.conn.handle_timeout(now());
                self.pump_events();
                return true;
            }
        }
        false
    }

    /// Everything the background task can do without blocking.
    fn progress(&mut self, stream: &TcpStream) {
        self.conn.handle_revocation();
        let _ = self.flush(stream, None);
        while let Poll::Ready(true) = self.read_socket(stream, None) {
            if self.dropped {
                self.discard();
            }
        }
        self.run_timer(None);
        if self.dropped {
            self.discard();
        }
        let _ = self.flush(stream, None);
        self.pump_events();
    }

    /// Nobody will read what arrives after the application dropped the link.
    fn discard(&mut self) {
        let mut sink = [0u8; 4096];
        while self.conn.recv(&mut sink) > 0 {}
    }

    fn wake_app(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.closed_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }

    fn finished(&self) -> bool {
        (self.conn.is_closed() || self.ended.is_some()) && !self.out_pending()
    }
}

/// The background task: keeps the link alive while the application is not
/// polling it, and finishes the close after the application dropped it.
async fn background(shared: Arc<Shared>) {
    loop {
        let (deadline, watch_read, watch_write, revocation) = {
            let mut core = shared.lock();
            core.progress(&shared.stream);
            core.wake_app();
            if core.finished() {
                return;
            }
            let watch_read = !core.app_reading && !core.sock_eof && core.conn.wants_input();
            let watch_write = !core.app_writing && core.out_pending();
            let revocation = core.conn.revocation().cloned();
            (
                core.conn.poll_timeout(),
                watch_read,
                watch_write,
                revocation,
            )
        };
        let deadline = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {}
            _ = shared.stream.readable(), if watch_read => {}
            _ = shared.stream.writable(), if watch_write => {}
            _ = shared.notify.notified() => {}
            () = std::future::poll_fn(|cx| match &revocation {
                Some(r) => r.poll_revoked(cx),
                None => Poll::Pending,
            }) => {}
        }
    }
}

/// An authenticated link: read and write application bytes.
///
/// Shutting down the write side sends the authenticated close; reading
/// returns end-of-file after the peer's close, or an error naming the reason
/// when the link ended otherwise (truncation, keepalive timeout, tampering).
pub struct Link {
    shared: Arc<Shared>,
    peer: String,
}

impl Link {
    pub(crate) fn start(stream: TcpStream, conn: Connection, peer: String) -> Self {
        let shared = Arc::new(Shared {
            stream,
            core: Mutex::new(Core {
                conn,
                out: Vec::new(),
                out_pos: 0,
                sock_eof: false,
                ended: None,
                write_closed: false,
                dropped: false,
                app_reading: false,
                app_writing: false,
                read_waker: None,
                write_waker: None,
                closed_waker: None,
                timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            }),
            notify: Notify::new(),
        });
        tokio::spawn(background(Arc::clone(&shared)));
        Self { shared, peer }
    }

    /// The authenticated peer name (the client's token name on the server).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// `None` while open; then `Some(None)` for a clean end or `Some(Some(e))`.
    pub fn end_reason(&self) -> Option<Option<Error>> {
        let mut core = self.shared.lock();
        core.pump_events();
        core.ended.clone()
    }

    /// Waits until the link has ended and returns why (`None`: clean).
    pub async fn closed(&mut self) -> Option<Error> {
        std::future::poll_fn(|cx| {
            let mut core = self.shared.lock();
            core.pump_events();
            match &core.ended {
                Some(r) => Poll::Ready(r.clone()),
                None => {
                    store(&mut core.closed_waker, cx.waker());
                    // The background task runs the timer and reads the socket;
                    // it needs telling only if it left reading to a parked reader.
                    let was_reading = std::mem::replace(&mut core.app_reading, false);
                    drop(core);
                    if was_reading {
                        self.shared.notify.notify_one();
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Ends the link at once with an authenticated close that carries
    /// `reason` (code 5, aborted): the peer's reads then fail naming it,
    /// where dropping the link would look like a clean end of stream. For a
    /// relay whose other side failed (a proxy whose service is down), as a
    /// TCP reset tells a plain client. Queued output is still flushed.
    pub fn abort(self, reason: &str) {
        let mut core = self.shared.lock();
        if !core.write_closed {
            core.write_closed = true;
            core.conn.abort(CloseCode::Aborted, reason);
        }
        // Drop finishes the job: the background task flushes the close.
    }

    /// Writes all of `data` and then the authenticated close, with the last
    /// bytes and the close in one socket write (as the core Tunnel's
    /// `write_all_and_close`): a server that answers and hangs up sends one
    /// segment, not two. Earlier bytes go out whenever the core's send
    /// buffer fills.
    pub async fn write_all_and_close(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        std::future::poll_fn(|cx| {
            let mut core = self.shared.lock();
            core.pump_events();
            while !rest.is_empty() {
                let n = ready!(self.poll_queue(&mut core, cx, rest))?;
                rest = &rest[n..];
            }
            core.close_write();
            self.poll_flush_core(&mut core, cx)
        })
        .await
    }

    fn io_error(&self, e: &Error) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("link to {}: {e}", self.peer),
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        core.dropped = true;
        core.app_reading = false;
        core.app_writing = false;
        // As if the application had shut down its write side.
        core.close_write();
        core.discard();
        drop(core);
        self.shared.notify.notify_one();
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish()
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shared = &*this.shared;
        let mut core = shared.lock();
        loop {
            core.pump_events();
            if core.conn.recv_pending() > 0 || buf.remaining() == 0 {
                let n = core.conn.recv(buf.initialize_unfilled());
                buf.advance(n);
                core.app_reading = false;
                // Pongs and our own queued bytes go out without waiting for a writer.
                if core.flush(&shared.stream, None).is_pending() && !core.app_writing {
                    shared.notify.notify_one();
                }
                return Poll::Ready(Ok(()));
            }
            if core.conn.recv_finished() || core.ended.is_some() {
                core.app_reading = false;
                return Poll::Ready(match core.ended.clone().flatten() {
                    Some(e) => Err(this.io_error(&e)),
                    None => Ok(()),
                });
            }
            if core.flush(&shared.stream, None).is_pending() && !core.app_writing {
                shared.notify.notify_one();
            }
            match core.read_socket(&shared.stream, Some(cx)) {
                Poll::Ready(true) => continue,
                Poll::Ready(false) | Poll::Pending => {}
            }
            if core.run_timer(Some(cx)) {
                continue;
            }
            core.app_reading = true;
            store(&mut core.read_waker, cx.waker());
            return Poll::Pending;
        }
    }
}

impl Link {
    fn poll_flush_core(&self, core: &mut Core, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match core.flush(&self.shared.stream, Some(cx)) {
            Poll::Ready(r) => {
                core.app_writing = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                core.app_writing = true;
                store(&mut core.write_waker, cx.waker());
                Poll::Pending
            }
        }
    }

    /// Queues what of `buf` fits in the core's send buffer (sealed, not yet
    /// written); flushes first only when the buffer is full.
    fn poll_queue(
        &self,
        core: &mut Core,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if core.write_closed || core.ended.is_some() || !core.conn.is_open() {
                core.app_writing = false;
                return Poll::Ready(Err(self.closed_for_writing(core)));
            }
            if core.conn.send_capacity() > 0 {
                let n = core.conn.send(buf).map_err(|e| self.io_error(&e))?;
                core.app_writing = false;
                return Poll::Ready(Ok(n));
            }
            ready!(self.poll_flush_core(core, cx))?;
            if core.conn.send_capacity() == 0 {
                // Flushed yet no room: the link closed meanwhile.
                core.pump_events();
                if !core.conn.is_open() || core.ended.is_some() {
                    continue;
                }
                return Poll::Ready(Err(self.closed_for_writing(core)));
            }
        }
    }

    fn closed_for_writing(&self, core: &Core) -> io::Error {
        match core.ended.clone().flatten() {
            Some(e) => self.io_error(&e),
            None => io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("link to {} is closed for writing", self.peer),
            ),
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &*self;
        let mut core = this.shared.lock();
        core.pump_events();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_queue(&mut core, cx, buf))?;
        // Start the bytes on their way; a full socket is the next call's business.
        if let Poll::Ready(Err(e)) = core.flush(&this.shared.stream, Some(cx)) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &*self;
        let mut core = this.shared.lock();
        this.poll_flush_core(&mut core, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &*self;
        let mut core = this.shared.lock();
        core.close_write();
        this.poll_flush_core(&mut core, cx)
    }
}

/// Runs the handshake on `stream` in the calling task; returns the peer name.
/// Any output the core queued with the last step is written before returning.
/// A server connection's admission `ticket` is the caller's until the
/// socket is closed or a link (docs §6); its eviction ends the handshake.
pub(crate) async fn handshake(
    stream: &TcpStream,
    conn: &mut Connection,
    ticket: Option<&Ticket>,
    peer_addr: Option<std::net::SocketAddr>,
) -> Result<String, Error> {
    let mut probe_logged = false;
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut out = Vec::new();
    let mut sock_eof = false;
    loop {
        let mut result = None;
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Connected { peer } => {
                    result = Some(Ok(peer));
                    break;
                }
                Event::PeerFinished => {}
                Event::Closed { error } => {
                    result = Some(Err(error.unwrap_or(Error::HandshakeEof)));
                    break;
                }
            }
        }
        if result.is_none() && conn.is_closed() {
            result = Some(Err(Error::HandshakeEof));
        }
        if let (false, Some(addr), Some(reason), None) =
            (probe_logged, peer_addr, conn.probe_reason(), conn.refusal())
        {
            // When it happens, not at the close: a probe may linger for 45 s.
            tracing::debug!("link probe from {addr}: {reason}");
            probe_logged = true;
        }
        conn.poll_transmit(&mut out);
        let mut pos = 0;
        while pos < out.len() {
            match stream.try_write(&out[pos..]) {
                Ok(n) if n > 0 => pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.writable().await.is_err() {
                        return Err(Error::Truncated);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return Err(result.and_then(Result::err).unwrap_or(Error::HandshakeEof)),
            }
        }
        out.clear();
        if let Some(r) = result {
            return r;
        }
        if let Some(d) = conn.poll_timeout() {
            let d = tokio::time::Instant::from_std(d);
            if timer.deadline() != d {
                timer.as_mut().reset(d);
            }
        }
        let want = !sock_eof && conn.wants_input();
        // A first message whose replay mark is on its way to disk (docs §6).
        let commit = conn.pending_commit();
        tokio::select! {
            r = stream.readable(), if want => {
                match r.and_then(|()| read_into(stream, conn)) {
                    Ok(eof) => sock_eof |= eof,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        sock_eof = true;
                        conn.handle_eof(now());
                    }
                }
            }
            _ = timer.as_mut(), if conn.poll_timeout().is_some() => conn.handle_timeout(now()),
            _ = std::future::poll_fn(|cx| match &commit {
                Some(c) => c.poll_durable(cx),
                None => Poll::Pending,
            }), if commit.is_some() => conn.handle_commit(now()),
            // Over an admission cap: closed like a probe, only earlier.
            () = async { if let Some(t) = ticket { t.evicted().await } }, if ticket.is_some() => {
                return Err(Error::Probe("evicted by a newer connection over the admission cap"));
            }
            // Neither input nor a timer: only an end can follow.
            () = std::future::ready(()), if !want && conn.poll_timeout().is_none() => {
                conn.handle_eof(now());
            }
        }
    }
}

/// Connects to `addr` and completes the handshake, both within the
/// configuration's `handshake_timeout` (a server that never accepts the TCP
/// connection fails it with [`Error::HandshakeTimeout`] too).
pub async fn connect(addr: impl ToSocketAddrs, cfg: &ClientConfig) -> Result<Link, DriverError> {
    connecting(addr, cfg, false).await.map(|(link, _)| link)
}

/// As [`connect`], and also returns the link's transport secrets, so that
/// a capture of it can be decrypted (the chaos lab's packet classes).
/// Debugging and labs only: whoever holds them can read and forge every
/// record of this link.
pub async fn connect_exporting_keys(
    addr: impl ToSocketAddrs,
    cfg: &ClientConfig,
) -> Result<(Link, TransportKeys), DriverError> {
    let (link, keys) = connecting(addr, cfg, true).await?;
    let keys = keys.ok_or(Error::Protocol("handshake completed without keys"))?;
    Ok((link, keys))
}

async fn connecting(
    addr: impl ToSocketAddrs,
    cfg: &ClientConfig,
    export_keys: bool,
) -> Result<(Link, Option<TransportKeys>), DriverError> {
    cfg.params.validate()?;
    // One limit for the TCP connect and the handshake: the core's own
    // deadline starts only once connected, so it alone would let a server
    // that never completes the connect hold the caller for the system's
    // SYN retries (minutes).
    let limit = cfg.params.handshake_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::HandshakeTimeout)?
        .map_err(|e| DriverError::Io {
            what: "connecting to the link server".into(),
            source: e,
        })?;
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::client(cfg, Box::new(ErasingRng::from_os()?), now(), unix_now())?;
    if export_keys {
        conn.export_keys();
    }
    let peer = tokio::time::timeout_at(deadline, handshake(&stream, &mut conn, None, None))
        .await
        .map_err(|_| Error::HandshakeTimeout)??;
    let keys = conn.take_exported_keys();
    Ok((Link::start(stream, conn, peer), keys))
}
