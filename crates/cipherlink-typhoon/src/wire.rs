//! TYPHOON's datagrams, built and parsed whole (docs/typhoon-wire.md §2).
//! Every random input is an argument, so that vectors made by SeasideVPN's
//! own code pin the bytes. Parsing never allocates more than the datagram
//! it was given, and refuses anything SeasideVPN's builders cannot make.
//!
//! Every datagram is one XChaCha20-Poly1305 box, `nonce(24) || ct || tag(16)`,
//! whose plaintext is a big-endian header, a body and a tail of zeros:
//!
//! | message | header | body |
//! |---|---|---|
//! | client INIT | `!BIBBIH` flag, packet number, client type, version, next_in, tail | token |
//! | server INIT | `!BIBHIH` flag, packet number, status, user id, next_in, tail | – |
//! | HDSK (±DATA) | `!BIIH` flags, packet number, next_in, tail | data |
//! | DATA, TERM | `!BH` flag, tail | data (none for TERM) |
//!
//! The client INIT is preceded by PORT's masked ephemeral key and sealed
//! with the ephemeral public key as associated data.

use cipherlink_port::crypto::{NONCE_LEN, OVERHEAD};
use cipherlink_port::wire::{mask_ephemeral, unmask_ephemeral, MASKED_KEY_LEN};
use cipherlink_port::{PublicKey, ServerKey, SessionKey};
use zeroize::Zeroizing;

use crate::error::Error;

/// Flag of both INITs.
pub const FLAG_INIT: u8 = 0x80;
/// Flag of a handshake (keepalive).
pub const FLAG_HDSK: u8 = 0x40;
/// Flag of data (alone, or with [`FLAG_HDSK`]).
pub const FLAG_DATA: u8 = 0x20;
/// Flag of a termination.
pub const FLAG_TERM: u8 = 0x10;

/// SeasideVPN's client types (`ProtocolTypes`); its server refuses others.
pub const CLIENT_TYPES: [u8; 3] = [CLIENT_TYPE_CUSTOM, 65, 82];
/// The client type we announce: none of SeasideVPN's own.
pub const CLIENT_TYPE_CUSTOM: u8 = 0;
/// The client major version we announce (SeasideVPN refuses one below its
/// own, which is 0).
pub const CLIENT_VERSION: u8 = 0;
/// The server INIT status that admits the client.
pub const STATUS_SUCCESS: u8 = 0;

/// Client INIT header bytes (`!BIBBIH`).
pub const CLIENT_INIT_HEADER: usize = 13;
/// Server INIT header bytes (`!BIBHIH`).
pub const SERVER_INIT_HEADER: usize = 14;
/// Handshake header bytes (`!BIIH`).
pub const HDSK_HEADER: usize = 11;
/// Data and termination header bytes (`!BH`).
pub const OTHER_HEADER: usize = 3;
/// The largest datagram sent or read: what one IPv4 UDP datagram holds.
pub const MAX_DATAGRAM: usize = 65_507;
/// Most data bytes one message carries (as a handshake, with a 1-byte tail).
pub const MAX_DATA: usize = MAX_DATAGRAM - OVERHEAD - HDSK_HEADER - 1;
/// Longest token a client INIT carries (with a 1-byte tail).
pub const MAX_TOKEN: usize = MAX_DATAGRAM - MASKED_KEY_LEN - OVERHEAD - CLIENT_INIT_HEADER - 1;

/// The random inputs of one sealed message: its nonce and tail length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pad {
    /// The XChaCha20 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Bytes of zero tail.
    pub tail: usize,
}

/// The random inputs of a client INIT beyond its [`Pad`].
pub struct ClientInitRandom {
    /// The ephemeral X25519 secret.
    pub ephemeral: Zeroizing<[u8; 32]>,
    /// The 2 bytes hashed with the seed into the key's mask.
    pub n: [u8; 2],
}

/// What a client INIT says.
#[derive(Debug)]
pub struct ClientInit {
    /// The session key it establishes.
    pub session: SessionKey,
    /// Chosen by the client; the server INIT echoes it.
    pub packet_number: u32,
    /// SeasideVPN's client type (one of [`CLIENT_TYPES`]).
    pub client_type: u8,
    /// The client's major version.
    pub client_version: u8,
    /// When the client wants the server INIT, in ms.
    pub next_in: u32,
    /// The token (wiped when dropped).
    pub token: Zeroizing<Vec<u8>>,
    /// Bytes of the datagram it came in: the server INIT answering it
    /// (sent to an address anyone can forge) is never longer.
    pub len: usize,
}

/// What a server INIT says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInit {
    /// The client INIT's packet number, echoed.
    pub packet_number: u32,
    /// 0 admits the client.
    pub status: u8,
    /// The UDP port the client sends to from now on.
    pub user_id: u16,
    /// When the server wants the client's first handshake, in ms.
    pub next_in: u32,
}

