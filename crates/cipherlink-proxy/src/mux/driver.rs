//! The I/O side of one mux connection: a task that reads the encrypted
//! connection into the decoder and the session, writes the session's
//! queued frames out and runs its keepalive timer; and [`MuxConn`], the
//! handle streams are opened or accepted through.

use std::future::{poll_fn, Future};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::frame::{Decoder, MAX_DATA};
use super::session::{Limits, MuxError, Session, Side};
use super::stream::MuxStream;

/// Bytes read from the connection at once.
const READ_CHUNK: usize = 64 * 1024;

/// How long the driver waits for the connection's close to go out once the
/// session ended.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long one write to the connection may make no progress before the
/// connection is declared lost: a peer that stops reading would otherwise
/// hold every stream (and its slot) of the connection for as long as it
/// keeps them busy.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(60);

pub(crate) type SharedSession = Arc<Mutex<Session>>;

pub(crate) fn lock(session: &SharedSession) -> MutexGuard<'_, Session> {
    // A panic while holding the lock leaves plain data; carry on with it.
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One running mux connection. Dropping it ends the connection: its streams
/// fail (their local TCP connections are reset by the relay).
#[derive(Debug)]
pub struct MuxConn {
    session: SharedSession,
    task: tokio::task::JoinHandle<()>,
    /// Counts the reads that brought bytes, for a probe to wait on.
    heard: watch::Receiver<u64>,
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        lock(&self.session).fail(MuxError::Lost("closed by this end".into()));
        self.task.abort();
    }
}

impl MuxConn {
    /// Starts the driver over an authenticated, encrypted connection.
    pub fn start<S>(io: S, side: Side, limits: Limits) -> MuxConn
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let session = Arc::new(Mutex::new(Session::new(side, limits)));
        let (heard_tx, heard) = watch::channel(0);
        let task = tokio::spawn(drive(io, session.clone(), heard_tx));
        MuxConn {
            session,
            task,
            heard,
        }
    }

    /// Client: whether the peer has been silent for so long that it should
    /// be asked ([`MuxConn::probe`]) before a new stream is trusted to it.
    pub fn needs_probe(&self) -> bool {
        let session = lock(&self.session);
        session.quiet(now()) >= session.keepalive().probe_after
    }

    /// Pings the peer and waits up to the keepalive's reply timeout for
    /// anything from it; a peer that stays silent fails the connection
    /// (and so every stream it carries) with [`MuxError::Silent`].
    pub async fn probe(&self) -> Result<(), MuxError> {
        let mut heard = self.heard.clone();
        heard.mark_unchanged();
        let wait = {
            let mut session = lock(&self.session);
            if let Some(failed) = session.failure() {
                return Err(failed.clone());
            }
            session.probe(now());
            session.keepalive().reply_timeout
        };
        let answered = matches!(
            tokio::time::timeout(wait, heard.changed()).await,
            Ok(Ok(()))
        );
        let mut session = lock(&self.session);
        if !answered {
            session.fail(MuxError::Silent { pings: 1, wait });
        }
        match session.failure() {
            Some(failed) => Err(failed.clone()),
            None => Ok(()),
        }
    }

    /// Client: takes no new stream and closes cleanly once its last one
    /// ends (the driver then finishes on its own).
    pub fn retire(&self) {
        lock(&self.session).retire();
    }

    /// Whether the driver ended (the connection is closed or lost).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Client: opens a stream, waiting (up to `timeout`) for a free slot.
    pub async fn open(&self, timeout: Duration) -> Result<MuxStream, MuxError> {
        let opening = poll_fn(|cx| lock(&self.session).poll_open(cx));
        match tokio::time::timeout(timeout, opening).await {
            Ok(Ok(id)) => Ok(MuxStream::new(self.session.clone(), id, Some(timeout))),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(MuxError::NoSlot(timeout)),
        }
    }

    /// Server: the next stream the client opened, `None` once the
    /// connection ended.
    pub async fn accept(&self) -> Option<MuxStream> {
        let id = poll_fn(|cx| lock(&self.session).poll_accept(cx)).await?;
        Some(MuxStream::new(self.session.clone(), id, None))
    }

    /// Sends what is queued, closes the connection and waits (bounded) for
    /// the driver to end.
    pub async fn close(mut self) {
        lock(&self.session).close();
        let _ = tokio::time::timeout(CLOSE_WAIT * 2, &mut self.task).await;
    }

    /// Whether the connection can take no new stream.
    pub fn is_spent(&self) -> bool {
        lock(&self.session).is_spent()
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        lock(&self.session).streams()
    }

    /// Why the connection ended, once it has.
    pub fn failure(&self) -> Option<MuxError> {
        lock(&self.session).failure().cloned()
    }
}

