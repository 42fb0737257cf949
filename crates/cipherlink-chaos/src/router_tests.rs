use super::*;
use crate::netem::parse;

fn router(a_to_b: &str, b_to_a: &str, seed: u64) -> Router {
    let m =
        |s: &str, stream: u64| Model::new(parse(s).expect("test netem string"), seed * 2 + stream);
    Router::new(m(a_to_b, 0), m(b_to_a, 1))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn delivers_at_the_models_time_to_the_other_port() {
    let mut r = router("delay 10ms", "", 1);
    for i in 0..5u8 {
        r.handle_packet(Port::A, vec![i], ms(u64::from(i)));
    }
    r.handle_packet(Port::B, vec![99], ms(2));
    // B to A has no delay: due at once.
    assert_eq!(r.poll_timeout(), Some(ms(2)));
    assert_eq!(r.poll_transmit(ms(2)), Some((Port::A, vec![99])));
    assert_eq!(r.poll_timeout(), Some(ms(10)));
    assert_eq!(r.poll_transmit(ms(9)), None);
    for i in 0..5u8 {
        let now = ms(10 + u64::from(i));
        assert_eq!(r.poll_transmit(now), Some((Port::B, vec![i])));
    }
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn corruption_flips_one_bit_of_the_copy() {
    let mut r = router("corrupt 100%", "", 2);
    let sent = vec![0u8; 64];
    for i in 0..100 {
        r.handle_packet(Port::A, sent.clone(), ms(i));
        let (to, got) = r.poll_transmit(ms(i)).expect("due now");
        assert_eq!(to, Port::B);
        let bits: u32 = got.iter().map(|b| b.count_ones()).sum();
        assert_eq!(bits, 1);
    }
}

#[test]
fn duplicates_and_the_queue_bound() {
    let mut r = router("duplicate 100% delay 1s limit 10", "", 3);
    for i in 0..100u8 {
        r.handle_packet(Port::A, vec![i], Duration::ZERO);
        assert!(r.queued() <= 10);
    }
    assert_eq!(r.queued(), 10);
    let mut got = Vec::new();
    while let Some((_, p)) = r.poll_transmit(ms(1000)) {
        got.push(p[0]);
    }
    // Five packets, each twice.
    assert_eq!(got, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
}

#[test]
fn the_queue_is_bounded_by_memory_and_says_what_it_dropped() {
    // The model would hold a million packets; the memory bound stops them.
    let bound = 100 * 1024;
    let netem = "delay 1s limit 1000000";
    let mut r = router(netem, netem, 4).with_max_bytes(bound);
    assert_eq!(r.max_bytes(), bound);
    for i in 0..1000u64 {
        r.handle_packet(Port::A, vec![0u8; 1500], ms(i));
        assert!(r.queued_bytes() <= bound, "{} queued", r.queued_bytes());
    }
    // Each 1500-byte packet holds 1520 bytes of heap and its slot.
    let each = 1520 + std::mem::size_of::<Reverse<Queued>>();
    let queued = r.queued() as u64;
    assert_eq!(queued, (bound / each) as u64);
    assert_eq!(r.over_memory(), [1000 - queued, 0]);
    // The other direction shares the bound, and is counted on its own.
    r.handle_packet(Port::B, vec![1u8; 1500], ms(1000));
    assert_eq!(r.over_memory(), [1000 - queued, 1]);
    // Sending gives the memory back.
    while r.poll_transmit(ms(10_000)).is_some() {}
    assert_eq!((r.queued(), r.queued_bytes()), (0, 0));
    r.handle_packet(Port::A, vec![0u8; 1500], ms(10_000));
    assert_eq!(r.queued(), 1);
}

/// One end of a stop-and-wait transfer: messages are an 8-byte sequence
/// number and a body; acknowledgements are the sequence number alone.
struct Sender {
    next: u64,
    total: u64,
    deadline: Option<Duration>,
    sent: u64,
}

const RETRANSMIT: Duration = Duration::from_millis(100);

impl Sender {
    fn poll(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.next == self.total || self.deadline.is_some_and(|d| d > now) {
            return None;
        }
        self.deadline = Some(now + RETRANSMIT);
        self.sent += 1;
        let mut m = self.next.to_be_bytes().to_vec();
        m.extend_from_slice(b"body");
        Some(m)
    }

    fn on_ack(&mut self, ack: &[u8]) {
        if ack == self.next.to_be_bytes() {
            self.next += 1;
            self.deadline = None;
        }
    }
}

/// Runs the transfer on a virtual clock, quinn-proto `Pair` style:
/// jump to the next event, deliver what is due, let the ends react.
/// Returns the messages B delivered, the virtual time taken and the sends.
fn transfer(netem: &str, seed: u64, total: u64) -> (Vec<u64>, Duration, u64) {
    let mut r = router(netem, netem, seed);
    let mut a = Sender {
        next: 0,
        total,
        deadline: None,
        sent: 0,
    };
    let mut delivered = Vec::new();
    let mut now = Duration::ZERO;
    for _ in 0..1_000_000 {
        if let Some(m) = a.poll(now) {
            r.handle_packet(Port::A, m, now);
        }
        while let Some((to, packet)) = r.poll_transmit(now) {
            match to {
                Port::B => {
                    let Some((seq, _)) = packet.split_first_chunk::<8>() else {
                        continue;
                    };
                    let seq = u64::from_be_bytes(*seq);
                    if seq == delivered.len() as u64 {
                        delivered.push(seq);
                    }
                    // Acknowledge what arrived (again, if it was a repeat).
                    r.handle_packet(Port::B, seq.to_be_bytes().to_vec(), now);
                }
                Port::A => a.on_ack(&packet),
            }
        }
        if a.next == total {
            return (delivered, now, a.sent);
        }
        // A sender with nothing in flight is ready at once.
        let ready = a.deadline.unwrap_or(now);
        let next = [r.poll_timeout(), Some(ready)].into_iter().flatten().min();
        now = next
            .expect("something is always pending before the end")
            .max(now);
    }
    panic!("transfer did not finish");
}

#[test]
fn stop_and_wait_survives_loss_on_a_virtual_clock() {
    let netem = "delay 20ms 10ms loss 30%";
    let (delivered, took, sends) = transfer(netem, 7, 200);
    assert_eq!(
        delivered,
        (0..200).collect::<Vec<_>>(),
        "in order, once each"
    );
    // Losses cost retransmissions, and retransmissions cost time.
    assert!(sends > 200 + 50, "{sends} sends");
    assert!(took > ms(200 * 20 * 2), "{took:?}");
    // The whole run is a function of the seed.
    assert_eq!(transfer(netem, 7, 200), (delivered.clone(), took, sends));
    assert_ne!(transfer(netem, 8, 200).1, took);

    // Without impairment: one send per message, no time at all.
    let (delivered, took, sends) = transfer("", 7, 200);
    assert_eq!((delivered.len(), took, sends), (200, Duration::ZERO, 200));
}

/// An IPv4 packet of `len` bytes carrying TCP or UDP.
fn ip_packet(udp: bool, len: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([10, 66, 1, 2], [10, 66, 2, 2], 64);
    let payload = vec![7u8; len - 20 - if udp { 8 } else { 20 }];
    let mut out = Vec::new();
    if udp {
        b.udp(40000, 7100).write(&mut out, &payload)
    } else {
        b.tcp(40000, 7100, 1, 1000).write(&mut out, &payload)
    }
    .expect("packet");
    out
}

#[test]
fn udp_meets_the_same_impairments_as_tcp() {
    // The model sees a packet's length and time, never its protocol: the
    // same train of lengths meets the same fate, UDP or TCP.
    let netem = "delay 20ms 10ms loss 30% duplicate 20% reorder 25% 50% corrupt 10%";
    let fate = |udp: bool| {
        let mut r = router(netem, netem, 9);
        let mut out = Vec::new();
        for i in 0..300u64 {
            let len = 60 + (i as usize * 389) % 1400;
            let d = r.handle_packet(Port::A, ip_packet(udp, len), ms(i));
            out.push(format!("{d:?}"));
        }
        let mut delivered = Vec::new();
        while let Some((to, p)) = r.poll_transmit(ms(10_000)) {
            delivered.push((to, p.len()));
        }
        (out, delivered)
    };
    let (tcp, udp) = (fate(false), fate(true));
    assert_eq!(tcp, udp);
    assert!(tcp.0.iter().any(|d| d.contains("Loss")), "some lost");
    assert!(tcp.1.len() > 150, "most delivered: {}", tcp.1.len());
}
