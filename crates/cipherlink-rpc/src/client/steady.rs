//! `rpc steady` (the Python suite's 01_steady): a fixed request rate over one HTTP/2 channel, open loop.
//!
//! Request `i` is due at `start + i / rate`. The scheduler issues every due
//! request whether or not earlier ones have answered, and each latency runs
//! from the request's *intended* send time, so a stalled server or a late
//! scheduler shows up in the numbers instead of silently lowering the load
//! (no coordinated omission). Outstanding requests are capped; a request that
//! would exceed the cap is recorded as RESOURCE_EXHAUSTED at once instead of
//! growing memory without bound.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::client::progress::{Plan, SteadyProgress};
use crate::error::RpcError;
use crate::pb::score_service_client::ScoreServiceClient;
use crate::pb::JsonVector;
use crate::record::{failure_name, Outcome};
use crate::stats::Latencies;
use crate::timer::Timer;

/// How a steady run loads the server.
#[derive(Debug, Clone)]
pub struct SteadyOptions {
    /// Requests per second.
    pub rate: f64,
    /// Recorded part of the run.
    pub duration: Duration,
    /// Unrecorded run-in before it.
    pub warmup: Duration,
    /// Per-request deadline (sent as grpc-timeout and enforced locally).
    pub deadline: Duration,
    /// Requests in flight at most; beyond it they fail as RESOURCE_EXHAUSTED.
    pub max_outstanding: usize,
    /// The `json` field of every request.
    pub payload: String,
}

impl SteadyOptions {
    /// Checks the numbers before any traffic is sent.
    pub fn validate(&self) -> Result<(), RpcError> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e7) {
            return Err(RpcError::Setting {
                field: "rate",
                detail: format!("{} is not a rate in (0, 10,000,000]", self.rate),
            });
        }
        if self.duration.is_zero() {
            return Err(RpcError::Setting {
                field: "duration",
                detail: "must be above 0".into(),
            });
        }
        if self.deadline.is_zero() {
            return Err(RpcError::Setting {
                field: "deadline",
                detail: "must be above 0".into(),
            });
        }
        if self.max_outstanding == 0 || self.max_outstanding > Semaphore::MAX_PERMITS {
            return Err(RpcError::Setting {
                field: "max_outstanding",
                detail: format!("must be in 1..={}", Semaphore::MAX_PERMITS),
            });
        }
        Ok(())
    }
}

