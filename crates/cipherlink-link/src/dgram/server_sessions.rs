//! The datagram server's open sessions (docs §11.5, §11.6): their records,
//! keepalive timers, address changes, revocation, the cap on sessions, and
//! the application's sends and closes.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::server::{DgramServer, ServerEvent};
use super::session::{Delivery, Established, Received, Tick};
use super::wire::MAX_DATA;
use crate::error::Error;
use crate::proto::revocation::Revocation;
use crate::proto::CloseCode;

/// Stale timer entries tolerated beyond twice the open sessions.
const TIMER_SLACK: usize = 64;

/// An open session on the server.
pub(super) struct Session {
    /// Where its datagrams go: the address of its newest authenticated one.
    pub(super) peer: SocketAddr,
    pub(super) token_id: [u8; 16],
    /// Its first message's mark, until its first record shows msg2 arrived.
    pub(super) mark: Option<[u8; 16]>,
    pub(super) name: Arc<str>,
    pub(super) revocation: Arc<Revocation>,
    /// The deadline its timer entry was pushed for.
    pub(super) scheduled: Instant,
    pub(super) est: Box<Established>,
}

/// A timer entry: the earliest first (a max-heap of `Reverse`).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer(Reverse<(Instant, u64)>);

impl Timer {
    pub(super) fn new(at: Instant, sid: u64) -> Self {
        Self(Reverse((at, sid)))
    }

    pub(super) fn at(&self) -> Instant {
        self.0 .0 .0
    }
}

/// What the server counted.
#[derive(Debug, Default, Clone)]
pub struct ServerStats {
    /// Sessions opened.
    pub accepted: u64,
    /// Datagrams that got no answer: neither a session's nor a first
    /// message that authenticated (probes, garbage, replays, stale pieces).
    pub unanswered: u64,
    /// Datagrams of a session dropped: replayed, too late, or a bad tag.
    pub dropped: u64,
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Sessions closed to make room for another token's.
    pub displaced: u64,
    /// Sessions that moved to a new address.
    pub moved: u64,
}

