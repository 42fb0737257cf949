//! The plain-TCP baseline server of `bench idle`: an echo server shaped
//! like `cipherlink serve --echo` without TLS (one task per connection, an
//! idle timeout, a read buffer only while there is data), so the difference
//! between the two is what TLS costs an idle connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The most read at once, as `serve`'s echo.
const CHUNK: usize = 16 * 1024;

/// Accepts and echoes until the listener fails; at most `max_connections`
/// open at once (more wait in the accept queue), each closed after
/// `idle` without data.
pub async fn serve(listener: TcpListener, max_connections: usize, idle: Duration) {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = echo(stream, idle).await;
                });
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn echo(mut stream: TcpStream, idle: Duration) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        match tokio::time::timeout(idle, stream.readable()).await {
            Ok(ready) => ready?,
            Err(_) => return stream.shutdown().await,
        }
        let mut buf = Vec::with_capacity(CHUNK);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return stream.shutdown().await,
            Ok(_) => match tokio::time::timeout(idle, stream.write_all(&buf)).await {
                Ok(written) => written?,
                // A peer that does not take its echo is dropped, as serve does.
                Err(_) => return Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
