//! The server end of a UDP service: sessions from client ends, and per
//! (session, flow id) a UDP socket connected to the service, whose replies
//! go back on that session with that flow id.
//!
//! One task owns the flow table and the sessions; each session's reading
//! and sending, and each flow's replies, are tasks of their own behind
//! bounded queues, and datagrams to the service leave with a non-blocking
//! send: a slow service or a full queue drops datagrams (counted), never
//! stalls another flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::activity::{self, Activity};
use super::fair::FairFlows;
use super::header::{self, HEADER_LEN};
use super::plain::RECV_BUFFER;
use super::queue::{queue, queue_within, QueueRx, QueueTx, Refused, QUEUE_BYTES, QUEUE_MESSAGES};
use super::stats::UdpStats;
use super::transport::{Accepted, Listener, Reader, TransportError, Writer};
use super::typhoon::Revoke;
use super::{AbortOnDrop, UdpShared};

/// Datagrams a flow's task reads from its socket before it lets others run.
const BATCH: usize = 64;

struct Flow {
    socket: Arc<UdpSocket>,
    activity: Activity,
    _replies: AbortOnDrop,
}

struct SessionSlot {
    out: QueueTx<Vec<u8>>,
    name: String,
    peer: SocketAddr,
    _tasks: [AbortOnDrop; 2],
}

struct ServerEnd {
    shared: Arc<UdpShared>,
    service: SocketAddr,
    flows: FairFlows<Flow>,
    sessions: HashMap<u64, SessionSlot>,
    next_session: u64,
    inbound_tx: QueueTx<(u64, Vec<u8>)>,
    ended_tx: mpsc::UnboundedSender<(u64, TransportError)>,
}

/// Runs the server end until `stop` turns true or the listener stops.
pub(crate) async fn run(
    shared: Arc<UdpShared>,
    mut listener: Listener,
    service: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    // Every session's messages, in one queue: (session, message).
    let (inbound_tx, mut inbound) = queue(QUEUE_MESSAGES * 4, QUEUE_BYTES * 4);
    // At most two per session, and the listener bounds the sessions.
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let mut end = ServerEnd {
        flows: FairFlows::new(shared.idle, shared.max_flows),
        shared,
        service,
        sessions: HashMap::new(),
        next_session: 0,
        inbound_tx,
        ended_tx,
    };
    loop {
        let deadline = end.flows.next_expiry().map(tokio::time::Instant::from_std);
        tokio::select! {
            a = listener.accept() => match a {
                Some(a) => end.open_session(a),
                None => {
                    tracing::error!(service = %end.shared.name, "udp: the listener stopped");
                    break;
                }
            },
            Some((id, m)) = inbound.recv() => end.on_session_message(id, &m),
            Some((id, e)) = ended.recv() => end.end_session(id, e),
            () = super::sleep_until(deadline) => end.expire(),
            () = super::stopped(&mut stop) => break,
        }
    }
}

impl ServerEnd {
    fn stats(&self) -> &UdpStats {
        &self.shared.stats
    }

    fn open_session(&mut self, a: Accepted) {
        // The listener bounds its sessions (`max_sessions`), ending one to
        // make room for another; that end may reach us after the newcomer,
        // so refusing at the bound itself would refuse the newcomer the
        // listener chose to admit. This only catches a listener gone wrong.
        if self.sessions.len() >= 2 * super::max_sessions(self.shared.max_flows) {
            tracing::warn!(
                service = %self.shared.name,
                "udp: session from {} ({}) refused: {} sessions open",
                a.peer,
                a.name,
                self.sessions.len()
            );
            return;
        }
        let id = self.next_session;
        self.next_session += 1;
        let (out, rx) = queue_within(
            QUEUE_MESSAGES,
            QUEUE_BYTES,
            Some(self.shared.budget.clone()),
        );
        let tasks = [
            AbortOnDrop(tokio::spawn(write(
                a.session.writer,
                rx,
                self.ended_tx.clone(),
                id,
            ))),
            AbortOnDrop(tokio::spawn(read(
                a.session.reader,
                a.revoke,
                self.inbound_tx.clone(),
                self.ended_tx.clone(),
                self.shared.stats.clone(),
                id,
            ))),
        ];
        tracing::info!(
            service = %self.shared.name,
            "udp: session from {} ({}) open",
            a.peer,
            a.name
        );
        self.sessions.insert(
            id,
            SessionSlot {
                out,
                name: a.name,
                peer: a.peer,
                _tasks: tasks,
            },
        );
        self.set_gauges();
    }

    fn end_session(&mut self, id: u64, e: TransportError) {
        let Some(slot) = self.sessions.remove(&id) else {
            return;
        };
        let flows = self.flows.remove_session(id);
        tracing::info!(
            service = %self.shared.name,
            "udp: session from {} ({}) ended: {e} ({flows} flows closed)",
            slot.peer,
            slot.name
        );
        self.set_gauges();
    }

    fn set_gauges(&self) {
        let stats = self.stats();
        stats.flows.store(self.flows.len(), Ordering::Relaxed);
        stats.sessions.store(self.sessions.len(), Ordering::Relaxed);
    }

