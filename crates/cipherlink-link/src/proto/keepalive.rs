//! PORT's keepalive scheme as records (docs §5): randomized next_in, an
//! RTT-derived timeout clamped to [min, max], and a retry budget.

use std::time::{Duration, Instant};

use crate::config::KeepaliveConfig;

/// What the keepalive timer wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet.
    None,
    /// Send a ping with this id.
    Ping(u64),
    /// The peer is gone after this many unanswered retries.
    Gone(u32),
}

#[derive(Debug)]
struct Outstanding {
    id: u64,
    sent: Instant,
    deadline: Instant,
}

/// One side's keepalive state.
#[derive(Debug)]
pub struct Keepalive {
    cfg: KeepaliveConfig,
    next_ping: Instant,
    outstanding: Option<Outstanding>,
    retries: u32,
    next_id: u64,
    srtt: Option<(Duration, Duration)>,
}

impl Keepalive {
    /// Starts the timer; `next_in` is a fresh draw from [min_next_in, max_next_in].
    pub fn new(cfg: KeepaliveConfig, now: Instant, next_in: Duration) -> Self {
        Self {
            cfg,
            next_ping: now + next_in,
            outstanding: None,
            retries: 0,
            next_id: 0,
            srtt: None,
        }
    }

    /// The configured bounds of next_in.
    pub fn next_in_range(&self) -> (Duration, Duration) {
        (self.cfg.min_next_in, self.cfg.max_next_in)
    }

    /// The reply timeout in force.
    pub fn timeout(&self) -> Duration {
        match self.srtt {
            None => self.cfg.default_timeout,
            Some((srtt, rttvar)) => {
                (srtt + 4 * rttvar).clamp(self.cfg.min_timeout, self.cfg.max_timeout)
            }
        }
    }

    /// An authenticated record arrived: the peer is alive.
    pub fn on_activity(&mut self, now: Instant, next_in: Duration) {
        self.outstanding = None;
        self.retries = 0;
        self.next_ping = now + next_in;
    }

    /// A pong arrived: take an RTT sample if it answers the outstanding ping.
    pub fn on_pong(&mut self, now: Instant, id: u64) {
        let Some(o) = &self.outstanding else { return };
        if o.id != id || self.retries != 0 {
            // Karn's rule: no sample from a retried ping.
            return;
        }
        let rtt = now.saturating_duration_since(o.sent);
        self.srtt = Some(match self.srtt {
            None => (rtt, rtt / 2),
            Some((srtt, rttvar)) => {
                let diff = srtt.abs_diff(rtt);
                ((srtt * 7 + rtt) / 8, (rttvar * 3 + diff) / 4)
            }
        });
    }

    /// The next instant the timer needs attention.
    pub fn deadline(&self) -> Instant {
        match &self.outstanding {
            Some(o) => o.deadline,
            None => self.next_ping,
        }
    }

    /// Runs the timer at `now`.
    pub fn poll(&mut self, now: Instant) -> Action {
        match &self.outstanding {
            Some(o) if now >= o.deadline => {
                if self.retries >= self.cfg.max_retries {
                    return Action::Gone(self.retries);
                }
                self.retries += 1;
                self.send_ping(now)
            }
            None if now >= self.next_ping => self.send_ping(now),
            _ => Action::None,
        }
    }

    fn send_ping(&mut self, now: Instant) -> Action {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding = Some(Outstanding {
            id,
            sent: now,
            deadline: now + self.timeout(),
        });
        Action::Ping(id)
    }
}
