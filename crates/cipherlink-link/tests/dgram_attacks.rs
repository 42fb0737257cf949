//! The datagram mode (docs §11) against an attacker: hostile lengths,
//! tables an attacker fills, timers it leaves behind, pieces it sends
//! from elsewhere. Each test failed on the code before its fix.
#![allow(clippy::unwrap_used)]

mod dgram_common;

use std::time::Duration;

use cipherlink_link::dgram::wire::Pieces;
use cipherlink_link::dgram::{DgramClient, DgramServer, DgramServerOptions};
use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::proto::crypto::HmacKey;
use cipherlink_link::proto::handshake::obfs_key;
use cipherlink_link::LinkParams;
use dgram_common::{addr, rng, Faults, Net, World};
use rand::{Rng, SeedableRng};

fn world() -> World {
    World::new(LinkParams::default())
}

/// `Pieces::cut` on a first message too short to cut in two (the
/// header alone, or one byte of `C1`) is an error, not an arithmetic
/// overflow.
#[test]
fn cutting_a_short_first_message_is_an_error() {
    let w = world();
    let k_obf = HmacKey::new(&obfs_key(w.key.public()));
    for len in 0..60 {
        let msg1 = vec![7u8; len];
        assert!(
            Pieces::cut(&msg1, &k_obf, None, &mut *rng(1)).is_err(),
            "{len} bytes cut"
        );
    }
}

/// Every length from 0 to 65,535, random bytes, to a server with a session
/// and to a client handshaking and open: nothing panics, nothing answers.
#[test]
fn every_length_to_every_state() {
    let w = world();
    let mut n = Net::new(&w, DgramServerOptions::default(), Faults::default(), 40);
    let mut r = rand::rngs::StdRng::seed_from_u64(40);
    let mut buf = vec![0u8; 65_535];
    r.fill(&mut buf[..]);
    for len in 0..=65_535usize {
        let mut d = buf[..len].to_vec();
        n.client.handle_datagram(n.now, &mut d);
    }
    n.connect();
    for len in 0..=65_535usize {
        let mut d = buf[..len].to_vec();
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, addr("192.0.2.77:7"), &mut d);
        let mut d = buf[..len].to_vec();
        n.client.handle_datagram(n.now, &mut d);
    }
    assert!(n.server.poll_transmit().is_none());
    assert!(n.client.poll_transmit().is_none());
    assert!(n.client.is_open());
    assert_eq!(n.server.sessions(), 1);
}

/// A second piece from another address is ignored and does not renew its
/// first piece's time: a waiting first piece lives at most 2 s (§11.3),
/// however many pieces someone else sends for it.
#[test]
fn a_second_piece_from_elsewhere_does_not_keep_a_first_piece_waiting() {
    let w = world();
    let t0 = std::time::Instant::now();
    let mut client = DgramClient::new(w.client_cfg(&w.alice), VECTOR_UNIX, t0, rng(50)).unwrap();
    let mut server = DgramServer::new(
        w.endpoint.clone(),
        DgramServerOptions::default(),
        t0,
        rng(51),
    );
    let (mut p0, p1) = (
        client.poll_transmit().unwrap(),
        client.poll_transmit().unwrap(),
    );
    let from = addr("192.0.2.1:4000");
    server.handle_datagram(t0, VECTOR_UNIX, from, &mut p0);
    let t1 = t0 + Duration::from_millis(1500);
    server.handle_timeout(t1);
    server.handle_datagram(t1, VECTOR_UNIX, addr("198.51.100.3:3"), &mut p1.clone());
    let t2 = t0 + Duration::from_millis(2500);
    server.handle_timeout(t2);
    server.handle_datagram(t2, VECTOR_UNIX, from, &mut p1.clone());
    assert_eq!(server.stats().accepted, 0, "a first piece outlived 2 s");
    assert!(server.poll_transmit().is_none());
}

/// A valid client that opens and closes sessions as fast as it can
/// leaves no timer behind each: the server's timer heap stays within a
/// bound of its open sessions, instead of growing with every session
/// opened in the last `max_next_in` (up to a day).
#[test]
fn closed_sessions_leave_no_timers_behind() {
    let w = world();
    let now = std::time::Instant::now();
    let mut server = DgramServer::new(
        w.endpoint.clone(),
        DgramServerOptions::default(),
        now,
        rng(60),
    );
    for i in 0..300u16 {
        let from = addr(&format!("192.0.2.1:{}", 1000 + i));
        let mut c = DgramClient::new(
            w.client_cfg(&w.alice),
            VECTOR_UNIX,
            now,
            rng(1000 + u64::from(i)),
        )
        .unwrap();
        while let Some(mut d) = c.poll_transmit() {
            server.handle_datagram(now, VECTOR_UNIX, from, &mut d);
        }
        while let Some((_, mut d)) = server.poll_transmit() {
            c.handle_datagram(now, &mut d);
        }
        assert!(c.is_open());
        c.close(cipherlink_link::CloseCode::Normal);
        while let Some(mut d) = c.poll_transmit() {
            server.handle_datagram(now, VECTOR_UNIX, from, &mut d);
        }
        while server.poll_event().is_some() {}
    }
    assert_eq!(server.sessions(), 0);
    let timers = server.timer_entries();
    assert!(timers <= 128, "{timers} timers for no session");
}

/// A normal close by the server (code 0, or 4 for a shutdown) is a normal
/// end at the client, as at the server (§11.5): not an error.
#[test]
fn a_normal_close_by_the_server_is_not_an_error_at_the_client() {
    use cipherlink_link::dgram::ClientEvent;
    use cipherlink_link::CloseCode;
    for (seed, code) in [(70, CloseCode::Normal), (71, CloseCode::Shutdown)] {
        let w = world();
        let mut n = Net::new(&w, DgramServerOptions::default(), Faults::default(), seed);
        n.connect();
        let sid = n.sid();
        n.server.close(sid, code);
        n.drive();
        assert!(n.client.is_closed());
        assert!(
            matches!(n.client_events.last(), Some(ClientEvent::Closed(None))),
            "{code:?}: {:?}",
            n.client_events.last()
        );
    }
}

/// A session that ends before its client's first record (its token
/// revoked while msg2 was lost) is not handed out again: the client's
/// resend no longer brings the old msg2, which would open a session the
/// server no longer has (and the client would learn only from its
/// keepalive, minutes later, that nobody is there).
#[test]
fn a_revoked_session_is_not_answered_again() {
    use cipherlink_link::dgram::ClientEvent;
    let w = world();
    let mut n = Net::new(&w, DgramServerOptions::default(), Faults::default(), 80);
    while let Some(mut d) = n.client.poll_transmit() {
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut d);
    }
    // msg2 is lost on the way.
    assert!(n.server.poll_transmit().is_some());
    assert_eq!(n.server.sessions(), 1);
    let mut store = cipherlink_link::TokenStore::new();
    store
        .issue("someone-else", &mut rand::rngs::StdRng::seed_from_u64(81))
        .unwrap();
    assert_eq!(w.endpoint.set_tokens(store), 1);
    n.step(Duration::from_millis(1));
    assert_eq!(n.server.sessions(), 0);
    n.run_until(Duration::from_secs(40), |n| n.client.is_closed());
    assert!(
        !n.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected)),
        "a ghost session opened: {:?}",
        n.client_events
    );
}
