//! The two handshake messages (docs §3): `Noise_NKhfs` with an Elligator2
//! client ephemeral, a masked server ephemeral, an ML-KEM-768 exchange under
//! encryption, and a token PSK.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::crypto::{
    self, ct_eq, hash, hmac, Ephemeral, HmacKey, KemSecret, PlainEphemeral, Symmetric, KEM_CT_LEN,
    KEM_EK_LEN, TAG_LEN,
};
use super::{rand_below, Entropy};
use crate::config::MAX_TAIL;
use crate::error::Error;
use crate::keys::Token;

/// `R_e ‖ M ‖ X1`.
pub(crate) const MSG1_HEADER: usize = 50;
/// `len(C1)` without padding: EK ‖ T_id ‖ P ‖ tag.
pub(crate) const C1_MIN: usize = KEM_EK_LEN + 16 + 32 + TAG_LEN;
/// `R_s ‖ X2`.
pub(crate) const MSG2_HEADER: usize = 34;
/// `len(C2a)`: status ‖ CT ‖ tag.
pub(crate) const C2A_LEN: usize = 1 + KEM_CT_LEN + TAG_LEN;
/// `len(C2a ‖ C2b)` without padding.
pub(crate) const C2_MIN: usize = C2A_LEN + TAG_LEN;
/// Seconds per MAC window.
pub const WINDOW_SECS: u64 = 3600;

const STATUS_ACCEPTED: u8 = 0;
const STATUS_REFUSED: u8 = 1;

/// Which transport a handshake runs on. The datagram mode (docs §11)
/// mixes a label into `h` right after `S`, so that a handshake cannot be
/// carried from one mode into the other: its token proof and every key
/// depend on the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One TCP connection (§3).
    Stream,
    /// UDP datagrams (§11).
    Datagram,
}

/// The label `MixHash`ed after `S` in datagram mode.
pub const DATAGRAM_LABEL: &[u8] = b"cipherlink-link/1 datagram";

fn transcript(server_public: &[u8; 32], mode: Mode) -> Symmetric {
    let mut sym = Symmetric::new(server_public);
    if mode == Mode::Datagram {
        sym.mix_hash(DATAGRAM_LABEL);
    }
    sym
}

/// The hour window of a unix time.
pub fn window(unix_secs: u64) -> u64 {
    unix_secs / WINDOW_SECS
}

/// `K_obf = HASH("cipherlink-link/1 obfs" ‖ S)`.
pub fn obfs_key(server_public: &[u8; 32]) -> [u8; 32] {
    hash(&[b"cipherlink-link/1 obfs", server_public])
}

/// `M = HMAC(K_obf, "mark" ‖ W ‖ R_e)[0..16]`.
pub fn mark(k_obf: &[u8; 32], w: u64, r: &[u8]) -> [u8; 16] {
    mark_with(&HmacKey::new(k_obf), w, r)
}

fn mark_with(k_obf: &HmacKey, w: u64, r: &[u8]) -> [u8; 16] {
    let full = k_obf.mac(&[b"mark", &w.to_be_bytes(), r]);
    let mut m = [0u8; 16];
    m.copy_from_slice(&full[..16]);
    m
}

fn mask2(key: &[u8; 32], r: &[u8]) -> [u8; 2] {
    mask2_with(&HmacKey::new(key), r)
}

fn mask2_with(key: &HmacKey, r: &[u8]) -> [u8; 2] {
    let full = key.mac(&[b"len", r]);
    [full[0], full[1]]
}

/// `HMAC(ck, "eph")`, the mask of the server's ephemeral public key. `ck` is
/// the chaining key after `es`: fresh for every client ephemeral, and known
/// only to the client and the holder of `s`.
fn eph_mask(ck: &[u8; 32]) -> [u8; 32] {
    hmac(ck, &[b"eph"])
}

fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

fn xor_len(len: usize, m: [u8; 2]) -> [u8; 2] {
    let b = (len as u16).to_be_bytes();
    [b[0] ^ m[0], b[1] ^ m[1]]
}

fn unmask_len(x: &[u8], m: [u8; 2]) -> usize {
    usize::from(u16::from_be_bytes([x[0] ^ m[0], x[1] ^ m[1]]))
}

/// `P = HMAC(T_sec, "cipherlink-link/1 token" ‖ h [‖ ss])`: `ss`, the
/// static-static DH of a token bound to a client key, makes the proof need
/// the client's secret key as well as the token's.
fn token_proof(secret: &[u8; 32], h: &[u8; 32], ss: Option<&[u8; 32]>) -> [u8; 32] {
    match ss {
        None => hmac(secret, &[b"cipherlink-link/1 token", h]),
        Some(ss) => hmac(secret, &[b"cipherlink-link/1 token", h, ss]),
    }
}

