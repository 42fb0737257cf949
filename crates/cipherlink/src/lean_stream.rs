//! A TLS stream that holds no buffer while its connection is idle, for
//! both ends of a Tunnel on rustls.
//!
//! Why this exists: rustls' buffered connections (what tokio-rustls
//! drives) keep their record read buffer, 4 KiB, for the connection's
//! whole life once the first byte has been read: they shrink it when
//! empty, but never below 4 KiB. A server of 10,000 idle clients pays
//! 40 MB for buffers that hold nothing (`docs/benchmarks.md`, "bench
//! idle": that buffer was 4,096 of the 7,298 heap bytes of an idle
//! connection), and so does a proxy's client end with 10,000 idle tunnels.
//!
//! rustls' unbuffered API (`UnbufferedServerConnection`,
//! `UnbufferedClientConnection`) leaves the buffers to the caller. Here
//! each of them is a `Vec` that exists only while it holds something:
//! received TLS bytes while a record is partially received, encrypted
//! bytes until the transport took them, decrypted bytes until the reader
//! took them. A connection waiting for its peer holds none of them, and
//! the one read buffer that does exist while polling is dropped again if
//! the transport had nothing. Measured with `cipherlink bench idle
//! --connections 10000` (`cipherlink serve --echo`): 9,187 bytes per idle
//! TLS 1.3 server connection on tokio-rustls, 5,183 on this stream
//! (medians of five runs; plain TCP: 838).
//!
//! The two ends differ only in the rustls connection ([`Unbuffered`]) and
//! in what the client can do as its handshake ends: the first
//! application bytes leave in the same write as its Finished
//! ([`connect`]).
//!
//! Every buffer is bounded: received bytes by the largest handshake
//! message rustls accepts (64 KiB) plus one record, outgoing bytes by a
//! high-water mark past which `poll_write` waits for the transport.
//! TLS failures come back as `io::Error` carrying the `rustls::Error`, as
//! tokio-rustls returns them, so `Error::from_io` reports them the same way.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TLS record on the wire: header, at most 16 KiB of plaintext, and the
/// expansion TLS allows a ciphertext (2 KiB).
const MAX_RECORD_WIRE: usize = 5 + 16 * 1024 + 2048;

/// The most received bytes held at once: a handshake message can be up to
/// 64 KiB (rustls' own limit) and arrive in many records, which the
/// unbuffered deframer joins in place in our buffer; one more record may
/// be behind it.
const MAX_INCOMING: usize = 0xffff + 4 + MAX_RECORD_WIRE;

/// The most plaintext encrypted per `poll_write` call, and the encrypted
/// bytes waiting for the transport past which `poll_write` waits: as
/// rustls' own default send buffer.
const MAX_PENDING_OUT: usize = 64 * 1024;

