//! The header in front of every datagram between the two ends of a UDP
//! service, inside the transport's encryption (none for `plain`):
//!
//! ```text
//!   kind (1 byte, 0 = data) || flow id (4 bytes, big-endian) || the application's datagram
//! ```
//!
//! The flow id is the client end's name for one application source
//! address; the server end keeps one socket to the service per (session,
//! flow id). Other kinds are reserved and dropped.

/// Bytes of the header.
pub const HEADER_LEN: usize = 5;

/// The only kind defined: an application datagram.
const KIND_DATA: u8 = 0;

/// Why a message from the other end was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than the header.
    #[error("{0} bytes, shorter than the {HEADER_LEN}-byte flow header")]
    Short(usize),
    /// A kind this version does not know.
    #[error("unknown message kind {0}")]
    Kind(u8),
}

/// `payload` behind the header of `flow`, as one message.
pub fn encode(flow: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER_LEN + payload.len());
    write(flow, &mut message);
    message.extend_from_slice(payload);
    message
}

/// Appends the header of `flow` to `out`.
pub fn write(flow: u32, out: &mut Vec<u8>) {
    out.push(KIND_DATA);
    out.extend_from_slice(&flow.to_be_bytes());
}

/// The flow id and the application's datagram of one message.
pub fn decode(message: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    let Some((head, payload)) = message.split_first_chunk::<HEADER_LEN>() else {
        return Err(HeaderError::Short(message.len()));
    };
    if head[0] != KIND_DATA {
        return Err(HeaderError::Kind(head[0]));
    }
    let flow = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    Ok((flow, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_decodes_to_its_flow_and_payload() {
        let m = encode(0x0102_0304, b"query");
        assert_eq!(&m[..HEADER_LEN], &[0, 1, 2, 3, 4]);
        assert_eq!(decode(&m), Ok((0x0102_0304, &b"query"[..])));
        assert_eq!(decode(&encode(7, b"")), Ok((7, &b""[..])));
    }

    #[test]
    fn short_and_unknown_messages_are_refused() {
        assert_eq!(decode(&[0, 0, 0, 1]), Err(HeaderError::Short(4)));
        assert_eq!(decode(&[]), Err(HeaderError::Short(0)));
        assert_eq!(decode(&[9, 0, 0, 0, 1, 2]), Err(HeaderError::Kind(9)));
    }
}