fn arr32(s: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(s);
    a
}

/// The transport secrets of docs §3, wiped when dropped.
#[derive(Clone)]
pub struct TransportKeys {
    /// Client-to-server AEAD key.
    pub c2s_key: [u8; 32],
    /// Client-to-server length-mask key.
    pub c2s_len: [u8; 32],
    /// Server-to-client AEAD key.
    pub s2c_key: [u8; 32],
    /// Server-to-client length-mask key.
    pub s2c_len: [u8; 32],
}

impl Drop for TransportKeys {
    fn drop(&mut self) {
        self.c2s_key.zeroize();
        self.c2s_len.zeroize();
        self.s2c_key.zeroize();
        self.s2c_len.zeroize();
    }
}

impl ZeroizeOnDrop for TransportKeys {}

impl TransportKeys {
    fn split(ck: &[u8; 32]) -> Self {
        let ck = HmacKey::new(ck);
        Self {
            c2s_key: ck.mac(&[b"c2s key"]),
            c2s_len: ck.mac(&[b"c2s len"]),
            s2c_key: ck.mac(&[b"s2c key"]),
            s2c_len: ck.mac(&[b"s2c len"]),
        }
    }
}

/// The client's state between msg1 and msg2.
pub struct ClientHandshake {
    sym: Symmetric,
    e: Ephemeral,
    kem: KemSecret,
    psk: Zeroizing<[u8; 32]>,
    /// `DH(c, S)` when the token is bound to a client key.
    client_ss: Option<Zeroizing<[u8; 32]>>,
    msg2_len: Option<usize>,
}

impl ClientHandshake {
    /// Builds msg1 into `out`. Randomness, in order: the ephemeral key
    /// (33 bytes per attempt), the ML-KEM seed (64), the padding length (4).
    pub fn start(
        mode: Mode,
        server_public: &[u8; 32],
        token: &Token,
        unix_secs: u64,
        tail_length: usize,
        rng: &mut dyn Entropy,
        out: &mut Vec<u8>,
    ) -> Result<Self, Error> {
        let e = Ephemeral::generate(rng)?;
        let kem = KemSecret::generate(rng);
        let pad = rand_below(rng, tail_length.min(MAX_TAIL) as u64 + 1) as usize;
        let k_obf = HmacKey::new(&obfs_key(server_public));
        let r = e.representative;
        let m = mark_with(&k_obf, window(unix_secs), &r);
        let x1 = xor_len(C1_MIN + pad, mask2_with(&k_obf, &r));

        let mut sym = transcript(server_public, mode);
        sym.mix_hash(&r);
        let mut mx = [0u8; 18];
        mx[..16].copy_from_slice(&m);
        mx[16..].copy_from_slice(&x1);
        sym.mix_hash(&mx);
        sym.mix_key(&e.dh(server_public)?[..]);
        let client_ss = match &token.client_key {
            None => None,
            Some(k) => {
                let c = k
                    .secret()
                    .ok_or(Error::Malformed("client key without its secret"))?;
                Some(crypto::StaticDh::new(c)?.dh(server_public)?)
            }
        };
        let proof = token_proof(&token.secret, sym.h(), client_ss.as_deref());

        out.extend_from_slice(&r);
        out.extend_from_slice(&mx);
        let start = out.len();
        out.extend_from_slice(&kem.public_bytes());
        out.extend_from_slice(&token.id);
        out.extend_from_slice(&proof);
        out.resize(out.len() + pad, 0);
        sym.encrypt_and_hash(out, start);
        Ok(Self {
            sym,
            e,
            kem,
            psk: token.secret.clone(),
            client_ss,
            msg2_len: None,
        })
    }

    /// Reads msg2 from the front of `buf`. `Ok(None)`: need more bytes.
    /// `Ok(Some((used, keys)))`: handshake done.
    pub fn read_msg2(&mut self, buf: &mut [u8]) -> Result<Option<(usize, TransportKeys)>, Error> {
        let body_len = match self.msg2_len {
            Some(l) => l,
            None => {
                if buf.len() < MSG2_HEADER {
                    return Ok(None);
                }
                let y = arr32(&buf[..32]);
                let server_e = xor32(&y, &eph_mask(self.sym.ck()));
                self.sym.mix_hash(&y);
                let dh = self.e.dh(&server_e)?;
                self.sym.mix_key(&dh[..]);
                let len = unmask_len(&buf[32..34], mask2(self.sym.ck(), b""));
                if !(C2_MIN..=C2_MIN + MAX_TAIL).contains(&len) {
                    return Err(Error::Length { what: "msg2", len });
                }
                self.sym.mix_hash(&buf[32..34]);
                self.msg2_len = Some(len);
                len
            }
        };
        let total = MSG2_HEADER + body_len;
        if buf.len() < total {
            return Ok(None);
        }
        let (c2a, c2b) = buf[MSG2_HEADER..total].split_at_mut(C2A_LEN);
        self.sym.decrypt_and_hash(c2a)?;
        if c2a[0] == STATUS_REFUSED {
            self.sym.decrypt_and_hash(c2b)?;
            return Err(Error::Refused);
        }
        if c2a[0] != STATUS_ACCEPTED {
            return Err(Error::Malformed("msg2 status"));
        }
        let ss = self.kem.decapsulate(&c2a[1..1 + KEM_CT_LEN])?;
        self.sym.mix_key(&ss[..]);
        self.sym.mix_key(&self.psk[..]);
        if let Some(client_ss) = &self.client_ss {
            self.sym.mix_key(&client_ss[..]);
        }
        self.sym.decrypt_and_hash(c2b)?;
        Ok(Some((total, TransportKeys::split(self.sym.ck()))))
    }
}

