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
//! - [`Port`] (`port.rs`): SeasideVPN's PORT wire, two connections per
//!   session, its messages read with the server key.
//! - [`Foreign`] (`foreign.rs`): any other program, a client and a server
//!   command whose standard input and output carry the session.
//!
//! [`StreamSubject`]s run over the one TCP connection the lab hands them;
//! [`LabSubject`] is what the lab runs (each stream subject is one).
//! Datagram transports (plain UDP, TYPHOON) are [`DatagramSubject`]s
//! (`datagram.rs`), checked by a datagram exchange of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use etherparse::{SlicedPacket, TransportSlice};
use tokio::net::{TcpListener, TcpStream};

pub mod datagram;
mod foreign;
mod link;
mod link_udp;
mod nacl_frame;
mod plain;
mod plain_udp;
mod port;
mod tls;
mod typhoon;

pub use datagram::{DatagramSession, DatagramSubject};
pub use link_udp::{LinkUdp, LinkUdpSession};
pub use plain_udp::{PlainUdp, PlainUdpSession};
pub use typhoon::{
    gone_bound as typhoon_gone_bound, typhoon_classes, typhoon_timers, Typhoon, TyphoonChaosSession,
};

pub use foreign::{expand, Foreign, ForeignClassifier, ForeignListening, ForeignSession};
pub use link::{link_keepalive, Link, LinkSession};
pub use nacl_frame::{NaclFrame, NaclFrameSession};
pub use plain::{PlainSession, PlainTcp};
pub use port::{port_records, Port, PortChaosSession};
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

/// A protocol under test: its sessions and how its packets read.
pub trait Subject: Send + Sync + 'static {
    /// An established session.
    type Session: Session;
    /// Name for reports.
    fn name(&self) -> &str;
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

/// A protocol that runs over one TCP connection the lab hands it
/// (TLS, link, v1, plain); [`LabSubject`] comes with it.
pub trait StreamSubject: Subject {
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
}

/// How a subject's client reaches the server: its address and the socket
/// options the lab wants on every connection the client makes.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The server's address (the first one, for protocols with several).
    pub server: SocketAddr,
    /// `TCP_USER_TIMEOUT` for subjects that rely on TCP to notice a silent
    /// peer (the stale scenario), set on each connection.
    pub user_timeout: Option<Duration>,
}

impl Dial {
    /// A TCP connection to `addr` with the lab's options (no Nagle delay,
    /// the user timeout); `subject` names the error.
    pub async fn tcp(&self, subject: &str, addr: SocketAddr) -> Result<TcpStream, SubjectError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| SubjectError::new(subject, "connect", format!("{addr}: {e}")))?;
        self.configure(subject, &tcp)?;
        Ok(tcp)
    }

    /// The lab's options on a connection the subject's own code made.
    pub fn configure(&self, subject: &str, tcp: &TcpStream) -> Result<(), SubjectError> {
        let _ = tcp.set_nodelay(true);
        if let Some(t) = self.user_timeout {
            let ms = u32::try_from(t.as_millis()).unwrap_or(u32::MAX);
            nix::sys::socket::setsockopt(tcp, nix::sys::socket::sockopt::TcpUserTimeout, &ms)
                .map_err(|e| {
                    SubjectError::new(subject, "connect", format!("setting TCP_USER_TIMEOUT: {e}"))
                })?;
        }
        Ok(())
    }
}

/// A subject as the lab runs it: the server end listens at an address in
/// namespace B and takes one session; the client end dials from A. Every
/// [`StreamSubject`] is one; PORT (two connections) and foreign programs
/// (their own sockets) implement it directly.
pub trait LabSubject: Subject {
    /// What the server end holds while it listens.
    type Listening: Send;
    /// Server end: listen at `addr` (port 0: any); returns once a client
    /// may connect, with the address it listens at.
    fn listen(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = Result<(Self::Listening, SocketAddr), SubjectError>> + Send;
    /// Server end: the first session.
    fn take(
        &self,
        listening: &mut Self::Listening,
    ) -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
    /// Client end: a session with the server at `dial.server`.
    fn dial(&self, dial: &Dial)
        -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
    /// Whether [`LabSubject::dial`] returns when the session is set up
    /// (the lab then times the set-up); a foreign program's client is
    /// started, and its set-up is only seen in the capture.
    fn observes_setup(&self) -> bool {
        true
    }
    /// Why this subject cannot run through the stream proxy, which carries
    /// one connection to one address.
    fn needs_lab(&self) -> Option<String> {
        None
    }
    /// The scenario's namespace A is about to run the client, which relies
    /// on TCP to notice a silent peer but whose sockets the lab cannot
    /// reach: a subject may set what it needs there (run in A's thread).
    fn prepare_client_namespace(&self, user_timeout: Option<Duration>) -> Result<(), SubjectError> {
        let _ = user_timeout;
        Ok(())
    }
}

impl<T: StreamSubject> LabSubject for T {
    type Listening = TcpListener;

    async fn listen(&self, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SubjectError> {
        let err = |e: std::io::Error| {
            SubjectError::new(self.name(), "accept", format!("listening on {addr}: {e}"))
        };
        let listener = TcpListener::bind(addr).await.map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        Ok((listener, local))
    }

    async fn take(&self, listening: &mut TcpListener) -> Result<Self::Session, SubjectError> {
        let (tcp, _) = listening
            .accept()
            .await
            .map_err(|e| SubjectError::new(self.name(), "accept", e))?;
        let _ = tcp.set_nodelay(true);
        self.accept(tcp).await
    }

    async fn dial(&self, dial: &Dial) -> Result<Self::Session, SubjectError> {
        let tcp = dial.tcp(self.name(), dial.server).await?;
        self.connect(tcp).await
    }
}

/// Makes the calling thread's network namespace give up on a TCP
/// connection whose sent data stays unacknowledged for about `t`, as
/// `TCP_USER_TIMEOUT` does for one socket: for clients whose sockets the
/// lab cannot reach (their own code's, or another program's). Linux
/// counts retransmissions against a time as if each timeout started at
/// 200 ms and doubled (`tcp_retries2` n: 0.2 s · (2^(n+1) − 1)); the
/// largest n whose time is at most half of `t` leaves room for the real,
/// longer timeouts of a delayed path.
pub fn tcp_gives_up_within(t: Duration) -> Result<(), std::io::Error> {
    std::fs::write(
        "/proc/sys/net/ipv4/tcp_retries2",
        format!("{}\n", tcp_retries2_for(t)),
    )
}

/// The `tcp_retries2` of [`tcp_gives_up_within`] (at least 1).
pub fn tcp_retries2_for(t: Duration) -> u32 {
    let budget = t.as_secs_f64() / 2.0;
    (1..=15u32)
        .take_while(|n| 0.2 * (2f64.powi(*n as i32 + 1) - 1.0) <= budget)
        .last()
        .unwrap_or(1)
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
/// is [`PacketClass::Control`], other TCP and UDP payloads go to the subject.
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
        Ok(SlicedPacket {
            transport: Some(TransportSlice::Udp(udp)),
            ..
        }) => subject.classify(udp.payload()),
        _ => PacketClass::Unknown,
    }
}
