//! Cookies (docs §11.3), after WireGuard's: under load, the server does no
//! public-key work for a first message until its sender proves it receives
//! at its address. The cookie is `HMAC(secret, address)[0..16]` with a
//! secret that changes every two minutes (the previous one still counts),
//! so the server keeps no state per address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::wire::first16;
use crate::proto::crypto::hmac;
use crate::proto::Entropy;

/// A cookie secret's life.
pub const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(120);
/// The load is counted over windows this long.
const LOAD_WINDOW: Duration = Duration::from_secs(1);

/// The server's cookie secrets and its load.
pub struct CookieJar {
    current: Zeroizing<[u8; 32]>,
    previous: Zeroizing<[u8; 32]>,
    rotated: Instant,
    window_start: Instant,
    handshakes: u32,
    replies: u32,
    /// Handshakes per second beyond which a cookie is required.
    threshold: u32,
    /// Cookie replies per second at most (they cost an HMAC and an AEAD
    /// each; beyond this, first messages get silence).
    max_replies: u32,
}

fn draw(rng: &mut dyn Entropy) -> Zeroizing<[u8; 32]> {
    let mut s = Zeroizing::new([0u8; 32]);
    rng.fill(&mut s[..]);
    s
}

fn address_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut b = match addr {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

impl CookieJar {
    /// Fresh secrets; cookies are required beyond `threshold` handshakes a
    /// second (0: always), and at most `max_replies` are sent a second.
    pub fn new(now: Instant, threshold: u32, max_replies: u32, rng: &mut dyn Entropy) -> Self {
        Self {
            current: draw(rng),
            previous: draw(rng),
            rotated: now,
            window_start: now,
            handshakes: 0,
            replies: 0,
            threshold,
            max_replies,
        }
    }

    fn roll(&mut self, now: Instant, rng: &mut dyn Entropy) {
        if now.saturating_duration_since(self.rotated) >= COOKIE_SECRET_LIFE {
            self.previous = std::mem::replace(&mut self.current, draw(rng));
            self.rotated = now;
        }
        if now.saturating_duration_since(self.window_start) >= LOAD_WINDOW {
            self.window_start = now;
            self.handshakes = 0;
            self.replies = 0;
        }
    }

    /// Whether a first message from now on needs a cookie.
    pub fn required(&mut self, now: Instant, rng: &mut dyn Entropy) -> bool {
        self.roll(now, rng);
        self.handshakes >= self.threshold
    }

    /// Counts one handshake's public-key work.
    pub fn count_handshake(&mut self) {
        self.handshakes = self.handshakes.saturating_add(1);
    }

    /// The cookie of `addr` under the current secret.
    pub fn cookie(&self, addr: &SocketAddr) -> [u8; 16] {
        cookie_under(&self.current, &address_bytes(addr))
    }

    /// Whether `q` proves a cookie of `addr` (current or previous secret) for `mark`.
    pub fn check(&self, addr: &SocketAddr, mark: &[u8; 16], q: &[u8]) -> bool {
        let a = address_bytes(addr);
        let now = cookie_under(&self.current, &a);
        let before = cookie_under(&self.previous, &a);
        // Both, so that timing does not tell which.
        let x = super::wire::proves_cookie(&now, mark, q);
        let y = super::wire::proves_cookie(&before, mark, q);
        x | y
    }

    /// Takes one cookie reply from this second's budget.
    pub fn take_reply(&mut self) -> bool {
        if self.replies >= self.max_replies {
            return false;
        }
        self.replies += 1;
        true
    }

    /// When the secret rotates next.
    pub fn next_rotation(&self) -> Instant {
        self.rotated + COOKIE_SECRET_LIFE
    }
}

/// `HMAC(secret, address ‖ port)[0..16]`.
fn cookie_under(secret: &[u8; 32], address: &[u8]) -> [u8; 16] {
    first16(&hmac(secret, &[address]))
}
