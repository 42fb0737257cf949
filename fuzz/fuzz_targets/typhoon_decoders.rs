//! SeasideVPN's TYPHOON parsers (cipherlink-typhoon), fed any datagram:
//! the client INIT parser under the vectors' server key, the server INIT
//! and message parsers under their session key, both raw and sealed under
//! that key (so that fuzzed flags and lengths authenticate), and the
//! session engines of both sides. Never a panic.
#![no_main]

use cipherlink_typhoon::wire::{self, ClientInit, Pad};
use cipherlink_typhoon::{Engine, ServerKey, SessionKey, TyphoonSettings};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use zeroize::Zeroizing;

/// The session key and server key of the vectors SeasideVPN's code made
/// (crates/cipherlink-typhoon/tests/vectors/typhoon-vectors.json).
const SESSION: [u8; 32] = [3, 38, 114, 137, 40, 73, 180, 206, 92, 84, 99, 154, 135, 19, 225, 100, 160, 33, 127, 200, 31, 192, 49, 110, 194, 236, 99, 131, 18, 103, 118, 148];
const SERVER: [u8; 40] = [71, 4, 78, 243, 32, 197, 210, 147, 244, 147, 186, 230, 42, 110, 89, 246, 223, 89, 188, 80, 102, 97, 188, 240, 230, 229, 239, 183, 132, 118, 114, 212, 255, 15, 152, 187, 86, 182, 191, 198];

fuzz_target!(|data: &[u8]| {
    let key = SessionKey::from_bytes(SESSION);
    let server = ServerKey::from_private(&SERVER);
    let _ = wire::parse_client_init(&server, data);
    let _ = wire::parse_server_init(&key, data);
    let _ = wire::parse_message(&key, data);
    // The same bytes as an authenticated plaintext: every flag and length.
    let mut sealed = Vec::new();
    key.seal_into(&[0u8; 24], data, &[], &mut sealed);
    let _ = wire::parse_server_init(&key, &sealed);
    let _ = wire::parse_message(&key, &sealed);
    let pad = Pad { nonce: [1u8; 24], tail: data.len() % 64 };
    if let Ok(m) = wire::data(&key, &pad, data) {
        assert_eq!(wire::parse_message(&key, &m).ok(), Some(wire::Message::Data(data.to_vec())));
    }
    // A server session and a client, fed the raw and sealed bytes.
    let init = ClientInit {
        session: key.clone(),
        packet_number: 7,
        client_type: 0,
        client_version: 0,
        next_in: 5_000,
        token: Zeroizing::new(Vec::new()),
        len: data.len(),
    };
    let rng = || Box::new(rand::rngs::StdRng::seed_from_u64(1));
    let s = TyphoonSettings::default();
    let mut e = Engine::server(s.clone(), &init, 1, rng(), 0);
    let mut c = Engine::client(s, *server.public(), b"t", rng(), 0).ok();
    for (t, d) in [(0u64, data), (6_000, &sealed[..]), (10_000_000, data)] {
        e.handle_timeout(t);
        e.handle_datagram(t, d);
        while e.poll_transmit().is_some() || e.poll_event().is_some() {}
        if let Some(c) = c.as_mut() {
            c.handle_timeout(t);
            c.handle_datagram(t, d);
            while c.poll_transmit().is_some() || c.poll_event().is_some() {}
        }
    }
});
