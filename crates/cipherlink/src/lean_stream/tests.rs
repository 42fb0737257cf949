//! The unbuffered server stream against tokio-rustls clients, over
//! transports that trickle, buffer, or take little at a time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_rustls::client::TlsStream as ClientStream;
use tokio_rustls::TlsConnector;

use super::{accept, LeanServer};
use crate::test_fixtures::contexts;

pub(super) fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (server, client) = contexts();
    (
        server.rustls_server_config().expect("rustls server"),
        client.rustls_client_config().expect("rustls client"),
    )
}

/// A transport that hands out at most `max` bytes per read: every
/// record arrives in many pieces.
pub(super) struct Trickle<IO> {
    pub(super) inner: IO,
    pub(super) max: usize,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Trickle<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.max);
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(n));
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut small);
        let got = small.filled().len();
        buf.advance(got);
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Trickle<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    server_io: IO,
    client_io: DuplexStream,
) -> (LeanServer<IO>, ClientStream<DuplexStream>) {
    let (server, client) = configs();
    let name = ServerName::try_from("localhost").expect("name");
    let (accepted, connected) = tokio::join!(
        accept(server, server_io),
        TlsConnector::from(client).connect(name, client_io)
    );
    (
        accepted.expect("server handshake"),
        connected.expect("client handshake"),
    )
}

pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn records_split_across_many_small_reads() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, mut client) = handshake(Trickle { inner: a, max: 3 }, b).await;
    let sent = pattern(40_000);
    client.write_all(&sent).await.expect("write");
    client.flush().await.expect("flush");
    let mut got = vec![0u8; sent.len()];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(got, sent);
    // And back, over the same trickling transport.
    server.write_all(b"done").await.expect("write");
    server.flush().await.expect("flush");
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).await.expect("read");
    assert_eq!(&reply, b"done");
}

/// A client that fragments into 512-byte records: its ClientHello (an
/// ML-KEM key share is over a kilobyte) spans several records, which
/// rustls joins inside our buffer, and the reads split them further.
#[tokio::test]
async fn handshake_messages_across_records_and_reads() {
    let (server, client) = configs();
    let mut client = (*client).clone();
    client.max_fragment_size = Some(512);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from("localhost").expect("name");
    let (accepted, connected) = tokio::join!(
        accept(server, Trickle { inner: a, max: 100 }),
        TlsConnector::from(Arc::new(client)).connect(name, b)
    );
    let (mut server, mut client) = (
        accepted.expect("server handshake"),
        connected.expect("client handshake"),
    );
    let sent = pattern(3000);
    client.write_all(&sent).await.expect("write");
    client.flush().await.expect("flush");
    let mut got = vec![0u8; sent.len()];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(got, sent);
    assert_eq!(server.buffered_capacity(), 0);
}

#[tokio::test]
async fn garbage_after_the_handshake_is_a_clean_tls_error() {
    for garbage in [
        // An application-data record that does not decrypt.
        [&[0x17u8, 0x03, 0x03, 0x00, 0x20][..], &[0xAB; 32][..]].concat(),
        // Not TLS at all.
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A record header claiming more than TLS allows.
        vec![0x17, 0x03, 0x03, 0xFF, 0xFF, 0, 0, 0],
    ] {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (mut server, mut client) = handshake(a, b).await;
        client
            .get_mut()
            .0
            .write_all(&garbage)
            .await
            .expect("raw write");
        let mut buf = [0u8; 64];
        let err = server.read(&mut buf).await.expect_err("garbage accepted");
        assert!(
            crate::error::tls_error_in(&err).is_some(),
            "not a TLS error: {err:?}"
        );
        // Failed stays failed, without feeding rustls again.
        let again = server.read(&mut buf).await.expect_err("read after failure");
        assert!(crate::error::tls_error_in(&again).is_some(), "{again:?}");
        assert!(server.write_all(b"x").await.is_err());
        // The peer was told why (a fatal alert), where rustls knew.
        let mut reply = [0u8; 16];
        let told = client.read(&mut reply).await;
        assert!(told.is_err(), "client saw {told:?}");
    }
}

