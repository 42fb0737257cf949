//! The link's datagram mode (docs §11) on a virtual clock: handshakes and
//! data through loss, duplication and reordering; replays, probes, cookies,
//! address changes, keepalive, revocation and the session cap.
#![allow(clippy::unwrap_used)]

mod dgram_common;

use std::collections::HashSet;
use std::time::Duration;

use cipherlink_link::dgram::wire::{HANDSHAKE_DATAGRAM, MSG2_MIN};
use cipherlink_link::dgram::{
    ClientEvent, DgramClient, DgramServer, DgramServerOptions, ServerEvent,
};
use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::{Error, LinkParams, Token, TokenStore};
use dgram_common::{addr, rng, Faults, Net, World};
use rand::{Rng, SeedableRng};

fn world() -> World {
    World::new(LinkParams::default())
}

fn opts() -> DgramServerOptions {
    DgramServerOptions::default()
}

#[test]
fn handshake_and_data_both_ways() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 1);
    n.connect();
    // Two pieces out, one msg2 back, each within the handshake size.
    assert_eq!(n.c2s.len(), 2);
    assert_eq!(n.s2c.len(), 1);
    assert!(n.c2s.iter().all(|d| d.len() <= HANDSHAKE_DATAGRAM));
    assert!((MSG2_MIN..=HANDSHAKE_DATAGRAM).contains(&n.s2c[0].1.len()));
    assert!(n.s2c[0].1.len() < n.c2s[0].len() + n.c2s[1].len());
    let sid = n.sid();
    for i in 0..50u32 {
        n.client.send(&i.to_be_bytes()).unwrap();
        n.server.send(sid, &(1000 + i).to_be_bytes()).unwrap();
    }
    n.drive();
    let want_s: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let want_c: Vec<Vec<u8>> = (0..50u32)
        .map(|i| (1000 + i).to_be_bytes().to_vec())
        .collect();
    assert_eq!(n.server_data(), want_s);
    assert_eq!(n.client_data(), want_c);
}

/// Through 30% loss, 20% duplication and 30% reordering: the handshake
/// completes by resending, and what arrives arrives intact and once.
#[test]
fn lossy_network_delivers_each_datagram_at_most_once() {
    let w = world();
    let faults = Faults {
        loss: 0.3,
        duplicate: 0.2,
        reorder: 0.3,
    };
    for seed in 0..8 {
        let mut n = Net::new(&w, opts(), faults, 100 + seed);
        n.connect();
        for i in 0..400u32 {
            n.client.send(&i.to_be_bytes()).unwrap();
        }
        n.drive();
        let got = n.server_data();
        let mut seen = HashSet::new();
        for d in &got {
            let i = u32::from_be_bytes(d[..4].try_into().unwrap());
            assert!(i < 400, "seed {seed}: corrupt {d:?}");
            assert!(seen.insert(i), "seed {seed}: {i} delivered twice");
        }
        // About 70% arrive; far fewer means something else dropped them.
        assert!(got.len() > 200, "seed {seed}: only {} of 400", got.len());
    }
}

/// Every datagram the client ever sent, replayed to the server from the
/// client's address and from another, opens nothing and delivers nothing
/// twice; the resent first message gets msg2 only as often as its bytes pay for.
#[test]
fn replays_are_silent_and_never_amplify() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 2);
    n.connect();
    for i in 0..5u8 {
        n.client.send(&[i; 10]).unwrap();
    }
    n.drive();
    let delivered = n.server_data().len();
    let sent_before = n.s2c.len();
    let recorded = n.c2s.clone();
    // From another address: nothing at all.
    for d in &recorded {
        let mut x = d.clone();
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, addr("198.51.100.9:5"), &mut x);
    }
    assert!(
        n.server.poll_transmit().is_none(),
        "answered a replay from elsewhere"
    );
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    // Everything, many times: data never twice, never more out than in.
    for _ in 0..20 {
        for d in &recorded {
            let mut x = d.clone();
            bytes_in += x.len();
            n.server
                .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut x);
            while let Some((_, o)) = n.server.poll_transmit() {
                bytes_out += o.len();
            }
        }
    }
    while let Some(e) = n.server.poll_event() {
        assert!(
            !matches!(e, ServerEvent::Data { .. } | ServerEvent::Accepted { .. }),
            "{e:?}"
        );
    }
    assert!(bytes_out <= bytes_in, "{bytes_out} out for {bytes_in} in");
    assert_eq!(n.server_data().len(), delivered);
    assert_eq!(n.s2c.len(), sent_before);
}

