//! The server's side of the handshake (docs §3 server steps, §6): from the
//! first byte to an open link, a refusal, or a probe.

use std::sync::Arc;
use std::time::Instant;

use super::endpoint::Verdict;
use super::{handshake, Connection, Refusal, State};
use crate::error::Error;
use crate::replay_store::Seen;

/// Why a first message is a probe, from what the replay filter said.
fn replay_probe(seen: Seen) -> Option<&'static str> {
    match seen {
        Seen::Fresh => None,
        Seen::Replay => Some("replayed first message"),
        // Fail closed: without a working filter a replay cannot be told apart.
        Seen::Unavailable => Some("replay store unavailable"),
    }
}

impl Connection {
    /// Silence until the close time drawn at accept, whatever the reason.
    pub(super) fn become_probe(&mut self, reason: &'static str) {
        if let State::ServerHandshake { deadline, .. } = self.state {
            self.probe_reason = Some(reason);
            self.inbuf = Vec::new();
            self.state = State::Probe { until: deadline };
        }
    }

    /// Returns whether the state changed.
    pub(super) fn server_step(&mut self, now: Instant) -> Result<bool, Error> {
        let State::ServerHandshake {
            endpoint,
            header,
            slot,
            ..
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
                    self.become_probe(reason);
                    return Ok(true);
                }
            };
            if let Some(reason) = replay_probe(endpoint.replay_check(&h.mark)) {
                self.become_probe(reason);
                return Ok(true);
            }
            // Only a first message whose MAC verified takes a handshake slot
            // (docs §6); a silent or random-speaking socket never does.
            let Some(s) = endpoint.take_slot() else {
                self.become_probe("no handshake slot");
                return Ok(true);
            };
            *slot = Some(s);
            *header = Some(h);
            self.mac_verified = true;
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
            self.become_probe("bytes after the first message");
            return Ok(true);
        }
        let msg1 = match handshake::server_read_msg1(
            endpoint.public_key(),
            &endpoint.static_dh,
            &mut self.inbuf[..h.total],
        ) {
            Ok(m) => m,
            Err(reason) => {
                self.become_probe(reason);
                return Ok(true);
            }
        };
        let seen = endpoint.replay_insert(h.mark, h.window, handshake::window(self.unix_secs));
        if let Some(reason) = replay_probe(seen) {
            self.become_probe(reason);
            return Ok(true);
        }
        self.inbuf = Vec::new();
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
        Ok(true)
    }
}
