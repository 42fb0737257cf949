//! The datagram mode on tokio over loopback UDP: a session opens, carries
//! datagrams both ways, and ends for both sides when the client closes it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cipherlink_link::dgram::driver::{connect, DgramListener};
use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_link::LinkParams;
use common::World;

#[tokio::test]
async fn echo_over_loopback_then_close() {
    let w = World::new(LinkParams::default());
    let mut listener = listen(&w).await;
    let addr = listener.local_addr().to_string();
    let server = tokio::spawn(async move {
        let mut a = listener.accept().await.unwrap();
        assert_eq!(a.name, "alice");
        let mut n = 0;
        while let Some(d) = a.session.reader.recv().await.unwrap() {
            a.session.writer.send(&d).await.unwrap();
            n += 1;
        }
        n
    });
    let mut s = connect(&addr, w.client_cfg(&w.alice)).await.unwrap();
    let mut got = 0;
    for i in 0..100u32 {
        let msg = [i.to_be_bytes().as_slice(), &[7u8; 1200]].concat();
        s.writer.send(&msg).await.unwrap();
        // Loopback loses nothing at this pace; wait for each echo.
        let back = tokio::time::timeout(Duration::from_secs(5), s.reader.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
        got += 1;
    }
    assert_eq!(got, 100);
    s.writer.close().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 100);
}

#[tokio::test]
async fn a_wrong_server_key_times_out() {
    let w = World::new(LinkParams {
        handshake_timeout: Duration::from_millis(1500),
        ..LinkParams::default()
    });
    let _listener = listen(&w).await;
    let addr = _listener.local_addr().to_string();
    let mut cfg = w.client_cfg(&w.alice);
    cfg.server_key[0] ^= 1;
    let e = connect(&addr, cfg).await.unwrap_err();
    assert!(matches!(e, cipherlink_link::Error::HandshakeTimeout), "{e}");
}

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// A subscriber writing warnings and worse here.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish()
    }
}

/// A listener on a loopback port for `w`'s endpoint, default options.
async fn listen(w: &World) -> DgramListener {
    DgramListener::bind(
        "127.0.0.1:0",
        w.endpoint.clone(),
        DgramServerOptions::default(),
    )
    .await
    .unwrap()
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

/// Any holder of `S` can make a refusal per handshake: the listener logs
/// them as the stream mode does (§3 step 6), ten at once and then one a
/// second, not a line each.
#[tokio::test]
async fn refusals_are_logged_at_a_bounded_rate() {
    let lines = Lines::default();
    let subscriber = lines.subscriber();
    // The listener's task runs on this (current-thread) runtime's thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let w = World::new(LinkParams::default());
    let listener = listen(&w).await;
    let addr = listener.local_addr().to_string();
    for _ in 0..30 {
        let e = connect(&addr, w.client_cfg(&w.mallory)).await.unwrap_err();
        assert!(matches!(e, cipherlink_link::Error::Refused), "{e}");
    }
    // Let the listener's task log the last refusal.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let refused = text.lines().filter(|l| l.contains("refused")).count();
    // Ten at once, and one more per second the test may have taken.
    assert!((1..=13).contains(&refused), "{refused} lines:\n{text}");
}

/// An application that takes no sessions: past the accept queue of 128,
/// each new session is ended at once with an authenticated close saying
/// the server is busy (code 5, as the stream listener's), which the
/// client reads as an error, and the listener's lines about it are
/// rate-limited (any valid client can open sessions as fast as it likes).
#[tokio::test]
async fn past_the_accept_queue_sessions_end_as_server_busy() {
    let lines = Lines::default();
    let subscriber = lines.subscriber();
    let _guard = tracing::subscriber::set_default(subscriber);
    let w = World::new(LinkParams::default());
    let listener = listen(&w).await;
    let addr = listener.local_addr().to_string();
    let mut queued = Vec::new();
    for _ in 0..128 {
        queued.push(connect(&addr, w.client_cfg(&w.alice)).await.unwrap());
    }
    for _ in 0..30 {
        let mut s = connect(&addr, w.client_cfg(&w.alice)).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), s.reader.recv())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                &e,
                cipherlink_link::Error::PeerClosed {
                    code: cipherlink_link::CloseCode::Aborted,
                    reason,
                } if reason == "server busy"
            ),
            "{e:?}"
        );
    }
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let busy = text.lines().filter(|l| l.contains("127.0.0.1")).count();
    assert!((1..=13).contains(&busy), "{busy} lines:\n{text}");
    drop(queued);
}
