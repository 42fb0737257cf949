//! The `plain` transport of a UDP service: the flow header and the
//! datagram, no encryption and no authentication, over UDP between the two
//! ends. A client end's session is one socket connected to the server end;
//! the server end's listener makes a session of each source address (at
//! most `max_flows` of them, the least recently used evicted, idle ones
//! expired), and takes only datagrams that carry a flow header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::activity::{self, expire_unless_active, Activity};
use super::flows::FlowTable;
use super::header;
use super::queue::{queue_within, Budget, QueueRx, QueueTx, Refused};
use super::stats::UdpStats;
use super::transport::{Accepted, Reader, Session, TransportError, Writer};
use super::AbortOnDrop;

/// Sessions waiting for the server end to take them.
const ACCEPT_QUEUE: usize = 64;
/// Messages of one source address waiting for its session's reader (which
/// hands them on at once; more are dropped).
const INBOX_MESSAGES: usize = 64;
/// Their bytes.
const INBOX_BYTES: usize = 128 * 1024;

/// Receive buffer: larger than any UDP payload, so nothing is cut.
pub(crate) const RECV_BUFFER: usize = 65_536;

fn io(what: String) -> impl FnOnce(std::io::Error) -> TransportError {
    move |error| TransportError::Io { what, error }
}

/// A client end's way to its server end: a UDP socket connected to it.
#[derive(Debug, Default)]
pub(crate) struct PlainConnector;

impl PlainConnector {
    pub(crate) async fn connect(&self, target: &str) -> Result<Session, TransportError> {
        let addr = tokio::net::lookup_host(target)
            .await
            .map_err(io(format!("resolving {target}")))?
            .next()
            .ok_or_else(|| TransportError::Io {
                what: format!("resolving {target}"),
                error: std::io::Error::other("no address"),
            })?;
        let socket = UdpSocket::bind(super::unspecified(addr))
            .await
            .map_err(io("opening a UDP socket".into()))?;
        socket
            .connect(addr)
            .await
            .map_err(io(format!("connecting to {addr}")))?;
        let socket = Arc::new(socket);
        Ok(Session {
            reader: Reader::Plain(PlainReader::Socket {
                socket: socket.clone(),
                buf: vec![0; RECV_BUFFER],
            }),
            writer: Writer::Plain(PlainWriter::Connected(socket)),
        })
    }
}

/// The receiving half of a plain session.
pub(crate) enum PlainReader {
    /// A client end's socket.
    Socket {
        socket: Arc<UdpSocket>,
        buf: Vec<u8>,
    },
    /// A server end's session: what the listener took from its address.
    Inbox(QueueRx<Vec<u8>>),
}

impl PlainReader {
    pub(crate) async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self {
            PlainReader::Socket { socket, buf } => loop {
                match socket.recv(buf).await {
                    Ok(n) => return Ok(Some(buf[..n].to_vec())),
                    // ICMP errors from earlier sends (the server end not
                    // there yet): UDP carries on.
                    Err(e) => {
                        tracing::debug!("plain UDP session: receive: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
            PlainReader::Inbox(rx) => Ok(rx.recv().await),
        }
    }
}

/// The sending half of a plain session.
pub(crate) enum PlainWriter {
    Connected(Arc<UdpSocket>),
    /// A server end's session: the listener's socket, to the session's
    /// address; its sends keep the session from expiring.
    To {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        activity: Activity,
    },
}

impl PlainWriter {
    pub(crate) async fn send(&mut self, message: &[u8]) -> Result<(), TransportError> {
        let sent = match self {
            PlainWriter::Connected(socket) => socket.send(message).await,
            PlainWriter::To {
                socket,
                peer,
                activity,
            } => {
                activity.mark();
                socket.send_to(message, *peer).await
            }
        };
        // A refused or lost datagram is UDP's lot, not the session's end.
        if let Err(e) = sent {
            tracing::debug!("plain UDP session: send: {e}");
        }
        Ok(())
    }
}

/// A server end's plain listener.
#[derive(Debug)]
pub(crate) struct PlainListener {
    local: SocketAddr,
    incoming: mpsc::Receiver<Accepted>,
    _task: AbortOnDrop,
}

struct Peer {
    inbox: QueueTx<Vec<u8>>,
    activity: Activity,
}

struct Demux {
    socket: Arc<UdpSocket>,
    peers: FlowTable<SocketAddr, Peer>,
    accepted: mpsc::Sender<Accepted>,
    stats: Arc<UdpStats>,
    /// Shared by every source address's inbox (and the server end's queues).
    budget: Budget,
}

impl PlainListener {
    /// Listens on `addr`; a source address idle for `idle` is forgotten
    /// (its session ends), and at most `cap` are held.
    pub(crate) async fn bind(
        addr: &str,
        idle: Duration,
        cap: usize,
        stats: Arc<UdpStats>,
        budget: Budget,
    ) -> std::io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local = socket.local_addr()?;
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let demux = Demux {
            socket,
            peers: FlowTable::new(idle, cap),
            accepted: tx,
            stats,
            budget,
        };
        Ok(Self {
            local,
            incoming,
            _task: AbortOnDrop(tokio::spawn(demux.run())),
        })
    }

    pub(crate) async fn accept(&mut self) -> Option<Accepted> {
        self.incoming.recv().await
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Demux {
    async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let deadline = self.peers.next_expiry().map(tokio::time::Instant::from_std);
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(from, &buf[..n]),
                    Err(e) => {
                        tracing::debug!("plain UDP listener: receive: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                () = super::sleep_until(deadline) => {
                    let gone = expire_unless_active(&mut self.peers, activity::now(), |p| p.activity.last());
                    for (peer, _) in gone {
                        tracing::debug!("plain UDP session from {peer}: idle; ended");
                    }
                }
                () = self.accepted.closed() => break,
            }
        }
    }

    fn datagram(&mut self, from: SocketAddr, d: &[u8]) {
        // Garbage makes no session.
        if header::decode(d).is_err() {
            UdpStats::add(&self.stats.malformed);
            return;
        }
        let now = activity::now();
        if let Some(peer) = self.peers.touch(&from, now) {
            match peer.inbox.try_send(d.to_vec(), d.len()) {
                Ok(()) => return,
                Err(Refused::Full) => return UdpStats::add(&self.stats.queue_full),
                // Its session ended: this datagram starts a new one.
                Err(Refused::Closed) => {
                    self.peers.remove(&from);
                }
            }
        }
        let (inbox, rx) = queue_within(INBOX_MESSAGES, INBOX_BYTES, Some(self.budget.clone()));
        let activity = Activity::new(now);
        let session = Session {
            reader: Reader::Plain(PlainReader::Inbox(rx)),
            writer: Writer::Plain(PlainWriter::To {
                socket: self.socket.clone(),
                peer: from,
                activity: activity.clone(),
            }),
        };
        let accepted = Accepted {
            session,
            name: "plain".into(),
            peer: from,
            revoke: None,
        };
        if self.accepted.try_send(accepted).is_err() {
            return UdpStats::add(&self.stats.queue_full);
        }
        if inbox.try_send(d.to_vec(), d.len()).is_err() {
            UdpStats::add(&self.stats.queue_full);
        }
        if let Some((old, _)) = self.peers.insert(from, Peer { inbox, activity }, now) {
            tracing::debug!("plain UDP session from {old}: evicted for {from}");
        }
    }
}
