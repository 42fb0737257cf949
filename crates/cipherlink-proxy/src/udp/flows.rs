//! The flow table both ends keep: entries with an idle expiry and a cap,
//! the least recently used evicted for a new one beyond the cap. Sans-IO:
//! every call takes the time, so tests drive it on a virtual clock.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Entries by key, ordered by their last use.
#[derive(Debug)]
pub struct FlowTable<K, V> {
    entries: HashMap<K, Slot<V>>,
    /// (last use, insertion number) -> key: the least recently used first.
    order: BTreeMap<(Instant, u64), K>,
    next: u64,
    idle: Duration,
    cap: usize,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    at: Instant,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// An empty table: entries expire after `idle` without use, and at
    /// most `cap` (at least 1) are held.
    pub fn new(idle: Duration, cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            idle,
            cap: cap.max(1),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key`, without counting it as a use.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|s| &s.value)
    }

    /// The entry of `key`, used at `now` (a time before its last use
    /// leaves that in place).
    pub fn touch(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        let slot = self.entries.get_mut(key)?;
        if now > slot.at {
            let k = self.order.remove(&(slot.at, slot.seq))?;
            slot.at = now;
            slot.seq = self.next;
            self.next += 1;
            self.order.insert((slot.at, slot.seq), k);
        }
        Some(&mut slot.value)
    }

    /// Adds `key` (replacing its entry if it has one), used at `now`. When
    /// the table is full, the least recently used entry makes room and is
    /// returned.
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> Option<(K, V)> {
        let evicted = match self.remove(&key) {
            Some(_) => None,
            None if self.entries.len() >= self.cap => self.pop_oldest(),
            None => None,
        };
        let seq = self.next;
        self.next += 1;
        self.order.insert((now, seq), key.clone());
        self.entries.insert(
            key,
            Slot {
                value,
                at: now,
                seq,
            },
        );
        evicted
    }

    /// Removes the entry of `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&(slot.at, slot.seq));
        Some(slot.value)
    }

    /// The least recently used entry and its last use.
    pub fn oldest(&self) -> Option<(&K, &V, Instant)> {
        let (&(at, _), key) = self.order.first_key_value()?;
        let slot = self.entries.get(key)?;
        Some((key, &slot.value, at))
    }

    /// Removes the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.entries.remove(&key)?;
        Some((key, slot.value))
    }

    /// When the least recently used entry expires, if there is one.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.oldest().map(|(_, _, at)| at + self.idle)
    }

    /// Whether an entry last used at `at` has expired at `now`.
    pub fn expired(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) >= self.idle
    }

    /// Removes and returns every entry unused for the idle time at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, V)> {
        let mut out = Vec::new();
        while let Some((_, _, at)) = self.oldest() {
            if !self.expired(at, now) {
                break;
            }
            out.extend(self.pop_oldest());
        }
        out
    }

    /// Removes and returns every entry whose key `gone` picks.
    pub fn remove_where(&mut self, gone: impl Fn(&K) -> bool) -> Vec<(K, V)> {
        let keys: Vec<K> = self.entries.keys().filter(|k| gone(k)).cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn an_entry_expires_after_the_idle_time_unless_used() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(IDLE, 16);
        t.insert("a", 1, t0);
        t.insert("b", 2, secs(t0, 10));
        assert_eq!(t.next_expiry(), Some(secs(t0, 60)));
        assert!(t.expire(secs(t0, 59)).is_empty());
        // A use moves "a" behind "b".
        assert_eq!(t.touch(&"a", secs(t0, 30)).copied(), Some(1));
        assert_eq!(t.next_expiry(), Some(secs(t0, 70)));
        assert_eq!(t.expire(secs(t0, 70)), vec![("b", 2)]);
        assert_eq!(t.expire(secs(t0, 89)), vec![]);
        assert_eq!(t.expire(secs(t0, 90)), vec![("a", 1)]);
        assert!(t.is_empty() && t.next_expiry().is_none());
    }

    #[test]
    fn a_use_earlier_than_the_last_keeps_the_last() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(IDLE, 4);
        t.insert("a", 1, secs(t0, 20));
        t.touch(&"a", secs(t0, 5));
        assert_eq!(t.oldest().map(|(_, _, at)| at), Some(secs(t0, 20)));
    }

    #[test]
    fn beyond_the_cap_the_least_recently_used_is_evicted() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(IDLE, 3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(t.insert(k, i, secs(t0, i as u64)), None);
        }
        t.touch(&"a", secs(t0, 5));
        assert_eq!(t.insert("d", 3, secs(t0, 6)), Some(("b", 1)));
        // Replacing an entry held evicts nothing.
        assert_eq!(t.insert("d", 4, secs(t0, 7)), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.insert("e", 5, secs(t0, 8)), Some(("c", 2)));
        assert_eq!(t.get(&"a"), Some(&0));
        assert_eq!(t.get(&"d"), Some(&4));
    }

    #[test]
    fn a_flood_of_new_keys_never_holds_more_than_the_cap() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(IDLE, 16);
        let mut evicted = 0;
        for i in 0..10_000u32 {
            evicted += usize::from(t.insert(i, i, t0).is_some());
            assert!(t.len() <= 16);
        }
        assert_eq!(evicted, 10_000 - 16);
        assert_eq!((t.entries.len(), t.order.len()), (16, 16));
        // The newest 16 are the ones left.
        assert!((10_000 - 16..10_000).all(|k| t.get(&k).is_some()));
    }

    #[test]
    fn remove_where_takes_every_entry_picked() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(IDLE, 8);
        for k in [(1, 1), (1, 2), (2, 1)] {
            t.insert(k, (), t0);
        }
        let mut gone: Vec<_> = t
            .remove_where(|k| k.0 == 1)
            .into_iter()
            .map(|e| e.0)
            .collect();
        gone.sort();
        assert_eq!(gone, vec![(1, 1), (1, 2)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.order.len(), 1);
    }
}
