//! The per-packet impairment model: netem's decisions, without a kernel.
//!
//! Sans-IO: [`Model::decide`] takes a packet's length and the current time
//! (a `Duration` on the caller's clock, real or virtual) and says what
//! happens to the packet; the caller holds the packets and sends each at
//! its delivery time, in time order. Every random number comes from one
//! ChaCha8 generator seeded by the caller, so the same seed and the same
//! packet sequence give the same decisions.
//!
//! The order of decisions follows the kernel's `netem_enqueue`: duplicate
//! (the copy goes through the model again, without duplication), loss,
//! corruption, queue limit, then delay, reordering and rate. Correlation
//! uses netem's own formula (`next = (1-ρ)·uniform + ρ·previous`), which,
//! as in the kernel, also narrows the spread of the draws: a correlated
//! `loss 30% 50%` loses fewer than 30% of packets, exactly as netem does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::netem::{Chance, Delay, Distribution, Loss, Netem, Percent, Rate};

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The loss model chose it.
    Loss,
    /// `limit` packets were already waiting.
    QueueFull,
}

/// One bit to flip in a delivered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitFlip {
    /// Byte offset, below the packet's length.
    pub byte: usize,
    /// Bit within that byte (0-7).
    pub bit: u8,
}

impl BitFlip {
    /// Flips the bit in `packet`; does nothing if the packet is shorter than
    /// the length this flip was drawn for.
    pub fn apply(self, packet: &mut [u8]) {
        if let Some(b) = packet.get_mut(self.byte) {
            *b ^= 1 << (self.bit & 7);
        }
    }
}

/// One copy of a packet leaving the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// When to send it, on the caller's clock.
    pub at: Duration,
    /// A bit to flip first, if this copy is corrupted.
    pub corrupt: Option<BitFlip>,
    /// Sent at once, skipping the delay, by `reorder`.
    pub reordered: bool,
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not delivered.
    Dropped(DropReason),
    /// Delivered once.
    Deliver(Delivery),
    /// Delivered twice (the duplicate second).
    Duplicate([Delivery; 2]),
}

impl Decision {
    /// Every copy to deliver (none if dropped).
    pub fn deliveries(&self) -> &[Delivery] {
        match self {
            Decision::Dropped(_) => &[],
            Decision::Deliver(d) => std::slice::from_ref(d),
            Decision::Duplicate(both) => both,
        }
    }
}

/// netem's correlated uniform draw (`get_crandom`).
#[derive(Debug, Clone, Copy, Default)]
struct Correlated {
    rho: f64,
    last: f64,
}

impl Correlated {
    /// As the kernel's `init_crandom` (net/sched/sch_netem.c): `last`
    /// starts at a random value, `get_random_u32()`, from a source other
    /// than the per-packet draws (the seeded `prandom_u32_state`). Here
    /// that source is `init`, a stream of the model's seed apart from the
    /// draws', so a run stays repeatable and uncorrelated draws unchanged.
    fn new(correlation: Percent, init: &mut ChaCha8Rng) -> Self {
        Correlated {
            rho: correlation.fraction(),
            last: init.random(),
        }
    }

    fn draw(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        let u: f64 = rng.random();
        if self.rho == 0.0 {
            return u;
        }
        self.last = (1.0 - self.rho) * u + self.rho * self.last;
        self.last
    }
}

/// States of the 4-state loss model (numbered as in the netem docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FourState {
    GoodReception,
    GoodInBurst,
    Burst,
    IsolatedLoss,
}

/// The per-packet impairment model. See the module docs.
#[derive(Debug, Clone)]
pub struct Model {
    netem: Netem,
    rng: ChaCha8Rng,
    delay_cor: Correlated,
    loss_cor: Correlated,
    dup_cor: Correlated,
    corrupt_cor: Correlated,
    reorder_cor: Correlated,
    ge_bad: bool,
    four_state: FourState,
    /// Packets since the last reordered one (netem's `counter`).
    since_reorder: u32,
    /// Send time of the latest packet queued behind the rate limit.
    last_send: Option<Duration>,
    /// Send times of the packets still held; at most `limit` entries.
    held: BinaryHeap<Reverse<Duration>>,
}

