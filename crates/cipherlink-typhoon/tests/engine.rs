//! The session state machine on a virtual clock: both engines wired
//! together, datagrams delivered after a fixed latency, time jumping from
//! deadline to deadline.

#![allow(clippy::unwrap_used)] // tests may unwrap

use cipherlink_typhoon::engine::Random;
use cipherlink_typhoon::wire::{self, Message};
use cipherlink_typhoon::{Engine, Error, Event, ServerKey, TyphoonSettings};
use rand::rngs::StdRng;
use rand::SeedableRng;

const LATENCY: u64 = 40;

fn rng(seed: u64) -> Random {
    Box::new(StdRng::seed_from_u64(seed))
}

struct Net {
    now: u64,
    client: Engine,
    server: Option<Engine>,
    key: ServerKey,
    /// (arrival, to server?, datagram)
    wire: Vec<(u64, bool, Vec<u8>)>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    hdsk_to_server: usize,
    hdsk_to_client: usize,
    /// Drop everything the client sends.
    client_mute: bool,
    sess: Option<cipherlink_typhoon::SessionKey>,
    /// Handshakes that carried data.
    riders: usize,
}

impl Net {
    fn new() -> Self {
        let key = ServerKey::from_private(&[9u8; 40]);
        let client = Engine::client(
            TyphoonSettings::default(),
            *key.public(),
            b"token",
            rng(1),
            0,
        )
        .unwrap();
        let mut n = Self {
            now: 0,
            client,
            server: None,
            key,
            wire: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            hdsk_to_server: 0,
            hdsk_to_client: 0,
            client_mute: false,
            sess: None,
            riders: 0,
        };
        n.collect();
        n
    }

