//! Datagram transports as the lab runs them: each end sends and receives
//! whole messages that may be lost, duplicated or reordered on the way
//! ([`crate::dgram_exchange`] says what is checked). A transport is one
//! file implementing [`DatagramSubject`], shaped like the drivers it wraps
//! (`connect` -> session, `listener.accept()`):
//!
//! - [`super::PlainUdp`] (`plain_udp.rs`): UDP alone, the baseline.
//! - [`super::Typhoon`] (`typhoon.rs`): SeasideVPN's TYPHOON (`cipherlink-typhoon`),
//!   its datagrams read with the server key.
//! - [`super::LinkUdp`] (`link_udp.rs`): the link protocol's datagram mode, its
//!   datagrams read with the sessions' exported secrets.
//!
//! A datagram subject runs only in the TUN lab: the stream proxy carries
//! one TCP connection.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use super::{PacketClass, SubjectError};

/// A datagram transport under test.
pub trait DatagramSubject: Send + Sync + 'static {
    /// An established session.
    type Session: DatagramSession;
    /// What the server end holds while it listens.
    type Listening: Send;
    /// Name for reports and file names.
    fn name(&self) -> &str;
    /// The class of each UDP payload of a capture of this subject's
    /// sessions, given in capture order with its direction
    /// (`from_client`); one class per payload. The default calls every
    /// payload data (nothing in it has a known shape).
    fn classify_datagrams(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
        vec![PacketClass::Data; datagrams.len()]
    }
    /// Longest time this transport takes to declare a silent peer gone,
    /// if it has a way to notice one at all (plain UDP has none).
    fn gone_within(&self) -> Option<Duration> {
        None
    }
    /// Whether the transport promises each datagram reaches the
    /// application at most once (it drops the network's duplicates and
    /// replays); the verdict then fails any duplicate delivered.
    fn at_most_once(&self) -> bool {
        false
    }
    /// Server end: listen at `addr` (port 0: any); returns once a client
    /// may send, with the address it listens at.
    fn listen(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = Result<(Self::Listening, SocketAddr), SubjectError>> + Send;
    /// Server end: the first session.
    fn take(
        &self,
        listening: &mut Self::Listening,
    ) -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
    /// Client end: a session with the server at `server`.
    fn dial(
        &self,
        server: SocketAddr,
    ) -> impl Future<Output = Result<Self::Session, SubjectError>> + Send;
}

/// An established datagram session; the lab bounds every call in time.
pub trait DatagramSession: Send {
    /// Sends one datagram (delivery is not promised).
    fn send(&mut self, datagram: &[u8]) -> impl Future<Output = Result<(), SubjectError>> + Send;
    /// The next datagram; `None` once the peer ended the session, an error
    /// when the transport gave it up (e.g. declared the peer gone). Must be
    /// cancel-safe: the exchange drops it to send while waiting.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, SubjectError>> + Send;
    /// Ends the session politely (tells the peer, if the transport can).
    fn close(&mut self) -> impl Future<Output = Result<(), SubjectError>> + Send;
}