/// While msg2 may have been lost (no record from the client yet), a resent
/// first piece, far shorter than msg2, brings msg2 again only once the
/// resent bytes pay for it: resends never amplify.
#[test]
fn a_resent_first_piece_never_amplifies() {
    let w = world();
    // A seed whose first piece is short (the cut is drawn).
    let (mut n, pieces) = (200..)
        .map(|seed| {
            let mut n = Net::new(&w, opts(), Faults::default(), seed);
            let pieces: Vec<Vec<u8>> = std::iter::from_fn(|| n.client.poll_transmit()).collect();
            (n, pieces)
        })
        .find(|(_, p)| p[0].len() < 400)
        .unwrap();
    for d in &pieces {
        let mut x = d.clone();
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut x);
    }
    let msg2 = n.server.poll_transmit().unwrap().1;
    assert!(
        pieces[0].len() * 2 < msg2.len(),
        "this seed's first piece is too long to tell"
    );
    let (mut bytes_in, mut bytes_out, mut copies) = (0usize, 0usize, 0);
    for _ in 0..40 {
        let mut x = pieces[0].clone();
        bytes_in += x.len();
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut x);
        while let Some((_, o)) = n.server.poll_transmit() {
            assert_eq!(o, msg2);
            bytes_out += o.len();
            copies += 1;
        }
        assert!(bytes_out <= bytes_in, "{bytes_out} out for {bytes_in} in");
    }
    // Some resends, and at most the three §11 allows.
    assert!((1..=3).contains(&copies), "{copies} copies");
}

/// A handshake whose msg2 is lost: the client's resend gets the same msg2
/// (no second session), and the session then works.
#[test]
fn a_lost_msg2_is_sent_again() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 3);
    // Deliver the pieces by hand and drop what the server answers.
    while let Some(mut d) = n.client.poll_transmit() {
        n.c2s.push(d.clone());
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut d);
    }
    let lost = n.server.poll_transmit().unwrap();
    assert!(n.server.poll_transmit().is_none());
    n.connect();
    assert_eq!(n.s2c.last().unwrap().1, lost.1, "a different msg2");
    let accepted = n
        .server_events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Accepted { .. }))
        .count();
    assert_eq!(accepted + 1, 1 + n.server.sessions());
    n.client.send(b"after").unwrap();
    n.drive();
    assert_eq!(n.server_data(), vec![b"after".to_vec()]);
}

/// Under load (cookies always required): the first message gets a cookie
/// reply, shorter than it, and no public-key work; the client answers with
/// the cookie's proof at once and the session opens. A cookie taken at one
/// address does not open a session from another.
#[test]
fn cookies_make_a_source_prove_its_address() {
    let w = world();
    let options = DgramServerOptions {
        cookie_threshold: 0,
        ..opts()
    };
    let mut n = Net::new(&w, options.clone(), Faults::default(), 4);
    n.connect();
    assert_eq!(n.server.stats().cookie_replies, 1);
    let reply = &n.s2c[0].1;
    assert!(
        reply.len() < n.c2s[0].len(),
        "cookie reply {} bytes",
        reply.len()
    );
    assert_eq!(n.c2s.len(), 4, "two pieces, then both again with the proof");

    // A spoofing client: its pieces arrive from A, the cookie reply goes
    // to A, and it sends the proven pieces from B.
    let mut m = Net::new(&w, options, Faults::default(), 5);
    let mut pieces = Vec::new();
    while let Some(d) = m.client.poll_transmit() {
        pieces.push(d);
    }
    for d in &pieces {
        let mut x = d.clone();
        m.server
            .handle_datagram(m.now, VECTOR_UNIX, addr("192.0.2.50:1"), &mut x);
    }
    let (_, mut cookie) = m.server.poll_transmit().unwrap();
    m.client.handle_datagram(m.now, &mut cookie);
    while let Some(mut d) = m.client.poll_transmit() {
        m.server
            .handle_datagram(m.now, VECTOR_UNIX, addr("192.0.2.51:1"), &mut d);
    }
    assert_eq!(m.server.sessions(), 0);
    assert_eq!(m.server.stats().accepted, 0);
}

