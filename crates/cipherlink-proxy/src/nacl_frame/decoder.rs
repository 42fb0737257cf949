//! A sans-IO decoder: bytes in, whole frames out. It performs no I/O and
//! no cryptography, so the relay, the tests and the fuzz target drive it the
//! same way.
//!
//! Memory: the header is kept in a fixed 9-byte array; the frame body is
//! only ever as large as the bytes that actually arrived (never the size
//! the header announced), and a header is checked before any body byte is
//! stored. So a decoder holds at most `9 + 24 + max_data_size` bytes, and
//! one made with [`Decoder::with_first_frame_limit`] at most `9 + 24 +
//! first` until its first frame is out (and, in the relay, authenticated).

use super::frame::{FrameError, Header, HEADER_LEN, NONCE_LEN};

/// Bodies larger than this are not kept between frames: one 16 MiB frame
/// must not pin 16 MiB for the rest of a connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One decoded frame, borrowed from the decoder until the next call.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The 24-byte nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The box ciphertext (16-byte tag, then the encrypted plaintext),
    /// mutable so it can be opened in place.
    pub data: &'a mut [u8],
}

/// Splits a byte stream into v1 frames. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    /// The bound on the frame being received.
    max_data_size: u32,
    /// The bound from the second frame on.
    later_max_data_size: u32,
    header_bytes: [u8; HEADER_LEN],
    header_len: usize,
    header: Option<Header>,
    /// Nonce + data of the frame being received.
    body: Vec<u8>,
    /// The last call returned a frame whose bytes are still lent out.
    returned: bool,
}

impl Decoder {
    /// A decoder that refuses `data_size` above `max_data_size`.
    pub fn new(max_data_size: u32) -> Decoder {
        Decoder::with_first_frame_limit(max_data_size, max_data_size)
    }

    /// A decoder that refuses a first frame with `data_size` above
    /// `first` (at most `max_data_size`), and later frames above
    /// `max_data_size`. The caller opens each frame before it decodes the
    /// next, so the larger bound only applies once a frame authenticated:
    /// someone without the key cannot make us hold more than `first`.
    pub fn with_first_frame_limit(first: u32, max_data_size: u32) -> Decoder {
        Decoder {
            max_data_size: first.min(max_data_size),
            later_max_data_size: max_data_size,
            header_bytes: [0; HEADER_LEN],
            header_len: 0,
            header: None,
            body: Vec::new(),
            returned: false,
        }
    }

    /// Bytes still needed before the next step can complete: the rest of
    /// the header, or (once the header is checked) the rest of the frame.
    pub fn needed(&self) -> usize {
        match self.header {
            None => HEADER_LEN - self.header_len,
            Some(header) if !self.returned => {
                NONCE_LEN + header.data_size as usize - self.body.len()
            }
            Some(_) => HEADER_LEN,
        }
    }

    /// Whether part of a frame is buffered (so an end of stream now would
    /// cut a frame).
    pub fn is_mid_frame(&self) -> bool {
        !self.returned && (self.header_len > 0)
    }

