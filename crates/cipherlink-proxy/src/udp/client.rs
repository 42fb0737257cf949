//! The client end of a UDP service: one UDP socket for the applications,
//! a flow per source address, every datagram one message of ONE session to
//! the server end; replies go back to their flow's address.
//!
//! One task owns the socket, the flow table and the session's state;
//! sending to the session and reading from it are tasks of their own behind
//! bounded queues, so nothing here waits on the network: a datagram that
//! finds a queue full is dropped and counted. A lost session is opened again
//! on the next datagram, after a backoff when attempts keep failing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::activity;
use super::flows::FlowTable;
use super::header::{self, HEADER_LEN};
use super::plain::RECV_BUFFER;
use super::queue::{queue, QueueRx, QueueTx, Refused, QUEUE_BYTES, QUEUE_MESSAGES};
use super::stats::UdpStats;
use super::transport::{Connector, Reader, Session, TransportError, Writer};
use super::{AbortOnDrop, UdpShared};

/// Datagrams held while a session is being opened (more are dropped).
const PENDING_MESSAGES: usize = 64;
/// Their bytes.
const PENDING_BYTES: usize = 256 * 1024;
/// The first wait after a failed attempt; doubled per failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session that ended sooner than this counts as a failed attempt.
const SHORT_LIFE: Duration = Duration::from_secs(5);

enum State {
    /// No session; the next datagram opens one unless before `retry_at`.
    Down { retry_at: Option<Instant> },
    Connecting {
        generation: u64,
        pending: Vec<Vec<u8>>,
        bytes: usize,
        _task: AbortOnDrop,
    },
    Up {
        generation: u64,
        out: QueueTx<Vec<u8>>,
        since: Instant,
        _tasks: [AbortOnDrop; 2],
    },
}

/// What the session's tasks tell the owner.
enum Control {
    Connected(u64, Session),
    Failed(u64, TransportError),
    Ended(u64, TransportError),
}

struct ClientEnd {
    shared: Arc<UdpShared>,
    app: Arc<UdpSocket>,
    connector: Arc<Connector>,
    flows: FlowTable<SocketAddr, u32>,
    by_id: HashMap<u32, SocketAddr>,
    next_id: u32,
    state: State,
    generation: u64,
    backoff: Duration,
    replies_tx: QueueTx<Vec<u8>>,
    control_tx: mpsc::UnboundedSender<Control>,
}

