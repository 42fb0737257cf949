//! The client on tokio: one connected UDP socket, the sans-IO client, and
//! a task that moves datagrams between them until the session ends.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::io_err;
use super::session::{Command, DgramSession, Inbox, QUEUED};
use crate::dgram::client::{ClientEvent, DgramClient};
use crate::dgram::wire::MAX_DATAGRAM;
use crate::error::Error;
use crate::proto::handshake::TransportKeys;
use crate::proto::{ClientConfig, CloseCode};

/// Opens a datagram session to `addr` (`host:port`): msg1 goes out at once
/// and again on a doubling timer until msg2, or until
/// `config.params.handshake_timeout`.
pub async fn connect(addr: &str, config: ClientConfig) -> Result<DgramSession, Error> {
    connecting(addr, config, false).await.map(|(s, _)| s)
}

/// Labs only: [`connect`], also returning the session's transport secrets
/// (to read a capture with [`crate::dgram::capture::CaptureReader`]).
/// Whoever holds them can read and forge the session.
pub async fn connect_exporting_keys(
    addr: &str,
    config: ClientConfig,
) -> Result<(DgramSession, TransportKeys), Error> {
    let (session, keys) = connecting(addr, config, true).await?;
    let keys = keys.ok_or(Error::Protocol("opened without keys"))?;
    Ok((session, keys))
}

async fn connecting(
    addr: &str,
    config: ClientConfig,
    export: bool,
) -> Result<(DgramSession, Option<TransportKeys>), Error> {
    let target = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| io_err(format!("resolving {addr}"), e))?
        .next()
        .ok_or_else(|| Error::Socket {
            what: format!("resolving {addr}"),
            reason: "no address".into(),
        })?;
    let local: std::net::SocketAddr = if target.is_ipv4() {
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
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rng = Box::new(rand::rngs::StdRng::from_os_rng());
    let mut core = DgramClient::new(config, unix, Instant::now(), rng)?;
    if export {
        core.export_keys();
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(QUEUED);
    let (session, inbox) = DgramSession::new(0, cmd_tx);
    let (ready_tx, ready_rx) = oneshot::channel();
    // Dropped when the task ends: a writer's close waits for that.
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let session = session.with_task_done(done_rx);
    tokio::spawn(async move {
        run(socket, core, cmd_rx, inbox, ready_tx).await;
        drop(done_tx);
    });
    match ready_rx.await {
        Ok(Ok(keys)) => Ok((session, keys)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::NotOpen),
    }
}

async fn run(
    socket: UdpSocket,
    mut core: DgramClient,
    mut commands: mpsc::Receiver<Command>,
    inbox: Inbox,
    ready: oneshot::Sender<Result<Option<TransportKeys>, Error>>,
) {
    let mut ready = Some(ready);
    let mut inbox = Some(inbox);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        while let Some(d) = core.poll_transmit() {
            // A send error (no route, refused by ICMP) is a lost datagram.
            let _ = socket.send(&d).await;
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                ClientEvent::Connected => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(core.take_exported_keys()));
                    }
                }
                ClientEvent::Data(d) => {
                    if let Some(i) = &inbox {
                        i.deliver(d);
                    }
                }
                ClientEvent::Closed(error) => match (ready.take(), inbox.take()) {
                    (Some(r), _) => {
                        let _ = r.send(Err(error.unwrap_or(Error::NotOpen)));
                    }
                    (None, Some(i)) => i.end(error.map_or(Ok(()), Err)),
                    (None, None) => {}
                },
            }
        }
        if core.is_closed() {
            return;
        }
        let deadline = core.poll_timeout();
        tokio::select! {
            r = socket.recv(&mut buf) => {
                if let Ok(n) = r {
                    core.handle_datagram(Instant::now(), &mut buf[..n]);
                }
            }
            c = commands.recv() => match c {
                Some(Command::Send(_, d)) => {
                    // Only an open session sends; `connect` returns after that.
                    let _ = core.send(&d);
                }
                Some(Command::Close(_)) | None => core.close(CloseCode::Normal),
            },
            () = sleep(deadline) => core.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
