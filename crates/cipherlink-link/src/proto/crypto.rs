//! The primitives of docs/link-protocol.md §1 and the Noise symmetric state.
//!
//! Everything deterministic comes from aws-lc-rs: SHA-256, HMAC, AES-256-GCM,
//! the AES header-protection mask, and X25519 from given secret bytes
//! (`agreement::PrivateKey::from_private_key`). aws-lc-rs cannot take
//! injected randomness for ML-KEM (key generation and encapsulation draw
//! from its own RNG), which would hide randomness from the caller and make
//! fixed test vectors impossible, and it has no Elligator2. So:
//!
//! * the client's ephemeral X25519 key and its Elligator2 representative come
//!   from `curve25519-elligator2` (a curve25519-dalek fork that computes the
//!   "dirty" public point and its representative from given bytes); the DHs
//!   themselves, and the server's plain ephemeral key, use aws-lc, whose
//!   X25519 is about twice as fast as the dalek Montgomery ladder here;
//! * ML-KEM-768 comes from `libcrux-ml-kem` (formally verified, AVX2 when the
//!   CPU has it), whose key generation and encapsulation take their 64 and 32
//!   random bytes as arguments (FIPS 203's `KeyGen_internal(d, z)` and
//!   `Encaps_internal(ek, m)`).

use aws_lc_rs::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::{digest, hmac};
use curve25519_elligator2::{MapToPointVariant, MontgomeryPoint, Randomized};
use libcrux_ml_kem::mlkem768;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::Error;
use crate::proto::Entropy;

/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// ML-KEM-768 encapsulation key length.
pub const KEM_EK_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const KEM_CT_LEN: usize = 1088;

/// The protocol name hashed into `h` at the start.
pub const PROTOCOL_NAME: &[u8] =
    b"Noise_NKhfs+psk_25519+Elligator2_MLKEM768_AESGCM_SHA256 cipherlink-link/1";

/// SHA-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    to32(ctx.finish().as_ref())
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    HmacKey::new(key).mac(parts)
}

/// An HMAC-SHA256 key set up once for several MACs: the setup hashes the
/// inner and outer pad blocks, as much work as a short MAC itself, and a
/// handshake takes several MACs under one key (`MixKey`'s `t`, the
/// transport-key split, the server's three window marks).
pub struct HmacKey(hmac::Key);

impl HmacKey {
    /// Sets up `key`.
    pub fn new(key: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
        }
        to32(ctx.sign().as_ref())
    }
}

fn to32(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&s[..32]);
    out
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The AEAD nonce for counter `n`: 4 zero bytes and `n` big-endian (Noise's AESGCM rule).
fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(b)
}

/// An AES-256-GCM key with explicit counters.
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    /// Builds the key from 32 bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        // AES_256_GCM takes exactly 32 bytes, which the type guarantees.
        let unbound = UnboundKey::new(&aead::AES_256_GCM, key)
            .unwrap_or_else(|_| unreachable!("a 32-byte AES-256 key is always accepted"));
        Self(LessSafeKey::new(unbound))
    }

    /// Encrypts `buf[start..]` in place and appends the tag.
    pub fn seal(&self, n: u64, ad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(n), Aad::from(ad), &mut buf[start..])
            .unwrap_or_else(|_| unreachable!("AES-GCM sealing of a bounded record cannot fail"));
        buf.extend_from_slice(tag.as_ref());
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place; returns the plaintext length.
    pub fn open(&self, n: u64, ad: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        self.0
            .open_in_place(nonce(n), Aad::from(ad), buf)
            .map(|p| p.len())
            .map_err(|_| Error::Decrypt)
    }
}

/// The length-mask key: one AES block of the counter (QUIC header protection).
pub struct LenMask(quic::HeaderProtectionKey);

impl LenMask {
    /// Builds the mask key from 32 bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        let k = quic::HeaderProtectionKey::new(&quic::AES_256, key)
            .unwrap_or_else(|_| unreachable!("a 32-byte AES-256 key is always accepted"));
        Self(k)
    }

    /// The 2-byte mask for record `counter`.
    pub fn mask(&self, counter: u64) -> [u8; 2] {
        let mut sample = [0u8; 16];
        sample[..8].copy_from_slice(&counter.to_be_bytes());
        let m = self
            .0
            .new_mask(&sample)
            .unwrap_or_else(|_| unreachable!("the sample is exactly 16 bytes"));
        [m[0], m[1]]
    }
}

