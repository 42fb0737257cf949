//! When another task last used a table entry: a flow's replies are read by
//! the flow's own task, a plain session's replies sent by its writer, and
//! the table's owner must not expire what they keep busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time of the last use, shared with the task that uses it.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    epoch: Instant,
    ms: Arc<AtomicU64>,
}

/// Now, on tokio's clock (paused in tests), as the flow tables take it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Activity {
    /// No use since `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a use now.
    pub(crate) fn mark(&self) {
        let ms = now().saturating_duration_since(self.epoch).as_millis();
        self.ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The last use recorded (its creation if none).
    pub(crate) fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

/// Expires the entries of `table` idle at `now`, except those whose
/// [`Activity`] (from `activity`) shows a later use: those are moved to
/// that use. Returns what expired.
pub(crate) fn expire_unless_active<K: std::hash::Hash + Eq + Clone, V>(
    table: &mut super::flows::FlowTable<K, V>,
    now: Instant,
    activity: impl Fn(&V) -> Instant,
) -> Vec<(K, V)> {
    let mut gone = Vec::new();
    while let Some((key, value, at)) = table.oldest() {
        if !table.expired(at, now) {
            break;
        }
        let last = activity(value);
        if last > at {
            let key = key.clone();
            table.touch(&key, last);
        } else {
            gone.extend(table.pop_oldest());
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::super::flows::FlowTable;
    use super::*;

    #[test]
    fn a_busy_entry_is_kept_and_an_idle_one_expires() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut t = FlowTable::new(idle, 8);
        t.insert("busy", t0 + Duration::from_secs(50), t0);
        t.insert("idle", t0, t0);
        let gone = expire_unless_active(&mut t, t0 + idle, |v| *v);
        assert_eq!(gone, vec![("idle", t0)]);
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_secs(110)));
    }
}
