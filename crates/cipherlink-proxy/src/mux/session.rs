//! The state of one mux connection, without I/O: streams, their credit
//! windows and buffers, the queue of encoded frames waiting for the
//! connection, and the wakers of whoever waits on them. The driver feeds it
//! decoded frames and drains its output; stream handles call the `poll_*`
//! methods. Everything a peer can make it hold is bounded (docs/mux.md §4).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{Frame, Reason, MAX_DATA};
use super::keepalive::{Action, Keepalive, KeepaliveConfig};

/// Which end of the connection: the client opens streams, the server
/// accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opens streams.
    Client,
    /// Accepts streams.
    Server,
}

/// A connection's bounds and timers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most streams open at once on the connection.
    pub max_streams: usize,
    /// Each stream's receive window, both ways: the most bytes a stream
    /// buffers for a reader that does not read.
    pub window: u32,
    /// Client: the last stream id it opens; the connection then takes no
    /// new stream and closes once its last stream ends. `u32::MAX` but in
    /// tests, which make ids run out.
    pub last_stream_id: u32,
    /// When an idle connection is pinged and declared gone.
    pub keepalive: KeepaliveConfig,
}

/// 256 KiB: a stream moves at full speed over a fast path with this in
/// flight, and a stalled stream pins no more.
pub const DEFAULT_WINDOW: u32 = 256 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams: 1024,
            window: DEFAULT_WINDOW,
            last_stream_id: u32::MAX,
            keepalive: KeepaliveConfig::default(),
        }
    }
}

/// Stream writers wait once this many encoded bytes are queued for the
/// connection.
pub const OUT_HIGH: usize = 256 * 1024;

/// Control frames (credit, FIN, RESET) are queued past [`OUT_HIGH`]; a peer
/// that makes us queue this much without reading is dropped.
pub const OUT_HARD: usize = 4 * 1024 * 1024;

/// Why a whole connection ended.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MuxError {
    /// The peer broke docs/mux.md.
    #[error("mux protocol violation: {0}")]
    Protocol(String),
    /// The encrypted connection ended or failed.
    #[error("mux connection lost: {0}")]
    Lost(Arc<str>),
    /// Every stream slot of the connection stayed taken this long.
    #[error("no free stream slot within {0:?}")]
    NoSlot(Duration),
    /// The peer answered no keepalive ping: it vanished without closing
    /// (host down, a NAT or firewall forgot the connection).
    #[error("the peer answered none of {pings} keepalive ping(s), waiting {wait:?} for each")]
    Silent {
        /// Pings sent in a row without an answer.
        pings: u32,
        /// How long each was waited for.
        wait: Duration,
    },
}