    fn collect(&mut self) {
        while let Some(d) = self.client.poll_transmit() {
            if !self.client_mute {
                self.wire.push((self.now + LATENCY, true, d));
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        if let Some(s) = self.server.as_mut() {
            while let Some(d) = s.poll_transmit() {
                self.wire.push((self.now + LATENCY, false, d));
            }
            while let Some(e) = s.poll_event() {
                self.server_events.push(e);
            }
        }
    }

    fn deliver(&mut self, to_server: bool, d: Vec<u8>) {
        let now = self.now;
        if !to_server {
            if self.client.is_established() {
                if let Ok(Message::Hdsk { .. }) = wire::parse_message(&self.session(), &d) {
                    self.hdsk_to_client += 1;
                }
            }
            return self.client.handle_datagram(now, &d);
        }
        match self.server.as_mut() {
            Some(s) => {
                let key = self.sess.clone().unwrap();
                if let Ok(Message::Hdsk { data, .. }) = wire::parse_message(&key, &d) {
                    self.hdsk_to_server += 1;
                    self.riders += usize::from(data.is_some());
                }
                s.handle_datagram(now, &d)
            }
            None => {
                let init = wire::parse_client_init(&self.key, &d).unwrap();
                assert!(Engine::init_next_in_ok(
                    &TyphoonSettings::default(),
                    init.next_in
                ));
                self.server = Some(Engine::server(
                    TyphoonSettings::default(),
                    &init,
                    4242,
                    rng(2),
                    now,
                ));
                self.sess = Some(init.session.clone());
            }
        }
    }

    fn session(&self) -> cipherlink_typhoon::SessionKey {
        self.sess.clone().unwrap()
    }

    /// Runs until `until` (virtual ms).
    fn run(&mut self, until: u64) {
        loop {
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let deadlines = [
                self.client.deadline(),
                self.server.as_ref().and_then(Engine::deadline),
                next_wire,
            ];
            let Some(t) = deadlines.into_iter().flatten().min() else {
                return;
            };
            if t > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(t);
            if let Some(i) = self.wire.iter().position(|w| w.0 <= self.now) {
                let (_, to_server, d) = self.wire.remove(i);
                self.deliver(to_server, d);
            } else {
                let now = self.now;
                self.client.handle_timeout(now);
                if let Some(s) = self.server.as_mut() {
                    s.handle_timeout(now);
                }
            }
            self.collect();
        }
    }
}

#[test]
fn handshakes_keep_a_quiet_session_alive_for_hours() {
    let mut n = Net::new();
    n.run(60_000);
    assert_eq!(n.client_events, vec![Event::Connected { user_id: 4242 }]);
    assert_eq!(n.server_events, vec![Event::Connected { user_id: 4242 }]);
    // Ten virtual hours: handshakes every 64..256 s each way, no failure.
    n.run(10 * 3600 * 1000);
    assert!(n.client.is_established() && n.server.as_ref().unwrap().is_established());
    assert_eq!(n.client_events.len(), 1, "{:?}", n.client_events);
    assert_eq!(n.server_events.len(), 1, "{:?}", n.server_events);
    // Each way, one handshake per round: the peer's answer comes at most
    // MAX_NEXT_IN + 2 × MAX_RTT after ours, ours as long after it.
    let least = (10 * 3600 * 1000 / (2 * (256_000 + 16_000))) as usize;
    assert!(n.hdsk_to_server >= least, "{}", n.hdsk_to_server);
    assert!(n.hdsk_to_client >= least - 1, "{}", n.hdsk_to_client);
    // Samples moved the estimate off its defaults (5 s, 30 s), within bounds.
    let (rtt, timeout) = n.client.rtt_and_timeout();
    assert!((1_000..=8_000).contains(&rtt) && (4_000..=32_000).contains(&timeout));
    assert_ne!(timeout, 30_000);
}

#[test]
fn the_server_init_waits_for_the_clients_next_in() {
    let mut n = Net::new();
    n.run(LATENCY + 3_199);
    assert!(
        n.server_events.is_empty(),
        "answered before the INIT's next_in (at least 3.2 s)"
    );
    n.run(LATENCY + 12_800 + 1);
    assert_eq!(n.server_events, vec![Event::Connected { user_id: 4242 }]);
}

#[test]
fn data_rides_on_the_offered_handshake_and_both_arrive() {
    let mut n = Net::new();
    n.run(20_000);
    assert!(n.client.is_established());
    // Let the client reach its offer window, then send: HDSK|DATA.
    let mut sent = 0;
    while n.hdsk_to_server == 0 && n.now < 400_000 {
        let t = n.now + 500;
        n.run(t);
        n.client.send(n.now, b"ping").unwrap();
        sent += 1;
        n.collect();
    }
    n.run(n.now + 1_000);
    assert_eq!(
        (n.hdsk_to_server, n.riders),
        (1, 1),
        "one handshake, riding on data"
    );
    let got = n
        .server_events
        .iter()
        .filter(|e| **e == Event::Data(b"ping".to_vec()))
        .count();
    assert_eq!(got, sent);
}

#[test]
fn the_client_gives_up_after_max_retries_inits() {
    let key = ServerKey::from_private(&[9u8; 40]);
    let s = TyphoonSettings::default();
    let mut c = Engine::client(s.clone(), *key.public(), b"t", rng(3), 0).unwrap();
    let mut inits = 0;
    let mut now = 0;
    while let Some(d) = c.deadline() {
        while c.poll_transmit().is_some() {
            inits += 1;
        }
        // Each INIT waits next_in (3.2..12.8 s) + the default timeout (30 s).
        assert!(d - now >= 33_200 && d - now <= 42_800, "{}", d - now);
        now = d;
        c.handle_timeout(now);
    }
    assert_eq!(inits, s.max_retries as usize);
    assert!(matches!(
        c.poll_event(),
        Some(Event::Failed(Error::Timeout(_)))
    ));
}

#[test]
fn the_server_gives_up_on_a_silent_client() {
    let mut n = Net::new();
    n.run(20_000);
    n.client_mute = true;
    n.run(100 * 3600 * 1000);
    assert!(
        matches!(
            n.server_events.last(),
            Some(Event::Failed(Error::Timeout(_)))
        ),
        "{:?}",
        n.server_events
    );
    // The client gave up too: its handshakes went unanswered.
    assert!(matches!(
        n.client_events.last(),
        Some(Event::Failed(Error::Timeout(_)))
    ));
}

#[test]
fn garbage_and_tampering_are_dropped_without_events() {
    let mut n = Net::new();
    n.run(20_000);
    let s = n.server.as_mut().unwrap();
    let before = s.dropped();
    let mut good = wire::data(
        &n.sess.clone().unwrap(),
        &wire::Pad {
            nonce: [1; 24],
            tail: 3,
        },
        b"x",
    )
    .unwrap();
    let now = n.now;
    for bad in [
        vec![],
        vec![0u8; 10],
        vec![0u8; 70_000],
        good[..good.len() - 1].to_vec(),
    ] {
        s.handle_datagram(now, &bad);
    }
    good[30] ^= 1;
    s.handle_datagram(now, &good);
    assert_eq!(s.dropped() - before, 5);
    assert!(s.poll_event().is_none());
    assert!(s.is_established());
}

#[test]
fn a_termination_ends_both_sides() {
    let mut n = Net::new();
    n.run(20_000);
    n.client.close();
    n.collect();
    n.run(n.now + 1_000);
    assert_eq!(n.server_events.last(), Some(&Event::Terminated));
    assert!(n.server.as_ref().unwrap().deadline().is_none());
    assert_eq!(n.client.send(n.now, b"late"), Err(Error::Closed));
}

#[test]
fn the_server_init_is_never_longer_than_the_init_it_answers() {
    // A replayed INIT from a spoofed address makes us send a server INIT
    // there: it must not carry more bytes than the INIT did.
    let key = ServerKey::from_private(&[9u8; 40]);
    let s = TyphoonSettings::default();
    for seed in 0..32 {
        let mut c = Engine::client(s.clone(), *key.public(), &[1u8; 48], rng(seed), 0).unwrap();
        let init = c.poll_transmit().unwrap();
        let parsed = wire::parse_client_init(&key, &init).unwrap();
        let mut e = Engine::server(s.clone(), &parsed, 1, rng(seed + 100), 0);
        e.handle_timeout(20_000);
        let answer = e.poll_transmit().unwrap();
        assert!(
            answer.len() <= init.len(),
            "seed {seed}: {} bytes answer {} bytes",
            answer.len(),
            init.len()
        );
    }
}

#[test]
fn settings_built_by_hand_with_a_minimum_above_its_maximum_are_refused() {
    // `TyphoonSettings`' fields are public: the engine must not trust them
    // (a clamp or a random range would panic).
    let key = ServerKey::from_private(&[9u8; 40]);
    for s in [
        TyphoonSettings {
            min_timeout: 9_000,
            max_timeout: 1_000,
            ..TyphoonSettings::default()
        },
        TyphoonSettings {
            min_rtt: 9_000,
            max_rtt: 1_000,
            ..TyphoonSettings::default()
        },
        TyphoonSettings {
            min_next_in: 9_000,
            max_next_in: 1_000,
            ..TyphoonSettings::default()
        },
    ] {
        let e = Engine::client(s, *key.public(), b"t", rng(1), 0);
        assert!(matches!(e, Err(Error::Setting { .. })), "{e:?}");
    }
}
