//! A client and a server core joined in memory on a virtual clock (after quinn-proto's `Pair`).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::keys::{ServerKey, Token, TokenStore};
use cipherlink_link::wire::TransportKeys;
use cipherlink_link::{ClientConfig, Connection, Error, Event, LinkParams, ServerEndpoint};
use rand::rngs::StdRng;
use rand::SeedableRng;

pub fn rng(seed: u64) -> Box<StdRng> {
    Box::new(StdRng::seed_from_u64(seed))
}

/// A server endpoint with tokens for "alice" (active) and "mallory" (revoked).
pub struct World {
    pub key: ServerKey,
    pub endpoint: Arc<ServerEndpoint>,
    pub alice: Token,
    pub mallory: Token,
    pub params: LinkParams,
}

impl World {
    pub fn new(params: LinkParams) -> Self {
        let mut r = StdRng::seed_from_u64(7);
        let key = ServerKey::generate(&mut r);
        let mut store = TokenStore::new();
        let alice = store.issue("alice", &mut r).unwrap();
        let mallory = store.issue("mallory", &mut r).unwrap();
        store.revoke("mallory");
        // A filter of its own: tests rebuild worlds with the same key and
        // seeds to replay the same bytes (tests/replay_store.rs tests sharing).
        let options = cipherlink_link::EndpointOptions {
            private_replay: true,
            ..Default::default()
        };
        let endpoint = Arc::new(
            ServerEndpoint::with_options(key.clone(), store, params.clone(), options).unwrap(),
        );
        Self {
            key,
            endpoint,
            alice,
            mallory,
            params,
        }
    }

    pub fn client_cfg(&self, token: &Token) -> ClientConfig {
        ClientConfig {
            server_key: *self.key.public(),
            token: token.clone(),
            name: "alice".into(),
            params: self.params.clone(),
        }
    }

    pub fn server(&self, seed: u64, now: Instant) -> Connection {
        Connection::server(self.endpoint.clone(), rng(seed), now, VECTOR_UNIX)
    }
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    /// Every byte the client sent / the server sent, in order.
    pub c2s_log: Vec<u8>,
    pub s2c_log: Vec<u8>,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// When false, the client neither sends nor runs timers (it "went silent").
    pub client_alive: bool,
}

impl Pair {
    pub fn new(world: &World, seed: u64) -> Self {
        Self::with(world, seed, false)
    }

    /// A pair whose client exported its transport keys, and the keys.
    pub fn exporting_keys(world: &World, seed: u64) -> (Self, TransportKeys) {
        let mut p = Self::with(world, seed, true);
        let keys = p.client.take_exported_keys().unwrap();
        (p, keys)
    }

    fn with(world: &World, seed: u64, export_keys: bool) -> Self {
        let now = Instant::now();
        let mut client =
            Connection::client(&world.client_cfg(&world.alice), rng(seed), now, VECTOR_UNIX)
                .unwrap();
        if export_keys {
            client.export_keys();
        }
        let server = world.server(seed + 1, now);
        let mut p = Self {
            client,
            server,
            now,
            c2s_log: Vec::new(),
            s2c_log: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_alive: true,
        };
        p.drive();
        p
    }

    /// Moves bytes both ways until quiet.
    pub fn drive(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            if self.client_alive {
                self.client.poll_transmit(&mut buf);
                if !buf.is_empty() {
                    self.c2s_log.extend_from_slice(&buf);
                    self.server.handle_input(self.now, &buf);
                    buf.clear();
                    moved = true;
                }
            }
            self.server.poll_transmit(&mut buf);
            if !buf.is_empty() {
                self.s2c_log.extend_from_slice(&buf);
                if self.client_alive {
                    self.client.handle_input(self.now, &buf);
                }
                buf.clear();
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Jumps the clock to the earliest deadline (at most `limit`), runs timers, drives.
    pub fn step(&mut self, limit: Instant) -> bool {
        let mut next = self.server.poll_timeout();
        if self.client_alive {
            next = match (next, self.client.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let Some(t) = next else { return false };
        if t > limit {
            self.now = limit;
            return false;
        }
        self.now = self.now.max(t);
        if self.client_alive {
            self.client.handle_timeout(self.now);
        }
        self.server.handle_timeout(self.now);
        self.drive();
        true
    }

    /// Runs the virtual clock for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
    }

    /// Sends `data` from the client and returns what the server delivered.
    pub fn transfer_c2s(&mut self, data: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut sent = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while sent < data.len() || self.server.recv_pending() > 0 {
            if sent < data.len() {
                sent += self.client.send(&data[sent..]).unwrap();
            }
            self.drive();
            loop {
                let n = self.server.recv(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }
}

pub fn closed_error(events: &[Event]) -> Option<Option<Error>> {
    events.iter().find_map(|e| match e {
        Event::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

pub fn params_fast() -> LinkParams {
    LinkParams {
        tail_length: 64,
        ..LinkParams::default()
    }
}

/// Every kind of probe, from nothing to a replayed or edited first message.
pub fn probe_kinds(world: &World) -> Vec<(String, Vec<u8>)> {
    let accepted = Pair::new(world, 500);
    assert!(accepted.server.is_open());
    let msg1 = accepted.c2s_log.clone();
    let noise = |n: usize, seed: u64| {
        let mut v = vec![0u8; n];
        rand::RngCore::fill_bytes(&mut *rng(seed), &mut v);
        v
    };
    let mut kinds = vec![("empty".to_string(), Vec::new())];
    for n in [
        1usize, 17, 49, 50, 51, 500, 1400, 16_384, 16_385, 16_435, 16_500,
    ] {
        kinds.push((format!("{n} random bytes"), noise(n, n as u64)));
    }
    kinds.push(("a replayed first message".into(), msg1.clone()));
    let mut b0 = msg1.clone();
    b0[0] ^= 1;
    kinds.push(("a replay with byte 0 changed".into(), b0));
    let mut b07 = msg1.clone();
    for b in &mut b07[..8] {
        *b ^= 0x5a;
    }
    kinds.push(("a replay with bytes 0-7 changed".into(), b07));
    // A fresh first message that authenticates, cut short or followed by more.
    let fresh = |seed| {
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
    };
    kinds.push((
        "a first message cut short".into(),
        fresh(501)[..400].to_vec(),
    ));
    let mut more = fresh(502);
    more.extend_from_slice(&noise(16_500, 9));
    kinds.push(("a first message and 16500 bytes more".into(), more));
    kinds
}