/// One end's rustls connection on the unbuffered API.
pub(crate) trait Unbuffered:
    Unpin + std::ops::DerefMut<Target = UnbufferedConnectionCommon<Self::Data>>
{
    /// Client or server connection data.
    type Data;
    /// `process_tls_records`, which rustls defines per side.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// A server-side stream.
pub(crate) type LeanServer<IO> = LeanStream<IO, UnbufferedServerConnection>;
/// A client-side stream.
pub(crate) type LeanClient<IO> = LeanStream<IO, UnbufferedClientConnection>;

/// A TLS stream over `IO` on rustls' unbuffered API.
pub(crate) struct LeanStream<IO, C> {
    io: IO,
    conn: C,
    /// Received TLS bytes not yet consumed by rustls (a partial record, or
    /// the records of a handshake message still being joined). Empty means
    /// unallocated.
    incoming: Vec<u8>,
    /// Encrypted bytes not yet taken by the transport, from `sent` on.
    /// What was taken is dropped before more is appended (`outgoing_tail`),
    /// so this holds at most the unsent bytes and one more chunk.
    outgoing: Vec<u8>,
    sent: usize,
    /// Bytes went to the transport since it was last flushed: a buffered
    /// transport (`BufWriter`, a framed stream) holds them until flushed,
    /// and a peer waiting for our flight would wait forever.
    unflushed: bool,
    /// Decrypted bytes not yet read, from `plain_read` on.
    plain: Vec<u8>,
    plain_read: usize,
    /// The peer's close_notify arrived (or both sides closed): reads end.
    eof: bool,
    /// Our close_notify is queued: no more writes.
    write_closed: bool,
    /// The session failed: rustls is not fed again (boxed: a pointer in
    /// every connection instead of the error's size).
    failed: Option<Box<rustls::Error>>,
}

/// What a caller of `step` wants done once rustls can take it.
enum Want<'a> {
    Read,
    Write(&'a [u8]),
    Close,
}

/// Where `step` stopped.
enum Step {
    /// rustls needs more bytes from the peer.
    NeedInput,
    /// Decrypted bytes are in `plain`.
    Data,
    /// `Want::Write`: this many plaintext bytes were encrypted into
    /// `outgoing`; `Want::Close`: close_notify is queued.
    Wrote(usize),
    /// The peer closed (close_notify); no more data will come.
    Eof,
}

/// A server handshake over `io`; the caller bounds it in time.
pub(crate) async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> io::Result<LeanServer<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = LeanStream::new(io, conn);
    poll_fn(|cx| stream.poll_handshake(cx, &[], &mut 0)).await?;
    Ok(stream)
}

/// A client handshake over `io` to `name`; as much of `first` as the send
/// bound takes is encrypted as the handshake ends and leaves in the same
/// write as the client's Finished. Returns the stream and how much of
/// `first` it sent. The caller bounds it in time.
pub(crate) async fn connect<IO>(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    io: IO,
    first: &[u8],
) -> io::Result<(LeanClient<IO>, usize)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    let mut stream = LeanStream::new(io, conn);
    let mut queued = 0;
    poll_fn(|cx| stream.poll_handshake(cx, first, &mut queued)).await?;
    Ok((stream, queued))
}

/// A TLS failure as tokio-rustls reports it: `InvalidData` carrying the
/// rustls error, which `crate::error::tls_error_in` finds.
fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

fn eof_without_close_notify() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify",
    )
}

impl<IO, C: Unbuffered> LeanStream<IO, C> {
    fn new(io: IO, conn: C) -> Self {
        LeanStream {
            io,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            unflushed: false,
            plain: Vec::new(),
            plain_read: 0,
            eof: false,
            write_closed: false,
            failed: None,
        }
    }

    /// The transport under the TLS session.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The rustls state: what was negotiated, the peer's certificates.
    pub(crate) fn connection(&self) -> &rustls::CommonState {
        let common: &UnbufferedConnectionCommon<C::Data> = &self.conn;
        common
    }