/// A client behind a NAT whose mapping changes: its next authenticated
/// datagram moves the session, and replies follow it. A replayed older
/// datagram from a third address does not steer the replies.
#[test]
fn a_new_address_is_followed_after_it_authenticates() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 6);
    n.connect();
    let sid = n.sid();
    n.client.send(b"one").unwrap();
    n.drive();
    let old = n.c2s.last().unwrap().clone();
    n.client_addr = addr("203.0.113.7:61000");
    n.client.send(b"two").unwrap();
    n.drive();
    assert_eq!(n.server.peer_of(sid), Some(n.client_addr));
    let mut replay = old;
    n.server
        .handle_datagram(n.now, VECTOR_UNIX, addr("198.51.100.1:1"), &mut replay);
    assert_eq!(n.server.peer_of(sid), Some(n.client_addr));
    n.server.send(sid, b"back").unwrap();
    n.drive();
    assert_eq!(n.client_data(), vec![b"back".to_vec()]);
    assert_eq!(n.server.stats().moved, 1);
}

/// A client that goes silent is declared gone within the keepalive bound
/// of §5, and its session's place is freed.
#[test]
fn a_silent_client_is_declared_gone() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 7);
    n.connect();
    let k = &w.params.keepalive;
    let bound = k.max_next_in + (k.max_retries + 1) * k.max_timeout;
    let start = n.now;
    n.client_alive = false;
    let gone = n.run_until(bound + Duration::from_secs(1), |n| n.server.sessions() == 0);
    assert!(gone, "still open after {:?}", n.now - start);
    assert!(n.now - start <= bound);
    assert!(n.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::Closed {
            error: Some(Error::PeerGone { .. }),
            ..
        }
    )));
}

/// Revoking the token closes its open session; the client is told.
#[test]
fn revocation_closes_the_session() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 8);
    n.connect();
    let mut store = cipherlink_link::TokenStore::new();
    let mut r = rand::rngs::StdRng::seed_from_u64(99);
    store.issue("someone-else", &mut r).unwrap();
    assert_eq!(w.endpoint.set_tokens(store), 1);
    n.step(Duration::from_millis(1));
    assert_eq!(n.server.sessions(), 0);
    assert!(n.client.is_closed());
    assert!(matches!(
        n.client_events.last(),
        Some(ClientEvent::Closed(Some(Error::PeerClosed { .. })))
    ));
    // Data sent after the revocation goes nowhere.
    assert!(n.client.send(b"x").is_err());
}

#[test]
fn a_revoked_token_is_refused() {
    let w = world();
    let now = std::time::Instant::now();
    let client = DgramClient::new(w.client_cfg(&w.mallory), VECTOR_UNIX, now, rng(10)).unwrap();
    let server = DgramServer::new(w.endpoint.clone(), opts(), now, rng(11));
    let mut n = Net::with(client, server, now, Faults::default(), 10);
    n.run_until(Duration::from_secs(5), |n| n.client.is_closed());
    assert!(matches!(
        n.client_events.last(),
        Some(ClientEvent::Closed(Some(Error::Refused)))
    ));
    assert!(n
        .server_events
        .iter()
        .any(|e| matches!(e, ServerEvent::Refused { .. })));
}

/// Random datagrams of every size get no answer and open nothing, at the
/// server and at a client in either state; a forged 1,200-byte "msg2"
/// before the real one does not spoil the handshake.
#[test]
fn garbage_is_silent_and_harmless() {
    let w = world();
    let mut n = Net::new(&w, opts(), Faults::default(), 12);
    let mut r = rand::rngs::StdRng::seed_from_u64(12);
    let mut forged = vec![0u8; HANDSHAKE_DATAGRAM];
    r.fill(&mut forged[..]);
    n.client.handle_datagram(n.now, &mut forged);
    for len in (0..1500).step_by(7).chain([65_507]) {
        let mut d = vec![0u8; len];
        r.fill(&mut d[..]);
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, addr("192.0.2.99:9"), &mut d);
        assert!(
            n.server.poll_transmit().is_none(),
            "answered {len} random bytes"
        );
        n.client.handle_datagram(n.now, &mut d);
    }
    n.connect();
    for len in (0..1500).step_by(11) {
        let mut d = vec![0u8; len];
        r.fill(&mut d[..]);
        n.client.handle_datagram(n.now, &mut d);
        n.server
            .handle_datagram(n.now, VECTOR_UNIX, n.client_addr, &mut d);
    }
    assert!(n.client.is_open());
    assert_eq!(n.server.sessions(), 1);
    assert!(n.client_data().is_empty() && n.server_data().is_empty());
}

