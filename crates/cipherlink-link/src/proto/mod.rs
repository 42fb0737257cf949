//! The sans-IO protocol core: bytes and the current time in; bytes, events
//! and the next deadline out. No sockets, no clocks, no entropy of its own:
//! the caller passes `now`, the unix time at creation, and an [`Entropy`].
//!
//! Methods, in the order a driver calls them (after quinn-proto's `Connection`):
//!
//! * inputs: [`Connection::handle_input`], [`Connection::handle_eof`],
//!   [`Connection::handle_timeout`];
//! * commands: [`Connection::send`], [`Connection::close_write`], [`Connection::abort`];
//! * outputs: [`Connection::poll_transmit`], [`Connection::poll_event`],
//!   [`Connection::recv`], [`Connection::poll_timeout`].
//!
//! After every input or command, drain the outputs and re-arm the timer.

pub mod crypto;
pub(crate) mod endpoint;
pub mod handshake;
pub mod keepalive;
pub(crate) mod record;
pub mod replay;
pub mod revocation;
pub mod rng;
mod server;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::LinkParams;
use crate::error::Error;
use crate::keys::Token;
pub use endpoint::{
    default_replay_file, EndpointOptions, ServerEndpoint, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_REPLAY_CAPACITY,
};
use handshake::{ClientHandshake, TransportKeys};
use keepalive::{Action, Keepalive};
use record::Direction;
pub use record::{RecordType, MAX_DATA, MAX_RECORD, MAX_RECORDS_PER_KEY};
pub use server::FIRST_MESSAGE_TIME;

/// A source of cryptographically secure random bytes, injected by the caller.
pub trait Entropy: Send {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);
}

impl<R: rand_core::CryptoRng + Send> Entropy for R {
    fn fill(&mut self, dst: &mut [u8]) {
        self.fill_bytes(dst);
    }
}

/// A uniform integer in `[0, n)` from 4 random bytes (big-endian u32 mod `n`).
/// The modulo bias (< 2^-19 for n <= 8193) only skews padding lengths.
pub fn rand_below(rng: &mut dyn Entropy, n: u64) -> u64 {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    u64::from(u32::from_be_bytes(b)) % n.max(1)
}

/// A uniform duration in `[min, max]` from 8 random bytes.
pub fn rand_duration(rng: &mut dyn Entropy, min: Duration, max: Duration) -> Duration {
    let mut b = [0u8; 8];
    rng.fill(&mut b);
    let span = max.saturating_sub(min).as_nanos();
    let off = span.saturating_mul(u128::from(u64::from_be_bytes(b))) >> 64;
    min + Duration::from_nanos(u64::try_from(off).unwrap_or(u64::MAX))
}

/// Why a link closed (the close record's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// The sender has no more data.
    Normal,
    /// Keepalive retries exhausted.
    PeerGone,
    /// The peer broke the protocol.
    ProtocolError,
    /// The token was refused.
    Refused,
    /// The application is shutting down.
    Shutdown,
    /// The sender's application failed (e.g. a relay whose other side
    /// failed): unlike `Shutdown`, this ends the link as an error.
    Aborted,
    /// A code this version does not know.
    Other(u8),
}

impl CloseCode {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::PeerGone => 1,
            Self::ProtocolError => 2,
            Self::Refused => 3,
            Self::Shutdown => 4,
            Self::Aborted => 5,
            Self::Other(c) => c,
        }
    }

    pub(crate) fn from_u8(c: u8) -> Self {
        match c {
            0 => Self::Normal,
            1 => Self::PeerGone,
            2 => Self::ProtocolError,
            3 => Self::Refused,
            4 => Self::Shutdown,
            5 => Self::Aborted,
            c => Self::Other(c),
        }
    }
}

/// A token the server refused (msg2 with status 1), for its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The client's name, when the token is in the store.
    pub name: Option<String>,
    /// Why: unknown token, revoked token, wrong token proof, ...
    pub reason: &'static str,
}

/// What happened, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed; `peer` is the client's name (server side) or
    /// the connection file's name (client side).
    Connected {
        /// The authenticated name.
        peer: String,
    },
    /// The peer will send no more data (its close record arrived).
    PeerFinished,
    /// The link is over: `None` for a clean close by both sides.
    Closed {
        /// Why, when it was not clean.
        error: Option<Error>,
    },
}

/// Client side: what to connect with.
#[derive(Clone)]
pub struct ClientConfig {
    /// The pinned server public key.
    pub server_key: [u8; 32],
    /// Our token.
    pub token: Token,
    /// Our name (reported in [`Event::Connected`]).
    pub name: String,
    /// Parameters.
    pub params: LinkParams,
}

