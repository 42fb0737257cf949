//! The stream proxy's queue, bounded by the memory it really holds.
//!
//! Each direction reads from its source, plans what it read into
//! [`Step`]s and queues the plan for its writer. A bound on payload bytes
//! alone would be far off: with `--slice 1` every byte is a step of its
//! own, a 40-byte `Step` plus a heap block for the byte, some 72 bytes per
//! byte of payload. So before each read the reader reserves the worst cost
//! of a plan of a full read, waiting until the queue has room; it reads no
//! more at once than lets the worst plans of that many reads fit the
//! budget together ([`QueueBudget::read_limit`], so the queue still holds
//! several plans); once planned, the reservation is cut down
//! to what the plan holds ([`plan_cost`]: the step vector's block and every
//! step's data block, as [`heap_block`] counts them). A plan is paid back
//! when its last step has been written. Every byte taken from the source
//! and not yet written is therefore in a charged plan.

use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::memory::heap_block;
use crate::stream_shaper::Step;

/// Memory each direction of a connection may hold in planned steps.
pub const QUEUE_BYTES: usize = 256 * 1024;

/// Steps a plan can have beyond one per segment: a segment begun before
/// this read, the cuts at a stall and at a reset, the stall's pause (or
/// blackhole) and the reset itself.
const EXTRA_STEPS: usize = 5;

/// What `steps` holds in memory: the vector's block and each write's data
/// block.
pub fn plan_cost(steps: &Vec<Step>) -> usize {
    let data: usize = steps
        .iter()
        .map(|s| match s {
            Step::Write { data, .. } => heap_block(data.capacity()),
            _ => 0,
        })
        .sum();
    heap_block(steps.capacity() * size_of::<Step>()) + data
}

/// The most a plan of `n` bytes, cut into `segment`-byte writes, can cost
/// (its vector sized to fit, each write's data to its length).
pub fn worst_plan_cost(n: usize, segment: usize) -> usize {
    let steps = n.div_ceil(segment.max(1)) + EXTRA_STEPS;
    // A data block costs at most its length plus 32 (see `heap_block`).
    heap_block(steps * size_of::<Step>()) + n + steps * 32
}

/// What a direction's queue holds now, and held at most.
#[derive(Debug)]
pub struct QueueMeter {
    budget: usize,
    queued: AtomicUsize,
    peak: AtomicUsize,
}

