//! The client: INITs to the listener's port until the server INIT, then
//! every datagram to the port it names (its user id), on one socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::session::{inbox, Command, InboxTx, INBOX};
use super::{io_err, os_rng, Clock, TyphoonSession};
use crate::engine::{Engine, Event};
use crate::error::Error;
use crate::settings::TyphoonSettings;
use crate::wire::MAX_DATAGRAM;
use crate::PublicKey;

/// Connects to a TYPHOON listener at `addr` (`host:port`) with the
/// server's 40-byte public key and a token. Gives up after
/// `TYPHOON_MAX_RETRIES` unanswered INITs, each waited for `next_in +
/// timeout`, as SeasideVPN's client does.
pub async fn connect(
    addr: &str,
    server: &PublicKey,
    token: &[u8],
    settings: &TyphoonSettings,
) -> Result<TyphoonSession, Error> {
    let target = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| io_err(format!("resolving {addr}"), e))?
        .next()
        .ok_or_else(|| Error::Io {
            what: format!("resolving {addr}"),
            reason: "no address".into(),
        })?;
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| io_err("opening a UDP socket", e))?;
    socket
        .connect(target)
        .await
        .map_err(|e| io_err(format!("connecting to {target}"), e))?;
    let clock = Clock::new();
    let engine = Engine::client(settings.clone(), *server, token, os_rng(), clock.now())?;
    let (cmd_tx, cmd_rx) = mpsc::channel(INBOX);
    let (in_tx, in_rx) = inbox();
    let (ready_tx, ready_rx) = oneshot::channel();
    let alive = Arc::new(AtomicBool::new(true));
    let task = Task {
        socket,
        target,
        engine,
        clock,
        inbox: in_tx,
        ready: Some(ready_tx),
        alive: alive.clone(),
    };
    tokio::spawn(task.run(cmd_rx));
    let peer = ready_rx.await.map_err(|_| Error::Closed)??;
    Ok(TyphoonSession::new(0, peer, cmd_tx, in_rx, alive))
}

struct Task {
    socket: UdpSocket,
    target: SocketAddr,
    engine: Engine,
    clock: Clock,
    inbox: InboxTx,
    /// Told the data address, or why there is none, once.
    ready: Option<oneshot::Sender<Result<SocketAddr, Error>>>,
    alive: Arc<AtomicBool>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            self.flush().await;
            if self.deliver().await {
                break;
            }
            let deadline = self.engine.deadline().map(|d| self.clock.at(d));
            tokio::select! {
                r = self.socket.recv(&mut buf) => match r {
                    Ok(n) => self.engine.handle_datagram(self.clock.now(), &buf[..n]),
                    // ICMP errors from an earlier send: UDP carries on.
                    Err(e) => tracing::debug!("TYPHOON {}: receive: {e}", self.target),
                },
                () = sleep_until(deadline) => self.engine.handle_timeout(self.clock.now()),
                c = commands.recv() => match c {
                    Some(Command::Send { data, .. }) => {
                        if let Err(e) = self.engine.send(self.clock.now(), &data) {
                            tracing::debug!("TYPHOON {}: send: {e}", self.target);
                        }
                    }
                    Some(Command::Close { .. }) | None => {
                        self.engine.close();
                        self.flush().await;
                        break;
                    }
                },
            }
        }
        self.alive.store(false, Ordering::Release);
    }

    async fn flush(&mut self) {
        while let Some(d) = self.engine.poll_transmit() {
            if let Err(e) = self.socket.send(&d).await {
                tracing::debug!("TYPHOON {}: send: {e}", self.target);
            }
        }
    }

    /// Hands the engine's events on; true when the session is over.
    async fn deliver(&mut self) -> bool {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::Connected { user_id } => {
                    self.target.set_port(user_id);
                    if let Err(e) = self.socket.connect(self.target).await {
                        let e = io_err(format!("connecting to {}", self.target), e);
                        return self.end(Err(e));
                    }
                    if let Some(r) = self.ready.take() {
                        let _ = r.send(Ok(self.target));
                    }
                }
                Event::Data(d) => {
                    self.inbox.data(d);
                }
                Event::Terminated => return self.end(Ok(())),
                Event::Failed(e) => return self.end(Err(e)),
            }
        }
        self.engine.is_closed()
    }

    fn end(&mut self, r: Result<(), Error>) -> bool {
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(r.and(Err(Error::Closed)));
            }
            None => {
                self.inbox.end(r);
            }
        }
        true
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
