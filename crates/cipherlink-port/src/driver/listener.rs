//! The server's side of the dance: a listener that reads client INITs and,
//! for each admitted token, opens a per-user port, names it in the server
//! INIT and takes the client's second connection there.
//!
//! Input that is not an INIT under our key, or carries a token `admit`
//! refuses, gets silence: nothing is sent, the connection is read and
//! discarded until `PORT_TIMEOUT` after it was accepted, then closed, and
//! one log line names the peer and the reason. A recording of an admitted
//! INIT, replayed, is refused the same way while the listener remembers it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use zeroize::Zeroizing;

use super::gate::{Gate, Ticket};
use super::replay::Seen;
use super::{configure, io_err, PortSession};
use crate::decode::{ClientInit, ClientInitDecoder};
use crate::error::Error;
use crate::keys::ServerKey;
use crate::settings::PortSettings;
use crate::wire::{self, STATUS_SUCCESS};
use crate::{random_nonce, random_tail};

/// Connections held at once before they are sessions (INIT not yet read,
/// refused and drained, or second connection not yet made); a newer one
/// over the cap closes the oldest (docs/port-wire.md §3). As the link
/// listener's default (`cipherlink_link::gate`): a proxy client opens a
/// session per tunnel, so a burst of tunnels from one host is a burst of
/// pending connections from one address.
pub const MAX_PENDING: usize = 1024;
/// Of those, the most from one address group (an IPv4 address, an IPv6 /64).
pub const MAX_PENDING_PER_IP: usize = MAX_PENDING / 4;

/// The caps on pending connections ([`MAX_PENDING`], [`MAX_PENDING_PER_IP`]
/// by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// In all.
    pub total: usize,
    /// Per address group.
    pub per_group: usize,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            total: MAX_PENDING,
            per_group: MAX_PENDING_PER_IP,
        }
    }
}
/// Admitted INITs remembered to refuse their replays (32 bytes each).
pub const REPLAY_MEMORY: usize = 1 << 16;
/// Admitted sessions waiting for [`PortListener::accept`].
const QUEUE: usize = 64;

/// Decides on a token: the client's name when admitted.
pub type Admit = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// An admitted client's session.
#[derive(Debug)]
pub struct Accepted {
    /// The data connection.
    pub session: PortSession,
    /// The name `admit` gave the token.
    pub name: String,
    /// The token the client presented (wiped when dropped).
    pub token: Zeroizing<Vec<u8>>,
    /// SeasideVPN's client type (65: its Python client, 82: its Rust one).
    pub client_type: u8,
    /// Where the INIT came from.
    pub peer: SocketAddr,
}

