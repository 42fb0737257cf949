//! Sealing plaintext into frames and opening frames, with NaCl's box
//! (X25519 + XSalsa20-Poly1305, the `crypto_box` crate). A frame's data is
//! exactly what PyNaCl's `Box.encrypt(...).ciphertext` holds: the 16-byte
//! Poly1305 tag, then the encrypted bytes.

use std::sync::Arc;

use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::AeadInPlace;
use crypto_box::{PublicKey, SalsaBox, SecretKey};

use super::decoder::Frame;
use super::frame::{FrameError, Header, HEADER_LEN, NONCE_LEN, TAG_LEN};
use super::nonce::{Mode, NonceSequence, ReplayGuard, Side};

/// What can go wrong with a frame beyond its framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum V1Error {
    /// The bytes are not an acceptable frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The box did not open: wrong keys, or the bytes were altered.
    #[error("v1 frame failed authentication (the peer uses other keys, or the data was altered)")]
    Authentication,
    /// A nonce came twice in one connection.
    #[error("v1 frame reuses nonce {0} within this connection (a replay, or a broken sender)")]
    NonceReused(String),
    /// A frame under our own sending prefix: what we sent, sent back.
    #[error(
        "v1 frame carries our own nonce prefix {0}: it is our own output sent back to us (a reflection)"
    )]
    Reflected(String),
    /// Strict: a frame under another prefix than the peer's first frame.
    #[error(
        "v1 strict: frame under nonce prefix {got}, but this connection's peer sends under \
         {expected}: a frame from another connection or sender (spliced)"
    )]
    Spliced {
        /// The peer's prefix, from its first frame.
        expected: String,
        /// The frame's.
        got: String,
    },
    /// Strict: a counter other than the one due.
    #[error(
        "v1 strict: frame number {got} where number {expected} was due: frames were deleted, \
         reordered or replayed (strict v1 needs a cipherlink peer; random-nonce peers such as \
         PyNaCl need v1.strict off)"
    )]
    OutOfSequence {
        /// The counter due.
        expected: u64,
        /// The frame's.
        got: u64,
    },
    /// Strict: a first frame whose prefix marks it as sent by our own side.
    #[error(
        "v1 strict: the frame's nonce marks it as sent by a {0}, as we are: our own \
         direction's traffic sent back to us (reflected from another connection)"
    )]
    WrongDirection(&'static str),
    /// Our sender ran out of nonces (after 2^64 frames).
    #[error("v1 sender has used all 2^64 nonces of this connection")]
    NoncesExhausted,
    /// A plaintext too large for one frame under the bound.
    #[error("v1 plaintext of {len} bytes does not fit one frame (max data size {max})")]
    PlaintextTooLarge {
        /// The plaintext length.
        len: usize,
        /// The data size bound.
        max: u32,
    },
}

/// The precomputed box between our secret key and the peer's public key,
/// shared by every connection of a service (the X25519 step runs once).
#[derive(Clone)]
pub struct Keys {
    cipher: Arc<SalsaBox>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// The box for our `secret` and the peer's `public` key.
    pub fn new(secret: &SecretKey, public: &PublicKey) -> Keys {
        Keys {
            cipher: Arc::new(SalsaBox::new(public, secret)),
        }
    }
}

/// Appends one frame holding `plaintext` under `nonce` to `out`. The
/// plaintext is copied once, into place, and encrypted there.
pub fn seal_frame(
    keys: &Keys,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    max_data_size: u32,
    out: &mut Vec<u8>,
) -> Result<(), V1Error> {
    let data_size = u32::try_from(plaintext.len() + TAG_LEN)
        .ok()
        .filter(|size| *size <= max_data_size)
        .ok_or(V1Error::PlaintextTooLarge {
            len: plaintext.len(),
            max: max_data_size,
        })?;
    let start = out.len();
    out.reserve(HEADER_LEN + NONCE_LEN + data_size as usize);
    out.extend_from_slice(&Header::encode(data_size));
    out.extend_from_slice(nonce);
    let tag_at = out.len();
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.extend_from_slice(plaintext);
    let tag = keys
        .cipher
        .encrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            b"",
            &mut out[tag_at + TAG_LEN..],
        )
        // XSalsa20 refuses only plaintexts past 256 GiB, far over any bound.
        .map_err(|_| V1Error::PlaintextTooLarge {
            len: plaintext.len(),
            max: max_data_size,
        });
    match tag {
        Ok(tag) => {
            out[tag_at..tag_at + TAG_LEN].copy_from_slice(&tag);
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
}

/// Opens a frame's box in place; returns the plaintext, inside `frame.data`.
pub fn open_frame<'a>(keys: &Keys, frame: Frame<'a>) -> Result<&'a mut [u8], V1Error> {
    let (tag, body) = frame.data.split_at_mut(TAG_LEN);
    keys.cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&frame.nonce),
            b"",
            body,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| V1Error::Authentication)?;
    Ok(body)
}

/// One connection's sending half: our nonce sequence and the frame bound.
#[derive(Debug)]
pub struct Sealer {
    keys: Keys,
    nonces: NonceSequence,
    max_data_size: u32,
}

impl Sealer {
    /// A sealer with a fresh random nonce prefix.
    pub fn new(keys: Keys, max_data_size: u32) -> Sealer {
        Sealer::with_nonces(keys, NonceSequence::random(), max_data_size)
    }

    /// A sealer with a given sequence (test vectors).
    pub fn with_nonces(keys: Keys, nonces: NonceSequence, max_data_size: u32) -> Sealer {
        Sealer {
            keys,
            nonces,
            max_data_size,
        }
    }

    /// Appends one frame holding `plaintext` to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), V1Error> {
        let nonce = self.nonces.next_nonce().ok_or(V1Error::NoncesExhausted)?;
        seal_frame(&self.keys, &nonce, plaintext, self.max_data_size, out)
    }
}

/// Both halves of one connection for `side`: a sealer with a fresh prefix
/// that marks `side`, and an opener that refuses that prefix (our own
/// frames sent back) and checks the peer's nonces as `mode` says.
pub fn session(keys: Keys, max_data_size: u32, side: Side, mode: Mode) -> (Sealer, Opener) {
    let nonces = NonceSequence::for_side(side);
    let guard = ReplayGuard::new(nonces.prefix(), side, mode);
    (
        Sealer::with_nonces(keys.clone(), nonces, max_data_size),
        Opener { keys, guard },
    )
}

/// One connection's receiving half: opens frames and refuses reused nonces.
#[derive(Debug)]
pub struct Opener {
    keys: Keys,
    guard: ReplayGuard,
}

impl Opener {
    /// An opener in compatible mode that knows no sending prefix of ours:
    /// for a receiver that sends nothing under these keys. An end that also
    /// sends builds both halves with [`session`], or its own frames sent
    /// back to it would be accepted.
    pub fn new(keys: Keys) -> Opener {
        Opener {
            keys,
            guard: ReplayGuard::default(),
        }
    }

    /// An opener with a given nonce memory (the fuzz target's fixed prefix).
    pub(crate) fn with_guard(keys: Keys, guard: ReplayGuard) -> Opener {
        Opener { keys, guard }
    }

    /// Authenticates and decrypts `frame` in place, then records its nonce
    /// (only authentic frames are remembered, so forged frames cannot
    /// fill the memory).
    pub fn open<'a>(&mut self, frame: Frame<'a>) -> Result<&'a mut [u8], V1Error> {
        let nonce = frame.nonce;
        let plaintext = open_frame(&self.keys, frame)?;
        self.guard.check_and_record(&nonce)?;
        Ok(plaintext)
    }
}
