//! cipherlink-proxy: put encryption in front of any TCP service, as stunnel
//! does, with TLS (the core's Context), the link protocol (the
//! `cipherlink-link` crate: random-looking, hybrid post-quantum), the seed's
//! v1 NaCl-box frame, or plain TCP (for measurement).
//!
//! ```text
//!  plaintext client --TCP--> [proxy client] ==tls|link|v1|plain==> [proxy server] --TCP--> service
//!                            listen / connect                 listen / forward
//! ```
//!
//! A [`Proxy`] runs named [`Service`]s (a [`ProxyConfig`], stunnel-like, in
//! TOML or built from flags). Each accepted connection is an independent
//! tunnel: its own TCP connection to the next hop, its own handshake (TLS)
//! or nonce sequence (v1); both directions stream at once with a bounded
//! buffer each, half-close travels through, and a failure resets both
//! sides instead of closing them cleanly. The v1 frame is a sans-IO codec in
//! [`v1`] (spec: docs/v1-frame.md).

pub mod bench;
pub mod config;
mod conn;
pub mod error;
mod link;
mod read_ahead;
mod relay;
mod service;
pub mod stats;
pub mod v1;

pub use config::{LinkConfig, ProxyConfig, Role, ServiceConfig, Transport, V1Config};
pub use error::{ProxyError, TunnelError};
pub use service::{Proxy, Service};
pub use stats::{ServiceStats, Snapshot};

/// Entry points for the fuzz targets (`fuzz/`): not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::v1::{Decoder, Keys, Opener};

    /// Feeds `bytes` to a v1 decoder in two pieces (split at the first
    /// byte's value) and opens every frame under fixed keys; must never
    /// panic, and never buffer more than header + nonce + the bound.
    pub fn decode_v1(bytes: &[u8]) {
        const MAX: u32 = 64 * 1024;
        let keys = Keys::new(
            &crypto_box::SecretKey::from([1u8; 32]),
            &crypto_box::SecretKey::from([2u8; 32]).public_key(),
        );
        let mut decoder = Decoder::new(MAX);
        let mut opener = Opener::new(keys);
        let cut = bytes
            .first()
            .map_or(0, |b| usize::from(*b).min(bytes.len()));
        for part in [&bytes[..cut], &bytes[cut..]] {
            let mut input = part;
            while !input.is_empty() {
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => {
                        let _ = opener.open(frame);
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
                assert!(decoder.needed() <= crate::v1::NONCE_LEN + MAX as usize);
            }
        }
        let _ = decoder.finish();
    }
}
