//! A stored message keeps alive only what it was charged for (issue 22,
//! red-team review): the decoder shares a large `bytes` value out of the
//! request body instead of copying it, so the body must be a buffer of its
//! own. A body that arrived as one chunk used to be a slice of hyper's read
//! buffer (up to ~400 KiB), and a 4 KiB value shared from it kept that
//! whole buffer alive: 300 such messages pipelined in one write, with a
//! large refused request behind them, held some 87 times their charge.
//! dhat (this binary's allocator) measures the live heap they hold.
//!
//! One test, so that nothing else allocates while dhat counts.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_pool::codec::DecodeLimits;
use cipherlink_pool::{envelope, MessageId, PeerConfig, Pool, PoolConfig, Value, WireVersion};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MESSAGES: usize = 300;
/// The mailbox's charge per message besides the value (`MESSAGE_OVERHEAD`).
const SLOT: usize = 384;

fn post(port: u16, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nCookie: server_port={port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn live_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

#[tokio::test(flavor = "current_thread")]
async fn a_shared_payload_keeps_only_its_own_body_alive() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let mut cfg = PoolConfig::new("Bob", loopback(0))
        .wire(WireVersion::V5)
        .peer(PeerConfig::new("Alice", "127.0.0.1", alice_port));
    cfg.limits.recv_timeout = Some(WAIT);
    let bob = Pool::start(cfg).await.unwrap();

    let mut messages = Vec::new();
    let mut charged = 0;
    for i in 0..MESSAGES {
        let id = MessageId::from(format!("m{i}").as_str());
        let body = envelope::encode(WireVersion::V5, &id, &Value::from(vec![7u8; 4096])).unwrap();
        let decoded = envelope::decode_received(
            WireVersion::V5,
            &bytes::Bytes::from(body.clone()),
            DecodeLimits::default(),
        )
        .unwrap();
        charged += decoded.memory + SLOT + 2 * format!("m{i}").len();
        messages.push(post(alice_port, &body));
    }
    // After each message, in the same write, a large request that is read
    // whole and refused (not msgpack): hyper reads in its largest chunks,
    // and the message before it lands in one.
    let filler = post(alice_port, &vec![0xc1u8; 400_000]);

    let mut client = TcpStream::connect(bob.local_addr()).await.unwrap();
    let before = live_bytes();
    let (mut read_half, mut write_half) = client.split();
    let send = async {
        let mut chunk = Vec::new();
        for message in &messages {
            chunk.clear();
            chunk.extend_from_slice(message);
            chunk.extend_from_slice(&filler);
            write_half.write_all(&chunk).await.unwrap();
        }
    };
    // Every answer: one per message, one per filler.
    let answers = async {
        let (mut answers, mut ok) = (0, 0);
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while answers < 2 * MESSAGES {
            let n = read_half.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed after {answers} answers");
            pending.extend_from_slice(&buf[..n]);
            // Count whole status lines only.
            let text = String::from_utf8_lossy(&pending).into_owned();
            let Some(end) = text.rfind("\r\n") else {
                continue;
            };
            answers += text[..end].matches("HTTP/1.1 ").count();
            ok += text[..end].matches("HTTP/1.1 200").count();
            pending.drain(..end);
        }
        ok
    };
    let ((), ok) = tokio::time::timeout(WAIT, async { tokio::join!(send, answers) })
        .await
        .expect("answers");
    drop(client);
    assert_eq!(ok, MESSAGES);
    assert_eq!(bob.stats()[0].buffered, MESSAGES);
    // The connection's own buffers go when its task ends (not asserted:
    // what is left of them only makes the test stricter).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = live_bytes().saturating_sub(before);
    eprintln!(
        "{MESSAGES} messages charged {charged} bytes hold {held} ({:.1}x)",
        held as f64 / charged as f64
    );
    assert!(
        held <= 2 * charged,
        "{MESSAGES} messages charged {charged} bytes hold {held}"
    );
    // And the values are whole.
    for i in [0, MESSAGES - 1] {
        let v = bob
            .recv("Alice", Some(format!("m{i}").as_str().into()))
            .await
            .unwrap();
        assert_eq!(v, Value::from(vec![7u8; 4096]));
    }
    bob.shutdown().await;
}
