//! The record layer (docs §4): masked lengths, implicit counters, padding, rekeying.

use zeroize::{ZeroizeOnDrop, Zeroizing};

use super::crypto::{hmac, AeadKey, LenMask, TAG_LEN};
use crate::config::MAX_TAIL;
use crate::error::Error;

/// Largest data body in one record.
pub const MAX_DATA: usize = 16384;
/// type(1) ‖ body_len(2).
pub const INNER_HEADER: usize = 3;
/// Smallest ciphertext length `L`.
pub const MIN_RECORD: usize = INNER_HEADER + TAG_LEN;
/// Largest ciphertext length `L`.
pub const MAX_RECORD: usize = INNER_HEADER + MAX_DATA + MAX_TAIL + TAG_LEN;
/// Largest number of records one key may protect (AES-GCM usage bound).
pub const MAX_RECORDS_PER_KEY: u64 = 1 << 24;

/// Record types (inside the encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// Application data.
    Data = 0,
    /// Keepalive ping (8-byte id).
    Ping = 1,
    /// Keepalive pong (echoes the id).
    Pong = 2,
    /// Authenticated close (`code ‖ reason`).
    Close = 3,
    /// The sender switches to the next key after this record.
    Rekey = 4,
}

impl RecordType {
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Data,
            1 => Self::Ping,
            2 => Self::Pong,
            3 => Self::Close,
            4 => Self::Rekey,
            _ => return None,
        })
    }
}

/// Longest close reason (UTF-8 bytes after the code).
pub const MAX_CLOSE_REASON: usize = 200;
/// Ping and pong bodies: the 8-byte id.
pub const PING_LEN: usize = 8;

/// The body sizes of docs §4 for each type: a peer that sends more (a
/// ping of 16 KiB asking for a pong of 16 KiB, say) breaks the protocol.
pub(crate) fn check_body(ty: RecordType, len: usize) -> Result<(), Error> {
    let ok = match ty {
        RecordType::Data => len <= MAX_DATA,
        RecordType::Ping | RecordType::Pong => len == PING_LEN,
        RecordType::Close => (1..=1 + MAX_CLOSE_REASON).contains(&len),
        RecordType::Rekey => len == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Length {
            what: "record body for its type",
            len,
        })
    }
}

/// One direction's keys and counters. Its key bytes are wiped when it is
/// dropped or rekeyed; the AES key schedules live in aws-lc, which wipes
/// them when it frees them.
pub struct Direction {
    key_bytes: Zeroizing<[u8; 32]>,
    key: AeadKey,
    mask: LenMask,
    counter: u64,
    records_this_key: u64,
    bytes_this_key: u64,
}

impl Direction {
    /// From the transport secrets of docs §3.
    pub fn from_keys(key: &[u8; 32], len_key: &[u8; 32]) -> Self {
        Self {
            key: AeadKey::new(key),
            key_bytes: Zeroizing::new(*key),
            mask: LenMask::new(len_key),
            counter: 0,
            records_this_key: 0,
            bytes_this_key: 0,
        }
    }

    /// `key' = HMAC(key, "rekey")`; the counter continues. The old key's
    /// bytes are overwritten and its AES key schedule freed (aws-lc wipes
    /// what it frees), so this direction can no longer open or seal a
    /// record of the old key, and `key'` does not give `key` back.
    pub fn rekey(&mut self) {
        let next = Zeroizing::new(hmac(&self.key_bytes[..], &[b"rekey"]));
        self.key = AeadKey::new(&next);
        *self.key_bytes = *next;
        self.records_this_key = 0;
        self.bytes_this_key = 0;
    }

    /// Whether the sender should send the rekey record now: when only one
    /// record (the rekey record itself) is left of `after_records` under
    /// this key, or `after_bytes` were sealed.
    pub fn rekey_due(&self, after_records: u64, after_bytes: u64) -> bool {
        self.records_this_key + 1 >= after_records || self.bytes_this_key >= after_bytes
    }

