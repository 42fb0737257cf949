//! The listener on tokio: one UDP socket, the sans-IO server for every
//! client, and a task between them; each opened session is handed out by
//! [`DgramListener::accept`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::io_err;
use super::session::{Command, DgramSession, Inbox, QUEUED};
use crate::dgram::server::{DgramServer, DgramServerOptions, ServerEvent};
use crate::dgram::wire::MAX_DATAGRAM;
use crate::error::Error;
use crate::log_limit::{skipped_note, LogLimit};
use crate::proto::{CloseCode, ServerEndpoint};

/// Sessions opened and not yet taken by [`DgramListener::accept`], at
/// most; one more is closed at once.
const ACCEPT_QUEUE: usize = 128;
/// How often the task looks for revoked tokens (an atomic load when
/// nothing was revoked).
const REVOCATION_CHECK: Duration = Duration::from_millis(250);

/// A session the listener opened.
#[derive(Debug)]
pub struct DgramAccepted {
    /// The session.
    pub session: DgramSession,
    /// The token's client name.
    pub name: String,
    /// The client's address when it opened.
    pub peer: SocketAddr,
}

/// A UDP listener for the link's datagram mode.
#[derive(Debug)]
pub struct DgramListener {
    local: SocketAddr,
    incoming: mpsc::Receiver<DgramAccepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DgramListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DgramListener {
    /// Listens on `addr` (`host:port`) for `endpoint`'s clients.
    pub async fn bind(
        addr: &str,
        endpoint: Arc<ServerEndpoint>,
        options: DgramServerOptions,
    ) -> Result<Self, Error> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| io_err(format!("listening on {addr} (UDP)"), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| io_err(format!("listening on {addr} (UDP)"), e))?;
        let rng = Box::new(rand::rngs::StdRng::from_os_rng());
        let core = DgramServer::new(endpoint, options, Instant::now(), rng);
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(QUEUED * 4);
        let task = tokio::spawn(
            Task {
                socket,
                core,
                accepted: tx,
                commands: cmd_tx,
                inboxes: HashMap::new(),
                logs: LogLimit::new(Instant::now()),
            }
            .run(cmd_rx),
        );
        Ok(Self {
            local,
            incoming,
            task,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next opened session; `None` if the listener's task ended.
    pub async fn accept(&mut self) -> Option<DgramAccepted> {
        self.incoming.recv().await
    }
}

struct Task {
    socket: UdpSocket,
    core: DgramServer,
    accepted: mpsc::Sender<DgramAccepted>,
    commands: mpsc::Sender<Command>,
    inboxes: HashMap<u64, Inbox>,
    /// Any holder of `S` can make a refusal per handshake: their lines are
    /// rate-limited as the stream listener's are (§3 step 6).
    logs: LogLimit,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut revocations = tokio::time::interval(REVOCATION_CHECK);
        loop {
            self.flush().await;
            let deadline = self.core.poll_timeout(Instant::now());
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.core.handle_datagram(Instant::now(), unix_now(), from, &mut buf[..n]);
                    }
                    // ICMP errors of earlier sends surface here: not fatal.
                    Err(e) => tracing::debug!("link (UDP) receive: {e}"),
                },
                c = commands.recv() => match c {
                    Some(Command::Send(sid, d)) => {
                        // A session closed meanwhile: the datagram is lost.
                        let _ = self.core.send(sid, &d);
                    }
                    Some(Command::Close(sid)) => {
                        self.inboxes.remove(&sid);
                        self.core.close(sid, CloseCode::Normal);
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.core.handle_timeout(Instant::now());
                }
                _ = revocations.tick() => self.core.handle_timeout(Instant::now()),
            }
        }
    }

    /// Sends what the core queued and hands out its events, until it has
    /// neither (an event's handling may queue a datagram: an abort's close).
    async fn flush(&mut self) {
        loop {
            while let Some((to, d)) = self.core.poll_transmit() {
                if let Err(e) = self.socket.send_to(&d, to).await {
                    tracing::debug!("link (UDP) send to {to}: {e}");
                }
            }
            let Some(ev) = self.core.poll_event() else {
                return;
            };
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Accepted { sid, peer, name } => {
                let (session, inbox) = DgramSession::new(sid, self.commands.clone());
                let accepted = DgramAccepted {
                    session,
                    name: name.clone(),
                    peer,
                };
                if self.accepted.try_send(accepted).is_ok() {
                    self.inboxes.insert(sid, inbox);
                    tracing::debug!("link (UDP) session from {peer} for {name:?}");
                } else {
                    // Any valid client can open sessions faster than
                    // they are taken: its lines are rate-limited, and
                    // it is told why, as by the stream listener.
                    if let Some(skipped) = self.logs.allow(Instant::now()) {
                        tracing::warn!(
                                "link (UDP) from {peer} ({name:?}) closed: the server is not taking sessions as fast as they come{}",
                                skipped_note(skipped)
                            );
                    }
                    self.core.abort(sid, "server busy");
                }
            }
            ServerEvent::Data { sid, data } => {
                if let Some(i) = self.inboxes.get(&sid) {
                    i.deliver(data);
                }
            }
            ServerEvent::Closed { sid, error } => {
                if let Some(i) = self.inboxes.remove(&sid) {
                    i.end(error.map_or(Ok(()), Err));
                }
            }
            ServerEvent::Refused { name, reason, peer } => {
                let Some(skipped) = self.logs.allow(Instant::now()) else {
                    return;
                };
                let note = skipped_note(skipped);
                match name {
                    Some(n) => tracing::warn!(
                        "link (UDP) from {peer} refused: client {n:?}: {reason}{note}"
                    ),
                    None => tracing::warn!("link (UDP) from {peer} refused: {reason}{note}"),
                }
            }
        }
    }
}
