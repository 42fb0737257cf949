//! Bad v1 input against a running v1 proxy server: garbage, a wrong
//! version, an oversize announcement, a forged frame, a truncated frame, a
//! replayed frame. Each must end that tunnel and count it as failed, and
//! leave the proxy serving. Input refused before a first frame authenticated
//! never reaches the service at all (no connection is made to it); later
//! input is refused with a reset towards the service, which never sees a
//! forged byte.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink_proxy::nacl_frame::{keys, seal_frame, Keys, NonceSequence, DEFAULT_MAX_DATA_SIZE};
use cipherlink_proxy::{Role, ServiceConfig, Transport};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    _material: Material,
    server: Running,
    service: Recording,
    /// Client -> server keys, to forge well-formed frames.
    keys: Keys,
}

async fn setup() -> Setup {
    let material = Material::new();
    let service = Recording::start(false).await;
    let mut config = material.secure(ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        service.addr.to_string(),
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
        service,
        keys,
    }
}

fn frame(keys: &Keys, nonces: &mut NonceSequence, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let nonce = nonces.next_nonce().unwrap();
    seal_frame(keys, &nonce, plaintext, DEFAULT_MAX_DATA_SIZE, &mut out).unwrap();
    out
}

/// Sends `bytes` (then FIN when `close`) and waits until the proxy has cut
/// the connection: reading ends (reset or EOF), never hangs.
async fn send(setup: &Setup, bytes: &[u8], close: bool) {
    let mut stream = TcpStream::connect(setup.server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the proxy closed the client connection");
}

/// (name, bytes, FIN after them, what the service gets: None = no
/// connection at all, because no frame authenticated).
type Case = (&'static str, Vec<u8>, bool, Option<&'static [u8]>);

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
    let first = frame(&setup.keys, &mut nonces, b"first");
    let cases: Vec<Case> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            None,
        ),
        ("wrong version", wrong_version, false, None),
        ("wrong nonce size", wrong_nonce_size, false, None),
        // The header alone is refused: no body is ever sent or awaited.
        ("oversize", oversize, false, None),
        ("tampered", tampered.clone(), false, None),
        (
            "truncated first frame",
            truncated[..truncated.len() - 5].to_vec(),
            true,
            None,
        ),
        (
            "tampered after an authentic frame",
            [first.clone(), tampered].concat(),
            false,
            Some(b"first"),
        ),
        (
            "truncated after an authentic frame",
            [first.clone(), truncated[..truncated.len() - 5].to_vec()].concat(),
            true,
            Some(b"first"),
        ),
        (
            "replayed",
            [replay.clone(), replay].concat(),
            false,
            Some(b"twice"),
        ),
    ];
    let mut connected = 0;
    for (done, (name, bytes, close, expect)) in cases.into_iter().enumerate() {
        send(&setup, &bytes, close).await;
        setup.server.until_failed(name, done as u64 + 1).await;
        let Some(expect) = expect else { continue };
        connected += 1;
        let (got, end) = setup.service.next().await;
        assert_eq!(
            got, expect,
            "{name}: the service must see only authentic bytes"
        );
        assert!(
            end.is_err(),
            "{name}: the service must see a reset, not a clean end"
        );
    }
    // Still serving: a good frame and a clean FIN arrive whole.
    let good_frame = frame(&setup.keys, &mut NonceSequence::random(), b"still here");
    send(&setup, &good_frame, true).await;
    let (got, end) = setup.service.next().await;
    assert_eq!((got.as_slice(), end), (&b"still here"[..], Ok(())));
    // Nothing that failed to authenticate ever opened a service connection.
    assert_eq!(setup.service.accepted(), connected + 1);
    drop(good);
}
