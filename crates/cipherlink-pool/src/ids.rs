//! Default message ids: per-peer send and receive counters, numbered exactly
//! as each package version numbers them, so mixed Rust/Python parties agree.
//!
//! Both counters start at 0 and advance on *every* send (or recv) to that
//! peer, with or without an explicit id, broadcasts included.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::envelope::{MessageId, WireVersion};

/// One peer's send and receive counters.
#[derive(Debug, Default)]
pub struct Counters {
    send: AtomicU64,
    recv: AtomicU64,
}

impl Counters {
    /// The id for the next send, advancing the send counter.
    pub fn next_send(&self, version: WireVersion, explicit: Option<MessageId>) -> MessageId {
        let n = self.send.fetch_add(1, Ordering::Relaxed);
        resolve(version, explicit, n)
    }

    /// The id for the next recv, advancing the receive counter.
    pub fn next_recv(&self, version: WireVersion, explicit: Option<MessageId>) -> MessageId {
        let n = self.recv.fetch_add(1, Ordering::Relaxed);
        resolve(version, explicit, n)
    }

    /// The id the next default recv would wait for, without advancing.
    pub fn peek_recv(&self, version: WireVersion) -> MessageId {
        resolve(version, None, self.recv.load(Ordering::Relaxed))
    }

    /// Advances the receive counter if it still equals `seen` (a `try_recv`
    /// that found the message it peeked).
    pub fn advance_recv_from(&self, seen: &MessageId, version: WireVersion) {
        let n = self.recv.load(Ordering::Relaxed);
        if &resolve(version, None, n) == seen {
            let _ = self
                .recv
                .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Messages sent and received so far (counter values).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.send.load(Ordering::Relaxed),
            self.recv.load(Ordering::Relaxed),
        )
    }
}

fn resolve(version: WireVersion, explicit: Option<MessageId>, n: u64) -> MessageId {
    match version {
        // 5.x: `msg_id or str(counter)`: a falsy id ("" or 0) falls back too.
        WireVersion::V5 => match explicit {
            Some(MessageId::Str(s)) if !s.is_empty() => MessageId::Str(s),
            Some(MessageId::Int(i)) if i.as_native() != Some(0) => MessageId::Int(i),
            _ => MessageId::Str(n.to_string()),
        },
        // 4.x: `if msg_id is None: msg_id = counter` (an int).
        WireVersion::V4 => explicit.unwrap_or_else(|| MessageId::Int(n.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_counts_every_send_and_uses_str() {
        let c = Counters::default();
        assert_eq!(c.next_send(WireVersion::V5, None), MessageId::from("0"));
        assert_eq!(
            c.next_send(WireVersion::V5, Some("x".into())),
            MessageId::from("x")
        );
        assert_eq!(
            c.next_send(WireVersion::V5, Some("".into())),
            MessageId::from("2")
        );
        assert_eq!(
            c.next_send(WireVersion::V5, Some(0.into())),
            MessageId::from("3")
        );
    }

    #[test]
    fn v4_uses_int_counter_and_keeps_empty_ids() {
        let c = Counters::default();
        assert_eq!(c.next_recv(WireVersion::V4, None), MessageId::from(0));
        assert_eq!(
            c.next_recv(WireVersion::V4, Some("".into())),
            MessageId::from("")
        );
        assert_eq!(c.next_recv(WireVersion::V4, None), MessageId::from(2));
        assert_eq!(c.peek_recv(WireVersion::V4), MessageId::from(3));
    }
}
