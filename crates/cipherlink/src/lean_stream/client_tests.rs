//! The unbuffered client stream against tokio-rustls servers (rustls'
//! buffered connection, a foreign peer to this code) and against our own
//! server stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::tests::{configs, pattern, Counted, Trickle};
use super::{accept, connect};

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

#[tokio::test]
async fn against_a_buffered_server_over_a_trickle() {
    let (server, client) = configs();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (accepted, connected) = tokio::join!(
        TlsAcceptor::from(server).accept(a),
        connect(client, localhost(), Trickle { inner: b, max: 3 }, &[])
    );
    let mut server = accepted.expect("server handshake");
    let (mut client, queued) = connected.expect("client handshake");
    assert_eq!(queued, 0);
    let sent = pattern(40_000);
    client.write_all(&sent).await.expect("write");
    client.flush().await.expect("flush");
    let mut got = vec![0u8; sent.len()];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(got, sent);
    server.write_all(&sent).await.expect("write back");
    server.flush().await.expect("flush");
    let mut back = vec![0u8; sent.len()];
    client.read_exact(&mut back).await.expect("read back");
    assert_eq!(back, sent);
    client.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.expect("clean end");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn an_idle_client_holds_no_buffer() {
    let (server, client) = configs();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (accepted, connected) =
        tokio::join!(accept(server, a), connect(client, localhost(), b, &[]));
    let mut server = accepted.expect("server handshake");
    let (mut client, _) = connected.expect("client handshake");
    assert_eq!(client.buffered_capacity(), 0, "after the handshake");
    client.write_all(&pattern(20_000)).await.expect("write");
    client.flush().await.expect("flush");
    assert_eq!(client.buffered_capacity(), 0, "after data was sent");
    let mut got = vec![0u8; 20_000];
    server.read_exact(&mut got).await.expect("read");
    server.write_all(&got).await.expect("echo");
    server.flush().await.expect("flush");
    let mut echoed = vec![0u8; 20_000];
    client.read_exact(&mut echoed).await.expect("read echo");
    assert_eq!(echoed, got);
    assert_eq!(client.buffered_capacity(), 0, "after data was read");
}

/// The first bytes leave in the same transport write as the client's
/// Finished: the ClientHello, then one write, then nothing until more is
/// written.
#[tokio::test]
async fn the_first_bytes_leave_with_the_finished() {
    let (server, client) = configs();
    let writes = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let counted = Counted {
        inner: b,
        writes: writes.clone(),
    };
    let (accepted, connected) = tokio::join!(
        accept(server, a),
        connect(client, localhost(), counted, b"hello")
    );
    let mut server = accepted.expect("server handshake");
    let (_client, queued) = connected.expect("client handshake");
    assert_eq!(queued, 5);
    assert_eq!(
        writes.load(Ordering::Relaxed),
        2,
        "ClientHello, then Finished with the data"
    );
    let mut got = [0u8; 5];
    server.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"hello");
}

#[tokio::test]
async fn a_server_failure_is_a_tls_error_not_a_hang() {
    let (_, client) = configs();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut peer = a;
    let (_, connected) = tokio::join!(
        async {
            let mut hello = [0u8; 5];
            peer.read_exact(&mut hello).await.expect("ClientHello");
            // Not TLS: an HTTP answer.
            peer.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .expect("write");
            peer
        },
        connect(client, localhost(), b, &[])
    );
    let err = connected.err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}
