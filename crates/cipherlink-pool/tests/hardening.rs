//! A peer may cost only what it sent: big integers, decoded size, held
//! connections, echoed text and nesting limits (issue 11, Pool).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::Read as _;
use std::time::{Duration, Instant};

use cipherlink_pool::codec::{self, MAX_DEPTH_LIMIT};
use cipherlink_pool::{
    envelope, json, ConfigError, Int, Limits, MessageId, PeerConfig, Pool, PoolConfig, PoolError,
    Value, WireVersion,
};
use cipherlink_test_support::Peer;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn post(port: u16, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: server_port={port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Bob on the given wire, expecting Alice on `alice_port`, with default
/// limits but those `set` changes.
async fn bob(wire: WireVersion, alice_port: u16, set: impl FnOnce(&mut Limits)) -> Pool {
    let mut cfg = PoolConfig::new("Bob", loopback(0))
        .wire(wire)
        .peer(PeerConfig::new("Alice", "127.0.0.1", alice_port));
    cfg.limits.recv_timeout = Some(WAIT);
    set(&mut cfg.limits);
    Pool::start(cfg).await.unwrap()
}

/// A 1 MiB int: `(bit_length + 8) // 8` is exactly 2^20.
fn mebibyte_int() -> Int {
    let mut mag = vec![0u8; 1 << 20];
    mag[0] = 0x39;
    mag[(1 << 20) - 1] = 0x7f;
    Int::from_sign_magnitude(false, &mag)
}

/// A real tno.mpc.communication 5.x Alice sends a message whose id is a
/// 1 MiB int (refused with 400 and a short reason) and a message whose
/// value is one (stored). On main this held the server for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python5_mebibyte_integers_are_answered_promptly() {
    init_logs();
    let Some(python) = cipherlink_test_support::peer!(Peer::PythonTno5) else {
        return;
    };
    let alice_port = port_for_python();
    let bob = bob(WireVersion::V5, alice_port, |_| {}).await;
    let mut alice = PyParty::spawn(
        &python,
        &[
            "--name=Alice".into(),
            format!("--port={alice_port}"),
            peer_arg("Bob", bob.local_addr().port(), None),
            "--mode=bigint".into(),
        ],
    );
    alice.wait_for("READY").await;
    let answer = alice.wait_for("ID_ANSWER").await;
    assert!(
        answer.contains("400") && answer.contains("int ids over 64 bytes are refused"),
        "{answer}"
    );
    let started = Instant::now();
    let value = bob.recv("Alice", Some("big-value".into())).await.unwrap();
    eprintln!(
        "timing: the value arrived {:?} after the id's answer",
        started.elapsed()
    );
    match value {
        Value::Int(i) => assert_eq!(i.python_byte_len(), 1 << 20),
        other => panic!("expected an int, got {}", other.kind()),
    }
    alice.expect_success().await;
    bob.shutdown().await;
}

/// The same without Python, on the 4.x wire (whose default ids are ints):
/// the reply names the size, not the number; the value is stored, and it
/// converts to JSON's decimal form without quadratic cost.
#[tokio::test]
async fn a_mebibyte_int_id_is_refused_and_a_mebibyte_int_value_is_kept() {
    init_logs();
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob(WireVersion::V4, alice_port, |l| l.max_body = 4 << 20).await;
    let big = mebibyte_int();
    let id = MessageId::Int(big.clone());
    let body = envelope::encode(WireVersion::V4, &id, &Value::Nil).unwrap();
    let started = Instant::now();
    let r = raw(bob.local_addr(), &post(alice_port, &body)).await;
    eprintln!("timing: 1 MiB int id answered in {:?}", started.elapsed());
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        r.body
            .contains("message id is an int of 1048576 bytes; int ids over 64 bytes are refused"),
        "{}",
        r.body
    );
    assert!(r.head.len() < 400 && r.body.len() < 400);

    // An id of exactly 64 bytes is fine.
    let mut limit_mag = [0x11; 64];
    limit_mag[63] = 0x7f;
    let limit_id = Int::from_sign_magnitude(false, &limit_mag);
    assert_eq!(limit_id.python_byte_len(), 64);
    let body = envelope::encode(
        WireVersion::V4,
        &MessageId::Int(limit_id.clone()),
        &Value::Nil,
    )
    .unwrap();
    assert_eq!(
        raw(bob.local_addr(), &post(alice_port, &body)).await.status,
        200
    );
    assert_eq!(
        bob.recv("Alice", Some(MessageId::Int(limit_id)))
            .await
            .unwrap(),
        Value::Nil
    );

    let body = envelope::encode(WireVersion::V4, &"big".into(), &Value::Int(big.clone())).unwrap();
    let started = Instant::now();
    let r = raw(bob.local_addr(), &post(alice_port, &body)).await;
    eprintln!(
        "timing: 1 MiB int value answered in {:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 200, "{}", r.head);
    let got = bob.recv("Alice", Some("big".into())).await.unwrap();
    assert_eq!(got, Value::Int(big.clone()));

    let started = Instant::now();
    let j = json::to_json(&got);
    eprintln!(
        "timing: 1 MiB int to JSON decimal in {:?}",
        started.elapsed()
    );
    // 8 388 607 bits: 2 525 222 or 2 525 223 decimal digits.
    let digits = j["$int"].as_str().unwrap();
    assert!(
        (2_525_222..=2_525_223).contains(&digits.len()),
        "{}",
        digits.len()
    );
    assert_eq!(big.short(), "<an int of 8388607 bits>");
    bob.shutdown().await;
}

/// The mailbox's per-sender budget is charged by what a message takes in
/// memory: a list of `None`s (the costliest list) takes ~40 bytes per body
/// byte.
#[tokio::test]
async fn the_buffer_budget_is_charged_by_decoded_size() {
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob(WireVersion::V5, alice_port, |l| {
        l.max_buffered_bytes_per_peer = 20_000
    })
    .await;
    let addr = bob.local_addr();
    let nones = |n: usize| Value::List(vec![Value::Nil; n]);
    let msg = |id: &str, n: usize| {
        envelope::encode(WireVersion::V5, &MessageId::from(id), &nones(n)).unwrap()
    };
    // ~320 body bytes, ~12 KB in memory: one fits the budget, two do not.
    assert!(msg("m1", 300).len() < 400);
    assert_eq!(
        raw(addr, &post(alice_port, &msg("m1", 300))).await.status,
        200
    );
    let r = raw(addr, &post(alice_port, &msg("m2", 300))).await;
    assert_eq!(r.status, 429, "{}", r.head);
    // One that alone would take more than the whole budget is refused
    // while it is decoded.
    let r = raw(addr, &post(alice_port, &msg("m3", 1000))).await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(r.body.contains("20000 bytes of memory"), "{}", r.body);
    assert_eq!(
        bob.recv("Alice", Some("m1".into())).await.unwrap(),
        nones(300)
    );
    assert_eq!(
        raw(addr, &post(alice_port, &msg("m2", 300))).await.status,
        200
    );
    bob.shutdown().await;
}

/// A connection with no request under way is closed after `idle_timeout`
/// (the header timeout, 30 s by default, is not what closes it).
#[tokio::test]
async fn an_idle_connection_is_closed() {
    let alice_l = bind();
    let bob = bob(WireVersion::V5, port_of(&alice_l), |l| {
        l.idle_timeout = Duration::from_millis(200)
    })
    .await;
    let mut s = TcpStream::connect(bob.local_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the idle connection was not closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("Connection working (GET)"));
    bob.shutdown().await;
}

/// One address may hold `max_incoming_connections_per_address`
/// connections; another one from it is closed at once, while the first
/// keeps working.
#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share() {
    let alice_l = bind();
    let bob = bob(WireVersion::V5, port_of(&alice_l), |l| {
        l.max_incoming_connections_per_address = 1
    })
    .await;
    let addr = bob.local_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    // The first is served (so it was accepted before the second arrives).
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    let mut second = TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, second.read_to_end(&mut got))
        .await
        .expect("the second connection was not closed");
    assert!(got.is_empty(), "the second connection was served");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, first.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("200 OK"));
    bob.shutdown().await;
}

