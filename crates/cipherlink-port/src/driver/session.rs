//! One PORT data connection: framed, sealed messages in both directions.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{io_err, within};
use crate::crypto::SessionKey;
use crate::decode::{Frame, MessageDecoder};
use crate::error::Error;
use crate::settings::PortSettings;
use crate::wire::{self, MAX_DATA};
use crate::{random_nonce, random_tail};

const READ_BUF: usize = 16 * 1024;

/// A data connection after the INITs.
#[derive(Debug)]
pub struct PortSession {
    /// Receives the peer's messages.
    pub reader: PortReader,
    /// Sends ours.
    pub writer: PortWriter,
}

/// The receiving half of a [`PortSession`].
#[derive(Debug)]
pub struct PortReader {
    half: OwnedReadHalf,
    decoder: MessageDecoder,
    /// Allocated while bytes arrive, freed whenever a read would wait: an
    /// idle session (a proxy holds thousands) pins no read buffer.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    timeout: Duration,
    /// When the message under way must have arrived whole: set at the
    /// first read that waits for its rest, cleared when it is done.
    deadline: Option<Instant>,
    peer: SocketAddr,
}

/// The sending half of a [`PortSession`].
#[derive(Debug)]
pub struct PortWriter {
    half: OwnedWriteHalf,
    key: SessionKey,
    tail_length: usize,
    timeout: Duration,
    peer: SocketAddr,
}

impl PortSession {
    pub(crate) fn new(
        stream: TcpStream,
        key: SessionKey,
        settings: &PortSettings,
    ) -> Result<Self, Error> {
        let peer = stream
            .peer_addr()
            .map_err(|e| io_err("PORT data connection", e))?;
        let (r, w) = stream.into_split();
        Ok(Self {
            reader: PortReader {
                half: r,
                decoder: MessageDecoder::new(key.clone()),
                buf: Box::default(),
                start: 0,
                end: 0,
                timeout: settings.timeout,
                deadline: None,
                peer,
            },
            writer: PortWriter {
                half: w,
                key,
                tail_length: settings.tail_length,
                timeout: settings.timeout,
                peer,
            },
        })
    }

    /// The peer's address on the data connection.
    pub fn peer(&self) -> SocketAddr {
        self.reader.peer
    }

    /// Ends the connection with a TCP reset instead of a close. PORT has no
    /// abort message and a close between messages reads as a clean end, so
    /// a relay that failed resets: the peer's next read is an error.
    pub fn reset(self) {
        if let Ok(stream) = self.reader.half.reunite(self.writer.half) {
            let _ = stream.set_zero_linger();
        }
    }
}

impl PortReader {
    /// The next message's data; `None` when the peer terminated or closed
    /// between messages. Idle time between messages is unbounded (TCP
    /// keepalive watches it, as in PORT); once a message has started, the
    /// rest must arrive within `PORT_TIMEOUT` of the first wait for it.
    /// Cancel-safe: a message's bytes and its deadline survive a dropped call.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if self.decoder.terminated() {
                return Ok(None);
            }
            if self.start < self.end {
                let mut input = &self.buf[self.start..self.end];
                let ended = self.decoder.messages_ended();
                let frame = self.decoder.decode(&mut input)?;
                self.start = self.end - input.len();
                // A message that ended takes its deadline along, even when
                // the next one started in the same bytes.
                if ended != self.decoder.messages_ended() || !self.decoder.mid_message() {
                    self.deadline = None;
                }
                match frame {
                    Some(Frame::Data(d)) => return Ok(Some(d)),
                    Some(Frame::Term) => return Ok(None),
                    None => continue,
                }
            }
            let peer = self.peer;
            let n = if self.decoder.mid_message() {
                // One deadline for the whole rest, not one per read: a peer
                // trickling a byte at a time must not hold a message open.
                let deadline = *self
                    .deadline
                    .get_or_insert_with(|| Instant::now() + self.timeout);
                timeout_at(deadline, self.read_some())
                    .await
                    .map_err(|_| Error::Timeout(format!("the rest of a message from {peer}")))?
                    .map_err(|e| io_err(format!("reading from {peer}"), e))?
            } else {
                self.read_some()
                    .await
                    .map_err(|e| io_err(format!("reading from {peer}"), e))?
            };
            if n == 0 {
                if self.decoder.mid_message() {
                    return Err(Error::Truncated(peer.to_string()));
                }
                return Ok(None);
            }
            (self.start, self.end) = (0, n);
        }
    }

    /// Reads into `buf`, which holds no unread bytes: allocated for the
    /// read, freed while it waits for the socket. Cancel-safe.
    async fn read_some(&mut self) -> std::io::Result<usize> {
        loop {
            if self.buf.is_empty() {
                self.buf = vec![0u8; READ_BUF].into_boxed_slice();
            }
            match self.half.try_read(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.buf = Box::default();
                    self.half.readable().await?;
                }
                read => return read,
            }
        }
    }
}

