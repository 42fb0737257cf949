//! A memory of admitted client INITs, so that a recording of one, replayed,
//! gets silence instead of a user port. A genuine client (ours, and
//! SeasideVPN's) draws a fresh ephemeral key for every INIT, and the
//! session key is a hash of it: a session key seen before is a replay.
//!
//! Bounded: the oldest is forgotten past `capacity`, and the memory lives
//! as long as the listener (docs/port-wire.md §6 says what stays open).
//! Only INITs whose token was admitted are remembered, so flushing the
//! memory takes a valid token.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::crypto::{blake2b_256, SessionKey};

/// What is kept of a session key: a hash, never the key itself.
type Mark = [u8; 32];

pub(crate) struct Seen {
    capacity: usize,
    inner: Mutex<(HashSet<Mark>, VecDeque<Mark>)>,
}

impl Seen {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Records `session`; false if it was recorded before (a replay).
    pub(crate) fn first_time(&self, session: &SessionKey) -> bool {
        let mark = blake2b_256(&[b"cipherlink-port replay mark", session.as_bytes()]);
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(mark) {
            return false;
        }
        order.push_back(mark);
        if order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_once_and_forgotten_past_the_capacity() {
        let seen = Seen::new(2);
        let k = |b| SessionKey::from_bytes([b; 32]);
        assert!(seen.first_time(&k(1)));
        assert!(!seen.first_time(&k(1)));
        assert!(seen.first_time(&k(2)));
        assert!(seen.first_time(&k(3)));
        // 1 was the oldest of three: forgotten.
        assert!(seen.first_time(&k(1)));
        assert!(!seen.first_time(&k(3)));
    }
}