/// Bytes that are not a ClientHello, in many shapes: a TLS error or an
/// end-of-stream error, never a panic or a hang.
#[tokio::test]
async fn garbage_in_place_of_a_handshake_is_refused() {
    let (server, _) = configs();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x16],
        vec![0x16, 0x03, 0x01, 0x40, 0x00],
        // A handshake record announcing a 16 MiB message.
        vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xFF, 0xFF, 0xFF],
    ];
    for len in [1usize, 5, 64, 600, 5000, 20_000] {
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        // Random bytes, and the same behind a plausible record header.
        inputs.push(bytes.clone());
        let mut framed = vec![0x16, 0x03, 0x01];
        framed.extend_from_slice(&(len.min(0x4000) as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        inputs.push(framed);
    }
    for input in inputs {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        b.write_all(&input).await.expect("raw write");
        b.shutdown().await.expect("raw shutdown");
        let result =
            tokio::time::timeout(std::time::Duration::from_secs(5), accept(server.clone(), a))
                .await
                .expect("handshake did not end");
        let err = result.err().expect("garbage accepted");
        assert!(
            crate::error::tls_error_in(&err).is_some()
                || err.kind() == io::ErrorKind::UnexpectedEof,
            "{} bytes: {err:?}",
            input.len()
        );
    }
}

#[tokio::test]
async fn sixteen_mib_round_trip() {
    const LEN: usize = 16 * 1024 * 1024;
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, client) = handshake(a, b).await;
    let echo = async move {
        loop {
            let chunk = std::future::poll_fn(|cx| server.poll_read_chunk(cx, 64 * 1024))
                .await
                .expect("server read");
            if chunk.is_empty() {
                break;
            }
            server.write_all(&chunk).await.expect("server write");
        }
        server.shutdown().await.expect("server close");
        server
    };
    let (mut rd, mut wr) = tokio::io::split(client);
    let sent = pattern(LEN);
    let send = async {
        wr.write_all(&sent).await.expect("client write");
        wr.shutdown().await.expect("client close");
    };
    let receive = async {
        let mut got = Vec::with_capacity(LEN);
        rd.read_to_end(&mut got).await.expect("client read");
        got
    };
    let (server, (), got) = tokio::join!(echo, send, receive);
    assert_eq!(got.len(), LEN);
    assert!(got == sent, "echo differs");
    assert_eq!(server.buffered_capacity(), 0);
}

#[tokio::test]
async fn close_notify_both_ways() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, mut client) = handshake(a, b).await;
    // Server closes: the client sees a clean end (tokio-rustls reports
    // an end without close_notify as an error instead).
    server.write_all(b"bye").await.expect("write");
    server.shutdown().await.expect("server close");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("clean close");
    assert_eq!(got, b"bye");
    // Client closes: the server sees a clean end too.
    client.shutdown().await.expect("client close");
    let mut buf = [0u8; 8];
    assert_eq!(server.read(&mut buf).await.expect("clean close"), 0);
    assert_eq!(server.read(&mut buf).await.expect("still closed"), 0);

    // An end of the transport without close_notify is not a clean end.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, client) = handshake(a, b).await;
    drop(client);
    let err = server.read(&mut buf).await.expect_err("truncation");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, mut client) = handshake(a, b).await;
    assert_eq!(server.buffered_capacity(), 0, "after the handshake");
    client.write_all(&pattern(20_000)).await.expect("write");
    client.flush().await.expect("flush");
    let mut got = vec![0u8; 20_000];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(server.buffered_capacity(), 0, "after data was read");
    server.write_all(&got).await.expect("write");
    server.flush().await.expect("flush");
    assert_eq!(server.buffered_capacity(), 0, "after data was sent");
    let mut echoed = vec![0u8; 20_000];
    client.read_exact(&mut echoed).await.expect("echo");

    // Part of a record: held only until the rest comes.
    let mut record = Vec::new();
    {
        let conn = &mut client.get_mut().1;
        std::io::Write::write_all(&mut conn.writer(), b"hi").expect("queue");
        conn.write_tls(&mut record).expect("encrypt");
    }
    let raw = &mut client.get_mut().0;
    raw.write_all(&record[..3]).await.expect("raw write");
    let mut buf = [0u8; 8];
    let waited =
        tokio::time::timeout(std::time::Duration::from_millis(50), server.read(&mut buf)).await;
    assert!(waited.is_err(), "read returned before the record was whole");
    assert!(server.buffered_capacity() > 0, "partial record not kept");
    raw.write_all(&record[3..]).await.expect("raw write");
    let n = server.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"hi");
    assert_eq!(server.buffered_capacity(), 0, "after the record completed");
}

