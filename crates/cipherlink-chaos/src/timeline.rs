//! A capture turned into a timeline: per delivered packet its time,
//! direction, length and class, the class decoded by the subject itself
//! (TLS records decrypted with the subject's key log, else TLS record
//! headers or the link protocol's framing) from the TCP payload at its
//! stream offset. UDP datagrams are classed by the subject from their
//! payloads, all of a capture's at once (a datagram protocol's keys come
//! from its earlier datagrams, as TYPHOON's from its INIT). Checksums are
//! verified first (IPv4, TCP, and UDP unless its sender left it 0): a
//! packet the receiving kernel would drop is `Invalid`, whatever it
//! carries. Neither protocol is reassembled from IPv4 fragments: a
//! fragment is `Unknown` (the lab's subjects stay within one packet).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use serde::{Deserialize, Serialize};

use crate::subject::{DatagramSubject, PacketClass, Subject};
use crate::tls_records::RecordMap;

/// How a capture's packets read: what [`timeline`] asks of a subject.
/// Every stream [`Subject`] is one; a [`DatagramSubject`] is one through
/// [`DatagramClasses`].
pub trait Classes {
    /// Every record of the capture, decoded ([`Subject::decode_records`]).
    fn records(&self, pcap: &[u8]) -> Option<RecordMap>;
    /// A TCP payload's class, `offset` bytes into its direction's stream
    /// when known.
    fn stream_class(&self, from_client: bool, offset: Option<u64>, payload: &[u8]) -> PacketClass;
    /// The class of each UDP payload, in capture order (one per payload).
    fn datagram_classes(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass>;
}

impl<S: Subject> Classes for S {
    fn records(&self, pcap: &[u8]) -> Option<RecordMap> {
        self.decode_records(pcap)
    }

    fn stream_class(&self, from_client: bool, offset: Option<u64>, payload: &[u8]) -> PacketClass {
        match offset {
            Some(offset) => self.classify_at(from_client, offset, payload),
            None => self.classify(payload),
        }
    }

    /// A stream subject's UDP (a foreign program's) reads as its payloads do.
    fn datagram_classes(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
        datagrams.iter().map(|(_, d)| self.classify(d)).collect()
    }
}

/// A datagram subject's classes: TCP is not its own (payload is `Unknown`).
#[derive(Debug)]
pub struct DatagramClasses<'a, D>(pub &'a D);

impl<D: DatagramSubject> Classes for DatagramClasses<'_, D> {
    fn records(&self, _pcap: &[u8]) -> Option<RecordMap> {
        None
    }

    fn stream_class(&self, _: bool, _: Option<u64>, _: &[u8]) -> PacketClass {
        PacketClass::Unknown
    }

    fn datagram_classes(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
        self.0.classify_datagrams(datagrams)
    }
}

/// One delivered packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketRecord {
    /// Seconds since the first packet of the capture.
    pub t: f64,
    /// Client to server (`true`) or server to client.
    pub from_client: bool,
    /// IPv4 packet length in bytes.
    pub len: usize,
    /// What it carried.
    pub class: PacketClass,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the capture: {0}")]
pub struct TimelineError(#[from] pcap_file::PcapError);

type Endpoints = (SocketAddrV4, SocketAddrV4);

#[derive(Debug, Default)]
struct Flow {
    /// Initial sequence numbers of (client, server), once their SYNs were seen.
    isn: [Option<u32>; 2],
    /// The last class seen per direction (a segment starting inside a
    /// record continues that record).
    last: [Option<PacketClass>; 2],
}

/// Reads a pcap of raw IPv4 packets and classifies each with `subject`.
/// The client of a TCP connection is the side that sent its SYN; of a
/// UDP flow, the side that sent its first datagram.
pub fn timeline<S: Classes + ?Sized>(
    subject: &S,
    pcap: &[u8],
) -> Result<Vec<PacketRecord>, TimelineError> {
    let mut reader = PcapReader::new(pcap)?;
    let mut flows: HashMap<Endpoints, Flow> = HashMap::new();
    let mut udp_flows: HashSet<Endpoints> = HashSet::new();
    let mut out = Vec::new();
    // UDP payloads and their records' places, classed together at the end.
    let mut datagrams: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut datagram_at: Vec<usize> = Vec::new();
    let mut first = None;
    let records: Option<RecordMap> = subject.records(pcap);
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let t0 = *first.get_or_insert(packet.timestamp);
        let t = packet.timestamp.saturating_sub(t0).as_secs_f64();
        let (from_client, class) = match udp_payload(&packet.data, &mut udp_flows) {
            Some(Udp::Valid(from_client, payload)) => {
                datagram_at.push(out.len());
                datagrams.push((from_client, payload));
                (from_client, PacketClass::Unknown)
            }
            Some(Udp::Invalid(from_client)) => (from_client, PacketClass::Invalid),
            None => classify_packet(subject, records.as_ref(), &packet.data, &mut flows),
        };
        out.push(PacketRecord {
            t,
            from_client,
            len: packet.data.len(),
            class,
        });
    }
    let views: Vec<(bool, &[u8])> = datagrams.iter().map(|(c, d)| (*c, &d[..])).collect();
    let classes = subject.datagram_classes(&views);
    for (at, class) in datagram_at.into_iter().zip(classes) {
        if let Some(p) = out.get_mut(at) {
            p.class = class;
        }
    }
    Ok(out)
}

/// A UDP packet: its direction and payload, or that a checksum is wrong.
enum Udp {
    Valid(bool, Vec<u8>),
    Invalid(bool),
}

