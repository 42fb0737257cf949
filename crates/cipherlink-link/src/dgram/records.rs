//! One direction's record datagrams (docs §11.4): an encrypted header
//! `AES(K_hdr, sid ‖ counter)`, then `ENC(key_epoch, counter, header,
//! type ‖ body_len ‖ body ‖ pad)`. The counter travels in the header, so
//! datagrams may be lost, duplicated or reordered: the receiver's window
//! accepts each counter once, and the key of a counter follows from the
//! counter (a ratchet step every [`EPOCH`] records), so no rekey message
//! can be lost.

use std::ops::Range;

use zeroize::Zeroizing;

use super::window::ReplayWindow;
use super::wire::{HeaderSealer, EPOCH, HEADER, INNER_HEADER, MAX_DATA, MIN_RECORD_DATAGRAM};
use crate::error::Error;
use crate::proto::crypto::{hmac, AeadKey};
use crate::proto::record::{RecordType, MAX_CLOSE_REASON, PING_LEN};

/// Why a datagram was dropped without an answer. Anyone can send these, so
/// none of them ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Too short to be a record.
    Short,
    /// Its counter was received before, or is behind the window.
    Replayed,
    /// Its counter is more than one key epoch ahead.
    FarAhead,
    /// The tag did not verify.
    Tag,
}

impl Dropped {
    /// For logs and counters.
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::Short => "short datagram",
            Dropped::Replayed => "replayed or too late",
            Dropped::FarAhead => "counter far ahead",
            Dropped::Tag => "tag",
        }
    }
}

/// `key' = HMAC(key, "rekey")`, as the stream mode's rekey (§4).
pub(super) fn ratchet(key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hmac(key, &[b"rekey"]))
}

/// The sending half.
pub struct Sender {
    sid: u64,
    header: HeaderSealer,
    key_bytes: Zeroizing<[u8; 32]>,
    key: AeadKey,
    epoch: u64,
    counter: u64,
}

impl Sender {
    /// Counter 0 under `key`, headers sealed with `header` for session `sid`.
    pub fn new(sid: u64, header: HeaderSealer, key: &[u8; 32]) -> Self {
        Self {
            sid,
            header,
            key_bytes: Zeroizing::new(*key),
            key: AeadKey::new(key),
            epoch: 0,
            counter: 0,
        }
    }

    /// Ratchets to the key of the next counter's epoch: the old key's bytes
    /// are overwritten and its schedule freed.
    fn follow_epoch(&mut self) {
        let epoch = self.counter / EPOCH;
        while self.epoch < epoch {
            let next = ratchet(&self.key_bytes);
            self.key = AeadKey::new(&next);
            *self.key_bytes = *next;
            self.epoch += 1;
        }
    }

    /// One record datagram: `body` and `pad` zero bytes under the next counter.
    pub fn seal(&mut self, ty: RecordType, body: &[u8], pad: usize) -> Vec<u8> {
        self.follow_epoch();
        let header = self.header.seal(self.sid, self.counter);
        let mut out = Vec::with_capacity(MIN_RECORD_DATAGRAM + body.len() + pad);
        out.extend_from_slice(&header);
        out.push(ty as u8);
        // Callers bound bodies by MAX_DATA (< 2^16).
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + pad, 0);
        self.key.seal(self.counter, &header, &mut out, HEADER);
        self.counter += 1;
        out
    }

    /// Fuzzing only: seals `plaintext` (type, body length, body, padding)
    /// as it is, under the next counter.
    #[doc(hidden)]
    pub fn seal_plaintext(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.follow_epoch();
        let header = self.header.seal(self.sid, self.counter);
        let mut out = header.to_vec();
        out.extend_from_slice(plaintext);
        self.key.seal(self.counter, &header, &mut out, HEADER);
        self.counter += 1;
        out
    }

    /// Fuzzing only: skips `n` counters (as lost datagrams would).
    #[doc(hidden)]
    pub fn skip(&mut self, n: u64) {
        self.counter = self.counter.saturating_add(n);
    }
}

/// An opened record: its type and where its body lies in the datagram.
#[derive(Debug)]
pub struct Opened {
    /// The record type.
    pub ty: RecordType,
    /// The body's bytes within the datagram.
    pub body: Range<usize>,
    /// Whether its counter is the highest received (the peer's address is
    /// only followed for these, as WireGuard does).
    pub newest: bool,
}

