//! A datagram session as its owner sees it: datagrams in and out through
//! the task that owns the socket and the sans-IO core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::dgram::wire::MAX_DATA;
use crate::error::Error;

/// Datagrams queued for an owner that does not read, at most; more are
/// dropped, as a full socket buffer drops them.
pub(crate) const QUEUED: usize = 256;
/// Bytes of data queued for one owner, at most (256 datagrams of 64 KiB
/// would otherwise be 16 MiB a session).
pub const QUEUED_BYTES: usize = 256 * 1024;

/// What the driving task hands an owner.
#[derive(Debug)]
pub(crate) enum Incoming {
    Data(Vec<u8>),
    /// `Ok` for a normal close by the peer.
    End(Result<(), Error>),
}

/// The driving task's end of an owner's queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    tx: mpsc::Sender<Incoming>,
    bytes: Arc<AtomicUsize>,
}

impl Inbox {
    /// Queues data unless the queue is full (then it is dropped: UDP).
    pub(crate) fn deliver(&self, data: Vec<u8>) -> bool {
        let n = data.len();
        // Only the driving task adds, so nothing passes between check and add.
        if self.bytes.load(Ordering::Acquire) + n > QUEUED_BYTES {
            return false;
        }
        self.bytes.fetch_add(n, Ordering::AcqRel);
        if self.tx.try_send(Incoming::Data(data)).is_err() {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Tells the owner the session is over (dropping the inbox tells it too).
    pub(crate) fn end(self, r: Result<(), Error>) {
        let _ = self.tx.try_send(Incoming::End(r));
    }
}

/// What an owner asks the driving task.
#[derive(Debug)]
pub(crate) enum Command {
    Send(u64, Vec<u8>),
    Close(u64),
}

/// A session: [`DgramReader`] and [`DgramWriter`], usable from two tasks.
#[derive(Debug)]
pub struct DgramSession {
    /// The peer's datagrams.
    pub reader: DgramReader,
    /// Ours.
    pub writer: DgramWriter,
}

/// Receives the peer's datagrams.
#[derive(Debug)]
pub struct DgramReader {
    rx: mpsc::Receiver<Incoming>,
    bytes: Arc<AtomicUsize>,
    over: bool,
}

/// Sends datagrams to the peer.
#[derive(Debug)]
pub struct DgramWriter {
    sid: u64,
    tx: mpsc::Sender<Command>,
    closed: bool,
    /// A client's: ends when its task has sent the close and stopped, so
    /// that [`DgramWriter::close`] returns after the close left.
    task_done: Option<oneshot::Receiver<()>>,
}

impl DgramSession {
    /// Ties a client's writer to its task's end (see [`DgramWriter::close`]).
    pub(crate) fn with_task_done(mut self, done: oneshot::Receiver<()>) -> Self {
        self.writer.task_done = Some(done);
        self
    }

    /// A session `sid` whose commands go to `tx`, and the inbox feeding it.
    pub(crate) fn new(sid: u64, tx: mpsc::Sender<Command>) -> (Self, Inbox) {
        let (in_tx, rx) = mpsc::channel(QUEUED);
        let bytes = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            tx: in_tx,
            bytes: Arc::clone(&bytes),
        };
        let session = Self {
            reader: DgramReader {
                rx,
                bytes,
                over: false,
            },
            writer: DgramWriter {
                sid,
                tx,
                closed: false,
                task_done: None,
            },
        };
        (session, inbox)
    }
}

impl DgramReader {
    /// The next datagram; `None` once the peer closed the session normally,
    /// an error when it ended otherwise (peer gone, revoked, refused).
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.over {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Incoming::Data(d)) => {
                self.bytes.fetch_sub(d.len(), Ordering::AcqRel);
                Ok(Some(d))
            }
            Some(Incoming::End(r)) => {
                self.over = true;
                r.map(|()| None)
            }
            None => {
                self.over = true;
                Err(Error::NotOpen)
            }
        }
    }
}

impl DgramWriter {
    /// Sends one datagram (at most [`MAX_DATA`] bytes). UDP: it may be
    /// lost, and nothing is resent.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_DATA {
            return Err(Error::Length {
                what: "datagram",
                len: data.len(),
            });
        }
        if self.closed {
            return Err(Error::NotOpen);
        }
        self.tx
            .send(Command::Send(self.sid, data.to_vec()))
            .await
            .map_err(|_| Error::NotOpen)
    }

    /// Closes the session (the peer is told, best effort): a client's
    /// returns once its close datagram was sent (at most a second).
    pub async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.tx
            .send(Command::Close(self.sid))
            .await
            .map_err(|_| Error::NotOpen)?;
        if let Some(done) = self.task_done.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), done).await;
        }
        Ok(())
    }
}

impl Drop for DgramWriter {
    fn drop(&mut self) {
        if !self.closed {
            // A full queue means the task is busy; the session then ends by
            // its keepalive.
            let _ = self.tx.try_send(Command::Close(self.sid));
        }
    }
}