/// A message after the INITs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A handshake, with data riding on it or not.
    Hdsk {
        /// Chosen by the client; the server's handshake echoes it.
        packet_number: u32,
        /// When the sender wants the next handshake, in ms.
        next_in: u32,
        /// The data, when the HDSK|DATA flags were set.
        data: Option<Vec<u8>>,
    },
    /// Data.
    Data(Vec<u8>),
    /// The sender ended the session.
    Term,
}

fn tail_room(what: &'static str, fixed: usize, body: usize, tail: usize) -> Result<(), Error> {
    let len = fixed + OVERHEAD + body + tail;
    if tail > usize::from(u16::MAX) || len > MAX_DATAGRAM {
        return Err(Error::TooLong {
            what,
            len,
            max: MAX_DATAGRAM,
        });
    }
    Ok(())
}

/// Seals `header || body || zeros(tail)` into `out`.
fn seal(key: &SessionKey, pad: &Pad, header: &[u8], body: &[u8], ad: &[u8], out: &mut Vec<u8>) {
    let mut plain = Zeroizing::new(Vec::with_capacity(header.len() + body.len() + pad.tail));
    plain.extend_from_slice(header);
    plain.extend_from_slice(body);
    plain.resize(header.len() + body.len() + pad.tail, 0);
    key.seal_into(&pad.nonce, &plain, ad, out);
}

