//! pcap files of what the lab did, for tshark or Wireshark.
//!
//! [`Capture`] writes raw IPv4 packets (link type RAW, nanosecond
//! timestamps) with `pcap-file`. [`TcpFlow`] makes the IPv4/TCP packets of
//! one connection (handshake, data, FIN, RST) with correct sequence
//! numbers and checksums (built by `etherparse`), so a stream the proxy
//! forwarded can be saved as a capture that dissectors follow, though no
//! packet of it ever crossed a real interface.

use std::io::Write;
use std::net::SocketAddrV4;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

/// Largest packet written (pcap's usual snap length, and IPv4's maximum).
pub const MAX_PACKET: usize = 65_535;
/// Payload per TCP segment that [`TcpFlow::data`] makes.
pub const MSS: usize = 1460;

/// Why a capture could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The pcap writer failed (usually the file's I/O).
    #[error("writing pcap: {0}")]
    Pcap(#[from] pcap_file::PcapError),
    /// A packet longer than [`MAX_PACKET`].
    #[error("packet of {len} bytes is longer than the {MAX_PACKET}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The file could not be created, written or flushed.
    #[error("pcap file: {0}")]
    Io(#[from] std::io::Error),
    /// The packet could not be built.
    #[error("building an IPv4/TCP packet: {0}")]
    Build(String),
    /// The output file was refused or could not be written.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// An in-memory capture reached its bound.
    #[error("the in-memory capture reached its bound of {limit} bytes")]
    Full {
        /// The bound.
        limit: usize,
    },
}

/// A capture held in memory, bounded: a write that would take it past
/// `limit` bytes fails, and so does every write after it (the pcap would
/// otherwise end in half a record).
#[derive(Debug)]
pub struct CappedBuf {
    bytes: Vec<u8>,
    limit: usize,
    full: bool,
}

impl CappedBuf {
    /// An empty buffer that holds at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        CappedBuf {
            bytes: Vec::new(),
            limit,
            full: false,
        }
    }

    /// Whether a write was refused.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What was written; [`CaptureError::Full`] if a write was refused.
    pub fn into_bytes(self) -> Result<Vec<u8>, CaptureError> {
        if self.full {
            return Err(CaptureError::Full { limit: self.limit });
        }
        Ok(self.bytes)
    }
}

impl Write for CappedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.full || buf.len() > self.limit - self.bytes.len() {
            self.full = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!(
                    "the in-memory capture reached its bound of {} bytes",
                    self.limit
                ),
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pcap file being written.
#[derive(Debug)]
pub struct Capture<W: Write> {
    writer: PcapWriter<W>,
}

impl<W: Write> Capture<W> {
    /// Writes the file header: raw IPv4 packets, nanosecond timestamps.
    pub fn new(out: W) -> Result<Self, CaptureError> {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: MAX_PACKET as u32,
            ..PcapHeader::default()
        };
        Ok(Capture {
            writer: PcapWriter::with_header(out, header)?,
        })
    }

    /// Writes one packet seen at `at` (since the Unix epoch, or since the
    /// lab's start for a virtual clock).
    pub fn write(&mut self, at: Duration, packet: &[u8]) -> Result<(), CaptureError> {
        if packet.len() > MAX_PACKET {
            return Err(CaptureError::TooLarge { len: packet.len() });
        }
        // Checked just above: the length fits in 32 bits.
        let len = packet.len() as u32;
        self.writer
            .write_packet(&PcapPacket::new(at, len, packet))?;
        Ok(())
    }

    /// The underlying writer (flush it if it buffers).
    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

/// Which end of a [`TcpFlow`] sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connecting side.
    Client,
    /// The accepting side.
    Server,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// Builds the packets of one TCP connection, keeping sequence numbers.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    ends: [SocketAddrV4; 2],
    next_seq: [u32; 2],
}

#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    psh: bool,
    fin: bool,
    rst: bool,
}

impl TcpFlow {
    /// A connection from `client` to `server` whose initial sequence
    /// numbers are `isn` (client's, server's).
    pub fn new(client: SocketAddrV4, server: SocketAddrV4, isn: [u32; 2]) -> Self {
        TcpFlow {
            ends: [client, server],
            next_seq: isn,
        }
    }

    /// SYN, SYN-ACK and ACK.
    pub fn handshake(&mut self) -> Result<[Vec<u8>; 3], CaptureError> {
        let syn = self.segment(
            Side::Client,
            Flags {
                syn: true,
                ..Flags::default()
            },
            &[],
        )?;
        let syn_ack = self.segment(
            Side::Server,
            Flags {
                syn: true,
                ack: true,
                ..Flags::default()
            },
            &[],
        )?;
        let ack = self.segment(Side::Client, ack(), &[])?;
        Ok([syn, syn_ack, ack])
    }

    /// Data from `from`, in segments of at most [`MSS`] bytes.
    pub fn data(&mut self, from: Side, payload: &[u8]) -> Result<Vec<Vec<u8>>, CaptureError> {
        payload
            .chunks(MSS)
            .map(|chunk| {
                self.segment(
                    from,
                    Flags {
                        ack: true,
                        psh: true,
                        ..Flags::default()
                    },
                    chunk,
                )
            })
            .collect()
    }

    /// An acknowledgement from `from` of everything the other side sent.
    pub fn ack(&mut self, from: Side) -> Result<Vec<u8>, CaptureError> {
        self.segment(from, ack(), &[])
    }

    /// FIN (with ACK) from `from`.
    pub fn fin(&mut self, from: Side) -> Result<Vec<u8>, CaptureError> {
        self.segment(
            from,
            Flags {
                fin: true,
                ack: true,
                ..Flags::default()
            },
            &[],
        )
    }

    /// RST (with ACK) from `from`.
    pub fn reset(&mut self, from: Side) -> Result<Vec<u8>, CaptureError> {
        self.segment(
            from,
            Flags {
                rst: true,
                ack: true,
                ..Flags::default()
            },
            &[],
        )
    }

    fn segment(
        &mut self,
        from: Side,
        flags: Flags,
        payload: &[u8],
    ) -> Result<Vec<u8>, CaptureError> {
        let me = from.index();
        let peer = 1 - me;
        let (src, dst) = (self.ends[me], self.ends[peer]);
        let seq = self.next_seq[me];
        let mut b = PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64).tcp(
            src.port(),
            dst.port(),
            seq,
            u16::MAX,
        );
        if flags.ack {
            b = b.ack(self.next_seq[peer]);
        }
        if flags.syn {
            b = b.syn();
        }
        if flags.psh {
            b = b.psh();
        }
        if flags.fin {
            b = b.fin();
        }
        if flags.rst {
            b = b.rst();
        }
        let size = b.size(payload.len());
        if size > MAX_PACKET {
            return Err(CaptureError::TooLarge { len: size });
        }
        let mut packet = Vec::with_capacity(size);
        b.write(&mut packet, payload)
            .map_err(|e| CaptureError::Build(e.to_string()))?;
        // SYN and FIN take one sequence number each; RST takes none.
        let used = payload.len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
        self.next_seq[me] = seq.wrapping_add(used);
        Ok(packet)
    }
}

fn ack() -> Flags {
    Flags {
        ack: true,
        ..Flags::default()
    }
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
