//! The sans-IO core on a virtual clock: round trips, refusals, tampering,
//! replays, probes, keepalive and rekeying.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::{Duration, Instant};

use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::{Connection, Error, Event, KeepaliveConfig, LinkParams, ServerKey};
use common::{closed_error, params_fast, rng, Pair, World};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

#[test]
fn round_trips_of_0_1_64k_and_16m_bytes() {
    let world = World::new(params_fast());
    for (i, n) in [0usize, 1, 64 * 1024, 16 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let mut p = Pair::new(&world, 100 + i as u64);
        assert!(p.client.is_open() && p.server.is_open());
        assert_eq!(p.server.peer(), Some("alice"));
        let data = pattern(n);
        let got = p.transfer_c2s(&data);
        assert!(
            got == data,
            "{n} bytes: delivered {} bytes, not equal",
            got.len()
        );
        // And back, then a clean two-sided close.
        let mut echoed = Vec::new();
        let mut sent = 0;
        let mut buf = vec![0u8; 65536];
        while sent < got.len() || p.client.recv_pending() > 0 {
            sent += p.server.send(&got[sent..]).unwrap();
            p.drive();
            loop {
                let k = p.client.recv(&mut buf);
                if k == 0 {
                    break;
                }
                echoed.extend_from_slice(&buf[..k]);
            }
        }
        assert!(echoed == data);
        p.client.close_write();
        p.drive();
        assert!(p.server_events.contains(&Event::PeerFinished));
        assert!(p.server.recv_finished());
        p.server.close_write();
        p.drive();
        assert!(p.client.is_closed() && p.server.is_closed());
        assert_eq!(closed_error(&p.client_events), Some(None));
        assert_eq!(closed_error(&p.server_events), Some(None));
    }
}

#[test]
fn unknown_and_revoked_tokens_are_refused() {
    let world = World::new(params_fast());
    let now = Instant::now();
    let mut unknown = world.alice.clone();
    unknown.id[0] ^= 1;
    for (seed, token, why) in [
        (1, unknown, "unknown token"),
        (2, world.mallory.clone(), "revoked token"),
    ] {
        let mut client =
            Connection::client(&world.client_cfg(&token), rng(seed), now, VECTOR_UNIX).unwrap();
        let mut server = world.server(100 + seed, now);
        cipherlink_link::fuzzing::exchange(&mut client, &mut server, now);
        assert_eq!(
            client.poll_event(),
            Some(Event::Closed {
                error: Some(Error::Refused)
            })
        );
        assert!(server.is_closed() && server.probe_reason() == Some(why));
        assert!(!server.is_open() && server.peer().is_none());
    }
    // Right id, wrong secret: refused too.
    let mut forged = world.alice.clone();
    forged.secret[0] ^= 1;
    let mut client =
        Connection::client(&world.client_cfg(&forged), rng(3), now, VECTOR_UNIX).unwrap();
    let mut server = world.server(4, now);
    cipherlink_link::fuzzing::exchange(&mut client, &mut server, now);
    assert_eq!(
        client.poll_event(),
        Some(Event::Closed {
            error: Some(Error::Refused)
        })
    );
    assert_eq!(server.probe_reason(), Some("wrong token proof"));
}

#[test]
fn wrong_server_key_gets_silence_then_a_client_timeout() {
    let world = World::new(params_fast());
    let now = Instant::now();
    let mut cfg = world.client_cfg(&world.alice);
    cfg.server_key = *ServerKey::from_secret([9; 32]).public();
    let mut client = Connection::client(&cfg, rng(5), now, VECTOR_UNIX).unwrap();
    let mut server = world.server(6, now);
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);
    server.handle_input(now, &msg1);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(out.is_empty(), "server answered a msg1 for another key");
    assert_eq!(server.probe_reason(), Some("first-message MAC"));
    let t = client.poll_timeout().unwrap();
    client.handle_timeout(t);
    assert_eq!(
        client.poll_event(),
        Some(Event::Closed {
            error: Some(Error::HandshakeTimeout)
        })
    );
    // The probe closes by itself, without a word, within the documented bounds.
    let until = server.poll_timeout().unwrap();
    assert!(until <= now + world.params.server_close_window.1);
    server.handle_timeout(until);
    assert!(server.is_closed());
    server.poll_transmit(&mut out);
    assert!(out.is_empty());
}

#[test]
fn replayed_first_message_gets_no_reply() {
    let world = World::new(params_fast());
    let p = Pair::new(&world, 10);
    assert!(p.server.is_open());
    let msg1_len = p.c2s_log.len();
    let now = p.now;
    let mut replay = world.server(11, now);
    replay.handle_input(now, &p.c2s_log[..msg1_len]);
    let mut out = Vec::new();
    replay.poll_transmit(&mut out);
    assert!(out.is_empty());
    assert_eq!(replay.probe_reason(), Some("replayed first message"));
    assert!(replay.poll_event().is_none());
}

