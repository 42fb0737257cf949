//! The I/O side of one mux connection: a task that reads the encrypted
//! connection into the decoder and the session, and writes the session's
//! queued frames out; and [`MuxConn`], the handle streams are opened or
//! accepted through.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
        let task = tokio::spawn(drive(io, session.clone()));
        MuxConn { session, task }
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

async fn drive<S>(io: S, session: SharedSession)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let reading = read_frames(&mut reader, &session);
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
        let mut session = lock(session);
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
