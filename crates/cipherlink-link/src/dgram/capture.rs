//! Reading a capture of datagram-mode traffic (labs): with the server's
//! public key and each session's exported transport secrets, every
//! datagram is classed as a handshake piece, a cookie reply, msg2, or a
//! record of a known type. Whoever holds those secrets can read and forge
//! the sessions, so nothing writes them anywhere; the chaos lab keeps them
//! in memory for the run.

use super::wire::{
    self, HeaderOpener, COOKIE_REPLY, COOKIE_REPLY_MAX_PAD, EPOCH, HANDSHAKE_DATAGRAM, HEADER,
    MIN_RECORD_DATAGRAM, MSG2_MIN,
};
use crate::proto::crypto::{AeadKey, HmacKey};
use crate::proto::handshake::{self, TransportKeys, MSG1_HEADER};
use crate::proto::record::RecordType;

/// What one captured datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// The first piece of a first message (its MAC verified).
    FirstPiece,
    /// The second piece of a first message seen before.
    SecondPiece,
    /// A server datagram of a cookie reply's size, before any record.
    CookieReply,
    /// A server datagram of msg2's size that is no record.
    Msg2,
    /// A record of a known session, of this type.
    Record(RecordType),
    /// None of these: another session's, damaged, or not this protocol.
    Unknown,
}

struct Known {
    sid: u64,
    s2c_header: HeaderOpener,
    c2s_key: [u8; 32],
    s2c_key: [u8; 32],
}

/// A reader of one capture.
pub struct CaptureReader {
    k_obf: HmacKey,
    c2s_header: HeaderOpener,
    sessions: Vec<Known>,
    piece_marks: Vec<[u8; 16]>,
    unix_secs: u64,
}

impl CaptureReader {
    /// For a server's public key, the sessions' exported secrets, and the
    /// wall clock around the capture (first messages are checked against
    /// its hour window and the two beside it).
    pub fn new(server_public: &[u8; 32], sessions: &[TransportKeys], unix_secs: u64) -> Self {
        let k_obf = HmacKey::new(&handshake::obfs_key(server_public));
        let c2s_header = HeaderOpener::new(&wire::c2s_header_key(&k_obf));
        let sessions = sessions
            .iter()
            .map(|k| {
                let (sid, s2c_hdr) = wire::session_secrets(&k.c2s_len, &k.s2c_len);
                Known {
                    sid,
                    s2c_header: HeaderOpener::new(&s2c_hdr),
                    c2s_key: k.c2s_key,
                    s2c_key: k.s2c_key,
                }
            })
            .collect();
        Self {
            k_obf,
            c2s_header,
            sessions,
            piece_marks: Vec::new(),
            unix_secs,
        }
    }

    /// The kind of the next datagram of the capture (in capture order).
    pub fn classify(&mut self, from_client: bool, datagram: &[u8]) -> DatagramKind {
        if datagram.len() >= MIN_RECORD_DATAGRAM {
            if let Some(ty) = self.record(from_client, datagram) {
                return DatagramKind::Record(ty);
            }
        }
        if from_client {
            if datagram.len() > MSG1_HEADER && datagram.len() <= HANDSHAKE_DATAGRAM {
                if let Ok(Some(h)) =
                    handshake::server_check_header(&self.k_obf, self.unix_secs, datagram)
                {
                    self.piece_marks
                        .push(wire::piece_mark(&self.k_obf, &h.mark));
                    return DatagramKind::FirstPiece;
                }
            }
            if datagram.len() >= 16 && self.piece_marks.iter().any(|m| m[..] == datagram[..16]) {
                return DatagramKind::SecondPiece;
            }
            return DatagramKind::Unknown;
        }
        if (MSG2_MIN..=HANDSHAKE_DATAGRAM).contains(&datagram.len()) {
            return DatagramKind::Msg2;
        }
        if (COOKIE_REPLY..=COOKIE_REPLY + COOKIE_REPLY_MAX_PAD).contains(&datagram.len()) {
            return DatagramKind::CookieReply;
        }
        DatagramKind::Unknown
    }

    fn record(&self, from_client: bool, datagram: &[u8]) -> Option<RecordType> {
        for s in &self.sessions {
            let (opener, key) = if from_client {
                (&self.c2s_header, &s.c2s_key)
            } else {
                (&s.s2c_header, &s.s2c_key)
            };
            let (sid, counter) = opener.open(datagram);
            if sid != s.sid {
                continue;
            }
            return open_type(key, counter, datagram);
        }
        None
    }
}

/// The record type of `datagram` under the first key `key` (ratcheted to
/// its counter's epoch), if its tag verifies.
fn open_type(key: &[u8; 32], counter: u64, datagram: &[u8]) -> Option<RecordType> {
    let mut k = zeroize::Zeroizing::new(*key);
    // Labs run few epochs; a forged far counter costs at most this many steps.
    for _ in 0..(counter / EPOCH).min(64) {
        k = super::records::ratchet(&k);
    }
    let mut buf = datagram.to_vec();
    let (header, sealed) = buf.split_at_mut(HEADER);
    let n = AeadKey::new(&k).open(counter, header, sealed).ok()?;
    RecordType::from_u8(*sealed[..n].first()?).filter(|t| *t != RecordType::Rekey)
}