impl PortWriter {
    /// Sends `data` as one message, or as several of at most
    /// [`MAX_DATA`] bytes. Each message goes out in one write: SeasideVPN's
    /// reader reads a message's parts with single `recv` calls.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(MAX_DATA) {
            let msg = self.build(Some(chunk))?;
            self.write(&msg).await?;
        }
        Ok(())
    }

    /// Sends a termination message and closes our side.
    pub async fn terminate(&mut self) -> Result<(), Error> {
        let msg = self.build(None)?;
        self.write(&msg).await?;
        let peer = self.peer;
        let _ = within(self.timeout, || format!("closing to {peer}"), async {
            self.half
                .shutdown()
                .await
                .map_err(|e| io_err(format!("closing to {peer}"), e))
        })
        .await;
        Ok(())
    }

    fn build(&self, data: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let mut rng = rand::rng();
        match data {
            Some(d) => {
                let tail = random_tail(self.tail_length, &mut rng);
                wire::data(
                    &self.key,
                    d,
                    &random_nonce(&mut rng),
                    &random_nonce(&mut rng),
                    &tail,
                )
            }
            // No tail: SeasideVPN stops reading at a termination's header
            // and closes, and a socket closed with unread bytes sends a TCP
            // reset that destroys the replies still on their way to us.
            None => wire::term(&self.key, &random_nonce(&mut rng), &[]),
        }
    }

    async fn write(&mut self, msg: &[u8]) -> Result<(), Error> {
        let peer = self.peer;
        within(self.timeout, || format!("sending to {peer}"), async {
            self.half
                .write_all(msg)
                .await
                .map_err(|e| io_err(format!("sending to {peer}"), e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    async fn pair() -> (PortSession, PortSession) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = listener.accept().await.expect("accept");
        let key = SessionKey::from_bytes([7; 32]);
        let s = PortSettings::default();
        (
            PortSession::new(a, key.clone(), &s).expect("session"),
            PortSession::new(b, key, &s).expect("session"),
        )
    }

    /// A proxy holds one reader per open tunnel: an idle one must not pin
    /// a read buffer, or a token holder's idle tunnels cost 16 KiB each.
    #[tokio::test]
    async fn an_idle_reader_holds_no_read_buffer() {
        let (mut a, mut b) = pair().await;
        for word in [&b"hello"[..], b"again"] {
            a.writer.send(word).await.expect("send");
            assert_eq!(b.reader.recv().await.expect("recv").as_deref(), Some(word));
            // Nothing more is coming: the reader waits, and holds nothing.
            for _ in 0..2 {
                let recv = std::pin::pin!(b.reader.recv());
                assert!(recv
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending());
            }
            assert_eq!(b.reader.buf.len(), 0, "an idle reader's buffer");
        }
        a.writer.terminate().await.expect("terminate");
        assert_eq!(b.reader.recv().await.expect("end"), None);
    }
}