impl Model {
    /// A model for `netem`, drawing from a generator seeded with `seed`.
    pub fn new(netem: Netem, seed: u64) -> Self {
        let mut init = ChaCha8Rng::seed_from_u64(seed);
        init.set_stream(1);
        let correlation = |c: Option<Chance>| c.map_or(Percent::ZERO, |c| c.correlation);
        // In the kernel's order: `get_correlation` (delay, loss,
        // duplicate), then reorder, then corrupt.
        let delay_cor = Correlated::new(
            netem.delay.map_or(Percent::ZERO, |d| d.correlation),
            &mut init,
        );
        let loss = match netem.loss {
            Some(Loss::Random(c)) => Some(c),
            _ => None,
        };
        let loss_cor = Correlated::new(correlation(loss), &mut init);
        let dup_cor = Correlated::new(correlation(netem.duplicate), &mut init);
        let reorder_cor = Correlated::new(correlation(netem.reorder.map(|r| r.chance)), &mut init);
        let corrupt_cor = Correlated::new(correlation(netem.corrupt), &mut init);
        Model {
            delay_cor,
            loss_cor,
            dup_cor,
            corrupt_cor,
            reorder_cor,
            netem,
            rng: ChaCha8Rng::seed_from_u64(seed),
            ge_bad: false,
            four_state: FourState::GoodReception,
            since_reorder: 0,
            last_send: None,
            held: BinaryHeap::new(),
        }
    }

    /// The configuration this model applies.
    pub fn netem(&self) -> &Netem {
        &self.netem
    }

    /// Decides the fate of a packet of `len` bytes offered at `now`.
    /// `now` must not go backwards between calls.
    pub fn decide(&mut self, len: usize, now: Duration) -> Decision {
        while self.held.peek().is_some_and(|Reverse(at)| *at <= now) {
            self.held.pop();
        }
        let duplicate = match self.netem.duplicate {
            Some(c) => self.chance(c, |m| &mut m.dup_cor),
            None => false,
        };
        let mut copies = 1 + u8::from(duplicate);
        if self.loss_event() {
            copies -= 1;
        }
        if copies == 0 {
            return Decision::Dropped(DropReason::Loss);
        }
        // The kernel sends the copy through the qdisc again with duplication
        // off: it meets loss, corruption and delay of its own.
        let copy = if copies == 2 {
            Some(self.one_copy(len, now, true))
        } else {
            None
        };
        let original = self.one_copy(len, now, false);
        match (original, copy) {
            (Ok(a), Some(Ok(b))) => Decision::Duplicate([a, b]),
            (Ok(a), _) | (Err(_), Some(Ok(a))) => Decision::Deliver(a),
            (Err(reason), _) => Decision::Dropped(reason),
        }
    }

    /// Corruption, limit, delay, reorder and rate for one copy; a
    /// duplicate also draws its own loss first.
    fn one_copy(
        &mut self,
        len: usize,
        now: Duration,
        is_copy: bool,
    ) -> Result<Delivery, DropReason> {
        if is_copy && self.loss_event() {
            return Err(DropReason::Loss);
        }
        let corrupt_config = self.netem.corrupt;
        let corrupt = match corrupt_config {
            Some(c) if len > 0 && self.chance(c, |m| &mut m.corrupt_cor) => Some(BitFlip {
                byte: self.rng.random_range(0..len),
                bit: self.rng.random_range(0..8),
            }),
            _ => None,
        };
        if self.held.len() >= self.netem.limit as usize {
            return Err(DropReason::QueueFull);
        }
        let (at, reordered) = self.send_time(len, now);
        self.held.push(Reverse(at));
        Ok(Delivery {
            at,
            corrupt,
            reordered,
        })
    }

    fn send_time(&mut self, len: usize, now: Duration) -> (Duration, bool) {
        if let Some(reorder) = self.netem.reorder {
            // netem: within the gap, or when the draw says so, the packet
            // takes the normal path; otherwise it goes out at once.
            let normal = self.since_reorder + 1 < reorder.gap
                || reorder.chance.probability.fraction() < self.reorder_cor.draw(&mut self.rng);
            if !normal {
                self.since_reorder = 0;
                return (now, true);
            }
            self.since_reorder = self.since_reorder.saturating_add(1);
        }
        let delay = match self.netem.delay {
            Some(d) => self.delay(d),
            None => Duration::ZERO,
        };
        let Some(rate) = self.netem.rate else {
            return (now + delay, false);
        };
        // A packet waits behind the ones still queued for the link, then
        // takes its own transmission time.
        let start = match self.last_send {
            Some(last) if last > now => (now + delay).max(last),
            _ => now + delay,
        };
        let at = start + transmission_time(rate, len);
        self.last_send = Some(at);
        (at, false)
    }

