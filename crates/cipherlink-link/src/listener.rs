//! The server side of the tokio driver: accepting sockets, admitting them
//! (docs §6), running their handshakes, and closing the ones that do not
//! become links the same way whatever they sent.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{handshake, now, unix_now, DriverError, Link};
use crate::error::Error;
use crate::gate::{Gate, ServerLimits};
use crate::proto::rng::ErasingRng;
use crate::proto::{Connection, ServerEndpoint};

/// Authenticated links waiting for [`LinkListener::accept`].
const ACCEPT_QUEUE: usize = 128;

/// How long a server keeps draining a connection it closed without
/// authenticating it, after its FIN: unread data would make the kernel's
/// close an RST, which would tell a probe apart from a clean close.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Accepts TCP connections and yields the ones that authenticate.
pub struct LinkListener {
    rx: mpsc::Receiver<Link>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for LinkListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkListener {
    /// Listens on `addr` with the default [`ServerLimits`].
    pub async fn bind(
        addr: impl ToSocketAddrs,
        endpoint: Arc<ServerEndpoint>,
    ) -> Result<Self, DriverError> {
        Self::bind_with(addr, endpoint, ServerLimits::default()).await
    }

    /// Listens on `addr`; `limits` caps the connections that have not
    /// authenticated yet (docs §6).
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
        let task = tokio::spawn(accept_loop(listener, endpoint, gate, tx));
        Ok(Self { rx, local, task })
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
    loop {
        // Accepting never waits for a handshake slot: a socket that has not
        // authenticated holds only a place in the admission table (docs §6).
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("link accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut ticket = Some(gate.admit(addr.ip()));
        let _ = stream.set_nodelay(true);
        let rng = match ErasingRng::from_os() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("link: no randomness for a connection from {addr}: {e}");
                continue;
            }
        };
        let conn = Connection::server(Arc::clone(&endpoint), Box::new(rng), now(), unix_now());
        tracing::trace!(
            "link connection from {addr} ({} not yet authenticated)",
            gate.len()
        );
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut conn = conn;
            match handshake(&stream, &mut conn, &mut ticket, Some(addr)).await {
                Ok(peer) => {
                    drop(ticket);
                    let _ = tx.send(Link::start(stream, conn, peer)).await;
                }
                Err(e) => {
                    log_refusal(addr, &conn, &e);
                    close_quietly(stream).await;
                }
            }
        });
    }
}

/// Says why a server connection ended without a link: a refused token at
/// warn level with the client's name (as sshd logs a refused key), a probe
/// at debug level (a flood of them must not flood the log).
fn log_refusal(addr: SocketAddr, conn: &Connection, e: &Error) {
    match (conn.refusal(), conn.probe_reason()) {
        (Some(r), _) => match &r.name {
            Some(name) => tracing::warn!("link from {addr} refused: client {name:?}: {}", r.reason),
            None => tracing::warn!("link from {addr} refused: {}", r.reason),
        },
        // Logged by the handshake when it became one.
        (None, Some(_)) => {}
        (None, None) => tracing::debug!("link probe from {addr}: {e}"),
    }
}

/// Ends a server connection that did not become a link the same way
/// whatever it sent: drain what arrived, send a FIN, keep draining until the
/// peer's FIN or [`LINGER`], then close. Closing with unread data would send
/// an RST instead, and whether data was left unread depends on what the
/// peer sent.
async fn close_quietly(mut stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
