//! The idle case of the link's datagram mode, server end only: the number
//! wireguard-go's row gives (its server interface's process). The link
//! finds a session by its id, not by the client's address, so every
//! handshake can come from one socket: a sans-IO client core per session
//! makes its handshake through that socket (answering a cookie reply when
//! the server is under load) and is dropped once open. The server's
//! sessions stay (their keepalive first pings after a minute), and what
//! this process grew is theirs, plus one client core at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cipherlink_link::dgram::DgramClient;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;

use super::cases::IdleResult;
use super::side::Side;
use super::transport::Fixture;
use crate::LabError;

/// Longest one handshake may take.
const ONE_HANDSHAKE: Duration = Duration::from_secs(10);

fn setup(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Setup(format!("link idle case: {what}: {e}"))
}

/// Opens `sessions` link sessions to `addr` from the client side's one
/// socket, the server (already holding what it accepts) measured around it.
pub(super) async fn link_server_end(
    fx: &Arc<Fixture>,
    client: &Side,
    addr: SocketAddr,
    sessions: usize,
    rss_before: u64,
    me: [u32; 1],
) -> Result<IdleResult, LabError> {
    let config = fx.link_client();
    let opened = client
        .run(async move {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).await.map_err(|e| setup("bind", e))?;
            socket
                .connect(addr)
                .await
                .map_err(|e| setup("connect", e))?;
            let mut rng = StdRng::from_os_rng();
            let mut buf = vec![0u8; 2048];
            for n in 0..sessions {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let seed = StdRng::from_rng(&mut rng);
                let mut core =
                    DgramClient::new(config.clone(), unix, Instant::now(), Box::new(seed))
                        .map_err(|e| setup("a client core", e))?;
                let deadline = tokio::time::Instant::now() + ONE_HANDSHAKE;
                while !core.is_open() {
                    while let Some(d) = core.poll_transmit() {
                        socket.send(&d).await.map_err(|e| setup("send", e))?;
                    }
                    if core.is_closed() {
                        return Err(setup("handshake", format!("session {n} closed")));
                    }
                    let wake = core
                        .poll_timeout()
                        .map(tokio::time::Instant::from_std)
                        .unwrap_or(deadline)
                        .min(deadline);
                    tokio::select! {
                        r = socket.recv(&mut buf) => {
                            let len = r.map_err(|e| setup("recv", e))?;
                            core.handle_datagram(Instant::now(), &mut buf[..len]);
                        }
                        () = tokio::time::sleep_until(wake) => {
                            if tokio::time::Instant::now() >= deadline {
                                return Err(setup("handshake", format!("session {n} timed out")));
                            }
                            core.handle_timeout(Instant::now());
                        }
                    }
                }
            }
            Ok::<_, LabError>(sessions)
        })
        .await??;
    let rss_after = crate::procfs::settled_rss(&me).await?;
    Ok(IdleResult {
        requested: sessions,
        sessions: opened,
        rss_before,
        rss_after,
        bytes_per_session: rss_after.saturating_sub(rss_before) as f64 / opened.max(1) as f64,
        ends: "server end (the clients' handshakes from one socket, each core dropped once open)"
            .into(),
    })
}
