//! The server's bounded replay filter for first messages (docs §6).

use std::collections::{HashSet, VecDeque};

/// Marks `M` of authenticated first messages, with their hour window.
#[derive(Debug)]
pub struct ReplayFilter {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<([u8; 16], u64)>,
    capacity: usize,
}

impl ReplayFilter {
    /// A filter holding at most `capacity` marks (oldest dropped first).
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `mark` was seen.
    pub fn contains(&self, mark: &[u8; 16]) -> bool {
        self.seen.contains(mark)
    }

    /// Records `mark` (window `w`) and forgets marks older than `now_window - 1`
    /// (those fail the window check anyway) and, when full, the oldest.
    /// Returns the marks it forgot.
    pub fn insert(&mut self, mark: [u8; 16], w: u64, now_window: u64) -> Vec<[u8; 16]> {
        let mut dropped = Vec::new();
        while let Some(&(m, mw)) = self.order.front() {
            if mw + 1 >= now_window && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&m);
            dropped.push(m);
        }
        if self.seen.insert(mark) {
            self.order.push_back((mark, w));
        }
        dropped
    }

    /// The marks held, oldest first, with their windows.
    pub fn marks(&self) -> impl Iterator<Item = ([u8; 16], u64)> + '_ {
        self.order.iter().copied()
    }

    /// Number of marks held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
