//! The records of a capture, decoded by the protocol itself: TLS 1.3
//! records decrypted with the sessions' key log
//! (`dangerous.key_log_file`, the NSS format Wireshark reads), so that each
//! packet's class is what its records really carry. On the wire TLS 1.3
//! hides every record after the ServerHello as application data: the
//! server's certificate, both Finished messages, tickets and close_notify
//! all look like data without the keys.
//!
//! Each TCP direction is reassembled from the packets the receiver would
//! accept (valid checksums; the first copy of each byte wins, so duplicates
//! and retransmissions do not count twice), then cut into records. A record
//! of the encrypted type is opened with the handshake keys, then with the
//! application keys (AES-128-GCM with SHA-256, the suite cipherlink prefers;
//! a record neither opens stays unclassified). Its inner type decides the
//! class: handshake, data, or alert (`close_notify` is a close).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::hkdf::{Prk, HKDF_SHA256};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;

use crate::subject::PacketClass;

/// Bytes of a record header.
const HEADER: usize = 5;
/// A record's body is at most 2^14 + 256 bytes in TLS 1.3.
const MAX_BODY: usize = (1 << 14) + 256;
/// A direction's stream is reassembled up to this many bytes (the lab's
/// scenarios send far less; the bound keeps a hostile capture small).
const MAX_STREAM: u64 = 64 << 20;

/// A TLS segment's class from its record header alone (content type, then
/// version 3.x): what can be said without the keys. TLS 1.3 hides every
/// record after the ServerHello as application data.
pub fn classify_header(payload: &[u8]) -> PacketClass {
    match payload {
        [20 | 22, 3, ..] => PacketClass::Handshake,
        [23, 3, ..] => PacketClass::Data,
        [21, 3, ..] => PacketClass::Alert,
        _ => PacketClass::Unknown,
    }
}

/// The secrets of one session, by label.
#[derive(Debug, Default, Clone)]
struct Secrets {
    client_handshake: Option<Vec<u8>>,
    server_handshake: Option<Vec<u8>>,
    client_traffic: Option<Vec<u8>>,
    server_traffic: Option<Vec<u8>>,
}

/// A key log: TLS 1.3 secrets by client random.
#[derive(Debug, Default, Clone)]
pub struct KeyLog {
    sessions: HashMap<Vec<u8>, Secrets>,
}

impl KeyLog {
    /// Parses NSS key log text; lines it does not know are skipped.
    pub fn parse(text: &str) -> KeyLog {
        let mut log = KeyLog::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(label), Some(random), Some(secret)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else {
                continue;
            };
            let entry = log.sessions.entry(random).or_default();
            let slot = match label {
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.client_handshake,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.server_handshake,
                "CLIENT_TRAFFIC_SECRET_0" => &mut entry.client_traffic,
                "SERVER_TRAFFIC_SECRET_0" => &mut entry.server_traffic,
                _ => continue,
            };
            *slot = Some(secret);
        }
        log
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One TCP connection: (client, server).
type Flow = (SocketAddrV4, SocketAddrV4);

/// A record's place in its direction's stream, `start..end`, and its class.
pub type Span = (u64, u64, PacketClass);

/// Where each record of each direction lies in its TCP stream, and what it is.
#[derive(Debug, Default)]
pub struct RecordMap {
    /// Per flow, per direction (0: client to server), record spans
    /// `(start, end, class)` in stream order.
    spans: HashMap<Flow, [Vec<Span>; 2]>,
}

impl RecordMap {
    /// Decodes the connections of a pcap of raw IPv4 packets with a
    /// protocol's own decoder: `decode(to_server, to_client)` gets each
    /// connection's two reassembled streams (from the packets a receiver
    /// accepted) and returns their record spans, client to server first.
    /// The link protocol's subject decodes its records this way.
    pub fn from_streams(
        pcap: &[u8],
        mut decode: impl FnMut(&[u8], &[u8]) -> [Vec<Span>; 2],
    ) -> RecordMap {
        RecordMap {
            spans: reassemble(pcap)
                .into_iter()
                .map(|(flow, [up, down])| (flow, decode(&up, &down)))
                .collect(),
        }
    }