/// The receiving half.
pub struct Receiver {
    window: ReplayWindow,
    epoch: u64,
    key_bytes: Zeroizing<[u8; 32]>,
    key: AeadKey,
    /// The key of `epoch - 1`, while the window still reaches into it.
    previous: Option<AeadKey>,
    /// The key of `epoch + 1` and its bytes, derived once the first record
    /// claiming that epoch arrives: a forged header (any holder of `S` who
    /// saw `sid` can make one) then costs a tag check, not a ratchet step
    /// and a key schedule each.
    next: Option<(AeadKey, Zeroizing<[u8; 32]>)>,
    /// Ratchet steps taken (tests).
    #[cfg(test)]
    steps: u64,
}

impl Receiver {
    /// Counter 0 under `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            window: ReplayWindow::new(),
            epoch: 0,
            key_bytes: Zeroizing::new(*key),
            key: AeadKey::new(key),
            previous: None,
            next: None,
            #[cfg(test)]
            steps: 0,
        }
    }

    /// Opens `datagram` (header included) as record `counter`, in place.
    /// `Ok(Err(_))`: dropped silently; `Err`: an authenticated record that
    /// breaks the protocol.
    pub fn open(
        &mut self,
        counter: u64,
        datagram: &mut [u8],
    ) -> Result<Result<Opened, Dropped>, Error> {
        if datagram.len() < MIN_RECORD_DATAGRAM {
            return Ok(Err(Dropped::Short));
        }
        if !self.window.may_accept(counter) {
            return Ok(Err(Dropped::Replayed));
        }
        let epoch = counter / EPOCH;
        let ahead = epoch == self.epoch + 1;
        if ahead && self.next.is_none() {
            // The next epoch's key, used only once a record under it verifies.
            let bytes = ratchet(&self.key_bytes);
            self.next = Some((AeadKey::new(&bytes), bytes));
            #[cfg(test)]
            {
                self.steps += 1;
            }
        }
        let key = if epoch == self.epoch {
            &self.key
        } else if epoch + 1 == self.epoch {
            match &self.previous {
                Some(k) => k,
                None => return Ok(Err(Dropped::Replayed)),
            }
        } else if let (true, Some((k, _))) = (ahead, &self.next) {
            k
        } else {
            return Ok(Err(Dropped::FarAhead));
        };
        let (header, sealed) = datagram.split_at_mut(HEADER);
        let Ok(pt_len) = key.open(counter, header, sealed) else {
            return Ok(Err(Dropped::Tag));
        };
        if ahead {
            if let Some((k, bytes)) = self.next.take() {
                self.previous = Some(std::mem::replace(&mut self.key, k));
                *self.key_bytes = *bytes;
                self.epoch = epoch;
            }
        }
        let newest = self.window.mark(counter);
        // The window no longer reaches the previous epoch's last counter
        // (it moves a ring word at a time): its key goes.
        if self.previous.is_some() && !self.window.reaches(self.epoch * EPOCH - 1) {
            self.previous = None;
        }
        let pt = &sealed[..pt_len];
        // Rekey records have no place here: keys follow the counter.
        let ty = RecordType::from_u8(pt[0])
            .filter(|t| *t != RecordType::Rekey)
            .ok_or(Error::Malformed("datagram record type"))?;
        let body_len = usize::from(u16::from_be_bytes([pt[1], pt[2]]));
        if body_len > pt_len - INNER_HEADER {
            return Err(Error::Malformed("datagram record body length"));
        }
        let fits = match ty {
            RecordType::Data => body_len <= MAX_DATA,
            RecordType::Ping | RecordType::Pong => body_len == PING_LEN,
            RecordType::Close => (1..=1 + MAX_CLOSE_REASON).contains(&body_len),
            RecordType::Rekey => false,
        };
        if !fits {
            return Err(Error::Length {
                what: "datagram record body for its type",
                len: body_len,
            });
        }
        let start = HEADER + INNER_HEADER;
        Ok(Ok(Opened {
            ty,
            body: start..start + body_len,
            newest,
        }))
    }

    /// The epoch of the newest key (tests).
    #[cfg(test)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Ratchet steps taken (tests).
    #[cfg(test)]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether the previous epoch's key is still held (tests).
    #[cfg(test)]
    pub fn holds_previous(&self) -> bool {
        self.previous.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dgram::window::WINDOW;
    use crate::dgram::wire::HeaderOpener;

    fn pair() -> (Sender, Receiver, HeaderOpener) {
        let hk = [9u8; 32];
        (
            Sender::new(77, HeaderSealer::new(&hk), &[1u8; 32]),
            Receiver::new(&[1u8; 32]),
            HeaderOpener::new(&hk),
        )
    }

    fn deliver(rx: &mut Receiver, h: &HeaderOpener, mut d: Vec<u8>) -> Result<Vec<u8>, Dropped> {
        let (sid, counter) = h.open(&d);
        assert_eq!(sid, 77);
        let o = rx.open(counter, &mut d).unwrap()?;
        Ok(d[o.body].to_vec())
    }

    #[test]
    fn reordered_duplicated_and_replayed() {
        let (mut tx, mut rx, h) = pair();
        let d: Vec<_> = (0..5u8)
            .map(|i| tx.seal(RecordType::Data, &[i; 3], 2))
            .collect();
        for i in [3usize, 0, 4, 1, 2] {
            assert_eq!(
                deliver(&mut rx, &h, d[i].clone()).unwrap(),
                vec![i as u8; 3]
            );
        }
        for x in &d {
            assert_eq!(deliver(&mut rx, &h, x.clone()), Err(Dropped::Replayed));
        }
        let mut bad = tx.seal(RecordType::Data, b"x", 0);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(deliver(&mut rx, &h, bad), Err(Dropped::Tag));
    }

    /// Crossing an epoch: the receiver follows the ratchet, still opens a
    /// late record of the old epoch while the window reaches it, then
    /// forgets the old key.
    #[test]
    fn epochs_ratchet_and_the_old_key_goes() {
        let (mut tx, mut rx, h) = pair();
        tx.counter = EPOCH - 2;
        let late = tx.seal(RecordType::Data, b"late", 0);
        let last_old = tx.seal(RecordType::Data, b"old", 0);
        let first_new = tx.seal(RecordType::Data, b"new", 0);
        assert_eq!(deliver(&mut rx, &h, last_old).unwrap(), b"old");
        assert_eq!(deliver(&mut rx, &h, first_new).unwrap(), b"new");
        assert_eq!(rx.epoch(), 1);
        assert!(rx.holds_previous());
        assert_eq!(deliver(&mut rx, &h, late).unwrap(), b"late");
        tx.counter = EPOCH + WINDOW + 5;
        let far = tx.seal(RecordType::Data, b"far", 0);
        assert_eq!(deliver(&mut rx, &h, far).unwrap(), b"far");
        assert!(!rx.holds_previous());
        tx.counter = 3 * EPOCH;
        let jump = tx.seal(RecordType::Data, b"jump", 0);
        assert_eq!(deliver(&mut rx, &h, jump), Err(Dropped::FarAhead));
    }

    /// §11.4: the previous epoch's key goes as soon as the window cannot
    /// accept any counter of that epoch, not up to a ring word later.
    #[test]
    fn the_old_key_goes_when_the_window_leaves_its_epoch() {
        let (mut tx, mut rx, h) = pair();
        tx.counter = EPOCH - 1;
        let last_old = tx.seal(RecordType::Data, b"old", 0);
        assert_eq!(deliver(&mut rx, &h, last_old).unwrap(), b"old");
        let mut c = EPOCH;
        while rx.window.reaches(EPOCH - 1) {
            tx.counter = c;
            let d = tx.seal(RecordType::Data, b"new", 0);
            assert_eq!(deliver(&mut rx, &h, d).unwrap(), b"new");
            c += 1;
        }
        assert!(c < EPOCH + WINDOW, "the window never left the old epoch");
        assert!(!rx.holds_previous(), "old key kept at counter {}", c - 1);
    }

    /// Forged records claiming the next epoch (bad tags) cost one ratchet
    /// step in all, not one each; the real one then opens under it.
    #[test]
    fn forged_next_epoch_records_ratchet_once() {
        let (mut tx, mut rx, h) = pair();
        tx.counter = EPOCH + 7;
        let real = tx.seal(RecordType::Data, b"real", 0);
        for i in 0..100 {
            let mut forged = real.clone();
            forged[HEADER + 1 + i % 4] ^= 1;
            assert_eq!(deliver(&mut rx, &h, forged), Err(Dropped::Tag));
        }
        assert_eq!(rx.epoch(), 0);
        assert_eq!(deliver(&mut rx, &h, real).unwrap(), b"real");
        assert_eq!(rx.epoch(), 1);
        assert_eq!(rx.steps(), 1);
    }

    #[test]
    fn a_rekey_type_is_a_protocol_error() {
        let (mut tx, mut rx, h) = pair();
        let mut d = tx.seal(RecordType::Rekey, b"", 0);
        let (_, c) = h.open(&d);
        assert!(rx.open(c, &mut d).is_err());
    }
}
