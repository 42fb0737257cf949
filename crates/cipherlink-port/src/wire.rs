//! PORT's messages, built and parsed whole (docs/port-wire.md §2). Every
//! random input is an argument, so that test vectors made by SeasideVPN's
//! own code pin the bytes; [`crate::decode`] parses them from a stream.

use zeroize::Zeroizing;

use crate::crypto::{blake2b_256, x25519, x25519_public, SessionKey, NONCE_LEN, OVERHEAD};
use crate::error::Error;
use crate::keys::{PublicKey, ServerKey};

/// Flag of both INIT messages.
pub const FLAG_INIT: u8 = 0x80;
/// Flag of a data message.
pub const FLAG_DATA: u8 = 0x20;
/// Flag of a termination message.
pub const FLAG_TERM: u8 = 0x10;

/// SeasideVPN's client type for a client that is none of its own.
pub const CLIENT_TYPE_CUSTOM: u8 = 0;
/// The client major version we announce (SeasideVPN's servers refuse a
/// client whose major version is below theirs; theirs is 0).
pub const CLIENT_VERSION: u8 = 0;
/// The server INIT status that admits the client.
pub const STATUS_SUCCESS: u8 = 0;

/// `n (2) || masked ephemeral key (32)`.
pub const MASKED_KEY_LEN: usize = 2 + 32;
/// The client INIT's fixed part: masked key, then the sealed `!BBBHH` header.
pub const CLIENT_INIT_HEADER_LEN: usize = MASKED_KEY_LEN + 7 + OVERHEAD;
/// The server INIT's fixed part: the sealed `!BBHH` header.
pub const SERVER_INIT_HEADER_LEN: usize = 6 + OVERHEAD;
/// A data or termination message's fixed part: the sealed `!BHH` header.
pub const MESSAGE_HEADER_LEN: usize = 5 + OVERHEAD;
/// Most plaintext bytes one data message carries (its sealed length is a u16).
pub const MAX_DATA: usize = u16::MAX as usize - OVERHEAD;
/// Longest token a client INIT carries (its sealed length is a u16).
pub const MAX_TOKEN: usize = u16::MAX as usize - OVERHEAD;

/// The random inputs of one client INIT.
#[derive(Clone)]
pub struct ClientInitRandom {
    /// The ephemeral X25519 secret.
    pub ephemeral: Zeroizing<[u8; 32]>,
    /// The 2 bytes hashed with the seed into the key's mask.
    pub n: [u8; 2],
    /// Nonce of the sealed header.
    pub header_nonce: [u8; NONCE_LEN],
    /// Nonce of the sealed token.
    pub token_nonce: [u8; NONCE_LEN],
    /// The random tail.
    pub tail: Vec<u8>,
}

/// What a client INIT's fixed part says.
#[derive(Debug)]
pub struct ClientInitHeader {
    /// The session key it establishes.
    pub session: SessionKey,
    /// SeasideVPN's client type (65 for its Python client, 82 for its Rust one).
    pub client_type: u8,
    /// The client's major version.
    pub client_version: u8,
    /// Bytes of the sealed token that follow.
    pub token_len: usize,
    /// Bytes of tail after the token.
    pub tail_len: usize,
}

/// What a server INIT says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInit {
    /// 0 admits the client.
    pub status: u8,
    /// The port the client reconnects to for data.
    pub user_id: u16,
    /// Bytes of tail that follow.
    pub tail_len: usize,
}

/// The two kinds of message after the INITs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Carries data.
    Data,
    /// Ends the connection.
    Term,
}

/// What a data or termination header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Data or termination.
    pub kind: Kind,
    /// Bytes of sealed data that follow (0 for a termination).
    pub data_len: usize,
    /// Bytes of tail after the data.
    pub tail_len: usize,
}