/// An error reply does not echo everything a peer sent: a map of 10 000
/// keys is answered with a few of them and a count.
#[tokio::test]
async fn error_replies_do_not_echo_the_peers_text() {
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let bob = bob(WireVersion::V5, alice_port, |_| {}).await;
    let keys = Value::dict((0..10_000).map(|k| (format!("key-number-{k:05}"), Value::Nil)));
    let body = codec::encode(&keys).unwrap();
    let r = raw(bob.local_addr(), &post(alice_port, &body)).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("(10000 keys)"), "{}", r.body);
    assert!(r.head.len() < 700 && r.body.len() < 700, "{}", r.body);
    // A long str id is shortened in the 409 that names it.
    let id = "i".repeat(100_000);
    let body = envelope::encode(WireVersion::V5, &id.as_str().into(), &Value::Nil).unwrap();
    assert_eq!(
        raw(bob.local_addr(), &post(alice_port, &body)).await.status,
        200
    );
    let r = raw(bob.local_addr(), &post(alice_port, &body)).await;
    assert_eq!(r.status, 409);
    assert!(
        r.body.contains("(100000 bytes)") && r.body.len() < 700,
        "{}",
        r.body
    );
    bob.shutdown().await;
}

#[tokio::test]
async fn max_depth_has_an_upper_bound() {
    let mut cfg = PoolConfig::new("Bob", loopback(0));
    cfg.limits.max_depth = MAX_DEPTH_LIMIT + 1;
    let e = Pool::start(cfg).await.err();
    assert!(
        matches!(
            e,
            Some(PoolError::Config(ConfigError::TooLarge {
                field: "limits.max_depth",
                ..
            }))
        ),
        "{e:?}"
    );
}