/// Noise's CipherState and SymmetricState (`ck`, `h`, `k`, `n`).
pub struct Symmetric {
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
    k: Option<AeadKey>,
    /// `k`'s bytes, so that a state can be copied (a datagram client tries
    /// a candidate msg2 on a copy: a forged one must not change its state).
    k_bytes: Zeroizing<[u8; 32]>,
    n: u64,
}

impl Clone for Symmetric {
    fn clone(&self) -> Self {
        Self {
            ck: self.ck.clone(),
            h: self.h,
            k: self.k.as_ref().map(|_| AeadKey::new(&self.k_bytes)),
            k_bytes: self.k_bytes.clone(),
            n: self.n,
        }
    }
}

impl Symmetric {
    /// `h = HASH(protocol name)`, `ck = h`, then `MixHash(S)`.
    pub fn new(server_public: &[u8; 32]) -> Self {
        let h = hash(&[PROTOCOL_NAME]);
        let mut s = Self {
            ck: Zeroizing::new(h),
            h,
            k: None,
            k_bytes: Zeroizing::new([0u8; 32]),
            n: 0,
        };
        s.mix_hash(server_public);
        s
    }

    /// The handshake hash.
    pub fn h(&self) -> &[u8; 32] {
        &self.h
    }

    /// The chaining key.
    pub fn ck(&self) -> &[u8; 32] {
        &self.ck
    }

    /// `h = HASH(h ‖ data)`.
    pub fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    /// Noise's HKDF with two outputs: new `ck` and a fresh `k`.
    pub fn mix_key(&mut self, ikm: &[u8]) {
        let mut t = hmac(&self.ck[..], &[ikm]);
        let t_key = HmacKey::new(&t);
        let ck = Zeroizing::new(t_key.mac(&[&[1]]));
        let mut k = t_key.mac(&[&ck[..], &[2]]);
        *self.ck = *ck;
        self.k = Some(AeadKey::new(&k));
        *self.k_bytes = k;
        self.n = 0;
        t.zeroize();
        k.zeroize();
    }

    /// Encrypts `buf[start..]` in place (appending the tag) and mixes the ciphertext into `h`.
    pub fn encrypt_and_hash(&mut self, buf: &mut Vec<u8>, start: usize) {
        let Some(k) = &self.k else {
            unreachable!("every EncryptAndHash in this pattern follows a MixKey")
        };
        k.seal(self.n, &self.h, buf, start);
        self.n += 1;
        let h = hash(&[&self.h, &buf[start..]]);
        self.h = h;
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place, mixing the ciphertext into `h`; returns the plaintext length.
    pub fn decrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let Some(k) = &self.k else {
            unreachable!("every DecryptAndHash in this pattern follows a MixKey")
        };
        let next_h = hash(&[&self.h, buf]);
        let len = k.open(self.n, &self.h, buf)?;
        self.n += 1;
        self.h = next_h;
        Ok(len)
    }
}

/// An ephemeral X25519 key whose public point has an Elligator2 representative
/// (the client's: it is the first thing on the wire, before any shared key).
pub struct Ephemeral {
    /// The secret, loaded into aws-lc once for both of the client's DHs
    /// (loading computes a public key, ~5 us, so it is worth doing once).
    key: StaticDh,
    /// The 32 bytes sent on the wire.
    pub representative: [u8; 32],
}

/// Attempts before declaring the randomness source broken (each succeeds with p = 1/2).
const REPRESENTABLE_ATTEMPTS: usize = 128;

impl Ephemeral {
    /// Draws keys (32 bytes secret, 1 byte tweak per attempt) until one is representable.
    pub fn generate(rng: &mut dyn Entropy) -> Result<Self, Error> {
        for _ in 0..REPRESENTABLE_ATTEMPTS {
            let mut buf = Zeroizing::new([0u8; 33]);
            rng.fill(&mut buf[..]);
            let mut secret = Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&buf[..32]);
            let tweak = buf[32];
            let repr: Option<[u8; 32]> = Randomized::to_representative(&secret, tweak).into();
            if let Some(representative) = repr {
                return Ok(Self {
                    key: StaticDh::new(&secret)?,
                    representative,
                });
            }
        }
        Err(Error::BadRandomness)
    }

    /// X25519 of this secret with the peer's public point `peer` (u-coordinate bytes).
    pub fn dh(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
        self.key.dh(peer)
    }
}

/// A plain ephemeral X25519 key (the server's): its public key travels masked
/// under a key from the handshake (docs §3, msg2), so it needs no Elligator2
/// representative, and generating it is one fixed-base multiplication instead
/// of two on average plus the map.
pub struct PlainEphemeral {
    key: StaticDh,
    /// `X25519(e, 9)`.
    pub public: [u8; 32],
}