impl ClientHandshake {
    /// Reads a datagram that may be msg2 (docs §11.3): all of it must be
    /// msg2. `Ok(None)`: it is not (forged, damaged, or something else), and
    /// the handshake's state is as it was, so the real msg2 still works.
    /// `Err(Refused)`: the server refused our token.
    pub fn read_msg2_datagram(
        &mut self,
        datagram: &mut [u8],
    ) -> Result<Option<TransportKeys>, Error> {
        let saved = self.sym.clone();
        let result = self.read_msg2(datagram);
        match result {
            Ok(Some((used, keys))) if used == datagram.len() => Ok(Some(keys)),
            Err(Error::Refused) => Err(Error::Refused),
            _ => {
                self.sym = saved;
                self.msg2_len = None;
                Ok(None)
            }
        }
    }
}

/// Fuzzing only: a msg1 whose header (`R_e`, `M`, `X1`) and encryption are
/// genuine but whose `pt_len`-byte plaintext is whatever `plaintext` makes of
/// `h` (the handshake hash a token proof covers), so that a fuzzer gets past
/// the MAC and the tag to the server's parsing behind them.
#[doc(hidden)]
pub fn seal_msg1_plaintext(
    server_public: &[u8; 32],
    unix_secs: u64,
    rng: &mut dyn Entropy,
    pt_len: usize,
    plaintext: impl FnOnce(&[u8; 32]) -> Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let e = Ephemeral::generate(rng)?;
    let k_obf = HmacKey::new(&obfs_key(server_public));
    let r = e.representative;
    let m = mark_with(&k_obf, window(unix_secs), &r);
    let x1 = xor_len(pt_len + TAG_LEN, mask2_with(&k_obf, &r));
    let mut sym = Symmetric::new(server_public);
    sym.mix_hash(&r);
    let mut mx = [0u8; 18];
    mx[..16].copy_from_slice(&m);
    mx[16..].copy_from_slice(&x1);
    sym.mix_hash(&mx);
    sym.mix_key(&e.dh(server_public)?[..]);
    let mut pt = plaintext(sym.h());
    pt.resize(pt_len, 0);
    let mut out = Vec::with_capacity(MSG1_HEADER + pt_len + TAG_LEN);
    out.extend_from_slice(&r);
    out.extend_from_slice(&mx);
    let start = out.len();
    out.extend_from_slice(&pt);
    sym.encrypt_and_hash(&mut out, start);
    Ok(out)
}

/// Fuzzing only: the token proof `P` of docs §3 over `h`.
#[doc(hidden)]
pub fn fuzz_token_proof(secret: &[u8; 32], h: &[u8; 32], ss: Option<&[u8; 32]>) -> [u8; 32] {
    token_proof(secret, h, ss)
}

/// What the server learned from a msg1 whose header authenticated.
pub struct Msg1Header {
    /// `M`, for the replay filter.
    pub mark: [u8; 16],
    /// The window `M` matched.
    pub window: u64,
    /// Total msg1 length (header included).
    pub total: usize,
}

/// Server step 1 and 3 of docs §3: checks `M` against three windows and unmasks the length.
/// `Ok(None)`: need more bytes; `Err`: a probe, with the reason.
pub fn server_check_header(
    k_obf: &HmacKey,
    unix_secs: u64,
    buf: &[u8],
) -> Result<Option<Msg1Header>, &'static str> {
    if buf.len() < MSG1_HEADER {
        return Ok(None);
    }
    let r = &buf[..32];
    let now_w = window(unix_secs);
    let mut found = None;
    for w in [now_w.saturating_sub(1), now_w, now_w + 1] {
        let m = mark_with(k_obf, w, r);
        // Compare every window so timing does not tell which one matched.
        if ct_eq(&m, &buf[32..48]) {
            found = Some((m, w));
        }
    }
    let (m, w) = found.ok_or("first-message MAC")?;
    let len = unmask_len(&buf[48..50], mask2_with(k_obf, r));
    if !(C1_MIN..=C1_MIN + MAX_TAIL).contains(&len) {
        return Err("first-message length");
    }
    Ok(Some(Msg1Header {
        mark: m,
        window: w,
        total: MSG1_HEADER + len,
    }))
}

