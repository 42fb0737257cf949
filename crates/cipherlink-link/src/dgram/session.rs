//! An open datagram session, either end (docs §11.5): records both ways,
//! pings and pongs on the stream mode's keepalive timers (§5, the
//! `LinkParams` of each side), and the close record.

use std::time::Instant;

use super::records::{Dropped, Opened, Receiver, Sender};
use super::wire::{MIN_RECORD_DATAGRAM, PAD_CEILING};
use crate::config::KeepaliveConfig;
use crate::error::Error;
use crate::proto::keepalive::{Action, Keepalive};
use crate::proto::record::{RecordType, MAX_CLOSE_REASON, PING_LEN};
use crate::proto::{rand_below, rand_duration, CloseCode, Entropy};

/// What one received record meant.
#[derive(Debug)]
pub enum Received {
    /// Application data at this range of the datagram.
    Data(std::ops::Range<usize>),
    /// Keepalive traffic (answered when it was a ping).
    Keepalive,
    /// The peer closed the session.
    Closed(CloseCode, String),
}

/// A record that opened: what it meant, whether it was the newest so
/// far, and a pong to send when it was a ping.
#[derive(Debug)]
pub struct Delivery {
    /// What it meant.
    pub what: Received,
    /// Whether its counter is the highest received.
    pub newest: bool,
    /// The pong to send.
    pub reply: Option<Vec<u8>>,
}

/// What the keepalive timer asked for.
#[derive(Debug)]
pub enum Tick {
    /// Nothing.
    Idle,
    /// Send this ping datagram.
    Ping(Vec<u8>),
    /// The peer is gone after this many unanswered pings.
    Gone(u32),
}

/// Both directions of an open session and its keepalive.
pub struct Established {
    tx: Sender,
    rx: Receiver,
    keepalive: Keepalive,
    tail: usize,
}

impl Established {
    /// A session that just opened.
    pub fn new(
        tx: Sender,
        rx: Receiver,
        cfg: KeepaliveConfig,
        tail: usize,
        now: Instant,
        rng: &mut dyn Entropy,
    ) -> Self {
        let next_in = rand_duration(rng, cfg.min_next_in, cfg.max_next_in);
        Self {
            tx,
            rx,
            keepalive: Keepalive::new(cfg, now, next_in),
            tail,
        }
    }

    fn pad(&self, unpadded: usize, rng: &mut dyn Entropy) -> usize {
        let room = PAD_CEILING.saturating_sub(unpadded).min(self.tail);
        rand_below(rng, room as u64 + 1) as usize
    }

    fn seal(&mut self, ty: RecordType, body: &[u8], rng: &mut dyn Entropy) -> Vec<u8> {
        let pad = self.pad(MIN_RECORD_DATAGRAM + body.len(), rng);
        self.tx.seal(ty, body, pad)
    }

    /// One data datagram (the caller bounds `data` by `wire::MAX_DATA`).
    pub fn seal_data(&mut self, data: &[u8], rng: &mut dyn Entropy) -> Vec<u8> {
        self.seal(RecordType::Data, data, rng)
    }

    /// A close datagram with `code` and `reason` (cut to its limit).
    pub fn seal_close(&mut self, code: CloseCode, reason: &str, rng: &mut dyn Entropy) -> Vec<u8> {
        let mut body = vec![code.to_u8()];
        let mut cut = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.seal(RecordType::Close, &body, rng)
    }

    /// Opens `datagram` as record `counter`. `Ok(Err(_))`: dropped;
    /// `Err`: an authenticated record that breaks the protocol.
    pub fn receive(
        &mut self,
        now: Instant,
        counter: u64,
        datagram: &mut [u8],
        rng: &mut dyn Entropy,
    ) -> Result<Result<Delivery, Dropped>, Error> {
        let Opened { ty, body, newest } = match self.rx.open(counter, datagram)? {
            Ok(o) => o,
            Err(d) => return Ok(Err(d)),
        };
        let (least, most) = self.keepalive.next_in_range();
        let next_in = rand_duration(rng, least, most);
        self.keepalive.on_activity(now, next_in);
        let b = &datagram[body.clone()];
        let (what, reply) = match ty {
            RecordType::Data => (Received::Data(body), None),
            RecordType::Ping => {
                let mut id = [0u8; PING_LEN];
                id.copy_from_slice(b);
                let pong = self.seal(RecordType::Pong, &id, rng);
                (Received::Keepalive, Some(pong))
            }
            RecordType::Pong => {
                let mut id = [0u8; PING_LEN];
                id.copy_from_slice(b);
                self.keepalive.on_pong(now, u64::from_be_bytes(id));
                (Received::Keepalive, None)
            }
            RecordType::Close => {
                let code = CloseCode::from_u8(b[0]);
                let reason = String::from_utf8_lossy(&b[1..]).into_owned();
                (Received::Closed(code, reason), None)
            }
            RecordType::Rekey => return Err(Error::Malformed("datagram record type")),
        };
        Ok(Ok(Delivery {
            what,
            newest,
            reply,
        }))
    }

    /// When [`Established::tick`] wants to run next.
    pub fn deadline(&self) -> Instant {
        self.keepalive.deadline()
    }

    /// Runs the keepalive timer.
    pub fn tick(&mut self, now: Instant, rng: &mut dyn Entropy) -> Tick {
        match self.keepalive.poll(now) {
            Action::None => Tick::Idle,
            Action::Ping(id) => Tick::Ping(self.seal(RecordType::Ping, &id.to_be_bytes(), rng)),
            Action::Gone(n) => Tick::Gone(n),
        }
    }
}
