//! The client of a datagram session, sans-IO (docs §11.3): msg1 in two
//! pieces, resent on a doubling timer until msg2 (or a cookie reply, which
//! it answers at once with the cookie's proof); then an open session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::records::{Receiver, Sender};
use super::session::{Delivery, Established, Received, Tick};
use super::wire::{
    self, HeaderOpener, HeaderSealer, Pieces, COOKIE_REPLY, COOKIE_REPLY_MAX_PAD,
    HANDSHAKE_DATAGRAM, MAX_DATA, MIN_RECORD_DATAGRAM, MSG1_MAX_PAD, MSG2_MIN,
};
use crate::error::Error;
use crate::proto::crypto::HmacKey;
use crate::proto::handshake::{self, ClientHandshake, Mode};
use crate::proto::rng::ErasingRng;
use crate::proto::{ClientConfig, CloseCode, Entropy};

/// The first resend of msg1 comes this long after it was sent.
pub const FIRST_RESEND: Duration = Duration::from_secs(1);
/// Resends back off (doubling) up to this interval.
pub const MAX_RESEND: Duration = Duration::from_secs(8);
/// Cookie replies a handshake answers at most (a forged one costs the
/// client a resend, so they are bounded too).
pub const MAX_COOKIE_REPLIES: u32 = 4;

/// What the client has to say.
#[derive(Debug)]
pub enum ClientEvent {
    /// The session is open.
    Connected,
    /// One datagram of application data.
    Data(Vec<u8>),
    /// The session ended: `None` when the application here closed it or
    /// the server closed it normally (code 0 or 4).
    Closed(Option<Error>),
}

struct Handshaking {
    hs: ClientHandshake,
    pieces: Pieces,
    resend_at: Instant,
    interval: Duration,
    deadline: Instant,
    cookie_replies: u32,
}

struct Open {
    session: Established,
    sid: u64,
    opener: HeaderOpener,
}

enum State {
    Handshaking(Box<Handshaking>),
    Open(Box<Open>),
    Closed,
}

/// One client session.
pub struct DgramClient {
    state: State,
    config: ClientConfig,
    k_obf: HmacKey,
    rng: Box<dyn Entropy>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    /// Labs only: the session's transport secrets, kept when asked for
    /// ([`DgramClient::export_keys`]).
    export: Option<Option<handshake::TransportKeys>>,
}

impl DgramClient {
    /// Starts the handshake: the two pieces of msg1 are the first datagrams
    /// out. `rng` gives the handshake's randomness, then 32 bytes that key
    /// the session's own generator (§7), as in stream mode.
    pub fn new(
        config: ClientConfig,
        unix_secs: u64,
        now: Instant,
        mut rng: Box<dyn Entropy>,
    ) -> Result<Self, Error> {
        config.params.validate()?;
        let mut msg1 = Vec::with_capacity(2 * HANDSHAKE_DATAGRAM);
        let tail = config.params.tail_length.min(MSG1_MAX_PAD);
        let hs = ClientHandshake::start(
            Mode::Datagram,
            &config.server_key,
            &config.token,
            unix_secs,
            tail,
            rng.as_mut(),
            &mut msg1,
        )?;
        let k_obf = HmacKey::new(&handshake::obfs_key(&config.server_key));
        let pieces = Pieces::cut(&msg1, &k_obf, None, rng.as_mut())?;
        let mut out = VecDeque::with_capacity(2);
        pieces.send(&mut out);
        let deadline = now + config.params.handshake_timeout;
        Ok(Self {
            state: State::Handshaking(Box::new(Handshaking {
                hs,
                pieces,
                resend_at: now + FIRST_RESEND,
                interval: FIRST_RESEND,
                deadline,
                cookie_replies: 0,
            })),
            config,
            k_obf,
            rng,
            out,
            events: VecDeque::new(),
            export: None,
        })
    }