/// A msg1 that decrypted.
pub struct ServerMsg1 {
    sym: Symmetric,
    client_e: [u8; 32],
    ek: Vec<u8>,
    /// The token id the client presented.
    pub token_id: [u8; 16],
    proof: [u8; 32],
    h_before: [u8; 32],
}

/// Server step 4: decrypts msg1 (`buf` is exactly `Msg1Header::total` bytes).
pub fn server_read_msg1(
    mode: Mode,
    public: &[u8; 32],
    key: &crypto::StaticDh,
    buf: &mut [u8],
) -> Result<ServerMsg1, &'static str> {
    let r = arr32(&buf[..32]);
    let mut sym = transcript(public, mode);
    sym.mix_hash(&r);
    sym.mix_hash(&buf[32..MSG1_HEADER]);
    let client_e = crypto::point_from_representative(&r);
    let dh = key.dh(&client_e).map_err(|_| "low-order ephemeral")?;
    sym.mix_key(&dh[..]);
    let h_before = *sym.h();
    let c1 = &mut buf[MSG1_HEADER..];
    sym.decrypt_and_hash(c1).map_err(|_| "first-message tag")?;
    let ek = c1[..KEM_EK_LEN].to_vec();
    let mut token_id = [0u8; 16];
    token_id.copy_from_slice(&c1[KEM_EK_LEN..KEM_EK_LEN + 16]);
    let proof = arr32(&c1[KEM_EK_LEN + 16..KEM_EK_LEN + 48]);
    Ok(ServerMsg1 {
        sym,
        client_e,
        ek,
        token_id,
        proof,
        h_before,
    })
}

impl ServerMsg1 {
    /// Whether the client proved `secret` and, for a token bound to a client
    /// key, `client_ss = DH(s, C)` (constant time).
    pub fn proves(&self, secret: &[u8; 32], client_ss: Option<&[u8; 32]>) -> bool {
        ct_eq(&token_proof(secret, &self.h_before, client_ss), &self.proof)
    }

    /// Writes msg2 into `out`. `psk`: the token secret when accepted, `None`
    /// to refuse; `client_ss`: `DH(s, C)` for a token bound to a client key.
    /// Randomness, in order: the ephemeral secret (32 bytes), the
    /// encapsulation (32) or, when refusing, 1088 filler bytes, the padding length (4).
    pub fn write_msg2(
        mut self,
        psk: Option<&[u8; 32]>,
        client_ss: Option<&[u8; 32]>,
        tail_length: usize,
        rng: &mut dyn Entropy,
        out: &mut Vec<u8>,
    ) -> Result<Option<TransportKeys>, Error> {
        let e = PlainEphemeral::generate(rng)?;
        let (status, ct, ss) = match psk {
            Some(_) => {
                let (ct, ss) = crypto::kem_encapsulate(&self.ek, rng)?;
                (STATUS_ACCEPTED, ct, Some(ss))
            }
            None => {
                let mut filler = vec![0u8; KEM_CT_LEN];
                rng.fill(&mut filler);
                (STATUS_REFUSED, filler, None)
            }
        };
        let pad = rand_below(rng, tail_length.min(MAX_TAIL) as u64 + 1) as usize;
        // Masked with a key from `ck` after `es` (this state has seen only
        // that MixKey), so it looks random to anyone without `e` or `s`.
        let y = xor32(&e.public, &eph_mask(self.sym.ck()));
        self.sym.mix_hash(&y);
        self.sym.mix_key(&e.dh(&self.client_e)?[..]);
        let x2 = xor_len(C2_MIN + pad, mask2(self.sym.ck(), b""));
        self.sym.mix_hash(&x2);
        out.extend_from_slice(&y);
        out.extend_from_slice(&x2);
        let start = out.len();
        out.push(status);
        out.extend_from_slice(&ct);
        self.sym.encrypt_and_hash(out, start);
        if let (Some(ss), Some(psk)) = (ss, psk) {
            self.sym.mix_key(&ss[..]);
            self.sym.mix_key(psk);
            if let Some(client_ss) = client_ss {
                self.sym.mix_key(client_ss);
            }
        }
        let start = out.len();
        out.resize(out.len() + pad, 0);
        self.sym.encrypt_and_hash(out, start);
        Ok(psk.map(|_| TransportKeys::split(self.sym.ck())))
    }
}
