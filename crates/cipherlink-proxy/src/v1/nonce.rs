//! Nonces: how our sender picks them, and how a receiver refuses a nonce
//! used twice within one connection (docs/v1-frame.md, "Nonces").
//!
//! The seed's peers pick each 24-byte nonce at random, which is safe for
//! XSalsa20 but leaves a receiver nothing smaller than "every nonce seen" to
//! detect reuse with. Our sender therefore sends a sequence: a random
//! 16-byte prefix chosen per connection, then a 64-bit big-endian counter.
//! A receiver remembers the first prefix it sees and the highest counter
//! under it (16 + 8 bytes, covering the whole connection), and, for nonces
//! outside that sequence (a random-nonce sender such as PyNaCl's default),
//! the last [`RECENT_NONCES`] of them.

use std::collections::{HashSet, VecDeque};

use super::frame::NONCE_LEN;

/// How many foreign (non-sequence) nonces a receiver remembers. A
/// random-nonce sender that repeats a nonce more than this many frames
/// later is not caught (worst case ~56 KiB per connection: set + queue).
pub const RECENT_NONCES: usize = 1024;

const PREFIX_LEN: usize = 16;

/// Our sender's nonces: random prefix, then a counter.
#[derive(Debug)]
pub struct NonceSequence {
    prefix: [u8; PREFIX_LEN],
    next: u64,
}

impl NonceSequence {
    /// A sequence with a fresh random prefix (from the OS generator).
    pub fn random() -> NonceSequence {
        NonceSequence::with_prefix(rand::random())
    }

    /// A sequence with a given prefix: for test vectors only.
    pub fn with_prefix(prefix: [u8; PREFIX_LEN]) -> NonceSequence {
        NonceSequence { prefix, next: 0 }
    }

    /// The next nonce, or `None` after 2^64 of them (the connection must end).
    pub fn next_nonce(&mut self) -> Option<[u8; NONCE_LEN]> {
        let counter = self.next;
        self.next = self.next.checked_add(1)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&self.prefix);
        nonce[PREFIX_LEN..].copy_from_slice(&counter.to_be_bytes());
        Some(nonce)
    }
}

/// A receiver's memory of the nonces one connection has used.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// The first nonce's prefix and the highest counter seen under it.
    sequence: Option<([u8; PREFIX_LEN], u64)>,
    recent: HashSet<[u8; NONCE_LEN]>,
    order: VecDeque<[u8; NONCE_LEN]>,
}

impl ReplayGuard {
    /// Records `nonce`; `false` if this connection already used it (or, for
    /// a nonce in the sender's sequence, one at or after it: a sequence
    /// that does not advance is a replay or a broken sender).
    pub fn check_and_record(&mut self, nonce: &[u8; NONCE_LEN]) -> bool {
        let (prefix, counter) = split(nonce);
        match &mut self.sequence {
            None => {
                self.sequence = Some((prefix, counter));
                true
            }
            Some((seen, highest)) if *seen == prefix => {
                if counter <= *highest {
                    return false;
                }
                *highest = counter;
                true
            }
            Some(_) => {
                if self.recent.contains(nonce) {
                    return false;
                }
                if self.order.len() == RECENT_NONCES {
                    if let Some(oldest) = self.order.pop_front() {
                        self.recent.remove(&oldest);
                    }
                }
                self.recent.insert(*nonce);
                self.order.push_back(*nonce);
                true
            }
        }
    }
}

fn split(nonce: &[u8; NONCE_LEN]) -> ([u8; PREFIX_LEN], u64) {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix.copy_from_slice(&nonce[..PREFIX_LEN]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&nonce[PREFIX_LEN..]);
    (prefix, u64::from_be_bytes(counter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sequence_is_prefix_then_big_endian_counter() {
        let mut seq = NonceSequence::with_prefix([0xab; 16]);
        let first = seq.next_nonce().unwrap();
        let second = seq.next_nonce().unwrap();
        assert_eq!(&first[..16], &[0xab; 16]);
        assert_eq!(&first[16..], &[0; 8]);
        assert_eq!(&second[16..], &[0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn a_sequence_must_advance() {
        let mut seq = NonceSequence::with_prefix([1; 16]);
        let mut guard = ReplayGuard::default();
        let a = seq.next_nonce().unwrap();
        let b = seq.next_nonce().unwrap();
        assert!(guard.check_and_record(&a));
        assert!(guard.check_and_record(&b));
        assert!(!guard.check_and_record(&b), "repeat");
        assert!(!guard.check_and_record(&a), "step back");
        // A long sequence costs no memory beyond the high-water mark.
        for _ in 0..10_000 {
            assert!(guard.check_and_record(&seq.next_nonce().unwrap()));
        }
        assert!(guard.recent.is_empty());
    }

    #[test]
    fn random_nonces_are_remembered_up_to_the_bound() {
        let mut guard = ReplayGuard::default();
        let nonces: Vec<[u8; NONCE_LEN]> = (0..RECENT_NONCES + 2).map(|_| rand::random()).collect();
        for nonce in &nonces {
            assert!(guard.check_and_record(nonce));
        }
        // The first set the sequence; a repeat of it is caught forever.
        assert!(!guard.check_and_record(&nonces[0]));
        // The most recent foreign ones are caught...
        assert!(!guard.check_and_record(&nonces[RECENT_NONCES + 1]));
        assert!(!guard.check_and_record(&nonces[2]));
        // ...the one pushed out of the window is not: the documented bound.
        assert!(guard.check_and_record(&nonces[1]));
        assert_eq!(guard.order.len(), RECENT_NONCES);
    }
}
