//! One TYPHOON session's state machine, sans IO: datagrams and the time in
//! (ms on any clock), datagrams, events and the next deadline out.
//!
//! The timers are SeasideVPN's (docs/typhoon-wire.md §3). Each handshake
//! says `next_in`: when its sender wants the other side's next handshake.
//! The other side sleeps `next_in - rtt`, then offers the handshake to
//! outgoing data for `2 × rtt` (it rides on the first data message as
//! HDSK|DATA) and sends it alone if no data came. The client answers each
//! server handshake with a fresh packet number, which the server's next
//! handshake echoes; it retries `MAX_RETRIES` times, waiting
//! `next_in + timeout` for each answer. The server gives up on a client
//! silent for `(next_in + timeout) × MAX_RETRIES`.

use std::collections::VecDeque;

use cipherlink_port::crypto::{NONCE_LEN, OVERHEAD};
use cipherlink_port::{PublicKey, SessionKey};
use rand::{Rng, RngCore};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::rtt::Rtt;
use crate::settings::TyphoonSettings;
use crate::wire::{self, ClientInit, Message, Pad, ServerInit, MAX_DATA, MAX_DATAGRAM};

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client: the server INIT admitted us; send to port `user_id` from now
    /// on. Server: the server INIT was sent.
    Connected {
        /// The port the server named (the client sends there).
        user_id: u16,
    },
    /// The peer's data.
    Data(Vec<u8>),
    /// The peer terminated the session.
    Terminated,
    /// The session was given up (no answer within the retries).
    Failed(Error),
}

/// Randomness the engine draws (the OS's in production, seeded in tests).
pub type Random = Box<dyn RngCore + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client: INIT `attempt` sent, waiting for the server INIT.
    Init { attempt: u32, until: u64 },
    /// Server: the INIT is answered at `at` (the client's `next_in`).
    Answer { at: u64 },
    /// Server: INIT sent, waiting for the client's first handshake.
    AwaitFirst { until: u64 },
    /// Both: waiting `next_in - rtt` before our handshake.
    Sleep { until: u64 },
    /// Both: our handshake is offered to outgoing data until `until`.
    Offer { attempt: u32, until: u64 },
    /// Both: our handshake sent, waiting for the peer's.
    AwaitReply { attempt: u32, until: u64 },
    /// Terminated, failed or closed.
    Closed,
}

enum Role {
    Client {
        server: PublicKey,
        token: Zeroizing<Vec<u8>>,
        /// This INIT attempt's key (only the latest attempt's answer counts).
        init_key: Option<SessionKey>,
    },
    Server {
        user_id: u16,
        /// Bytes of the client INIT: the most the server INIT may take.
        init_len: usize,
    },
}

/// Most datagrams or events held for the owner to take.
const QUEUE: usize = 64;

/// One session, either side.
pub struct Engine {
    role: Role,
    s: TyphoonSettings,
    rng: Random,
    key: Option<SessionKey>,
    phase: Phase,
    /// The packet number of the INIT or handshake the peer must echo
    /// (client), or the one our next handshake echoes (server).
    packet_number: u32,
    /// Our handshake, offered to outgoing data (SeasideVPN's "control").
    offered: bool,
    /// The `next_in` we last sent.
    next_in: u64,
    /// When we sent a handshake not answered yet: one RTT sample each.
    sent_at: Option<u64>,
    rtt: Rtt,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    dropped: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("phase", &self.phase)
            .field("rtt", &self.rtt)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A client; its first INIT is ready to send.
    pub fn client(
        s: TyphoonSettings,
        server: PublicKey,
        token: &[u8],
        rng: Random,
        now: u64,
    ) -> Result<Self, Error> {
        s.check()?;
        if token.len() > wire::MAX_TOKEN {
            return Err(Error::TooLong {
                what: "token",
                len: token.len(),
                max: wire::MAX_TOKEN,
            });
        }
        let role = Role::Client {
            server,
            token: Zeroizing::new(token.to_vec()),
            init_key: None,
        };
        let mut e = Self::new(role, s, rng, None);
        e.send_init(now, 0)?;
        Ok(e)
    }

