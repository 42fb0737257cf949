//! Nonces: how our sender picks them, and what a receiver refuses
//! (docs/v1-frame.md, "Nonces" and "What v1 protects").
//!
//! Every frame of every connection under one key pair, both directions, is
//! sealed with the same box key, so the nonce is the only thing that can tie
//! a frame to a direction and a connection. Our sender therefore sends a
//! sequence: a 16-byte prefix drawn per connection, whose first bit says
//! which end sends (0 client, 1 server), then a 64-bit big-endian counter
//! from 0. The seed's peers pick each nonce at random instead, which leaves
//! a receiver little to check; so there are two modes:
//!
//! * [`Mode::Compatible`] (the default, for random-nonce peers such as
//!   PyNaCl): a frame under our own sending prefix is refused (our own output
//!   sent back); the first nonce's prefix starts a sequence whose counter must
//!   rise; any other nonce must not be among the last [`RECENT_NONCES`].
//! * [`Mode::Strict`] (cipherlink to cipherlink): the first frame fixes the
//!   peer's prefix and must carry counter 0 and the peer's direction bit;
//!   every later frame must carry that prefix and exactly the next counter.

use std::collections::{HashSet, VecDeque};

use super::frame::NONCE_LEN;
use super::session::V1Error;

/// How many foreign (non-sequence) nonces a receiver remembers in
/// compatible mode. A random-nonce sender that repeats a nonce more than
/// this many frames later is not caught (worst case ~56 KiB per
/// connection: set + queue).
pub const RECENT_NONCES: usize = 1024;

/// Length of our sender's per-connection prefix.
pub const PREFIX_LEN: usize = 16;

/// The prefix bit that marks a server's frames.
const SERVER_BIT: u8 = 0x80;

/// Which end of a connection a sender or receiver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that connected.
    Client,
    /// The end that accepted.
    Server,
}

