//! The mux over an in-memory connection: concurrent streams, a stalled
//! stream, half-close, a lost connection, refusals and open timeouts.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const LONG: Duration = Duration::from_secs(30);

fn pair(server_limits: Limits) -> (MuxConn, MuxConn) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        MuxConn::start(a, Side::Client, Limits::default()),
        MuxConn::start(b, Side::Server, server_limits),
    )
}

/// Echoes every accepted stream (half-close included).
fn echo(server: MuxConn) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(stream) = server.accept().await {
            stream.accept();
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    })
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize * 31 + i * 7 + i / 251) as u8)
        .collect()
}

async fn round_trip(stream: MuxStream, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await?;
    let _w = writer.await.unwrap()?;
    Ok(back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_at_once_each_byte_checked() {
    let (client, server) = pair(Limits::default());
    let _echo = echo(server);
    let client = std::sync::Arc::new(client);
    let mut tasks = Vec::new();
    for seed in 0..100u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(seed, 1 + (seed as usize * 7919) % 700_000);
            let stream = client.open(LONG).await.unwrap();
            let back = round_trip(stream, data.clone()).await.unwrap();
            assert!(
                back == data,
                "stream {seed}: {} of {}",
                back.len(),
                data.len()
            );
        }));
    }
    for task in tasks {
        tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_one_window_and_the_others_move() {
    let (client, server) = pair(Limits::default());
    let stalled_server = std::sync::Arc::new(tokio::sync::Mutex::new(None));
    let hold = stalled_server.clone();
    tokio::spawn(async move {
        // The first stream is taken and never read; the rest are echoed.
        let first = server.accept().await.unwrap();
        first.accept();
        *hold.lock().await = Some(first);
        echo(server).await.unwrap();
    });
    let mut stalled = client.open(LONG).await.unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![5u8; 8192];
        loop {
            let n = stalled.write(&chunk).await?;
            counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
        #[allow(unreachable_code)]
        Ok::<_, std::io::Error>(())
    });
    for seed in 0..20 {
        let stream = client.open(LONG).await.unwrap();
        let data = pattern(seed, 300_000);
        let back = tokio::time::timeout(LONG, round_trip(stream, data.clone()))
            .await
            .expect("a stream moved past the stalled one")
            .unwrap();
        assert!(back == data);
    }
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent > 0 && sent <= session::DEFAULT_WINDOW as usize,
        "the stalled stream sent {sent} bytes past its window"
    );
    assert!(!writer.is_finished(), "the stalled writer waits, not fails");
    writer.abort();
}

#[tokio::test]
async fn half_close_passes_and_the_other_direction_keeps_flowing() {
    let (client, server) = pair(Limits::default());
    tokio::spawn(async move {
        let mut stream = server.accept().await.unwrap();
        stream.accept();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        // After the client's FIN, the reply still goes back.
        let reply = format!("got {} bytes after EOF", got.len());
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        std::future::pending::<()>().await;
    });
    let stream = client.open(LONG).await.unwrap();
    let back = round_trip(stream, vec![1u8; 54_321]).await.unwrap();
    assert_eq!(back, b"got 54321 bytes after EOF");
}

#[tokio::test]
async fn a_lost_connection_fails_its_streams_not_ends_them() {
    let (client, server) = pair(Limits::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = server.accept().await.unwrap();
        stream.accept();
        stream.write_all(b"partial").await.unwrap();
        let _ = rx.await;
        drop(stream);
        drop(server);
    });
    let mut stream = client.open(LONG).await.unwrap();
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).await.unwrap();
    tx.send(()).unwrap();
    let mut rest = Vec::new();
    let end = stream.read_to_end(&mut rest).await;
    assert!(
        end.is_err(),
        "a lost connection read as a clean end: {end:?}"
    );
    assert!(client.is_spent() || client.failure().is_none());
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_errors_every_stream() {
    let (client, server) = pair(Limits::default());
    let _echo = echo(server);
    let mut a = client.open(LONG).await.unwrap();
    a.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    a.read_exact(&mut one).await.unwrap();
    let session = a.session_for_tests();
    drop(client);
    let err = a.read(&mut one).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err}");
    assert!(super::driver::lock(&session).is_spent());
}

