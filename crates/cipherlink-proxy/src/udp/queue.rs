//! A queue of messages bounded in count and in bytes, whose sender never
//! waits: a message that does not fit is refused (the caller drops and
//! counts it), as a full socket buffer drops a datagram.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Messages one queue holds at most.
pub const QUEUE_MESSAGES: usize = 512;
/// Bytes one queue holds at most: with 64 KiB datagrams, the count alone
/// would let one queue hold 32 MiB.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// The sending end (cloneable).
#[derive(Debug)]
pub struct QueueTx<T> {
    tx: mpsc::Sender<(T, usize)>,
    held: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            held: self.held.clone(),
            max_bytes: self.max_bytes,
        }
    }
}

/// The receiving end.
#[derive(Debug)]
pub struct QueueRx<T> {
    rx: mpsc::Receiver<(T, usize)>,
    held: Arc<AtomicUsize>,
}

/// An empty queue of at most `messages` messages and `bytes` bytes.
pub fn queue<T>(messages: usize, bytes: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let held = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            held: held.clone(),
            max_bytes: bytes,
        },
        QueueRx { rx, held },
    )
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    Full,
    /// The receiver is gone.
    Closed,
}

impl<T> QueueTx<T> {
    /// Queues `item` of `len` bytes, or refuses it at once.
    pub fn try_send(&self, item: T, len: usize) -> Result<(), Refused> {
        // Closed before full: a gone receiver's bytes are never freed.
        if self.tx.is_closed() {
            return Err(Refused::Closed);
        }
        // Several senders may pass this check together and overshoot by
        // their messages: bounded by the senders, not by the network.
        let held = self.held.fetch_add(len, Ordering::AcqRel);
        if held.saturating_add(len) > self.max_bytes {
            self.held.fetch_sub(len, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.tx.try_send((item, len)).map_err(|e| {
            self.held.fetch_sub(len, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }
}

impl<T> QueueRx<T> {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let (item, len) = self.rx.recv().await?;
        self.held.fetch_sub(len, Ordering::AcqRel);
        Some(item)
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
}
