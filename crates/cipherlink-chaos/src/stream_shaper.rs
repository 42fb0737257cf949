//! The stream proxy's decisions, without sockets: which bytes to write
//! when, and where to stall or reset. One [`Shaper`] per direction of a
//! connection.
//!
//! Decisions depend on stream offsets, not on how reads happened to chunk
//! the data: segments are cut at multiples of the segment size, a segment's
//! corruption is drawn when its first byte passes, and stall/reset trigger
//! at exact byte counts. A seed therefore reproduces the same bytes on the
//! wire however the kernel splits the reads; only timing draws (jitter)
//! follow the chunks.

use std::num::NonZeroUsize;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Segment size when no `slice` is set: corruption happens per segment,
/// and a TCP segment on Ethernet carries about this much.
pub const DEFAULT_SEGMENT: usize = 1460;

/// Impairments of one direction of a stream. `Default` is none.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairments {
    /// Added to every chunk's delivery time.
    pub latency: Duration,
    /// Uniform variation of the latency, `±jitter` (never below zero;
    /// chunks still leave in order).
    pub jitter: Duration,
    /// Link speed in bit/s, if limited.
    pub bandwidth: Option<u64>,
    /// Write at most this many bytes at a time.
    pub slice: Option<NonZeroUsize>,
    /// Pause between slices.
    pub slice_delay: Duration,
    /// Stop forwarding after this many bytes.
    pub stall_after: Option<u64>,
    /// Resume after this long; `None`: never (later bytes are discarded
    /// until the source closes, like toxiproxy's `timeout` toxic with 0).
    pub stall_for: Option<Duration>,
    /// Reset the connection (TCP RST both ways) after this many bytes.
    pub reset_after: Option<u64>,
    /// Probability that a segment gets one bit flipped (0.0 to 1.0).
    pub corrupt: f64,
}

impl Impairments {
    /// Bytes per segment: the slice, or [`DEFAULT_SEGMENT`].
    pub fn segment(&self) -> usize {
        self.slice.map_or(DEFAULT_SEGMENT, NonZeroUsize::get)
    }
}

/// One thing for the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes at this time (since the connection started) or as
    /// soon after as possible.
    Write {
        /// When.
        at: Duration,
        /// What (already corrupted if it was to be).
        data: Vec<u8>,
    },
    /// Wait this long after the previous write has completed.
    Pause(Duration),
    /// Forward nothing more: read and discard until the source closes.
    Blackhole,
    /// Reset both sides of the connection now.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Blackhole,
    Reset,
}

/// Plans one direction. See the module docs.
#[derive(Debug, Clone)]
pub struct Shaper {
    imp: Impairments,
    rng: ChaCha8Rng,
    offset: u64,
    /// Stream offset and bit of the flip in the current segment.
    flip: Option<(u64, u8)>,
    last_at: Duration,
    link_free: Duration,
    stalled: bool,
    state: State,
}

impl Shaper {
    /// A shaper drawing from `seed`, on the random stream `stream` (one per
    /// connection and direction, so connections do not share draws).
    pub fn new(imp: Impairments, seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Shaper {
            imp,
            rng,
            offset: 0,
            flip: None,
            last_at: Duration::ZERO,
            link_free: Duration::ZERO,
            stalled: false,
            state: State::Open,
        }
    }

    /// Bytes planned for writing so far.
    pub fn forwarded(&self) -> u64 {
        self.offset
    }

    /// Plans `data`, read at `now` (since the connection started).
    pub fn plan(&mut self, data: &[u8], now: Duration) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.state != State::Open {
            return steps;
        }
        let mut t = (now + self.latency()).max(self.last_at);
        let segment = self.imp.segment() as u64;
        let mut rest = data;
        loop {
            if self.imp.reset_after == Some(self.offset) {
                steps.push(Step::Reset);
                self.state = State::Reset;
                break;
            }
            if !self.stalled && self.imp.stall_after == Some(self.offset) {
                self.stalled = true;
                match self.imp.stall_for {
                    Some(pause) => {
                        steps.push(Step::Pause(pause));
                        t += pause;
                    }
                    None => {
                        steps.push(Step::Blackhole);
                        self.state = State::Blackhole;
                        break;
                    }
                }
            }
            if rest.is_empty() {
                break;
            }
            let in_segment = self.offset % segment;
            let mut take = (segment - in_segment).min(rest.len() as u64);
            for limit in [
                self.imp.reset_after,
                self.imp.stall_after.filter(|_| !self.stalled),
            ]
            .into_iter()
            .flatten()
            {
                if limit > self.offset {
                    take = take.min(limit - self.offset);
                }
            }
            if in_segment == 0 {
                if self.offset > 0 && self.imp.slice.is_some() {
                    t += self.imp.slice_delay;
                }
                self.flip = None;
                if self.imp.corrupt > 0.0 && self.rng.random::<f64>() < self.imp.corrupt {
                    let at = self.offset + self.rng.random_range(0..segment);
                    self.flip = Some((at, self.rng.random_range(0..8)));
                }
            }
            let (now_bytes, later) = rest.split_at(take as usize);
            let mut bytes = now_bytes.to_vec();
            if let Some((at, bit)) = self.flip {
                if (self.offset..self.offset + take).contains(&at) {
                    if let Some(b) = bytes.get_mut((at - self.offset) as usize) {
                        *b ^= 1 << bit;
                    }
                }
            }
            if let Some(bps) = self.imp.bandwidth {
                let start = t.max(self.link_free);
                let nanos = u128::from(take) * 8 * 1_000_000_000 / u128::from(bps.max(1));
                t = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.link_free = t;
            }
            steps.push(Step::Write { at: t, data: bytes });
            self.offset += take;
            rest = later;
        }
        self.last_at = t;
        steps
    }

    fn latency(&mut self) -> Duration {
        let base = self.imp.latency;
        let jitter = self.imp.jitter;
        if jitter.is_zero() {
            return base;
        }
        let offset = (2.0 * self.rng.random::<f64>() - 1.0) * jitter.as_secs_f64();
        Duration::try_from_secs_f64((base.as_secs_f64() + offset).max(0.0)).unwrap_or(base)
    }
}

#[cfg(test)]
#[path = "stream_shaper_tests.rs"]
mod tests;