/// Runs the client end until `stop` turns true.
pub(crate) async fn run(
    shared: Arc<UdpShared>,
    app: UdpSocket,
    connector: Arc<Connector>,
    mut stop: watch::Receiver<bool>,
) {
    let (replies_tx, mut replies) = queue(QUEUE_MESSAGES, QUEUE_BYTES);
    // At most two messages per session, and one session at a time.
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let mut end = ClientEnd {
        flows: FlowTable::new(shared.idle, shared.max_flows),
        shared,
        app: Arc::new(app),
        connector,
        by_id: HashMap::new(),
        next_id: 0,
        state: State::Down { retry_at: None },
        generation: 0,
        backoff: Duration::ZERO,
        replies_tx,
        control_tx,
    };
    let mut buf = vec![0u8; RECV_BUFFER];
    let app = end.app.clone();
    loop {
        let deadline = end.flows.next_expiry().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = app.recv_from(&mut buf) => match r {
                Ok((n, from)) => end.on_app_datagram(from, &buf[..n]),
                Err(e) => {
                    // ICMP errors from replies sent to gone applications.
                    tracing::debug!(service = %end.shared.name, "udp: receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(m) = replies.recv() => end.on_server_message(&m),
            Some(c) = control.recv() => end.control(c),
            () = super::sleep_until(deadline) => end.expire(),
            () = super::stopped(&mut stop) => break,
        }
    }
}

impl ClientEnd {
    fn stats(&self) -> &UdpStats {
        &self.shared.stats
    }

    fn on_app_datagram(&mut self, src: SocketAddr, payload: &[u8]) {
        if HEADER_LEN + payload.len() > self.shared.max_message {
            return UdpStats::add(&self.stats().too_large);
        }
        let now = activity::now();
        let flow = match self.flows.touch(&src, now) {
            Some(flow) => *flow,
            None => self.open_flow(src, now),
        };
        self.send(header::encode(flow, payload), now);
    }

    fn open_flow(&mut self, src: SocketAddr, now: Instant) -> u32 {
        // Ids wrap after 2^32 flows; skip the few still held.
        while self.by_id.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let flow = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if let Some((_, old)) = self.flows.insert(src, flow, now) {
            self.by_id.remove(&old);
            UdpStats::add(&self.stats().evicted);
        }
        self.by_id.insert(flow, src);
        UdpStats::add(&self.stats().opened);
        self.set_flows();
        tracing::debug!(service = %self.shared.name, "udp: flow {flow} from {src}");
        flow
    }

    fn set_flows(&self) {
        let n = self.flows.len();
        self.stats()
            .flows
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn send(&mut self, message: Vec<u8>, now: Instant) {
        let len = message.len();
        match &mut self.state {
            State::Up { out, .. } => match out.try_send(message, len) {
                Ok(()) => self.shared.stats.carried(true, len - HEADER_LEN),
                Err(Refused::Full) => UdpStats::add(&self.shared.stats.queue_full),
                // The writer ended: its Ended message is on the way.
                Err(Refused::Closed) => UdpStats::add(&self.shared.stats.no_session),
            },
            State::Connecting { pending, bytes, .. } => {
                if pending.len() < PENDING_MESSAGES && *bytes + len <= PENDING_BYTES {
                    pending.push(message);
                    *bytes += len;
                } else {
                    UdpStats::add(&self.shared.stats.queue_full);
                }
            }
            State::Down { retry_at } => {
                if retry_at.is_some_and(|t| now < t) {
                    return UdpStats::add(&self.shared.stats.no_session);
                }
                self.start_connect(message);
            }
        }
    }

    fn start_connect(&mut self, first: Vec<u8>) {
        self.generation += 1;
        let generation = self.generation;
        let connector = self.connector.clone();
        let target = self.shared.connect.clone();
        let control = self.control_tx.clone();
        tracing::info!(
            service = %self.shared.name,
            "udp: opening a {} session to {target}",
            self.shared.transport.name()
        );
        let task = tokio::spawn(async move {
            let message = match connector.connect(&target).await {
                Ok(session) => Control::Connected(generation, session),
                Err(e) => Control::Failed(generation, e),
            };
            let _ = control.send(message);
        });
        let bytes = first.len();
        self.state = State::Connecting {
            generation,
            pending: vec![first],
            bytes,
            _task: AbortOnDrop(task),
        };
    }

    fn control(&mut self, c: Control) {
        let current = match &self.state {
            State::Connecting { generation, .. } | State::Up { generation, .. } => *generation,
            State::Down { .. } => 0,
        };
        let name = self.shared.name.clone();
        let target = self.shared.connect.clone();
        match c {
            Control::Connected(g, session) if g == current => {
                let State::Connecting { pending, .. } =
                    std::mem::replace(&mut self.state, State::Down { retry_at: None })
                else {
                    return;
                };
                tracing::info!(service = %name, "udp: session to {target} up");
                let (out, rx) = queue(QUEUE_MESSAGES, QUEUE_BYTES);
                let tasks = [
                    AbortOnDrop(tokio::spawn(write(
                        session.writer,
                        rx,
                        self.control_tx.clone(),
                        g,
                    ))),
                    AbortOnDrop(tokio::spawn(read(
                        session.reader,
                        self.replies_tx.clone(),
                        self.control_tx.clone(),
                        self.shared.stats.clone(),
                        g,
                    ))),
                ];
                for message in pending {
                    let len = message.len();
                    match out.try_send(message, len) {
                        Ok(()) => self.shared.stats.carried(true, len - HEADER_LEN),
                        Err(_) => UdpStats::add(&self.shared.stats.queue_full),
                    }
                }
                self.state = State::Up {
                    generation: g,
                    out,
                    since: activity::now(),
                    _tasks: tasks,
                };
                self.set_sessions(1);
            }
            Control::Failed(g, e) if g == current => {
                if let State::Connecting { pending, .. } = &self.state {
                    let n = pending.len() as u64;
                    self.shared
                        .stats
                        .no_session
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                self.down(true);
                tracing::warn!(
                    service = %name,
                    "udp: no session to {target}: {e}; the next datagram after {:?} tries again",
                    self.backoff
                );
            }
            Control::Ended(g, e) if g == current => {
                let short = match &self.state {
                    State::Up { since, .. } => {
                        activity::now().saturating_duration_since(*since) < SHORT_LIFE
                    }
                    _ => false,
                };
                self.down(short);
                self.set_sessions(0);
                tracing::warn!(
                    service = %name,
                    "udp: session to {target} lost: {e}; the next datagram{} opens another",
                    if self.backoff.is_zero() {
                        String::new()
                    } else {
                        format!(" after {:?}", self.backoff)
                    }
                );
            }
            // An earlier session's news.
            _ => {}
        }
    }

    /// No session: the next attempt waits a backoff after `failed` ones.
    fn down(&mut self, failed: bool) {
        self.backoff = next_backoff(self.backoff, failed);
        let retry_at = (!self.backoff.is_zero()).then(|| activity::now() + self.backoff);
        self.state = State::Down { retry_at };
    }

    fn set_sessions(&self, n: usize) {
        self.shared
            .stats
            .sessions
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn on_server_message(&mut self, message: &[u8]) {
        let stats = &self.shared.stats;
        let Ok((flow, payload)) = header::decode(message) else {
            return UdpStats::add(&stats.malformed);
        };
        // A flow expired or evicted here: its replies have nowhere to go.
        let Some(&dst) = self.by_id.get(&flow) else {
            return UdpStats::add(&stats.malformed);
        };
        self.flows.touch(&dst, activity::now());
        match super::send_now(&self.app, payload, Some(dst)) {
            Ok(_) => stats.carried(false, payload.len()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                UdpStats::add(&stats.queue_full)
            }
            Err(e) => {
                UdpStats::add(&stats.errors);
                tracing::debug!(service = %self.shared.name, "udp: to {dst}: {e}");
            }
        }
    }

    fn expire(&mut self) {
        for (_, flow) in self.flows.expire(activity::now()) {
            self.by_id.remove(&flow);
            UdpStats::add(&self.shared.stats.expired);
        }
        self.set_flows();
    }
}

/// The wait before the next attempt: none after a session that lived,
/// [`FIRST_BACKOFF`] after a first failure, then twice the last, at most
/// [`MAX_BACKOFF`].
fn next_backoff(last: Duration, failed: bool) -> Duration {
    if !failed {
        Duration::ZERO
    } else if last.is_zero() {
        FIRST_BACKOFF
    } else {
        (last * 2).min(MAX_BACKOFF)
    }
}

/// Sends the queued messages over the session until it fails.
async fn write(
    mut writer: Writer,
    mut out: QueueRx<Vec<u8>>,
    control: mpsc::UnboundedSender<Control>,
    generation: u64,
) {
    while let Some(message) = out.recv().await {
        if let Err(e) = writer.send(&message).await {
            let _ = control.send(Control::Ended(generation, e));
            return;
        }
    }
}

/// Hands the session's messages to the owner until it ends.
async fn read(
    mut reader: Reader,
    replies: QueueTx<Vec<u8>>,
    control: mpsc::UnboundedSender<Control>,
    stats: Arc<UdpStats>,
    generation: u64,
) {
    loop {
        let ended = match reader.recv().await {
            Ok(Some(m)) => {
                let len = m.len();
                if replies.try_send(m, len).is_err() {
                    UdpStats::add(&stats.queue_full);
                }
                continue;
            }
            Ok(None) => TransportError::Ended,
            Err(e) => e,
        };
        let _ = control.send(Control::Ended(generation, ended));
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_wait_up_to_its_cap_and_a_session_that_lived_resets_it() {
        let mut wait = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            wait = next_backoff(wait, true);
            seen.push(wait.as_millis());
        }
        assert_eq!(
            seen,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(next_backoff(wait, false), Duration::ZERO);
    }
}
