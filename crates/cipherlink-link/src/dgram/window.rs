//! The receiver's anti-replay window (RFC 6479): a ring of 64-bit words
//! that remembers which of the last [`WINDOW`] counters arrived, so a
//! datagram is accepted at most once and late ones within the window
//! still count.

/// Counters remembered behind the highest one received.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// One direction's replay window.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest counter accepted plus one (0: nothing yet).
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self {
            top: 0,
            bits: [0; WORDS],
        }
    }

    /// Whether `counter` may still be accepted: ahead of everything, or
    /// within the window and not seen. Check before the (costly) tag and
    /// [`ReplayWindow::mark`] after it verified.
    pub fn may_accept(&self, counter: u64) -> bool {
        let Some(highest) = self.highest() else {
            return true;
        };
        if counter > highest {
            return true;
        }
        if highest / 64 - counter / 64 >= WORDS as u64 {
            // Its word was reused for a newer one: too late.
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & (1 << bit) == 0
    }

    /// Whether `counter` is still within the ring (received or not): a
    /// counter behind it can never be accepted again.
    pub fn reaches(&self, counter: u64) -> bool {
        self.highest()
            .is_none_or(|h| counter > h || h / 64 - counter / 64 < WORDS as u64)
    }

    /// Records `counter` as received (after [`ReplayWindow::may_accept`] and
    /// the tag). Returns whether it was the newest so far.
    pub fn mark(&mut self, counter: u64) -> bool {
        let newest = counter >= self.top;
        if newest {
            // The words between the old top's and the new one's now stand
            // for newer counters: clear them (all of them after a long jump).
            let new_word = counter / 64;
            let first = self.highest().map_or(0, |h| h / 64 + 1);
            let n = (new_word + 1).saturating_sub(first).min(WORDS as u64);
            for i in 0..n {
                self.bits[((new_word - i) % WORDS as u64) as usize] = 0;
            }
            self.top = counter + 1;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= 1 << bit;
        newest
    }

    /// The highest counter received, if any.
    pub fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    fn slot(counter: u64) -> (usize, u32) {
        (
            ((counter / 64) % WORDS as u64) as usize,
            (counter % 64) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> bool {
        if w.may_accept(c) {
            w.mark(c);
            true
        } else {
            false
        }
    }

    #[test]
    fn each_counter_once_in_any_order() {
        let mut w = ReplayWindow::new();
        for c in [5, 3, 9, 0, 4, 1, 2, 8, 7, 6] {
            assert!(accept(&mut w, c), "{c}");
        }
        for c in 0..10 {
            assert!(!accept(&mut w, c), "replayed {c}");
        }
        assert_eq!(w.highest(), Some(9));
    }

    #[test]
    fn too_old_is_refused_and_a_jump_clears_the_ring() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 10));
        assert!(accept(&mut w, 10 + WINDOW * 3));
        // The ring's words were reused: 10 is far behind now.
        assert!(!accept(&mut w, 10));
        // Counters just behind the top were never seen and are accepted once.
        let c = 10 + WINDOW * 3 - 100;
        assert!(accept(&mut w, c));
        assert!(!accept(&mut w, c));
        // A ring slot reused for a newer word must not remember the old
        // word's bits: 74 + 64 * WORDS sits where 74 did and is fresh.
        let mut w = ReplayWindow::new();
        let ring = 64 * WORDS as u64;
        assert!(accept(&mut w, 74));
        assert!(accept(&mut w, ring + 70));
        assert!(accept(&mut w, ring + 74));
        assert!(!accept(&mut w, 74));
    }

    /// Against a set of everything seen: the window never accepts a
    /// counter twice, and accepts every fresh counter within `WINDOW - 64`
    /// of the top.
    #[test]
    fn matches_a_model() {
        use std::collections::HashSet;
        let mut w = ReplayWindow::new();
        let mut seen = HashSet::new();
        let mut top: Option<u64> = None;
        let mut x: u64 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = top.unwrap_or(0);
            let c = match x % 4 {
                0 => base + (x >> 8) % 300,
                1 => base.saturating_sub((x >> 8) % (WINDOW + 200)),
                2 => base.saturating_sub((x >> 8) % 70),
                _ => base + 1,
            };
            let fresh = !seen.contains(&c);
            let within = top.is_none_or(|t| c > t || t - c < WINDOW - 64);
            let got = accept(&mut w, c);
            if got {
                assert!(fresh, "accepted {c} twice");
                seen.insert(c);
                top = Some(top.map_or(c, |t| t.max(c)));
            } else {
                assert!(
                    !fresh || !within,
                    "refused fresh {c} within the window (top {top:?})"
                );
            }
        }
    }
}
