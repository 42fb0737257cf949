use super::*;
use crate::exchange::{ClientLog, MessageRecord, ServerLog};
use crate::results::Mode;
use crate::scenarios::select;
use crate::scenarios::Timers;
use crate::timeline::PacketRecord;

/// An ideal-network run as the lab records it: a 3 ms handshake of four
/// packets, then `n` messages 10 ms apart, each with its echo.
fn ideal_run(n: u32) -> ScenarioResult {
    let def = select("ideal")
        .and_then(|v| v.into_iter().next())
        .expect("the ideal scenario");
    let handshake = [0.0, 0.0005, 0.001, 0.002, 0.003].map(|t| (t, PacketClass::Handshake));
    let mut packets: Vec<PacketRecord> = handshake
        .iter()
        .enumerate()
        .map(|(i, &(t, class))| PacketRecord {
            t,
            from_client: i % 2 == 0,
            len: 300,
            class,
        })
        .collect();
    let messages: Vec<MessageRecord> = (0..n)
        .map(|seq| {
            let sent = 0.004 + f64::from(seq) * 0.01;
            packets.push(PacketRecord {
                t: sent,
                from_client: true,
                len: 140,
                class: PacketClass::Data,
            });
            packets.push(PacketRecord {
                t: sent + 0.0002,
                from_client: false,
                len: 140,
                class: PacketClass::Data,
            });
            MessageRecord {
                seq,
                size: 100,
                sent,
                server_received: None,
                echoed: Some(sent + 0.0003),
            }
        })
        .collect();
    let server = ServerLog {
        received: messages.iter().map(|m| (m.seq, m.sent + 0.0001)).collect(),
        ..ServerLog::default()
    };
    let client = ClientLog {
        connected: Some(0.003),
        messages,
        completed: true,
        ..ClientLog::default()
    };
    ScenarioResult::new(
        def,
        "link",
        Mode::Lab,
        1,
        Timers::default(),
        None,
        client,
        server,
        0.004 + f64::from(n) * 0.01,
        None,
        packets,
        None,
    )
}

fn packet_rows(svg: &str) -> Vec<f64> {
    svg.split("<line class=\"packet\"")
        .skip(1)
        .map(|rest| {
            let y1 = rest.split("y1=\"").nth(1).expect("y1");
            y1[..y1.find('"').expect("closing quote")]
                .parse()
                .expect("a number")
        })
        .collect()
}

#[test]
fn every_packet_is_drawn_handshake_included() {
    let run = ideal_run(32);
    let svg = sequence_diagram(&run);
    assert_eq!(packet_rows(&svg).len(), run.packets.len());
    let handshake = format!(
        "stroke=\"{}\" stroke-width=\"1.5\"",
        colour(PacketClass::Handshake)
    );
    assert_eq!(svg.matches(&handshake).count(), 5, "{svg}");
}

#[test]
fn consecutive_packets_never_share_a_row() {
    let svg = sequence_diagram(&ideal_run(32));
    let rows = packet_rows(&svg);
    for pair in rows.windows(2) {
        assert!(
            pair[1] - pair[0] >= MIN_GAP - 0.11,
            "rows {} and {} overprint",
            pair[0],
            pair[1]
        );
    }
}

/// A linear time axis gave a 3 ms set-up on a 0.3 s run 1% of the height
/// and a longer one most of it, with nothing drawn inside; the set-up now
/// holds its own packets' rows and no more.
#[test]
fn the_set_up_takes_the_rows_of_its_packets_not_the_diagram() {
    let run = ideal_run(32);
    let scale = TimeScale::new(event_times(&run));
    let set_up = scale.y(0.003) - scale.y(0.0);
    let total = scale.bottom() - TOP;
    assert!(set_up >= 4.0 * MIN_GAP - 0.01, "{set_up}");
    assert!(set_up < 0.1 * total, "set-up {set_up} of {total}");
}

#[test]
fn a_message_that_never_arrived_is_marked() {
    let mut run = ideal_run(3);
    run.client.messages[1].server_received = None;
    run.client.messages[1].echoed = None;
    let svg = sequence_diagram(&run);
    assert!(svg.contains("message 1 never arrived"), "{svg}");
    assert_eq!(svg.matches("never arrived").count(), 1);
}

#[test]
fn time_is_monotone_between_events() {
    let scale = TimeScale::new(vec![0.5, 0.001, 0.002, 2.0]);
    let mut last = f64::NEG_INFINITY;
    for i in 0..=400 {
        let y = scale.y(f64::from(i) * 0.006);
        assert!(y >= last, "y({}) went up", f64::from(i) * 0.006);
        last = y;
    }
}