/// A first message made for the stream mode does not open a datagram
/// session: the mode is in the transcript.
#[test]
fn a_stream_first_message_does_not_open_a_datagram_session() {
    use cipherlink_link::proto::crypto::HmacKey;
    use cipherlink_link::proto::handshake::obfs_key;
    let w = world();
    let now = std::time::Instant::now();
    let mut c =
        cipherlink_link::Connection::client(&w.client_cfg(&w.alice), rng(21), now, VECTOR_UNIX)
            .unwrap();
    let mut msg1 = Vec::new();
    c.poll_transmit(&mut msg1);
    let k_obf = HmacKey::new(&obfs_key(w.key.public()));
    let mut pieces =
        cipherlink_link::dgram::wire::Pieces::cut(&msg1, &k_obf, None, &mut *rng(22)).unwrap();
    let mut server = DgramServer::new(w.endpoint.clone(), opts(), now, rng(23));
    server.handle_datagram(now, VECTOR_UNIX, addr("192.0.2.1:1"), &mut pieces.first);
    server.handle_datagram(now, VECTOR_UNIX, addr("192.0.2.1:1"), &mut pieces.second);
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.sessions(), 0);
    assert_eq!(server.stats().unanswered, 1);
}

/// Opens a session of `token` from `port` on `server`; whether it opened.
fn open_one(w: &World, server: &mut DgramServer, token: &Token, seed: u64, port: u16) -> bool {
    let now = std::time::Instant::now();
    let mut c = DgramClient::new(w.client_cfg(token), VECTOR_UNIX, now, rng(seed)).unwrap();
    let from = addr(&format!("192.0.2.1:{port}"));
    while let Some(mut d) = c.poll_transmit() {
        server.handle_datagram(now, VECTOR_UNIX, from, &mut d);
    }
    while let Some((_, mut d)) = server.poll_transmit() {
        c.handle_datagram(now, &mut d);
    }
    c.is_open()
}

fn server_names(server: &DgramServer) -> Vec<&str> {
    server
        .session_ids()
        .filter_map(|sid| server.name_of(sid))
        .collect()
}

/// With room for two sessions, a token holding both cannot keep another
/// token out: the newcomer displaces one of them. A token that holds as
/// many as any other replaces its own oldest, never another token's.
#[test]
fn one_token_cannot_fill_the_server() {
    let w = world();
    let mut store = TokenStore::new();
    store.add("alice", w.alice.clone()).unwrap();
    let mut r = rand::rngs::StdRng::seed_from_u64(34);
    let bob = store.issue("bob", &mut r).unwrap();
    w.endpoint.set_tokens(store);
    let now = std::time::Instant::now();
    let options = DgramServerOptions {
        max_sessions: 2,
        ..opts()
    };
    let mut server = DgramServer::new(w.endpoint.clone(), options, now, rng(30));
    assert!(open_one(&w, &mut server, &w.alice, 31, 1));
    assert!(open_one(&w, &mut server, &w.alice, 32, 2));
    assert!(open_one(&w, &mut server, &bob, 33, 3));
    assert_eq!(server.sessions(), 2);
    assert_eq!(server.stats().displaced, 1);
    // Now alice 1, bob 1: bob's second replaces bob's first, not alice's.
    assert!(open_one(&w, &mut server, &bob, 34, 4));
    assert_eq!(server.sessions(), 2);
    assert_eq!(server.stats().displaced, 2);
    let mut names: Vec<String> = Vec::new();
    while let Some(e) = server.poll_event() {
        if let ServerEvent::Accepted { name, .. } = e {
            names.push(name);
        }
    }
    assert_eq!(names, ["alice", "alice", "bob", "bob"]);
    let mut open_names: Vec<&str> = server_names(&server);
    open_names.sort();
    assert_eq!(open_names, ["alice", "bob"]);
}

/// The fuzz targets' entry points hold on random inputs, and the records
/// one really reaches past the tag (a data record is delivered).
#[test]
fn fuzz_entry_points_hold() {
    use cipherlink_link::fuzzing::{fuzz_dgram_client, fuzz_dgram_records, fuzz_dgram_server};
    let mut r = rand::rngs::StdRng::seed_from_u64(40);
    for _ in 0..30 {
        let len = r.random_range(0..4000);
        let mut d = vec![0u8; len];
        r.fill(&mut d[..]);
        fuzz_dgram_server(&d);
        fuzz_dgram_client(&d);
        fuzz_dgram_records(&d);
    }
    let data = [&[0u8, 12][..], &[0, 0, 5], b"hello", &[0; 4]].concat();
    assert_eq!(fuzz_dgram_records(&[data.clone(), data].concat()), 2);
}
