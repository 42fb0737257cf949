//! One session as its owner sees it: messages in and out through the task
//! that owns the socket and the engine (the client's, or the listener's).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::Error;
use crate::wire::MAX_DATA;

/// Messages queued for one session's owner; more are dropped, as a full
/// socket buffer would drop them.
pub(crate) const INBOX: usize = 256;
/// Bytes of data queued for one session's owner; more are dropped. Without
/// it, INBOX messages of up to 64 KiB would hold 16 MiB per session that
/// its owner does not read (16 GiB for a listener's 1,024).
pub const INBOX_BYTES: usize = 512 * 1024;

/// The driving task's end of a session's queue: at most [`INBOX`]
/// messages and [`INBOX_BYTES`] bytes of data.
#[derive(Debug)]
pub(crate) struct InboxTx {
    tx: mpsc::Sender<Incoming>,
    held: Arc<AtomicUsize>,
}

/// The owner's end of a session's queue.
#[derive(Debug)]
pub(crate) struct InboxRx {
    rx: mpsc::Receiver<Incoming>,
    held: Arc<AtomicUsize>,
}

/// A session's queue, empty.
pub(crate) fn inbox() -> (InboxTx, InboxRx) {
    let (tx, rx) = mpsc::channel(INBOX);
    let held = Arc::new(AtomicUsize::new(0));
    (
        InboxTx {
            tx,
            held: held.clone(),
        },
        InboxRx { rx, held },
    )
}

impl InboxTx {
    /// Queues the peer's data; dropped when the queue is full.
    pub(crate) fn data(&self, d: Vec<u8>) {
        let len = d.len();
        // The driving task is the only one adding: no other can pass the
        // check between it and the addition.
        if self.held.load(Ordering::Acquire).saturating_add(len) > INBOX_BYTES {
            return;
        }
        self.held.fetch_add(len, Ordering::AcqRel);
        if self.tx.try_send(Incoming::Data(d)).is_err() {
            self.held.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Tells the owner the session ended.
    pub(crate) fn end(&self, r: Result<(), Error>) {
        let _ = self.tx.try_send(Incoming::End(r));
    }
}

/// What the driving task hands a session.
#[derive(Debug)]
pub(crate) enum Incoming {
    Data(Vec<u8>),
    /// `Ok` when the peer terminated, the reason otherwise.
    End(Result<(), Error>),
}

/// What a session asks its driving task.
#[derive(Debug)]
pub(crate) enum Command {
    Send { id: u64, data: Vec<u8> },
    Close { id: u64 },
}

/// A TYPHOON session: messages (datagrams) both ways.
#[derive(Debug)]
pub struct TyphoonSession {
    /// Receives the peer's messages.
    pub reader: TyphoonReader,
    /// Sends ours.
    pub writer: TyphoonWriter,
}

/// The receiving half of a [`TyphoonSession`].
#[derive(Debug)]
pub struct TyphoonReader {
    inbox: InboxRx,
    ended: bool,
}

/// The sending half of a [`TyphoonSession`].
#[derive(Debug)]
pub struct TyphoonWriter {
    id: u64,
    tx: mpsc::Sender<Command>,
    alive: Arc<AtomicBool>,
    peer: SocketAddr,
    closed: bool,
}

impl TyphoonSession {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        tx: mpsc::Sender<Command>,
        inbox: InboxRx,
        alive: Arc<AtomicBool>,
    ) -> Self {
        Self {
            reader: TyphoonReader {
                inbox,
                ended: false,
            },
            writer: TyphoonWriter {
                id,
                tx,
                alive,
                peer,
                closed: false,
            },
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.writer.peer
    }
}

impl TyphoonReader {
    /// The next message; `None` once the peer terminated the session. An
    /// error when it was given up (no handshake within TYPHOON's retries)
    /// or closed here.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.ended {
            return Ok(None);
        }
        match self.inbox.rx.recv().await {
            Some(Incoming::Data(d)) => {
                self.inbox.held.fetch_sub(d.len(), Ordering::AcqRel);
                Ok(Some(d))
            }
            Some(Incoming::End(r)) => {
                self.ended = true;
                r.map(|()| None)
            }
            None => {
                self.ended = true;
                Err(Error::Closed)
            }
        }
    }
}

impl TyphoonWriter {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message (at most [`MAX_DATA`] bytes). UDP: delivery is not
    /// guaranteed, and nothing is retransmitted.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_DATA {
            return Err(Error::TooLong {
                what: "data",
                len: data.len(),
                max: MAX_DATA,
            });
        }
        if self.closed || !self.alive.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let cmd = Command::Send {
            id: self.id,
            data: data.to_vec(),
        };
        self.tx.send(cmd).await.map_err(|_| Error::Closed)
    }

    /// Sends a termination and ends the session.
    pub async fn terminate(mut self) -> Result<(), Error> {
        self.closed = true;
        let cmd = Command::Close { id: self.id };
        self.tx.send(cmd).await.map_err(|_| Error::Closed)
    }
}

impl Drop for TyphoonWriter {
    fn drop(&mut self) {
        if !self.closed {
            // Frees the session's place; a full queue means the task is
            // busy, and the session then ends by its own timers.
            let _ = self.tx.try_send(Command::Close { id: self.id });
        }
    }
}