/// The session's clock: tokio's, so tests can pause it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn drive<S>(io: S, session: SharedSession, heard: watch::Sender<u64>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let reading = read_frames(&mut reader, &session, &heard);
    let writing = async {
        loop {
            let batch = poll_fn(|cx| lock(&session).poll_output(cx)).await;
            let Some(batch) = batch else {
                return Ok::<(), std::io::Error>(());
            };
            write_with_progress(&mut writer, &batch).await?;
        }
    };
    let error = tokio::select! {
        error = reading => error,
        error = keepalive(&session) => Some(error),
        written = writing => match written {
            Ok(()) => None,
            Err(error) => Some(MuxError::Lost(format!("writing: {error}").into())),
        },
    };
    let error = error.unwrap_or_else(|| MuxError::Lost("the connection ended".into()));
    lock(&session).fail(error);
    // A link sends its authenticated close, TLS its close_notify.
    let _ = tokio::time::timeout(CLOSE_WAIT, writer.shutdown()).await;
}

/// Runs the session's keepalive timer until it declares the peer gone (or
/// the session ended otherwise).
async fn keepalive(session: &SharedSession) -> MuxError {
    let mut sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
    // The driver's every wake-up polls this; the timer is re-armed only
    // when its deadline moved.
    let mut armed = None;
    poll_fn(|cx| loop {
        let mut guard = lock(session);
        let deadline = guard.poll_timer(now(), cx);
        if let Some(failed) = guard.failure() {
            return std::task::Poll::Ready(failed.clone());
        }
        drop(guard);
        let Some(deadline) = deadline else {
            return std::task::Poll::Pending;
        };
        if armed != Some(deadline) {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        armed = None;
    })
    .await
}

/// Writes all of `batch`, failing if any one write (or the flush) makes no
/// progress within [`WRITE_STALL`]; a slow peer that keeps reading is fine.
async fn write_with_progress<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &[u8],
) -> std::io::Result<()> {
    let stalled = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer read nothing for {WRITE_STALL:?}"),
        )
    };
    let mut rest = batch;
    while !rest.is_empty() {
        match tokio::time::timeout(WRITE_STALL, writer.write(rest)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => rest = &rest[n..],
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(stalled()),
        }
    }
    tokio::time::timeout(WRITE_STALL, writer.flush())
        .await
        .map_err(|_| stalled())?
}

/// Reads until the connection ends; `None` for a clean end with no stream
/// open, otherwise why the streams must fail.
async fn read_frames<R: AsyncRead + Unpin>(
    reader: &mut R,
    session: &SharedSession,
    heard: &watch::Sender<u64>,
) -> Option<MuxError> {
    let mut decoder = Decoder::new();
    loop {
        // Whole frames are drained after each read, so the buffer stays
        // under one frame plus one read.
        let buffer = decoder.buffer();
        buffer.reserve(READ_CHUNK.max(MAX_DATA));
        let read = reader.read_buf(buffer).await;
        match read {
            Ok(0) => {
                let open = lock(session).streams();
                return (open > 0 || decoder.pending() > 0).then(|| {
                    MuxError::Lost(
                        format!("the peer closed the connection with {open} stream(s) open").into(),
                    )
                });
            }
            Ok(_) => {}
            Err(error) => return Some(MuxError::Lost(format!("reading: {error}").into())),
        }
        // Only a probe waits on this (a clone of the handle's receiver).
        if heard.receiver_count() > 1 {
            heard.send_modify(|reads| *reads = reads.wrapping_add(1));
        }
        let mut session = lock(session);
        session.heard(now());
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(error) = session.receive(frame) {
                        return Some(error);
                    }
                }
                Ok(None) => break,
                Err(error) => return Some(MuxError::Protocol(error.to_string())),
            }
        }
        if let Some(failed) = session.failure() {
            return Some(failed.clone());
        }
    }
}