    /// Bytes this stream holds in its own buffers (allocated capacity):
    /// zero for an idle connection.
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plain.capacity()
    }

    /// Runs rustls over what has been received until it needs something
    /// from outside: more input, or (for `Want::Write`/`Want::Close`) the
    /// traffic state in which it can encrypt. Handshake messages it makes
    /// are appended to `outgoing` as they come, so a whole flight leaves in
    /// one transport write.
    fn step(&mut self, want: Want<'_>) -> io::Result<Step> {
        if let Some(err) = &self.failed {
            // rustls is not fed again after a failure (see `queue_alerts`).
            return Err(tls_error((**err).clone()));
        }
        let result = self.step_inner(want);
        if let Err(err) = &result {
            let tls = crate::error::tls_error_in(err)
                .cloned()
                .unwrap_or_else(|| rustls::Error::General(err.to_string()));
            self.failed = Some(Box::new(tls));
            // Nothing more will be read: release what was received.
            self.incoming = Vec::new();
            self.plain = Vec::new();
            self.plain_read = 0;
        }
        result
    }

    fn step_inner(&mut self, want: Want<'_>) -> io::Result<Step> {
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process(&mut self.incoming);
            let outcome = match state {
                Err(err) => {
                    self.discard(discard);
                    self.queue_alerts();
                    return Err(tls_error(err));
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(
                        outgoing_tail(&mut self.outgoing, &mut self.sent),
                        &mut encode,
                    )?;
                    None
                }
                // The flight is already in `outgoing`, which is written
                // (in order, before anything queued later) whenever the
                // transport takes it.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    Some(if self.eof { Step::Eof } else { Step::NeedInput })
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        if self.plain_read == self.plain.len() {
                            self.plain.clear();
                            self.plain_read = 0;
                        }
                        self.plain.extend_from_slice(record.payload);
                    }
                    // One record per ReadTraffic: `plain` stays bounded by
                    // what `incoming` held.
                    match want {
                        Want::Read => Some(Step::Data),
                        Want::Write(_) | Want::Close => None,
                    }
                }
                // (Server only.) The server config enables no early data,
                // so rustls refuses it itself; if it ever offered some,
                // refuse here rather than hand the application replayable
                // bytes.
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "0-RTT early data is not accepted",
                    ));
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.eof = true;
                    None
                }
                Ok(ConnectionState::Closed) => {
                    self.eof = true;
                    Some(match want {
                        Want::Read => Step::Eof,
                        Want::Write(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "TLS session closed",
                            ))
                        }
                        Want::Close => Step::Wrote(0),
                    })
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match want {
                    Want::Read => Some(if self.eof { Step::Eof } else { Step::NeedInput }),
                    Want::Write(data) => {
                        encrypt_into(
                            outgoing_tail(&mut self.outgoing, &mut self.sent),
                            data.len(),
                            |out| traffic.encrypt(data, out),
                        )?;
                        Some(Step::Wrote(data.len()))
                    }
                    Want::Close => {
                        encrypt_into(
                            outgoing_tail(&mut self.outgoing, &mut self.sent),
                            0,
                            |out| traffic.queue_close_notify(out),
                        )?;
                        Some(Step::Wrote(0))
                    }
                },
                Ok(other) => {
                    return Err(io::Error::other(format!(
                        "unexpected TLS connection state {other:?}"
                    )))
                }
            };
            self.discard(discard);
            if let Some(step) = outcome {
                return Ok(step);
            }
        }
    }

    /// Drops what rustls has consumed from the front of `incoming`, and the
    /// allocation with it when nothing is left.
    fn discard(&mut self, n: usize) {
        let n = n.min(self.incoming.len());
        self.incoming.drain(..n);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
    }

    /// After a failure, rustls has queued the alert that tells the peer
    /// why; put it in `outgoing` so a last write can carry it.
    fn queue_alerts(&mut self) {
        // Exactly one more call: rustls hands out a queued message before
        // it looks at input again, and a second call would deframe the
        // offending bytes again and queue a second fatal alert (a debug
        // assertion in rustls). A failure queues one alert.
        let UnbufferedStatus { discard, state } = self.conn.process(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            // Best effort: the failure is reported either way.
            let _ = encode_into(
                outgoing_tail(&mut self.outgoing, &mut self.sent),
                &mut encode,
            );
        }
        self.discard(discard);
    }

    /// Whether decrypted bytes wait to be read.
    fn has_plain(&self) -> bool {
        self.plain_read < self.plain.len()
    }

    /// Takes up to `max` decrypted bytes, freeing the buffer once empty.
    fn take_plain(&mut self, max: usize) -> Vec<u8> {
        let available = self.plain.len() - self.plain_read;
        if self.plain_read == 0 && available <= max {
            // The whole buffer: hand it over instead of copying.
            return std::mem::take(&mut self.plain);
        }
        let n = available.min(max);
        let chunk = self.plain[self.plain_read..self.plain_read + n].to_vec();
        self.advance_plain(n);
        chunk
    }

    fn advance_plain(&mut self, n: usize) {
        self.plain_read += n;
        if self.plain_read >= self.plain.len() {
            self.plain = Vec::new();
            self.plain_read = 0;
        }
    }
}