#[tokio::test]
async fn streams_past_the_servers_limit_are_refused() {
    let (client, server) = pair(Limits {
        max_streams: 2,
        ..Limits::default()
    });
    let _echo = echo(server);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = client.open(LONG).await.unwrap();
        s.write_all(b"a").await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        held.push(s);
    }
    let mut third = client.open(LONG).await.unwrap();
    let mut buf = [0u8; 1];
    let err = third.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(err.to_string().contains("limit"), "{err}");
    drop(third);
    // A slot freed on the server is usable again.
    held.pop();
    let mut s = loop {
        let s = client.open(LONG).await.unwrap();
        // The server may not have seen the drop yet: retry once refused.
        let mut s = s;
        s.write_all(b"b").await.unwrap();
        let mut one = [0u8; 1];
        match s.read_exact(&mut one).await {
            Ok(_) => break s,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("{e}"),
        }
    };
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_open_the_server_never_answers_times_out() {
    let (a, b) = tokio::io::duplex(1024);
    let client = MuxConn::start(a, Side::Client, Limits::default());
    let server = MuxConn::start(b, Side::Server, Limits::default());
    let _hold = tokio::spawn(async move {
        let _stream = server.accept().await;
        std::future::pending::<()>().await;
    });
    let mut stream = client.open(Duration::from_millis(200)).await.unwrap();
    let mut buf = [0u8; 1];
    let err = tokio::time::timeout(LONG, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[tokio::test]
async fn a_peer_sending_past_its_credit_loses_the_connection() {
    use bytes::{Bytes, BytesMut};
    let (mut raw, b) = tokio::io::duplex(1 << 20);
    let server = MuxConn::start(b, Side::Server, Limits::default());
    let mut wire = BytesMut::new();
    Frame::Open(1).encode(&mut wire);
    let chunk = Bytes::from(vec![0u8; frame::MAX_DATA]);
    for _ in 0..(session::DEFAULT_WINDOW as usize / frame::MAX_DATA + 1) {
        Frame::Data(1, chunk.clone()).encode(&mut wire);
    }
    raw.write_all(&wire).await.unwrap();
    let _stream = server.accept().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(LONG, raw.read_to_end(&mut rest))
        .await
        .unwrap();
    let failure = server.failure().expect("the connection ended");
    assert!(failure.to_string().contains("credit"), "{failure}");
}

/// Counts the clones of a waker that are alive.
struct CountingWaker;

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// A writer polled again and again while the output queue is full keeps
/// one waker, not one per poll (each poll of a busy relay used to add a
/// clone: memory without bound while the peer does not read).
#[test]
fn a_writer_blocked_on_the_output_queue_keeps_one_waker() {
    let counter = std::sync::Arc::new(CountingWaker);
    let waker = std::task::Waker::from(counter.clone());
    let cx = std::task::Context::from_waker(&waker);
    let mut session = session::Session::new(Side::Client, Limits::default());
    let std::task::Poll::Ready(Ok(id)) = session.poll_open(&cx) else {
        panic!("no stream")
    };
    let data = vec![0u8; frame::MAX_DATA];
    let mut blocked = 0;
    for _ in 0..10_000 {
        if session.poll_write(id, &cx, &data).is_pending() {
            blocked += 1;
        }
    }
    assert!(blocked > 9_000, "the queue never filled");
    assert!(
        std::sync::Arc::strong_count(&counter) <= 3,
        "{} wakers held",
        std::sync::Arc::strong_count(&counter)
    );
}

/// Openers waiting for a slot are remembered once each, and never more
/// than a bounded number in all.
#[test]
fn openers_waiting_for_a_slot_are_bounded() {
    let counter = std::sync::Arc::new(CountingWaker);
    let waker = std::task::Waker::from(counter.clone());
    let cx = std::task::Context::from_waker(&waker);
    let limits = Limits {
        max_streams: 1,
        ..Limits::default()
    };
    let mut session = session::Session::new(Side::Client, limits);
    assert!(session.poll_open(&cx).is_ready());
    for _ in 0..10_000 {
        assert!(session.poll_open(&cx).is_pending());
    }
    assert!(std::sync::Arc::strong_count(&counter) <= 3);
    // Distinct tasks (each its own waker) are bounded too.
    let others: Vec<_> = (0..10_000)
        .map(|_| std::sync::Arc::new(CountingWaker))
        .collect();
    for other in &others {
        let waker = std::task::Waker::from(other.clone());
        assert!(session
            .poll_open(&std::task::Context::from_waker(&waker))
            .is_pending());
    }
    let held: usize = others
        .iter()
        .map(|o| std::sync::Arc::strong_count(o) - 1)
        .sum();
    assert!(held <= 4096, "{held} opener wakers held");
}

/// A peer that stops reading the connection loses it after the write
/// stall limit, instead of pinning its streams for as long as it likes.
#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_loses_the_connection() {
    use bytes::BytesMut;
    let (mut raw, b) = tokio::io::duplex(1024);
    // The keepalive would declare this silent peer gone first; this is
    // about the write stall alone.
    let limits = Limits {
        keepalive: KeepaliveConfig {
            periodic: false,
            ..KeepaliveConfig::default()
        },
        ..Limits::default()
    };
    let server = MuxConn::start(b, Side::Server, limits);
    let mut wire = BytesMut::new();
    Frame::Open(1).encode(&mut wire);
    raw.write_all(&wire).await.unwrap();
    let stream = server.accept().await.unwrap();
    stream.accept();
    let (_r, mut w) = tokio::io::split(stream);
    // More than the duplex holds; the peer (`raw`) never reads.
    let writing = tokio::spawn(async move { w.write_all(&vec![7u8; 200 * 1024]).await });
    tokio::time::sleep(driver::WRITE_STALL + Duration::from_secs(5)).await;
    let failure = server
        .failure()
        .expect("the connection was not declared lost");
    assert!(failure.to_string().contains("read nothing"), "{failure}");
    let _ = tokio::time::timeout(LONG, writing).await;
    drop(raw);
}

/// Credit is never granted past the window: a peer that does so breaks
/// the protocol.
#[test]
fn credit_past_the_window_is_a_violation() {
    let waker = std::task::Waker::noop();
    let cx = std::task::Context::from_waker(waker);
    let mut session = session::Session::new(Side::Client, Limits::default());
    let std::task::Poll::Ready(Ok(id)) = session.poll_open(&cx) else {
        panic!("no stream")
    };
    let error = session
        .receive(Frame::Window(id, session::DEFAULT_WINDOW))
        .expect_err("credit of twice the window was taken");
    assert!(error.to_string().contains("credit"), "{error}");
}

/// A connection whose slots stay full fails the open once, after the
/// timeout, as a full connection (not a lost one to retry on).
#[tokio::test(start_paused = true)]
async fn an_open_with_no_free_slot_fails_once_with_its_own_error() {
    let limits = Limits {
        max_streams: 1,
        ..Limits::default()
    };
    let (a, _b) = tokio::io::duplex(64 * 1024);
    let client = MuxConn::start(a, Side::Client, limits);
    let _held = client.open(LONG).await.unwrap();
    let error = client.open(Duration::from_secs(3)).await.unwrap_err();
    assert!(matches!(error, MuxError::NoSlot(_)), "{error}");
}

/// A stream the client reset before the server took it reads as dead, so
/// the server does not connect its service for it.
#[test]
fn a_stream_reset_before_it_is_taken_is_dead() {
    let mut session = session::Session::new(Side::Server, Limits::default());
    session.receive(Frame::Open(1)).unwrap();
    assert!(session.dead(1).is_none());
    session.receive(Frame::Reset(1, Reason::Aborted)).unwrap();
    assert!(session.dead(1).is_some());
}
