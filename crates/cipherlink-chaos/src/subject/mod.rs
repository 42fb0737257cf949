//! What a scenario puts through the lab: a protocol's two ends over TCP,
//! and a classifier for its packets. The protocols `cipherlink chaos run`
//! drives implement [`Subject`] here, one file each:
//!
//! - [`Tls`] (`tls.rs`): cipherlink's TLS (`Context`/`Tunnel`); the client
//!   writes its secrets to a key log, with which the timeline decrypts every
//!   TLS 1.3 record and classes packets by what they carry (Wireshark and
//!   tshark read the same file next to the pcaps).
//! - [`Link`] (`link.rs`): the link protocol, with `PORT_*` keepalive
//!   timers shortened ([`link_keepalive`]) and no padding, its records read
//!   through `cipherlink_link::wire` with each session's exported keys.
//! - [`NaclFrame`] (`nacl_frame.rs`): the proxy's NaCl box frame (named
//!   `v1` on the wire and in flags), pre-shared keys, classed by its header.
//! - [`PlainTcp`] (`plain.rs`): TCP alone, the baseline every subject is
//!   compared with.

use std::future::Future;

use etherparse::{SlicedPacket, TransportSlice};
use tokio::net::TcpStream;

mod link;
mod nacl_frame;
mod plain;
mod tls;

pub use link::{link_keepalive, Link, LinkSession};
pub use nacl_frame::{NaclFrame, NaclFrameSession};
pub use plain::{PlainSession, PlainTcp};
pub use tls::{Tls, TlsSession};

/// A failure of a subject's session, naming the subject and the stage.
#[derive(Debug, thiserror::Error)]
#[error("{subject} {stage}: {reason}")]
pub struct SubjectError {
    /// The subject's name.
    pub subject: String,
    /// `connect`, `accept`, `send`, `recv` or `close`.
    pub stage: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl SubjectError {
    pub(crate) fn new(
        subject: &str,
        stage: &'static str,
        reason: impl std::fmt::Display,
    ) -> SubjectError {
        SubjectError {
            subject: subject.into(),
            stage,
            reason: reason.to_string(),
        }
    }
}

/// Why a subject could not be made (before any session).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The TLS subject's test certificates or contexts.
    #[error("TLS subject: {what}: {source}")]
    Tls {
        /// What was being made.
        what: &'static str,
        /// Why it failed.
        source: cipherlink::Error,
    },
    /// The link subject's token or server endpoint.
    #[error("link subject: {what}: {source}")]
    Link {
        /// What was being made.
        what: &'static str,
        /// Why it failed.
        source: cipherlink_link::Error,
    },
}

/// What a packet carried, for timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketClass {
    /// Protocol set-up (for TLS: handshake, change cipher spec).
    Handshake,
    /// Application data.
    Data,
    /// An alert or error message of the protocol.
    Alert,
    /// Transport control only (a TCP segment without payload).
    Control,
    /// Payload the classifier does not recognise (e.g. a record's middle).
    Unknown,
    /// A keepalive of the protocol (ping or pong).
    Keepalive,
    /// The end of the connection: a TCP FIN or RST (with or without payload).
    Close,
    /// A packet whose IPv4 or TCP checksum is wrong (corrupted on the way):
    /// the receiving kernel drops it, so no protocol ever sees it.
    Invalid,
}

impl PacketClass {
    /// Lower-case name, as in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            PacketClass::Handshake => "handshake",
            PacketClass::Data => "data",
            PacketClass::Alert => "alert",
            PacketClass::Control => "control",
            PacketClass::Unknown => "unknown",
            PacketClass::Keepalive => "keepalive",
            PacketClass::Close => "close",
            PacketClass::Invalid => "invalid",
        }
    }
}

/// A protocol under test.
pub trait Subject: Send + Sync + 'static {
    /// An established session.
    type Session: Session;
    /// Name for reports.
    fn name(&self) -> &str;
    /// Client end: open a session over `io`.
    fn connect(
        &self,
        io: TcpStream,
    ) -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
    /// Server end: accept a session over `io`.
    fn accept(
        &self,
        io: TcpStream,
    ) -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
    /// Class of a TCP segment's payload (never empty).
    fn classify(&self, payload: &[u8]) -> PacketClass;
    /// Class of a TCP segment's payload that starts `offset` bytes into
    /// its direction's stream (`from_client`: client to server). Protocols
    /// whose framing is only known by position (the link protocol's
    /// handshake lengths) override this; the default reads the payload alone.
    fn classify_at(&self, from_client: bool, offset: u64, payload: &[u8]) -> PacketClass {
        let _ = (from_client, offset);
        self.classify(payload)
    }
    /// Longest time this subject itself takes to declare a silent peer gone
    /// (its keepalive: next ping, then every retry's timeout), if it has
    /// such a mechanism. `None`: it relies on TCP (the lab then sets
    /// `TCP_USER_TIMEOUT` on the client's socket for the stale scenario).
    fn gone_within(&self) -> Option<std::time::Duration> {
        None
    }
    /// The TLS secrets of this subject's sessions (an NSS key log), when it
    /// keeps them: the timeline then decrypts each TLS record and classes
    /// packets by what the records really carry ([`crate::tls_records`]).
    fn key_log(&self) -> Option<crate::tls_records::KeyLog> {
        None
    }
    /// Every record of a capture of this subject's sessions, decoded by the
    /// subject (TLS with [`Subject::key_log`]; others with secrets of their
    /// own, through [`crate::tls_records::RecordMap::from_streams`]); `None`
    /// leaves packets to [`Subject::classify_at`].
    fn decode_records(&self, pcap: &[u8]) -> Option<crate::tls_records::RecordMap> {
        self.key_log()
            .map(|keys| crate::tls_records::RecordMap::from_capture(pcap, &keys))
    }
}

/// An established session; the lab bounds every call in time.
pub trait Session: Send {
    /// Sends all of `data`.
    fn send(&mut self, data: &[u8]) -> impl Future<Output = Result<(), SubjectError>> + Send;
    /// Receives up to `max` bytes; empty at the end of the session.
    fn recv(&mut self, max: usize) -> impl Future<Output = Result<Vec<u8>, SubjectError>> + Send;
    /// Ends the session politely.
    fn close(&mut self) -> impl Future<Output = Result<(), SubjectError>> + Send;
}

/// Classifies one IPv4 packet of a subject's traffic: TCP without payload
/// is [`PacketClass::Control`], other payloads go to the subject.
pub fn classify_ipv4<S: Subject>(subject: &S, packet: &[u8]) -> PacketClass {
    match SlicedPacket::from_ip(packet) {
        Ok(SlicedPacket {
            transport: Some(TransportSlice::Tcp(tcp)),
            ..
        }) if tcp.payload().is_empty() => PacketClass::Control,
        Ok(SlicedPacket {
            transport: Some(TransportSlice::Tcp(tcp)),
            ..
        }) => subject.classify(tcp.payload()),
        _ => PacketClass::Unknown,
    }
}