impl QueueMeter {
    /// The bound, in bytes of memory.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Memory the queued plans hold now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The most they held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// One direction's budget. See the module docs.
#[derive(Debug)]
pub struct QueueBudget {
    permits: Arc<Semaphore>,
    meter: Arc<QueueMeter>,
    read_limit: usize,
    /// The worst cost of a plan of `read_limit` bytes.
    reserve: usize,
}

impl QueueBudget {
    /// A budget of `budget` bytes for `plans` plans of `segment`-byte
    /// writes, reads of at most `max_read` bytes. A budget below the cost
    /// of `plans` one-byte plans is raised to it.
    pub fn new(budget: usize, segment: usize, max_read: usize, plans: usize) -> Self {
        let plans = plans.max(1);
        let floor = worst_plan_cost(1, segment).saturating_mul(plans);
        // Semaphore permits are taken in u32 amounts.
        let budget = budget.clamp(floor, u32::MAX as usize);
        // The largest read whose worst plan fits its share (the cost grows with n).
        let share = budget / plans;
        let (mut lo, mut hi) = (1, max_read.max(1));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if worst_plan_cost(mid, segment) <= share {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        QueueBudget {
            permits: Arc::new(Semaphore::new(budget)),
            meter: Arc::new(QueueMeter {
                budget,
                queued: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
            read_limit: lo,
            reserve: worst_plan_cost(lo, segment),
        }
    }

    /// The most the reader may read at once.
    pub fn read_limit(&self) -> usize {
        self.read_limit
    }

    /// The meter, for logs and tests.
    pub fn meter(&self) -> Arc<QueueMeter> {
        Arc::clone(&self.meter)
    }

    /// Waits until the queue has room for the worst plan of a full read,
    /// and charges it: call before reading. `None` if the budget was closed.
    pub async fn reserve(&self) -> Option<Held> {
        let cost = self.reserve;
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(u32::try_from(cost).ok()?)
            .await
            .ok()?;
        let now = self.meter.queued.fetch_add(cost, Ordering::Relaxed) + cost;
        self.meter.peak.fetch_max(now, Ordering::Relaxed);
        Some(Held {
            permit,
            cost,
            meter: Arc::clone(&self.meter),
        })
    }
}

/// A queued plan's charge, paid back when dropped.
#[derive(Debug)]
pub struct Held {
    cost: usize,
    meter: Arc<QueueMeter>,
    permit: OwnedSemaphorePermit,
}

impl Held {
    /// Cuts the reservation down to what `steps` holds (shrunk to fit
    /// first, so the vector keeps no spare capacity); pays back the rest.
    pub fn settle(&mut self, steps: &mut Vec<Step>) {
        steps.shrink_to_fit();
        let cost = plan_cost(steps);
        debug_assert!(
            cost <= self.cost,
            "plan of {cost} bytes over its {} reservation",
            self.cost
        );
        if let Some(excess) = self.permit.split(self.cost.saturating_sub(cost)) {
            self.meter
                .queued
                .fetch_sub(excess.num_permits(), Ordering::Relaxed);
            self.cost -= excess.num_permits();
        }
    }

    /// What this plan is charged.
    pub fn cost(&self) -> usize {
        self.cost
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Before the permit (a later field) goes back, so `queued` never
        // shows more than the budget.
        self.meter.queued.fetch_sub(self.cost, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use super::*;
    use crate::stream_shaper::{Impairments, Shaper};

    #[test]
    fn a_one_byte_step_costs_what_it_holds() {
        // The 40-byte step and a 32-byte block for its byte.
        assert_eq!(size_of::<Step>(), 40);
        let steps = vec![Step::Write {
            at: Duration::ZERO,
            data: vec![1],
        }];
        assert_eq!(plan_cost(&steps), 48 + 32);
    }

    #[test]
    fn real_plans_never_cost_more_than_the_worst_case() {
        for (slice, stall, reset) in [
            (1, None, None),
            (1, Some(5), Some(9)),
            (7, Some(3), None),
            (1460, None, Some(100_000)),
        ] {
            let imp = Impairments {
                slice: NonZeroUsize::new(slice),
                stall_after: stall,
                stall_for: stall.map(|_| Duration::from_millis(1)),
                reset_after: reset,
                corrupt: 0.5,
                ..Impairments::default()
            };
            let mut shaper = Shaper::new(imp, 1, 0);
            for n in [1, 3, 17, 1000, 4096] {
                let mut plan = shaper.plan(&vec![0u8; n], Duration::ZERO);
                plan.shrink_to_fit();
                let worst = worst_plan_cost(n, imp.segment());
                assert!(plan_cost(&plan) <= worst, "slice {slice} read {n}");
            }
        }
    }

    #[tokio::test]
    async fn a_reservation_is_cut_to_the_plan_and_paid_back() {
        let budget = QueueBudget::new(64 * 1024, 1, 16 * 1024, 16);
        let meter = budget.meter();
        let mut held = budget.reserve().await.expect("room");
        assert_eq!(meter.queued(), worst_plan_cost(budget.read_limit(), 1));
        let mut steps = Shaper::new(
            Impairments {
                slice: NonZeroUsize::new(1),
                ..Impairments::default()
            },
            0,
            0,
        )
        .plan(&[9u8; 10], Duration::ZERO);
        held.settle(&mut steps);
        assert_eq!(held.cost(), plan_cost(&steps));
        assert_eq!(meter.queued(), held.cost());
        // Ten one-byte steps: 400 bytes of steps (a 416-byte block), ten 32-byte blocks.
        assert_eq!(held.cost(), 416 + 320);
        drop(held);
        assert_eq!(meter.queued(), 0);
        assert_eq!(meter.peak(), worst_plan_cost(budget.read_limit(), 1));
    }

    #[test]
    fn reads_are_cut_so_that_the_plans_fit() {
        let budget = QueueBudget::new(64 * 1024, 1, 16 * 1024, 16);
        assert!(worst_plan_cost(budget.read_limit(), 1) * 16 <= 64 * 1024);
        assert!(worst_plan_cost(budget.read_limit() + 1, 1) * 16 > 64 * 1024);
        // Some 72 bytes per byte at slice 1: 4 KiB a plan is some 50 bytes.
        assert!(
            (40..60).contains(&budget.read_limit()),
            "{}",
            budget.read_limit()
        );
        // Unsliced, a whole read fits in a 16th of 4 MiB.
        assert_eq!(
            QueueBudget::new(4 << 20, 1460, 16 * 1024, 16).read_limit(),
            16 * 1024
        );
        // A budget too small for anything is raised to one-byte plans.
        let tiny = QueueBudget::new(1, 1, 16 * 1024, 16);
        assert_eq!(tiny.read_limit(), 1);
        assert_eq!(tiny.meter().budget(), worst_plan_cost(1, 1) * 16);
    }
}