/// Counts the writes that reach the transport.
pub(super) struct Counted<IO> {
    pub(super) inner: IO,
    pub(super) writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if polled.is_ready() {
            this.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One transport write per flight: the server's handshake flight, the
/// session ticket after it, and a last reply with its close_notify
/// (`Tunnel::write_all_and_close`).
#[tokio::test]
async fn one_write_per_flight() {
    let (server, client) = contexts();
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let counted = Counted {
        inner: a,
        writes: writes.clone(),
    };
    let (accepted, connected) = tokio::join!(
        server.accept(counted, "client"),
        client.connect(b, "server")
    );
    let (mut server_side, mut client_side) = (
        accepted.expect("server handshake"),
        connected.expect("client handshake"),
    );
    let count = || writes.load(std::sync::atomic::Ordering::Relaxed);
    let handshake_writes = count();
    assert!(
        (1..=2).contains(&handshake_writes),
        "handshake took {handshake_writes} writes"
    );
    client_side.write_all(b"ask").await.expect("write");
    let mut ask = [0u8; 3];
    server_side.read_exact(&mut ask).await.expect("read");
    server_side
        .write_all_and_close(b"answer")
        .await
        .expect("reply and close");
    assert_eq!(count() - handshake_writes, 1, "reply and close_notify");
    let mut answer = Vec::new();
    client_side.read_to_end(&mut answer).await.expect("read");
    assert_eq!(answer, b"answer");
}

#[tokio::test]
async fn key_updates_both_ways() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, mut client) = handshake(a, b).await;
    for round in 0..3u8 {
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("client key update");
        client.write_all(&[round; 100]).await.expect("write");
        client.flush().await.expect("flush");
        let mut got = [0u8; 100];
        server
            .read_exact(&mut got)
            .await
            .expect("read after key update");
        assert_eq!(got, [round; 100]);
        server.write_all(&[round; 50]).await.expect("write");
        server.flush().await.expect("flush");
        let mut back = [0u8; 50];
        client.read_exact(&mut back).await.expect("read");
        assert_eq!(back, [round; 50]);
    }
}

/// A transport that takes at most `max` bytes per write, and after
/// each write says Pending once (waking at once).
struct Grudging<IO> {
    inner: IO,
    max: usize,
    pause: bool,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Grudging<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Grudging<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pause {
            this.pause = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(this.max);
        let polled = Pin::new(&mut this.inner).poll_write(cx, &buf[..n]);
        this.pause = polled.is_ready();
        polled
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A transport that takes a little less than one 64 KiB chunk (its
/// records, 65,624 bytes) per readiness: what it took is dropped from
/// the buffer, which stays within the documented bound (the unsent
/// bytes and one more chunk) instead of growing with all that was sent.
#[tokio::test]
async fn the_send_buffer_drops_what_the_transport_took() {
    const LEN: usize = 16 * 1024 * 1024;
    let (a, b) = tokio::io::duplex(1024 * 1024);
    let transport = Grudging {
        inner: a,
        max: 65_600,
        pause: false,
    };
    let (mut server, mut client) = handshake(transport, b).await;
    let sent = pattern(LEN);
    let send = async {
        let mut peak = 0;
        let mut done = 0;
        while done < LEN {
            done += server.write(&sent[done..]).await.expect("write");
            peak = peak.max(server.buffered_capacity());
        }
        server.flush().await.expect("flush");
        peak
    };
    let receive = async {
        let mut got = vec![0u8; LEN];
        client.read_exact(&mut got).await.expect("read");
        got
    };
    let (peak, got) = tokio::join!(send, receive);
    assert!(got == sent, "received bytes differ");
    assert!(peak < 256 * 1024, "the buffer held {peak} bytes");
}

/// A buffered transport holds what is written until it is flushed: the
/// handshake flight must be flushed before the server waits for the
/// reply, and a fatal alert before the failure is reported. On a
/// paused clock a stall shows as the timeout at once.
#[tokio::test(start_paused = true)]
async fn a_buffered_transport_is_flushed_for_each_flight_and_alert() {
    let limit = std::time::Duration::from_secs(10);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut server, mut client) =
        tokio::time::timeout(limit, handshake(tokio::io::BufWriter::new(a), b))
            .await
            .expect("handshake stalled on an unflushed flight");
    client.write_all(b"ping").await.expect("write");
    client.flush().await.expect("flush");
    let mut ping = [0u8; 4];
    server.read_exact(&mut ping).await.expect("read");
    server.write_all(b"pong").await.expect("write");
    server.flush().await.expect("flush");
    let mut pong = [0u8; 4];
    client.read_exact(&mut pong).await.expect("read");
    assert_eq!(&pong, b"pong");
    // A record that does not decrypt: the server's alert must reach
    // the client while the server still holds the connection.
    let garbage = [&[0x17u8, 0x03, 0x03, 0x00, 0x20][..], &[0xAB; 32][..]].concat();
    client
        .get_mut()
        .0
        .write_all(&garbage)
        .await
        .expect("raw write");
    let mut buf = [0u8; 16];
    assert!(server.read(&mut buf).await.is_err(), "garbage accepted");
    let told = tokio::time::timeout(limit, client.read(&mut buf))
        .await
        .expect("the alert stayed in the server's buffer");
    assert!(told.is_err(), "client saw {told:?}");
}