/// What a steady run did, beyond the per-request outcomes.
#[derive(Debug, Clone)]
pub struct SteadyReport {
    /// The rate asked for.
    pub target_rps: f64,
    /// Recorded requests issued per second of recorded schedule actually taken.
    pub achieved_rps: f64,
    /// Largest delay between a request's intended and actual issue time.
    pub max_issue_lag: Duration,
    /// Successful-latency histogram.
    pub latencies: Latencies,
    /// Failed requests by code, most frequent first.
    pub errors: Vec<(&'static str, u64)>,
    /// Recorded requests.
    pub total: u64,
}

impl SteadyReport {
    /// Failed fraction of recorded requests.
    pub fn error_rate(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.errors.iter().map(|(_, n)| *n).sum::<u64>() as f64 / self.total as f64
    }
}

/// Outcomes in schedule order plus the report.
#[derive(Debug, Clone)]
pub struct SteadyRun {
    /// One per recorded request, in intended-send order.
    pub outcomes: Vec<Outcome>,
    /// Summary.
    pub report: SteadyReport,
}

/// Shortest time between two wake-ups of the scheduler (see [`run_steady`]).
pub const MIN_WAKE_GAP: Duration = Duration::from_micros(100);

/// Slots the in-flight tasks fill; `None` until answered.
type Slots = Arc<Mutex<Vec<Option<Outcome>>>>;

/// Runs the steady test on `channel`.
pub async fn run_steady(
    channel: Channel,
    opts: &SteadyOptions,
    timer: &Timer,
) -> Result<SteadyRun, RpcError> {
    run_steady_reporting(channel, opts, timer, &SteadyProgress::default()).await
}

/// [`run_steady`], keeping `progress` up to date for a display on another
/// thread (once per wake-up of the scheduler, not per request).
pub async fn run_steady_reporting(
    channel: Channel,
    opts: &SteadyOptions,
    timer: &Timer,
    progress: &SteadyProgress,
) -> Result<SteadyRun, RpcError> {
    opts.validate()?;
    let client = ScoreServiceClient::new(channel);
    let interval = 1.0 / opts.rate;
    let warm_n = (opts.warmup.as_secs_f64() * opts.rate).round() as u64;
    let n = ((opts.duration.as_secs_f64() * opts.rate).round() as u64).max(1);
    let total = warm_n + n;
    let slots: Slots = Arc::new(Mutex::new(vec![
        None;
        usize::try_from(n).unwrap_or(usize::MAX)
    ]));
    let permits = Arc::new(Semaphore::new(opts.max_outstanding));
    let payload: Arc<str> = opts.payload.as_str().into();

    // A short lead so the first request is not already late.
    let start = Instant::now() + Duration::from_millis(2);
    progress.begin(Plan {
        start,
        rate: opts.rate,
        warmup_requests: warm_n,
        recorded_requests: n,
        warmup: opts.warmup,
        duration: opts.duration,
    });
    let due = |i: u64| start + Duration::from_secs_f64(interval * i as f64);
    let mut max_lag = Duration::ZERO;
    let mut first_issue = None;
    let mut last_issue = start;
    let mut i = 0u64;
    let mut last_wake = start;
    while i < total {
        // At most one wake-up per MIN_WAKE_GAP: above ~10,000/s requests go
        // out in small batches, which the HTTP/2 connection then writes in one
        // TLS record and one system call. Latency still runs from each
        // request's own intended time, so the batching is measured, not hidden.
        timer
            .sleep_until(due(i).max(last_wake + MIN_WAKE_GAP))
            .await;
        let now = Instant::now();
        last_wake = now;
        // Issue everything already due: after a late wake-up this catches up
        // at once rather than shifting the whole schedule.
        while i < total && due(i) <= now {
            let intended = due(i);
            max_lag = max_lag.max(now.saturating_duration_since(intended));
            let slot = i.checked_sub(warm_n).and_then(|k| usize::try_from(k).ok());
            if slot.is_some() {
                first_issue.get_or_insert(now);
                last_issue = now;
            }
            issue(
                &client,
                &permits,
                &slots,
                slot,
                intended,
                opts.deadline,
                &payload,
            );
            i += 1;
        }
        progress.set_issued(i);
    }

    // Let the last requests finish; none can outlive its deadline by much.
    let all = u32::try_from(opts.max_outstanding).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        opts.deadline + Duration::from_secs(2),
        permits.acquire_many(all),
    )
    .await;
    let filled = std::mem::take(&mut *slots.lock().unwrap_or_else(PoisonError::into_inner));
    let outcomes: Vec<Outcome> = filled
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Err("DEADLINE_EXCEEDED")))
        .collect();

    let span = first_issue.map(|f| last_issue.saturating_duration_since(f));
    let achieved_rps = match span {
        Some(s) if n > 1 && !s.is_zero() => (n - 1) as f64 / s.as_secs_f64(),
        _ => opts.rate,
    };
    let report = summarize(&outcomes, opts.rate, achieved_rps, max_lag);
    Ok(SteadyRun { outcomes, report })
}

fn issue(
    client: &ScoreServiceClient<Channel>,
    permits: &Arc<Semaphore>,
    slots: &Slots,
    slot: Option<usize>,
    intended: Instant,
    deadline: Duration,
    payload: &Arc<str>,
) {
    let put = move |slots: &Slots, outcome: Outcome| {
        if let Some(k) = slot {
            let mut v = slots.lock().unwrap_or_else(PoisonError::into_inner);
            // After the final wait the vector is taken; late answers are dropped.
            if let Some(s) = v.get_mut(k) {
                *s = Some(outcome);
            }
        }
    };
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        put(slots, Outcome::Err("RESOURCE_EXHAUSTED"));
        return;
    };
    let mut client = client.clone();
    let slots = slots.clone();
    let json = payload.to_string();
    tokio::spawn(async move {
        let sent = Instant::now();
        let mut req = tonic::Request::new(JsonVector { json });
        req.set_timeout(deadline);
        let outcome = match tokio::time::timeout(deadline, client.get_score(req)).await {
            Ok(Ok(_)) => Outcome::Ok(intended.elapsed()),
            Ok(Err(status)) => Outcome::Err(failure_name(&status, sent, deadline)),
            Err(_) => Outcome::Err("DEADLINE_EXCEEDED"),
        };
        // Record before releasing the permit: the final wait takes all permits
        // and then the slots, so the other order could lose this answer.
        put(&slots, outcome);
        drop(permit);
    });
}

/// Builds a report from outcomes.
pub fn summarize(
    outcomes: &[Outcome],
    target_rps: f64,
    achieved_rps: f64,
    max_issue_lag: Duration,
) -> SteadyReport {
    let mut latencies = Latencies::new();
    let mut errors: Vec<(&'static str, u64)> = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Ok(d) => latencies.record_ms(d.as_secs_f64() * 1e3),
            Outcome::Err(code) => match errors.iter_mut().find(|(c, _)| c == code) {
                Some((_, n)) => *n += 1,
                None => errors.push((code, 1)),
            },
        }
    }
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    SteadyReport {
        target_rps,
        achieved_rps,
        max_issue_lag,
        latencies,
        errors,
        total: outcomes.len() as u64,
    }
}