    fn delay(&mut self, d: Delay) -> Duration {
        if d.jitter.is_zero() {
            return d.latency;
        }
        let u = self.delay_cor.draw(&mut self.rng);
        let mu = d.latency.as_secs_f64();
        let sigma = d.jitter.as_secs_f64();
        let offset = match d.distribution {
            Distribution::Uniform => (2.0 * u - 1.0) * sigma,
            dist => sigma * table_value(dist, u),
        };
        // The kernel does not send packets into the past.
        Duration::try_from_secs_f64((mu + offset).max(0.0)).unwrap_or(Duration::ZERO)
    }

    fn chance(&mut self, c: Chance, state: fn(&mut Self) -> &mut Correlated) -> bool {
        let p = c.probability.fraction();
        if p == 0.0 {
            return false;
        }
        let mut cor = *state(self);
        let u = cor.draw(&mut self.rng);
        *state(self) = cor;
        u < p
    }

    fn loss_event(&mut self) -> bool {
        match self.netem.loss {
            None => false,
            Some(Loss::Random(c)) => self.chance(c, |m| &mut m.loss_cor),
            Some(Loss::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            }) => {
                // As the kernel: the state at arrival decides the loss, and
                // the transition is drawn first for the next packet.
                let (leave, lose) = if self.ge_bad {
                    (r, bad_loss)
                } else {
                    (p, good_loss)
                };
                let was_bad = self.ge_bad;
                if self.rng.random::<f64>() < leave.fraction() {
                    self.ge_bad = !was_bad;
                }
                self.rng.random::<f64>() < lose.fraction()
            }
            Some(Loss::State {
                p13,
                p31,
                p32,
                p23,
                p14,
            }) => {
                let u: f64 = self.rng.random();
                let (next, lost) = match self.four_state {
                    FourState::GoodReception if u < p14.fraction() => {
                        (FourState::IsolatedLoss, true)
                    }
                    FourState::GoodReception if u < p14.fraction() + p13.fraction() => {
                        (FourState::Burst, true)
                    }
                    FourState::GoodReception => (FourState::GoodReception, false),
                    FourState::GoodInBurst if u < p23.fraction() => (FourState::Burst, true),
                    FourState::GoodInBurst => (FourState::GoodInBurst, false),
                    FourState::Burst if u < p32.fraction() => (FourState::GoodInBurst, false),
                    FourState::Burst if u < p32.fraction() + p31.fraction() => {
                        (FourState::GoodReception, false)
                    }
                    FourState::Burst => (FourState::Burst, true),
                    FourState::IsolatedLoss => (FourState::GoodReception, false),
                };
                self.four_state = next;
                lost
            }
        }
    }
}

/// Time to put `len` bytes on the link, with netem's overhead and cells.
pub fn transmission_time(rate: Rate, len: usize) -> Duration {
    let mut bytes = (len as i64 + i64::from(rate.packet_overhead)).max(0) as u128;
    if rate.cell_size > 0 {
        let cell = u128::from(rate.cell_size);
        let cells = bytes.div_ceil(cell);
        bytes = cells * (cell as i128 + i128::from(rate.cell_overhead)).max(0) as u128;
    }
    let nanos = bytes * 8 * 1_000_000_000 / u128::from(rate.bits_per_second.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// iproute2's tables hold 16-bit values at 8192 per standard deviation, so
/// a draw never lands beyond about four deviations; the same cap applies here.
const TABLE_LIMIT: f64 = 32767.0 / 8192.0;

/// The standardised value the distribution's table would give for `u`.
fn table_value(dist: Distribution, u: f64) -> f64 {
    let v = match dist {
        Distribution::Uniform => 2.0 * u - 1.0,
        Distribution::Normal => normal_quantile(u),
        Distribution::Pareto => pareto_standard(u),
        // Same quantile of both, mixed as iproute2's paretonormal table is.
        Distribution::ParetoNormal => 0.25 * normal_quantile(u) + 0.75 * pareto_standard(u),
    };
    v.clamp(-TABLE_LIMIT, TABLE_LIMIT)
}

/// Pareto with shape 3 (iproute2's), shifted and scaled to mean 0, deviation 1.
fn pareto_standard(u: f64) -> f64 {
    const ALPHA: f64 = 3.0;
    let mean = ALPHA / (ALPHA - 1.0);
    let sd = (ALPHA / ((ALPHA - 1.0).powi(2) * (ALPHA - 2.0))).sqrt();
    let x = (1.0 - u).max(f64::MIN_POSITIVE).powf(-1.0 / ALPHA);
    (x - mean) / sd
}

/// Standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9): small enough not to need a statistics crate.
fn normal_quantile(u: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let u = u.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if u < LOW {
        tail((-2.0 * u.ln()).sqrt())
    } else if u > 1.0 - LOW {
        -tail((-2.0 * (1.0 - u).ln()).sqrt())
    } else {
        let q = u - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
