//! A scan of failed handshakes logs one warn-level summary per interval,
//! not a line per connection.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink::server::{FailureLog, TlsServer};
use cipherlink::Context;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[tokio::test]
async fn a_scan_of_garbage_makes_one_summary_line() {
    let (tx, mut summaries) = mpsc::unbounded_channel();
    let log = FailureLog::with_sink("TLS handshakes", Duration::from_secs(3600), move |s| {
        let _ = tx.send(s.clone());
    });
    let server = TlsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Context::server(&server_config(&bundle())).unwrap(),
    )
    .await
    .unwrap()
    .failure_log(log);
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let task = server.spawn(|_tunnel| async { Ok(()) });
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        // The server records the failure before it drops the connection,
        // so the end of the stream means it was counted.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest))
            .await
            .expect("server did not close a garbage connection");
    }
    assert_eq!(stats.handshake_failures(), 20);
    let first = summaries.recv().await.unwrap();
    assert_eq!(first.count, 1);
    assert!(first.last.contains("127.0.0.1"), "{first}");
    assert!(first.last.contains("not TLS"), "{first}");
    // The other 19 wait for the end of the interval, an hour away.
    assert!(summaries.try_recv().is_err());
    task.abort();
}
