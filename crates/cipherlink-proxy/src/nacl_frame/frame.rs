//! The v1 frame's fixed header, byte by byte (docs/v1-frame.md, section
//! "Frame"): `version u8 | nonce_size u32 | data_size u32`, big-endian, the
//! layout of Python's `struct.pack('!BII', ...)`.

/// The only version this crate speaks.
pub const VERSION: u8 = 1;
/// Header length: 1 + 4 + 4.
pub const HEADER_LEN: usize = 9;
/// XSalsa20's nonce length; the only `nonce_size` accepted.
pub const NONCE_LEN: usize = 24;
/// Poly1305's tag length: the smallest possible `data_size` (an empty plaintext).
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// The default bound on `data_size`: 64 KiB of plaintext plus the tag, the
/// largest frame our own sender makes with the largest buffer it is given
/// under this bound, and what an asyncio peer reading 64 KiB at a time sends.
pub const DEFAULT_MAX_DATA_SIZE: u32 = 64 * 1024 + TAG_LEN as u32;
/// The bound on the first frame of a connection, whatever `max_frame_size`
/// says: before a frame has authenticated, a peer may not make us hold more
/// than this (docs/v1-frame.md, "Memory").
pub const MAX_FIRST_DATA_SIZE: u32 = DEFAULT_MAX_DATA_SIZE;
/// The largest `max_frame_size` a service accepts (16 MiB of plaintext).
pub const LIMIT_MAX_DATA_SIZE: u32 = 16 * 1024 * 1024 + TAG_LEN as u32;

/// Why bytes from a peer are not a v1 frame. Each names the field at fault
/// and the value seen, so a log line explains the rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// `version` is not 1.
    #[error("v1 frame: version {0} is not supported (only 1)")]
    Version(u8),
    /// `nonce_size` is not 24.
    #[error("v1 frame: nonce size {0} is not 24 (XSalsa20-Poly1305 nonces are 24 bytes)")]
    NonceSize(u32),
    /// `data_size` is above the configured bound.
    #[error("v1 frame: data size {size} is over the limit of {max} bytes (max_frame_size)")]
    TooLarge {
        /// What the header announced.
        size: u32,
        /// The configured bound.
        max: u32,
    },
    /// `data_size` cannot even hold the 16-byte Poly1305 tag.
    #[error("v1 frame: data size {0} is under 16, the size of the authentication tag alone")]
    TooSmall(u32),
    /// The stream ended inside a frame.
    #[error("v1 stream ended inside a frame: {have} of {need} bytes received")]
    Truncated {
        /// Bytes of the frame received.
        have: usize,
        /// Bytes the frame needed (header, then header + nonce + data once known).
        need: usize,
    },
}

/// A checked header: `nonce_size` is 24 and `data_size` is within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the box ciphertext (tag + encrypted plaintext) after the nonce.
    pub data_size: u32,
}

impl Header {
    /// Checks the nine header bytes against `max_data_size`, in wire order,
    /// so the first bad field is the one reported.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_data_size: u32) -> Result<Header, FrameError> {
        let version = bytes[0];
        let nonce_size = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let data_size = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if nonce_size as usize != NONCE_LEN {
            return Err(FrameError::NonceSize(nonce_size));
        }
        if data_size > max_data_size {
            return Err(FrameError::TooLarge {
                size: data_size,
                max: max_data_size,
            });
        }
        if (data_size as usize) < TAG_LEN {
            return Err(FrameError::TooSmall(data_size));
        }
        Ok(Header { data_size })
    }

    /// The header for a box ciphertext of `data_size` bytes.
    pub fn encode(data_size: u32) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1..5].copy_from_slice(&(NONCE_LEN as u32).to_be_bytes());
        out[5..9].copy_from_slice(&data_size.to_be_bytes());
        out
    }

    /// Header + nonce + data: the whole frame's length.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + NONCE_LEN + self.data_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_struct_bii_big_endian() {
        assert_eq!(Header::encode(0x0102_0304), [1, 0, 0, 0, 24, 1, 2, 3, 4]);
    }

    #[test]
    fn each_field_is_checked_in_wire_order() {
        let max = 1000;
        let parse = |b: [u8; 9]| Header::parse(&b, max);
        assert_eq!(
            parse([2, 0, 0, 0, 24, 0, 0, 0, 16]),
            Err(FrameError::Version(2))
        );
        assert_eq!(
            parse([0, 0, 0, 0, 12, 0, 0, 0, 16]),
            Err(FrameError::Version(0))
        );
        assert_eq!(
            parse([1, 0, 0, 0, 12, 0, 0, 0, 16]),
            Err(FrameError::NonceSize(12))
        );
        assert_eq!(
            parse([1, 0, 0, 0, 24, 0, 0, 3, 233]),
            Err(FrameError::TooLarge { size: 1001, max })
        );
        assert_eq!(
            parse([1, 0, 0, 0, 24, 0, 0, 0, 15]),
            Err(FrameError::TooSmall(15))
        );
        assert_eq!(
            parse([1, 0, 0, 0, 24, 0, 0, 3, 232]),
            Ok(Header { data_size: 1000 })
        );
    }
}
