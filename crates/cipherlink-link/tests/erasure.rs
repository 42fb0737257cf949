//! Forward secrecy of a running link (docs §7): once the handshake is over
//! nothing a link holds can give back its handshake secrets or earlier keys.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cipherlink_link::fuzzing::{exchange, VECTOR_UNIX};
use cipherlink_link::proto::crypto::KemSecret;
use cipherlink_link::proto::rng::ErasingRng;
use cipherlink_link::wire::TransportKeys;
use cipherlink_link::{ClientKey, Connection, Entropy, ServerKey, Token};
use common::{params_fast, World};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A seeded generator (rewindable: its seed regenerates every draw) that
/// says when it is dropped.
struct Tracked {
    inner: StdRng,
    alive: Arc<AtomicBool>,
}

impl Entropy for Tracked {
    fn fill(&mut self, dst: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut self.inner, dst);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

fn tracked(seed: u64) -> (Box<Tracked>, Arc<AtomicBool>) {
    let alive = Arc::new(AtomicBool::new(true));
    let rng = Tracked {
        inner: StdRng::seed_from_u64(seed),
        alive: alive.clone(),
    };
    (Box::new(rng), alive)
}

/// The generator that drew `e`, the ML-KEM seed and `e_s` is gone once the
/// handshake completes, on both sides: the link keeps only a fast-key-erasure
/// generator seeded from it.
#[test]
fn the_handshake_generator_is_dropped_when_the_link_opens() {
    let world = World::new(params_fast());
    let now = Instant::now();
    let (crng, client_alive) = tracked(1);
    let (srng, server_alive) = tracked(2);
    let mut client =
        Connection::client(&world.client_cfg(&world.alice), crng, now, VECTOR_UNIX).unwrap();
    let mut server = Connection::server(world.endpoint.clone(), srng, now, VECTOR_UNIX);
    exchange(&mut client, &mut server, now);
    assert!(client.is_open() && server.is_open());
    assert!(!client_alive.load(Ordering::SeqCst), "client kept its RNG");
    assert!(!server_alive.load(Ordering::SeqCst), "server kept its RNG");
    // The link still has randomness for padding and keepalive.
    client.send(b"still padded").unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    server.handle_input(now, &wire);
    assert_eq!(server.recv_pending(), 12);
}

fn windows_of(data: &[u8]) -> std::collections::HashSet<&[u8]> {
    data.windows(8).collect()
}

/// What the generator holds after a draw contains no byte string it handed
/// out, and a generator rebuilt from that state gives other bytes: the
/// earlier draws cannot be reproduced from it.
#[test]
fn the_link_generator_cannot_reproduce_earlier_draws() {
    let mut rng = ErasingRng::from_seed([7u8; 32]);
    let mut drawn = vec![0u8; 300];
    rng.fill(&mut drawn);
    let state = rng.state();
    let seen = windows_of(&drawn);
    assert!(state.windows(8).all(|w| !seen.contains(w) || w == [0u8; 8]));
    // Rebuilt from the key it holds now: nothing of the earlier output.
    let mut again = ErasingRng::from_seed(state[..32].try_into().unwrap());
    let mut later = vec![0u8; 4096];
    again.fill(&mut later);
    assert!(later.windows(8).all(|w| !seen.contains(w)));
    // And the same seed does reproduce (the test would pass vacuously otherwise).
    let mut same = ErasingRng::from_seed([7u8; 32]);
    let mut first = vec![0u8; 300];
    same.fill(&mut first);
    assert_eq!(first, drawn);
}

fn wipes_itself<T: zeroize::ZeroizeOnDrop>() {}

/// Every type that holds a secret wipes it when dropped.
#[test]
fn secret_types_wipe_themselves() {
    wipes_itself::<TransportKeys>();
    wipes_itself::<KemSecret>();
    wipes_itself::<ErasingRng>();
    wipes_itself::<ServerKey>();
    wipes_itself::<Token>();
    wipes_itself::<ClientKey>();
}

/// The file texts the library writes are built in a buffer of exactly
/// their length (a buffer that grows leaves a copy of the secret in the
/// memory it frees), also for a long server name; a parsed token store
/// has room for its entries and one more (`invite` adds one), so neither
/// parsing nor that token moves the secrets.
#[test]
fn file_texts_and_parsed_stores_never_grow_their_buffers() {
    let mut r = StdRng::seed_from_u64(3);
    let key = ServerKey::generate(&mut r);
    let text = key.to_text();
    assert_eq!(text.capacity(), text.len(), "server key file");
    let mut store = cipherlink_link::TokenStore::new();
    let token = store.issue_with("alice", true, &mut r).unwrap();
    for i in 0..40 {
        store.issue(&format!("client-{i}"), &mut r).unwrap();
    }
    let file = cipherlink_link::ConnectionFile {
        name: "alice".into(),
        server: format!("{}.example:7443", "h".repeat(700)),
        server_key: *key.public(),
        token,
        tail_length: 64,
    };
    let text = file.to_text();
    assert_eq!(text.capacity(), text.len(), "connection file");
    let text = store.to_text();
    let parsed = cipherlink_link::TokenStore::parse(&text).unwrap();
    assert_eq!(parsed.entries().len(), 41);
    assert_eq!(parsed.entries_capacity(), 42, "token store entries");
}
