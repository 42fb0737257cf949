//! The packet router's core, without I/O: two ports, a [`Model`] per
//! direction, and a queue of packets waiting for their send time.
//!
//! A driver (the TUN router of docs/chaos.md, or a test on a virtual clock)
//! feeds packets with [`Router::handle_packet`], sleeps until
//! [`Router::poll_timeout`], and sends what [`Router::poll_transmit`]
//! returns, in the style of quinn-proto's `Connection`: every method takes
//! the time, and none reads a clock.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::model::{Decision, Model};

/// A side of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The client's side.
    A,
    /// The server's side.
    B,
}

impl Port {
    /// The other side.
    pub fn peer(self) -> Port {
        match self {
            Port::A => Port::B,
            Port::B => Port::A,
        }
    }
}

#[derive(Debug)]
struct Queued {
    at: Duration,
    /// Arrival order, so that packets due at the same time keep it.
    seq: u64,
    to: Port,
    packet: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Two ports joined through impairment models.
#[derive(Debug)]
pub struct Router {
    /// `models[0]` impairs A to B, `models[1]` B to A.
    models: [Model; 2],
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
}

impl Router {
    /// A router impairing A→B with `a_to_b` and B→A with `b_to_a`. The
    /// queue holds at most the two models' `limit`s together: each model
    /// drops what would exceed its own.
    pub fn new(a_to_b: Model, b_to_a: Model) -> Self {
        Router {
            models: [a_to_b, b_to_a],
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// A packet arrived on `from` at `now`; returns the model's decision
    /// (for logs and timelines). `now` must not go backwards.
    pub fn handle_packet(&mut self, from: Port, packet: Vec<u8>, now: Duration) -> Decision {
        let model = match from {
            Port::A => &mut self.models[0],
            Port::B => &mut self.models[1],
        };
        let decision = model.decide(packet.len(), now);
        for delivery in decision.deliveries() {
            let mut bytes = packet.clone();
            if let Some(flip) = delivery.corrupt {
                flip.apply(&mut bytes);
            }
            self.seq += 1;
            self.queue.push(Reverse(Queued {
                at: delivery.at,
                seq: self.seq,
                to: from.peer(),
                packet: bytes,
            }));
        }
        decision
    }

    /// When the next packet is due, if any is waiting.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse(q)| q.at)
    }

    /// The next packet due by `now`, and the port to send it out of.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<(Port, Vec<u8>)> {
        if self.poll_timeout()? > now {
            return None;
        }
        self.queue.pop().map(|Reverse(q)| (q.to, q.packet))
    }

    /// Packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
