//! A UDP service's counters, its `--stats` line, and the warning that
//! reports dropped datagrams (at most one line per [`DROP_REPORT_EVERY`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters of one UDP service, updated as datagrams pass.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub(crate) flows: AtomicUsize,
    pub(crate) sessions: AtomicUsize,
    pub(crate) opened: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) up: AtomicU64,
    pub(crate) up_bytes: AtomicU64,
    pub(crate) down: AtomicU64,
    pub(crate) down_bytes: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) no_session: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UdpSnapshot {
    /// Flows held now.
    pub flows: usize,
    /// Sessions open now (a client end: 0 or 1).
    pub sessions: usize,
    /// Flows opened so far.
    pub opened: u64,
    /// Flows forgotten after the idle timeout.
    pub expired: u64,
    /// Flows evicted (least recently used) to make room for a new one.
    pub evicted: u64,
    /// Datagrams carried from the accepting side towards the connected side.
    pub up: u64,
    /// Their bytes (the applications' datagrams, without the header).
    pub up_bytes: u64,
    /// Datagrams carried back.
    pub down: u64,
    /// Their bytes.
    pub down_bytes: u64,
    /// Datagrams dropped because they do not fit one transport message.
    pub too_large: u64,
    /// Datagrams dropped because a queue or socket buffer was full.
    pub queue_full: u64,
    /// Datagrams dropped because no session to the server end was up
    /// (client end: while it backs off after a failed attempt).
    pub no_session: u64,
    /// Messages from the other end dropped as not ours: too short, an
    /// unknown kind or an unknown flow.
    pub malformed: u64,
    /// Socket errors (the service refused a datagram, no descriptor left
    /// for a new flow's socket).
    pub errors: u64,
}

impl UdpStats {
    /// The counters now.
    pub fn snapshot(&self) -> UdpSnapshot {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UdpSnapshot {
            flows: self.flows.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
            opened: n(&self.opened),
            expired: n(&self.expired),
            evicted: n(&self.evicted),
            up: n(&self.up),
            up_bytes: n(&self.up_bytes),
            down: n(&self.down),
            down_bytes: n(&self.down_bytes),
            too_large: n(&self.too_large),
            queue_full: n(&self.queue_full),
            no_session: n(&self.no_session),
            malformed: n(&self.malformed),
            errors: n(&self.errors),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn carried(&self, up: bool, bytes: usize) {
        let (count, sum) = if up {
            (&self.up, &self.up_bytes)
        } else {
            (&self.down, &self.down_bytes)
        };
        count.fetch_add(1, Ordering::Relaxed);
        sum.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl UdpSnapshot {
    fn drops(&self) -> [(&'static str, u64); 5] {
        [
            ("too_large", self.too_large),
            ("queue_full", self.queue_full),
            ("no_session", self.no_session),
            ("malformed", self.malformed),
            ("errors", self.errors),
        ]
    }
}

/// One `--stats` line: what changed between `before` and `now`.
pub fn stats_line(service: &str, before: &UdpSnapshot, now: &UdpSnapshot) -> String {
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let drops: Vec<String> = now
        .drops()
        .iter()
        .zip(before.drops())
        .map(|((name, n), (_, b))| format!("{name}={}", d(b, *n)))
        .collect();
    format!(
        "stats {service}: udp flows={} sessions={} new={} expired={} evicted={} up={} ({}B) \
         down={} ({}B) dropped: {} (totals: flows={} up={} down={})",
        now.flows,
        now.sessions,
        d(before.opened, now.opened),
        d(before.expired, now.expired),
        d(before.evicted, now.evicted),
        d(before.up, now.up),
        d(before.up_bytes, now.up_bytes),
        d(before.down, now.down),
        d(before.down_bytes, now.down_bytes),
        drops.join(" "),
        now.opened,
        now.up,
        now.down,
    )
}

/// How often at most a UDP service logs that it dropped datagrams.
pub const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Logs a warning when datagrams were dropped since the last one, at most
/// once per [`DROP_REPORT_EVERY`] (a flood makes one line, not one per
/// datagram), and with `every` a stats line when something changed.
pub(crate) async fn report(name: String, stats: Arc<UdpStats>, every: Option<Duration>) {
    let mut warned = UdpSnapshot::default();
    let mut logged = UdpSnapshot::default();
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut last_line = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = stats.snapshot();
        let when = tokio::time::Instant::now();
        let dropped = now.drops() != warned.drops();
        if dropped && last_warning.is_none_or(|t| when - t >= DROP_REPORT_EVERY) {
            let what: Vec<String> = now
                .drops()
                .iter()
                .zip(warned.drops())
                .filter(|((_, n), (_, b))| n > b)
                .map(|((name, n), (_, b))| format!("{name}={}", n - b))
                .collect();
            tracing::warn!(service = %name, "udp: dropped datagrams: {}", what.join(" "));
            warned = now;
            last_warning = Some(when);
        }
        if let Some(every) = every {
            if when - last_line >= every && now != logged {
                tracing::info!("{}", stats_line(&name, &logged, &now));
                logged = now;
                last_line = when;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_changes_and_every_kind_of_drop() {
        let before = UdpSnapshot {
            up: 3,
            too_large: 1,
            ..UdpSnapshot::default()
        };
        let now = UdpSnapshot {
            flows: 2,
            opened: 2,
            up: 10,
            up_bytes: 700,
            too_large: 4,
            ..UdpSnapshot::default()
        };
        let line = stats_line("dns", &before, &now);
        assert!(
            line.starts_with(
                "stats dns: udp flows=2 sessions=0 new=2 expired=0 evicted=0 up=7 (700B)"
            ),
            "{line}"
        );
        assert!(line.contains("dropped: too_large=3 queue_full=0"), "{line}");
    }
}
