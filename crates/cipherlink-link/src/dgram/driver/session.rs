//! A datagram session as its owner sees it: datagrams in and out through
//! the task that owns the socket and the sans-IO core.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Notify};

use crate::dgram::wire::MAX_DATA;
use crate::error::Error;

/// Datagrams queued for an owner that does not read, at most; more are
/// dropped, as a full socket buffer drops them.
pub(crate) const QUEUED: usize = 256;
/// Bytes of data queued for one owner, at most (256 datagrams of 64 KiB
/// would otherwise be 16 MiB a session).
pub const QUEUED_BYTES: usize = 256 * 1024;

/// One owner's queue. A deque allocates nothing until a datagram waits
/// (a channel would hold a block of slots for every idle session).
#[derive(Debug, Default)]
struct Queue {
    datagrams: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Set once: `Ok` for a normal close by the peer.
    end: Option<Result<(), Error>>,
    /// The driving task dropped its end without saying why.
    gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // Every holder leaves the queue consistent between statements.
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// The driving task's end of an owner's queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    shared: Arc<Shared>,
}

impl Inbox {
    /// Queues data unless the queue is full (then it is dropped: UDP).
    pub(crate) fn deliver(&self, data: Vec<u8>) -> bool {
        {
            let mut q = lock(&self.shared.queue);
            if q.end.is_some() || q.datagrams.len() >= QUEUED || q.bytes + data.len() > QUEUED_BYTES
            {
                return false;
            }
            q.bytes += data.len();
            q.datagrams.push_back(data);
        }
        self.shared.ready.notify_one();
        true
    }

    /// Tells the owner the session is over (dropping the inbox tells it too).
    pub(crate) fn end(self, r: Result<(), Error>) {
        lock(&self.shared.queue).end.get_or_insert(r);
        self.shared.ready.notify_one();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        lock(&self.shared.queue).gone = true;
        self.shared.ready.notify_one();
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
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared::default());
        let inbox = Inbox {
            shared: Arc::clone(&shared),
        };
        let session = Self {
            reader: DgramReader {
                shared,
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
        loop {
            if self.over {
                return Ok(None);
            }
            // Registered before looking, so a delivery in between wakes it.
            let ready = self.shared.ready.notified();
            {
                let mut q = lock(&self.shared.queue);
                if let Some(d) = q.datagrams.pop_front() {
                    q.bytes -= d.len();
                    return Ok(Some(d));
                }
                if let Some(end) = q.end.take() {
                    self.over = true;
                    return end.map(|()| None);
                }
                if q.gone {
                    self.over = true;
                    return Err(Error::NotOpen);
                }
            }
            ready.await;
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
