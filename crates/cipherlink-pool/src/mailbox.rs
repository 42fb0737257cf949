//! Messages that arrived before anyone asked for them, and `recv`s waiting for
//! messages that have not arrived: one slot per (sender, id).
//!
//! Unlike the package, a second message with an id that is still buffered is
//! refused ([`DeliverError::Duplicate`], answered 409) and the first one is
//! kept; the package drops both and answers 200. The messages buffered per
//! sender are limited in number ([`DeliverError::Full`]) and in bytes of
//! memory ([`DeliverError::FullBytes`]), both answered 429. The server
//! charges a message by what its decoded value takes in memory, as the
//! decoder accounts it, not by its body: a list of small ints takes about
//! its body, a list of `None`s about 40 times.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

use crate::envelope::MessageId;
use crate::value::Value;

/// What one buffered message costs beyond its value and its id's heap:
/// its entry in the slot map (a hash table, whose buckets may be up to 16/7
/// of its entries after it grows), and its entry in the arrival order (a
/// B-tree, whose nodes of 11 entries may be under half full). The test
/// below checks it against the sizes of both.
pub(crate) const MESSAGE_OVERHEAD: usize = 384;

/// Why a message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// A message with this id from this sender is buffered and not yet received.
    #[error("a message with this id from this sender is already buffered and not yet received")]
    Duplicate,
    /// The sender already has the maximum number of unreceived messages buffered.
    #[error("the sender already has {0} unreceived messages buffered (the limit)")]
    Full(usize),
    /// The sender's unreceived messages would take more bytes than allowed.
    #[error("the sender's unreceived messages would exceed {0} bytes (the limit)")]
    FullBytes(usize),
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    Closed,
}

/// What a `recv` gets: the message, or a promise of it.
#[derive(Debug)]
pub enum Wait {
    /// It had arrived.
    Ready(Value),
    /// It has not: await this (an error means the pool shut down).
    Pending(oneshot::Receiver<Value>),
}

/// A second `recv` for a (sender, id) that a `recv` is already waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyWaiting;

/// The buffer of every sender.
#[derive(Debug)]
pub struct Mailbox {
    state: Mutex<State>,
    max_per_peer: usize,
    max_bytes_per_peer: usize,
    arrived: Notify,
}

#[derive(Debug)]
struct State {
    peers: Vec<PeerBox>,
    next_seq: u64,
    /// Buffered messages in arrival order, for `take_any`.
    order: BTreeMap<u64, (usize, MessageId)>,
    closed: bool,
}

#[derive(Debug, Default)]
struct PeerBox {
    slots: HashMap<MessageId, Slot>,
    ready: usize,
    /// Memory charged for the `ready` messages.
    bytes: usize,
}

#[derive(Debug)]
enum Slot {
    Ready { value: Value, seq: u64, size: usize },
    Waiting(oneshot::Sender<Value>),
}