impl DgramServer {
    pub(super) fn session_datagram(
        &mut self,
        now: Instant,
        sid: u64,
        counter: u64,
        from: SocketAddr,
        datagram: &mut [u8],
    ) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.revocation.is_revoked() {
            self.end_session(sid, CloseCode::Refused, Some(Error::Revoked));
            return;
        }
        let got = s.est.receive(now, counter, datagram, self.rng.as_mut());
        let Delivery {
            what,
            newest,
            reply,
        } = match got {
            Ok(Ok(x)) => x,
            Ok(Err(_)) => {
                self.stats.dropped += 1;
                return;
            }
            Err(e) => {
                self.end_session(sid, CloseCode::ProtocolError, Some(e));
                return;
            }
        };
        if let Some(mark) = s.mark.take() {
            // msg2 arrived: no more resends of it.
            self.answered.remove(&mark);
        }
        if newest && from != s.peer {
            // Only an authenticated datagram newer than any before moves
            // the session (a replayed one cannot steer its replies).
            s.peer = from;
            self.stats.moved += 1;
        }
        let peer = s.peer;
        self.reschedule(sid);
        if let Some(r) = reply {
            self.out.push_back((peer, r));
        }
        match what {
            Received::Data(range) => self.events.push_back(ServerEvent::Data {
                sid,
                data: datagram[range].to_vec(),
            }),
            Received::Keepalive => {}
            Received::Closed(code, reason) => {
                let error = match code {
                    CloseCode::Normal | CloseCode::Shutdown => None,
                    _ => Some(Error::PeerClosed { code, reason }),
                };
                self.remove_session(sid, error);
            }
        }
    }

    /// Pushes a timer entry when the session's deadline moved earlier than
    /// its pending one (later deadlines are found when the entry fires).
    fn reschedule(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            let d = s.est.deadline();
            if d < s.scheduled {
                s.scheduled = d;
                self.push_timer(d, sid);
            }
        }
    }

    /// Pushes a timer entry. Entries of closed sessions, and those a moved
    /// deadline replaced, stay in the heap until they are due (up to
    /// `max_next_in`, a day at most): a client that opens and closes
    /// sessions fast would grow it by one each, so it is swept of them
    /// when it holds twice as many entries as sessions (and some room).
    pub(super) fn push_timer(&mut self, at: Instant, sid: u64) {
        self.timers.push(Timer::new(at, sid));
        if self.timers.len() > 2 * self.sessions.len() + TIMER_SLACK {
            let sessions = &self.sessions;
            self.timers.retain(|Timer(Reverse((at, sid)))| {
                sessions.get(sid).is_some_and(|s| s.scheduled == *at)
            });
        }
    }

    /// Entries in the timer heap (tests).
    #[doc(hidden)]
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    pub(super) fn session_timers(&mut self, now: Instant) {
        while let Some(t) = self.timers.peek() {
            if t.at() > now {
                break;
            }
            let Some(Timer(Reverse((at, sid)))) = self.timers.pop() else {
                break;
            };
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            if s.scheduled != at {
                continue;
            }
            match s.est.tick(now, self.rng.as_mut()) {
                Tick::Idle => {}
                Tick::Ping(d) => self.out.push_back((s.peer, d)),
                Tick::Gone(retries) => {
                    self.end_session(sid, CloseCode::PeerGone, Some(Error::PeerGone { retries }));
                    continue;
                }
            }
            let d = s.est.deadline();
            s.scheduled = d;
            self.timers.push(Timer::new(d, sid));
        }
    }

    /// Closes every session whose token was revoked, when any was.
    pub(super) fn sweep_revoked(&mut self) {
        let g = self.endpoint.revocation_generation();
        if g == self.revocations_seen {
            return;
        }
        self.revocations_seen = g;
        let revoked: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.revocation.is_revoked())
            .map(|(sid, _)| *sid)
            .collect();
        for sid in revoked {
            self.end_session(sid, CloseCode::Refused, Some(Error::Revoked));
        }
    }

    /// Room for one more session of `token`: at the cap, the oldest
    /// session of the newcomer's own token goes when that token holds as
    /// many as any (a client reconnecting replaces its stale session);
    /// otherwise the oldest of the token holding the most. So one token
    /// cannot lock the others out, nor displace them to take a third.
    pub(super) fn make_room(&mut self, _now: Instant, token: &[u8; 16]) -> bool {
        if self.sessions.len() < self.options.max_sessions.max(1) {
            return true;
        }
        let mine = self.per_token.get(token).copied().unwrap_or(0);
        let Some((&heaviest, &most)) = self.per_token.iter().max_by_key(|(_, n)| **n) else {
            return false;
        };
        let heavy = if mine == most { *token } else { heaviest };
        // Its oldest session: the one whose timer was scheduled earliest is
        // a fair stand-in without keeping an order per token.
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| s.token_id == heavy)
            .min_by_key(|(_, s)| s.scheduled)
            .map(|(sid, _)| *sid);
        match victim {
            Some(sid) => {
                self.end_session(sid, CloseCode::Refused, Some(Error::Displaced));
                self.stats.displaced += 1;
                true
            }
            None => false,
        }
    }

    /// Sends a close (best effort) and removes the session.
    pub(super) fn end_session(&mut self, sid: u64, code: CloseCode, error: Option<Error>) {
        self.end_session_with(sid, code, "", error);
    }

    fn end_session_with(&mut self, sid: u64, code: CloseCode, reason: &str, error: Option<Error>) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            let close = s.est.seal_close(code, reason, self.rng.as_mut());
            self.out.push_back((s.peer, close));
        }
        self.remove_session(sid, error);
    }

    fn remove_session(&mut self, sid: u64, error: Option<Error>) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(mark) = s.mark {
            // Its msg2 must not be sent again: it would open, at a client
            // that lost it, a session that is no longer here.
            self.answered.remove(&mark);
        }
        if let Some(n) = self.per_token.get_mut(&s.token_id) {
            *n -= 1;
            if *n == 0 {
                self.per_token.remove(&s.token_id);
            }
        }
        self.events.push_back(ServerEvent::Closed { sid, error });
    }

    /// Sends one datagram of data on session `sid`.
    pub fn send(&mut self, sid: u64, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_DATA {
            return Err(Error::Length {
                what: "datagram",
                len: data.len(),
            });
        }
        let s = self.sessions.get_mut(&sid).ok_or(Error::NotOpen)?;
        let d = s.est.seal_data(data, self.rng.as_mut());
        self.out.push_back((s.peer, d));
        Ok(())
    }

    /// Closes session `sid` from here (the peer is told, best effort).
    pub fn close(&mut self, sid: u64, code: CloseCode) {
        self.end_session(sid, code, None);
    }

    /// Ends session `sid` at once because the application here failed
    /// (code 5 with `reason`, as the stream mode's abort): the peer's
    /// reads fail with the reason.
    pub fn abort(&mut self, sid: u64, reason: &str) {
        self.end_session_with(sid, CloseCode::Aborted, reason, None);
    }

    /// Where session `sid`'s datagrams go now.
    pub fn peer_of(&self, sid: u64) -> Option<SocketAddr> {
        self.sessions.get(&sid).map(|s| s.peer)
    }

    /// The open sessions' ids.
    pub fn session_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.sessions.keys().copied()
    }

    /// The client name of session `sid`.
    pub fn name_of(&self, sid: u64) -> Option<&str> {
        self.sessions.get(&sid).map(|s| &*s.name)
    }
}
