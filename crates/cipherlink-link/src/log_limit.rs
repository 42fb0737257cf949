//! A bound on the log lines peers can cause: a refused token is worth a
//! warning (as sshd logs a refused key), but any holder of `S` can make a
//! refusal per connection, and a line each would let it fill the disk.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines at once before the limit applies.
const BURST: u32 = 10;
/// Then one line per this long.
const EVERY: Duration = Duration::from_secs(1);

struct State {
    tokens: u32,
    refilled: Instant,
    skipped: u64,
}

/// A token bucket of log lines: [`BURST`] at once, then one per [`EVERY`].
pub(crate) struct LogLimit {
    state: Mutex<State>,
}

impl LogLimit {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                tokens: BURST,
                refilled: now,
                skipped: 0,
            }),
        }
    }

    /// `Some(n)`: log this line, and say that `n` lines were left out
    /// before it; `None`: leave it out (it is counted).
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let earned = now.saturating_duration_since(s.refilled).as_nanos() / EVERY.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            s.tokens = s.tokens.saturating_add(earned).min(BURST);
            s.refilled = now;
        }
        if s.tokens == 0 {
            s.skipped += 1;
            return None;
        }
        s.tokens -= 1;
        Some(std::mem::take(&mut s.skipped))
    }
}

/// " (N more not logged)" after a line that follows left-out ones.
pub(crate) fn skipped_note(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} more like it not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_a_second_counting_the_rest() {
        let t0 = Instant::now();
        let limit = LogLimit::new(t0);
        for _ in 0..BURST {
            assert_eq!(limit.allow(t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(limit.allow(t0), None);
        }
        assert_eq!(limit.allow(t0 + EVERY), Some(1000));
        assert_eq!(limit.allow(t0 + EVERY), None);
        // Long quiet: a full burst again, never more.
        let later = t0 + EVERY * 1000;
        for _ in 0..BURST {
            assert!(limit.allow(later).is_some());
        }
        assert_eq!(limit.allow(later), None);
    }
}