/// Opens a box; `None` for anything that does not authenticate.
fn open(key: &SessionKey, packet: &[u8], ad: &[u8], min: usize) -> Option<Zeroizing<Vec<u8>>> {
    if packet.len() < OVERHEAD + min || packet.len() > MAX_DATAGRAM {
        return None;
    }
    key.open(packet, ad, "TYPHOON").ok().map(Zeroizing::new)
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The body between a header and its tail, when the tail fits.
fn body(plain: &[u8], header: usize, tail_at: usize) -> Option<&[u8]> {
    let tail = be16(&plain[tail_at..tail_at + 2]);
    plain.get(header..plain.len().checked_sub(tail)?)
}

/// Builds a client INIT: the session key and the datagram.
#[allow(clippy::too_many_arguments)] // every input SeasideVPN draws, for the vectors
pub fn client_init(
    server: &PublicKey,
    r: &ClientInitRandom,
    pad: &Pad,
    packet_number: u32,
    client_type: u8,
    client_version: u8,
    next_in: u32,
    token: &[u8],
) -> Result<(SessionKey, Vec<u8>), Error> {
    tail_room(
        "client INIT",
        MASKED_KEY_LEN + CLIENT_INIT_HEADER,
        token.len(),
        pad.tail,
    )?;
    let (session, eph_public, masked) =
        mask_ephemeral(server, &r.ephemeral, &r.n).map_err(|_| Error::WeakKey)?;
    let mut h = [0u8; CLIENT_INIT_HEADER];
    h[0] = FLAG_INIT;
    h[1..5].copy_from_slice(&packet_number.to_be_bytes());
    h[5] = client_type;
    h[6] = client_version;
    h[7..11].copy_from_slice(&next_in.to_be_bytes());
    h[11..13].copy_from_slice(&(pad.tail as u16).to_be_bytes());
    let mut out = Vec::with_capacity(MASKED_KEY_LEN + OVERHEAD + h.len() + token.len() + pad.tail);
    out.extend_from_slice(&masked);
    seal(&session, pad, &h, token, &eph_public, &mut out);
    Ok((session, out))
}

/// Parses a client INIT with the server's key (the costliest parse: one
/// X25519 and one AEAD over at most [`MAX_DATAGRAM`] bytes).
pub fn parse_client_init(key: &ServerKey, packet: &[u8]) -> Result<ClientInit, Error> {
    const W: &str = "client INIT";
    if packet.len() < MASKED_KEY_LEN + OVERHEAD + CLIENT_INIT_HEADER {
        return Err(Error::Malformed(W));
    }
    let (m, sealed) = packet.split_at(MASKED_KEY_LEN);
    let mut masked = [0u8; MASKED_KEY_LEN];
    masked.copy_from_slice(m);
    let (session, eph_public) = unmask_ephemeral(key, &masked).map_err(|_| Error::WeakKey)?;
    let plain =
        open(&session, sealed, &eph_public, CLIENT_INIT_HEADER).ok_or(Error::Malformed(W))?;
    // SeasideVPN refuses a version below its own major version, 0: every
    // version passes, so only the flag and the type are checked.
    if plain[0] != FLAG_INIT || !CLIENT_TYPES.contains(&plain[5]) {
        return Err(Error::Malformed(W));
    }
    let token = body(&plain, CLIENT_INIT_HEADER, 11).ok_or(Error::Malformed(W))?;
    Ok(ClientInit {
        packet_number: be32(&plain[1..5]),
        client_type: plain[5],
        client_version: plain[6],
        next_in: be32(&plain[7..11]),
        token: Zeroizing::new(token.to_vec()),
        session,
        len: packet.len(),
    })
}

/// Builds a server INIT.
pub fn server_init(key: &SessionKey, pad: &Pad, init: &ServerInit) -> Result<Vec<u8>, Error> {
    tail_room("server INIT", SERVER_INIT_HEADER, 0, pad.tail)?;
    let mut h = [0u8; SERVER_INIT_HEADER];
    h[0] = FLAG_INIT;
    h[1..5].copy_from_slice(&init.packet_number.to_be_bytes());
    h[5] = init.status;
    h[6..8].copy_from_slice(&init.user_id.to_be_bytes());
    h[8..12].copy_from_slice(&init.next_in.to_be_bytes());
    h[12..14].copy_from_slice(&(pad.tail as u16).to_be_bytes());
    let mut out = Vec::with_capacity(OVERHEAD + h.len() + pad.tail);
    seal(key, pad, &h, &[], &[], &mut out);
    Ok(out)
}

/// Parses a server INIT (any status: the caller decides). Like
/// SeasideVPN, reads the header and ignores what follows it.
pub fn parse_server_init(key: &SessionKey, packet: &[u8]) -> Result<ServerInit, Error> {
    const W: &str = "server INIT";
    let plain = open(key, packet, &[], SERVER_INIT_HEADER).ok_or(Error::Malformed(W))?;
    if plain[0] != FLAG_INIT {
        return Err(Error::Malformed(W));
    }
    Ok(ServerInit {
        packet_number: be32(&plain[1..5]),
        status: plain[5],
        user_id: u16::from_be_bytes([plain[6], plain[7]]),
        next_in: be32(&plain[8..12]),
    })
}

/// Builds a handshake; with `data`, the HDSK|DATA message that rides on it.
pub fn hdsk(
    key: &SessionKey,
    pad: &Pad,
    packet_number: u32,
    next_in: u32,
    data: Option<&[u8]>,
) -> Result<Vec<u8>, Error> {
    let body = data.unwrap_or_default();
    tail_room("handshake", HDSK_HEADER, body.len(), pad.tail)?;
    let mut h = [0u8; HDSK_HEADER];
    h[0] = if data.is_some() {
        FLAG_HDSK | FLAG_DATA
    } else {
        FLAG_HDSK
    };
    h[1..5].copy_from_slice(&packet_number.to_be_bytes());
    h[5..9].copy_from_slice(&next_in.to_be_bytes());
    h[9..11].copy_from_slice(&(pad.tail as u16).to_be_bytes());
    let mut out = Vec::with_capacity(OVERHEAD + h.len() + body.len() + pad.tail);
    seal(key, pad, &h, body, &[], &mut out);
    Ok(out)
}

/// Builds a data message.
pub fn data(key: &SessionKey, pad: &Pad, payload: &[u8]) -> Result<Vec<u8>, Error> {
    other(key, pad, FLAG_DATA, payload)
}

/// Builds a termination.
pub fn term(key: &SessionKey, pad: &Pad) -> Result<Vec<u8>, Error> {
    other(key, pad, FLAG_TERM, &[])
}

fn other(key: &SessionKey, pad: &Pad, flag: u8, body: &[u8]) -> Result<Vec<u8>, Error> {
    tail_room("message", OTHER_HEADER, body.len(), pad.tail)?;
    let mut h = [0u8; OTHER_HEADER];
    h[0] = flag;
    h[1..3].copy_from_slice(&(pad.tail as u16).to_be_bytes());
    let mut out = Vec::with_capacity(OVERHEAD + h.len() + body.len() + pad.tail);
    seal(key, pad, &h, body, &[], &mut out);
    Ok(out)
}

/// Parses a handshake, data or termination message (either direction).
pub fn parse_message(key: &SessionKey, packet: &[u8]) -> Result<Message, Error> {
    const W: &str = "message";
    let plain = open(key, packet, &[], 1).ok_or(Error::Malformed(W))?;
    let flags = plain[0];
    match flags {
        FLAG_TERM => Ok(Message::Term),
        FLAG_DATA => {
            if plain.len() < OTHER_HEADER {
                return Err(Error::Malformed(W));
            }
            let b = body(&plain, OTHER_HEADER, 1).ok_or(Error::Malformed(W))?;
            Ok(Message::Data(b.to_vec()))
        }
        f if f == FLAG_HDSK || f == FLAG_HDSK | FLAG_DATA => {
            if plain.len() < HDSK_HEADER {
                return Err(Error::Malformed(W));
            }
            let b = body(&plain, HDSK_HEADER, 9).ok_or(Error::Malformed(W))?;
            Ok(Message::Hdsk {
                packet_number: be32(&plain[1..5]),
                next_in: be32(&plain[5..9]),
                data: (f & FLAG_DATA != 0).then(|| b.to_vec()),
            })
        }
        _ => Err(Error::Malformed(W)),
    }
}
