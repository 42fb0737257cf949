//! A peer's message may cost only a small multiple of its size (issue 22):
//! the 8 MiB list of 8 Mi small ints that tno.mpc.communication 5.x sends
//! for `[1] * (8 << 20)` is decoded into one typed vector of a byte an
//! element, charged at most 10 times its size (about once; it was charged
//! 40 times, and took `pool serve` to 335-357 MB); floats likewise; a list that is not all of one kind is
//! still decoded, the general way.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use bytes::Bytes;
use cipherlink_pool::codec::{self, NUMERIC_LIST_FACTOR};
use cipherlink_pool::{
    envelope, DecodeLimits, MessageId, PeerConfig, Pool, PoolConfig, Value, WireVersion,
};
use common::*;

const N: usize = 8 << 20;

/// The 5.x body the package sends for `pool.send(peer, value, "list")`:
/// `{"object": bin(msgpack of value), "id": "list"}`, written by hand
/// rather than by our encoder.
fn body_of(inner: &[u8]) -> Bytes {
    let mut body = b"\x82\xa6object\xc6".to_vec();
    body.extend_from_slice(&u32::try_from(inner.len()).unwrap().to_be_bytes());
    body.extend_from_slice(inner);
    body.extend_from_slice(b"\xa2id\xa4list");
    Bytes::from(body)
}

/// ormsgpack's encoding of a list of `N` elements, `element` each.
fn list_of(element: &[u8]) -> Vec<u8> {
    let mut inner = vec![0xdd];
    inner.extend_from_slice(&u32::try_from(N).unwrap().to_be_bytes());
    for _ in 0..N {
        inner.extend_from_slice(element);
    }
    inner
}

fn received(body: &Bytes) -> envelope::Decoded {
    envelope::decode_received(WireVersion::V5, body, DecodeLimits::default()).unwrap()
}

/// Issue 22's message: 8 Mi ones. Before, it was charged 40 times its size.
#[test]
fn the_8_mib_list_of_8_mi_ints_is_charged_at_most_10_times_its_size() {
    let inner = list_of(&[0x01]);
    let d = received(&body_of(&inner));
    assert_eq!(d.id, MessageId::from("list"));
    let Value::Ints(ints) = &d.value else {
        panic!("expected compact ints, got {}", d.value.kind())
    };
    assert!(ints.len() == N && ints.iter().all(|x| x == 1));
    // Ones fit a byte each.
    assert_eq!(ints.element_size(), 1);
    eprintln!(
        "{} bytes charged for {} ({:.2}x)",
        d.memory,
        inner.len(),
        d.memory as f64 / inner.len() as f64
    );
    assert!(d.memory <= 10 * inner.len(), "{}", d.memory);
    assert!(
        d.memory <= NUMERIC_LIST_FACTOR * inner.len(),
        "{}",
        d.memory
    );
    // Honest: at least the byte an element it holds.
    assert!(d.memory >= N, "{}", d.memory);
}

/// 8 Mi floats: 72 MiB on the wire, 64 MiB in memory.
#[test]
fn a_list_of_8_mi_floats_costs_less_than_its_size() {
    let inner = list_of(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    let d = received(&body_of(&inner));
    assert!(matches!(&d.value, Value::Floats(v) if v.len() == N && v.iter().all(|x| *x == 1.5)));
    assert!(d.memory >= 8 * N, "{}", d.memory);
    assert!(d.memory <= inner.len(), "{}", d.memory);
}

/// The same ones with a `None` at the end: not all ints, so one `Value`
/// each; still within the general factor, and equal to what was sent.
#[test]
fn a_list_that_turns_out_mixed_at_its_end_is_decoded_the_general_way() {
    let mut inner = list_of(&[0x01]);
    inner[4] += 1; // N + 1 elements
    inner.push(0xc0);
    let d = received(&body_of(&inner));
    let Value::List(items) = &d.value else {
        panic!("expected a general list, got {}", d.value.kind())
    };
    assert_eq!(items.len(), N + 1);
    assert!(items[..N].iter().all(|v| *v == Value::int(1)));
    assert_eq!(items[N], Value::Nil);
    assert!(d.memory >= 40 * N, "{}", d.memory);
    assert!(d.memory <= codec::memory_bound(inner.len()), "{}", d.memory);
    // What goes back out is what came in.
    assert!(codec::encode(&d.value).unwrap() == inner);
}

/// End to end: a Bob whose budget for Alice is 100 MiB takes the 8 MiB
/// list (charged 8 MiB) and hands it over whole. Before, it was charged
/// 320 MiB and refused with 413.
#[tokio::test]
async fn a_party_with_a_100_mib_budget_takes_the_8_mib_list() {
    init_logs();
    // Held for the test: Alice's port, where nothing else may listen.
    let alice_l = bind();
    let alice_port = port_of(&alice_l);
    let mut cfg =
        PoolConfig::new("Bob", loopback(0)).peer(PeerConfig::new("Alice", "127.0.0.1", alice_port));
    cfg.limits.recv_timeout = Some(WAIT);
    cfg.limits.max_buffered_bytes_per_peer = 100 << 20;
    let bob = Pool::start(cfg).await.unwrap();
    let body = body_of(&list_of(&[0x01]));
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: server_port={alice_port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let r = raw(bob.local_addr(), &request).await;
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);
    let got = bob.recv("Alice", Some("list".into())).await.unwrap();
    assert_eq!(got.list_len(), Some(N));
    assert!(matches!(got, Value::Ints(_)));
    bob.shutdown().await;
}