impl Side {
    /// The end a prefix's direction bit names.
    fn of_prefix(prefix: &[u8; PREFIX_LEN]) -> Side {
        if prefix[0] & SERVER_BIT == 0 {
            Side::Client
        } else {
            Side::Server
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// How strictly a receiver checks the peer's nonces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Any peer, random nonces included (PyNaCl's default).
    #[default]
    Compatible,
    /// A cipherlink peer: one prefix per connection, counters 0, 1, 2, ...
    Strict,
}

/// Our sender's nonces: prefix, then a counter.
#[derive(Debug)]
pub struct NonceSequence {
    prefix: [u8; PREFIX_LEN],
    next: u64,
}

impl NonceSequence {
    /// A sequence with a fresh random prefix (from the OS generator) and no
    /// direction bit: for tests that play a foreign sender.
    pub fn random() -> NonceSequence {
        NonceSequence::with_prefix(rand::random())
    }

    /// A fresh random prefix whose first bit marks `side` as the sender.
    pub fn for_side(side: Side) -> NonceSequence {
        let mut prefix: [u8; PREFIX_LEN] = rand::random();
        prefix[0] = match side {
            Side::Client => prefix[0] & !SERVER_BIT,
            Side::Server => prefix[0] | SERVER_BIT,
        };
        NonceSequence::with_prefix(prefix)
    }

    /// A sequence with a given prefix: for test vectors only.
    pub fn with_prefix(prefix: [u8; PREFIX_LEN]) -> NonceSequence {
        NonceSequence { prefix, next: 0 }
    }

    /// This sequence's prefix.
    pub fn prefix(&self) -> [u8; PREFIX_LEN] {
        self.prefix
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

/// A receiver's memory of one connection's nonces.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// Our own sender's prefix on this connection, when we send.
    own: Option<[u8; PREFIX_LEN]>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    Compatible {
        /// The first nonce's prefix and the highest counter seen under it.
        sequence: Option<([u8; PREFIX_LEN], u64)>,
        recent: HashSet<[u8; NONCE_LEN]>,
        order: VecDeque<[u8; NONCE_LEN]>,
    },
    Strict {
        /// Which end we are: the peer's frames carry the other's bit.
        ours: Side,
        /// The peer's prefix and the counter due next (u128: after counter
        /// 2^64 - 1 nothing more can come).
        peer: Option<([u8; PREFIX_LEN], u128)>,
    },
}

impl Default for Check {
    fn default() -> Check {
        Check::Compatible {
            sequence: None,
            recent: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl ReplayGuard {
    /// The guard for the receiving half of a connection on which we send
    /// with prefix `own`, as `ours`.
    pub fn new(own: [u8; PREFIX_LEN], ours: Side, mode: Mode) -> ReplayGuard {
        let check = match mode {
            Mode::Compatible => Check::default(),
            Mode::Strict => Check::Strict { ours, peer: None },
        };
        ReplayGuard {
            own: Some(own),
            check,
        }
    }

    /// Checks an authentic frame's nonce against the connection so far and
    /// records it; the error says what the frame is (see the module docs).
    pub fn check_and_record(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<(), V1Error> {
        let (prefix, counter) = split(nonce);
        if self.own == Some(prefix) {
            return Err(V1Error::Reflected(hex::encode(prefix)));
        }
        match &mut self.check {
            Check::Compatible {
                sequence,
                recent,
                order,
            } => match sequence {
                None => {
                    *sequence = Some((prefix, counter));
                    Ok(())
                }
                Some((seen, highest)) if *seen == prefix => {
                    if counter <= *highest {
                        return Err(V1Error::NonceReused(hex::encode(nonce)));
                    }
                    *highest = counter;
                    Ok(())
                }
                Some(_) => {
                    if recent.contains(nonce) {
                        return Err(V1Error::NonceReused(hex::encode(nonce)));
                    }
                    if order.len() == RECENT_NONCES {
                        if let Some(oldest) = order.pop_front() {
                            recent.remove(&oldest);
                        }
                    }
                    recent.insert(*nonce);
                    order.push_back(*nonce);
                    Ok(())
                }
            },
            Check::Strict { ours, peer } => match peer {
                None => {
                    let sender = Side::of_prefix(&prefix);
                    if sender == *ours {
                        return Err(V1Error::WrongDirection(sender.name()));
                    }
                    if counter != 0 {
                        return Err(V1Error::OutOfSequence {
                            expected: 0,
                            got: counter,
                        });
                    }
                    *peer = Some((prefix, 1));
                    Ok(())
                }
                Some((expected, next)) => {
                    if *expected != prefix {
                        return Err(V1Error::Spliced {
                            expected: hex::encode(*expected),
                            got: hex::encode(prefix),
                        });
                    }
                    if u128::from(counter) != *next {
                        return Err(V1Error::OutOfSequence {
                            // Past 2^64 - 1 nothing can be due: shown as the max.
                            expected: u64::try_from(*next).unwrap_or(u64::MAX),
                            got: counter,
                        });
                    }
                    *next += 1;
                    Ok(())
                }
            },
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

    fn nonce(prefix: [u8; PREFIX_LEN], counter: u64) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        out[..PREFIX_LEN].copy_from_slice(&prefix);
        out[PREFIX_LEN..].copy_from_slice(&counter.to_be_bytes());
        out
    }

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
    fn the_first_prefix_bit_names_the_sending_side() {
        for _ in 0..64 {
            assert_eq!(
                NonceSequence::for_side(Side::Server).prefix()[0] & SERVER_BIT,
                SERVER_BIT
            );
            assert_eq!(
                NonceSequence::for_side(Side::Client).prefix()[0] & SERVER_BIT,
                0
            );
        }
    }

    #[test]
    fn a_sequence_must_advance() {
        let mut seq = NonceSequence::with_prefix([1; 16]);
        let mut guard = ReplayGuard::default();
        let a = seq.next_nonce().unwrap();
        let b = seq.next_nonce().unwrap();
        assert!(guard.check_and_record(&a).is_ok());
        assert!(guard.check_and_record(&b).is_ok());
        assert!(guard.check_and_record(&b).is_err(), "repeat");
        assert!(guard.check_and_record(&a).is_err(), "step back");
        // A long sequence costs no memory beyond the high-water mark.
        for _ in 0..10_000 {
            assert!(guard.check_and_record(&seq.next_nonce().unwrap()).is_ok());
        }
        let Check::Compatible { recent, .. } = &guard.check else {
            unreachable!()
        };
        assert!(recent.is_empty());
    }

    #[test]
    fn random_nonces_are_remembered_up_to_the_bound() {
        let mut guard = ReplayGuard::default();
        let nonces: Vec<[u8; NONCE_LEN]> = (0..RECENT_NONCES + 2).map(|_| rand::random()).collect();
        for nonce in &nonces {
            assert!(guard.check_and_record(nonce).is_ok());
        }
        // The first set the sequence; a repeat of it is caught forever.
        assert!(guard.check_and_record(&nonces[0]).is_err());
        // The most recent foreign ones are caught...
        assert!(guard.check_and_record(&nonces[RECENT_NONCES + 1]).is_err());
        assert!(guard.check_and_record(&nonces[2]).is_err());
        // ...the one pushed out of the window is not: the documented bound.
        assert!(guard.check_and_record(&nonces[1]).is_ok());
        let Check::Compatible { order, .. } = &guard.check else {
            unreachable!()
        };
        assert_eq!(order.len(), RECENT_NONCES);
    }

    #[test]
    fn our_own_prefix_is_refused_in_both_modes() {
        let own = NonceSequence::for_side(Side::Server).prefix();
        for mode in [Mode::Compatible, Mode::Strict] {
            let mut guard = ReplayGuard::new(own, Side::Server, mode);
            let err = guard.check_and_record(&nonce(own, 0)).unwrap_err();
            assert_eq!(err, V1Error::Reflected(hex::encode(own)), "{mode:?}");
        }
    }

    #[test]
    fn strict_takes_one_prefix_from_counter_zero_and_exactly_the_next_counter() {
        let own = NonceSequence::for_side(Side::Server).prefix();
        let peer = NonceSequence::for_side(Side::Client).prefix();
        let other = NonceSequence::for_side(Side::Client).prefix();
        let strict = || ReplayGuard::new(own, Side::Server, Mode::Strict);
        // Not from counter 0: the first frame was deleted (or a random nonce).
        assert_eq!(
            strict().check_and_record(&nonce(peer, 1)),
            Err(V1Error::OutOfSequence {
                expected: 0,
                got: 1
            })
        );
        // A first frame marked as a server's: our direction, from elsewhere.
        let server_like = NonceSequence::for_side(Side::Server).prefix();
        assert_eq!(
            strict().check_and_record(&nonce(server_like, 0)),
            Err(V1Error::WrongDirection("server"))
        );
        let mut guard = strict();
        for counter in 0..5 {
            assert_eq!(guard.check_and_record(&nonce(peer, counter)), Ok(()));
        }
        // Another connection's frame, a skipped one, a repeat: all refused.
        assert!(matches!(
            guard.check_and_record(&nonce(other, 5)),
            Err(V1Error::Spliced { .. })
        ));
        assert_eq!(
            guard.check_and_record(&nonce(peer, 6)),
            Err(V1Error::OutOfSequence {
                expected: 5,
                got: 6
            })
        );
        assert!(guard.check_and_record(&nonce(peer, 4)).is_err());
        assert_eq!(guard.check_and_record(&nonce(peer, 5)), Ok(()));
    }

    #[test]
    fn compatible_mode_cannot_tell_splicing_or_deletion() {
        // The documented limit: without strict, another connection's frame
        // and a gap in the counter are accepted.
        let own = NonceSequence::for_side(Side::Server).prefix();
        let peer = NonceSequence::for_side(Side::Client).prefix();
        let other = NonceSequence::for_side(Side::Client).prefix();
        let mut guard = ReplayGuard::new(own, Side::Server, Mode::Compatible);
        assert_eq!(guard.check_and_record(&nonce(peer, 0)), Ok(()));
        assert_eq!(guard.check_and_record(&nonce(peer, 2)), Ok(()));
        assert_eq!(guard.check_and_record(&nonce(other, 7)), Ok(()));
    }

    #[test]
    fn strict_ends_after_the_last_counter() {
        let own = NonceSequence::for_side(Side::Client).prefix();
        let peer = NonceSequence::for_side(Side::Server).prefix();
        let mut guard = ReplayGuard::new(own, Side::Client, Mode::Strict);
        assert_eq!(guard.check_and_record(&nonce(peer, 0)), Ok(()));
        if let Check::Strict {
            peer: Some((_, next)),
            ..
        } = &mut guard.check
        {
            *next = u128::from(u64::MAX);
        }
        assert_eq!(guard.check_and_record(&nonce(peer, u64::MAX)), Ok(()));
        assert_eq!(
            guard.check_and_record(&nonce(peer, 0)),
            Err(V1Error::OutOfSequence {
                expected: u64::MAX,
                got: 0
            })
        );
    }
}
