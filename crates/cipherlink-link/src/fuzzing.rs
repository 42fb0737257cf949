//! Entry points for `cargo fuzz` and the property tests, plus the documented
//! deterministic randomness of the test vectors (docs §9). Not a stable API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::config::LinkParams;
use crate::keys::{ClientKey, ServerKey, Token, TokenStore};
use crate::proto::crypto::hash;
use crate::proto::{ClientConfig, Connection, Entropy, Event, ServerEndpoint};

/// The vectors' randomness: block `i` is `SHA-256(seed ‖ i as u64 BE)`.
pub struct VectorRng {
    seed: Vec<u8>,
    block: u64,
    buf: [u8; 32],
    used: usize,
}

impl VectorRng {
    /// A stream for `seed`.
    pub fn new(seed: &[u8]) -> Self {
        Self {
            seed: seed.to_vec(),
            block: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl Entropy for VectorRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.used == 32 {
                self.buf = hash(&[&self.seed, &self.block.to_be_bytes()]);
                self.block += 1;
                self.used = 0;
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
    }
}

/// The unix time of the vectors.
pub const VECTOR_UNIX: u64 = 1_700_000_000;

/// The vectors' server key (`s = 0x01 × 32`).
pub fn vector_server_key() -> ServerKey {
    ServerKey::from_secret([1u8; 32])
}

/// The vectors' token (`T_id = 0x02 × 16`, `T_sec = 0x03 × 32`).
pub fn vector_token() -> Token {
    Token {
        id: [2u8; 16],
        secret: Zeroizing::new([3u8; 32]),
        client_key: None,
    }
}

/// The vectors' second client, "bob", whose token is bound to a client static
/// key (`T_id = 0x05 × 16`, `T_sec = 0x06 × 32`, `c = 0x04 × 32`).
pub fn vector_keyed_token() -> Token {
    Token {
        id: [5u8; 16],
        secret: Zeroizing::new([6u8; 32]),
        client_key: Some(ClientKey::from_secret([4u8; 32])),
    }
}

/// The vectors' parameters (`tail_length = 64`).
pub fn vector_params() -> LinkParams {
    LinkParams {
        tail_length: 64,
        ..LinkParams::default()
    }
}

/// A server endpoint knowing the vector tokens as "alice" and "bob".
pub fn vector_endpoint() -> Arc<ServerEndpoint> {
    let mut store = TokenStore::new();
    store
        .add("alice", vector_token())
        .unwrap_or_else(|e| unreachable!("vector token is valid: {e}"));
    store
        .add("bob", vector_keyed_token())
        .unwrap_or_else(|e| unreachable!("vector token is valid: {e}"));
    Arc::new(
        ServerEndpoint::new(vector_server_key(), store, vector_params())
            .unwrap_or_else(|e| unreachable!("vector parameters are valid: {e}")),
    )
}

/// The vectors' client configuration.
pub fn vector_client_config() -> ClientConfig {
    ClientConfig {
        server_key: *vector_server_key().public(),
        token: vector_token(),
        name: "alice".into(),
        params: vector_params(),
    }
}

/// The vectors' configuration for "bob" (token with a client key).
pub fn vector_keyed_client_config() -> ClientConfig {
    ClientConfig {
        token: vector_keyed_token(),
        name: "bob".into(),
        ..vector_client_config()
    }
}

/// Moves all pending bytes between two cores until neither has any.
pub fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
    let mut buf = Vec::new();
    for _ in 0..64 {
        let mut moved = false;
        a.poll_transmit(&mut buf);
        if !buf.is_empty() {
            b.handle_input(now, &buf);
            buf.clear();
            moved = true;
        }
        b.poll_transmit(&mut buf);
        if !buf.is_empty() {
            a.handle_input(now, &buf);
            buf.clear();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// A fresh client core with `cfg` and the vector server core, both on the
/// vector randomness: msg1 is ready in the client (docs §9).
pub fn vector_cores(cfg: &ClientConfig, now: Instant) -> (Connection, Connection) {
    let client = Connection::client(cfg, Box::new(VectorRng::new(b"client")), now, VECTOR_UNIX)
        .unwrap_or_else(|e| unreachable!("vector client: {e}"));
    let server = Connection::server(
        vector_endpoint(),
        Box::new(VectorRng::new(b"server")),
        now,
        VECTOR_UNIX,
    );
    (client, server)
}

/// A client and a server core after a completed handshake (vector keys and randomness).
pub fn connected_pair(now: Instant) -> (Connection, Connection) {
    let (mut client, mut server) = vector_cores(&vector_client_config(), now);
    exchange(&mut client, &mut server, now);
    (client, server)
}

/// Feeds `data` to a fresh server core in pieces; it must never answer or connect.
pub fn fuzz_server(data: &[u8]) {
    let now = Instant::now();
    let mut server = Connection::server(
        vector_endpoint(),
        Box::new(VectorRng::new(b"fuzz")),
        now,
        VECTOR_UNIX,
    );
    for (i, chunk) in data.chunks(97).enumerate() {
        server.handle_input(now + Duration::from_millis(i as u64), chunk);
    }
    server.handle_eof(now);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    // A forged first message needs the MAC under the server key: never answered.
    assert!(out.is_empty(), "server answered unauthenticated input");
    while let Some(ev) = server.poll_event() {
        assert!(
            !matches!(ev, Event::Connected { .. }),
            "server accepted noise"
        );
    }
}

/// Feeds `data` to a client core after a handshake; no data may be delivered.
pub fn fuzz_client_records(data: &[u8]) {
    let now = Instant::now();
    let (mut client, _server) = connected_pair(now);
    for chunk in data.chunks(61) {
        client.handle_input(now, chunk);
        let mut buf = [0u8; 256];
        assert_eq!(client.recv(&mut buf), 0, "client delivered forged data");
    }
    client.handle_eof(now);
    client.handle_timeout(now + Duration::from_secs(3600));
}
