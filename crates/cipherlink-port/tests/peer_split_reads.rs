//! What `chaos run` found in SeasideVPN's own PORT code: its reader takes
//! each part of a message (header, data, tail) with a single `recv`, so a
//! message that TCP delivers in two pieces (any message longer than a
//! segment, or one cut by Nagle's coalescing) ends the session. Shown here
//! against its PortListener (the echo of `seaside_peer.py listen`): the
//! same message is echoed when it arrives whole, and the session ends when
//! its data arrives in two writes. Our decoder (`decode.rs`) reads across
//! any split; docs/port-wire.md states the difference.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use cipherlink_port::decode::{Frame, MessageDecoder, ServerInitDecoder};
use cipherlink_port::wire::{self, ClientInitRandom, MESSAGE_HEADER_LEN};
use cipherlink_port::{ServerKey, SessionKey};
use cipherlink_test_support::process::Proc;
use cipherlink_test_support::{peer, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// Their listener with `key`; the port it listens on.
fn their_listener(key: &ServerKey) -> Option<(Proc, u16)> {
    let python = peer!(Peer::PythonSeaside)?;
    let src = peer!(Peer::SeasideSrc)?;
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-W")
        .arg("ignore")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peer/seaside_peer.py"
        ))
        .arg("listen")
        .arg(hex::encode(&key.private_bytes()[..]))
        .env("PYTHONPATH", src)
        .env("SEASIDE_LOG_LEVEL", "ERROR");
    let mut proc = Proc::spawn("seaside listen", cmd);
    let line = proc.wait_for(false, "listening ");
    let port = line.trim().rsplit(' ').next()?.parse().ok()?;
    Some((proc, port))
}

/// The two-connection dance by hand: the data connection and its key.
async fn dance(key: &ServerKey, port: u16) -> (TcpStream, SessionKey) {
    let random = ClientInitRandom {
        ephemeral: zeroize::Zeroizing::new([7u8; 32]),
        n: [1, 2],
        header_nonce: [3u8; 24],
        token_nonce: [4u8; 24],
        tail: vec![5u8; 16],
    };
    let (session, init) = wire::client_init(key.public(), b"split-token", 0, 0, &random).unwrap();
    let mut first = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    first.write_all(&init).await.unwrap();
    let mut decoder = ServerInitDecoder::new(session.clone());
    let mut buf = [0u8; 1024];
    let user_port = loop {
        let n = timeout(LIMIT, first.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "their listener closed the INIT connection");
        let mut input = &buf[..n];
        if let Some(id) = decoder.decode(&mut input).unwrap() {
            break id;
        }
    };
    let data = TcpStream::connect(("127.0.0.1", user_port)).await.unwrap();
    data.set_nodelay(true).unwrap();
    (data, session)
}

/// The echo of one message, or `None` when their side ended the session.
async fn echo_of(data: &mut TcpStream, session: &SessionKey) -> Option<Vec<u8>> {
    let mut decoder = MessageDecoder::new(session.clone());
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(LIMIT, data.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        let mut input = &buf[..n];
        match decoder.decode(&mut input) {
            Ok(Some(Frame::Data(d))) => return Some(d),
            Ok(Some(Frame::Term)) | Err(_) => return None,
            Ok(None) => {}
        }
    }
}

fn message(session: &SessionKey, payload: &[u8]) -> Vec<u8> {
    wire::data(session, payload, &[8u8; 24], &[9u8; 24], &[0u8; 32]).unwrap()
}

#[tokio::test]
async fn their_reader_takes_a_whole_message_and_drops_a_split_one() {
    let key = ServerKey::generate(&mut rand::rng());
    let Some((_listener, port)) = their_listener(&key) else {
        return;
    };
    let payload = vec![0x5a; 1000];

    // Control: the message in one write comes back.
    let (mut data, session) = dance(&key, port).await;
    data.write_all(&message(&session, &payload)).await.unwrap();
    assert_eq!(echo_of(&mut data, &session).await, Some(payload.clone()));

    // The same message with its data in two writes, 300 ms apart.
    let (mut data, session) = dance(&key, port).await;
    let m = message(&session, &payload);
    let cut = MESSAGE_HEADER_LEN + 400;
    data.write_all(&m[..cut]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Their side may already have closed: the second write may fail.
    let _ = data.write_all(&m[cut..]).await;
    assert_eq!(
        echo_of(&mut data, &session).await,
        None,
        "SeasideVPN's PortListener now reads a split message whole: update docs/port-wire.md"
    );
}
