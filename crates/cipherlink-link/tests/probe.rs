//! One close policy from byte 0 (docs §6), in the core on a virtual clock:
//! a server connection that is not accepted closes at the one time it drew
//! at accept, whatever it was sent, and never answers.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::{Connection, EndpointOptions, ServerEndpoint};
use common::{params_fast, probe_kinds, rng, World};

/// For each probe kind, the connection closes exactly at the deadline a
/// connection with the same seed drew at accept (and not a nanosecond
/// before), sends nothing, and reports nothing. Timers of its own before
/// that (a first message cut short gives its slot back after
/// `FIRST_MESSAGE_TIME`) change nothing a peer sees.
#[test]
fn every_probe_closes_at_the_deadline_drawn_at_accept() {
    let world = World::new(params_fast());
    let start = Instant::now();
    for (i, (kind, bytes)) in probe_kinds(&world).into_iter().enumerate() {
        let seed = 1000 + i as u64;
        let drawn = world.server(seed, start).poll_timeout().unwrap();
        let mut server = world.server(seed, start);
        // In pieces, at times before the deadline.
        for (k, chunk) in bytes.chunks(700).enumerate() {
            server.handle_input(start + Duration::from_millis(k as u64), chunk);
        }
        while let Some(t) = server.poll_timeout().filter(|&t| t < drawn) {
            server.handle_timeout(t);
            assert!(
                !server.is_closed(),
                "{kind}: closed at {t:?}, before {drawn:?}"
            );
        }
        assert_eq!(server.poll_timeout(), Some(drawn), "{kind}");
        assert!(!server.is_closed(), "{kind}: closed before its deadline");
        server.handle_timeout(drawn - Duration::from_nanos(1));
        assert!(!server.is_closed(), "{kind}: closed before its deadline");
        server.handle_timeout(drawn);
        assert!(server.is_closed(), "{kind}: not closed at its deadline");
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        assert!(out.is_empty(), "{kind}: answered {} bytes", out.len());
        assert!(server.poll_event().is_none(), "{kind}");
    }
}

/// The peer's own close ends any of them at once, the same way.
#[test]
fn every_probe_closes_when_the_peer_closes() {
    let world = World::new(params_fast());
    let now = Instant::now();
    for (i, (kind, bytes)) in probe_kinds(&world).into_iter().enumerate() {
        let mut server = world.server(2000 + i as u64, now);
        server.handle_input(now, &bytes);
        server.handle_eof(now);
        assert!(server.is_closed(), "{kind}");
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        assert!(out.is_empty(), "{kind}");
    }
}

/// A handshake slot is taken only by a first message whose MAC verified,
/// and given back when its handshake ends: with one slot, a first message
/// still arriving holds it, a second becomes a probe, and once the first
/// is done a third gets through.
#[test]
fn handshake_slots_are_for_first_messages_whose_mac_verified() {
    let world = World::new(params_fast());
    let mut store = cipherlink_link::TokenStore::new();
    store.add("alice", world.alice.clone()).unwrap();
    let options = EndpointOptions {
        max_handshakes: 1,
        ..EndpointOptions::default()
    };
    let endpoint = Arc::new(
        ServerEndpoint::with_options(world.key.clone(), store, params_fast(), options).unwrap(),
    );
    let now = Instant::now();
    let msg1 = |seed| {
        let mut c =
            Connection::client(&world.client_cfg(&world.alice), rng(seed), now, VECTOR_UNIX)
                .unwrap();
        let mut m = Vec::new();
        c.poll_transmit(&mut m);
        (c, m)
    };
    // Silent and random sockets take no slot.
    let mut silent = Connection::server(endpoint.clone(), rng(1), now, VECTOR_UNIX);
    silent.handle_input(now, &[0u8; 40]);
    let mut noise = Connection::server(endpoint.clone(), rng(2), now, VECTOR_UNIX);
    noise.handle_input(now, &[7u8; 3000]);
    assert_eq!(endpoint.handshakes_in_progress(), 0);
    // A first message still arriving holds the only slot.
    let (_c1, m1) = msg1(10);
    let mut slow = Connection::server(endpoint.clone(), rng(3), now, VECTOR_UNIX);
    slow.handle_input(now, &m1[..100]);
    assert_eq!(endpoint.handshakes_in_progress(), 1);
    let (_c2, m2) = msg1(11);
    let mut second = Connection::server(endpoint.clone(), rng(4), now, VECTOR_UNIX);
    second.handle_input(now, &m2);
    assert_eq!(second.probe_reason(), Some("no handshake slot"));
    // The slow one completes: the slot is free again.
    slow.handle_input(now, &m1[100..]);
    assert!(slow.is_open());
    assert_eq!(endpoint.handshakes_in_progress(), 0);
    let (_c3, m3) = msg1(12);
    let mut third = Connection::server(endpoint.clone(), rng(5), now, VECTOR_UNIX);
    third.handle_input(now, &m3);
    assert!(third.is_open());
}

