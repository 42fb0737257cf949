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
pub mod handshake;
pub mod keepalive;
pub mod record;
pub mod replay;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::LinkParams;
use crate::error::Error;
use crate::keys::{ServerKey, Token, TokenStore};
use handshake::{ClientHandshake, TransportKeys};
use keepalive::{Action, Keepalive};
use record::Direction;
pub use record::{RecordType, MAX_DATA, MAX_RECORD, MAX_RECORDS_PER_KEY};
use replay::ReplayFilter;

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
    fn to_u8(self) -> u8 {
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

    fn from_u8(c: u8) -> Self {
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

/// Shared server state: key, tokens, replay filter (one per listening endpoint).
pub struct ServerEndpoint {
    key: ServerKey,
    static_dh: crypto::StaticDh,
    /// `K_obf`'s HMAC key, set up once: every first message (and every
    /// probe) is checked against it.
    k_obf: crypto::HmacKey,
    tokens: RwLock<TokenStore>,
    replay: Mutex<ReplayFilter>,
    params: LinkParams,
}

/// Default replay-filter capacity (16-byte marks).
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

impl ServerEndpoint {
    /// A server endpoint.
    pub fn new(key: ServerKey, tokens: TokenStore, params: LinkParams) -> Result<Self, Error> {
        Self::with_replay_capacity(key, tokens, params, DEFAULT_REPLAY_CAPACITY)
    }

    /// A server endpoint with a given replay-filter capacity.
    pub fn with_replay_capacity(
        key: ServerKey,
        tokens: TokenStore,
        params: LinkParams,
        capacity: usize,
    ) -> Result<Self, Error> {
        params.validate()?;
        Ok(Self {
            static_dh: crypto::StaticDh::new(key.secret())?,
            k_obf: crypto::HmacKey::new(&handshake::obfs_key(key.public())),
            key,
            tokens: RwLock::new(tokens),
            replay: Mutex::new(ReplayFilter::new(capacity)),
            params,
        })
    }

    /// Replaces the token store (e.g. after `revoke`); affects new handshakes.
    pub fn set_tokens(&self, tokens: TokenStore) {
        match self.tokens.write() {
            Ok(mut t) => *t = tokens,
            Err(poisoned) => *poisoned.into_inner() = tokens,
        }
    }

    /// The server's public key.
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.public()
    }

    /// The parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    fn replay_contains(&self, mark: &[u8; 16]) -> bool {
        match self.replay.lock() {
            Ok(f) => f.contains(mark),
            Err(p) => p.into_inner().contains(mark),
        }
    }

    /// Inserts; returns false if it was already there (a concurrent replay).
    fn replay_insert(&self, mark: [u8; 16], w: u64, now_w: u64) -> bool {
        let mut f = match self.replay.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        if f.contains(&mark) {
            return false;
        }
        f.insert(mark, w, now_w);
        true
    }

    fn token_lookup(&self, id: &[u8; 16]) -> Option<(String, Token, bool)> {
        let t = match self.tokens.read() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        t.lookup(id)
            .map(|e| (e.name.clone(), e.token.clone(), e.revoked))
    }
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

/// Bytes the server drains from a probe, at most (docs §6).
pub const PROBE_MAX_BYTES: u64 = 16384;
/// Time the server keeps a probe open, at most (docs §6).
pub const PROBE_MAX_DELAY: Duration = Duration::from_secs(60);
/// Server handshake deadline range (docs §5).
pub const SERVER_HANDSHAKE_WINDOW: (Duration, Duration) =
    (Duration::from_secs(15), Duration::from_secs(45));

enum State {
    ClientHandshake {
        hs: Box<ClientHandshake>,
        deadline: Instant,
    },
    ServerHandshake {
        endpoint: Arc<ServerEndpoint>,
        header: Option<handshake::Msg1Header>,
        deadline: Instant,
    },
    Probe {
        until: Instant,
        budget: u64,
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
        let (lo, hi) = SERVER_HANDSHAKE_WINDOW;
        let deadline = now + rand_duration(rng.as_mut(), lo, hi);
        Self {
            params: endpoint.params.clone(),
            state: State::ServerHandshake {
                endpoint,
                header: None,
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

    /// Whether a server connection has gone silent on unauthenticated input, and why.
    pub fn probe_reason(&self) -> Option<&'static str> {
        self.probe_reason
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

    // ----- inputs -----

    /// Feeds bytes that arrived from the transport.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if let State::Probe { budget, .. } = &mut self.state {
            *budget = budget.saturating_sub(bytes.len() as u64);
            if *budget == 0 {
                self.state = State::Closed;
            }
            return;
        }
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
        match &mut self.state {
            State::ClientHandshake { deadline, .. } if now >= *deadline => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed {
                    error: Some(Error::HandshakeTimeout),
                });
            }
            State::ServerHandshake { deadline, .. } if now >= *deadline => {
                self.probe_reason = Some("handshake timeout");
                self.state = State::Closed;
            }
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
            State::ClientHandshake { deadline, .. } | State::ServerHandshake { deadline, .. } => {
                Some(*deadline)
            }
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

    fn become_probe(&mut self, now: Instant, reason: &'static str) {
        let until = now + rand_duration(self.rng.as_mut(), Duration::ZERO, PROBE_MAX_DELAY);
        let budget = rand_below(self.rng.as_mut(), PROBE_MAX_BYTES + 1);
        self.probe_reason = Some(reason);
        self.inbuf = Vec::new();
        self.state = if budget == 0 {
            State::Closed
        } else {
            State::Probe { until, budget }
        };
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

    /// Returns whether the state changed.
    fn server_step(&mut self, now: Instant) -> Result<bool, Error> {
        let State::ServerHandshake {
            endpoint, header, ..
        } = &mut self.state
        else {
            return Ok(false);
        };
        let endpoint = Arc::clone(endpoint);
        if header.is_none() {
            let h = match handshake::server_check_header(
                &endpoint.k_obf,
                self.unix_secs,
                &self.inbuf,
            ) {
                Ok(None) => {
                    return Ok(false);
                }
                Ok(Some(h)) => h,
                Err(reason) => {
                    self.become_probe(now, reason);
                    return Ok(true);
                }
            };
            if endpoint.replay_contains(&h.mark) {
                self.become_probe(now, "replayed first message");
                return Ok(true);
            }
            *header = Some(h);
        }
        let Some(h) = header.take() else {
            return Ok(false);
        };
        if self.inbuf.len() < h.total {
            *header = Some(h);
            return Ok(false);
        }
        if self.inbuf.len() > h.total {
            // The client sends nothing more before msg2 arrives.
            self.become_probe(now, "bytes after the first message");
            return Ok(true);
        }
        let msg1 = match handshake::server_read_msg1(
            endpoint.key.public(),
            &endpoint.static_dh,
            &mut self.inbuf[..h.total],
        ) {
            Ok(m) => m,
            Err(reason) => {
                self.become_probe(now, reason);
                return Ok(true);
            }
        };
        if !endpoint.replay_insert(h.mark, h.window, handshake::window(self.unix_secs)) {
            self.become_probe(now, "replayed first message");
            return Ok(true);
        }
        self.inbuf = Vec::new();
        let found = endpoint.token_lookup(&msg1.token_id);
        // An active token whose proof holds: with its `DH(s, C)` when it is
        // bound to a client key (a key that gives a weak DH cannot be
        // proven, so that token is refused).
        let accepted = match &found {
            Some((name, token, false)) => {
                let client_ss = match &token.client_key {
                    None => Some(None),
                    Some(k) => endpoint.static_dh.dh(&k.public).ok().map(Some),
                };
                client_ss
                    .filter(|ss| msg1.proves(&token.secret, ss.as_deref()))
                    .map(|ss| (name.clone(), token, ss))
            }
            _ => None,
        };
        let tail = self.params.tail_length;
        match accepted {
            Some((name, token, client_ss)) => {
                let keys = msg1
                    .write_msg2(
                        Some(&token.secret),
                        client_ss.as_deref(),
                        tail,
                        self.rng.as_mut(),
                        &mut self.outbuf,
                    )?
                    .ok_or(Error::Protocol("accepted handshake without keys"))?;
                self.open(now, keys, false, name);
            }
            None => {
                msg1.write_msg2(None, None, tail, self.rng.as_mut(), &mut self.outbuf)?;
                self.probe_reason = Some(match found {
                    None => "unknown token",
                    Some((_, _, true)) => "revoked token",
                    Some(_) => "wrong token proof",
                });
                self.state = State::Closed;
            }
        }
        Ok(true)
    }

    fn open(&mut self, now: Instant, keys: TransportKeys, client: bool, peer: String) {
        if self.export_keys {
            self.exported = Some(keys.clone());
        }
        let (send, recv) = if client {
            (
                Direction::new(keys.c2s_key, keys.c2s_len),
                Direction::new(keys.s2c_key, keys.s2c_len),
            )
        } else {
            (
                Direction::new(keys.s2c_key, keys.s2c_len),
                Direction::new(keys.c2s_key, keys.c2s_len),
            )
        };
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
        let r = reason.as_bytes();
        body.extend_from_slice(&r[..r.len().min(200)]);
        self.seal(RecordType::Close, &body);
        if let State::Open(o) = &mut self.state {
            o.sent_close = true;
        }
    }
}
