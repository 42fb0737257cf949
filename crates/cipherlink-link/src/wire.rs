//! Reading a captured link: which bytes of a direction are its handshake
//! message and what each record after it is, for labs and debugging tools
//! that watch a link's bytes (the chaos lab's packet timelines).
//!
//! Without keys a link's bytes look random: only the sizes below say
//! anything, and only of an unpadded link
//! ([`LinkParams::tail_length`] 0). With a session's [`TransportKeys`]
//! (from [`crate::driver::connect_exporting_keys`] or
//! [`crate::Connection::take_exported_keys`]) a [`RecordReader`] opens
//! every record and says its type. Whoever holds those keys can read and
//! forge every record of that link, which is why only labs export them.
//!
//! [`LinkParams::tail_length`]: crate::LinkParams::tail_length

use std::ops::Range;

use crate::error::Error;
use crate::proto::crypto::TAG_LEN;
use crate::proto::handshake::{C1_MIN, C2_MIN, MSG1_HEADER, MSG2_HEADER};
use crate::proto::record::{Direction, INNER_HEADER, PING_LEN};

pub use crate::proto::handshake::TransportKeys;
pub use crate::proto::RecordType;

/// Which way a direction's bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Client to server: msg1, then the client's records.
    ToServer,
    /// Server to client: msg2, then the server's records.
    ToClient,
}

impl Flow {
    /// Length of the handshake message that starts this direction on an
    /// unpadded link: msg1 (`R_e ‖ M ‖ X1 ‖ C1`) to the server, msg2
    /// (`R_s ‖ X2 ‖ C2a ‖ C2b`) to the client (docs §3). A padded link's
    /// message is longer by a length drawn per link, which its bytes hide.
    pub const fn unpadded_handshake_len(self) -> usize {
        match self {
            Flow::ToServer => MSG1_HEADER + C1_MIN,
            Flow::ToClient => MSG2_HEADER + C2_MIN,
        }
    }
}

/// Wire length of a ping or pong record on an unpadded link: masked length,
/// type and body length, the 8-byte id, tag (docs §4). Every such record
/// has this size, and only a data record of 8 bytes shares it, which lets a
/// reader without keys guess keepalives.
pub const UNPADDED_KEEPALIVE_LEN: usize = 2 + INNER_HEADER + PING_LEN + TAG_LEN;

/// Opens one direction's records in order with a session's exported keys,
/// switching to the next key after a rekey record as the receiver does.
pub struct RecordReader {
    direction: Direction,
}

impl RecordReader {
    /// A reader of `flow`'s records under `keys`, from the first record
    /// after the handshake message.
    pub fn new(keys: &TransportKeys, flow: Flow) -> Self {
        let direction = match flow {
            Flow::ToServer => Direction::from_keys(&keys.c2s_key, &keys.c2s_len),
            Flow::ToClient => Direction::from_keys(&keys.s2c_key, &keys.s2c_len),
        };
        RecordReader { direction }
    }

    /// The record that starts `bytes`: its wire length and type, or `None`
    /// if `bytes` does not hold all of it yet. An error means these bytes
    /// are no record of these keys at this point (another session's keys,
    /// a gap in the capture, or padding); the reader is then of no further
    /// use.
    pub fn next_record(&mut self, bytes: &[u8]) -> Result<Option<(usize, RecordType)>, Error> {
        let Some(len) = self.direction.peek_len(bytes)? else {
            return Ok(None);
        };
        let mut record = bytes[..len].to_vec();
        let (ty, _) = self.direction.open(&mut record)?;
        if ty == RecordType::Rekey {
            self.direction.rekey();
        }
        Ok(Some((len, ty)))
    }
}

/// What a stretch of a direction's bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The handshake message (its unpadded length).
    Handshake,
    /// A record that opened, with its type.
    Record(RecordType),
}

/// One stretch of a direction's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Offsets into the direction's bytes.
    pub range: Range<usize>,
    /// What those bytes are.
    pub part: Part,
}

/// Splits `stream`, every byte of one direction of an unpadded link from
/// its first, into its handshake message and then each record that opens
/// with `keys`, up to the first that does not (bytes of another session,
/// a cut capture, or a padded link's handshake tail). Empty for an empty
/// stream; a stream shorter than the handshake message is all handshake.
pub fn spans(stream: &[u8], flow: Flow, keys: &TransportKeys) -> Vec<Span> {
    let mut spans = Vec::new();
    if stream.is_empty() {
        return spans;
    }
    let mut at = flow.unpadded_handshake_len().min(stream.len());
    spans.push(Span {
        range: 0..at,
        part: Part::Handshake,
    });
    let mut reader = RecordReader::new(keys, flow);
    while let Ok(Some((len, ty))) = reader.next_record(&stream[at..]) {
        spans.push(Span {
            range: at..at + len,
            part: Part::Record(ty),
        });
        at += len;
    }
    spans
}