    /// Takes bytes from the front of `input`, at most up to the end of the
    /// current frame, and advances `input` past them. Returns the frame once
    /// it is complete; call again with the rest of `input` for the next one.
    /// An error is final: the stream is not v1, or not one we accept.
    pub fn decode<'s>(&'s mut self, input: &mut &[u8]) -> Result<Option<Frame<'s>>, FrameError> {
        if self.returned {
            self.reset();
        }
        if self.header.is_none() {
            let take = (HEADER_LEN - self.header_len).min(input.len());
            self.header_bytes[self.header_len..self.header_len + take]
                .copy_from_slice(&input[..take]);
            self.header_len += take;
            *input = &input[take..];
            if self.header_len < HEADER_LEN {
                return Ok(None);
            }
            self.header = Some(Header::parse(&self.header_bytes, self.max_data_size)?);
        }
        let Some(header) = self.header else {
            return Ok(None);
        };
        let want = NONCE_LEN + header.data_size as usize;
        let take = (want - self.body.len()).min(input.len());
        self.body.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.body.len() < want {
            return Ok(None);
        }
        self.returned = true;
        self.max_data_size = self.later_max_data_size;
        let (nonce, data) = self.body.split_at_mut(NONCE_LEN);
        let mut fixed = [0u8; NONCE_LEN];
        fixed.copy_from_slice(nonce);
        Ok(Some(Frame { nonce: fixed, data }))
    }

    /// Call at the end of the stream: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if !self.is_mid_frame() {
            return Ok(());
        }
        Err(match self.header {
            None => FrameError::Truncated {
                have: self.header_len,
                need: HEADER_LEN,
            },
            Some(header) => FrameError::Truncated {
                have: HEADER_LEN + self.body.len(),
                need: header.frame_len(),
            },
        })
    }

    /// Frees the body buffer when no frame is in progress, for connections
    /// that go idle (thousands of idle tunnels should cost no buffers).
    pub fn release(&mut self) {
        if !self.is_mid_frame() {
            self.reset();
            self.body = Vec::new();
        }
    }

    fn reset(&mut self) {
        self.header_len = 0;
        self.header = None;
        self.returned = false;
        self.body.clear();
        if self.body.capacity() > KEEP_CAPACITY {
            self.body = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{TAG_LEN, VERSION};
    use super::*;

    fn frame_bytes(nonce: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Header::encode(data.len() as u32).to_vec();
        out.extend_from_slice(&[nonce; NONCE_LEN]);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn frames_split_at_every_byte_boundary_come_out_whole() {
        let mut stream = frame_bytes(7, &[0xaa; TAG_LEN + 3]);
        stream.extend(frame_bytes(8, &[0xbb; TAG_LEN]));
        for cut in 0..=stream.len() {
            let mut decoder = Decoder::new(100);
            let mut seen = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                let mut input = part;
                while !input.is_empty() {
                    if let Some(frame) = decoder.decode(&mut input).unwrap() {
                        seen.push((frame.nonce[0], frame.data.to_vec()));
                    }
                }
            }
            assert_eq!(seen.len(), 2, "cut at {cut}");
            assert_eq!(seen[0], (7, vec![0xaa; TAG_LEN + 3]));
            assert_eq!(seen[1], (8, vec![0xbb; TAG_LEN]));
            assert!(decoder.finish().is_ok());
        }
    }

    #[test]
    fn needed_counts_down_header_then_body() {
        let stream = frame_bytes(1, &[0; TAG_LEN]);
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.needed(), HEADER_LEN);
        let mut input = &stream[..4];
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(decoder.needed(), 5);
        let mut input = &stream[4..HEADER_LEN];
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(decoder.needed(), NONCE_LEN + TAG_LEN);
    }

    #[test]
    fn an_oversize_header_is_refused_before_any_body_is_stored() {
        let mut decoder = Decoder::new(1024);
        let mut header = Header::encode(u32::MAX).to_vec();
        header.extend_from_slice(&[0; 100]);
        let mut input = &header[..];
        let err = decoder.decode(&mut input).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: u32::MAX,
                max: 1024
            }
        );
        assert_eq!(decoder.body.capacity(), 0);
    }

    #[test]
    fn the_first_frame_has_its_own_smaller_bound() {
        let mut decoder = Decoder::with_first_frame_limit(64, 1 << 24);
        // 16 MiB announced first: refused on the header, nothing stored.
        let header = Header::encode(1 << 24);
        let mut input = &header[..];
        assert_eq!(
            decoder.decode(&mut input),
            Err(FrameError::TooLarge {
                size: 1 << 24,
                max: 64
            })
        );
        assert_eq!(decoder.body.capacity(), 0);
        // A small first frame, then a large one is accepted.
        let mut decoder = Decoder::with_first_frame_limit(64, 1 << 24);
        let mut stream = frame_bytes(1, &[0; TAG_LEN]);
        stream.extend(frame_bytes(2, &[0; 1000]));
        let mut input = &stream[..];
        assert!(decoder.decode(&mut input).unwrap().is_some());
        assert_eq!(
            decoder.decode(&mut input).unwrap().unwrap().data.len(),
            1000
        );
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_truncation() {
        let stream = frame_bytes(1, &[0; TAG_LEN + 10]);
        let mut decoder = Decoder::new(100);
        let mut input = &stream[..3];
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated { have: 3, need: 9 })
        );
        let mut input = &stream[3..20];
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                have: 20,
                need: stream.len()
            })
        );
        assert_eq!(stream[0], VERSION);
    }
}
