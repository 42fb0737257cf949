//! cipherlink-proxy: put encryption in front of any TCP service, as stunnel
//! does, with TLS (the core's Context), the link protocol (the
//! `cipherlink-link` crate: random-looking, hybrid post-quantum), the seed's
//! v1 NaCl-box frame, SeasideVPN's PORT wire (the `cipherlink-port` crate:
//! for SeasideVPN peers; no forward secrecy), or plain TCP (for measurement).
//!
//! ```text
//!  plaintext client --TCP--> [proxy client] ==tls|link|v1|port|plain==> [proxy server] --TCP--> service
//!                            listen / connect                 listen / forward
//! ```
//!
//! A [`Proxy`] runs named [`Service`]s (a [`ProxyConfig`], stunnel-like, in
//! TOML or built from flags). Each accepted connection is an independent
//! tunnel: its own TCP connection to the next hop, its own handshake (TLS)
//! or nonce sequence (v1); both directions stream at once with a bounded
//! buffer each, half-close travels through, and a failure resets both
//! sides instead of closing them cleanly. The v1 frame is a sans-IO codec in
//! [`nacl_frame`] (spec: docs/v1-frame.md).

pub mod config;
mod conn;
pub mod error;
mod link;
pub mod mux;
mod mux_tunnel;
pub mod nacl_frame;
mod nacl_frame_tunnel;
pub mod port;
mod port_tunnel;
mod read_ahead;
mod relay;
mod service;
mod service_limits;
pub mod stats;
pub mod udp;

pub use config::{
    LinkConfig, PortConfig, ProxyConfig, Role, ServiceConfig, ServiceDangerous, Transport, V1Config,
};
pub use error::{ProxyError, TunnelError};
pub use service::{Proxy, Service};
pub use stats::{ServiceStats, Snapshot};