impl PlainEphemeral {
    /// Draws 32 secret bytes.
    pub fn generate(rng: &mut dyn Entropy) -> Result<Self, Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..]);
        let key = StaticDh::new(&secret)?;
        let public = key.public()?;
        Ok(Self { key, public })
    }

    /// X25519 of this secret with `peer`.
    pub fn dh(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
        self.key.dh(peer)
    }
}

/// The curve point (u-coordinate) of a representative (any 32 bytes map to a
/// point; the top two bits are ignored). The direct Montgomery map: the
/// Edwards route (`MontgomeryPoint::from_representative`) gives the same u
/// at about twice the cost.
pub fn point_from_representative(r: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::map_to_point(r).to_bytes()
}

/// An X25519 secret loaded into aws-lc once (the server's static key is used
/// for every handshake).
pub struct StaticDh(PrivateKey);

impl StaticDh {
    /// Loads 32 secret bytes (clamped by X25519 itself).
    pub fn new(secret: &[u8; 32]) -> Result<Self, Error> {
        PrivateKey::from_private_key(&X25519, secret)
            .map(Self)
            .map_err(|_| Error::Malformed("X25519 secret"))
    }

    /// The public key `X25519(secret, 9)` (aws-lc computed it when loading).
    pub fn public(&self) -> Result<[u8; 32], Error> {
        let p = self
            .0
            .compute_public_key()
            .map_err(|_| Error::Malformed("X25519 secret"))?;
        let p = p.as_ref();
        if p.len() != 32 {
            return Err(Error::Malformed("X25519 public key length"));
        }
        Ok(to32(p))
    }

    /// X25519 with `peer`; an all-zero result (low-order input) is refused.
    pub fn dh(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let out = agreement::agree(
            &self.0,
            UnparsedPublicKey::new(&X25519, peer),
            Error::WeakKey,
            |s| Ok(Zeroizing::new(to32(s))),
        )?;
        if ct_eq(&out[..], &[0u8; 32]) {
            return Err(Error::WeakKey);
        }
        Ok(out)
    }
}

/// The X25519 public key of a static secret (RFC 7748, no low-order component).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

/// An ephemeral ML-KEM-768 key pair; the decapsulation key is wiped when
/// dropped (libcrux's key types do not wipe themselves).
pub struct KemSecret {
    sk: Box<mlkem768::MlKem768PrivateKey>,
    pk: Box<mlkem768::MlKem768PublicKey>,
}

/// ML-KEM-768 decapsulation key length.
const KEM_DK_LEN: usize = 2400;

impl KemSecret {
    /// Derives the key pair from 64 random bytes (FIPS 203 seed `d ‖ z`).
    pub fn generate(rng: &mut dyn Entropy) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill(&mut seed[..]);
        let (sk, pk) = mlkem768::generate_key_pair(*seed).into_parts();
        Self {
            sk: Box::new(sk),
            pk: Box::new(pk),
        }
    }

    /// The encapsulation key bytes (1184).
    pub fn public_bytes(&self) -> Vec<u8> {
        self.pk.as_slice().to_vec()
    }

    /// Decapsulates a ciphertext of 1088 bytes (ML-KEM rejects implicitly, so
    /// any bytes give a key; a wrong one only fails the next AEAD tag).
    pub fn decapsulate(&self, ct: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let ct = mlkem768::MlKem768Ciphertext::try_from(ct)
            .map_err(|_| Error::Malformed("ML-KEM ciphertext length"))?;
        Ok(Zeroizing::new(mlkem768::decapsulate(&self.sk, &ct)))
    }
}

impl Drop for KemSecret {
    fn drop(&mut self) {
        self.sk[..KEM_DK_LEN].zeroize();
    }
}

impl ZeroizeOnDrop for KemSecret {}

/// Encapsulates to `ek` (1184 bytes, checked as FIPS 203 requires) with 32
/// random bytes; returns (ciphertext, shared secret).
pub fn kem_encapsulate(
    ek: &[u8],
    rng: &mut dyn Entropy,
) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), Error> {
    let pk = mlkem768::MlKem768PublicKey::try_from(ek)
        .map_err(|_| Error::Malformed("ML-KEM encapsulation key length"))?;
    if !mlkem768::validate_public_key(&pk) {
        return Err(Error::Malformed("ML-KEM encapsulation key"));
    }
    let mut m = Zeroizing::new([0u8; 32]);
    rng.fill(&mut m[..]);
    let (ct, ss) = mlkem768::encapsulate(&pk, *m);
    Ok((ct.as_slice().to_vec(), Zeroizing::new(ss)))
}
