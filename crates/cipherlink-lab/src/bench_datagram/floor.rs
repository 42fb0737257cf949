//! The public-key floor of a handshake: what one X25519 costs here (the
//! x25519-dalek that TYPHOON's keys use), and how many each handshake
//! needs, both ends together. A handshake cannot cost less CPU than that.

use std::time::Instant;

use rand::RngCore;
use serde::Serialize;

/// X25519 operations of one TYPHOON handshake: the client's ephemeral key,
/// its DH with the server key, the server's DH with the ephemeral.
pub const TYPHOON_X25519: u32 = 3;
/// X25519 operations of one WireGuard (Noise IK) handshake: two ephemeral
/// keys and six DH (es, ee and se on each side; wireguard-go computes ss
/// once, when the peer is added).
pub const WIREGUARD_X25519: u32 = 8;

/// The floor, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// One X25519 (scalar multiplication of a point), microseconds.
    pub x25519_us: f64,
    /// X25519 operations per TYPHOON handshake.
    pub typhoon_x25519_ops: u32,
    /// X25519 operations per WireGuard handshake.
    pub wireguard_x25519_ops: u32,
}

/// Times `rounds` X25519 operations.
pub(super) fn measure(rounds: u32) -> Floor {
    let mut secret = [0u8; 32];
    let mut peer = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    rand::rng().fill_bytes(&mut peer);
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(peer));
    let mut s = x25519_dalek::StaticSecret::from(secret);
    let rounds = rounds.max(1);
    let start = Instant::now();
    for _ in 0..rounds {
        let shared = s.diffie_hellman(&peer);
        // Each result keys the next: no operation can be skipped.
        s = x25519_dalek::StaticSecret::from(*shared.as_bytes());
    }
    let x25519_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    std::hint::black_box(&s);
    Floor {
        x25519_us,
        typhoon_x25519_ops: TYPHOON_X25519,
        wireguard_x25519_ops: WIREGUARD_X25519,
    }
}
