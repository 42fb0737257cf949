//! What carries a UDP service's messages between its two ends: one session
//! per client end, messages (datagrams) both ways. Each transport is one
//! arm of these enums; the flow logic (client.rs, server.rs) sees only
//! [`Connector::connect`], [`Listener::accept`], [`Reader::recv`] and
//! [`Writer::send`]. A datagram transport whose driver has TYPHOON's shape
//! (`connect` -> session with `reader.recv()` and `writer.send()`, a
//! listener with `accept()`) is one more arm of each.

use std::net::SocketAddr;
use std::time::Duration;

use super::link::{LinkUdpConnector, LinkUdpServer};
use super::plain::{PlainConnector, PlainListener, PlainReader, PlainWriter};
use super::typhoon::{Revoke, TyphoonConnector, TyphoonServer};
use cipherlink_link::dgram::driver::{DgramReader, DgramWriter};
use cipherlink_typhoon::driver::{TyphoonReader, TyphoonWriter};

/// Largest UDP payload over IPv4: the most one `plain` message holds.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Why a session could not be opened, or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A socket operation failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done, with the address.
        what: String,
        /// The OS reason.
        error: std::io::Error,
    },
    /// The TYPHOON driver's reason.
    #[error("TYPHOON: {0}")]
    Typhoon(#[from] cipherlink_typhoon::Error),
    /// The link's reason (its datagram mode).
    #[error("link: {0}")]
    Link(#[from] cipherlink_link::Error),
    /// No session within the time allowed.
    #[error("no session within {0:?} (--connect-timeout, connect_timeout{1})")]
    Timeout(Duration, &'static str),
    /// The other end ended the session.
    #[error("the other end ended the session")]
    Ended,
    /// The client's token was revoked (the token store was re-read).
    #[error("the token of {0} was revoked (token store re-read); session ended")]
    Revoked(String),
}

/// How a client end opens its session to the server end.
#[derive(Debug)]
pub(crate) enum Connector {
    Plain(PlainConnector),
    // One per service: its size does not matter.
    Typhoon(Box<TyphoonConnector>),
    Link(Box<LinkUdpConnector>),
}

/// One session: the server end (or the client end) on the other side.
pub(crate) struct Session {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
}

/// The receiving half of a session.
pub(crate) enum Reader {
    Plain(PlainReader),
    Typhoon(TyphoonReader),
    Link(DgramReader),
}

/// The sending half of a session.
pub(crate) enum Writer {
    Plain(PlainWriter),
    Typhoon(TyphoonWriter),
    Link(DgramWriter),
}

/// How a server end takes sessions.
#[derive(Debug)]
pub(crate) enum Listener {
    Plain(PlainListener),
    Typhoon(TyphoonServer),
    Link(LinkUdpServer),
}

/// A session a server end accepted.
pub(crate) struct Accepted {
    pub(crate) session: Session,
    /// Who: the token's name, or `plain`.
    pub(crate) name: String,
    pub(crate) peer: SocketAddr,
    /// Ends the session when its token is revoked.
    pub(crate) revoke: Option<Revoke>,
}

/// The most bytes one message (header and datagram) of `transport` holds.
pub(crate) fn max_message(transport: crate::config::Transport) -> usize {
    match transport {
        crate::config::Transport::Typhoon => cipherlink_typhoon::wire::MAX_DATA,
        crate::config::Transport::Link => cipherlink_link::dgram::wire::MAX_DATA,
        _ => MAX_UDP_PAYLOAD,
    }
}

impl Connector {
    /// Opens a session to `target` (`host:port`).
    pub(crate) async fn connect(&self, target: &str) -> Result<Session, TransportError> {
        match self {
            Connector::Plain(c) => c.connect(target).await,
            Connector::Typhoon(c) => c.connect(target).await,
            Connector::Link(c) => c.connect(target).await,
        }
    }
}

impl Reader {
    /// The next message; `Ok(None)` when the other end ended the session.
    pub(crate) async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self {
            Reader::Plain(r) => r.recv().await,
            Reader::Typhoon(r) => Ok(r.recv().await?),
            Reader::Link(r) => Ok(r.recv().await?),
        }
    }
}

impl Writer {
    /// Sends one message (at most [`max_message`] bytes).
    pub(crate) async fn send(&mut self, message: &[u8]) -> Result<(), TransportError> {
        match self {
            Writer::Plain(w) => w.send(message).await,
            Writer::Typhoon(w) => Ok(w.send(message).await?),
            Writer::Link(w) => Ok(w.send(message).await?),
        }
    }
}

impl Listener {
    /// The next session; `None` when the listener stopped.
    pub(crate) async fn accept(&mut self) -> Option<Accepted> {
        match self {
            Listener::Plain(l) => l.accept().await,
            Listener::Typhoon(l) => l.accept().await,
            Listener::Link(l) => l.accept().await,
        }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        match self {
            Listener::Plain(l) => l.local_addr(),
            Listener::Typhoon(l) => l.local_addr(),
            Listener::Link(l) => l.local_addr(),
        }
    }
}
