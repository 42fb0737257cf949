//! Failed handshakes, logged so that a scan cannot flood the log.
//!
//! Anyone who can reach a port can make handshakes fail (garbage, a port
//! scanner, a client with the wrong CA), as fast as they can open
//! connections. A warn line each would let them fill the disk and bury what
//! matters. So each failure is logged at debug, and at warn only a summary:
//! the first failure at once, then at most one line per interval with how
//! many failed since the last line and the last reason. A failure after the
//! last line is summarised when its interval ends, so none goes unreported.

use std::fmt::Display;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How often a summary may be logged, by default.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// One warn-level summary line's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSummary {
    /// What failed, e.g. `TLS handshakes`.
    pub what: &'static str,
    /// How many failed since the previous summary.
    pub count: u64,
    /// The last failure: its peer and reason.
    pub last: String,
    /// The interval between summaries.
    pub interval: Duration,
}

impl std::fmt::Display for FailureSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} failed (at most one such line every {:?}; each is logged at debug); last: {}",
            self.count, self.what, self.interval, self.last
        )
    }
}

type Sink = Box<dyn Fn(&FailureSummary) + Send + Sync>;

/// Counts failures and logs a rate-limited summary; share it (`Arc`) among
/// every task of one server.
pub struct FailureLog {
    what: &'static str,
    interval: Duration,
    sink: Sink,
    state: Mutex<State>,
}

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog")
            .field("what", &self.what)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Failures not yet in a summary.
    pending: u64,
    last: String,
    last_summary: Option<Instant>,
    /// A task will log the pending failures when the interval ends.
    flush_armed: bool,
}

impl FailureLog {
    /// Summaries go to `tracing` at warn.
    pub fn new(what: &'static str, interval: Duration) -> Arc<FailureLog> {
        FailureLog::with_sink(what, interval, |summary| tracing::warn!("{summary}"))
    }

    /// Summaries go to `sink` (tests, or a caller with its own log).
    pub fn with_sink(
        what: &'static str,
        interval: Duration,
        sink: impl Fn(&FailureSummary) + Send + Sync + 'static,
    ) -> Arc<FailureLog> {
        Arc::new(FailureLog {
            what,
            interval,
            sink: Box::new(sink),
            state: Mutex::default(),
        })
    }

    /// Records one failure: logged at debug now, in a summary at warn at
    /// most once per interval. Called from within a tokio runtime, a summary
    /// still due at the end of the interval is logged then.
    pub fn record(self: &Arc<Self>, peer: &dyn Display, reason: &dyn Display) {
        tracing::debug!(%peer, "{} failed: {reason}", self.what);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.pending += 1;
        state.last = format!("{peer}: {reason}");
        if state.flush_armed {
            return;
        }
        match state.last_summary {
            Some(at) if now.duration_since(at) < self.interval => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                state.flush_armed = true;
                let deadline = at + self.interval;
                let log = self.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    log.flush();
                });
            }
            _ => self.emit(&mut state, now),
        }
    }

    fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.flush_armed = false;
        if state.pending > 0 {
            self.emit(&mut state, Instant::now());
        }
    }

    fn emit(&self, state: &mut State, now: Instant) {
        let summary = FailureSummary {
            what: self.what,
            count: std::mem::take(&mut state.pending),
            last: state.last.clone(),
            interval: self.interval,
        };
        state.last_summary = Some(now);
        (self.sink)(&summary);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::sync::mpsc;

    fn log() -> (Arc<FailureLog>, mpsc::UnboundedReceiver<FailureSummary>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let log = FailureLog::with_sink("TLS handshakes", Duration::from_secs(10), move |s| {
            let _ = tx.send(s.clone());
        });
        (log, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_makes_one_line_per_interval_with_count_and_last_reason() {
        let (log, mut lines) = log();
        for i in 0..1000 {
            log.record(&"10.0.0.1:5000", &format!("garbage {i}"));
        }
        let first = lines.recv().await.unwrap();
        assert_eq!(first.count, 1);
        assert!(first.last.contains("garbage 0"), "{first}");
        // Nothing more until the interval ends; then the rest in one line.
        assert!(lines.try_recv().is_err());
        let started = Instant::now();
        let second = lines.recv().await.unwrap();
        assert!(started.elapsed() <= Duration::from_secs(10));
        assert_eq!(second.count, 999);
        assert!(
            second.last.contains("10.0.0.1:5000: garbage 999"),
            "{second}"
        );
        assert!(second.to_string().contains("999 TLS handshakes failed"));

        // A quiet interval later, the next failure is reported at once.
        tokio::time::advance(Duration::from_secs(11)).await;
        log.record(&"10.0.0.2:1", &"wrong CA");
        let third = lines.recv().await.unwrap();
        assert_eq!(
            (third.count, third.last.as_str()),
            (1, "10.0.0.2:1: wrong CA")
        );
        assert!(lines.try_recv().is_err());
    }
}
