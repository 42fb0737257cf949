//! Whether a ServerHello carries a key share: in TLS 1.3 the one sign on
//! the wire that the handshake ran a fresh key exchange. A resumption
//! without one (psk_ke) has no forward secrecy, and OpenSSL still reports
//! the group of the session it resumed.

/// The random of a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];
const KEY_SHARE: u16 = 51;

/// `message`: a handshake message with its 4-byte header. `None` for a
/// HelloRetryRequest (it says nothing about the final exchange); else
/// whether a key_share extension is present (`false` if it does not parse).
pub(crate) fn key_share(message: &[u8]) -> Option<bool> {
    let mut rest = message.get(4..)?;
    // legacy_version
    rest = rest.get(2..)?;
    let random = rest.get(..32)?;
    if random == HELLO_RETRY_RANDOM {
        return None;
    }
    Some(has_key_share(&rest[32..]).unwrap_or(false))
}

/// From the session id on: whether an extension of type key_share is there.
fn has_key_share(rest: &[u8]) -> Option<bool> {
    let session_id = usize::from(*rest.first()?);
    // session id, cipher suite (2), compression method (1)
    let rest = rest.get(1 + session_id + 3..)?;
    if rest.is_empty() {
        return Some(false);
    }
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let mut extensions = rest.get(2..2 + len)?;
    while !extensions.is_empty() {
        let kind = u16::from_be_bytes([*extensions.first()?, *extensions.get(1)?]);
        let body = usize::from(u16::from_be_bytes([
            *extensions.get(2)?,
            *extensions.get(3)?,
        ]));
        if kind == KEY_SHARE {
            return Some(true);
        }
        extensions = extensions.get(4 + body..)?;
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello(random: [u8; 32], extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&random);
        body.extend_from_slice(&[4, 1, 2, 3, 4]);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut message = vec![2];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    #[test]
    fn key_share_presence_and_hello_retry() {
        let versions: (u16, &[u8]) = (43, &[0x03, 0x04]);
        let share: (u16, &[u8]) = (51, &[0x00, 0x1d, 0x00, 0x01, 0x07]);
        let psk: (u16, &[u8]) = (41, &[0, 0]);
        assert_eq!(
            key_share(&server_hello([7; 32], &[versions, share])),
            Some(true)
        );
        // psk_ke resumption: a pre_shared_key and no key_share.
        assert_eq!(
            key_share(&server_hello([7; 32], &[versions, psk])),
            Some(false)
        );
        assert_eq!(key_share(&server_hello(HELLO_RETRY_RANDOM, &[share])), None);
        // Truncated anywhere: no key share seen, never a panic.
        let whole = server_hello([7; 32], &[versions, share]);
        for len in 0..whole.len() {
            assert_ne!(key_share(&whole[..len]), Some(true), "{len}");
        }
    }
}