#[test]
fn old_first_message_fails_the_time_window() {
    let world = World::new(params_fast());
    let now = Instant::now();
    let mut client = Connection::client(
        &world.client_cfg(&world.alice),
        rng(12),
        now,
        VECTOR_UNIX - 3 * 3600,
    )
    .unwrap();
    let mut server = world.server(13, now);
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);
    server.handle_input(now, &msg1);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(out.is_empty());
    assert_eq!(server.probe_reason(), Some("first-message MAC"));
}

/// A client→server record stream after the handshake, and its records' boundaries.
fn records(p: &mut Pair, messages: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
    let mut wire = Vec::new();
    let mut ends = Vec::new();
    for m in messages {
        p.client.send(m).unwrap();
        p.client.poll_transmit(&mut wire);
        ends.push(wire.len());
    }
    (wire, ends)
}

#[test]
fn replayed_record_is_detected_and_not_delivered() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 20);
    let (wire, ends) = records(&mut p, &[b"first", b"second"]);
    p.server.handle_input(p.now, &wire[..ends[0]]);
    let mut buf = [0u8; 64];
    assert_eq!(p.server.recv(&mut buf), 5);
    // The same record again.
    p.server.handle_input(p.now, &wire[..ends[0]]);
    assert_eq!(p.server.recv(&mut buf), 0);
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::Closed { error: Some(_) })
    ));
    assert!(p.server.is_closed());
}

#[test]
fn reordered_records_are_detected() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 21);
    let (wire, ends) = records(&mut p, &[b"one", b"two"]);
    p.server.handle_input(p.now, &wire[ends[0]..ends[1]]);
    p.server.handle_input(p.now, &wire[..ends[0]]);
    let mut buf = [0u8; 64];
    assert_eq!(p.server.recv(&mut buf), 0);
    assert!(p.server.is_closed());
}

#[test]
fn truncated_record_and_missing_close_are_errors() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 22);
    let (wire, ends) = records(&mut p, &[b"complete", b"cut short"]);
    p.server.handle_input(p.now, &wire[..ends[1] - 3]);
    p.server.handle_eof(p.now);
    let mut buf = [0u8; 64];
    assert_eq!(p.server.recv(&mut buf), 8);
    assert_eq!(p.server.recv(&mut buf), 0);
    let mut ev = Vec::new();
    while let Some(e) = p.server.poll_event() {
        ev.push(e);
    }
    assert_eq!(closed_error(&ev), Some(Some(Error::Truncated)));
}

#[test]
fn a_flipped_bit_anywhere_in_a_record_is_detected_never_delivered() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 23);
    let (wire, _) = records(&mut p, &[b"the secret payload"]);
    let mut close = Vec::new();
    // A following close record: a desynchronised length then runs into it.
    p.client.close_write();
    p.client.poll_transmit(&mut close);
    for bit in 0..wire.len() * 8 {
        let mut server = {
            // The same seeds replay the same keys and bytes; a fresh endpoint
            // (same server key) so its replay filter has not seen this msg1.
            let world = World::new(params_fast());
            let q = Pair::new(&world, 23);
            q.server
        };
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let now = p.now;
        server.handle_input(now, &bad);
        server.handle_input(now, &close);
        server.handle_eof(now);
        let mut buf = [0u8; 64];
        assert_eq!(server.recv(&mut buf), 0, "bit {bit}: data delivered");
        let mut ev = Vec::new();
        while let Some(e) = server.poll_event() {
            ev.push(e);
        }
        let err = closed_error(&ev);
        assert!(
            matches!(err, Some(Some(_))),
            "bit {bit}: not detected: {err:?}"
        );
    }
}

#[test]
fn a_flipped_bit_in_either_handshake_message_fails() {
    let world = World::new(params_fast());
    let now = Instant::now();
    let cfg = world.client_cfg(&world.alice);
    let msg = |seed| {
        let mut c = Connection::client(&cfg, rng(seed), now, VECTOR_UNIX).unwrap();
        let mut m = Vec::new();
        c.poll_transmit(&mut m);
        (c, m)
    };
    let (_, msg1) = msg(30);
    // msg1: every byte, one bit each (the server must stay silent).
    for i in 0..msg1.len() {
        let mut bad = msg1.clone();
        bad[i] ^= 1 << (i % 8);
        let mut server = world.server(31, now);
        server.handle_input(now, &bad);
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        assert!(out.is_empty(), "msg1 byte {i}: server answered");
        assert!(server.poll_event().is_none());
    }
    // msg2: every byte, one bit each (the client must fail).
    let (_, m1) = msg(32);
    let mut server = world.server(33, now);
    server.handle_input(now, &m1);
    let mut msg2 = Vec::new();
    server.poll_transmit(&mut msg2);
    assert!(!msg2.is_empty());
    for i in 0..msg2.len() {
        let (mut client, _) = msg(32);
        let mut bad = msg2.clone();
        bad[i] ^= 1 << (i % 8);
        client.handle_input(now, &bad);
        client.handle_eof(now);
        assert!(!client.is_open(), "msg2 byte {i}: accepted");
        match client.poll_event() {
            Some(Event::Closed { error: Some(_) }) => {}
            other => panic!("msg2 byte {i}: {other:?}"),
        }
    }
}

