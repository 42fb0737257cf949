//! What a plain TLS server does with each connection: echo what arrives, or
//! copy it to a sink, with an idle limit (a client that sends nothing, or
//! does not take its echo, for that long is closed). `cipherlink serve`
//! runs it under [`crate::server::TlsServer`]; tests and benchmarks that need
//! an echo server use the same one.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::error::Error;
use crate::tunnel::Tunnel;

/// The most a connection reads at once (one TLS record's worth).
const CHUNK: usize = 16 * 1024;

/// What to do with the bytes a client sends.
#[derive(Debug)]
pub enum Handling<W> {
    /// Send every byte back.
    Echo,
    /// Write them to a shared sink (e.g. stdout), in the order they arrive.
    CopyTo(Arc<Mutex<W>>),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Bytes the client sent.
    pub bytes: u64,
    /// Whether the idle limit ended it (with close_notify) rather than the client.
    pub idle_closed: bool,
    /// Whether the server's stop ended it (with close_notify).
    pub stopped: bool,
}

/// Serves one connection until the client closes or the idle limit ends it;
/// then sends close_notify. The read buffer exists only while data is
/// there, so idle clients hold none. A client that stops taking its echo
/// for `idle` is an error (`TimedOut`), and the connection is dropped.
pub async fn handle<IO, W>(
    tunnel: &mut Tunnel<IO>,
    handling: &Handling<W>,
    idle: Option<Duration>,
) -> Result<Handled, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    handle_until(tunnel, handling, idle, std::future::pending()).await
}

/// [`handle`], and when `stop` resolves (the server is shutting down) the
/// connection ends as an idle one does: with close_notify, so the client
/// sees a clean end rather than a cut.
pub async fn handle_until<IO, W>(
    tunnel: &mut Tunnel<IO>,
    handling: &Handling<W>,
    idle: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Handled, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut handled = Handled {
        bytes: 0,
        idle_closed: false,
        stopped: false,
    };
    let mut peer_closed = false;
    let mut stop = std::pin::pin!(stop);
    loop {
        let read = tokio::select! {
            read = within(idle, tunnel.read_chunk(CHUNK)) => read?,
            () = &mut stop => {
                handled.stopped = true;
                break;
            }
        };
        let Some(chunk) = read else {
            handled.idle_closed = true;
            break;
        };
        if chunk.is_empty() {
            peer_closed = true;
            break;
        }
        handled.bytes += chunk.len() as u64;
        match handling {
            Handling::Echo => {
                if within(idle, tunnel.write_all(&chunk)).await?.is_none() {
                    return Err(idle_error(tunnel.peer(), "echo", idle));
                }
            }
            Handling::CopyTo(sink) => {
                // A sink that fails (stdout closed) does not end the client's session.
                let mut sink = sink.lock().await;
                let _ = sink.write_all(&chunk).await;
                let _ = sink.flush().await;
            }
        }
    }
    match within(idle, tunnel.close()).await {
        Ok(Some(())) => Ok(handled),
        Ok(None) => Err(idle_error(tunnel.peer(), "close", idle)),
        // The client closed first and is gone: our close_notify has nobody
        // to reach, which ends nothing that was not already ended.
        Err(Error::Io { error, .. }) if peer_closed && gone(&error) => Ok(handled),
        Err(err) => Err(err),
    }
}

fn gone(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, NotConnected};
    matches!(error.kind(), BrokenPipe | ConnectionReset | NotConnected)
}

/// `op`'s result, or `None` when it took longer than `limit`.
async fn within<T>(
    limit: Option<Duration>,
    op: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<Option<T>, Error> {
    match limit {
        None => op.await.map(Some),
        Some(limit) => match tokio::time::timeout(limit, op).await {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        },
    }
}

/// A peer that stopped taking data: the connection is dropped.
fn idle_error(peer: &str, during: &'static str, limit: Option<Duration>) -> Error {
    Error::Io {
        peer: peer.to_string(),
        during,
        error: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "idle for {:?} (the idle timeout)",
                limit.unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::contexts;

    #[tokio::test]
    async fn echo_returns_every_byte_then_closes() {
        let (server, client) = contexts();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let mut t = server.accept(a, "client").await.expect("accept");
            handle::<_, tokio::io::Sink>(&mut t, &Handling::Echo, None)
                .await
                .expect("handled")
        };
        let call = async {
            let mut t = client.connect(b, "server").await.expect("connect");
            let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            t.write_all(&data).await.expect("write");
            let mut back = vec![0u8; data.len()];
            t.read_exact(&mut back).await.expect("echo");
            assert!(back == data);
            // Closing drops the transport: the server's close_notify then
            // finds nobody, which is still a clean end.
            t.close().await.expect("close");
        };
        let (handled, ()) = tokio::join!(serve, call);
        assert_eq!(handled.bytes, 100_000);
        assert!(!handled.idle_closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_closed_politely_after_the_limit() {
        let (server, client) = contexts();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let sink = Arc::new(Mutex::new(Vec::<u8>::new()));
        let handling = Handling::CopyTo(sink.clone());
        let serve = async {
            let mut t = server.accept(a, "client").await.expect("accept");
            handle(&mut t, &handling, Some(Duration::from_secs(5)))
                .await
                .expect("handled")
        };
        let call = async {
            let mut t = client.connect(b, "server").await.expect("connect");
            t.write_all(b"hello").await.expect("write");
            // Then silence: the server closes with close_notify.
            assert!(t.read_chunk(16).await.expect("clean close").is_empty());
        };
        let (handled, ()) = tokio::join!(serve, call);
        assert_eq!(
            handled,
            Handled {
                bytes: 5,
                idle_closed: true,
                stopped: false,
            }
        );
        assert_eq!(&*sink.lock().await, b"hello");
    }
}
