//! A queue of messages bounded in count and in bytes, whose sender never
//! waits: a message that does not fit is refused (the caller drops and
//! counts it), as a full socket buffer drops a datagram. Queues may also
//! share a [`Budget`], so that many of them (one per session) together
//! hold no more than it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Messages one queue holds at most.
pub const QUEUE_MESSAGES: usize = 512;
/// Bytes one queue holds at most: with 64 KiB datagrams, the count alone
/// would let one queue hold 32 MiB.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// Bytes held by one or more queues, and their limit.
#[derive(Debug, Clone)]
pub struct Budget(Arc<(AtomicUsize, usize)>);

impl Budget {
    /// At most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self(Arc::new((AtomicUsize::new(0), max)))
    }

    /// Takes `len` bytes, unless that would pass the limit. Several
    /// senders may pass the check together and overshoot by their
    /// messages: bounded by the senders, not by the network.
    fn take(&self, len: usize) -> bool {
        let (held, max) = &*self.0;
        if held.fetch_add(len, Ordering::AcqRel).saturating_add(len) > *max {
            held.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give(&self, len: usize) {
        self.0 .0.fetch_sub(len, Ordering::AcqRel);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.0 .0.load(Ordering::Acquire)
    }
}

/// The sending end (cloneable).
#[derive(Debug, Clone)]
pub struct QueueTx<T> {
    tx: mpsc::Sender<(T, usize)>,
    own: Budget,
    shared: Option<Budget>,
}

/// The receiving end; what it still holds when dropped is given back to
/// the budgets.
#[derive(Debug)]
pub struct QueueRx<T> {
    rx: mpsc::Receiver<(T, usize)>,
    own: Budget,
    shared: Option<Budget>,
}

/// An empty queue of at most `messages` messages and `bytes` bytes.
pub fn queue<T>(messages: usize, bytes: usize) -> (QueueTx<T>, QueueRx<T>) {
    queue_within(messages, bytes, None)
}

/// [`queue`], whose bytes also count against `shared`.
pub fn queue_within<T>(
    messages: usize,
    bytes: usize,
    shared: Option<Budget>,
) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let own = Budget::new(bytes);
    (
        QueueTx {
            tx,
            own: own.clone(),
            shared: shared.clone(),
        },
        QueueRx { rx, own, shared },
    )
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue (or the budget it shares) is full.
    Full,
    /// The receiver is gone.
    Closed,
}

impl<T> QueueTx<T> {
    /// Queues `item` of `len` bytes, or refuses it at once.
    pub fn try_send(&self, item: T, len: usize) -> Result<(), Refused> {
        // Closed before full: a gone receiver frees nothing any more.
        if self.tx.is_closed() {
            return Err(Refused::Closed);
        }
        if !self.own.take(len) {
            return Err(Refused::Full);
        }
        if let Some(shared) = &self.shared {
            if !shared.take(len) {
                self.own.give(len);
                return Err(Refused::Full);
            }
        }
        self.tx.try_send((item, len)).map_err(|e| {
            self.give(len);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    fn give(&self, len: usize) {
        self.own.give(len);
        if let Some(shared) = &self.shared {
            shared.give(len);
        }
    }
}

impl<T> QueueRx<T> {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let (item, len) = self.rx.recv().await?;
        self.give(len);
        Some(item)
    }

    fn give(&self, len: usize) {
        self.own.give(len);
        if let Some(shared) = &self.shared {
            shared.give(len);
        }
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok((_, len)) = self.rx.try_recv() {
            self.give(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_refuses_past_its_count_or_its_bytes_and_frees_on_receive() {
        let (tx, mut rx) = queue::<u32>(2, 100);
        assert_eq!(tx.try_send(1, 60), Ok(()));
        assert_eq!(tx.try_send(2, 60), Err(Refused::Full), "bytes");
        assert_eq!(tx.try_send(3, 40), Ok(()));
        assert_eq!(tx.try_send(4, 0), Err(Refused::Full), "count");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.try_send(5, 60), Ok(()));
        drop(rx);
        assert_eq!(tx.try_send(6, 1), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn queues_sharing_a_budget_hold_no_more_than_it_and_give_back_when_dropped() {
        let budget = Budget::new(100);
        let (a, mut a_rx) = queue_within::<u8>(10, 80, Some(budget.clone()));
        let (b, b_rx) = queue_within::<u8>(10, 80, Some(budget.clone()));
        assert_eq!(a.try_send(1, 70), Ok(()));
        assert_eq!(b.try_send(2, 40), Err(Refused::Full), "the budget");
        assert_eq!(b.try_send(3, 30), Ok(()));
        assert_eq!(budget.held(), 100);
        assert_eq!(a_rx.recv().await, Some(1));
        assert_eq!(budget.held(), 30);
        // A queue dropped with messages in it gives their bytes back.
        drop(b_rx);
        assert_eq!(budget.held(), 0);
        assert_eq!(b.try_send(4, 1), Err(Refused::Closed));
    }
}
