//! The server's side of the handshake (docs §3 server steps, §6): from the
//! first byte to an open link, a refusal, or a probe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use super::endpoint::{HandshakeSlot, Verdict};
use super::handshake::{self, ServerMsg1};
use super::{Connection, Refusal, State};
use crate::error::Error;
use crate::proto::ServerEndpoint;
use crate::replay_store::{Recorded, ReplayCommit};

/// How long the rest of a first message may take once its header's MAC
/// verified (docs §6): then its handshake slot is given back and the
/// connection is a probe, whose close time is still the one drawn at
/// accept. A real client sends its first message at once.
pub const FIRST_MESSAGE_TIME: Duration = Duration::from_secs(2);

/// A handshake slot, and until when the rest of the first message may take.
pub(super) struct Slot {
    slot: HandshakeSlot,
    rest_by: Instant,
}

/// A decrypted first message whose replay mark is on its way to disk.
pub(super) struct Awaiting {
    msg1: ServerMsg1,
    commit: Arc<ReplayCommit>,
}

impl Connection {
    /// Silence until the close time drawn at accept, whatever the reason.
    pub(super) fn become_probe(&mut self, reason: &'static str) {
        if let State::ServerHandshake { deadline, .. } = self.state {
            self.probe_reason = Some(reason);
            // It may hold a decrypted first message.
            self.inbuf.zeroize();
            self.inbuf = Vec::new();
            self.state = State::Probe { until: deadline };
        }
    }

    /// The server handshake's next timer: the close time, or sooner the
    /// time by which the rest of a first message must have arrived.
    pub(super) fn server_poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::ServerHandshake {
                slot: Some(s),
                awaiting: None,
                deadline,
                ..
            } => Some(s.rest_by.min(*deadline)),
            State::ServerHandshake { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    pub(super) fn server_timeout(&mut self, now: Instant) {
        let State::ServerHandshake {
            slot,
            awaiting,
            deadline,
            ..
        } = &self.state
        else {
            return;
        };
        if now >= *deadline {
            self.probe_reason = Some("handshake timeout");
            self.inbuf.zeroize();
            self.state = State::Closed;
        } else if awaiting.is_none() && slot.as_ref().is_some_and(|s| now >= s.rest_by) {
            self.become_probe("first message incomplete in time");
        }
    }

    /// A server connection whose first message waits for its replay mark
    /// to be durable (docs §6): wait for it, then call
    /// [`Connection::handle_commit`].
    pub fn pending_commit(&self) -> Option<Arc<ReplayCommit>> {
        match &self.state {
            State::ServerHandshake {
                awaiting: Some(a), ..
            } => Some(Arc::clone(&a.commit)),
            _ => None,
        }
    }

    /// Goes on once [`Connection::pending_commit`] is done: msg2 when the
    /// mark is on disk, a probe when its write failed.
    pub fn handle_commit(&mut self, now: Instant) {
        let State::ServerHandshake {
            endpoint, awaiting, ..
        } = &mut self.state
        else {
            return;
        };
        let Some(ok) = awaiting.as_ref().and_then(|a| a.commit.outcome()) else {
            return;
        };
        let (endpoint, awaiting) = (Arc::clone(endpoint), awaiting.take());
        match awaiting {
            Some(a) if ok => {
                if let Err(e) = self.server_answer(now, &endpoint, a.msg1) {
                    self.fail(e);
                }
            }
            _ => self.become_probe("replay store write failed"),
        }
    }

    /// Returns whether the state changed.
    pub(super) fn server_step(&mut self, now: Instant) -> Result<bool, Error> {
        let State::ServerHandshake {
            endpoint,
            header,
            slot,
            awaiting,
            ..
        } = &mut self.state
        else {
            return Ok(false);
        };
        if awaiting.is_some() {
            // The client sends nothing more until it has msg2.
            if self.inbuf.is_empty() {
                return Ok(false);
            }
            self.become_probe("bytes after the first message");
            return Ok(true);
        }
        let endpoint = Arc::clone(endpoint);
        if header.is_none() {
            let h = match handshake::server_check_header(
                &endpoint.k_obf,
                self.unix_secs,
                &self.inbuf,
            ) {
                Ok(None) => return Ok(false),
                Ok(Some(h)) => h,
                Err(reason) => {
                    self.become_probe(reason);
                    return Ok(true);
                }
            };
            // Only a first message whose MAC verified takes a handshake slot
            // (docs §6), and only one per mark at a time.
            match endpoint.take_slot(h.mark) {
                Ok(s) => {
                    *slot = Some(Slot {
                        slot: s,
                        rest_by: now + FIRST_MESSAGE_TIME,
                    })
                }
                Err(reason) => {
                    self.become_probe(reason);
                    return Ok(true);
                }
            }
            *header = Some(h);
            self.mac_verified = true;
        }
        let Some(h) = header.as_ref() else {
            return Ok(false);
        };
        let (total, window) = (h.total, h.window);
        if self.inbuf.len() < total {
            return Ok(false);
        }
        if self.inbuf.len() > total {
            self.become_probe("bytes after the first message");
            return Ok(true);
        }
        *header = None;
        let read = handshake::server_read_msg1(
            handshake::Mode::Stream,
            endpoint.public_key(),
            &endpoint.static_dh,
            &mut self.inbuf[..total],
        );
        // Decrypted in place: wiped, whatever comes next.
        self.inbuf.zeroize();
        self.inbuf = Vec::new();
        let msg1 = match read {
            Ok(m) => m,
            Err(reason) => {
                self.become_probe(reason);
                return Ok(true);
            }
        };
        let Some(s) = slot.as_ref() else {
            return Err(Error::Protocol("a first message without a handshake slot"));
        };
        match endpoint.replay_record(&s.slot, window, handshake::window(self.unix_secs)) {
            Recorded::Done => self.server_answer(now, &endpoint, msg1)?,
            Recorded::Durable(commit) => {
                *awaiting = Some(Box::new(Awaiting { msg1, commit }));
                return Ok(false);
            }
            Recorded::Unavailable => self.become_probe("replay store unavailable"),
        }
        Ok(true)
    }

    /// §3 step 6 and msg2: the token's verdict, then accepted or refused.
    fn server_answer(
        &mut self,
        now: Instant,
        endpoint: &ServerEndpoint,
        msg1: ServerMsg1,
    ) -> Result<(), Error> {
        let tail = self.params.tail_length;
        match endpoint.verdict(&msg1) {
            Verdict::Accept {
                revocation,
                name,
                secret,
                client_ss,
            } => {
                let keys = msg1
                    .write_msg2(
                        Some(&*secret),
                        client_ss.as_deref(),
                        tail,
                        self.rng.as_mut(),
                        &mut self.outbuf,
                    )?
                    .ok_or(Error::Protocol("accepted handshake without keys"))?;
                self.revocation = Some(revocation);
                self.open(now, keys, false, name);
            }
            Verdict::Refuse { name, reason } => {
                msg1.write_msg2(None, None, tail, self.rng.as_mut(), &mut self.outbuf)?;
                self.refusal = Some(Refusal { name, reason });
                self.probe_reason = Some(reason);
                self.state = State::Closed;
            }
        }
        Ok(())
    }
}