/// A PORT listener.
#[derive(Debug)]
pub struct PortListener {
    local: SocketAddr,
    incoming: mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PortListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PortListener {
    /// Listens on `addr`; per-user ports are opened on the same address.
    pub async fn bind(
        addr: &str,
        key: ServerKey,
        admit: Admit,
        settings: PortSettings,
    ) -> Result<Self, Error> {
        Self::bind_with_limits(addr, key, admit, settings, PendingLimits::default()).await
    }

    /// [`PortListener::bind`] with other caps on pending connections.
    pub async fn bind_with_limits(
        addr: &str,
        key: ServerKey,
        admit: Admit,
        settings: PortSettings,
        limits: PendingLimits,
    ) -> Result<Self, Error> {
        let limits = PendingLimits {
            total: limits.total.max(1),
            per_group: limits.per_group.clamp(1, limits.total.max(1)),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io_err(format!("listening on {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| io_err(format!("listening on {addr}"), e))?;
        let (tx, incoming) = mpsc::channel(QUEUE);
        let server = Arc::new(Server {
            key,
            admit,
            settings,
            ip: local.ip(),
            tx,
            seen: Seen::new(REPLAY_MEMORY),
        });
        let task = tokio::spawn(accept_loop(listener, server, limits));
        Ok(Self {
            local,
            incoming,
            task,
        })
    }

    /// The address clients send their INIT to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next admitted client; `None` if the listener stopped.
    pub async fn accept(&mut self) -> Option<Accepted> {
        self.incoming.recv().await
    }
}

struct Server {
    key: ServerKey,
    admit: Admit,
    settings: PortSettings,
    ip: IpAddr,
    tx: mpsc::Sender<Accepted>,
    seen: Seen,
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>, limits: PendingLimits) {
    let gate = Gate::new(limits.total, limits.per_group);
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                tracing::warn!("PORT listener: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (ticket, mut evicted_by, evicted) = gate.admit(peer.ip());
        if evicted > 0 {
            tracing::warn!(
                "PORT {peer}: {evicted} older pending connection(s) closed to make room \
                 (at most {} pending, {} per address)",
                limits.total,
                limits.per_group
            );
        }
        let server = server.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = handshake(conn, peer, &server, &ticket) => {}
                () = evicted_by.wait() => {
                    tracing::info!("PORT {peer}: closed early: its place went to a newer connection");
                }
            }
        });
    }
}

async fn handshake(mut conn: TcpStream, peer: SocketAddr, server: &Server, ticket: &Ticket) {
    let deadline = Instant::now() + server.settings.timeout;
    let init = match timeout_at(deadline, read_init(&mut conn, &server.key)).await {
        Ok(Ok(init)) => init,
        Ok(Err(reason)) => {
            tracing::warn!("PORT {peer}: {reason}; staying silent");
            ticket.refused();
            return drain(conn, deadline).await;
        }
        Err(_) => {
            tracing::info!(
                "PORT {peer}: no whole INIT within PORT_TIMEOUT ({} s); closing",
                server.settings.timeout.as_secs()
            );
            return;
        }
    };
    let Some(name) = (server.admit)(&init.token) else {
        tracing::warn!(
            "PORT {peer}: INIT under our key with an unknown or revoked token \
             ({} bytes); staying silent",
            init.token.len()
        );
        ticket.refused();
        return drain(conn, deadline).await;
    };
    if !server.seen.first_time(&init.session) {
        tracing::warn!(
            "PORT {peer} ({name}): a replayed INIT (its ephemeral key was already admitted); \
             staying silent"
        );
        ticket.refused();
        return drain(conn, deadline).await;
    }
    match serve_user(conn, peer, &init, server).await {
        Ok(session) => {
            let accepted = Accepted {
                session,
                name,
                token: init.token,
                client_type: init.client_type,
                peer,
            };
            if server.tx.try_send(accepted).is_err() {
                tracing::warn!("PORT {peer}: dropped: {QUEUE} sessions already wait to be served");
            }
        }
        Err(e) => tracing::warn!("PORT {peer} ({name}): {e}"),
    }
}

async fn read_init(conn: &mut TcpStream, key: &ServerKey) -> Result<ClientInit, Error> {
    let mut decoder = ClientInitDecoder::new(key.clone());
    let mut buf = [0u8; 4096];
    loop {
        let n = conn
            .read(&mut buf)
            .await
            .map_err(|e| io_err("reading the INIT", e))?;
        if n == 0 {
            return Err(Error::Truncated("the client INIT".into()));
        }
        let mut input = &buf[..n];
        if let Some(init) = decoder.decode(&mut input)? {
            return Ok(init);
        }
    }
}

/// Reads and discards until `deadline`, then closes: a refused peer learns
/// nothing from when the connection ends.
async fn drain(mut conn: TcpStream, deadline: Instant) {
    let mut buf = [0u8; 4096];
    let _ = timeout_at(deadline, async {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Opens the user's port, answers with it, and takes the client's second
/// connection there (from the INIT's address, within `PORT_TIMEOUT`).
async fn serve_user(
    mut first: TcpStream,
    peer: SocketAddr,
    init: &ClientInit,
    server: &Server,
) -> Result<PortSession, Error> {
    let s = &server.settings;
    let user = TcpListener::bind(SocketAddr::new(server.ip, 0))
        .await
        .map_err(|e| io_err("opening a user port", e))?;
    let port = user
        .local_addr()
        .map_err(|e| io_err("opening a user port", e))?
        .port();
    let msg = {
        let mut rng = rand::rng();
        let tail = random_tail(s.tail_length, &mut rng);
        wire::server_init(
            &init.session,
            STATUS_SUCCESS,
            port,
            &random_nonce(&mut rng),
            &tail,
        )?
    };
    let deadline = Instant::now() + s.timeout;
    timeout_at(deadline, first.write_all(&msg))
        .await
        .map_err(|_| Error::Timeout("sending the server INIT".into()))?
        .map_err(|e| io_err("sending the server INIT", e))?;
    let data = loop {
        let (conn, from) = timeout_at(deadline, user.accept())
            .await
            .map_err(|_| Error::Timeout(format!("the second connection to port {port}")))?
            .map_err(|e| io_err(format!("accepting on port {port}"), e))?;
        // Anyone may race the client to its port: only the INIT's host is taken.
        if from.ip() == peer.ip() {
            break conn;
        }
        tracing::warn!(
            "PORT port {port} for {peer}: connection from {from} refused (not the INIT's host)"
        );
    };
    drop(first);
    // The token may have been revoked while the port waited.
    if (server.admit)(&init.token).is_none() {
        return Err(Error::Revoked(format!("port {port}")));
    }
    configure(&data, s);
    PortSession::new(data, init.session.clone(), s)
}
