//! How far a steady run has got, for a display on another thread.
//!
//! The scheduler is a single-threaded, latency-sensitive loop, so it does
//! no display work itself: it stores its plan once per run and the count of
//! requests issued once per wake-up (one relaxed store, not one per
//! request). A display reads both on its own timer and turns them into a
//! [`Progress`] with [`SteadyProgress::at`], which takes the time as an
//! argument so that it can be tested without a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What one steady run will do, as the scheduler starts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// When request 0 is due.
    pub start: Instant,
    /// Requests per second.
    pub rate: f64,
    /// Unrecorded requests first.
    pub warmup_requests: u64,
    /// Recorded requests after them.
    pub recorded_requests: u64,
    /// The warm-up's length.
    pub warmup: Duration,
    /// The recorded part's length.
    pub duration: Duration,
}

/// Shared between the scheduler and a display.
#[derive(Debug, Default)]
pub struct SteadyProgress {
    issued: AtomicU64,
    plan: Mutex<Option<Plan>>,
}

/// Where a run is, as a display shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// No run has started yet.
    Waiting,
    /// Warming up (nothing recorded yet).
    WarmUp {
        /// Time since the first request was due, at most `total`.
        elapsed: Duration,
        /// The warm-up's length.
        total: Duration,
    },
    /// Recording.
    Recording {
        /// Time since the first recorded request was due, at most `total`.
        elapsed: Duration,
        /// The recorded part's length.
        total: Duration,
        /// Recorded requests issued so far.
        issued: u64,
        /// `issued` per second of `elapsed`: below the target rate when the
        /// client falls behind its schedule.
        achieved_rps: f64,
    },
    /// Every request issued; waiting for the last answers (at most a deadline).
    Finishing {
        /// Recorded requests issued.
        issued: u64,
    },
}

impl SteadyProgress {
    /// A run starts (again): its plan, nothing issued yet.
    pub fn begin(&self, plan: Plan) {
        self.issued.store(0, Ordering::Relaxed);
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = Some(plan);
    }

    /// Requests issued so far, warm-up included.
    pub fn set_issued(&self, issued: u64) {
        self.issued.store(issued, Ordering::Relaxed);
    }

    /// Where the run is at `now`.
    pub fn at(&self, now: Instant) -> Progress {
        let plan = *self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(plan) = plan else {
            return Progress::Waiting;
        };
        let issued = self.issued.load(Ordering::Relaxed);
        if issued < plan.warmup_requests {
            return Progress::WarmUp {
                elapsed: now.saturating_duration_since(plan.start).min(plan.warmup),
                total: plan.warmup,
            };
        }
        let recorded = (issued - plan.warmup_requests).min(plan.recorded_requests);
        if recorded >= plan.recorded_requests {
            return Progress::Finishing { issued: recorded };
        }
        let first_due = plan.start
            + Duration::try_from_secs_f64(plan.warmup_requests as f64 / plan.rate)
                .unwrap_or(plan.warmup);
        let elapsed = now.saturating_duration_since(first_due);
        // k requests on schedule span (k - 1) intervals.
        let achieved_rps = if elapsed.is_zero() {
            0.0
        } else {
            recorded.saturating_sub(1) as f64 / elapsed.as_secs_f64()
        };
        Progress::Recording {
            elapsed: elapsed.min(plan.duration),
            total: plan.duration,
            issued: recorded,
            achieved_rps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start: Instant) -> Plan {
        // 100/s: 200 warm-up requests (2 s), then 1,000 recorded (10 s).
        Plan {
            start,
            rate: 100.0,
            warmup_requests: 200,
            recorded_requests: 1000,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
        }
    }

    #[test]
    fn phases_follow_the_issued_count() {
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let p = SteadyProgress::default();
        assert_eq!(p.at(at(1.0)), Progress::Waiting);
        p.begin(plan(start));
        p.set_issued(100);
        assert_eq!(
            p.at(at(1.0)),
            Progress::WarmUp {
                elapsed: Duration::from_secs(1),
                total: Duration::from_secs(2)
            }
        );
        // 4 s into recording, on schedule: requests due at 0, 0.01, ... 4 s.
        p.set_issued(601);
        assert_eq!(
            p.at(at(6.0)),
            Progress::Recording {
                elapsed: Duration::from_secs(4),
                total: Duration::from_secs(10),
                issued: 401,
                achieved_rps: 100.0
            }
        );
        // A client behind its schedule shows a lower rate.
        p.set_issued(401);
        assert!(matches!(
            p.at(at(6.0)),
            Progress::Recording { achieved_rps, .. } if achieved_rps == 50.0
        ));
        p.set_issued(1200);
        assert_eq!(p.at(at(12.5)), Progress::Finishing { issued: 1000 });
        // The next run (a find-max step) starts from nothing.
        p.begin(plan(at(13.0)));
        assert!(matches!(p.at(at(13.5)), Progress::WarmUp { .. }));
    }

    #[test]
    fn no_warmup_starts_recording_at_once() {
        let start = Instant::now();
        let p = SteadyProgress::default();
        p.begin(Plan {
            warmup_requests: 0,
            warmup: Duration::ZERO,
            ..plan(start)
        });
        assert!(matches!(
            p.at(start),
            Progress::Recording {
                issued: 0,
                achieved_rps: 0.0,
                ..
            }
        ));
    }
}
