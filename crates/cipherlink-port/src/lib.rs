//! SeasideVPN's PORT transport, wire-compatible (docs/port-wire.md): a
//! sans-IO codec and a tokio driver for its two-connection dance.
//!
//! ```text
//!   client                                    server
//!     |-- 1st TCP: client INIT (key, token) -->|  listener port
//!     |<-- server INIT (user id = a new port) -|
//!     |== 2nd TCP to that port: data/term msgs ==|
//! ```
//!
//! * [`keys`]: the 40-byte server keys and their files.
//! * [`wire`]: every message, built and parsed whole.
//! * [`decode`]: the incremental decoders of peer bytes (fuzzed).
//! * [`driver`]: [`driver::PortListener`] and [`driver::connect`].
//!
//! PORT has no forward secrecy and no replay protection; cipherlink's link
//! protocol stays the recommended transport.

pub mod conn_file;
pub mod crypto;
pub mod decode;
pub mod driver;
pub mod error;
pub mod keys;
pub mod settings;
pub mod wire;

pub use conn_file::ConnectionFile;
pub use crypto::SessionKey;
pub use error::Error;
pub use keys::{PublicKey, ServerKey};
pub use settings::PortSettings;

/// A source of random bytes (the OS's in production, fixed ones in tests).
pub trait Entropy {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<R: rand::RngCore> Entropy for R {
    fn fill(&mut self, buf: &mut [u8]) {
        self.fill_bytes(buf);
    }
}

/// A random tail of uniform length in `[0, max]`.
pub fn random_tail(max: usize, rng: &mut dyn Entropy) -> Vec<u8> {
    let mut n = [0u8; 8];
    rng.fill(&mut n);
    // max is at most 65535: the modulo bias is below 2^-47.
    let len = (u64::from_le_bytes(n) % (max as u64 + 1)) as usize;
    let mut tail = vec![0u8; len];
    rng.fill(&mut tail);
    tail
}

/// A random nonce.
pub fn random_nonce(rng: &mut dyn Entropy) -> [u8; crypto::NONCE_LEN] {
    let mut n = [0u8; crypto::NONCE_LEN];
    rng.fill(&mut n);
    n
}
