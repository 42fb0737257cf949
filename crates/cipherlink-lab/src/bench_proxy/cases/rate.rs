//! New tunnels per second: `concurrency` clients, each in a loop for the
//! case's duration: connect through the pair, 4-byte echo, close. Every
//! tunnel's echo is checked; failures are counted, never dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cpu::{self, CpuMeter};
use crate::bench_proxy::client::{one_tunnel, Entry};
use crate::LabError;

/// One pair's rate case.
#[derive(Debug, Default)]
pub(in crate::bench_proxy) struct RateOutcome {
    /// Tunnels that echoed correctly.
    pub tunnels: u64,
    /// Tunnels that failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Tunnels per second.
    pub per_second: f64,
    /// CPU per tunnel of `pids` (both ends), microseconds.
    pub cpu_us_per_tunnel: Option<f64>,
}

/// Runs the case against `entry`, reading `pids`' CPU time around it
/// (none for direct).
pub(in crate::bench_proxy) async fn run(
    entry: &Entry,
    duration: Duration,
    concurrency: usize,
    pids: Vec<u32>,
) -> Result<RateOutcome, LabError> {
    let meter = (!pids.is_empty())
        .then(|| CpuMeter::start(pids))
        .transpose()?;
    let first_error = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (entry, first_error) = (entry.clone(), first_error.clone());
        workers.spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match one_tunnel(&entry).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            (ok, errors)
        });
    }
    let mut outcome = RateOutcome::default();
    while let Some(done) = workers.join_next().await {
        // A worker cannot panic short of a bug; count it as an error if it does.
        let (ok, errors) = done.unwrap_or((0, 1));
        outcome.tunnels += ok;
        outcome.errors += errors;
    }
    let secs = start.elapsed().as_secs_f64();
    outcome.per_second = outcome.tunnels as f64 / secs.max(1e-9);
    if let Some(meter) = meter {
        outcome.cpu_us_per_tunnel = cpu::per_tunnel(meter.used()?, outcome.tunnels);
    }
    outcome.first_error = first_error.lock().ok().and_then(|mut f| f.take());
    Ok(outcome)
}
