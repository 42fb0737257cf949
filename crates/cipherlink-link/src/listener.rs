//! The server side of the tokio driver: accepting sockets, admitting them
//! (docs §6), running their handshakes, and closing the ones that do not
//! become links the same way whatever they sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{handshake, now, unix_now, DriverError, Link};
use crate::error::Error;
use crate::gate::{Gate, ServerLimits, Ticket};
use crate::log_limit::{skipped_note, LogLimit};
use crate::proto::rng::ErasingRng;
use crate::proto::{Connection, ServerEndpoint};

/// Authenticated links waiting for [`LinkListener::accept`].
const ACCEPT_QUEUE: usize = 128;

/// How long a link waits for room in a full accept queue (see
/// [`ServerLimits::max_waiting_links`]).
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and yields the ones that authenticate.
pub struct LinkListener {
    rx: mpsc::Receiver<Link>,
    local: SocketAddr,
    gate: Arc<Gate>,
    task: JoinHandle<()>,
}

impl Drop for LinkListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkListener {
    /// Listens on `addr` with the caps this process's open-file limit
    /// allows one listener ([`ServerLimits::for_this_process`]).
    pub async fn bind(
        addr: impl ToSocketAddrs,
        endpoint: Arc<ServerEndpoint>,
    ) -> Result<Self, DriverError> {
        Self::bind_with(addr, endpoint, ServerLimits::for_this_process(1)).await
    }

    /// Listens on `addr`; `limits` caps the sockets it holds before they
    /// are links (docs §6).
    pub async fn bind_with(
        addr: impl ToSocketAddrs,
        endpoint: Arc<ServerEndpoint>,
        limits: ServerLimits,
    ) -> Result<Self, DriverError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| DriverError::Io {
            what: "binding the link listener".into(),
            source: e,
        })?;
        let local = listener.local_addr().map_err(|e| DriverError::Io {
            what: "reading the listener address".into(),
            source: e,
        })?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let gate = Gate::new(limits);
        let task = tokio::spawn(accept_loop(listener, endpoint, Arc::clone(&gate), tx));
        Ok(Self {
            rx,
            local,
            gate,
            task,
        })
    }

    /// The caps in force.
    pub fn limits(&self) -> ServerLimits {
        *self.gate.limits()
    }

    /// Sockets held that are not links: handshaking, probing, or lingering
    /// after their close (at most [`ServerLimits::max_unauthenticated`]).
    pub fn unauthenticated(&self) -> usize {
        self.gate.len()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next authenticated link (`None` if the listener stopped).
    pub async fn accept(&mut self) -> Option<Link> {
        self.rx.recv().await
    }
}

async fn accept_loop(
    listener: TcpListener,
    endpoint: Arc<ServerEndpoint>,
    gate: Arc<Gate>,
    tx: mpsc::Sender<Link>,
) {
    let logs = Arc::new(LogLimit::new(std::time::Instant::now()));
    let (lo, hi) = gate.limits().linger;
    let waiting = Arc::new(tokio::sync::Semaphore::new(gate.limits().max_waiting_links));
    loop {
        // Accepting never waits for a handshake slot: a socket that has not
        // authenticated holds only a place in the admission table (docs §6).
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(skipped) = logs.allow(std::time::Instant::now()) {
                    tracing::warn!("link accept failed: {e}{}", skipped_note(skipped));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = gate.admit(addr.ip());
        let _ = stream.set_nodelay(true);
        let rng = match ErasingRng::from_os() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("link: no randomness for a connection from {addr}: {e}");
                continue;
            }
        };
        let conn = Connection::server(Arc::clone(&endpoint), Box::new(rng), now(), unix_now());
        let linger = rand::rng().random_range(lo..=hi.max(lo));
        tracing::trace!("link connection from {addr} ({} held)", gate.len());
        let (tx, logs, waiting) = (tx.clone(), Arc::clone(&logs), Arc::clone(&waiting));
        tokio::spawn(async move {
            let mut conn = conn;
            match handshake(&stream, &mut conn, Some(&ticket), Some(addr)).await {
                Ok(peer) => {
                    // A link now: the application bounds links, not
                    // admission. It takes them from a queue of
                    // ACCEPT_QUEUE; past it, up to `max_waiting_links`
                    // wait a while, and one more is closed rather than
                    // held by a task that nothing bounds.
                    drop(ticket);
                    let link = Link::start(stream, conn, peer);
                    hand_over(&tx, &waiting, link, addr, &logs).await;
                }
                Err(e) => {
                    log_refusal(&logs, addr, &conn, &e);
                    drop(conn);
                    close_quietly(stream, &ticket, linger).await;
                }
            }
        });
    }
}

/// Queues `link` for [`LinkListener::accept`]. When the queue is full it
/// waits up to [`HANDOVER_WAIT`], as one of `waiting`'s permits; with no
/// permit left, or after the wait, it ends the link with an authenticated
/// close saying the server is busy.
async fn hand_over(
    tx: &mpsc::Sender<Link>,
    waiting: &tokio::sync::Semaphore,
    link: Link,
    addr: SocketAddr,
    logs: &LogLimit,
) {
    let busy = |link: Link| {
        if let Some(skipped) = logs.allow(std::time::Instant::now()) {
            tracing::warn!(
                "link from {addr} ({}) closed: the server is not taking links as fast as they come{}",
                link.peer(),
                skipped_note(skipped)
            );
        }
        link.abort("server busy");
    };
    let slot = match tx.try_reserve() {
        Ok(slot) => slot,
        Err(mpsc::error::TrySendError::Closed(())) => return link.abort("server stopping"),
        Err(mpsc::error::TrySendError::Full(())) => {
            let Ok(_waiting) = waiting.try_acquire() else {
                return busy(link);
            };
            match tokio::time::timeout(HANDOVER_WAIT, tx.reserve()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => return link.abort("server stopping"),
                Err(_) => return busy(link),
            }
        }
    };
    slot.send(link);
}

/// Says why a server connection ended without a link: a refused token at
/// warn level with the client's name (as sshd logs a refused key), but no
/// more than [`LogLimit`] lets through; a probe at debug level (a flood of
/// them must not flood the log).
fn log_refusal(logs: &LogLimit, addr: SocketAddr, conn: &Connection, e: &Error) {
    match (conn.refusal(), conn.probe_reason()) {
        (Some(r), _) => {
            let Some(skipped) = logs.allow(std::time::Instant::now()) else {
                return;
            };
            let note = skipped_note(skipped);
            match &r.name {
                Some(name) => {
                    tracing::warn!(
                        "link from {addr} refused: client {name:?}: {}{note}",
                        r.reason
                    )
                }
                None => tracing::warn!("link from {addr} refused: {}{note}", r.reason),
            }
        }
        // Logged by the handshake when it became one.
        (None, Some(_)) => {}
        (None, None) => tracing::debug!("link probe from {addr}: {e}"),
    }
}

/// Ends a server connection that did not become a link the same way
/// whatever it sent: drain what arrived, send a FIN, then keep reading and
/// discarding until the peer's FIN, the socket's drawn `linger`, or its
/// eviction (docs §6), then close. Closing with unread data would send an
/// RST instead, and whether data was left unread depends on what the peer
/// sent. An evicted socket is closed at once after its FIN: the
/// descriptor budget needs its place.
async fn close_quietly(mut stream: TcpStream, ticket: &Ticket, linger: Duration) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.shutdown().await;
    if ticket.is_evicted() {
        return;
    }
    ticket.closing();
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        () = ticket.evicted() => {}
        () = async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        } => {}
    }
}
