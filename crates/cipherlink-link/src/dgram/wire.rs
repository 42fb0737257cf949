//! The datagram mode's bytes (docs §11): sizes, the encrypted header of a
//! record datagram, the two pieces of a first message, the cookie mark and
//! the cookie reply. Everything here is a pure function of keys and bytes.

use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_256,
};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::proto::crypto::{ct_eq, hmac, AeadKey, HmacKey, TAG_LEN};
use crate::proto::handshake::{C1_MIN, C2_MIN, MSG1_HEADER, MSG2_HEADER};
use crate::proto::Entropy;

/// Every handshake datagram (both pieces of msg1, msg2, a cookie reply) is
/// at most this long: QUIC's smallest datagram every path must carry.
pub const HANDSHAKE_DATAGRAM: usize = 1200;
/// `M1 ‖ Q` in front of msg1's second piece.
pub const PIECE1_HEADER: usize = 32;
/// msg1's padding is capped so that both pieces fit [`HANDSHAKE_DATAGRAM`].
pub const MSG1_MAX_PAD: usize = 2 * HANDSHAKE_DATAGRAM - MSG1_HEADER - PIECE1_HEADER - C1_MIN;
/// msg2's padding is capped so that it fits one [`HANDSHAKE_DATAGRAM`].
pub const MSG2_MAX_PAD: usize = HANDSHAKE_DATAGRAM - MSG2_HEADER - C2_MIN;
/// The shortest msg2 datagram.
pub const MSG2_MIN: usize = MSG2_HEADER + C2_MIN;
/// The encrypted header of a record datagram: `AES(K_hdr, sid ‖ counter)`.
pub const HEADER: usize = 16;
/// type(1) ‖ body_len(2).
pub const INNER_HEADER: usize = 3;
/// The shortest record datagram.
pub const MIN_RECORD_DATAGRAM: usize = HEADER + INNER_HEADER + TAG_LEN;
/// The longest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest data body one datagram carries.
pub const MAX_DATA: usize = MAX_DATAGRAM - MIN_RECORD_DATAGRAM;
/// Padding never makes a record datagram longer than this (a 1,500-byte
/// MTU less IPv6 and UDP headers) unless it already was.
pub const PAD_CEILING: usize = 1452;
/// A cookie reply: `n(8) ‖ ENC(K_c, n, M, cookie(16))`, then random bytes.
pub const COOKIE_REPLY: usize = 8 + 16 + TAG_LEN;
/// Random bytes after a cookie reply, at most.
pub const COOKIE_REPLY_MAX_PAD: usize = 64;
/// Records under one key: the key of counter `c` is the `c / EPOCH`-th
/// ratchet step of the first (AES-GCM's usage bound with room to spare).
pub const EPOCH: u64 = 1 << 20;

/// `K_hdr = HMAC(K_obf, "dgram hdr")`: the key of client-to-server headers,
/// shared by every client of the server (as `K_obf` is), so the server
/// finds a session before it knows which one.
pub fn c2s_header_key(k_obf: &HmacKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(k_obf.mac(&[b"dgram hdr"]))
}

/// A session's id and server-to-client header key, from the transport
/// secrets of §3 (whose length keys datagram mode has no other use for).
pub fn session_secrets(c2s_len: &[u8; 32], s2c_len: &[u8; 32]) -> (u64, Zeroizing<[u8; 32]>) {
    let sid = hmac(c2s_len, &[b"sid"]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&sid[..8]);
    (
        u64::from_be_bytes(id),
        Zeroizing::new(hmac(s2c_len, &[b"hdr"])),
    )
}

fn cipher_key(key: &[u8; 32]) -> UnboundCipherKey {
    UnboundCipherKey::new(&AES_256, key)
        .unwrap_or_else(|_| unreachable!("a 32-byte AES-256 key is always accepted"))
}

/// Seals record headers: one AES block of `sid ‖ counter`. The pair never
/// repeats under one key, so every header is a fresh pseudorandom block.
pub struct HeaderSealer(EncryptingKey);

