//! The primitives PORT's monocypher calls compute, from RustCrypto and
//! dalek: XChaCha20-Poly1305 as `nonce(24) || ciphertext || tag(16)`,
//! unkeyed BLAKE2b-256, and X25519.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::Error;

/// Bytes of an XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// What one sealed box adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// BLAKE2b with a 32-byte output over the concatenation of `parts`.
pub fn blake2b_256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A session key: every symmetric message of one PORT connection.
#[derive(Clone)]
pub struct SessionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Zeroizing::new(key))
    }

    /// The raw key (for test vectors and the chaos lab's decoding).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Appends `nonce || seal(plaintext, ad) || tag` to `out`.
    pub fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        ad: &[u8],
        out: &mut Vec<u8>,
    ) {
        let aead = XChaCha20Poly1305::new(self.0.as_ref().into());
        out.extend_from_slice(nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        // Only fails for plaintexts beyond 2^38 bytes; ours are under 64 KiB.
        let tag = aead
            .encrypt_in_place_detached(XNonce::from_slice(nonce), ad, &mut out[start..])
            .unwrap_or_default();
        out.extend_from_slice(&tag);
    }

    /// Opens `nonce || ciphertext || tag`; `what` names the message in the error.
    pub fn open(&self, sealed: &[u8], ad: &[u8], what: &'static str) -> Result<Vec<u8>, Error> {
        if sealed.len() < OVERHEAD {
            return Err(Error::Length {
                what,
                len: sealed.len(),
            });
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        XChaCha20Poly1305::new(self.0.as_ref().into())
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                ad,
                &mut buf,
                Tag::from_slice(tag),
            )
            .map_err(|_| Error::Decrypt(what))?;
        Ok(buf)
    }
}

/// `X25519(secret, 9)`.
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*secret);
    *x25519_dalek::PublicKey::from(&s).as_bytes()
}

/// `X25519(secret, public)`, or `None` when `public` is a low-order point.
pub fn x25519(secret: &[u8; 32], public: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    let s = x25519_dalek::StaticSecret::from(*secret);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return None;
    }
    Some(Zeroizing::new(*shared.as_bytes()))
}
