//! The link's random generator once the handshake is over: fast key erasure
//! (Bernstein, "Fast-key-erasure random-number generators", 2017).
//!
//! Each refill runs ChaCha20 under the current key for 256 bytes: the first
//! 32 replace the key, the other 224 are handed out in order and erased as
//! they go. So the state holds only what has not been handed out yet and a
//! key that the ChaCha20 output it came from cannot be run back to: whoever
//! reads the state later cannot reproduce an earlier draw (the handshake's
//! ephemeral keys, the ML-KEM seed, earlier padding lengths). A seeded
//! ChaCha RNG (rand's `StdRng`) keeps one key for its whole life and can be
//! rewound to any earlier output.

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha20Rng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::Entropy;
use crate::error::Error;

/// Bytes handed out per refill (the ChaCha20 output after the next key).
const OUT: usize = 224;

/// A fast-key-erasure generator (docs §7).
pub struct ErasingRng {
    key: [u8; 32],
    buf: [u8; OUT],
    /// `buf[..pos]` was handed out and is zero.
    pos: usize,
}

impl ErasingRng {
    /// A generator keyed by `seed` (erased from `seed` here).
    pub fn from_seed(mut seed: [u8; 32]) -> Self {
        let rng = Self {
            key: seed,
            buf: [0u8; OUT],
            pos: OUT,
        };
        seed.zeroize();
        rng
    }

    /// A generator keyed by 32 bytes of `rng`.
    pub fn from_entropy(rng: &mut dyn Entropy) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(&mut seed[..]);
        Self::from_seed(*seed)
    }

    /// A generator keyed by 32 bytes from the operating system.
    pub fn from_os() -> Result<Self, Error> {
        use rand::TryRngCore;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed[..])
            .map_err(|_| Error::BadRandomness)?;
        Ok(Self::from_seed(*seed))
    }

    fn refill(&mut self) {
        let mut block = Zeroizing::new([0u8; 32 + OUT]);
        // ChaCha20 under `key`, nonce 0, from block 0 (RFC 8439's keystream);
        // the generator wipes its key and buffer when dropped.
        let mut chacha = ChaCha20Rng::from_seed(self.key);
        chacha.fill_bytes(&mut block[..]);
        drop(chacha);
        self.key.copy_from_slice(&block[..32]);
        self.buf.copy_from_slice(&block[32..]);
        self.pos = 0;
    }

    /// Everything the generator holds (tests: it must not contain, nor
    /// regenerate, what it handed out).
    #[doc(hidden)]
    pub fn state(&self) -> Vec<u8> {
        [&self.key[..], &self.buf[..]].concat()
    }
}

impl Entropy for ErasingRng {
    fn fill(&mut self, dst: &mut [u8]) {
        let mut done = 0;
        while done < dst.len() {
            if self.pos == OUT {
                self.refill();
            }
            let n = (dst.len() - done).min(OUT - self.pos);
            dst[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.buf[self.pos..self.pos + n].zeroize();
            self.pos += n;
            done += n;
        }
    }
}

impl Drop for ErasingRng {
    fn drop(&mut self) {
        self.key.zeroize();
        self.buf.zeroize();
    }
}

impl ZeroizeOnDrop for ErasingRng {}
