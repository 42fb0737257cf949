//! CPU per new tunnel: the pair's processes' utime + stime (both ends, all
//! threads) across the rate case, divided by the tunnels it completed.
//! Unlike a wall-clock rate, this stays comparable when other work shares
//! the machine.

use std::time::Duration;

use crate::bench_proxy::procfs;
use crate::LabError;

/// CPU time of a set of processes from a starting point.
pub(in crate::bench_proxy) struct CpuMeter {
    pids: Vec<u32>,
    start: Duration,
}

impl CpuMeter {
    /// Reads `pids`' CPU time now.
    pub(in crate::bench_proxy) fn start(pids: Vec<u32>) -> Result<CpuMeter, LabError> {
        let start = procfs::cpu_time(&pids)?;
        Ok(CpuMeter { pids, start })
    }

    /// CPU time used since [`CpuMeter::start`].
    pub(in crate::bench_proxy) fn used(&self) -> Result<Duration, LabError> {
        Ok(procfs::cpu_time(&self.pids)?.saturating_sub(self.start))
    }
}

/// Microseconds of CPU per tunnel, when any completed.
pub(in crate::bench_proxy) fn per_tunnel(used: Duration, tunnels: u64) -> Option<f64> {
    (tunnels > 0).then(|| used.as_secs_f64() * 1e6 / tunnels as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_divided_by_the_completed_tunnels() {
        assert_eq!(per_tunnel(Duration::from_millis(500), 1_000), Some(500.0));
        assert_eq!(per_tunnel(Duration::from_millis(500), 0), None);
    }
}