/// `None` unless `data` is an IPv4 packet carrying UDP.
fn udp_payload(data: &[u8], flows: &mut HashSet<Endpoints>) -> Option<Udp> {
    let Ok(SlicedPacket {
        net: Some(NetSlice::Ipv4(ip)),
        transport: Some(TransportSlice::Udp(udp)),
        ..
    }) = SlicedPacket::from_ip(data)
    else {
        return None;
    };
    let header = ip.header();
    let src = SocketAddrV4::new(header.source_addr(), udp.source_port());
    let dst = SocketAddrV4::new(header.destination_addr(), udp.destination_port());
    let ip_ok = header.to_header().calc_header_checksum() == header.header_checksum();
    // 0: the sender computed none (IPv4 allows it), and the kernel takes it.
    let udp_ok = udp.checksum() == 0
        || udp
            .to_header()
            .calc_checksum_ipv4_raw(header.source(), header.destination(), udp.payload())
            .is_ok_and(|sum| sum == udp.checksum());
    let from_client = if flows.contains(&(src, dst)) {
        true
    } else if flows.contains(&(dst, src)) {
        false
    } else if ip_ok && udp_ok {
        flows.insert((src, dst));
        true
    } else {
        src < dst
    };
    Some(if ip_ok && udp_ok {
        Udp::Valid(from_client, udp.payload().to_vec())
    } else {
        Udp::Invalid(from_client)
    })
}

fn classify_packet<S: Classes + ?Sized>(
    subject: &S,
    records: Option<&RecordMap>,
    data: &[u8],
    flows: &mut HashMap<Endpoints, Flow>,
) -> (bool, PacketClass) {
    let Ok(SlicedPacket {
        net: Some(NetSlice::Ipv4(ip)),
        transport: Some(TransportSlice::Tcp(tcp)),
        ..
    }) = SlicedPacket::from_ip(data)
    else {
        return (true, unreadable(data));
    };
    let header = ip.header();
    let src = SocketAddrV4::new(header.source_addr(), tcp.source_port());
    let dst = SocketAddrV4::new(header.destination_addr(), tcp.destination_port());
    let ip_ok = header.to_header().calc_header_checksum() == header.header_checksum();
    let tcp_ok = tcp
        .calc_checksum_ipv4(header.source(), header.destination())
        .is_ok_and(|sum| sum == tcp.checksum());
    // Which way: the flow is keyed by (client, server) once a SYN named them.
    let (key, from_client) = if flows.contains_key(&(src, dst)) {
        ((src, dst), true)
    } else if flows.contains_key(&(dst, src)) {
        ((dst, src), false)
    } else if tcp.syn() && !tcp.ack() && ip_ok && tcp_ok {
        ((src, dst), true)
    } else {
        // Mid-connection without its SYN: call the lower address the client.
        if src < dst {
            ((src, dst), true)
        } else {
            ((dst, src), false)
        }
    };
    if !(ip_ok && tcp_ok) {
        return (from_client, PacketClass::Invalid);
    }
    let flow = flows.entry(key).or_default();
    let dir = usize::from(!from_client);
    if tcp.syn() {
        flow.isn[dir] = Some(tcp.sequence_number());
    }
    let payload = tcp.payload();
    let class = if tcp.fin() || tcp.rst() {
        PacketClass::Close
    } else if payload.is_empty() {
        PacketClass::Control
    } else {
        let offset = flow.isn[dir]
            .map(|isn| u64::from(tcp.sequence_number().wrapping_sub(isn).wrapping_sub(1)));
        let decoded = offset
            .zip(records)
            .and_then(|(offset, records)| records.class_at(key, from_client, offset))
            .filter(|class| *class != PacketClass::Unknown);
        let class = match decoded {
            Some(class) => class,
            None => subject.stream_class(from_client, offset, payload),
        };
        match (class, flow.last[dir]) {
            (PacketClass::Unknown, Some(prev)) => prev,
            _ => class,
        }
    };
    if !payload.is_empty() {
        flow.last[dir] = Some(class);
    }
    (from_client, class)
}

/// A packet that is neither TCP nor UDP over IPv4 as read: an IPv4
/// fragment (its transport header is in another packet) is `Unknown`;
/// anything else is `Invalid`.
fn unreadable(data: &[u8]) -> PacketClass {
    match SlicedPacket::from_ip(data) {
        Ok(SlicedPacket {
            net: Some(NetSlice::Ipv4(ip)),
            ..
        }) if ip.is_payload_fragmented() => PacketClass::Unknown,
        _ => PacketClass::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Capture, Side, TcpFlow};
    use crate::subject::PlainTcp;
    use std::time::Duration;

    #[test]
    fn classes_directions_and_checksums() {
        let c = SocketAddrV4::new([10, 66, 1, 2].into(), 40000);
        let s = SocketAddrV4::new([10, 66, 2, 2].into(), 7000);
        let mut flow = TcpFlow::new(c, s, [1000, u32::MAX - 2]);
        let mut packets: Vec<Vec<u8>> = flow.handshake().expect("handshake").into();
        packets.extend(flow.data(Side::Server, b"hello").expect("data"));
        let mut bad = flow.data(Side::Client, b"world").expect("data").remove(0);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        packets.push(bad);
        packets.push(flow.fin(Side::Client).expect("fin"));
        let mut cap = Capture::new(Vec::new()).expect("pcap");
        for (i, p) in packets.iter().enumerate() {
            cap.write(Duration::from_millis(10 * i as u64 + 5), p)
                .expect("write");
        }
        let t = timeline(&PlainTcp, &cap.into_inner()).expect("timeline");
        let got: Vec<_> = t.iter().map(|p| (p.from_client, p.class)).collect();
        use PacketClass::*;
        assert_eq!(
            got,
            [
                (true, Control),
                (false, Control),
                (true, Control),
                (false, Data),
                (true, Invalid),
                (true, Close)
            ]
        );
        assert!((t[5].t - 0.05).abs() < 1e-9);
    }
}