impl Mailbox {
    /// A mailbox for `peers` senders, buffering at most `max_per_peer`
    /// messages and `max_bytes_per_peer` bytes of memory of each.
    pub fn new(peers: usize, max_per_peer: usize, max_bytes_per_peer: usize) -> Mailbox {
        Mailbox {
            state: Mutex::new(State {
                peers: (0..peers).map(|_| PeerBox::default()).collect(),
                next_seq: 0,
                order: BTreeMap::new(),
                closed: false,
            }),
            max_per_peer,
            max_bytes_per_peer,
            arrived: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than stopping, so keep going with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores an arriving message (charged `size` bytes), or hands it to the
    /// `recv` waiting for it.
    pub fn deliver(
        &self,
        peer: usize,
        id: MessageId,
        value: Value,
        size: usize,
    ) -> Result<(), DeliverError> {
        let mut st = self.lock();
        if st.closed {
            return Err(DeliverError::Closed);
        }
        let State {
            peers,
            next_seq,
            order,
            ..
        } = &mut *st;
        let Some(pb) = peers.get_mut(peer) else {
            return Err(DeliverError::Closed);
        };
        let value = match pb.slots.remove(&id) {
            Some(Slot::Waiting(tx)) => match tx.send(value) {
                Ok(()) => return Ok(()),
                // The recv gave up (timeout or cancelled): buffer it instead.
                Err(value) => value,
            },
            Some(ready @ Slot::Ready { .. }) => {
                pb.slots.insert(id, ready);
                return Err(DeliverError::Duplicate);
            }
            None => value,
        };
        if pb.ready >= self.max_per_peer {
            return Err(DeliverError::Full(self.max_per_peer));
        }
        if pb.bytes.saturating_add(size) > self.max_bytes_per_peer {
            return Err(DeliverError::FullBytes(self.max_bytes_per_peer));
        }
        let seq = *next_seq;
        *next_seq += 1;
        order.insert(seq, (peer, id.clone()));
        pb.slots.insert(id, Slot::Ready { value, seq, size });
        pb.ready += 1;
        pb.bytes += size;
        drop(st);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Takes a buffered message, if it is there.
    pub fn take(&self, peer: usize, id: &MessageId) -> Option<Value> {
        let mut st = self.lock();
        take_ready(&mut st, peer, id)
    }

    /// Takes the message, or registers a wait for it.
    pub fn wait(&self, peer: usize, id: &MessageId) -> Result<Wait, AlreadyWaiting> {
        let mut st = self.lock();
        if let Some(v) = take_ready(&mut st, peer, id) {
            return Ok(Wait::Ready(v));
        }
        let (tx, rx) = oneshot::channel();
        if st.closed {
            // Dropping tx makes the caller see a shutdown.
            return Ok(Wait::Pending(rx));
        }
        let Some(pb) = st.peers.get_mut(peer) else {
            return Ok(Wait::Pending(rx));
        };
        if let Some(Slot::Waiting(other)) = pb.slots.get(id) {
            if !other.is_closed() {
                return Err(AlreadyWaiting);
            }
        }
        pb.slots.insert(id.clone(), Slot::Waiting(tx));
        Ok(Wait::Pending(rx))
    }

    /// Withdraws a wait that timed out. Returns the message if it arrived in
    /// the meantime, so that nothing delivered is lost.
    pub fn cancel_wait(
        &self,
        peer: usize,
        id: &MessageId,
        mut rx: oneshot::Receiver<Value>,
    ) -> Option<Value> {
        let mut st = self.lock();
        if let Some(pb) = st.peers.get_mut(peer) {
            if matches!(pb.slots.get(id), Some(Slot::Waiting(_))) {
                pb.slots.remove(id);
            }
        }
        // Under the lock, a concurrent deliver has either finished or not started.
        rx.try_recv().ok()
    }

    /// Takes the oldest buffered message, from one sender or any.
    pub fn take_any(&self, peer: Option<usize>) -> Option<(usize, MessageId, Value)> {
        let mut st = self.lock();
        let (seq, (p, id)) = st
            .order
            .iter()
            .find(|(_, (p, _))| peer.is_none_or(|want| want == *p))
            .map(|(s, (p, id))| (*s, (*p, id.clone())))?;
        st.order.remove(&seq);
        let v = take_ready(&mut st, p, &id)?;
        Some((p, id, v))
    }

    /// A future that completes when the next message is buffered. Create it
    /// before checking [`Mailbox::take_any`] so that no arrival is missed.
    pub fn arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.arrived.notified()
    }

    /// Refuses further messages and wakes every waiting `recv` with a
    /// shutdown. Returns how many were waiting.
    pub fn close(&self) -> usize {
        let mut st = self.lock();
        st.closed = true;
        let mut waiting = 0;
        for pb in st.peers.iter_mut() {
            pb.slots.retain(|_, slot| match slot {
                Slot::Waiting(_) => {
                    waiting += 1;
                    false
                }
                Slot::Ready { .. } => true,
            });
        }
        drop(st);
        self.arrived.notify_waiters();
        waiting
    }

    /// Whether [`Mailbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Buffered, unreceived messages from one sender.
    pub fn buffered(&self, peer: usize) -> usize {
        self.lock().peers.get(peer).map_or(0, |pb| pb.ready)
    }
}

fn take_ready(st: &mut State, peer: usize, id: &MessageId) -> Option<Value> {
    let pb = st.peers.get_mut(peer)?;
    match pb.slots.remove(id) {
        Some(Slot::Ready { value, seq, size }) => {
            pb.ready -= 1;
            pb.bytes -= size;
            st.order.remove(&seq);
            Some(value)
        }
        Some(waiting) => {
            pb.slots.insert(id.clone(), waiting);
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_overhead_covers_both_maps() {
        use std::mem::size_of;
        // hashbrown: one bucket and one control byte per entry, at most
        // 16/7 buckets an entry (just after doubling at 7/8 full).
        let slot = (size_of::<(MessageId, Slot)>() + 1) * 16 / 7;
        // std's B-tree: a leaf of 11 entries and two links, at least 5 full;
        // the inner nodes above add less than a sixth.
        let entry = size_of::<(u64, (usize, MessageId))>();
        let order = (11 * entry + 2 * size_of::<usize>()) / 5 * 7 / 6;
        assert!(slot + order <= MESSAGE_OVERHEAD, "{slot} + {order}");
    }

    #[test]
    fn duplicate_keeps_first_and_limit_applies() {
        let mb = Mailbox::new(1, 2, usize::MAX);
        assert_eq!(mb.deliver(0, "a".into(), 1.into(), 1), Ok(()));
        assert_eq!(
            mb.deliver(0, "a".into(), 2.into(), 1),
            Err(DeliverError::Duplicate)
        );
        assert_eq!(mb.deliver(0, "b".into(), 3.into(), 1), Ok(()));
        assert_eq!(
            mb.deliver(0, "c".into(), 4.into(), 1),
            Err(DeliverError::Full(2))
        );
        assert_eq!(mb.take(0, &"a".into()), Some(1.into()));
        // Once received, the id may be used again.
        assert_eq!(mb.deliver(0, "a".into(), 5.into(), 1), Ok(()));
        assert_eq!(mb.take_any(None).map(|t| t.2), Some(3.into()));
    }

    #[test]
    fn byte_limit_counts_what_is_buffered_not_what_was_received() {
        let mb = Mailbox::new(1, 100, 1000);
        assert_eq!(mb.deliver(0, "a".into(), 1.into(), 600), Ok(()));
        assert_eq!(
            mb.deliver(0, "b".into(), 2.into(), 600),
            Err(DeliverError::FullBytes(1000))
        );
        assert_eq!(mb.deliver(0, "c".into(), 3.into(), 400), Ok(()));
        assert_eq!(mb.take(0, &"a".into()), Some(1.into()));
        assert_eq!(mb.deliver(0, "b".into(), 2.into(), 600), Ok(()));
    }

    #[tokio::test]
    async fn waiting_recv_gets_message_and_timeout_loses_nothing() {
        let mb = Mailbox::new(1, 4, usize::MAX);
        let Ok(Wait::Pending(rx)) = mb.wait(0, &"x".into()) else {
            panic!("expected pending")
        };
        assert_eq!(mb.wait(0, &"x".into()).err(), Some(AlreadyWaiting));
        assert_eq!(mb.deliver(0, "x".into(), 7.into(), 1), Ok(()));
        assert_eq!(rx.await.ok(), Some(7.into()));

        let Ok(Wait::Pending(rx)) = mb.wait(0, &"y".into()) else {
            panic!("expected pending")
        };
        drop(rx);
        // The waiter is gone: the message is buffered rather than lost.
        assert_eq!(mb.deliver(0, "y".into(), 8.into(), 1), Ok(()));
        assert_eq!(mb.take(0, &"y".into()), Some(8.into()));
    }
}
