//! The keepalive of one mux connection, without I/O: when to send a PING,
//! and when the peer, having answered none, is gone. Time comes in as
//! arguments, so it is tested on a virtual clock.
//!
//! Anything that arrives from the peer proves it alive (a PONG is only the
//! cheapest thing to ask for). After an idle spell drawn at random from
//! `[min_idle, max_idle]` (so neither end nor a middlebox sees a fixed
//! beat), a PING goes out; each one unanswered within `reply_timeout` is
//! sent again, and after `retries` unanswered pings the connection is
//! declared gone. A peer that vanished without a FIN or RST (host down,
//! NAT mapping forgotten, cable pulled) is thus noticed at most
//! `max_idle + retries * reply_timeout` after it was last heard.

use std::time::{Duration, Instant};

use rand::Rng;

/// The keepalive's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Whether an idle connection is pinged on its own. Off where the
    /// encrypted connection has a keepalive of its own (a link); a probe
    /// before an open ([`Keepalive::probe`]) is sent either way.
    pub periodic: bool,
    /// Shortest quiet spell before a PING.
    pub min_idle: Duration,
    /// Longest quiet spell before a PING.
    pub max_idle: Duration,
    /// How long each PING waits for the peer.
    pub reply_timeout: Duration,
    /// Unanswered pings in a row after which the peer is gone.
    pub retries: u32,
    /// A client about to open a stream on a connection that has been
    /// silent this long first probes it (one round trip), so a peer that
    /// vanished costs a new connection rather than the tunnel.
    pub probe_after: Duration,
}

impl Default for KeepaliveConfig {
    fn default() -> KeepaliveConfig {
        KeepaliveConfig {
            periodic: true,
            min_idle: Duration::from_secs(15),
            max_idle: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(5),
            retries: 3,
            probe_after: Duration::from_secs(5),
        }
    }
}

impl KeepaliveConfig {
    /// The longest a vanished peer goes unnoticed on an idle connection
    /// (with `periodic`).
    pub fn detection_bound(&self) -> Duration {
        self.max_idle + self.reply_timeout * self.retries
    }
}

/// What the timer wants done now.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing before the deadline returned alongside.
    Wait,
    /// Send a PING with this value.
    Ping(u32),
    /// The peer answered none of this many pings: the connection is gone.
    Gone(u32),
}

#[derive(Debug)]
struct Outstanding {
    id: u32,
    deadline: Instant,
}

/// One connection's keepalive state; see the module docs.
#[derive(Debug)]
pub struct Keepalive {
    config: KeepaliveConfig,
    /// Set by the first [`Keepalive::heard`] or [`Keepalive::tick`]: the
    /// connection was just established, its handshake was the peer last
    /// heard.
    last_heard: Option<Instant>,
    /// The quiet spell before the next periodic ping, drawn per ping.
    idle: Duration,
    outstanding: Option<Outstanding>,
    missed: u32,
    next_id: u32,
}

impl Keepalive {
    /// A connection's timer; it starts at the first call that brings the
    /// time.
    pub fn new(config: KeepaliveConfig) -> Keepalive {
        let mut keepalive = Keepalive {
            config,
            last_heard: None,
            idle: config.max_idle,
            outstanding: None,
            missed: 0,
            next_id: 0,
        };
        keepalive.idle = keepalive.draw();
        keepalive
    }

    fn draw(&self) -> Duration {
        let (low, high) = (self.config.min_idle, self.config.max_idle);
        if high <= low {
            return low;
        }
        rand::rng().random_range(low..=high)
    }

    /// The settings in force.
    pub fn config(&self) -> &KeepaliveConfig {
        &self.config
    }