/// An endpoint of `world`'s key with `max_handshakes` slots and a filter
/// of its own.
fn endpoint_with_slots(world: &World, max_handshakes: usize) -> Arc<ServerEndpoint> {
    let mut store = cipherlink_link::TokenStore::new();
    store.add("alice", world.alice.clone()).unwrap();
    let options = EndpointOptions {
        max_handshakes,
        private_replay: true,
        ..EndpointOptions::default()
    };
    Arc::new(
        ServerEndpoint::with_options(world.key.clone(), store, params_fast(), options).unwrap(),
    )
}

fn first_message(world: &World, seed: u64) -> Vec<u8> {
    let mut c = Connection::client(
        &world.client_cfg(&world.alice),
        rng(seed),
        Instant::now(),
        VECTOR_UNIX,
    )
    .unwrap();
    let mut m = Vec::new();
    c.poll_transmit(&mut m);
    m
}

/// The red-team PoC: one recorded first-message header (its 50 bytes pass
/// the MAC, and its mark is not in the replay filter until a whole message
/// decrypts) sent on many connections at once. One connection holds one
/// slot for it; every other copy is a probe, so a real client still gets
/// a slot.
#[test]
fn one_recorded_header_holds_at_most_one_handshake_slot() {
    let world = World::new(params_fast());
    let endpoint = endpoint_with_slots(&world, 8);
    let now = Instant::now();
    let recorded = first_message(&world, 20);
    let mut copies = Vec::new();
    for i in 0..64 {
        let mut s = Connection::server(endpoint.clone(), rng(100 + i), now, VECTOR_UNIX);
        s.handle_input(now, &recorded[..50]);
        copies.push(s);
    }
    assert_eq!(endpoint.handshakes_in_progress(), 1);
    let probes = copies
        .iter()
        .filter(|s| s.probe_reason() == Some("first message already in progress"))
        .count();
    assert_eq!(probes, 63);
    let real = first_message(&world, 21);
    let mut server = Connection::server(endpoint.clone(), rng(7), now, VECTOR_UNIX);
    server.handle_input(now, &real);
    assert_eq!(server.probe_reason(), None);
    assert!(server.is_open(), "a real client found no slot");
}

/// A header whose rest does not follow within `FIRST_MESSAGE_TIME` gives
/// its slot back and becomes a probe that still closes at the time drawn
/// at accept (a prober sees no difference); the slot goes to a real client.
#[test]
fn a_header_without_its_rest_gives_its_slot_back_in_time() {
    let world = World::new(params_fast());
    let endpoint = endpoint_with_slots(&world, 1);
    let start = Instant::now();
    let m = first_message(&world, 30);
    let drawn = Connection::server(endpoint.clone(), rng(5), start, VECTOR_UNIX)
        .poll_timeout()
        .unwrap();
    let mut slow = Connection::server(endpoint.clone(), rng(5), start, VECTOR_UNIX);
    slow.handle_input(start, &m[..60]);
    assert_eq!(endpoint.handshakes_in_progress(), 1);
    let rest_by = start + cipherlink_link::proto::FIRST_MESSAGE_TIME;
    assert_eq!(slow.poll_timeout(), Some(rest_by));
    slow.handle_timeout(rest_by);
    assert_eq!(endpoint.handshakes_in_progress(), 0);
    assert_eq!(
        slow.probe_reason(),
        Some("first message incomplete in time")
    );
    assert_eq!(slow.poll_timeout(), Some(drawn));
    // The rest arrives late: still a probe, silent, closing at its draw.
    slow.handle_input(rest_by, &m[60..]);
    let mut out = Vec::new();
    slow.poll_transmit(&mut out);
    assert!(out.is_empty());
    assert_eq!(slow.poll_timeout(), Some(drawn));
    let mut real = Connection::server(endpoint.clone(), rng(6), rest_by, VECTOR_UNIX);
    real.handle_input(rest_by, &first_message(&world, 31));
    assert!(real.is_open(), "{:?}", real.probe_reason());
}
