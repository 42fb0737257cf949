//! The listener's memory of admitted INITs: a recorded INIT, replayed
//! from anywhere, would otherwise open a session (and take a place) each
//! time. SeasideVPN's clients draw a fresh ephemeral key for every INIT,
//! retransmissions included, so none of theirs is refused.

use std::collections::{HashSet, VecDeque};

use cipherlink_port::crypto::blake2b_256;
use cipherlink_port::SessionKey;

/// A bounded set of INITs seen (16 bytes of a hash of each session key).
#[derive(Debug)]
pub struct Seen {
    cap: usize,
    order: VecDeque<[u8; 16]>,
    set: HashSet<[u8; 16]>,
}

impl Seen {
    /// Remembers at most `cap` INITs, forgetting the oldest first.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// True the first time `key` is seen (and remembers it).
    pub fn first_time(&mut self, key: &SessionKey) -> bool {
        let h = blake2b_256(&[b"cipherlink typhoon replay", key.as_bytes()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_once_and_the_memory_is_bounded() {
        let mut seen = Seen::new(2);
        let k = |b| SessionKey::from_bytes([b; 32]);
        assert!(seen.first_time(&k(1)));
        assert!(!seen.first_time(&k(1)));
        assert!(seen.first_time(&k(2)));
        assert!(seen.first_time(&k(3)));
        assert_eq!(seen.order.len(), 2);
        assert!(seen.first_time(&k(1)), "the oldest was forgotten");
    }
}
