//! Sleeping to a deadline with sub-millisecond precision.
//!
//! tokio's timer wheel ticks once a millisecond and rounds deadlines up to the
//! next tick, so a 5 ms sleep lasts 5-6 ms and a 0.5 ms send interval becomes
//! bursts of 2 every millisecond. Both show up in measured latency. The
//! [`Timer::Precise`] variant keeps deadlines in a heap served by one OS
//! thread that waits on a condition variable with a timeout (an hrtimer on
//! Linux, typically tens of microseconds late) and completes a oneshot per
//! due deadline. One thread and one wake-up per deadline: cheap enough for
//! tens of thousands of deadlines a second.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How to sleep.
#[derive(Debug, Clone)]
pub enum Timer {
    /// tokio's own timer (1 ms resolution).
    Tokio,
    /// The heap-and-thread timer of this module.
    Precise(PreciseTimer),
}

impl Timer {
    /// The precise timer, starting its thread; falls back to tokio's timer
    /// (with a warning) if the thread cannot be spawned.
    pub fn precise() -> Self {
        match PreciseTimer::start() {
            Ok(t) => Timer::Precise(t),
            Err(e) => {
                tracing::warn!("cannot start the precise timer thread ({e}); using tokio's timer");
                Timer::Tokio
            }
        }
    }

    /// Sleeps until `deadline`.
    pub async fn sleep_until(&self, deadline: Instant) {
        match self {
            Timer::Tokio => tokio::time::sleep_until(deadline.into()).await,
            Timer::Precise(t) => t.sleep_until(deadline).await,
        }
    }

    /// Sleeps for `d` from now; returns at once for zero.
    pub async fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            self.sleep_until(Instant::now() + d).await;
        }
    }
}

struct Entry {
    deadline: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the critical sections can leave the heap inconsistent,
        // so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the thread when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.wake.notify_one();
    }
}

/// A handle on the timer thread; clones share it.
#[derive(Clone)]
pub struct PreciseTimer(Arc<Owner>);

impl std::fmt::Debug for PreciseTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreciseTimer")
    }
}

impl PreciseTimer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("cipherlink-timer".into())
            .spawn(move || run(&worker))?;
        Ok(Self(Arc::new(Owner(shared))))
    }

    /// Sleeps until `deadline`.
    pub async fn sleep_until(&self, deadline: Instant) {
        if deadline <= Instant::now() {
            return;
        }
        let (done, wait) = oneshot::channel();
        let shared = &self.0 .0;
        let earliest = {
            let mut st = shared.lock();
            st.seq += 1;
            let seq = st.seq;
            st.heap.push(Reverse(Entry {
                deadline,
                seq,
                done,
            }));
            st.heap.peek().is_some_and(|Reverse(e)| e.seq == seq)
        };
        // Only a new earliest deadline changes how long the thread must wait.
        if earliest {
            shared.wake.notify_one();
        }
        // An error means the thread is gone (stopped): stop waiting.
        let _ = wait.await;
    }
}

fn run(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            // Wake every sleeper: dropping the senders completes their waits.
            st.heap.clear();
            return;
        }
        let now = Instant::now();
        while st.heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            if let Some(Reverse(e)) = st.heap.pop() {
                let _ = e.done.send(());
            }
        }
        st = match st.heap.peek().map(|Reverse(e)| e.deadline) {
            None => shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some(at) => {
                let left = at.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_are_not_early_and_all_complete() {
        let timer = Timer::precise();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in (0..20u64).rev() {
            let t = timer.clone();
            tasks.push(tokio::spawn(async move {
                let at = start + Duration::from_micros(200 * i);
                t.sleep_until(at).await;
                Instant::now() >= at
            }));
        }
        for task in tasks {
            let not_early = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .map(|r| r.unwrap_or(false))
                .unwrap_or(false);
            assert!(not_early);
        }
    }
}