    /// Bytes arrived from the peer: it is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
        if self.outstanding.take().is_some() {
            self.idle = self.draw();
        }
        self.missed = 0;
    }

    /// How long the peer has been silent (zero before the timer started).
    pub fn quiet(&self, now: Instant) -> Duration {
        self.last_heard
            .map_or(Duration::ZERO, |heard| now.saturating_duration_since(heard))
    }

    /// A PING to send now unless one is already waiting for its reply:
    /// whoever is about to use a quiet connection asks whether the peer is
    /// still there.
    pub fn probe(&mut self, now: Instant) -> Option<u32> {
        if self.outstanding.is_some() {
            return None;
        }
        Some(self.send(now))
    }

    fn send(&mut self, now: Instant) -> u32 {
        self.last_heard.get_or_insert(now);
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding = Some(Outstanding {
            id: self.next_id,
            // Never a deadline already passed: the timer would spin.
            deadline: now + self.config.reply_timeout.max(Duration::from_millis(1)),
        });
        self.next_id
    }

    /// Advances the timer to `now`: what to do, and the next deadline
    /// (`None`: nothing is due until the peer is heard or a probe is sent).
    pub fn tick(&mut self, now: Instant) -> (Action, Option<Instant>) {
        let last_heard = *self.last_heard.get_or_insert(now);
        if let Some(outstanding) = &self.outstanding {
            if now < outstanding.deadline {
                return (Action::Wait, Some(outstanding.deadline));
            }
            self.missed += 1;
            if self.missed >= self.config.retries.max(1) {
                return (Action::Gone(self.missed), None);
            }
            let id = self.send(now);
            return (Action::Ping(id), self.deadline());
        }
        if !self.config.periodic {
            return (Action::Wait, None);
        }
        let due = last_heard + self.idle;
        if now < due {
            return (Action::Wait, Some(due));
        }
        let id = self.send(now);
        self.idle = self.draw();
        (Action::Ping(id), self.deadline())
    }

    fn deadline(&self) -> Option<Instant> {
        self.outstanding.as_ref().map(|o| o.deadline)
    }

    /// The ping waiting for its reply, if any (tests).
    pub fn outstanding(&self) -> Option<u32> {
        self.outstanding.as_ref().map(|o| o.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KeepaliveConfig {
        KeepaliveConfig {
            periodic: true,
            min_idle: Duration::from_secs(10),
            max_idle: Duration::from_secs(20),
            reply_timeout: Duration::from_secs(3),
            retries: 3,
            probe_after: Duration::from_secs(1),
        }
    }

    fn started(config: KeepaliveConfig, now: Instant) -> Keepalive {
        let mut keepalive = Keepalive::new(config);
        assert!(matches!(keepalive.tick(now), (Action::Wait, Some(_))) || !config.periodic);
        keepalive
    }

    /// Steps a virtual clock one second at a time until the timer acts.
    fn run_until_action(k: &mut Keepalive, clock: &mut Instant, limit: Duration) -> Action {
        let start = *clock;
        while *clock - start <= limit {
            match k.tick(*clock) {
                (Action::Wait, _) => *clock += Duration::from_secs(1),
                (action, _) => return action,
            }
        }
        Action::Wait
    }

    #[test]
    fn an_idle_connection_is_pinged_within_the_drawn_spell() {
        for _ in 0..50 {
            let start = Instant::now();
            let mut clock = start;
            let mut k = started(config(), start);
            let action = run_until_action(&mut k, &mut clock, Duration::from_secs(60));
            assert!(matches!(action, Action::Ping(_)), "{action:?}");
            let waited = clock - start;
            assert!(
                waited >= config().min_idle && waited <= config().max_idle,
                "pinged after {waited:?}"
            );
        }
    }

    #[test]
    fn a_silent_peer_is_gone_after_its_retries_within_the_bound() {
        let start = Instant::now();
        let mut clock = start;
        let mut k = started(config(), start);
        let mut pings = 0;
        let gone = loop {
            match run_until_action(&mut k, &mut clock, Duration::from_secs(120)) {
                Action::Ping(_) => pings += 1,
                Action::Gone(missed) => break missed,
                Action::Wait => panic!("never declared gone"),
            }
        };
        assert_eq!((pings, gone), (3, 3));
        assert!(
            clock - start <= config().detection_bound(),
            "gone after {:?}, bound {:?}",
            clock - start,
            config().detection_bound()
        );
    }

    #[test]
    fn an_answer_resets_the_count_and_the_connection_lives_on() {
        let start = Instant::now();
        let mut clock = start;
        let mut k = started(config(), start);
        for _ in 0..10 {
            // Two pings go unanswered, the third's reply comes.
            for _ in 0..2 {
                let action = run_until_action(&mut k, &mut clock, Duration::from_secs(60));
                assert!(matches!(action, Action::Ping(_)), "{action:?}");
            }
            clock += Duration::from_secs(1);
            k.heard(clock);
            assert_eq!(k.outstanding(), None);
        }
    }

    #[test]
    fn traffic_keeps_pings_away() {
        let start = Instant::now();
        let mut clock = start;
        let mut k = started(config(), start);
        for _ in 0..1000 {
            clock += Duration::from_secs(5);
            k.heard(clock);
            assert_eq!(k.tick(clock).0, Action::Wait);
        }
    }

    #[test]
    fn without_periodic_pings_only_a_probe_is_sent_and_timed() {
        let start = Instant::now();
        let mut clock = start;
        let mut k = started(
            KeepaliveConfig {
                periodic: false,
                ..config()
            },
            start,
        );
        assert_eq!(
            k.tick(clock + Duration::from_secs(3600)),
            (Action::Wait, None)
        );
        clock += Duration::from_secs(3600);
        let id = k.probe(clock).expect("a probe goes out");
        assert_eq!(k.probe(clock), None, "one probe at a time");
        assert_eq!(k.outstanding(), Some(id));
        let action = run_until_action(&mut k, &mut clock, Duration::from_secs(60));
        assert!(matches!(action, Action::Ping(_)), "{action:?}");
        k.heard(clock);
        assert_eq!(
            k.tick(clock + Duration::from_secs(3600)),
            (Action::Wait, None)
        );
    }
}