    /// Decodes the TLS connections of a pcap of raw IPv4 packets.
    pub fn from_capture(pcap: &[u8], keys: &KeyLog) -> RecordMap {
        let streams = reassemble(pcap);
        let mut map = RecordMap::default();
        for (flow, [to_server, to_client]) in streams {
            let secrets = client_random(&to_server).and_then(|r| keys.sessions.get(r));
            let spans = [
                records(
                    &to_server,
                    secrets.and_then(|s| s.client_handshake.as_deref()),
                    secrets.and_then(|s| s.client_traffic.as_deref()),
                ),
                records(
                    &to_client,
                    secrets.and_then(|s| s.server_handshake.as_deref()),
                    secrets.and_then(|s| s.server_traffic.as_deref()),
                ),
            ];
            map.spans.insert(flow, spans);
        }
        map
    }

    /// The class of the record holding byte `offset` of a direction.
    pub fn class_at(&self, flow: Flow, from_client: bool, offset: u64) -> Option<PacketClass> {
        let spans = &self.spans.get(&flow)?[usize::from(!from_client)];
        let i = spans.partition_point(|(_, end, _)| *end <= offset);
        spans
            .get(i)
            .filter(|(start, _, _)| *start <= offset)
            .map(|(_, _, class)| *class)
    }

    /// Each connection's record classes in stream order, client to server
    /// first, in no particular order of connections.
    pub fn classes(&self) -> Vec<[Vec<PacketClass>; 2]> {
        self.spans
            .values()
            .map(|dirs| {
                dirs.clone()
                    .map(|spans| spans.iter().map(|s| s.2).collect())
            })
            .collect()
    }
}

/// Each flow's two byte streams, from the packets a receiver would accept.
fn reassemble(pcap: &[u8]) -> HashMap<Flow, [Vec<u8>; 2]> {
    let mut isn: HashMap<Flow, [Option<u32>; 2]> = HashMap::new();
    let mut pieces: HashMap<Flow, [BTreeMap<u64, Vec<u8>>; 2]> = HashMap::new();
    let Ok(mut reader) = PcapReader::new(pcap) else {
        return HashMap::new();
    };
    while let Some(Ok(packet)) = reader.next_packet() {
        let Ok(SlicedPacket {
            net: Some(NetSlice::Ipv4(ip)),
            transport: Some(TransportSlice::Tcp(tcp)),
            ..
        }) = SlicedPacket::from_ip(&packet.data)
        else {
            continue;
        };
        let header = ip.header();
        let ip_ok = header.to_header().calc_header_checksum() == header.header_checksum();
        let tcp_ok = tcp
            .calc_checksum_ipv4(header.source(), header.destination())
            .is_ok_and(|sum| sum == tcp.checksum());
        if !(ip_ok && tcp_ok) {
            continue;
        }
        let src = SocketAddrV4::new(header.source_addr(), tcp.source_port());
        let dst = SocketAddrV4::new(header.destination_addr(), tcp.destination_port());
        let (flow, dir) = if isn.contains_key(&(src, dst)) {
            ((src, dst), 0)
        } else if isn.contains_key(&(dst, src)) {
            ((dst, src), 1)
        } else if tcp.syn() && !tcp.ack() {
            ((src, dst), 0)
        } else {
            continue;
        };
        let seen = isn.entry(flow).or_default();
        if tcp.syn() {
            seen[dir] = Some(tcp.sequence_number());
            continue;
        }
        let (Some(first), payload) = (seen[dir], tcp.payload()) else {
            continue;
        };
        if payload.is_empty() {
            continue;
        }
        let offset = u64::from(tcp.sequence_number().wrapping_sub(first).wrapping_sub(1));
        if offset > MAX_STREAM {
            continue;
        }
        pieces.entry(flow).or_default()[dir]
            .entry(offset)
            .or_insert_with(|| payload.to_vec());
    }
    pieces
        .into_iter()
        .map(|(flow, [a, b])| (flow, [contiguous(a), contiguous(b)]))
        .collect()
}

/// The stream from byte 0 up to its first gap.
fn contiguous(pieces: BTreeMap<u64, Vec<u8>>) -> Vec<u8> {
    let mut stream = Vec::new();
    for (offset, bytes) in pieces {
        let have = stream.len() as u64;
        if offset > have {
            break;
        }
        let skip = usize::try_from(have - offset).unwrap_or(usize::MAX);
        if let Some(rest) = bytes.get(skip..) {
            stream.extend_from_slice(rest);
        }
    }
    stream
}

/// The ClientHello's random (bytes 11..43 of the client's first record).
fn client_random(to_server: &[u8]) -> Option<&[u8]> {
    match to_server {
        [22, 3, _, _, _, 1, ..] => to_server.get(11..43),
        _ => None,
    }
}

/// A direction's AEAD keys of one epoch and its record counter.
struct Epoch {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Epoch {
    fn new(secret: &[u8]) -> Option<Epoch> {
        let prk = Prk::new_less_safe(HKDF_SHA256, secret);
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        expand_label(&prk, b"key", &mut key)?;
        expand_label(&prk, b"iv", &mut iv)?;
        Some(Epoch {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).ok()?),
            iv,
            seq: 0,
        })
    }

