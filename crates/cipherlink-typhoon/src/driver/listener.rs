//! The listener: one UDP socket; each admitted client is a session keyed
//! by its address, and its user id (the port SeasideVPN's clients send to
//! after the INIT) is the listener's own port.
//!
//! A datagram from a client with a session is opened with that session's
//! key; any other datagram is tried as a client INIT (one X25519 and one
//! AEAD, over at most one datagram). Input that is neither, an INIT with a
//! token `admit` refuses, or a replay of an admitted INIT gets silence.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::client::sleep_until;
use super::session::{inbox, Command, InboxTx, INBOX};
use super::{io_err, os_rng, Admit, Clock, TyphoonSession};
use crate::engine::{Engine, Event};
use crate::error::Error;
use crate::replay::Seen;
use crate::settings::TyphoonSettings;
use crate::wire::{self, MAX_DATAGRAM};
use crate::ServerKey;

/// Sessions held at once (admitted, not ended). A new client over the cap
/// takes the place of a session of a token holding at least two more than
/// its own, else of its own token, else the oldest session whose server
/// INIT has not left; with none, its INIT is dropped.
pub const MAX_SESSIONS: usize = 1024;
/// Admitted INITs remembered to refuse their replays (16 bytes each).
pub const REPLAY_MEMORY: usize = 1 << 16;
/// Sessions waiting for [`TyphoonListener::accept`].
const QUEUE: usize = 64;

/// An admitted client's session.
#[derive(Debug)]
pub struct Accepted {
    /// The session.
    pub session: TyphoonSession,
    /// The name `admit` gave the token.
    pub name: String,
    /// The token the client presented (wiped when dropped).
    pub token: Zeroizing<Vec<u8>>,
    /// SeasideVPN's client type (65: its Python client, 82: its Rust one).
    pub client_type: u8,
    /// The client's address.
    pub peer: SocketAddr,
}

