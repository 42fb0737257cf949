//! The client's pool of mux connections over in-memory connections: spent
//! connections linger for their streams (and no more than MAX_SPENT of
//! them), a silent peer is found by the keepalive or by a probe before an
//! open, and the next tunnel gets a fresh connection.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::*;
use crate::mux::KeepaliveConfig;

const LONG: Duration = Duration::from_secs(30);

/// Echoes every stream of a server connection.
async fn echo(server: MuxConn) {
    while let Some(stream) = server.accept().await {
        stream.accept();
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(stream);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// Copies `from` to `to` until `frozen` is set; then it holds both ends
/// and forwards nothing more, as a peer that vanished (or a NAT that
/// forgot the connection) does: no FIN, no RST.
async fn forward<R, W>(mut from: R, mut to: W, frozen: Arc<AtomicBool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Dials in-memory connections to echoing servers, each through a middle
/// that the test can freeze, and counts them.
struct Dialer {
    limits: Limits,
    dials: Arc<AtomicUsize>,
    /// The middle of the connection dialled last.
    frozen: std::sync::Mutex<Arc<AtomicBool>>,
}

impl Dialer {
    fn new(limits: Limits) -> Dialer {
        Dialer {
            limits,
            dials: Arc::new(AtomicUsize::new(0)),
            frozen: std::sync::Mutex::new(Arc::new(AtomicBool::new(false))),
        }
    }

    async fn dial(&self) -> Result<MuxConn, TunnelError> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let frozen = Arc::new(AtomicBool::new(false));
        *self.frozen.lock().unwrap() = frozen.clone();
        let (client, near): (DuplexStream, DuplexStream) = tokio::io::duplex(64 * 1024);
        let (far, server) = tokio::io::duplex(64 * 1024);
        let (near_r, near_w) = tokio::io::split(near);
        let (far_r, far_w) = tokio::io::split(far);
        tokio::spawn(forward(near_r, far_w, frozen.clone()));
        tokio::spawn(forward(far_r, near_w, frozen));
        tokio::spawn(echo(MuxConn::start(server, Side::Server, self.limits)));
        Ok(MuxConn::start(client, Side::Client, self.limits))
    }

    fn dials(&self) -> usize {
        self.dials.load(Ordering::SeqCst)
    }

    /// The last connection's peer vanishes silently.
    fn freeze(&self) {
        self.frozen.lock().unwrap().store(true, Ordering::SeqCst);
    }
}

async fn open(pool: &Pool, dialer: &Dialer) -> MuxStream {
    pool.open("test-server:1", LONG, || dialer.dial())
        .await
        .unwrap()
}

async fn echoes(stream: &mut MuxStream, what: &[u8]) -> std::io::Result<()> {
    stream.write_all(what).await?;
    let mut back = vec![0u8; what.len()];
    stream.read_exact(&mut back).await?;
    assert_eq!(back, what);
    Ok(())
}

fn limits(last_stream_id: u32) -> Limits {
    Limits {
        last_stream_id,
        ..Limits::default()
    }
}

/// Stream ids running out used to drop the connection with its streams
/// still on it: a long-lived tunnel died because others were opened.
#[tokio::test]
async fn a_spent_connection_keeps_its_streams_until_they_end_then_closes() {
    let dialer = Dialer::new(limits(2));
    let pool = Pool::default();
    let mut long_lived = open(&pool, &dialer).await;
    echoes(&mut long_lived, b"first").await.unwrap();
    let mut second = open(&pool, &dialer).await;
    echoes(&mut second, b"second").await.unwrap();
    drop(second);
    // Ids are spent: the next stream goes to a new connection.
    let mut third = open(&pool, &dialer).await;
    echoes(&mut third, b"third").await.unwrap();
    assert_eq!(dialer.dials(), 2);
    for round in 0..20 {
        let what = format!("still flowing {round}");
        tokio::time::timeout(LONG, echoes(&mut long_lived, what.as_bytes()))
            .await
            .unwrap()
            .expect("the stream on the spent connection died");
    }
    assert_eq!(dialer.dials(), 2);
    // Its last stream ended: the spent connection closes on its own.
    let spent = pool.conns.lock().await.spent.front().cloned().unwrap();
    assert_eq!(spent.streams(), 1);
    long_lived.shutdown().await.unwrap();
    let mut rest = Vec::new();
    long_lived.read_to_end(&mut rest).await.unwrap();
    drop(long_lived);
    tokio::time::timeout(LONG, async {
        while !spent.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the spent connection did not close after its last stream");
    echoes(&mut third, b"the new one is untouched")
        .await
        .unwrap();
}

/// At most MAX_SPENT spent connections linger; past that the oldest goes,
/// failing the streams it still carries, and only those.
#[tokio::test]
async fn at_most_max_spent_connections_linger() {
    let dialer = Dialer::new(limits(1));
    let pool = Pool::default();
    let mut streams = Vec::new();
    for _ in 0..MAX_SPENT + 2 {
        let mut stream = open(&pool, &dialer).await;
        echoes(&mut stream, b"x").await.unwrap();
        streams.push(stream);
    }
    assert_eq!(dialer.dials(), MAX_SPENT + 2);
    assert_eq!(pool.conns.lock().await.spent.len(), MAX_SPENT);
    let mut oldest = streams.remove(0);
    let error = tokio::time::timeout(LONG, echoes(&mut oldest, b"y"))
        .await
        .unwrap()
        .expect_err("the oldest spent connection was not closed");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted,
        "{error}"
    );
    for stream in &mut streams {
        echoes(stream, b"the others live").await.unwrap();
    }
}

fn quick_keepalive(periodic: bool) -> Limits {
    Limits {
        keepalive: KeepaliveConfig {
            periodic,
            min_idle: Duration::from_secs(15),
            max_idle: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(5),
            retries: 3,
            probe_after: Duration::from_secs(5),
        },
        ..Limits::default()
    }
}

/// An idle connection whose peer vanished without a FIN is declared gone
/// within the keepalive's bound (virtual time), its streams fail with that
/// reason, and the next tunnel works on a new connection.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_detected_by_the_keepalive_and_replaced() {
    let limits = quick_keepalive(true);
    let dialer = Dialer::new(limits);
    let pool = Pool::default();
    let mut idle = open(&pool, &dialer).await;
    echoes(&mut idle, b"hello").await.unwrap();
    let conn = pool.conns.lock().await.current.clone().unwrap();
    // Idle and alive: pings are answered, nothing fails.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(conn.failure().is_none(), "{:?}", conn.failure());
    echoes(&mut idle, b"still here").await.unwrap();
    dialer.freeze();
    let frozen_at = tokio::time::Instant::now();
    let mut buf = [0u8; 1];
    let error = tokio::time::timeout(LONG * 10, idle.read(&mut buf))
        .await
        .expect("the idle stream on a dead connection hung")
        .unwrap_err();
    let detected = frozen_at.elapsed();
    assert!(
        matches!(conn.failure(), Some(MuxError::Silent { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("keepalive"), "{error}");
    let bound = limits.keepalive.detection_bound();
    assert!(
        detected <= bound,
        "detected after {detected:?}, bound {bound:?}"
    );
    let mut next = open(&pool, &dialer).await;
    echoes(&mut next, b"on a new connection").await.unwrap();
    assert_eq!(dialer.dials(), 2);
}

/// A tunnel opened on a connection that has been quiet (no periodic pings,
/// as over a link) probes it first; the peer being gone, the tunnel goes
/// to a fresh connection within one reply timeout instead of hanging.
#[tokio::test(start_paused = true)]
async fn an_open_on_a_silent_connection_fails_over_after_one_probe() {
    let limits = quick_keepalive(false);
    let dialer = Dialer::new(limits);
    let pool = Pool::default();
    let mut first = open(&pool, &dialer).await;
    echoes(&mut first, b"hello").await.unwrap();
    drop(first);
    // Quiet past probe_after, alive: the probe is answered, same connection.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut second = open(&pool, &dialer).await;
    echoes(&mut second, b"alive").await.unwrap();
    drop(second);
    assert_eq!(dialer.dials(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    dialer.freeze();
    let asked_at = tokio::time::Instant::now();
    let mut third = tokio::time::timeout(LONG, open(&pool, &dialer))
        .await
        .expect("the open on a dead connection hung");
    let took = asked_at.elapsed();
    assert!(
        took <= limits.keepalive.reply_timeout + Duration::from_secs(1),
        "failed over after {took:?}"
    );
    echoes(&mut third, b"on a new connection").await.unwrap();
    assert_eq!(dialer.dials(), 2);
}