impl ClientConfig {
    /// The client a connection file describes, with `params` (from the
    /// `PORT_*` settings): the file's tail length applies unless `lookup`
    /// (the environment) sets `PORT_TAIL_LENGTH`, as `link connect` and the
    /// proxy client both need.
    pub fn from_file(
        file: &crate::keys::ConnectionFile,
        mut params: LinkParams,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        if lookup("PORT_TAIL_LENGTH").is_none() {
            params.tail_length = file.tail_length;
        }
        Self {
            server_key: file.server_key,
            token: file.token.clone(),
            name: file.name.clone(),
            params,
        }
    }
}

enum State {
    ClientHandshake {
        hs: Box<ClientHandshake>,
        deadline: Instant,
    },
    ServerHandshake {
        endpoint: Arc<ServerEndpoint>,
        header: Option<handshake::Msg1Header>,
        /// Held from a first message whose MAC verified until the handshake
        /// ends, or until the rest of the message is late (docs §6).
        slot: Option<server::Slot>,
        /// A decrypted first message waiting for its replay mark to be durable.
        awaiting: Option<Box<server::Awaiting>>,
        /// The one close time, drawn at accept (docs §6).
        deadline: Instant,
    },
    /// Reads and discards until the close time drawn at accept.
    Probe {
        until: Instant,
    },
    Open(Box<Open>),
    Closed,
}

struct Open {
    send: Direction,
    recv: Direction,
    keepalive: Keepalive,
    sent_close: bool,
    peer_finished: bool,
}

/// One end of a link.
pub struct Connection {
    state: State,
    params: LinkParams,
    rng: Box<dyn Entropy>,
    unix_secs: u64,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    recvbuf: VecDeque<u8>,
    events: VecDeque<Event>,
    name: String,
    peer: Option<String>,
    probe_reason: Option<&'static str>,
    /// Why a server refused a token in msg2 (for the server's log).
    refusal: Option<Refusal>,
    /// A server link's watch on its token (docs §6).
    revocation: Option<Arc<revocation::Revocation>>,
    /// A server connection's first message passed the MAC check.
    mac_verified: bool,
    /// Debugging only: keep the transport secrets for [`Connection::take_exported_keys`].
    export_keys: bool,
    exported: Option<TransportKeys>,
}

impl Connection {
    /// Debugging and labs only: keep this connection's transport secrets
    /// when the handshake completes, for [`Connection::take_exported_keys`].
    /// Whoever holds them can read and forge every record of the link.
    pub fn export_keys(&mut self) {
        self.export_keys = true;
    }

    /// The transport secrets, once, after [`Connection::export_keys`] and
    /// a completed handshake.
    pub fn take_exported_keys(&mut self) -> Option<TransportKeys> {
        self.exported.take()
    }

    /// A client: msg1 is ready in [`Connection::poll_transmit`] at once.
    pub fn client(
        cfg: &ClientConfig,
        mut rng: Box<dyn Entropy>,
        now: Instant,
        unix_secs: u64,
    ) -> Result<Self, Error> {
        cfg.params.validate()?;
        let mut outbuf = Vec::new();
        let hs = ClientHandshake::start(
            handshake::Mode::Stream,
            &cfg.server_key,
            &cfg.token,
            unix_secs,
            cfg.params.tail_length,
            rng.as_mut(),
            &mut outbuf,
        )?;
        Ok(Self {
            state: State::ClientHandshake {
                hs: Box::new(hs),
                deadline: now + cfg.params.handshake_timeout,
            },
            params: cfg.params.clone(),
            rng,
            unix_secs,
            inbuf: Vec::new(),
            outbuf,
            recvbuf: VecDeque::new(),
            events: VecDeque::new(),
            name: cfg.name.clone(),
            peer: None,
            probe_reason: None,
            refusal: None,
            revocation: None,
            mac_verified: false,
            export_keys: false,
            exported: None,
        })
    }