/// A TYPHOON listener.
#[derive(Debug)]
pub struct TyphoonListener {
    local: SocketAddr,
    incoming: mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TyphoonListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TyphoonListener {
    /// Listens on `addr` with at most [`MAX_SESSIONS`] sessions.
    pub async fn bind(
        addr: &str,
        key: ServerKey,
        admit: Admit,
        settings: TyphoonSettings,
    ) -> Result<Self, Error> {
        Self::bind_capped(addr, key, admit, settings, MAX_SESSIONS).await
    }

    /// Listens on `addr` with at most `max_sessions` sessions.
    pub async fn bind_capped(
        addr: &str,
        key: ServerKey,
        admit: Admit,
        settings: TyphoonSettings,
        max_sessions: usize,
    ) -> Result<Self, Error> {
        settings.check()?;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| io_err(format!("listening on {addr} (UDP)"), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| io_err(format!("listening on {addr} (UDP)"), e))?;
        let (tx, incoming) = mpsc::channel(QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(INBOX);
        let server = Server {
            socket,
            key,
            admit,
            settings,
            user_id: local.port(),
            max_sessions: max_sessions.max(1),
            clock: Clock::new(),
            sessions: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 0,
            seen: Seen::new(REPLAY_MEMORY),
            accepted: tx,
            commands: cmd_tx,
        };
        let task = tokio::spawn(server.run(cmd_rx));
        Ok(Self {
            local,
            incoming,
            task,
        })
    }

    /// The address clients send their INIT to (and, as SeasideVPN's user
    /// id names it, everything after).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next admitted client; `None` if the listener stopped.
    pub async fn accept(&mut self) -> Option<Accepted> {
        self.incoming.recv().await
    }
}

struct Slot {
    id: u64,
    engine: Engine,
    inbox: InboxTx,
    alive: Arc<AtomicBool>,
    /// Until the server INIT leaves: handed to `accept` then.
    pending: Option<Accepted>,
    created: u64,
    /// The name `admit` gave its token.
    name: String,
}

struct Server {
    socket: UdpSocket,
    key: ServerKey,
    admit: Admit,
    settings: TyphoonSettings,
    user_id: u16,
    max_sessions: usize,
    clock: Clock,
    sessions: HashMap<SocketAddr, Slot>,
    by_id: HashMap<u64, SocketAddr>,
    next_id: u64,
    seen: Seen,
    accepted: mpsc::Sender<Accepted>,
    commands: mpsc::Sender<Command>,
}

impl Server {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            // At most MAX_SESSIONS engines to look at.
            let deadline = self
                .sessions
                .values()
                .filter_map(|s| s.engine.deadline())
                .min()
                .map(|d| self.clock.at(d));
            let touched = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(from, &buf[..n]),
                    Err(e) => {
                        tracing::debug!("TYPHOON listener: receive: {e}");
                        None
                    }
                },
                () = sleep_until(deadline) => {
                    let now = self.clock.now();
                    let due: Vec<SocketAddr> = self
                        .sessions
                        .iter()
                        .filter(|(_, s)| s.engine.deadline().is_some_and(|d| d <= now))
                        .map(|(a, _)| *a)
                        .collect();
                    for a in due {
                        if let Some(s) = self.sessions.get_mut(&a) {
                            s.engine.handle_timeout(now);
                        }
                        self.settle(a).await;
                    }
                    None
                }
                Some(c) = commands.recv() => self.command(c),
            };
            if let Some(a) = touched {
                self.settle(a).await;
            }
        }
    }

    fn command(&mut self, c: Command) -> Option<SocketAddr> {
        let now = self.clock.now();
        let (id, data) = match c {
            Command::Send { id, data } => (id, Some(data)),
            Command::Close { id } => (id, None),
        };
        let addr = *self.by_id.get(&id)?;
        let slot = self.sessions.get_mut(&addr)?;
        match data {
            Some(d) => {
                if let Err(e) = slot.engine.send(now, &d) {
                    tracing::debug!("TYPHOON {addr}: send: {e}");
                }
            }
            None => slot.engine.close(),
        }
        Some(addr)
    }

    /// Takes one datagram; the address whose session it touched.
    fn datagram(&mut self, from: SocketAddr, d: &[u8]) -> Option<SocketAddr> {
        let now = self.clock.now();
        if let Some(slot) = self.sessions.get_mut(&from) {
            let before = slot.engine.dropped();
            slot.engine.handle_datagram(now, d);
            if slot.engine.dropped() == before {
                return Some(from);
            }
        }
        // Not the session's: a (re)connecting client's INIT, or nothing.
        let init = match wire::parse_client_init(&self.key, d) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!("TYPHOON {from}: {e}; dropped");
                return None;
            }
        };
        if !Engine::init_next_in_ok(&self.settings, init.next_in) {
            tracing::debug!(
                "TYPHOON {from}: INIT next_in {} out of range; dropped",
                init.next_in
            );
            return None;
        }
        let Some(name) = (self.admit)(&init.token) else {
            tracing::info!(
                "TYPHOON {from}: INIT under our key with an unknown or revoked token ({} bytes); \
                 staying silent",
                init.token.len()
            );
            return None;
        };
        if !self.seen.first_time(&init.session) {
            tracing::warn!("TYPHOON {from} ({name}): a replayed INIT; staying silent");
            return None;
        }
        // Whoever holds any token can send from another client's address;
        // only that client's own token may start its session again.
        if let Some(other) = self.sessions.get(&from).filter(|s| s.name != name) {
            tracing::warn!(
                "TYPHOON {from}: an INIT for {name} from the address of {}'s session; dropped",
                other.name
            );
            return None;
        }
        if !self.sessions.contains_key(&from) && !self.make_room(&name) {
            tracing::warn!(
                "TYPHOON {from} ({name}): {} sessions of as many tokens; INIT dropped",
                self.max_sessions
            );
            return None;
        }
        tracing::info!(
            "TYPHOON {from} ({name}): INIT admitted; server INIT in {} ms",
            init.next_in
        );
        self.open(from, &init, name, now);
        Some(from)
    }

    /// When the table is full, frees a place for a session of `name`:
    /// from a token holding at least two more sessions than `name`, else
    /// from `name`'s own, else (every token holds one) the oldest session
    /// before its server INIT; false when there is none. Within a token,
    /// the oldest before its server INIT goes first, else the oldest. One
    /// token, whatever addresses it sends from, thus displaces only its own
    /// sessions or those of a token holding more.
    fn make_room(&mut self, name: &str) -> bool {
        if self.sessions.len() < self.max_sessions {
            return true;
        }
        let mut held: HashMap<&str, usize> = HashMap::new();
        for s in self.sessions.values() {
            *held.entry(s.name.as_str()).or_default() += 1;
        }
        let own = held.get(name).copied().unwrap_or(0);
        let (top, most) = held
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .unwrap_or((name, 0));
        let victim = if most > own + 1 {
            Some(top.to_owned())
        } else if own > 0 {
            Some(name.to_owned())
        } else {
            None
        };
        let oldest = self
            .sessions
            .iter()
            .filter(|(_, s)| match &victim {
                Some(v) => s.name == *v,
                None => s.pending.is_some(),
            })
            .min_by_key(|(_, s)| (s.pending.is_none(), s.created))
            .map(|(a, s)| (*a, s.name.clone()));
        let Some((a, whose)) = oldest else {
            return false;
        };
        tracing::warn!(
            "TYPHOON {a} ({whose}): dropped to make room for {name} ({} sessions)",
            self.max_sessions
        );
        self.remove(a);
        true
    }

    fn open(&mut self, from: SocketAddr, init: &wire::ClientInit, name: String, now: u64) {
        if self.sessions.contains_key(&from) {
            tracing::info!("TYPHOON {from}: a new INIT replaces its session");
            self.remove(from);
        }
        let id = self.next_id;
        self.next_id += 1;
        let engine = Engine::server(self.settings.clone(), init, self.user_id, os_rng(), now);
        let (in_tx, in_rx) = inbox();
        let alive = Arc::new(AtomicBool::new(true));
        let session = TyphoonSession::new(id, from, self.commands.clone(), in_rx, alive.clone());
        let accepted = Accepted {
            session,
            name: name.clone(),
            token: init.token.clone(),
            client_type: init.client_type,
            peer: from,
        };
        self.by_id.insert(id, from);
        self.sessions.insert(
            from,
            Slot {
                id,
                engine,
                inbox: in_tx,
                alive,
                pending: Some(accepted),
                created: now,
                name,
            },
        );
    }

    fn remove(&mut self, a: SocketAddr) {
        if let Some(s) = self.sessions.remove(&a) {
            s.alive.store(false, Ordering::Release);
            self.by_id.remove(&s.id);
        }
    }

    /// Sends what the session's engine has ready and hands on its events.
    async fn settle(&mut self, a: SocketAddr) {
        let Some(slot) = self.sessions.get_mut(&a) else {
            return;
        };
        while let Some(d) = slot.engine.poll_transmit() {
            if let Err(e) = self.socket.send_to(&d, a).await {
                tracing::debug!("TYPHOON {a}: send: {e}");
            }
        }
        let mut end = None;
        while let Some(ev) = slot.engine.poll_event() {
            match ev {
                Event::Connected { .. } => {
                    if let Some(acc) = slot.pending.take() {
                        if self.accepted.try_send(acc).is_err() {
                            tracing::warn!(
                                "TYPHOON {a}: dropped: {QUEUE} sessions already wait to be served"
                            );
                            slot.engine.close();
                        }
                    }
                }
                Event::Data(d) => {
                    slot.inbox.data(d);
                }
                Event::Terminated => end = Some(Ok(())),
                Event::Failed(e) => {
                    tracing::info!("TYPHOON {a}: {e}");
                    end = Some(Err(e));
                }
            }
        }
        if let Some(r) = end {
            slot.inbox.end(r);
        }
        if slot.engine.is_closed() {
            // A close asked for here may have left a termination to send.
            while let Some(d) = slot.engine.poll_transmit() {
                let _ = self.socket.send_to(&d, a).await;
            }
            self.remove(a);
        }
    }
}