    fn on_session_message(&mut self, id: u64, message: &[u8]) {
        let Ok((flow, payload)) = header::decode(message) else {
            return UdpStats::add(&self.stats().malformed);
        };
        let now = activity::now();
        let socket = match self.flows.touch(&(id, flow), now) {
            Some(f) => f.socket.clone(),
            None => match self.open_flow(id, flow, now) {
                Some(socket) => socket,
                None => return,
            },
        };
        match super::send_now(&socket, payload, None) {
            Ok(_) => self.stats().carried(true, payload.len()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                UdpStats::add(&self.stats().queue_full)
            }
            // Mostly ICMP's "port unreachable" for an earlier datagram.
            Err(e) => {
                UdpStats::add(&self.stats().errors);
                tracing::debug!(service = %self.shared.name, "udp: to {}: {e}", self.service);
            }
        }
    }

    /// A socket to the service for a new flow, and its replies' task.
    fn open_flow(&mut self, id: u64, flow: u32, now: std::time::Instant) -> Option<Arc<UdpSocket>> {
        let out = self.sessions.get(&id)?.out.clone();
        let socket = match connected_socket(self.service) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // No descriptor left, say: the datagram is dropped.
                UdpStats::add(&self.stats().errors);
                tracing::warn!(
                    service = %self.shared.name,
                    "udp: no socket to {} for a new flow: {e}",
                    self.service
                );
                return None;
            }
        };
        let activity = Activity::new(now);
        let replies = AbortOnDrop(tokio::spawn(replies(
            socket.clone(),
            out,
            flow,
            activity.clone(),
            self.shared.clone(),
        )));
        let entry = Flow {
            socket: socket.clone(),
            activity,
            _replies: replies,
        };
        if self.flows.insert((id, flow), entry, now).is_some() {
            UdpStats::add(&self.stats().evicted);
        }
        UdpStats::add(&self.stats().opened);
        self.set_gauges();
        Some(socket)
    }

    fn expire(&mut self) {
        let gone = self.flows.expire(activity::now(), |f| f.activity.last());
        let n = gone.len() as u64;
        self.stats().expired.fetch_add(n, Ordering::Relaxed);
        self.set_gauges();
    }
}

/// A non-blocking UDP socket connected to `service`.
fn connected_socket(service: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(super::unspecified(service))?;
    socket.connect(service)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// A flow's replies from the service, each one message of its session.
async fn replies(
    socket: Arc<UdpSocket>,
    out: QueueTx<Vec<u8>>,
    flow: u32,
    activity: Activity,
    shared: Arc<UdpShared>,
) {
    let stats = &shared.stats;
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        // Held only while there is something to read: an idle flow holds
        // no buffer.
        let mut buf = Vec::with_capacity(HEADER_LEN + RECV_BUFFER);
        header::write(flow, &mut buf);
        buf.resize(HEADER_LEN + RECV_BUFFER, 0);
        for _ in 0..BATCH {
            let n = match socket.try_recv(&mut buf[HEADER_LEN..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    UdpStats::add(&stats.errors);
                    tracing::debug!(service = %shared.name, "udp: from the service: {e}");
                    break;
                }
            };
            activity.mark();
            let len = HEADER_LEN + n;
            if len > shared.max_message {
                UdpStats::add(&stats.too_large);
                continue;
            }
            match out.try_send(buf[..len].to_vec(), len) {
                Ok(()) => stats.carried(false, n),
                Err(Refused::Full) => UdpStats::add(&stats.queue_full),
                Err(Refused::Closed) => return,
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Sends the queued messages over the session until it fails.
async fn write(
    mut writer: Writer,
    mut out: QueueRx<Vec<u8>>,
    ended: mpsc::UnboundedSender<(u64, TransportError)>,
    id: u64,
) {
    while let Some(message) = out.recv().await {
        if let Err(e) = writer.send(&message).await {
            let _ = ended.send((id, e));
            return;
        }
    }
}

/// Hands the session's messages to the owner until it ends (or its token
/// is revoked).
async fn read(
    mut reader: Reader,
    mut revoke: Option<Revoke>,
    inbound: QueueTx<(u64, Vec<u8>)>,
    ended: mpsc::UnboundedSender<(u64, TransportError)>,
    stats: Arc<UdpStats>,
    id: u64,
) {
    loop {
        let received = tokio::select! {
            r = reader.recv() => r,
            e = revoked(&mut revoke) => Err(e),
        };
        let e = match received {
            Ok(Some(m)) => {
                let len = m.len();
                if inbound.try_send((id, m), len).is_err() {
                    UdpStats::add(&stats.queue_full);
                }
                continue;
            }
            Ok(None) => TransportError::Ended,
            Err(e) => e,
        };
        let _ = ended.send((id, e));
        return;
    }
}

async fn revoked(revoke: &mut Option<Revoke>) -> TransportError {
    match revoke {
        Some(r) => r.revoked().await,
        None => std::future::pending().await,
    }
}