    /// A server connection for one accepted transport.
    pub fn server(
        endpoint: Arc<ServerEndpoint>,
        mut rng: Box<dyn Entropy>,
        now: Instant,
        unix_secs: u64,
    ) -> Self {
        // The only close time this connection has unless its handshake is
        // accepted: what it sends never moves it (docs §6).
        let (lo, hi) = endpoint.params.server_close_window;
        let deadline = now + rand_duration(rng.as_mut(), lo, hi);
        Self {
            params: endpoint.params.clone(),
            state: State::ServerHandshake {
                endpoint,
                header: None,
                slot: None,
                awaiting: None,
                deadline,
            },
            rng,
            unix_secs,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            recvbuf: VecDeque::new(),
            events: VecDeque::new(),
            name: String::new(),
            peer: None,
            probe_reason: None,
            refusal: None,
            revocation: None,
            mac_verified: false,
            export_keys: false,
            exported: None,
        }
    }

    // ----- getters -----

    /// The authenticated peer name, once connected.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Whether the handshake completed and the link is not closed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether the link is over (the driver flushes `poll_transmit` and drops the transport).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether a server connection's first message passed the MAC check
    /// (docs §3 step 1): from then on it holds a handshake slot, or is done.
    pub fn first_message_verified(&self) -> bool {
        self.mac_verified
    }