    /// A server for an admitted client INIT (its `next_in` checked by the
    /// caller with [`Engine::init_next_in_ok`], the settings with
    /// [`TyphoonSettings::check`]); the server INIT leaves
    /// after the client's `next_in`, as SeasideVPN's does.
    pub fn server(
        s: TyphoonSettings,
        init: &ClientInit,
        user_id: u16,
        rng: Random,
        now: u64,
    ) -> Self {
        let role = Role::Server {
            user_id,
            init_len: init.len,
        };
        let mut e = Self::new(role, s, rng, Some(init.session.clone()));
        e.packet_number = init.packet_number;
        e.phase = Phase::Answer {
            at: now + u64::from(init.next_in),
        };
        e
    }

    /// Whether a client INIT's `next_in` is one SeasideVPN's server takes.
    pub fn init_next_in_ok(s: &TyphoonSettings, next_in: u32) -> bool {
        let (lo, hi) = s.initial_range();
        (lo..=hi).contains(&u64::from(next_in))
    }

    fn new(role: Role, s: TyphoonSettings, rng: Random, key: Option<SessionKey>) -> Self {
        Self {
            role,
            s,
            rng,
            key,
            phase: Phase::Closed,
            packet_number: 0,
            offered: false,
            next_in: 0,
            sent_at: None,
            rtt: Rtt::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called; `None` once closed.
    pub fn deadline(&self) -> Option<u64> {
        match self.phase {
            Phase::Init { until, .. }
            | Phase::AwaitFirst { until }
            | Phase::Sleep { until }
            | Phase::Offer { until, .. }
            | Phase::AwaitReply { until, .. } => Some(until),
            Phase::Answer { at } => Some(at),
            Phase::Closed => None,
        }
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session key is known (client: the server INIT arrived).
    pub fn is_established(&self) -> bool {
        self.key.is_some() && !self.is_closed()
    }

    /// Datagrams dropped as not ours (unauthenticated, malformed, stale).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The RTT and timeout the timers use now (ms).
    pub fn rtt_and_timeout(&self) -> (u64, u64) {
        (self.rtt.rtt(&self.s), self.rtt.timeout(&self.s))
    }

    fn push(&mut self, datagram: Vec<u8>) {
        if self.out.len() < QUEUE {
            self.out.push_back(datagram);
        }
    }

    fn event(&mut self, e: Event) {
        if self.events.len() < QUEUE {
            self.events.push_back(e);
        }
    }

    fn pad(&mut self, fixed: usize, body: usize) -> Pad {
        self.pad_within(fixed, body, MAX_DATAGRAM)
    }

    /// A pad for a datagram of at most `most` bytes.
    fn pad_within(&mut self, fixed: usize, body: usize, most: usize) -> Pad {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let room = most
            .min(MAX_DATAGRAM)
            .saturating_sub(fixed + OVERHEAD + body);
        let max = self.s.max_tail_length.min(room);
        // At least 1: SeasideVPN reads a message with no tail as empty
        // (`data[header:-0]`), losing its data or token.
        let tail = if max == 0 {
            0
        } else {
            self.rng.random_range(1..=max)
        };
        Pad { nonce, tail }
    }

    fn random_next_in(&mut self) -> u64 {
        self.rng
            .random_range(self.s.min_next_in..=self.s.max_next_in)
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Closed;
        self.event(Event::Failed(Error::Timeout(why)));
    }

    fn send_init(&mut self, now: u64, attempt: u32) -> Result<(), Error> {
        let Role::Client { server, token, .. } = &self.role else {
            return Ok(());
        };
        let (server, token) = (*server, token.clone());
        let mut ephemeral = Zeroizing::new([0u8; 32]);
        self.rng.fill_bytes(&mut ephemeral[..]);
        let mut n = [0u8; 2];
        self.rng.fill_bytes(&mut n);
        let (lo, hi) = self.s.initial_range();
        let next_in = self.rng.random_range(lo..=hi);
        self.packet_number = self.rng.next_u32();
        let fixed = cipherlink_port::wire::MASKED_KEY_LEN + wire::CLIENT_INIT_HEADER;
        let pad = self.pad(fixed, token.len());
        let (key, datagram) = wire::client_init(
            &server,
            &wire::ClientInitRandom { ephemeral, n },
            &pad,
            self.packet_number,
            wire::CLIENT_TYPE_CUSTOM,
            wire::CLIENT_VERSION,
            next_in as u32,
            &token,
        )?;
        if let Role::Client { init_key, .. } = &mut self.role {
            *init_key = Some(key);
        }
        self.next_in = next_in;
        let wait = next_in + self.rtt.timeout(&self.s);
        self.phase = Phase::Init {
            attempt,
            until: now + wait,
        };
        self.push(datagram);
        Ok(())
    }

    /// Sends `data` (riding our handshake on it when one is offered).
    pub fn send(&mut self, now: u64, data: &[u8]) -> Result<(), Error> {
        let Some(key) = self.key.clone().filter(|_| !self.is_closed()) else {
            return Err(Error::Closed);
        };
        if data.len() > MAX_DATA {
            return Err(Error::TooLong {
                what: "data",
                len: data.len(),
                max: MAX_DATA,
            });
        }
        // SeasideVPN's reader fails on HDSK|DATA without data: empty data
        // goes alone.
        let datagram = if self.offered && !data.is_empty() {
            self.offered = false;
            self.hdsk_datagram(now, &key, Some(data))?
        } else {
            let pad = self.pad(wire::OTHER_HEADER, data.len());
            wire::data(&key, &pad, data)?
        };
        self.push(datagram);
        Ok(())
    }

    /// Ends the session, sending a termination when it had a key.
    pub fn close(&mut self) {
        if self.is_closed() {
            return;
        }
        if let Some(key) = self.key.clone() {
            let pad = self.pad(wire::OTHER_HEADER, 0);
            if let Ok(d) = wire::term(&key, &pad) {
                self.push(d);
            }
        }
        self.phase = Phase::Closed;
    }

    fn hdsk_datagram(
        &mut self,
        now: u64,
        key: &SessionKey,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        self.next_in = self.random_next_in();
        self.sent_at = Some(now);
        let pad = self.pad(wire::HDSK_HEADER, data.map_or(0, <[u8]>::len));
        wire::hdsk(key, &pad, self.packet_number, self.next_in as u32, data)
    }

    /// Takes one datagram from the peer; anything not ours is dropped.
    pub fn handle_datagram(&mut self, now: u64, datagram: &[u8]) {
        if datagram.len() > MAX_DATAGRAM || self.is_closed() {
            self.dropped += 1;
            return;
        }
        if let Phase::Init { .. } = self.phase {
            return self.handle_server_init(now, datagram);
        }
        let Some(key) = self.key.clone() else {
            self.dropped += 1;
            return;
        };
        match wire::parse_message(&key, datagram) {
            Ok(Message::Term) => {
                self.phase = Phase::Closed;
                self.event(Event::Terminated);
            }
            Ok(Message::Data(d)) => self.event(Event::Data(d)),
            Ok(Message::Hdsk {
                packet_number,
                next_in,
                data,
            }) => {
                if !(self.s.min_next_in..=self.s.max_next_in).contains(&u64::from(next_in)) {
                    // SeasideVPN drops the whole message, data and all.
                    self.dropped += 1;
                    return;
                }
                self.handle_hdsk(now, packet_number, u64::from(next_in));
                if let Some(d) = data {
                    self.event(Event::Data(d));
                }
            }
            Err(_) => self.dropped += 1,
        }
    }

    fn handle_server_init(&mut self, now: u64, datagram: &[u8]) {
        let Role::Client { init_key, .. } = &self.role else {
            return;
        };
        let Some(key) = init_key.clone() else {
            return;
        };
        let init: ServerInit = match wire::parse_server_init(&key, datagram) {
            Ok(i) if i.packet_number == self.packet_number => i,
            _ => {
                self.dropped += 1;
                return;
            }
        };
        if init.status != wire::STATUS_SUCCESS {
            self.phase = Phase::Closed;
            self.event(Event::Failed(Error::Status(init.status)));
            return;
        }
        let next_in = u64::from(init.next_in);
        if !(self.s.min_next_in..=self.s.max_next_in).contains(&next_in) {
            self.dropped += 1;
            return;
        }
        self.key = Some(key);
        self.event(Event::Connected {
            user_id: init.user_id,
        });
        self.start_decay(now, next_in);
    }

    fn handle_hdsk(&mut self, now: u64, packet_number: u32, next_in: u64) {
        match (&self.role, self.phase) {
            // The server INIT has not left: the client cannot have sent this.
            (_, Phase::Answer { .. } | Phase::Init { .. } | Phase::Closed) => return,
            // The client takes only the echo of its own latest handshake
            // (a replayed or stale one would keep a dead session alive).
            (Role::Client { .. }, _)
                if self.sent_at.is_none() || packet_number != self.packet_number =>
            {
                return
            }
            (Role::Server { .. }, _) => self.packet_number = packet_number,
            _ => {}
        }
        if let Some(sent) = self.sent_at.take() {
            // The peer answers `next_in` after our handshake: the rest is RTT.
            let sample = now.saturating_sub(sent).saturating_sub(self.next_in);
            self.rtt.sample(&self.s, sample as f64);
        }
        self.start_decay(now, next_in);
    }

    fn start_decay(&mut self, now: u64, next_in: u64) {
        self.offered = false;
        let rtt = self.rtt.rtt(&self.s);
        self.phase = Phase::Sleep {
            until: now + next_in.saturating_sub(rtt),
        };
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        // A phase may end at once (a next_in shorter than the RTT): a few
        // steps at most, never a loop without end.
        for _ in 0..8 {
            match self.deadline() {
                Some(d) if d <= now => self.step(now),
                _ => return,
            }
        }
    }

    fn step(&mut self, now: u64) {
        let rtt = self.rtt.rtt(&self.s);
        let timeout = self.rtt.timeout(&self.s);
        let retries = u64::from(self.s.max_retries);
        match self.phase {
            Phase::Init { attempt, .. } => {
                if attempt + 1 >= self.s.max_retries {
                    return self.fail("the server INIT".into());
                }
                if self.send_init(now, attempt + 1).is_err() {
                    self.fail("building the INIT".into());
                }
            }
            Phase::Answer { .. } => self.answer_init(now, timeout, retries),
            Phase::AwaitFirst { .. } => self.fail("the client's first handshake".into()),
            Phase::Sleep { .. } => self.offer(now, 0, rtt),
            Phase::Offer { attempt, .. } => {
                if std::mem::take(&mut self.offered) {
                    if let Some(key) = self.key.clone() {
                        if let Ok(d) = self.hdsk_datagram(now, &key, None) {
                            self.push(d);
                        }
                    }
                }
                let wait = match self.role {
                    Role::Client { .. } => self.next_in + timeout,
                    Role::Server { .. } => (self.next_in + timeout) * retries,
                };
                self.phase = Phase::AwaitReply {
                    attempt,
                    until: now + wait,
                };
            }
            Phase::AwaitReply { attempt, .. } => match self.role {
                Role::Client { .. } if attempt + 1 < self.s.max_retries => {
                    self.offer(now, attempt + 1, rtt)
                }
                Role::Client { .. } => self.fail("the server's handshake".into()),
                Role::Server { .. } => self.fail("the client's handshake".into()),
            },
            Phase::Closed => {}
        }
    }

    fn offer(&mut self, now: u64, attempt: u32, rtt: u64) {
        if let Role::Client { .. } = self.role {
            self.packet_number = self.rng.next_u32();
        }
        self.offered = true;
        self.phase = Phase::Offer {
            attempt,
            until: now + 2 * rtt,
        };
    }

    fn answer_init(&mut self, now: u64, timeout: u64, retries: u64) {
        let (Role::Server { user_id, init_len }, Some(key)) = (&self.role, self.key.clone()) else {
            return;
        };
        let (user_id, init_len) = (*user_id, *init_len);
        self.next_in = self.random_next_in();
        // The INIT's source may be forged (a replay): no amplification.
        // Every client INIT (at least 87 bytes) leaves room for a 1-byte tail.
        let pad = self.pad_within(wire::SERVER_INIT_HEADER, 0, init_len);
        let init = ServerInit {
            packet_number: self.packet_number,
            status: wire::STATUS_SUCCESS,
            user_id,
            next_in: self.next_in as u32,
        };
        match wire::server_init(&key, &pad, &init) {
            Ok(d) => self.push(d),
            Err(_) => return self.fail("building the server INIT".into()),
        }
        self.event(Event::Connected { user_id });
        self.phase = Phase::AwaitFirst {
            until: now + (self.next_in + timeout) * retries,
        };
    }
}