fn u16_len(what: &'static str, len: usize) -> Result<u16, Error> {
    u16::try_from(len).map_err(|_| Error::Length { what, len })
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

/// The mask of the client's ephemeral key: `BLAKE2b-256(n || seed)`.
fn mask(n: &[u8; 2], seed: &[u8]) -> [u8; 32] {
    blake2b_256(&[n, seed])
}

fn xor32(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// `BLAKE2b-256(shared || ephemeral public || server X25519 public)`.
fn session_key(shared: &[u8; 32], ephemeral: &[u8; 32], server: &[u8; 32]) -> SessionKey {
    SessionKey::from_bytes(blake2b_256(&[shared, ephemeral, server]))
}

/// The client's side of SeasideVPN's `Asymmetric` (shared with TYPHOON,
/// whose INIT seals its body whole after the same masked key): the session
/// key, the ephemeral public key (the body's associated data) and
/// `n || masked ephemeral key`.
pub fn mask_ephemeral(
    server: &PublicKey,
    ephemeral: &[u8; 32],
    n: &[u8; 2],
) -> Result<(SessionKey, [u8; 32], [u8; MASKED_KEY_LEN]), Error> {
    let eph_public = x25519_public(ephemeral);
    let shared = x25519(ephemeral, &server.key).ok_or(Error::WeakKey)?;
    let session = session_key(&shared, &eph_public, &server.key);
    let mut masked = [0u8; MASKED_KEY_LEN];
    masked[..2].copy_from_slice(n);
    masked[2..].copy_from_slice(&xor32(&eph_public, &mask(n, &server.seed)));
    Ok((session, eph_public, masked))
}

/// The server's side of [`mask_ephemeral`]: the session key and the
/// client's ephemeral public key.
pub fn unmask_ephemeral(
    key: &ServerKey,
    masked: &[u8; MASKED_KEY_LEN],
) -> Result<(SessionKey, [u8; 32]), Error> {
    let n = [masked[0], masked[1]];
    let eph_public = xor32(&masked[2..], &mask(&n, &key.public().seed));
    let shared = x25519(key.secret(), &eph_public).ok_or(Error::WeakKey)?;
    let session = session_key(&shared, &eph_public, &key.public().key);
    Ok((session, eph_public))
}

/// Builds a client INIT: the session key and the bytes to send.
pub fn client_init(
    server: &PublicKey,
    token: &[u8],
    client_type: u8,
    client_version: u8,
    r: &ClientInitRandom,
) -> Result<(SessionKey, Vec<u8>), Error> {
    let token_len = u16_len("token", token.len() + OVERHEAD)?;
    let tail_len = u16_len("tail", r.tail.len())?;
    let (session, eph_public, masked) = mask_ephemeral(server, &r.ephemeral, &r.n)?;
    let mut out =
        Vec::with_capacity(CLIENT_INIT_HEADER_LEN + token.len() + OVERHEAD + r.tail.len());
    out.extend_from_slice(&masked);
    let mut header = [0u8; 7];
    header[0] = FLAG_INIT;
    header[1] = client_type;
    header[2] = client_version;
    header[3..5].copy_from_slice(&token_len.to_be_bytes());
    header[5..7].copy_from_slice(&tail_len.to_be_bytes());
    session.seal_into(&r.header_nonce, &header, &eph_public, &mut out);
    session.seal_into(&r.token_nonce, token, &[], &mut out);
    out.extend_from_slice(&r.tail);
    Ok((session, out))
}

/// Parses a client INIT's fixed part with the server's key.
pub fn parse_client_init_header(
    key: &ServerKey,
    header: &[u8; CLIENT_INIT_HEADER_LEN],
) -> Result<ClientInitHeader, Error> {
    let (masked, sealed) = header.split_at(MASKED_KEY_LEN);
    let mut m = [0u8; MASKED_KEY_LEN];
    m.copy_from_slice(masked);
    let (session, eph_public) = unmask_ephemeral(key, &m)?;
    let plain = session.open(sealed, &eph_public, "client INIT header")?;
    if plain[0] != FLAG_INIT {
        return Err(Error::Flag {
            what: "client INIT",
            flag: plain[0],
            expected: "INIT (0x80)",
        });
    }
    let token_len = be16(&plain[3..5]);
    if token_len < OVERHEAD {
        return Err(Error::Length {
            what: "client INIT token",
            len: token_len,
        });
    }
    Ok(ClientInitHeader {
        session,
        client_type: plain[1],
        client_version: plain[2],
        token_len,
        tail_len: be16(&plain[5..7]),
    })
}

/// Builds a server INIT.
pub fn server_init(
    session: &SessionKey,
    status: u8,
    user_id: u16,
    nonce: &[u8; NONCE_LEN],
    tail: &[u8],
) -> Result<Vec<u8>, Error> {
    let tail_len = u16_len("tail", tail.len())?;
    let mut header = [0u8; 6];
    header[0] = FLAG_INIT;
    header[1] = status;
    header[2..4].copy_from_slice(&user_id.to_be_bytes());
    header[4..6].copy_from_slice(&tail_len.to_be_bytes());
    let mut out = Vec::with_capacity(SERVER_INIT_HEADER_LEN + tail.len());
    session.seal_into(nonce, &header, &[], &mut out);
    out.extend_from_slice(tail);
    Ok(out)
}

/// Parses a server INIT's fixed part (any status: the caller decides).
pub fn parse_server_init(
    session: &SessionKey,
    header: &[u8; SERVER_INIT_HEADER_LEN],
) -> Result<ServerInit, Error> {
    let plain = session.open(header, &[], "server INIT")?;
    if plain[0] != FLAG_INIT {
        return Err(Error::Flag {
            what: "server INIT",
            flag: plain[0],
            expected: "INIT (0x80)",
        });
    }
    Ok(ServerInit {
        status: plain[1],
        user_id: u16::from_be_bytes([plain[2], plain[3]]),
        tail_len: be16(&plain[4..6]),
    })
}

/// Builds a data message: sealed header, sealed data, tail.
pub fn data(
    session: &SessionKey,
    payload: &[u8],
    header_nonce: &[u8; NONCE_LEN],
    data_nonce: &[u8; NONCE_LEN],
    tail: &[u8],
) -> Result<Vec<u8>, Error> {
    let data_len = u16_len("data", payload.len() + OVERHEAD)?;
    let mut out = Vec::with_capacity(MESSAGE_HEADER_LEN + payload.len() + OVERHEAD + tail.len());
    seal_header(session, FLAG_DATA, data_len, tail, header_nonce, &mut out)?;
    session.seal_into(data_nonce, payload, &[], &mut out);
    out.extend_from_slice(tail);
    Ok(out)
}

/// Builds a termination message: sealed header (data length 0), tail.
pub fn term(session: &SessionKey, nonce: &[u8; NONCE_LEN], tail: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(MESSAGE_HEADER_LEN + tail.len());
    seal_header(session, FLAG_TERM, 0, tail, nonce, &mut out)?;
    out.extend_from_slice(tail);
    Ok(out)
}

fn seal_header(
    session: &SessionKey,
    flag: u8,
    data_len: u16,
    tail: &[u8],
    nonce: &[u8; NONCE_LEN],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let tail_len = u16_len("tail", tail.len())?;
    let mut header = [0u8; 5];
    header[0] = flag;
    header[1..3].copy_from_slice(&data_len.to_be_bytes());
    header[3..5].copy_from_slice(&tail_len.to_be_bytes());
    session.seal_into(nonce, &header, &[], out);
    Ok(())
}

/// Parses a data or termination header.
pub fn parse_message_header(
    session: &SessionKey,
    header: &[u8; MESSAGE_HEADER_LEN],
) -> Result<MessageHeader, Error> {
    let plain = session.open(header, &[], "message header")?;
    let kind = match plain[0] {
        FLAG_DATA => Kind::Data,
        FLAG_TERM => Kind::Term,
        flag => {
            return Err(Error::Flag {
                what: "message header",
                flag,
                expected: "DATA (0x20) or TERM (0x10)",
            })
        }
    };
    let data_len = be16(&plain[1..3]);
    // SeasideVPN reads no data after a termination, whatever its length says.
    if kind == Kind::Data && data_len < OVERHEAD {
        return Err(Error::Length {
            what: "message data",
            len: data_len,
        });
    }
    Ok(MessageHeader {
        kind,
        data_len: if kind == Kind::Data { data_len } else { 0 },
        tail_len: be16(&plain[3..5]),
    })
}
