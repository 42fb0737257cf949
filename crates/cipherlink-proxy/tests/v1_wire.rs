//! Bad v1 input against a running v1 proxy server: garbage, a wrong
//! version, an oversize announcement, a truncated frame, a replayed frame.
//! Each must end that tunnel (reset towards the service, which never sees
//! a forged byte), count it as failed, and leave the proxy serving.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink_proxy::v1::{keys, seal_frame, Keys, NonceSequence, DEFAULT_MAX_DATA_SIZE};
use cipherlink_proxy::{Role, ServiceConfig, Transport};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the service behind the proxy saw on one connection.
type Seen = (Vec<u8>, Result<(), std::io::ErrorKind>);

/// A service that reports, per connection, the bytes it got and how the
/// stream ended (clean EOF or an error such as a reset).
async fn recording_service() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(err) => break Err(err.kind()),
                    }
                };
                let _ = tx.send((got, end));
            });
        }
    });
    (addr, rx)
}

struct Setup {
    _material: Material,
    server: Running,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Client -> server keys, to forge well-formed frames.
    keys: Keys,
}

async fn setup() -> Setup {
    let material = Material::new();
    let (backend, seen) = recording_service().await;
    let mut config = material.secure(ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        backend.to_string(),
        Transport::V1,
    ));
    if let Some(v1) = &mut config.v1 {
        v1.max_frame_size = 1 << 20;
    }
    let server = Running::start("v1", config).await;
    let keys = Keys::new(
        &keys::read_secret_key(&material.path("client.key")).unwrap(),
        &keys::read_public_key(&material.path("server.pub")).unwrap(),
    );
    Setup {
        _material: material,
        server,
        seen,
        keys,
    }
}

fn frame(keys: &Keys, nonces: &mut NonceSequence, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let nonce = nonces.next_nonce().unwrap();
    seal_frame(keys, &nonce, plaintext, DEFAULT_MAX_DATA_SIZE, &mut out).unwrap();
    out
}

/// Sends `bytes` (then FIN when `close`), and returns what the service saw.
async fn send(setup: &mut Setup, bytes: &[u8], close: bool) -> Seen {
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let seen = tokio::time::timeout(DEADLINE, setup.seen.recv())
        .await
        .expect("the service connection ended")
        .expect("service running");
    // Our side is cut as well: reading ends (reset or EOF), never hangs.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the proxy closed the client connection");
    seen
}

#[tokio::test]
async fn bad_frames_are_refused_and_the_proxy_keeps_serving() {
    let mut setup = setup().await;
    let mut nonces = NonceSequence::random();
    let good = frame(&setup.keys, &mut nonces, b"authentic");
    let mut oversize = vec![1, 0, 0, 0, 24];
    oversize.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    let mut wrong_nonce_size = good.clone();
    wrong_nonce_size[4] = 12;
    let mut tampered = frame(&setup.keys, &mut nonces, b"tampered");
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let truncated = frame(&setup.keys, &mut nonces, b"cut short");
    let replay = frame(&setup.keys, &mut nonces, b"twice");
    let cases: Vec<(&str, Vec<u8>, bool, &[u8])> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            b"",
        ),
        ("wrong version", wrong_version, false, b""),
        ("wrong nonce size", wrong_nonce_size, false, b""),
        // The header alone is refused: no body is ever sent or awaited.
        ("oversize", oversize, false, b""),
        ("tampered", tampered, false, b""),
        (
            "truncated",
            truncated[..truncated.len() - 5].to_vec(),
            true,
            b"",
        ),
        (
            "replayed",
            [replay.clone(), replay].concat(),
            false,
            b"twice",
        ),
    ];
    for (done, (name, bytes, close, expect)) in cases.into_iter().enumerate() {
        let failed = done as u64 + 1;
        let (got, end) = send(&mut setup, &bytes, close).await;
        assert_eq!(
            got, expect,
            "{name}: the service must see only authentic bytes"
        );
        assert!(
            end.is_err(),
            "{name}: the service must see a reset, not a clean end"
        );
        setup.server.until_failed(name, failed).await;
    }
    // Still serving: a good frame and a clean FIN arrive whole.
    let good_frame = frame(&setup.keys, &mut NonceSequence::random(), b"still here");
    let (got, end) = send(&mut setup, &good_frame, true).await;
    assert_eq!((got.as_slice(), end), (&b"still here"[..], Ok(())));
    drop(good);
}