    /// Appends one record (`X ‖ C`) to `out`: `body` followed by `pad` zero bytes.
    pub fn seal(&mut self, ty: RecordType, body: &[u8], pad: usize, out: &mut Vec<u8>) {
        debug_assert!(body.len() <= MAX_DATA + 256 && pad <= MAX_TAIL);
        let len = INNER_HEADER + body.len() + pad + TAG_LEN;
        let m = self.mask.mask(self.counter);
        // len <= MAX_RECORD < 2^16, checked by the callers' bounds.
        let x = [(len >> 8) as u8 ^ m[0], len as u8 ^ m[1]];
        out.extend_from_slice(&x);
        let start = out.len();
        out.push(ty as u8);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + pad, 0);
        self.key.seal(self.counter, &x, out, start);
        self.counter += 1;
        self.records_this_key += 1;
        self.bytes_this_key += body.len() as u64;
    }

    /// The AEAD key in force (tests: after a rekey it is not the old one).
    #[cfg(test)]
    fn key_bytes(&self) -> &[u8; 32] {
        &self.key_bytes
    }

    /// Fuzzing only: appends a record (`X ‖ C`) whose whole plaintext (type,
    /// body length, body, padding) is `plaintext`, sealed as the peer would:
    /// a fuzzer reaches the record parsing behind the tag.
    #[doc(hidden)]
    pub fn seal_plaintext(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let len = plaintext.len() + TAG_LEN;
        let m = self.mask.mask(self.counter);
        let x = [(len >> 8) as u8 ^ m[0], len as u8 ^ m[1]];
        out.extend_from_slice(&x);
        let start = out.len();
        out.extend_from_slice(plaintext);
        self.key.seal(self.counter, &x, out, start);
        self.counter += 1;
    }

    /// If `buf` starts with a whole record, its total wire length (2 + L).
    pub fn peek_len(&self, buf: &[u8]) -> Result<Option<usize>, Error> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let m = self.mask.mask(self.counter);
        let len = usize::from(u16::from_be_bytes([buf[0] ^ m[0], buf[1] ^ m[1]]));
        if !(MIN_RECORD..=MAX_RECORD).contains(&len) {
            return Err(Error::Length {
                what: "record",
                len,
            });
        }
        Ok((buf.len() >= 2 + len).then_some(2 + len))
    }

    /// Opens the record `rec` (`X ‖ C`, as sized by `peek_len`) in place.
    /// Returns its type and the range of its body within `rec`.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<(RecordType, std::ops::Range<usize>), Error> {
        if self.records_this_key >= MAX_RECORDS_PER_KEY {
            return Err(Error::Protocol("peer exceeded the record limit of one key"));
        }
        let (x, c) = rec.split_at_mut(2);
        let pt_len = self.key.open(self.counter, x, c)?;
        self.counter += 1;
        self.records_this_key += 1;
        let pt = &c[..pt_len];
        let ty = RecordType::from_u8(pt[0]).ok_or(Error::Malformed("record type"))?;
        let body_len = usize::from(u16::from_be_bytes([pt[1], pt[2]]));
        if body_len > pt_len - INNER_HEADER {
            return Err(Error::Malformed("record body length"));
        }
        check_body(ty, body_len)?;
        self.bytes_this_key += body_len as u64;
        let start = 2 + INNER_HEADER;
        Ok((ty, start..start + body_len))
    }
}

impl ZeroizeOnDrop for Direction {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// After a rekey a direction holds only `key' = HMAC(key, "rekey")`: not
    /// `key`, and it no longer opens a record sealed under `key` (docs §7;
    /// a unit test since `Direction` is the crate's own).
    #[test]
    fn a_rekeyed_direction_holds_no_old_key() {
        let (key, len) = ([3u8; 32], [4u8; 32]);
        let mut sender = Direction::from_keys(&key, &len);
        let mut old = Vec::new();
        sender.seal(RecordType::Data, b"under the old key", 0, &mut old);
        let mut receiver = Direction::from_keys(&key, &len);
        receiver.rekey();
        assert_ne!(receiver.key_bytes(), &key);
        let n = receiver.peek_len(&old).unwrap().unwrap();
        assert!(receiver.open(&mut old[..n]).is_err());
    }

    fn wipes_itself<T: zeroize::ZeroizeOnDrop>() {}

    /// A direction wipes its key bytes when dropped.
    #[test]
    fn a_direction_wipes_itself() {
        wipes_itself::<Direction>();
    }
}