impl HeaderSealer {
    /// From a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(
            EncryptingKey::ecb(cipher_key(key))
                .unwrap_or_else(|_| unreachable!("AES-256 supports ECB")),
        )
    }

    /// `AES(K, sid ‖ counter)`.
    pub fn seal(&self, sid: u64, counter: u64) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[..8].copy_from_slice(&sid.to_be_bytes());
        b[8..].copy_from_slice(&counter.to_be_bytes());
        self.0
            .less_safe_encrypt(&mut b, EncryptionContext::None)
            .unwrap_or_else(|_| unreachable!("one whole block in ECB mode"));
        b
    }
}

/// Opens record headers.
pub struct HeaderOpener(DecryptingKey);

impl HeaderOpener {
    /// From a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(
            DecryptingKey::ecb(cipher_key(key))
                .unwrap_or_else(|_| unreachable!("AES-256 supports ECB")),
        )
    }

    /// `(sid, counter)` of a datagram's first [`HEADER`] bytes.
    pub fn open(&self, header: &[u8]) -> (u64, u64) {
        let mut b = [0u8; HEADER];
        b.copy_from_slice(&header[..HEADER]);
        let plain = self
            .0
            .decrypt(&mut b, DecryptionContext::None)
            .unwrap_or_else(|_| unreachable!("one whole block in ECB mode"));
        let mut sid = [0u8; 8];
        let mut counter = [0u8; 8];
        sid.copy_from_slice(&plain[..8]);
        counter.copy_from_slice(&plain[8..HEADER]);
        (u64::from_be_bytes(sid), u64::from_be_bytes(counter))
    }
}

/// `M1 = HMAC(K_obf, "piece" ‖ M)[0..16]`: the second piece's first bytes,
/// which the server expects once the first piece's MAC verified.
pub fn piece_mark(k_obf: &HmacKey, mark: &[u8; 16]) -> [u8; 16] {
    first16(&k_obf.mac(&[b"piece", mark]))
}

/// `Q = HMAC(cookie, "cookie" ‖ M)[0..16]`: proof that the client received
/// the cookie the server gave its address.
pub fn cookie_proof(cookie: &[u8; 16], mark: &[u8; 16]) -> [u8; 16] {
    first16(&hmac(cookie, &[b"cookie", mark]))
}

pub(super) fn first16(b: &[u8; 32]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m.copy_from_slice(&b[..16]);
    m
}

/// msg1 (the stream mode's bytes, §3) cut into two datagrams:
/// `R_e ‖ M ‖ X1 ‖ C1[..a]` and `M1 ‖ Q ‖ C1[a..]`. `a` is drawn uniformly
/// among the cuts that keep both at most [`HANDSHAKE_DATAGRAM`] (4 random
/// bytes, after the handshake's own); `Q` is the cookie proof, or 16 random
/// bytes without a cookie (randomness after `a`).
pub struct Pieces {
    /// The first datagram.
    pub first: Vec<u8>,
    /// The second datagram.
    pub second: Vec<u8>,
}

impl Pieces {
    /// Cuts `msg1` (at most [`MSG1_MAX_PAD`] of padding; anything shorter
    /// than a first message is an error).
    pub fn cut(
        msg1: &[u8],
        k_obf: &HmacKey,
        cookie: Option<&[u8; 16]>,
        rng: &mut dyn Entropy,
    ) -> Result<Self, Error> {
        let c1 = msg1
            .get(MSG1_HEADER..)
            // A real C1 is at least C1_MIN; the cut below needs two bytes.
            .filter(|c| {
                (C1_MIN..=2 * HANDSHAKE_DATAGRAM - MSG1_HEADER - PIECE1_HEADER).contains(&c.len())
            })
            .ok_or(Error::Length {
                what: "msg1 for datagrams",
                len: msg1.len(),
            })?;
        // First piece: 1..=HANDSHAKE_DATAGRAM - MSG1_HEADER bytes of C1;
        // the second takes the rest, which must fit too.
        let most = (HANDSHAKE_DATAGRAM - MSG1_HEADER).min(c1.len() - 1);
        let least = c1
            .len()
            .saturating_sub(HANDSHAKE_DATAGRAM - PIECE1_HEADER)
            .max(1);
        let a = least + crate::proto::rand_below(rng, (most - least + 1) as u64) as usize;
        let mut mark = [0u8; 16];
        mark.copy_from_slice(&msg1[32..48]);
        let mut q = [0u8; 16];
        match cookie {
            Some(c) => q = cookie_proof(c, &mark),
            None => rng.fill(&mut q),
        }
        let mut second = Vec::with_capacity(PIECE1_HEADER + c1.len() - a);
        second.extend_from_slice(&piece_mark(k_obf, &mark));
        second.extend_from_slice(&q);
        second.extend_from_slice(&c1[a..]);
        Ok(Self {
            first: msg1[..MSG1_HEADER + a].to_vec(),
            second,
        })
    }