/// At the deepest allowed nesting, everything that recurses over a value
/// fits a 2 MiB thread stack (tokio's worker default), in a debug build.
#[test]
fn the_deepest_allowed_value_fits_a_small_stack() {
    let worker = std::thread::Builder::new().stack_size(2 << 20).spawn(|| {
        let mut v = Value::Nil;
        for _ in 0..MAX_DEPTH_LIMIT {
            v = Value::List(vec![v]);
        }
        let mut out = Vec::new();
        codec::encode_into(&v, &mut out, MAX_DEPTH_LIMIT).unwrap();
        let back = codec::decode_with_depth(&out, MAX_DEPTH_LIMIT + 1).unwrap();
        assert!(back == v.clone());
        let j = json::to_json(&back);
        assert_eq!(json::from_json(&j).ok().as_ref(), Some(&v));
        drop(back);
        drop(v);
    });
    worker.unwrap().join().unwrap();
}

fn status(key: &str) -> String {
    let mut s = String::new();
    std::fs::File::open("/proc/self/status")
        .and_then(|mut f| f.read_to_string(&mut s))
        .unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or("")
        .to_string()
}

/// Bench-style (run by hand, `--run-ignored only`): a tno 5.x Alice sends
/// an 8 MiB list of 8 Mi one-byte ints to a Rust Bob; prints Bob's
/// process's peak RSS and the accounted size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_of_receiving_an_8_mib_list_from_python5() {
    let Some(python) = cipherlink_test_support::peer!(Peer::PythonTno5) else {
        return;
    };
    let alice_port = port_for_python();
    let bob = bob(WireVersion::V5, alice_port, |_| {}).await;
    eprintln!("before: {} {}", status("VmRSS"), status("VmHWM"));
    let alice = PyParty::spawn(
        &python,
        &[
            "--name=Alice".into(),
            format!("--port={alice_port}"),
            peer_arg("Bob", bob.local_addr().port(), None),
            "--mode=biglist".into(),
        ],
    );
    let got = bob.recv("Alice", Some("list".into())).await.unwrap();
    eprintln!(
        "received a list of {} ints: {} {}",
        got.list_len().unwrap_or(0),
        status("VmRSS"),
        status("VmHWM")
    );
    alice.expect_success().await;
    bob.shutdown().await;
}

/// Bench-style (run by hand, `--run-ignored only`): peak RSS of decoding a
/// 16 MiB list of one-byte ints, printed for the report.
#[test]
#[ignore]
fn rss_of_decoding_a_16_mib_list() {
    let n = 16 << 20;
    let mut input = vec![0xdd];
    input.extend_from_slice(&(n as u32).to_be_bytes());
    input.resize(5 + n, 0x01);
    eprintln!("before: {} {}", status("VmRSS"), status("VmHWM"));
    let (v, memory) = codec::decode_accounted(&input, Default::default()).unwrap();
    eprintln!(
        "decoded {} MiB into an accounted {} MiB; {} {}",
        input.len() >> 20,
        memory >> 20,
        status("VmRSS"),
        status("VmHWM")
    );
    drop(v);
}

/// The entry points the fuzz targets call run the real decoders.
#[test]
fn fuzzing_entry_points_run_the_real_decoders() {
    use cipherlink_pool::fuzzing;
    let body = envelope::encode(WireVersion::V5, &"m0".into(), &Value::str("hi")).unwrap();
    let (id, inner) = fuzzing::split_body(&body).unwrap();
    assert_eq!(
        (id, inner),
        (MessageId::from("m0"), &[0xa2, b'h', b'i'][..])
    );
    assert_eq!(fuzzing::split_body(&[0xc1]), Err(fuzzing::NotSplit));
    let decoded = fuzzing::decode_envelope_v5(&body).unwrap();
    assert_eq!(decoded.value, Value::str("hi"));
    assert!(fuzzing::decode_envelope_v4(&body).is_ok());
    assert!(fuzzing::decode_envelope(WireVersion::V5, &[0x91]).is_err());
    let (v, memory) = fuzzing::decode_value(&[0x92, 0x01, 0xa1, b'x']).unwrap();
    assert_eq!(v, Value::List(vec![Value::int(1), Value::str("x")]));
    // One list open: the decoder's stack is charged too.
    let bound = codec::memory_bound(4) + fuzzing::stack_bound(4, codec::DEFAULT_MAX_DEPTH);
    assert!(
        memory > codec::memory_bound(4) && memory <= bound,
        "{memory}"
    );
}
