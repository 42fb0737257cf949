//! The protocol's numeric bounds (docs §4, §5, §8): records per key, record
//! bodies per type, timer settings, the token table, and what a malformed
//! file's error may quote.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Instant;

use cipherlink_link::fuzzing::{exchange, seal_first_client_record, VECTOR_UNIX};
use cipherlink_link::proto::RecordType;
use cipherlink_link::wire::{Flow, RecordReader, TransportKeys};
use cipherlink_link::{Connection, Error, Event, LinkParams, TokenStore};
use common::{closed_error, params_fast, rng, World};

/// A connected pair whose client exported its transport keys.
fn pair_with_keys(world: &World, seed: u64) -> (Connection, Connection, TransportKeys) {
    let now = Instant::now();
    let mut client =
        Connection::client(&world.client_cfg(&world.alice), rng(seed), now, VECTOR_UNIX).unwrap();
    client.export_keys();
    let mut server = world.server(seed + 1, now);
    exchange(&mut client, &mut server, now);
    assert!(client.is_open() && server.is_open());
    let keys = client.take_exported_keys().unwrap();
    (client, server, keys)
}

/// With `rekey_after_records = n`, every key protects exactly `n` records,
/// the last being the rekey record (before: `n` records and then the rekey
/// record, one over, which the peer refuses at 2^24).
#[test]
fn a_key_protects_exactly_rekey_after_records_records() {
    for n in [2u64, 3, 5] {
        let world = World::new(LinkParams {
            rekey_after_records: n,
            ..params_fast()
        });
        let (mut client, _server, keys) = pair_with_keys(&world, 60 + n);
        let mut wire = Vec::new();
        for i in 0..20u8 {
            client.send(&[i]).unwrap();
        }
        client.poll_transmit(&mut wire);
        // The reader switches keys after each rekey record, as the server does.
        let mut reader = RecordReader::new(&keys, Flow::ToServer);
        let (mut pos, mut under_key, mut rekeys) = (0, 0u64, 0);
        while let Some((len, ty)) = reader.next_record(&wire[pos..]).unwrap() {
            pos += len;
            under_key += 1;
            if ty == RecordType::Rekey {
                assert_eq!(under_key, n, "records under one key with n = {n}");
                under_key = 0;
                rekeys += 1;
            }
            assert!(
                under_key < n,
                "n = {n}: {under_key} records without a rekey"
            );
        }
        assert_eq!(pos, wire.len());
        assert!(rekeys >= 3, "n = {n}: {rekeys} rekeys");
    }
}

/// Ping and pong bodies are the 8-byte id, a close reason at most 200
/// bytes, a rekey record empty: a ping of 1000 bytes is not echoed as a
/// pong of 1000 bytes (a peer could make the other side send whatever it
/// sent), it ends the link as a protocol error.
#[test]
fn record_bodies_are_bounded_by_their_type() {
    let world = World::new(params_fast());
    for (i, (ty, body)) in [
        (RecordType::Ping, vec![7u8; 1000]),
        (RecordType::Ping, vec![7u8; 7]),
        (RecordType::Pong, vec![7u8; 9]),
        (RecordType::Close, vec![0u8; 202]),
        (RecordType::Close, vec![]),
        (RecordType::Rekey, vec![1u8]),
    ]
    .into_iter()
    .enumerate()
    {
        let (_client, mut server, keys) = pair_with_keys(&world, 80 + 2 * i as u64);
        server.handle_input(Instant::now(), &seal_first_client_record(&keys, ty, &body));
        let mut ev = Vec::new();
        while let Some(e) = server.poll_event() {
            ev.push(e);
        }
        assert!(
            matches!(closed_error(&ev), Some(Some(Error::Length { .. }))),
            "{ty:?} with {} bytes: {ev:?}",
            body.len()
        );
        assert!(server.is_closed());
    }
    // The bounds themselves pass.
    let (_client, mut server, keys) = pair_with_keys(&world, 99);
    server.handle_input(
        Instant::now(),
        &seal_first_client_record(&keys, RecordType::Ping, &[1u8; 8]),
    );
    assert!(server.is_open() && server.has_transmit());
}