    /// Queues both pieces to be sent (again).
    pub fn send(&self, out: &mut std::collections::VecDeque<Vec<u8>>) {
        out.push_back(self.first.clone());
        out.push_back(self.second.clone());
    }

    /// A new second piece carrying the proof of `cookie` (after a cookie reply).
    pub fn with_cookie(&mut self, cookie: &[u8; 16]) {
        let mut mark = [0u8; 16];
        mark.copy_from_slice(&self.first[32..48]);
        self.second[16..32].copy_from_slice(&cookie_proof(cookie, &mark));
    }
}

/// `K_c = HMAC(K_obf, "cookie key" ‖ R_e ‖ M)`: only the holder of `S` who
/// sent (or saw) this msg1 can read the cookie reply to it.
fn cookie_reply_key(k_obf: &HmacKey, first_piece: &[u8]) -> AeadKey {
    let k = Zeroizing::new(k_obf.mac(&[b"cookie key", &first_piece[..48]]));
    AeadKey::new(&k)
}

/// The cookie reply to a first piece (`first` holds at least `R_e ‖ M`):
/// `n ‖ ENC(K_c, n, M, cookie)` and up to [`COOKIE_REPLY_MAX_PAD`] random
/// bytes. Randomness: `n` (8 bytes), the padding length (4), the padding.
pub fn seal_cookie_reply(
    k_obf: &HmacKey,
    first: &[u8],
    cookie: &[u8; 16],
    rng: &mut dyn Entropy,
) -> Vec<u8> {
    let mut n = [0u8; 8];
    rng.fill(&mut n);
    let pad = crate::proto::rand_below(rng, COOKIE_REPLY_MAX_PAD as u64 + 1) as usize;
    let mut out = Vec::with_capacity(COOKIE_REPLY + pad);
    out.extend_from_slice(&n);
    out.extend_from_slice(cookie);
    cookie_reply_key(k_obf, first).seal(u64::from_be_bytes(n), &first[32..48], &mut out, 8);
    let start = out.len();
    out.resize(start + pad, 0);
    rng.fill(&mut out[start..]);
    out
}

/// The cookie in a reply to our first piece, if `datagram` is one.
pub fn open_cookie_reply(k_obf: &HmacKey, first: &[u8], datagram: &[u8]) -> Option<[u8; 16]> {
    if !(COOKIE_REPLY..=COOKIE_REPLY + COOKIE_REPLY_MAX_PAD).contains(&datagram.len()) {
        return None;
    }
    let mut buf = [0u8; COOKIE_REPLY - 8];
    buf.copy_from_slice(&datagram[8..COOKIE_REPLY]);
    let mut n = [0u8; 8];
    n.copy_from_slice(&datagram[..8]);
    let len = cookie_reply_key(k_obf, first)
        .open(u64::from_be_bytes(n), &first[32..48], &mut buf)
        .ok()?;
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&buf[..len.min(16)]);
    Some(cookie)
}

/// Whether `q` proves `cookie` for `mark` (constant time).
pub fn proves_cookie(cookie: &[u8; 16], mark: &[u8; 16], q: &[u8]) -> bool {
    ct_eq(&cookie_proof(cookie, mark), q)
}