/// `outgoing`, ready to have more appended: the `sent` bytes the transport
/// already took are dropped first. Without this, a transport that takes a
/// little less than a chunk per call never empties the buffer, and
/// everything ever sent stays in it. (Fields, not `&mut self`: rustls'
/// traffic state borrows the connection meanwhile.)
fn outgoing_tail<'a>(outgoing: &'a mut Vec<u8>, sent: &mut usize) -> &'a mut Vec<u8> {
    if *sent > 0 {
        outgoing.drain(..*sent);
        *sent = 0;
    }
    outgoing
}

/// Appends a handshake record rustls made to `out`, sized exactly: an
/// empty slice first makes rustls say how much it needs.
fn encode_into<Data>(
    out: &mut Vec<u8>,
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, Data>,
) -> io::Result<()> {
    let need = match encode.encode(&mut []) {
        // An empty record: nothing to append.
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(e)) => e.required_size,
        Err(e) => return Err(io::Error::other(e)),
    };
    let start = out.len();
    out.resize(start + need, 0);
    match encode.encode(&mut out[start..]) {
        Ok(written) => {
            out.truncate(start + written);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(io::Error::other(e))
        }
    }
}

/// Encrypts with `f` at the end of `out`, growing it to what rustls says
/// it needs; `out` is unchanged on failure.
fn encrypt_into(
    out: &mut Vec<u8>,
    plaintext: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<usize> {
    let start = out.len();
    // Per 16 KiB record: header, content type, tag, TLS 1.2 explicit nonce;
    // plus room for a key update rustls may put first.
    let mut need = plaintext + (plaintext / (16 * 1024) + 1) * 64 + 64;
    loop {
        out.resize(start + need, 0);
        match f(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(written);
            }
            Err(EncryptError::InsufficientSize(e)) if e.required_size > need => {
                need = e.required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered> LeanStream<IO, C> {
    /// Reads what the transport has into `incoming`. The read lands in
    /// uninitialised stack scratch and only the bytes that came are copied
    /// (zeroing a record-sized buffer on every poll cost more than the
    /// read), so an idle connection keeps no buffer.
    fn poll_fill(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<usize>> {
        let room = MAX_INCOMING.saturating_sub(self.incoming.len());
        if room == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS message larger than 64 KiB",
            )));
        }
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); MAX_RECORD_WIRE];
        let mut buf = ReadBuf::uninit(&mut scratch[..room.min(MAX_RECORD_WIRE)]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        if let Poll::Ready(Ok(())) = polled {
            self.incoming.extend_from_slice(buf.filled());
        }
        polled.map_ok(|()| buf.filled().len())
    }

    /// Writes `outgoing` to the transport; frees it once all is taken.
    fn poll_send(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n;
                    self.unflushed = true;
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Sends `outgoing` and flushes the transport: what a peer must have
    /// before it answers (a handshake flight, a key update, an alert).
    fn poll_send_and_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        self.poll_flush_io(cx)
    }

    /// Flushes the transport if anything went to it since the last flush.
    fn poll_flush_io(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// A last attempt to deliver a queued alert after a failure; the
    /// failure is what the caller reports either way.
    fn fail<T>(&mut self, cx: &mut TaskContext<'_>, err: io::Error) -> Poll<io::Result<T>> {
        let _ = self.poll_send_and_flush(cx);
        Poll::Ready(Err(err))
    }

    /// Runs the handshake; once it is done, as much of `first` as fits is
    /// queued (`queued` says how much) to leave with our last flight.
    fn poll_handshake(
        &mut self,
        cx: &mut TaskContext<'_>,
        first: &[u8],
        queued: &mut usize,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.conn.is_handshaking() && *queued == 0 && !first.is_empty() {
                match self.queue_plaintext(first) {
                    Ok(n) => *queued = n,
                    Err(err) => return self.fail(cx, err),
                }
            }
            // The peer answers only once it has our flight, flushed.
            ready!(self.poll_send_and_flush(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.step(Want::Read) {
                Err(err) => return self.fail(cx, err),
                // Application data that came with the client's Finished
                // (or after the server's, for a client) waits in `plain`
                // for the first read.
                Ok(Step::Data) | Ok(Step::Wrote(_)) => {}
                Ok(Step::Eof) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls handshake eof",
                    )))
                }
                Ok(Step::NeedInput) => {
                    if !self.conn.is_handshaking() {
                        continue;
                    }
                    // Send what the step made before waiting for the reply.
                    if self.sent < self.outgoing.len() {
                        continue;
                    }
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
            }
        }
    }

    /// Waits until decrypted bytes are in `plain` or the stream has ended
    /// (`Ok(false)`).
    fn poll_plain(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<bool>> {
        loop {
            if self.has_plain() {
                return Poll::Ready(Ok(true));
            }
            if self.eof {
                return Poll::Ready(Ok(false));
            }
            // Whatever rustls queued (a key update, a ticket) goes out,
            // flushed, while we wait; a transport that is full must not
            // stop reads.
            if let Poll::Ready(Err(err)) = self.poll_send_and_flush(cx) {
                return Poll::Ready(Err(err));
            }
            match self.step(Want::Read) {
                Err(err) => return self.fail(cx, err),
                Ok(Step::Data) | Ok(Step::Wrote(_)) => {}
                Ok(Step::Eof) => {
                    self.eof = true;
                    // Anything after close_notify is ignored (RFC 8446 6.1).
                    self.incoming = Vec::new();
                }
                Ok(Step::NeedInput) => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(eof_without_close_notify()));
                    }
                }
            }
        }
    }

    /// What has arrived, at most `max` bytes, in a buffer made for it (the
    /// decrypted record itself when it fits).
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut TaskContext<'_>,
        max: usize,
    ) -> Poll<io::Result<Vec<u8>>> {
        if !ready!(self.poll_plain(cx))? {
            return Poll::Ready(Ok(Vec::new()));
        }
        Poll::Ready(Ok(self.take_plain(max.max(1))))
    }

    /// Encrypts as much of `buf` as the send bound allows into the
    /// outgoing buffer without writing to the transport, so it leaves with
    /// whatever follows (close_notify) in one write; returns how much.
    pub(crate) fn queue_plaintext(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut queued = 0;
        while queued < buf.len() && self.outgoing.len() - self.sent < MAX_PENDING_OUT {
            let take = (buf.len() - queued).min(MAX_PENDING_OUT);
            match self.step(Want::Write(&buf[queued..queued + take]))? {
                Step::Wrote(n) => queued += n,
                _ => break,
            }
        }
        Ok(queued)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered> AsyncRead for LeanStream<IO, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if ready!(this.poll_plain(cx))? {
            let n = buf.remaining().min(this.plain.len() - this.plain_read);
            buf.put_slice(&this.plain[this.plain_read..this.plain_read + n]);
            this.advance_plain(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Unbuffered> AsyncWrite for LeanStream<IO, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS session closed for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Bounded: past the mark, wait for the transport to take some.
        if this.outgoing.len() - this.sent >= MAX_PENDING_OUT {
            ready!(this.poll_send(cx))?;
        }
        let take = buf.len().min(MAX_PENDING_OUT);
        let written = match this.step(Want::Write(&buf[..take])) {
            Ok(Step::Wrote(n)) => n,
            Ok(_) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "TLS session cannot send data now",
                )))
            }
            Err(err) => return this.fail(cx, err),
        };
        // Start the transport on it; the caller's flush finishes the job.
        if let Poll::Ready(Err(err)) = this.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            // Queued behind any reply still in `outgoing`: one write.
            match this.step(Want::Close) {
                Ok(_) => this.write_closed = true,
                Err(err) => return this.fail(cx, err),
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod client_tests;