    /// A datagram from the server's address.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) {
        match &mut self.state {
            State::Handshaking(h) => {
                if (MSG2_MIN..=HANDSHAKE_DATAGRAM).contains(&datagram.len()) {
                    match h.hs.read_msg2_datagram(datagram) {
                        Ok(Some(keys)) => self.open(now, &keys),
                        Ok(None) => {}
                        Err(e) => self.end(Some(e)),
                    }
                } else if (COOKIE_REPLY..=COOKIE_REPLY + COOKIE_REPLY_MAX_PAD)
                    .contains(&datagram.len())
                    && h.cookie_replies < MAX_COOKIE_REPLIES
                {
                    if let Some(cookie) =
                        wire::open_cookie_reply(&self.k_obf, &h.pieces.first, datagram)
                    {
                        h.cookie_replies += 1;
                        h.pieces.with_cookie(&cookie);
                        h.pieces.send(&mut self.out);
                    }
                }
            }
            State::Open(open) => {
                let Open {
                    session,
                    sid,
                    opener,
                } = &mut **open;
                if datagram.len() < MIN_RECORD_DATAGRAM {
                    return;
                }
                let (got_sid, counter) = opener.open(datagram);
                if got_sid != *sid {
                    return;
                }
                match session.receive(now, counter, datagram, self.rng.as_mut()) {
                    Ok(Ok(Delivery { what, reply, .. })) => {
                        self.out.extend(reply);
                        match what {
                            Received::Data(r) => self
                                .events
                                .push_back(ClientEvent::Data(datagram[r].to_vec())),
                            Received::Keepalive => {}
                            Received::Closed(code, reason) => self.end(match code {
                                CloseCode::Normal | CloseCode::Shutdown => None,
                                _ => Some(Error::PeerClosed { code, reason }),
                            }),
                        }
                    }
                    Ok(Err(_dropped)) => {}
                    Err(e) => self.fail(e),
                }
            }
            State::Closed => {}
        }
    }

    /// Labs only: keep the session's transport secrets for
    /// [`DgramClient::take_exported_keys`] (to read a capture with
    /// [`super::capture::CaptureReader`]). Whoever holds them can read and
    /// forge the session.
    pub fn export_keys(&mut self) {
        self.export = Some(None);
    }

    /// The transport secrets kept by [`DgramClient::export_keys`], once open.
    pub fn take_exported_keys(&mut self) -> Option<handshake::TransportKeys> {
        self.export.as_mut().and_then(Option::take)
    }

    fn open(&mut self, now: Instant, keys: &handshake::TransportKeys) {
        if let Some(slot) = &mut self.export {
            *slot = Some(keys.clone());
        }
        let (sid, s2c_hdr) = wire::session_secrets(&keys.c2s_len, &keys.s2c_len);
        let c2s_hdr = wire::c2s_header_key(&self.k_obf);
        // The handshake's generator is done: the session draws from a
        // fast-key-erasure generator keyed by it (§7).
        let mut seed = [0u8; 32];
        self.rng.fill(&mut seed);
        self.rng = Box::new(ErasingRng::from_seed(seed));
        let session = Established::new(
            Sender::new(sid, HeaderSealer::new(&c2s_hdr), &keys.c2s_key),
            Receiver::new(&keys.s2c_key),
            self.config.params.keepalive.clone(),
            self.config.params.tail_length,
            now,
            self.rng.as_mut(),
        );
        self.state = State::Open(Box::new(Open {
            session,
            sid,
            opener: HeaderOpener::new(&s2c_hdr),
        }));
        self.events.push_back(ClientEvent::Connected);
    }

    fn end(&mut self, error: Option<Error>) {
        if !matches!(self.state, State::Closed) {
            self.state = State::Closed;
            self.events.push_back(ClientEvent::Closed(error));
        }
    }

    /// An error of the peer's: tell it (best effort) and end.
    fn fail(&mut self, e: Error) {
        if let State::Open(open) = &mut self.state {
            let close = open
                .session
                .seal_close(CloseCode::ProtocolError, "", self.rng.as_mut());
            self.out.push_back(close);
        }
        self.end(Some(e));
    }

    /// Runs the timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Handshaking(h) => {
                if now >= h.deadline {
                    self.end(Some(Error::HandshakeTimeout));
                } else if now >= h.resend_at {
                    h.pieces.send(&mut self.out);
                    h.interval = (h.interval * 2).min(MAX_RESEND);
                    h.resend_at = now + h.interval;
                }
            }
            State::Open(open) => match open.session.tick(now, self.rng.as_mut()) {
                Tick::Idle => {}
                Tick::Ping(d) => self.out.push_back(d),
                Tick::Gone(retries) => {
                    let close = open
                        .session
                        .seal_close(CloseCode::PeerGone, "", self.rng.as_mut());
                    self.out.push_back(close);
                    self.end(Some(Error::PeerGone { retries }));
                }
            },
            State::Closed => {}
        }
    }

    /// When [`DgramClient::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Handshaking(h) => Some(h.resend_at.min(h.deadline)),
            State::Open(open) => Some(open.session.deadline()),
            State::Closed => None,
        }
    }

    /// Sends one datagram of application data (at most [`MAX_DATA`] bytes).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_DATA {
            return Err(Error::Length {
                what: "datagram",
                len: data.len(),
            });
        }
        let State::Open(open) = &mut self.state else {
            return Err(Error::NotOpen);
        };
        let d = open.session.seal_data(data, self.rng.as_mut());
        self.out.push_back(d);
        Ok(())
    }

    /// Ends the session, telling the server (best effort).
    pub fn close(&mut self, code: CloseCode) {
        if let State::Open(open) = &mut self.state {
            let close = open.session.seal_close(code, "", self.rng.as_mut());
            self.out.push_back(close);
        }
        self.end(None);
    }

    /// The next datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether the session is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }
}
