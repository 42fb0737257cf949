//! A datagram client and server joined by a simulated network on a virtual
//! clock: loss, duplication and reordering are drawn from a seeded
//! generator, so a failing run can be replayed.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cipherlink_link::dgram::{
    ClientEvent, DgramClient, DgramServer, DgramServerOptions, ServerEvent,
};
use cipherlink_link::fuzzing::VECTOR_UNIX;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../common/mod.rs"]
mod common;
pub use common::{rng, World};

/// The network's misbehaviour, per datagram.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a datagram is held back and delivered after the next one.
    pub reorder: f64,
}

pub struct Net {
    pub client: DgramClient,
    pub server: DgramServer,
    pub now: Instant,
    /// Where the server sees the client's datagrams come from.
    pub client_addr: SocketAddr,
    pub faults: Faults,
    chance: StdRng,
    held_c2s: Option<Vec<u8>>,
    held_s2c: Option<Vec<u8>>,
    /// Every datagram the client sent / the server sent (before faults).
    pub c2s: Vec<Vec<u8>>,
    pub s2c: Vec<(SocketAddr, Vec<u8>)>,
    pub client_events: Vec<ClientEvent>,
    pub server_events: Vec<ServerEvent>,
    /// When false the client sends nothing and runs no timers.
    pub client_alive: bool,
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Net {
    pub fn new(world: &World, options: DgramServerOptions, faults: Faults, seed: u64) -> Self {
        let now = Instant::now();
        let server = DgramServer::new(world.endpoint.clone(), options, now, rng(seed));
        let client = DgramClient::new(
            world.client_cfg(&world.alice),
            VECTOR_UNIX,
            now,
            rng(seed + 1),
        )
        .unwrap();
        Self::with(client, server, now, faults, seed)
    }

    pub fn with(
        client: DgramClient,
        server: DgramServer,
        now: Instant,
        faults: Faults,
        seed: u64,
    ) -> Self {
        Self {
            client,
            server,
            now,
            client_addr: addr("192.0.2.1:4000"),
            faults,
            chance: StdRng::seed_from_u64(seed ^ 0xfa17),
            held_c2s: None,
            held_s2c: None,
            c2s: Vec::new(),
            s2c: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_alive: true,
        }
    }

    /// What the network does to one datagram: none, one or two copies,
    /// possibly swapped with the one held back before.
    fn fault(&mut self, d: Vec<u8>, c2s: bool) -> Vec<Vec<u8>> {
        let f = self.faults;
        if self.chance.random_bool(f.loss) {
            return Vec::new();
        }
        let mut out = vec![d.clone()];
        if self.chance.random_bool(f.duplicate) {
            out.push(d);
        }
        let held = if c2s {
            &mut self.held_c2s
        } else {
            &mut self.held_s2c
        };
        if let Some(h) = held.take() {
            out.push(h);
        } else if self.chance.random_bool(f.reorder) {
            *held = out.pop();
        }
        out
    }

    /// Moves datagrams and events until both sides are quiet.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            if self.client_alive {
                while let Some(d) = self.client.poll_transmit() {
                    moved = true;
                    self.c2s.push(d.clone());
                    for mut x in self.fault(d, true) {
                        let from = self.client_addr;
                        self.server
                            .handle_datagram(self.now, VECTOR_UNIX, from, &mut x);
                    }
                }
            }
            while let Some((to, d)) = self.server.poll_transmit() {
                moved = true;
                self.s2c.push((to, d.clone()));
                if to != self.client_addr || !self.client_alive {
                    continue;
                }
                for mut x in self.fault(d, false) {
                    self.client.handle_datagram(self.now, &mut x);
                }
            }
            while let Some(e) = self.client.poll_event() {
                moved = true;
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                moved = true;
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Advances the clock to the next deadline (at most `limit` ahead) and
    /// runs the timers.
    pub fn step(&mut self, limit: Duration) {
        let mut next = self.now + limit;
        if self.client_alive {
            if let Some(t) = self.client.poll_timeout() {
                next = next.min(t);
            }
        }
        next = next.min(self.server.poll_timeout(self.now));
        self.now = next.max(self.now);
        if self.client_alive {
            self.client.handle_timeout(self.now);
        }
        self.server.handle_timeout(self.now);
        self.drive();
    }

    /// Runs until `done` or `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        self.drive();
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(end - self.now);
        }
        done(self)
    }

    pub fn connect(&mut self) {
        assert!(
            self.run_until(Duration::from_secs(30), |n| n.client.is_open()),
            "no session: client events {:?}",
            self.client_events
        );
    }

    pub fn sid(&self) -> u64 {
        self.server_events
            .iter()
            .find_map(|e| match e {
                ServerEvent::Accepted { sid, .. } => Some(*sid),
                _ => None,
            })
            .unwrap()
    }

    pub fn server_data(&self) -> Vec<Vec<u8>> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Data { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn client_data(&self) -> Vec<Vec<u8>> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Data(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}