    /// Whether a server connection has gone silent on unauthenticated input,
    /// or refused a token, and why.
    pub fn probe_reason(&self) -> Option<&'static str> {
        self.probe_reason
    }

    /// Why a server refused the client's token (`None`: accepted, or a probe).
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    /// Whether the core wants more input: false while delivered data waits for
    /// the application, or while our output is not being taken and holds
    /// more than data alone can put there ([`Connection::send`] stops at
    /// `max_buffered_send`): a peer that sends pings but reads nothing must
    /// not grow the pong queue, yet both sides sending bulk data must not
    /// stop reading each other (that would deadlock).
    pub fn wants_input(&self) -> bool {
        !self.is_closed()
            && self.recvbuf.len() < self.params.max_buffered_recv
            && self.outbuf.len() < 2 * self.params.max_buffered_send
    }

    /// How many more data bytes [`Connection::send`] would take now.
    pub fn send_capacity(&self) -> usize {
        match &self.state {
            State::Open(o) if !o.sent_close => self
                .params
                .max_buffered_send
                .saturating_sub(self.outbuf.len()),
            _ => 0,
        }
    }

    /// Whether the peer finished sending and everything it sent has been read.
    pub fn recv_finished(&self) -> bool {
        self.recvbuf.is_empty()
            && match &self.state {
                State::Open(o) => o.peer_finished,
                State::Closed => true,
                _ => false,
            }
    }

    /// A server link's revocation watch: the driver waits on it so that a
    /// link idle for hours still closes when its token is revoked.
    pub fn revocation(&self) -> Option<&Arc<revocation::Revocation>> {
        self.revocation.as_ref()
    }

    // ----- inputs -----

    /// Closes the link if its token was revoked (a close record with code
    /// 3, refused, and the reason; the application's reads fail with
    /// [`Error::Revoked`]). Call when [`Self::revocation`] fires; the
    /// other inputs check it too.
    pub fn handle_revocation(&mut self) {
        if !self.revocation.as_ref().is_some_and(|r| r.is_revoked()) || self.is_closed() {
            return;
        }
        if matches!(&self.state, State::Open(o) if !o.sent_close) {
            self.send_close(CloseCode::Refused, "token revoked");
        }
        self.state = State::Closed;
        self.events.push_back(Event::Closed {
            error: Some(Error::Revoked),
        });
    }

    /// Feeds bytes that arrived from the transport.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        // A probe's bytes are read and dropped: no count of them closes it.
        if self.is_closed() || matches!(self.state, State::Probe { .. }) {
            return;
        }
        self.handle_revocation();
        if self.is_closed() {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        if let Err(e) = self.process(now) {
            self.fail(e);
        }
    }

    /// The transport reached end of file.
    pub fn handle_eof(&mut self, _now: Instant) {
        let err = match &self.state {
            State::Closed => return,
            State::Probe { .. } | State::ServerHandshake { .. } => {
                self.state = State::Closed;
                return;
            }
            State::ClientHandshake { .. } => Error::HandshakeEof,
            State::Open(o) if o.peer_finished && self.inbuf.is_empty() => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed { error: None });
                return;
            }
            State::Open(_) => Error::Truncated,
        };
        self.state = State::Closed;
        self.events.push_back(Event::Closed { error: Some(err) });
    }

    /// Runs the timers; call at or after [`Connection::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_revocation();
        match &mut self.state {
            State::ClientHandshake { deadline, .. } if now >= *deadline => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed {
                    error: Some(Error::HandshakeTimeout),
                });
            }
            State::ServerHandshake { .. } => self.server_timeout(now),
            State::Probe { until, .. } if now >= *until => self.state = State::Closed,
            State::Open(o) => {
                let action = o.keepalive.poll(now);
                match action {
                    Action::None => {}
                    Action::Ping(id) => self.seal(RecordType::Ping, &id.to_be_bytes()),
                    Action::Gone(retries) => {
                        if matches!(&self.state, State::Open(o) if !o.sent_close) {
                            self.send_close(CloseCode::PeerGone, "no answer to keepalives");
                        }
                        self.state = State::Closed;
                        self.events.push_back(Event::Closed {
                            error: Some(Error::PeerGone { retries }),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    // ----- commands -----

    /// Queues data; returns how many bytes were taken (0 when the send buffer is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        let cap = self.send_capacity();
        if !self.is_open() || matches!(&self.state, State::Open(o) if o.sent_close) {
            return Err(Error::NotOpen);
        }
        let take = data.len().min(cap);
        for chunk in data[..take].chunks(MAX_DATA) {
            self.seal(RecordType::Data, chunk);
        }
        Ok(take)
    }

    /// Sends the authenticated close: no more data from us (the peer may still send).
    pub fn close_write(&mut self) {
        if let State::Open(o) = &self.state {
            if o.sent_close {
                return;
            }
            let both = o.peer_finished;
            self.send_close(CloseCode::Normal, "");
            if both {
                self.state = State::Closed;
                self.events.push_back(Event::Closed { error: None });
            }
        } else if !self.is_closed() && !matches!(self.state, State::Probe { .. }) {
            self.state = State::Closed;
            self.events.push_back(Event::Closed { error: None });
        }
    }

    /// Ends the link at once with a close record carrying `code` and `reason`.
    pub fn abort(&mut self, code: CloseCode, reason: &str) {
        if matches!(&self.state, State::Open(o) if !o.sent_close) {
            self.send_close(code, reason);
        }
        if !self.is_closed() {
            self.state = State::Closed;
            self.events.push_back(Event::Closed { error: None });
        }
    }

    // ----- outputs -----

    /// Takes the bytes to write to the transport (appends them to `out`).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.outbuf);
        } else {
            out.append(&mut self.outbuf);
        }
    }

    /// Whether bytes wait in [`Connection::poll_transmit`].
    pub fn has_transmit(&self) -> bool {
        !self.outbuf.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Reads delivered data into `buf`; returns the count.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.recvbuf.len());
        let (a, b) = self.recvbuf.as_slices();
        if n <= a.len() {
            buf[..n].copy_from_slice(&a[..n]);
        } else {
            buf[..a.len()].copy_from_slice(a);
            buf[a.len()..n].copy_from_slice(&b[..n - a.len()]);
        }
        self.recvbuf.drain(..n);
        n
    }

    /// Bytes of delivered data waiting for [`Connection::recv`].
    pub fn recv_pending(&self) -> usize {
        self.recvbuf.len()
    }

    /// When to call [`Connection::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::ClientHandshake { deadline, .. } => Some(*deadline),
            State::ServerHandshake { .. } => self.server_poll_timeout(),
            State::Probe { until, .. } => Some(*until),
            State::Open(o) => Some(o.keepalive.deadline()),
            State::Closed => None,
        }
    }

    // ----- internals -----

    fn fail(&mut self, e: Error) {
        if let State::Open(o) = &self.state {
            if !o.sent_close {
                self.send_close(CloseCode::ProtocolError, "");
            }
        }
        self.state = State::Closed;
        self.events.push_back(Event::Closed { error: Some(e) });
    }

    fn process(&mut self, now: Instant) -> Result<(), Error> {
        loop {
            match &mut self.state {
                State::ClientHandshake { hs, .. } => {
                    let Some((used, keys)) = hs.read_msg2(&mut self.inbuf)? else {
                        return Ok(());
                    };
                    self.inbuf.drain(..used);
                    self.open(now, keys, true, self.name.clone());
                }
                State::ServerHandshake { .. } => {
                    if !self.server_step(now)? {
                        return Ok(());
                    }
                }
                State::Open(_) => return self.read_records(now),
                State::Probe { .. } | State::Closed => return Ok(()),
            }
        }
    }

    fn open(&mut self, now: Instant, keys: TransportKeys, client: bool, peer: String) {
        if self.export_keys {
            self.exported = Some(keys.clone());
        }
        // Fast key erasure from here on: the caller's generator, which could
        // be rewound to the handshake's ephemeral secrets, is dropped (and
        // wiped, when it is an `ErasingRng` as the driver's are).
        self.rng = Box::new(rng::ErasingRng::from_entropy(self.rng.as_mut()));
        let (c2s, s2c) = (
            Direction::from_keys(&keys.c2s_key, &keys.c2s_len),
            Direction::from_keys(&keys.s2c_key, &keys.s2c_len),
        );
        // `keys` is wiped when it goes out of scope here.
        drop(keys);
        let (send, recv) = if client { (c2s, s2c) } else { (s2c, c2s) };
        let ka = &self.params.keepalive;
        let next_in = rand_duration(self.rng.as_mut(), ka.min_next_in, ka.max_next_in);
        self.state = State::Open(Box::new(Open {
            send,
            recv,
            keepalive: Keepalive::new(ka.clone(), now, next_in),
            sent_close: false,
            peer_finished: false,
        }));
        self.peer = Some(peer.clone());
        self.events.push_back(Event::Connected { peer });
    }

    fn read_records(&mut self, now: Instant) -> Result<(), Error> {
        let mut pos = 0;
        let result = loop {
            let State::Open(o) = &mut self.state else {
                break Ok(());
            };
            let len = match o.recv.peek_len(&self.inbuf[pos..]) {
                Ok(Some(l)) => l,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let rec = &mut self.inbuf[pos..pos + len];
            let (ty, body) = match o.recv.open(rec) {
                Ok(x) => x,
                Err(e) => break Err(e),
            };
            pos += len;
            let (lo, hi) = o.keepalive.next_in_range();
            let next_in = rand_duration(self.rng.as_mut(), lo, hi);
            let State::Open(o) = &mut self.state else {
                break Ok(());
            };
            let body = &self.inbuf[pos - len..pos][body];
            if ty == RecordType::Pong {
                if let Ok(id) = <[u8; 8]>::try_from(body) {
                    o.keepalive.on_pong(now, u64::from_be_bytes(id));
                }
            }
            o.keepalive.on_activity(now, next_in);
            match ty {
                RecordType::Data if o.peer_finished => {
                    break Err(Error::Protocol("data after the peer's close"));
                }
                RecordType::Data => self.recvbuf.extend(body),
                RecordType::Ping => {
                    let body = body.to_vec();
                    self.seal(RecordType::Pong, &body);
                }
                RecordType::Pong => {}
                RecordType::Rekey => o.recv.rekey(),
                RecordType::Close => {
                    let code = CloseCode::from_u8(body.first().copied().unwrap_or(0));
                    let reason = String::from_utf8_lossy(body.get(1..).unwrap_or(&[])).into_owned();
                    if code == CloseCode::Normal || code == CloseCode::Shutdown {
                        o.peer_finished = true;
                        self.events.push_back(Event::PeerFinished);
                        if o.sent_close {
                            self.state = State::Closed;
                            self.events.push_back(Event::Closed { error: None });
                        }
                    } else {
                        self.state = State::Closed;
                        self.events.push_back(Event::Closed {
                            error: Some(Error::PeerClosed { code, reason }),
                        });
                    }
                }
            }
        };
        self.inbuf.drain(..pos);
        if self.inbuf.is_empty() && self.inbuf.capacity() > 4096 {
            // An idle link keeps no record-sized buffer.
            self.inbuf = Vec::new();
        }
        result
    }

    fn pad_len(&mut self) -> usize {
        rand_below(self.rng.as_mut(), self.params.tail_length as u64 + 1) as usize
    }

    fn seal(&mut self, ty: RecordType, body: &[u8]) {
        let pad = self.pad_len();
        let (after_r, after_b) = (
            self.params.rekey_after_records,
            self.params.rekey_after_bytes,
        );
        let State::Open(o) = &mut self.state else {
            return;
        };
        o.send.seal(ty, body, pad, &mut self.outbuf);
        if o.send.rekey_due(after_r, after_b) {
            let pad = rand_below(self.rng.as_mut(), self.params.tail_length as u64 + 1) as usize;
            let State::Open(o) = &mut self.state else {
                return;
            };
            o.send.seal(RecordType::Rekey, &[], pad, &mut self.outbuf);
            o.send.rekey();
        }
    }

    fn send_close(&mut self, code: CloseCode, reason: &str) {
        let mut body = vec![code.to_u8()];
        // Cut at a character boundary, so the peer gets valid UTF-8.
        let mut end = reason.len().min(record::MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..end]);
        self.seal(RecordType::Close, &body);
        if let State::Open(o) = &mut self.state {
            o.sent_close = true;
        }
    }
}
