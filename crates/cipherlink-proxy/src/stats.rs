//! Per-service counters, and the `--stats` line made from two snapshots.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Counters of one service, updated as tunnels run.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub(crate) active: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Bytes from the accepting side towards the connected side.
    pub(crate) up: AtomicU64,
    /// Bytes from the connected side back to the accepting side.
    pub(crate) down: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Tunnels open now.
    pub active: usize,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Tunnels that ended cleanly.
    pub completed: u64,
    /// Tunnels that ended with an error.
    pub failed: u64,
    /// Bytes accepted side -> connected side.
    pub up: u64,
    /// Bytes connected side -> accepted side.
    pub down: u64,
}

impl ServiceStats {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            active: self.active.load(Ordering::Acquire),
            accepted: self.accepted.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}

/// One line: what changed between `before` and `now` over `elapsed`.
pub fn stats_line(service: &str, before: &Snapshot, now: &Snapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs / 1e6;
    format!(
        "stats {service}: active={} new={} ok={} failed={} up={:.2}MB/s down={:.2}MB/s (totals: accepted={} up={}B down={}B)",
        now.active,
        now.accepted.saturating_sub(before.accepted),
        now.completed.saturating_sub(before.completed),
        now.failed.saturating_sub(before.failed),
        rate(before.up, now.up),
        rate(before.down, now.down),
        now.accepted,
        now.up,
        now.down,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_deltas_and_rates() {
        let before = Snapshot {
            accepted: 10,
            up: 1_000_000,
            ..Snapshot::default()
        };
        let now = Snapshot {
            active: 2,
            accepted: 15,
            completed: 3,
            up: 3_000_000,
            ..Snapshot::default()
        };
        let line = stats_line("web", &before, &now, Duration::from_secs(2));
        assert!(
            line.starts_with("stats web: active=2 new=5 ok=3 failed=0 up=1.00MB/s"),
            "{line}"
        );
    }
}
