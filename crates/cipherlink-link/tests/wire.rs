//! Reading a captured link with its exported keys (`wire`): every byte of
//! each direction is the handshake message or a record of a known type, as
//! the chaos lab's timelines need without reaching into the record layer.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_link::wire::{self, Flow, Part, RecordType, UNPADDED_KEEPALIVE_LEN};
use cipherlink_link::LinkParams;
use common::{Pair, World};

fn unpadded() -> LinkParams {
    LinkParams {
        tail_length: 0,
        rekey_after_records: 3,
        ..LinkParams::default()
    }
}

fn parts(stream: &[u8], flow: Flow, keys: &wire::TransportKeys) -> Vec<Part> {
    let spans = wire::spans(stream, flow, keys);
    // The spans tile the stream from its first byte to its last.
    let mut at = 0;
    for s in &spans {
        assert_eq!(s.range.start, at, "{spans:?}");
        at = s.range.end;
    }
    assert_eq!(at, stream.len(), "{flow:?} not read to its end: {spans:?}");
    spans.into_iter().map(|s| s.part).collect()
}

/// An unpadded link's two directions split into msg1/msg2 of their
/// documented lengths and records of every type: data, rekey (after which
/// the reader follows the next key), ping and pong, close.
#[test]
fn a_captured_unpadded_link_reads_record_by_record() {
    let world = World::new(unpadded());
    let (mut p, keys) = Pair::exporting_keys(&world, 11);
    assert!(p.client.is_open() && p.server.is_open());
    assert_eq!(p.c2s_log.len(), Flow::ToServer.unpadded_handshake_len());
    assert_eq!(p.s2c_log.len(), Flow::ToClient.unpadded_handshake_len());

    for i in 0..4u8 {
        assert_eq!(p.transfer_c2s(&[i; 100]), [i; 100]);
    }
    // Silence: the keepalive pings (after 64 to 256 s), the peer pongs.
    p.run_for(Duration::from_secs(600));
    p.client.close_write();
    p.server.close_write();
    p.drive();

    let up = parts(&p.c2s_log, Flow::ToServer, &keys);
    let down = parts(&p.s2c_log, Flow::ToClient, &keys);
    assert_eq!(up.first(), Some(&Part::Handshake));
    assert_eq!(down.first(), Some(&Part::Handshake));
    let data = up
        .iter()
        .filter(|p| **p == Part::Record(RecordType::Data))
        .count();
    assert_eq!(data, 4, "{up:?}");
    assert!(up.contains(&Part::Record(RecordType::Rekey)), "{up:?}");
    // The close record (a rekey falls due with it, at `rekey_after_records` 3).
    for parts in [&up, &down] {
        assert!(
            parts.contains(&Part::Record(RecordType::Close)),
            "{parts:?}"
        );
    }
    let keepalives = |parts: &[Part]| {
        parts
            .iter()
            .filter(|p| matches!(p, Part::Record(RecordType::Ping | RecordType::Pong)))
            .count()
    };
    assert!(keepalives(&up) + keepalives(&down) >= 2, "{up:?} {down:?}");
    // Every keepalive record has the documented size.
    for (stream, flow) in [(&p.c2s_log, Flow::ToServer), (&p.s2c_log, Flow::ToClient)] {
        for s in wire::spans(stream, flow, &keys) {
            if matches!(s.part, Part::Record(RecordType::Ping | RecordType::Pong)) {
                assert_eq!(s.range.len(), UNPADDED_KEEPALIVE_LEN);
            }
        }
    }
}

/// Another session's keys open nothing: the stream is its handshake
/// message and no record (no misread types).
#[test]
fn other_keys_read_only_the_handshake() {
    let world = World::new(unpadded());
    let (mut p, _) = Pair::exporting_keys(&world, 21);
    let (_, other) = Pair::exporting_keys(&world, 23);
    assert_eq!(p.transfer_c2s(b"hello"), b"hello");
    let spans = wire::spans(&p.c2s_log, Flow::ToServer, &other);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].part, Part::Handshake);
    assert!(wire::spans(&[], Flow::ToServer, &other).is_empty());
}
