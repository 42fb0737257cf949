//! The mux frame: a fixed 9-byte header, then a body for DATA only
//! (docs/mux.md). Encoding appends to a buffer; [`Decoder`] is sans-IO:
//! bytes in, whole frames out, and it never holds more than one header and
//! one largest body beyond what the caller last pushed.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `kind (1) | stream (4, big-endian) | value (4, big-endian)`.
pub const HEADER_LEN: usize = 9;

/// The most bytes one DATA frame carries: one TLS record's worth, so a
/// frame never waits for a second record.
pub const MAX_DATA: usize = 16 * 1024;

const OPEN: u8 = 0;
const ACCEPT: u8 = 1;
const DATA: u8 = 2;
const WINDOW: u8 = 3;
const FIN: u8 = 4;
const RESET: u8 = 5;
const PING: u8 = 6;
const PONG: u8 = 7;

/// Why a stream was reset, as carried in a RESET frame's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The sender's end failed or gave up (a TCP reset, a cut at shutdown).
    Aborted,
    /// The server refused the stream: its stream limit is reached.
    Refused,
    /// The server could not reach its service.
    Unreachable,
    /// A code this version does not know (read as aborted).
    Other(u32),
}

impl Reason {
    fn code(self) -> u32 {
        match self {
            Reason::Aborted => 0,
            Reason::Refused => 1,
            Reason::Unreachable => 2,
            Reason::Other(code) => code,
        }
    }

    fn from_code(code: u32) -> Reason {
        match code {
            0 => Reason::Aborted,
            1 => Reason::Refused,
            2 => Reason::Unreachable,
            other => Reason::Other(other),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Aborted => f.write_str("reset by the peer"),
            Reason::Refused => f.write_str("refused by the server: its stream limit is reached"),
            Reason::Unreachable => f.write_str("the server could not reach its service"),
            Reason::Other(code) => write!(f, "reset by the peer (code {code})"),
        }
    }
}

/// One frame. Stream ids are never 0, except on PING and PONG, which are
/// about the connection and always carry stream 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client to server: a new stream, with the initial window both ways.
    Open(u32),
    /// Server to client: the stream's service is connected.
    Accept(u32),
    /// Stream bytes, 1 to [`MAX_DATA`] of them.
    Data(u32, Bytes),
    /// The receiver consumed this many more bytes: the sender may send them.
    Window(u32, u32),
    /// The sender will send no more bytes on this stream (half-close).
    Fin(u32),
    /// The stream is gone both ways.
    Reset(u32, Reason),
    /// Either end: are you there? Answered with a PONG of the same value.
    Ping(u32),
    /// The answer to the PING of this value.
    Pong(u32),
}

/// A frame that breaks docs/mux.md: the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An unknown kind byte.
    #[error("unknown mux frame kind {0}")]
    Kind(u8),
    /// Stream id 0 on a stream's frame.
    #[error("mux frame for stream 0")]
    StreamZero,
    /// PING or PONG for a stream other than 0.
    #[error("mux PING or PONG for stream {0} (0 expected)")]
    PingStream(u32),
    /// DATA with no bytes or more than [`MAX_DATA`].
    #[error("mux DATA frame of {0} bytes (1 to {MAX_DATA} allowed)")]
    DataLength(u32),
    /// WINDOW with a zero increment.
    #[error("mux WINDOW frame with a zero increment")]
    ZeroWindow,
    /// OPEN, ACCEPT or FIN with a nonzero value.
    #[error("mux frame kind {0} with a nonzero value")]
    Value(u8),
}

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let (kind, stream, value) = match self {
            Frame::Open(s) => (OPEN, *s, 0),
            Frame::Accept(s) => (ACCEPT, *s, 0),
            // MAX_DATA fits a u32; the session never makes larger frames.
            Frame::Data(s, data) => (DATA, *s, data.len() as u32),
            Frame::Window(s, credit) => (WINDOW, *s, *credit),
            Frame::Fin(s) => (FIN, *s, 0),
            Frame::Reset(s, reason) => (RESET, *s, reason.code()),
            Frame::Ping(value) => (PING, 0, *value),
            Frame::Pong(value) => (PONG, 0, *value),
        };
        out.reserve(HEADER_LEN);
        out.put_u8(kind);
        out.put_u32(stream);
        out.put_u32(value);
        if let Frame::Data(_, data) = self {
            out.extend_from_slice(data);
        }
    }

    /// The stream the frame is about (0 for the connection's own).
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Ping(_) | Frame::Pong(_) => 0,
            Frame::Open(s)
            | Frame::Accept(s)
            | Frame::Data(s, _)
            | Frame::Window(s, _)
            | Frame::Fin(s)
            | Frame::Reset(s, _) => *s,
        }
    }
}

