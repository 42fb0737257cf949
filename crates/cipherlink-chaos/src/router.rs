//! The packet router's core, without I/O: two ports, a [`Model`] per
//! direction, and a queue of packets waiting for their send time.
//!
//! A driver (the TUN router of docs/chaos.md, or a test on a virtual clock)
//! feeds packets with [`Router::handle_packet`], sleeps until
//! [`Router::poll_timeout`], and sends what [`Router::poll_transmit`]
//! returns, in the style of quinn-proto's `Connection`: every method takes
//! the time, and none reads a clock.
//!
//! The queue is bounded twice: by packets, each model dropping what would
//! exceed its netem `limit` (up to 1,000,000), and by memory, the router
//! dropping a copy that would take the queue past its byte bound
//! ([`DEFAULT_QUEUE_BYTES`], [`Router::with_max_bytes`]), counted per
//! direction in [`Router::over_memory`]. A packet's cost is its bytes as
//! allocated plus its slot in the queue.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::memory::heap_block;
use crate::model::{Decision, Model};

/// The router's default byte bound, both directions together: 64 MiB,
/// some 44,000 full-size (1500-byte) packets.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

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

    /// 0 for A (packets from A to B), 1 for B.
    pub fn index(self) -> usize {
        match self {
            Port::A => 0,
            Port::B => 1,
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

/// Memory a queued packet of `len` bytes holds: its slot in the heap and
/// its bytes (a clone, allocated to its length).
fn queued_cost(len: usize) -> usize {
    std::mem::size_of::<Reverse<Queued>>() + heap_block(len)
}

/// Two ports joined through impairment models.
#[derive(Debug)]
pub struct Router {
    /// `models[0]` impairs A to B, `models[1]` B to A.
    models: [Model; 2],
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    queued_bytes: usize,
    max_bytes: usize,
    over_memory: [u64; 2],
}

impl Router {
    /// A router impairing A→B with `a_to_b` and B→A with `b_to_a`. The
    /// queue holds at most the two models' `limit`s together (each model
    /// drops what would exceed its own), and at most
    /// [`DEFAULT_QUEUE_BYTES`].
    pub fn new(a_to_b: Model, b_to_a: Model) -> Self {
        Router {
            models: [a_to_b, b_to_a],
            queue: BinaryHeap::new(),
            seq: 0,
            queued_bytes: 0,
            max_bytes: DEFAULT_QUEUE_BYTES,
            over_memory: [0; 2],
        }
    }

    /// The same with a byte bound of `max_bytes` instead.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// A packet arrived on `from` at `now`; returns the model's decision
    /// (for logs and timelines). A copy that would take the queue past its
    /// byte bound is dropped and counted in [`Router::over_memory`]. `now`
    /// must not go backwards.
    pub fn handle_packet(&mut self, from: Port, packet: Vec<u8>, now: Duration) -> Decision {
        let decision = self.models[from.index()].decide(packet.len(), now);
        for delivery in decision.deliveries() {
            let cost = queued_cost(packet.len());
            if cost > self.max_bytes.saturating_sub(self.queued_bytes) {
                self.over_memory[from.index()] += 1;
                continue;
            }
            let mut bytes = packet.clone();
            if let Some(flip) = delivery.corrupt {
                flip.apply(&mut bytes);
            }
            self.queued_bytes += cost;
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
        let Reverse(q) = self.queue.pop()?;
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(queued_cost(q.packet.len()));
        Some((q.to, q.packet))
    }

    /// Packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Memory the waiting packets hold, as counted against the byte bound.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Copies dropped because the queue held its byte bound, per direction
    /// (0: A to B, 1: B to A).
    pub fn over_memory(&self) -> [u64; 2] {
        self.over_memory
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
