//! The server end's flows, shared by its sessions: at most `cap` in all,
//! idle ones expired, and a new flow beyond the cap evicts the least
//! recently used flow of the session holding the most (its own when it
//! holds as many). One plain LRU over every session's flows would let one
//! session (any token holder) evict everyone else's flows with a flood of
//! new flow ids; this way a flood only churns the flooder's own, and each
//! session keeps its share of `cap`. Sans-IO, as [`FlowTable`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::flows::FlowTable;

/// A flow: (session, flow id).
pub(crate) type FlowKey = (u64, u32);

#[derive(Debug)]
pub(crate) struct FairFlows<V> {
    /// Every flow, by last use: expiry.
    all: FlowTable<FlowKey, V>,
    /// Each session's flow ids, by last use: which one it gives up.
    by_session: HashMap<u64, FlowTable<u32, ()>>,
    /// (flows held, session): the session holding the most last.
    sizes: BTreeSet<(usize, u64)>,
    idle: Duration,
    cap: usize,
}

impl<V> FairFlows<V> {
    /// Flows expire after `idle` without use; at most `cap` (at least 1)
    /// are held.
    pub(crate) fn new(idle: Duration, cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            // The tables never evict on their own: `insert` picks.
            all: FlowTable::new(idle, usize::MAX),
            by_session: HashMap::new(),
            sizes: BTreeSet::new(),
            idle,
            cap,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    fn held(&self, session: u64) -> usize {
        self.by_session.get(&session).map_or(0, FlowTable::len)
    }

    /// The flow of `key`, used at `now`.
    pub(crate) fn touch(&mut self, key: &FlowKey, now: Instant) -> Option<&mut V> {
        if let Some(ids) = self.by_session.get_mut(&key.0) {
            ids.touch(&key.1, now);
        }
        self.all.touch(key, now)
    }

    /// Adds the flow `key` (new), used at `now`; beyond the cap, the flow
    /// it evicts.
    pub(crate) fn insert(&mut self, key: FlowKey, value: V, now: Instant) -> Option<(FlowKey, V)> {
        let evicted = if self.all.get(&key).is_none() && self.all.len() >= self.cap {
            self.evict_for(key.0)
        } else {
            None
        };
        self.remove(&key);
        let before = self.held(key.0);
        self.by_session
            .entry(key.0)
            .or_insert_with(|| FlowTable::new(self.idle, usize::MAX))
            .insert(key.1, (), now);
        self.resize(key.0, before);
        self.all.insert(key, value, now);
        evicted
    }

    /// The least recently used flow of the session holding the most, or of
    /// `session` when it holds as many.
    fn evict_for(&mut self, session: u64) -> Option<(FlowKey, V)> {
        let &(most, largest) = self.sizes.last()?;
        let victim = if self.held(session) >= most {
            session
        } else {
            largest
        };
        let (&id, _, _) = self.by_session.get(&victim)?.oldest()?;
        let key = (victim, id);
        self.remove(&key).map(|v| (key, v))
    }

    /// Removes the flow of `key`.
    pub(crate) fn remove(&mut self, key: &FlowKey) -> Option<V> {
        let value = self.all.remove(key)?;
        let before = self.held(key.0);
        if let Some(ids) = self.by_session.get_mut(&key.0) {
            ids.remove(&key.1);
            if ids.is_empty() {
                self.by_session.remove(&key.0);
            }
        }
        self.resize(key.0, before);
        Some(value)
    }

    /// Removes every flow of `session`; how many there were.
    pub(crate) fn remove_session(&mut self, session: u64) -> usize {
        let Some(ids) = self.by_session.remove(&session) else {
            return 0;
        };
        self.sizes.remove(&(ids.len(), session));
        let mut ids = ids;
        let mut n = 0;
        while let Some((id, ())) = ids.pop_oldest() {
            n += usize::from(self.all.remove(&(session, id)).is_some());
        }
        n
    }

    fn resize(&mut self, session: u64, before: usize) {
        self.sizes.remove(&(before, session));
        let now = self.held(session);
        if now > 0 {
            self.sizes.insert((now, session));
        }
    }

    /// When the least recently used flow expires, if there is one.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.all.next_expiry()
    }

    /// Expires the flows idle at `now`, except those whose last use (from
    /// `activity`, another task's) is later: those are moved to it.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        activity: impl Fn(&V) -> Instant,
    ) -> Vec<(FlowKey, V)> {
        let mut gone = Vec::new();
        while let Some((&key, value, at)) = self.all.oldest() {
            if !self.all.expired(at, now) {
                break;
            }
            let last = activity(value);
            if last > at {
                self.touch(&key, last);
            } else {
                gone.extend(self.remove(&key).map(|v| (key, v)));
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_flood_from_one_session_evicts_only_its_own_flows() {
        let t0 = Instant::now();
        let mut t = FairFlows::new(IDLE, 8);
        // The victim's flows are the least recently used of all.
        for id in 0..3 {
            assert!(t.insert((1, id), (), t0).is_none());
        }
        for id in 0..10_000u32 {
            if let Some(((session, _), ())) = t.insert((2, id), (), at(t0, 1)) {
                assert_eq!(session, 2, "the flooder evicted another session's flow");
            }
            assert!(t.len() <= 8);
        }
        assert!((0..3).all(|id| t.touch(&(1, id), at(t0, 2)).is_some()));
        assert_eq!((t.held(1), t.held(2)), (3, 5));
    }

    #[test]
    fn a_session_below_its_share_takes_from_the_largest_and_one_alone_evicts_its_lru() {
        let t0 = Instant::now();
        let mut t = FairFlows::new(IDLE, 4);
        for id in 0..4 {
            t.insert((1, id), (), at(t0, u64::from(id)));
        }
        // Alone, a session gives up its least recently used flow.
        t.touch(&(1, 0), at(t0, 10));
        assert_eq!(t.insert((1, 9), (), at(t0, 11)).map(|e| e.0), Some((1, 1)));
        // A newcomer takes from the largest, its least recently used.
        assert_eq!(t.insert((2, 0), (), at(t0, 12)).map(|e| e.0), Some((1, 2)));
        assert_eq!(t.insert((2, 1), (), at(t0, 13)).map(|e| e.0), Some((1, 3)));
        // As large as the other: its own.
        assert_eq!(t.insert((2, 2), (), at(t0, 14)).map(|e| e.0), Some((2, 0)));
        assert_eq!(
            t.sizes.iter().copied().collect::<Vec<_>>(),
            [(2, 1), (2, 2)]
        );
    }

    #[test]
    fn expiry_and_session_ends_leave_no_trace() {
        let t0 = Instant::now();
        let mut t = FairFlows::new(IDLE, 16);
        for id in 0..4 {
            t.insert((1, id), id, t0);
            t.insert((2, id), id, at(t0, 30));
        }
        // Flow (1, 3) was busy (its replies) until 50 s: kept.
        let gone = t.expire(at(t0, 60), |&v| if v == 3 { at(t0, 50) } else { t0 });
        assert_eq!(gone.len(), 3);
        assert_eq!(t.held(1), 1);
        assert_eq!(t.remove_session(2), 4);
        assert_eq!(t.remove_session(2), 0);
        assert_eq!(t.expire(at(t0, 110), |_| t0).len(), 1);
        assert!(t.len() == 0 && t.by_session.is_empty() && t.sizes.is_empty());
        assert_eq!(t.next_expiry(), None);
    }
}