#[test]
fn random_bytes_get_no_reply() {
    let world = World::new(params_fast());
    let now = Instant::now();
    for seed in 0..50u64 {
        let mut r = rng(1000 + seed);
        let mut noise = vec![0u8; 50 + (seed as usize * 97) % 4000];
        rand::RngCore::fill_bytes(&mut r, &mut noise);
        let mut server = world.server(seed, now);
        server.handle_input(now, &noise);
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        assert!(out.is_empty());
        assert!(server.poll_event().is_none());
        assert!(server.probe_reason().is_some() || server.is_closed());
    }
}

fn keepalive_params() -> LinkParams {
    LinkParams {
        keepalive: KeepaliveConfig {
            min_next_in: Duration::from_secs(8),
            max_next_in: Duration::from_secs(32),
            min_timeout: Duration::from_secs(16),
            max_timeout: Duration::from_secs(32),
            default_timeout: Duration::from_secs(24),
            max_retries: 5,
        },
        tail_length: 64,
        ..LinkParams::default()
    }
}

#[test]
fn silent_peer_is_declared_gone_after_the_configured_retries() {
    let params = keepalive_params();
    let world = World::new(params.clone());
    let mut p = Pair::new(&world, 40);
    let start = p.now;
    p.client_alive = false;
    let before = p.s2c_log.len();
    p.run_for(Duration::from_secs(3600));
    assert!(p.server.is_closed());
    assert_eq!(
        closed_error(&p.server_events),
        Some(Some(Error::PeerGone { retries: 5 }))
    );
    // One ping, five retries, then the close record: seven records.
    let k = &params.keepalive;
    let bound = k.max_next_in + k.max_timeout * (k.max_retries + 1);
    let took = p.now - start;
    assert!(took <= bound, "took {took:?} > {bound:?}");
    assert!(took >= k.min_next_in + k.min_timeout * (k.max_retries + 1));
    assert!(p.s2c_log.len() > before);
}

#[test]
fn hours_of_idle_keepalive_on_a_virtual_clock() {
    let world = World::new(keepalive_params());
    let mut p = Pair::new(&world, 41);
    let c0 = p.c2s_log.len();
    p.run_for(Duration::from_secs(10 * 3600));
    assert!(p.client.is_open() && p.server.is_open());
    assert!(closed_error(&p.server_events).is_none());
    // Each side pings every 8-32 s: 10 hours is well over 1000 pings.
    assert!(p.c2s_log.len() - c0 > 1000 * 40);
    // And data still flows afterwards.
    assert_eq!(p.transfer_c2s(b"still here"), b"still here");
}

#[test]
fn rekeying_keeps_the_stream_working() {
    let params = LinkParams {
        rekey_after_records: 3,
        rekey_after_bytes: 1000,
        tail_length: 16,
        ..LinkParams::default()
    };
    let world = World::new(params);
    let mut p = Pair::new(&world, 42);
    let data = pattern(200_000);
    assert!(p.transfer_c2s(&data) == data);
    for i in 0..20u8 {
        assert_eq!(p.transfer_c2s(&[i; 10]), [i; 10]);
    }
}

#[test]
fn env_parameters_use_port_names() {
    let env = |k: &str| match k {
        "PORT_MIN_NEXT_IN" => Some("8.0".to_string()),
        "PORT_MAX_NEXT_IN" => Some("32.0".to_string()),
        "PORT_MIN_TIMEOUT" => Some("16".to_string()),
        "PORT_MAX_TIMEOUT" => Some("32".to_string()),
        "PORT_DEFAULT_TIMEOUT" => Some("24".to_string()),
        "PORT_MAX_RETRIES" => Some("5".to_string()),
        "PORT_TAIL_LENGTH" => Some("128".to_string()),
        _ => None,
    };
    let p = LinkParams::from_env(env).unwrap();
    assert_eq!(p.keepalive, keepalive_params().keepalive);
    assert_eq!(p.tail_length, 128);
    let bad = |k: &str| (k == "PORT_MIN_NEXT_IN").then(|| "1000".to_string());
    assert!(LinkParams::from_env(bad).is_err());
    let bad = |k: &str| (k == "PORT_TAIL_LENGTH").then(|| "100000".to_string());
    assert!(LinkParams::from_env(bad).is_err());
}

#[test]
fn an_aborted_link_ends_at_the_peer_as_an_error_naming_the_reason() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 41);
    p.server
        .abort(cipherlink_link::CloseCode::Aborted, "service unreachable");
    let mut wire = Vec::new();
    p.server.poll_transmit(&mut wire);
    p.client.handle_input(p.now, &wire);
    let mut ev = Vec::new();
    while let Some(e) = p.client.poll_event() {
        ev.push(e);
    }
    assert_eq!(
        closed_error(&ev),
        Some(Some(Error::PeerClosed {
            code: cipherlink_link::CloseCode::Aborted,
            reason: "service unreachable".into()
        }))
    );
}