/// Splits the connection's bytes into frames. Each header is checked
/// before its body is waited for, so a bad length is refused at once.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The buffer to read the connection into (the caller bounds each
    /// read; [`Decoder::next_frame`] drains whole frames).
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole frame (after draining).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `None` until one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = self.buf[0];
        let stream = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let value = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
        if kind > PONG {
            return Err(FrameError::Kind(kind));
        }
        if kind == PING || kind == PONG {
            if stream != 0 {
                return Err(FrameError::PingStream(stream));
            }
            self.buf.advance(HEADER_LEN);
            return Ok(Some(if kind == PING {
                Frame::Ping(value)
            } else {
                Frame::Pong(value)
            }));
        }
        if stream == 0 {
            return Err(FrameError::StreamZero);
        }
        let frame = match kind {
            DATA => {
                if value == 0 || value as usize > MAX_DATA {
                    return Err(FrameError::DataLength(value));
                }
                let len = value as usize;
                if self.buf.len() < HEADER_LEN + len {
                    return Ok(None);
                }
                // A copy, not a view: a stalled stream's chunks must not pin
                // whole read buffers.
                let data = Bytes::copy_from_slice(&self.buf[HEADER_LEN..HEADER_LEN + len]);
                self.buf.advance(HEADER_LEN + len);
                return Ok(Some(Frame::Data(stream, data)));
            }
            WINDOW if value == 0 => return Err(FrameError::ZeroWindow),
            WINDOW => Frame::Window(stream, value),
            RESET => Frame::Reset(stream, Reason::from_code(value)),
            _ if value != 0 => return Err(FrameError::Value(kind)),
            OPEN => Frame::Open(stream),
            ACCEPT => Frame::Accept(stream),
            _ => Frame::Fin(stream),
        };
        self.buf.advance(HEADER_LEN);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(frame: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        out.to_vec()
    }

    /// The vectors of docs/mux.md.
    #[test]
    fn frames_encode_as_documented() {
        let h = |s: &str| hex::decode(s).unwrap();
        assert_eq!(bytes(&Frame::Open(1)), h("000000000100000000"));
        assert_eq!(bytes(&Frame::Accept(1)), h("010000000100000000"));
        assert_eq!(
            bytes(&Frame::Data(1, Bytes::from_static(b"hi"))),
            h("0200000001000000026869")
        );
        assert_eq!(bytes(&Frame::Window(7, 131_072)), h("030000000700020000"));
        assert_eq!(bytes(&Frame::Fin(7)), h("040000000700000000"));
        assert_eq!(
            bytes(&Frame::Reset(0x0102_0304, Reason::Refused)),
            h("050102030400000001")
        );
        assert_eq!(bytes(&Frame::Ping(0x0a0b_0c0d)), h("06000000000a0b0c0d"));
        assert_eq!(bytes(&Frame::Pong(0x0a0b_0c0d)), h("07000000000a0b0c0d"));
    }

    #[test]
    fn every_frame_round_trips_byte_by_byte() {
        let frames = [
            Frame::Open(1),
            Frame::Accept(1),
            Frame::Data(1, Bytes::from(vec![9u8; MAX_DATA])),
            Frame::Window(1, u32::MAX),
            Frame::Fin(u32::MAX),
            Frame::Reset(3, Reason::Other(77)),
            Frame::Reset(3, Reason::Unreachable),
            Frame::Ping(0),
            Frame::Pong(u32::MAX),
        ];
        let mut wire = BytesMut::new();
        frames.iter().for_each(|f| f.encode(&mut wire));
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for byte in wire.iter() {
            decoder.push(&[*byte]);
            while let Some(frame) = decoder.next_frame().unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn bad_headers_are_refused_before_their_body() {
        let cases: [(&str, FrameError); 7] = [
            ("080000000000000000", FrameError::Kind(8)),
            ("060000000100000000", FrameError::PingStream(1)),
            ("000000000000000000", FrameError::StreamZero),
            ("020000000100000000", FrameError::DataLength(0)),
            ("020000000100004001", FrameError::DataLength(16_385)),
            ("030000000100000000", FrameError::ZeroWindow),
            ("040000000100000001", FrameError::Value(4)),
        ];
        for (wire, error) in cases {
            let mut decoder = Decoder::new();
            decoder.push(&hex::decode(wire).unwrap());
            assert_eq!(decoder.next_frame(), Err(error), "{wire}");
        }
    }
}