    /// Opens one record; the inner content type and the second plaintext
    /// byte (an alert's description) on success.
    fn open(&mut self, header: &[u8], body: &[u8]) -> Option<(u8, Option<u8>)> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut buf,
            )
            .ok()?;
        self.seq += 1;
        let end = plain.iter().rposition(|&b| b != 0)?;
        Some((plain[end], plain.get(1).copied()))
    }
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(prk: &Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let full: Vec<u8> = [b"tls13 ".as_slice(), label].concat();
    let label_len = [u8::try_from(full.len()).ok()?];
    let info: [&[u8]; 4] = [&length, &label_len, &full, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

struct Len(usize);

impl aws_lc_rs::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Cuts a direction's stream into records and classifies each.
fn records(stream: &[u8], handshake: Option<&[u8]>, traffic: Option<&[u8]>) -> Vec<Span> {
    let mut handshake = handshake.and_then(Epoch::new);
    let mut traffic = traffic.and_then(Epoch::new);
    let mut spans = Vec::new();
    let mut at = 0usize;
    while let Some(header) = stream.get(at..at + HEADER) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_BODY || header[1] != 3 {
            break;
        }
        let Some(body) = stream.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let class = match header[0] {
            20..=22 => classify_header(header),
            23 => {
                let opened = handshake.as_mut().and_then(|e| e.open(header, body));
                let opened = opened.or_else(|| {
                    let opened = traffic.as_mut().and_then(|e| e.open(header, body));
                    if opened.is_some() {
                        // Handshake records never follow the first traffic
                        // record: stop trying (and failing) their key.
                        handshake = None;
                    }
                    opened
                });
                match opened {
                    Some((22, _)) => PacketClass::Handshake,
                    Some((23, _)) => PacketClass::Data,
                    Some((21, Some(0))) => PacketClass::Close,
                    Some((21, _)) => PacketClass::Alert,
                    _ => PacketClass::Unknown,
                }
            }
            _ => break,
        };
        let end = at + HEADER + len;
        spans.push((at as u64, end as u64, class));
        at = end;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_log_lines_parse_and_junk_is_skipped() {
        let random = "ab".repeat(32);
        let text = format!(
            "# comment\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {random} {}\nSERVER_TRAFFIC_SECRET_0 {random} zz\nEXPORTER_SECRET {random} 00\n",
            "01".repeat(32)
        );
        let log = KeyLog::parse(&text);
        let s = &log.sessions[&vec![0xab; 32]];
        assert_eq!(s.client_handshake.as_deref(), Some(&[1u8; 32][..]));
        assert!(s.server_traffic.is_none());
    }

    #[test]
    fn spans_cover_the_stream_and_stop_at_a_cut_record() {
        let mut stream = vec![22, 3, 1, 0, 4, 1, 0, 0, 0];
        stream.extend_from_slice(&[23, 3, 3, 0, 2, 9, 9]);
        stream.extend_from_slice(&[23, 3, 3, 0, 9, 1]);
        let spans = records(&stream, None, None);
        assert_eq!(
            spans,
            [
                (0, 9, PacketClass::Handshake),
                (9, 16, PacketClass::Unknown)
            ]
        );
        let map = RecordMap {
            spans: HashMap::from([(
                (
                    SocketAddrV4::new([10, 0, 0, 1].into(), 1),
                    SocketAddrV4::new([10, 0, 0, 2].into(), 2),
                ),
                [spans, Vec::new()],
            )]),
        };
        let flow = *map.spans.keys().next().expect("one flow");
        assert_eq!(map.class_at(flow, true, 3), Some(PacketClass::Handshake));
        assert_eq!(map.class_at(flow, true, 9), Some(PacketClass::Unknown));
        assert_eq!(map.class_at(flow, true, 16), None);
        assert_eq!(map.class_at(flow, false, 0), None);
    }
}
