//! A map whose entries expire a fixed time after insertion and whose size
//! is capped (the oldest entry goes first): the server's half-received
//! first messages, stray second pieces and answered handshakes. Anyone can
//! fill these, so each has a cap and a lifetime; nothing waits forever.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A capped, expiring map.
pub struct Expiring<K, V> {
    map: HashMap<K, (V, u64)>,
    /// Insertion order: (key, expiry, generation); stale generations are
    /// skipped when popped.
    order: VecDeque<(K, Instant, u64)>,
    cap: usize,
    life: Duration,
    generation: u64,
}

impl<K: Hash + Eq + Clone, V> Expiring<K, V> {
    /// At most `cap` entries, each living `life`.
    pub fn new(cap: usize, life: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            life,
            generation: 0,
        }
    }

    /// Inserts (or replaces) `key`, evicting the oldest entry when full.
    /// Returns how many were evicted for room.
    pub fn insert(&mut self, now: Instant, key: K, value: V) -> usize {
        self.expire(now);
        let mut evicted = 0;
        while self.map.len() >= self.cap && !self.map.contains_key(&key) {
            if self.pop_oldest().is_none() {
                break;
            }
            evicted += 1;
        }
        self.generation += 1;
        self.map.insert(key.clone(), (value, self.generation));
        self.order
            .push_back((key, now + self.life, self.generation));
        // Replacements leave stale order entries: keep them bounded too.
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order
                .retain(|(k, _, g)| map.get(k).is_some_and(|(_, live)| live == g));
        }
        evicted
    }

    fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some((k, _, g)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, live)| *live == g) {
                return self.map.remove(&k).map(|(v, _)| (k, v));
            }
        }
        None
    }

    /// Drops what expired by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some((k, at, g)) = self.order.front() {
            if *at > now {
                break;
            }
            if self.map.get(k).is_some_and(|(_, live)| live == g) {
                self.map.remove(k);
            }
            self.order.pop_front();
        }
    }

    /// Takes `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(v, _)| v)
    }

    /// The entry for `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The entry for `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(v, _)| v)
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// When the oldest entry expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(_, at, _)| *at)
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_oldest_first_and_expiring() {
        let t0 = Instant::now();
        let mut m = Expiring::new(3, Duration::from_secs(2));
        for k in 0..3 {
            assert_eq!(m.insert(t0, k, k * 10), 0);
        }
        assert_eq!(m.insert(t0, 3, 30), 1);
        assert!(!m.contains(&0));
        assert!(m.contains(&3));
        // Replacing keeps one entry per key.
        for _ in 0..100 {
            m.insert(t0, 3, 31);
        }
        assert_eq!(m.len(), 3);
        assert!(m.order.len() <= 6);
        m.expire(t0 + Duration::from_secs(2));
        assert!(m.is_empty());
        assert_eq!(m.next_expiry(), None);
    }
}