/// Entry points for the fuzz targets (`fuzz/`): not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::OnceLock;

    use crate::nacl_frame::{
        Decoder, Keys, Mode, Opener, ReplayGuard, Side, NONCE_LEN, PREFIX_LEN,
    };

    /// Fixed keys, derived once: an X25519 step per input would be most of
    /// the fuzzer's time.
    fn keys() -> Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            Keys::new(
                &crypto_box::SecretKey::from([1u8; 32]),
                &crypto_box::SecretKey::from([2u8; 32]).public_key(),
            )
        })
        .clone()
    }

    /// Feeds `bytes` to the mux frame decoder in pieces (sized by the first
    /// byte) and every frame to a server and a client session; must never
    /// panic, every frame must re-encode to the bytes it came from, the
    /// decoder must hold less than one whole frame after draining, and no
    /// stream may buffer more than its window.
    pub fn mux_frames(bytes: &[u8]) {
        use crate::mux::frame::{Decoder, HEADER_LEN, MAX_DATA};
        use crate::mux::session::{Limits, Session, Side};
        let step = usize::from(bytes.first().copied().unwrap_or(1)).max(1);
        let limits = Limits {
            max_streams: 8,
            window: 64 * 1024,
            ..Limits::default()
        };
        let mut sessions = [
            Some(Session::new(Side::Server, limits)),
            Some(Session::new(Side::Client, limits)),
        ];
        let mut decoder = Decoder::new();
        let mut consumed = 0usize;
        let mut held = Vec::new();
        for piece in bytes.chunks(step) {
            decoder.push(piece);
            held.extend_from_slice(piece);
            loop {
                let before = decoder.pending();
                let frame = match decoder.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(_) => return,
                };
                let used = before - decoder.pending();
                let mut again = bytes::BytesMut::new();
                frame.encode(&mut again);
                assert_eq!(&again[..], &held[consumed..consumed + used]);
                consumed += used;
                for slot in sessions.iter_mut() {
                    if let Some(session) = slot {
                        let id = frame.stream();
                        if session.receive(frame.clone()).is_err() {
                            *slot = None;
                        } else {
                            assert!(session.buffered(id) <= limits.window as usize);
                            assert!(session.streams() <= limits.max_streams);
                        }
                    }
                }
            }
            assert!(decoder.pending() < HEADER_LEN + MAX_DATA);
        }
    }

    /// Feeds `bytes` to a v1 decoder in two pieces (split at the first
    /// byte's value) and opens every frame under fixed keys, in the mode the
    /// second byte picks; must never panic, and never buffer more than
    /// header + nonce + the first-frame bound before a frame came out, or
    /// the bound after.
    pub fn decode_v1(bytes: &[u8]) {
        const FIRST: u32 = 1024;
        const MAX: u32 = 64 * 1024;
        let mode = match bytes.get(1) {
            Some(b) if b & 1 == 1 => Mode::Strict,
            _ => Mode::Compatible,
        };
        let mut decoder = Decoder::with_first_frame_limit(FIRST, MAX);
        // A fixed own prefix, so that a run depends on its input alone.
        let guard = ReplayGuard::new([0x81; PREFIX_LEN], Side::Server, mode);
        let mut opener = Opener::with_guard(keys(), guard);
        let cut = bytes
            .first()
            .map_or(0, |b| usize::from(*b).min(bytes.len()));
        let mut frames = 0usize;
        for part in [&bytes[..cut], &bytes[cut..]] {
            let mut input = part;
            while !input.is_empty() {
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => {
                        frames += 1;
                        let _ = opener.open(frame);
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
                let bound = if frames == 0 { FIRST } else { MAX };
                assert!(decoder.needed() <= NONCE_LEN + bound as usize);
            }
        }
        let _ = decoder.finish();
    }

    /// Drives a strict and a compatible receiver with nonces built from
    /// `bytes` (the next in sequence, a repeat, a gap, our own prefix,
    /// another prefix, raw bytes) and checks each verdict against a model
    /// of docs/v1-frame.md: strict accepts exactly one prefix marked as the
    /// client's, from counter 0, one by one; neither accepts our own prefix
    /// or the nonce it accepted last.
    pub fn v1_nonces(bytes: &[u8]) {
        let own = [0x81u8; PREFIX_LEN];
        let mut strict = ReplayGuard::new(own, Side::Server, Mode::Strict);
        let mut compatible = ReplayGuard::new(own, Side::Server, Mode::Compatible);
        let mut learned: Option<([u8; PREFIX_LEN], u128)> = None;
        let mut last: Option<[u8; NONCE_LEN]> = None;
        let mut last_compatible: Option<[u8; NONCE_LEN]> = None;
        let mut input = bytes;
        while let Some((&op, rest)) = input.split_first() {
            input = rest;
            let mut arg = || {
                let (&b, rest) = input.split_first().unwrap_or((&0, &[]));
                input = rest;
                b
            };
            let (base_prefix, base_counter) = last.map_or(([0x01; PREFIX_LEN], 0), |n| split(&n));
            let nonce = match op % 6 {
                0 => join(
                    base_prefix,
                    base_counter.wrapping_add(u64::from(last.is_some())),
                ),
                1 => last.unwrap_or_else(|| join(base_prefix, 0)),
                2 => join(base_prefix, base_counter.wrapping_add(2)),
                3 => join(own, u64::from(arg())),
                4 => join([arg(); PREFIX_LEN], u64::from(arg() % 2)),
                _ => {
                    let mut raw = [0u8; NONCE_LEN];
                    raw.iter_mut().for_each(|b| *b = arg());
                    raw
                }
            };
            let (prefix, counter) = split(&nonce);
            let expected = prefix != own
                && match learned {
                    None => prefix[0] & 0x80 == 0 && counter == 0,
                    Some((p, next)) => p == prefix && u128::from(counter) == next,
                };
            let verdict = strict.check_and_record(&nonce).is_ok();
            assert_eq!(verdict, expected, "strict on {nonce:02x?}");
            if verdict {
                learned = Some((prefix, u128::from(counter) + 1));
            }
            let accepted = compatible.check_and_record(&nonce).is_ok();
            assert!(!(accepted && (prefix == own || last_compatible == Some(nonce))));
            if accepted {
                last_compatible = Some(nonce);
            }
            last = Some(nonce);
        }
    }

    fn split(nonce: &[u8; NONCE_LEN]) -> ([u8; PREFIX_LEN], u64) {
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&nonce[..PREFIX_LEN]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&nonce[PREFIX_LEN..]);
        (prefix, u64::from_be_bytes(counter))
    }

    fn join(prefix: [u8; PREFIX_LEN], counter: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&prefix);
        nonce[PREFIX_LEN..].copy_from_slice(&counter.to_be_bytes());
        nonce
    }
}
