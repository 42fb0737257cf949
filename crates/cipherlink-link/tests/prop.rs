//! Property tests: arbitrary bytes never panic the core, and nothing that was
//! not sent is ever delivered, whatever is done to a genuine stream.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Instant;

use cipherlink_link::fuzzing::{connected_pair, fuzz_client_records, fuzz_server};
use cipherlink_link::Event;
use proptest::prelude::*;

/// A genuine client→server record stream carrying `messages`.
fn genuine(messages: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let now = Instant::now();
    let (mut client, _server) = connected_pair(now);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for m in messages {
        client.send(m).unwrap();
        sent.extend_from_slice(m);
    }
    client.close_write();
    client.poll_transmit(&mut wire);
    (wire, sent)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    let len = wire.len().max(1);
    match m {
        Mutation::Flip(i, x) => {
            let i = i % len;
            if let Some(b) = wire.get_mut(i) {
                *b ^= x;
            }
        }
        Mutation::Insert(i, v) => {
            let i = i % (wire.len() + 1);
            wire.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = i % len;
            let end = (i + n).min(wire.len());
            wire.drain(i.min(end)..end);
        }
        Mutation::Truncate(i) => wire.truncate(i % len),
        Mutation::Duplicate(i, n) => {
            let i = i % len;
            let end = (i + n).min(wire.len());
            let copy = wire[i.min(end)..end].to_vec();
            wire.splice(end..end, copy);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn server_never_panics_or_answers_noise(data in prop::collection::vec(any::<u8>(), 0..4000)) {
        fuzz_server(&data);
    }

    #[test]
    fn client_never_delivers_forged_records(data in prop::collection::vec(any::<u8>(), 0..4000)) {
        fuzz_client_records(&data);
    }

    #[test]
    fn tampered_streams_deliver_only_a_prefix_of_what_was_sent(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        mutations in prop::collection::vec(mutation(), 1..4),
        chunk in 1usize..500,
    ) {
        let (mut wire, sent) = genuine(&messages);
        let original = wire.clone();
        for m in &mutations {
            apply(&mut wire, m);
        }
        let now = Instant::now();
        let (_client, mut server) = connected_pair(now);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        for piece in wire.chunks(chunk) {
            server.handle_input(now, piece);
            loop {
                let n = server.recv(&mut buf);
                if n == 0 { break; }
                got.extend_from_slice(&buf[..n]);
            }
        }
        server.handle_eof(now);
        prop_assert!(sent.starts_with(&got), "delivered bytes that were not sent");
        if wire != original {
            // Any real change is detected: the link does not end cleanly
            // unless the change left the bytes the server consumed intact.
            let mut clean = false;
            while let Some(ev) = server.poll_event() {
                if ev == (Event::Closed { error: None }) {
                    clean = true;
                }
            }
            prop_assert!(!clean || wire.starts_with(&original));
        }
    }
}