/// A `PORT_*` setting that would overflow a deadline (`now + setting`) is
/// refused when parsed, not a panic at the first timer.
#[test]
fn timer_settings_that_overflow_a_deadline_are_refused() {
    for (name, value) in [
        ("PORT_MAX_NEXT_IN", "1e19"),
        ("PORT_MAX_TIMEOUT", "1e19"),
        ("PORT_DEFAULT_TIMEOUT", "1e19"),
        ("PORT_MAX_NEXT_IN", "86401"),
    ] {
        let env = |k: &str| (k == name).then(|| value.to_string());
        let err = LinkParams::from_env(env).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{name}={value}: {err}");
    }
    let env = |k: &str| (k == "PORT_MAX_NEXT_IN").then(|| "86400".to_string());
    assert!(LinkParams::from_env(env).is_ok());
    let huge = LinkParams {
        handshake_timeout: std::time::Duration::MAX,
        ..LinkParams::default()
    };
    assert!(huge.validate().is_err());
}

/// `DH(s, C)` of a token bound to a client key is computed once, when the
/// store is loaded, and not again for each handshake.
#[test]
fn a_client_key_dh_is_computed_once_per_load() {
    let endpoint = cipherlink_link::fuzzing::vector_endpoint();
    assert_eq!(endpoint.client_key_dh_count(), 1);
    let now = Instant::now();
    for seed in [&b"one"[..], b"two", b"three"] {
        let mut client = Connection::client(
            &cipherlink_link::fuzzing::vector_keyed_client_config(),
            Box::new(cipherlink_link::fuzzing::VectorRng::new(seed)),
            now,
            VECTOR_UNIX,
        )
        .unwrap();
        let mut server = Connection::server(endpoint.clone(), rng(1), now, VECTOR_UNIX);
        exchange(&mut client, &mut server, now);
        assert_eq!(
            server.poll_event(),
            Some(Event::Connected { peer: "bob".into() })
        );
    }
    assert_eq!(endpoint.client_key_dh_count(), 1);
}

/// A token store (or key file) without its header line starts with a
/// secret: the parse error says what is wrong without quoting it.
#[test]
fn a_missing_header_does_not_echo_a_secret() {
    let secret = "8f193c55d1afb07c55b4f3b09cef494978e84a90d22c771f74e372b76bf41c30";
    let store = format!("token alice 2a7bc1f9c027fd1a764e46d9e89f0cf1 {secret} active\n");
    let err = TokenStore::parse(&store).unwrap_err().to_string();
    assert!(err.contains("expected the header"), "{err}");
    assert!(!err.contains(secret), "{err}");
    let err = TokenStore::parse(&format!("cipherlink-link-tokens 1\n{secret} x y z w\n"))
        .unwrap_err()
        .to_string();
    assert!(!err.contains(secret), "{err}");
    let err = TokenStore::parse(&format!(
        "cipherlink-link-tokens 1\ntoken alice 2a7bc1f9c027fd1a764e46d9e89f0cf1 active {secret}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(!err.contains(secret), "{err}");
    let key = format!("secret {secret}\n");
    let err = cipherlink_link::ServerKey::parse(&key)
        .unwrap_err()
        .to_string();
    assert!(!err.contains(secret), "{err}");
    let file = format!("cipherlink-link 1\n{secret} x\n");
    let err = cipherlink_link::ConnectionFile::parse(&file)
        .unwrap_err()
        .to_string();
    assert!(!err.contains(secret), "{err}");
}

/// The seeds of the fuzz targets that reach past the MAC and the tags do
/// reach past them: a first message with a valid proof is answered and
/// connects, a record sealed under the link's keys is delivered.
#[test]
fn the_fuzz_seeds_get_past_the_mac_and_the_tags() {
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus");
    let read = |t: &str, f: &str| std::fs::read(format!("{corpus}/{t}/{f}")).unwrap();
    for seed in [
        "alice_valid",
        "bob_valid",
        "alice_no_proof",
        "unknown_token",
    ] {
        assert!(
            cipherlink_link::fuzzing::fuzz_server_msg1(&read("link_msg1", seed)),
            "{seed}: not answered"
        );
    }
    assert!(!cipherlink_link::fuzzing::fuzz_server_msg1(&read(
        "link_msg1",
        "short"
    )));
    assert_eq!(
        cipherlink_link::fuzzing::fuzz_records(&read("link_records", "data_hello")),
        5
    );
    assert_eq!(
        cipherlink_link::fuzzing::fuzz_records(&read("link_records", "rekey_then_data")),
        2
    );
}
