//! `--find-max`: the highest rate one channel sustains within bounds.
//!
//! Each step is a short steady run on the same channel. A step passes when
//! its p99 is within the bound, its error fraction is within the bound, and
//! the scheduler really sent at least 97% of the asked rate (otherwise the
//! client, not the server, is the limit and the p99 would flatter). The rate
//! grows geometrically until a step fails, then bisects between the last pass
//! and the first failure. A failed step is run once more before it counts.

use std::time::Duration;

use tonic::transport::Channel;

use crate::client::progress::SteadyProgress;
use crate::client::steady::{run_steady_reporting, SteadyOptions, SteadyReport};
use crate::error::RpcError;
use crate::timer::Timer;

/// Bounds and pacing of the search.
#[derive(Debug, Clone)]
pub struct FindMaxOptions {
    /// First rate tried.
    pub start_rps: f64,
    /// Never try above this.
    pub max_rps: f64,
    /// Factor between rates until the first failure.
    pub growth: f64,
    /// Bisection steps after it.
    pub refine_steps: u32,
    /// p99 must be at most this.
    pub p99_bound: Duration,
    /// Failed fraction must be at most this.
    pub max_error_rate: f64,
}

/// One tried rate.
#[derive(Debug, Clone)]
pub struct Step {
    /// The run's report.
    pub report: SteadyReport,
    /// Whether it met the bounds.
    pub passed: bool,
}

/// The search result.
#[derive(Debug, Clone)]
pub struct FindMax {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Highest passing rate, if any passed.
    pub best_rps: Option<f64>,
}

fn passes(r: &SteadyReport, o: &FindMaxOptions) -> bool {
    !r.latencies.is_empty()
        && r.latencies.percentile_ms(99.0) <= o.p99_bound.as_secs_f64() * 1e3
        && r.error_rate() <= o.max_error_rate
        && r.achieved_rps >= 0.97 * r.target_rps
}

/// Runs the search; `base` gives duration, warmup, deadline and payload of
/// every step. `progress` follows each step's run in turn.
pub async fn find_max(
    channel: Channel,
    base: &SteadyOptions,
    opts: &FindMaxOptions,
    timer: &Timer,
    progress: &SteadyProgress,
    mut on_step: impl FnMut(&Step),
) -> Result<FindMax, RpcError> {
    if !(opts.growth > 1.0 && opts.start_rps > 0.0 && opts.max_rps >= opts.start_rps) {
        return Err(RpcError::Setting {
            field: "growth",
            detail: "needs growth > 1 and 0 < start rate <= max rate".into(),
        });
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut best: Option<f64> = None;
    let mut failed: Option<f64> = None;
    let mut rate = opts.start_rps;
    loop {
        let step = try_rate(&channel, base, opts, rate, timer, progress).await?;
        on_step(&step);
        let passed = step.passed;
        steps.push(step);
        if !passed {
            failed = Some(rate);
            break;
        }
        best = Some(rate);
        if rate >= opts.max_rps {
            break;
        }
        rate = (rate * opts.growth).min(opts.max_rps);
    }
    if let (Some(mut lo), Some(mut hi)) = (best, failed) {
        for _ in 0..opts.refine_steps {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            let step = try_rate(&channel, base, opts, mid, timer, progress).await?;
            on_step(&step);
            if step.passed {
                lo = mid;
                best = Some(mid);
            } else {
                hi = mid;
            }
            steps.push(step);
        }
    }
    Ok(FindMax {
        steps,
        best_rps: best,
    })
}

async fn try_rate(
    channel: &Channel,
    base: &SteadyOptions,
    opts: &FindMaxOptions,
    rate: f64,
    timer: &Timer,
    progress: &SteadyProgress,
) -> Result<Step, RpcError> {
    let step_opts = SteadyOptions {
        rate,
        ..base.clone()
    };
    let mut report = run_steady_reporting(channel.clone(), &step_opts, timer, progress)
        .await?
        .report;
    if !passes(&report, opts) {
        // One stall (another process, a page fault) can push a short step's
        // p99 over the bound: a failure counts only if it repeats.
        report = run_steady_reporting(channel.clone(), &step_opts, timer, progress)
            .await?
            .report;
    }
    Ok(Step {
        passed: passes(&report, opts),
        report,
    })
}