#[derive(Debug)]
struct Stream {
    recv: VecDeque<Bytes>,
    recv_len: usize,
    /// Bytes the peer may still send (what we granted, minus what came).
    recv_window: u32,
    /// Bytes read by the handle since the last WINDOW we sent.
    consumed: u32,
    remote_fin: bool,
    send_credit: u32,
    local_fin: bool,
    reset: Option<Reason>,
    accepted: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Stream {
    fn new(window: u32, accepted: bool) -> Stream {
        Stream {
            recv: VecDeque::new(),
            recv_len: 0,
            recv_window: window,
            consumed: 0,
            remote_fin: false,
            send_credit: window,
            local_fin: false,
            reset: None,
            accepted,
            read_waker: None,
            write_waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }
}

/// One connection's streams; see the module docs.
#[derive(Debug)]
pub struct Session {
    side: Side,
    limits: Limits,
    streams: HashMap<u32, Stream>,
    /// Client: the last id opened; server: the last id the peer opened.
    last_id: u32,
    /// Server: opened streams not yet taken by [`Session::poll_accept`].
    incoming: VecDeque<u32>,
    out: BytesMut,
    failed: Option<MuxError>,
    /// No more frames will be queued: the driver ends once `out` is sent.
    closing: bool,
    writer_waker: Option<Waker>,
    incoming_waker: Option<Waker>,
    /// Streams whose writer waits for the output queue to drain (its waker
    /// is the stream's own `write_waker`: one per stream, however often
    /// it is polled).
    out_blocked: HashSet<u32>,
    /// Openers waiting for a slot, one waker per task (at most
    /// [`MAX_OPEN_WAITERS`]; past it every one is woken to poll again).
    open_waiters: Vec<Waker>,
    keepalive: Keepalive,
    /// The driver's keepalive timer, woken when a probe moves its deadline.
    timer_waker: Option<Waker>,
    /// Client: takes no new stream, and closes once its last one ends.
    retired: bool,
}

/// Openers remembered at once: a task whose open timed out leaves its
/// waker behind until the next wake-up, so the list is emptied (every
/// opener woken, the live ones poll again) when it reaches this.
const MAX_OPEN_WAITERS: usize = 4096;

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Session {
    /// A fresh connection's state.
    pub fn new(side: Side, limits: Limits) -> Session {
        Session {
            side,
            limits,
            streams: HashMap::new(),
            last_id: 0,
            incoming: VecDeque::new(),
            out: BytesMut::new(),
            failed: None,
            closing: false,
            writer_waker: None,
            incoming_waker: None,
            out_blocked: HashSet::new(),
            open_waiters: Vec::new(),
            keepalive: Keepalive::new(limits.keepalive),
            timer_waker: None,
            retired: false,
        }
    }

    /// Streams open (handles not yet dropped, or not yet taken).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Why the connection ended, once it has.
    pub fn failure(&self) -> Option<&MuxError> {
        self.failed.as_ref()
    }

    /// Whether a client can open no more streams here (the connection
    /// ended, or its ids ran out): the next tunnel needs a new connection.
    pub fn is_spent(&self) -> bool {
        self.failed.is_some()
            || self.closing
            || self.retired
            || self.last_id >= self.limits.last_stream_id
    }

    /// Client: takes no new stream from now on and closes cleanly once
    /// its last stream ends (the streams it carries go on until then).
    pub fn retire(&mut self) {
        self.retired = true;
        if self.streams.is_empty() {
            self.close();
        }
    }

    /// Bytes arrived from the peer (the driver, after each read).
    pub fn heard(&mut self, now: Instant) {
        self.keepalive.heard(now);
    }

    /// How long the peer has been silent.
    pub fn quiet(&self, now: Instant) -> Duration {
        self.keepalive.quiet(now)
    }

    /// Asks the peer whether it is there (one PING unless one already
    /// waits for its answer); any bytes from it answer.
    pub fn probe(&mut self, now: Instant) {
        if self.failed.is_some() || self.closing {
            return;
        }
        if let Some(id) = self.keepalive.probe(now) {
            self.queue(Frame::Ping(id));
            if let Some(waker) = self.timer_waker.take() {
                waker.wake();
            }
        }
    }

    /// The keepalive settings in force.
    pub fn keepalive(&self) -> &KeepaliveConfig {
        self.keepalive.config()
    }

    /// The driver's timer: sends the pings that are due, fails the
    /// connection once the peer answered none, and returns when to call
    /// again (`None`: not before a probe or the end).
    pub fn poll_timer(&mut self, now: Instant, cx: &Context<'_>) -> Option<Instant> {
        if self.failed.is_some() || self.closing {
            return None;
        }
        store(&mut self.timer_waker, cx);
        loop {
            match self.keepalive.tick(now) {
                (Action::Wait, deadline) => return deadline,
                (Action::Ping(id), _) => self.queue(Frame::Ping(id)),
                (Action::Gone(pings), _) => {
                    let wait = self.keepalive.config().reply_timeout;
                    self.fail(MuxError::Silent { pings, wait });
                    return None;
                }
            }
            if self.failed.is_some() {
                return None;
            }
        }
    }

    fn queue(&mut self, frame: Frame) {
        frame.encode(&mut self.out);
        if let Some(waker) = self.writer_waker.take() {
            waker.wake();
        }
        if self.out.len() > OUT_HARD {
            self.fail(MuxError::Protocol(format!(
                "the peer made us queue over {OUT_HARD} bytes without reading them"
            )));
        }
    }

    /// Ends the connection: every stream's next read or write fails with
    /// `error` (after the bytes already buffered), every waiter wakes.
    pub fn fail(&mut self, error: MuxError) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(error);
        self.out.clear();
        self.streams.values_mut().for_each(Stream::wake);
        for waker in [
            self.writer_waker.take(),
            self.incoming_waker.take(),
            self.timer_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            waker.wake();
        }
        self.out_blocked.clear();
        self.open_waiters.drain(..).for_each(Waker::wake);
    }

    /// Ends the connection once what is queued went out (the driver then
    /// closes it: a link's authenticated close, TLS's close_notify).
    pub fn close(&mut self) {
        self.closing = true;
        if let Some(waker) = self.writer_waker.take() {
            waker.wake();
        }
    }

    /// The driver: the encoded frames to write next, or `None` once the
    /// connection has failed.
    pub fn poll_output(&mut self, cx: &Context<'_>) -> Poll<Option<BytesMut>> {
        if self.failed.is_some() {
            return Poll::Ready(None);
        }
        if self.out.is_empty() {
            if self.closing {
                return Poll::Ready(None);
            }
            store(&mut self.writer_waker, cx);
            return Poll::Pending;
        }
        let batch = self.out.split();
        for id in self.out_blocked.drain() {
            if let Some(waker) = self.streams.get_mut(&id).and_then(|s| s.write_waker.take()) {
                waker.wake();
            }
        }
        Poll::Ready(Some(batch))
    }

    /// Applies one frame from the peer; an error ends the connection (the
    /// caller passes it to [`Session::fail`]).
    pub fn receive(&mut self, frame: Frame) -> Result<(), MuxError> {
        let violation = |what: String| Err(MuxError::Protocol(what));
        match frame {
            Frame::Ping(value) => {
                if self.failed.is_none() {
                    self.queue(Frame::Pong(value));
                }
                return Ok(());
            }
            // Liveness is whatever arrives ([`Session::heard`]).
            Frame::Pong(_) => return Ok(()),
            _ => {}
        }
        let id = frame.stream();
        if let Frame::Open(_) = frame {
            if self.side == Side::Client {
                return violation(format!("the server opened stream {id}"));
            }
            if id <= self.last_id {
                return violation(format!("stream {id} opened after {}", self.last_id));
            }
            self.last_id = id;
            if self.streams.len() >= self.limits.max_streams {
                self.queue(Frame::Reset(id, Reason::Refused));
            } else {
                self.streams
                    .insert(id, Stream::new(self.limits.window, true));
                self.incoming.push_back(id);
                if let Some(waker) = self.incoming_waker.take() {
                    waker.wake();
                }
            }
            return Ok(());
        }
        if id > self.last_id {
            return violation(format!("frame for stream {id}, never opened"));
        }
        // A stream we dropped (and reset) may still have frames in flight.
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        match frame {
            Frame::Open(_) | Frame::Ping(_) | Frame::Pong(_) => {}
            Frame::Accept(_) if self.side == Side::Server => {
                return violation(format!("the client accepted stream {id}"));
            }
            Frame::Accept(_) => stream.accepted = true,
            Frame::Data(_, data) => {
                if stream.remote_fin {
                    return violation(format!("DATA on stream {id} after its FIN"));
                }
                let len = data.len() as u32;
                if len > stream.recv_window {
                    return violation(format!(
                        "stream {id} sent {len} bytes with {} of credit",
                        stream.recv_window
                    ));
                }
                stream.recv_window -= len;
                if stream.reset.is_none() {
                    stream.recv_len += data.len();
                    stream.recv.push_back(data);
                }
                stream.accepted = true;
            }
            Frame::Window(_, credit) => {
                match stream.send_credit.checked_add(credit) {
                    Some(total) if total <= self.limits.window => {
                        stream.send_credit = total;
                    }
                    _ => return violation(format!("stream {id}'s credit grew past its window")),
                }
                stream.accepted = true;
            }
            Frame::Fin(_) => {
                stream.remote_fin = true;
                stream.accepted = true;
            }
            Frame::Reset(_, reason) => {
                stream.reset = Some(reason);
                stream.recv.clear();
                stream.recv_len = 0;
            }
        }
        stream.wake();
        Ok(())
    }

    /// Client: a new stream's id, once a slot is free.
    pub fn poll_open(&mut self, cx: &Context<'_>) -> Poll<Result<u32, MuxError>> {
        if let Some(failed) = &self.failed {
            return Poll::Ready(Err(failed.clone()));
        }
        if self.retired || self.closing {
            return Poll::Ready(Err(MuxError::Lost(
                "the connection takes no new stream".into(),
            )));
        }
        if self.last_id >= self.limits.last_stream_id {
            return Poll::Ready(Err(MuxError::Lost("stream ids exhausted".into())));
        }
        if self.streams.len() >= self.limits.max_streams {
            if !self.open_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                if self.open_waiters.len() >= MAX_OPEN_WAITERS {
                    self.open_waiters.drain(..).for_each(Waker::wake);
                }
                self.open_waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        self.last_id += 1;
        let id = self.last_id;
        self.streams
            .insert(id, Stream::new(self.limits.window, false));
        self.queue(Frame::Open(id));
        Poll::Ready(Ok(id))
    }

    /// Server: the next stream the client opened; `None` once the
    /// connection ended.
    pub fn poll_accept(&mut self, cx: &Context<'_>) -> Poll<Option<u32>> {
        if let Some(id) = self.incoming.pop_front() {
            return Poll::Ready(Some(id));
        }
        if self.failed.is_some() {
            return Poll::Ready(None);
        }
        store(&mut self.incoming_waker, cx);
        Poll::Pending
    }

    /// Server: tells the client its stream's service is connected.
    pub fn accept(&mut self, id: u32) {
        if self.failed.is_none() && self.streams.contains_key(&id) {
            self.queue(Frame::Accept(id));
        }
    }

    /// Client: whether the server accepted (or answered on) the stream;
    /// an error if it reset it or the connection ended.
    pub fn is_accepted(&self, id: u32) -> Result<bool, io::Error> {
        let stream = self.live(id)?;
        Ok(stream.accepted)
    }

    /// Why stream `id` can carry nothing more (reset, or the connection
    /// ended), if so.
    pub fn dead(&self, id: u32) -> Option<io::Error> {
        self.live(id).err()
    }

    fn live(&self, id: u32) -> Result<&Stream, io::Error> {
        let stream = self
            .streams
            .get(&id)
            .ok_or_else(|| io::Error::other("mux stream already closed"))?;
        if let Some(reason) = stream.reset {
            return Err(reset_error(reason));
        }
        if let Some(failed) = &self.failed {
            return Err(lost_error(failed));
        }
        Ok(stream)
    }

    /// Reads buffered bytes; end of stream after the peer's FIN.
    pub fn poll_read(
        &mut self,
        id: u32,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let window = self.limits.window;
        let failed = self.failed.clone();
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(io::Error::other("mux stream already closed")));
        };
        if let Some(reason) = stream.reset {
            return Poll::Ready(Err(reset_error(reason)));
        }
        if stream.recv.is_empty() {
            if stream.remote_fin {
                return Poll::Ready(Ok(0));
            }
            if let Some(failed) = &failed {
                return Poll::Ready(Err(lost_error(failed)));
            }
            store(&mut stream.read_waker, cx);
            return Poll::Pending;
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = stream.recv.front_mut() else {
                break;
            };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front[..take]);
            bytes::Buf::advance(front, take);
            if front.is_empty() {
                stream.recv.pop_front();
            }
            n += take;
        }
        stream.recv_len -= n;
        // n <= recv_len <= window, a u32.
        stream.consumed += n as u32;
        // Credit in batches of half a window: fewer frames, same throughput.
        if stream.consumed >= window / 2 && !stream.remote_fin && failed.is_none() {
            let credit = std::mem::take(&mut stream.consumed);
            stream.recv_window += credit;
            self.queue(Frame::Window(id, credit));
        }
        Poll::Ready(Ok(n))
    }

    /// Queues up to one frame of `data`, as far as credit and the output
    /// queue allow.
    pub fn poll_write(
        &mut self,
        id: u32,
        cx: &Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.live(id) {
            return Poll::Ready(Err(error));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(io::Error::other("mux stream already closed")));
        };
        if self.out.len() >= OUT_HIGH {
            store(&mut stream.write_waker, cx);
            self.out_blocked.insert(id);
            return Poll::Pending;
        }
        if stream.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "mux stream already shut for writing",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if stream.send_credit == 0 {
            store(&mut stream.write_waker, cx);
            return Poll::Pending;
        }
        let n = data.len().min(MAX_DATA).min(stream.send_credit as usize);
        stream.send_credit -= n as u32;
        self.queue(Frame::Data(id, Bytes::copy_from_slice(&data[..n])));
        Poll::Ready(Ok(n))
    }

    /// Half-closes the stream's sending side (queues FIN once).
    pub fn shutdown(&mut self, id: u32) -> io::Result<()> {
        self.live(id)?;
        if let Some(stream) = self.streams.get_mut(&id) {
            if !stream.local_fin {
                stream.local_fin = true;
                self.queue(Frame::Fin(id));
            }
        }
        Ok(())
    }

    /// Resets the stream both ways with `reason` (the handle stays until
    /// dropped; its reads and writes fail).
    pub fn reset(&mut self, id: u32, reason: Reason) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if stream.reset.is_none() {
                stream.reset = Some(reason);
                stream.recv.clear();
                stream.recv_len = 0;
                stream.wake();
                if self.failed.is_none() {
                    self.queue(Frame::Reset(id, reason));
                }
            }
        }
    }

    /// The handle is gone: forget the stream, resetting it unless both
    /// directions ended cleanly, and free its slot.
    pub fn drop_stream(&mut self, id: u32) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        let clean = stream.local_fin && stream.remote_fin;
        if stream.reset.is_none() && !clean && self.failed.is_none() {
            self.queue(Frame::Reset(id, Reason::Aborted));
        }
        self.open_waiters.drain(..).for_each(Waker::wake);
        if self.retired && self.streams.is_empty() {
            self.close();
        }
    }

    /// Bytes buffered for stream `id`'s reader (tests and bounds).
    pub fn buffered(&self, id: u32) -> usize {
        self.streams.get(&id).map_or(0, |s| s.recv_len)
    }
}

fn reset_error(reason: Reason) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("mux stream {reason}"),
    )
}

fn lost_error(error: &MuxError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, error.to_string())
}
