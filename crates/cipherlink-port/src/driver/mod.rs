//! PORT on tokio: [`connect`] (the client's two connections) and
//! [`PortListener`] (the server's listener and its per-user ports), both
//! yielding a [`PortSession`] of framed messages.

mod client;
mod gate;
mod listener;
mod replay;
mod session;

pub use client::connect;
pub use listener::{
    Accepted, Admit, PendingLimits, PortListener, MAX_PENDING, MAX_PENDING_PER_IP, REPLAY_MEMORY,
};
pub use session::{PortReader, PortSession, PortWriter};

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::Error;
use crate::settings::PortSettings;

fn io_err(what: impl Into<String>, e: std::io::Error) -> Error {
    Error::Io {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// `fut`, or [`Error::Timeout`] naming `what` after `limit`.
async fn within<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| Err(Error::Timeout(what())))
}

/// TCP keepalive as `PORT_KEEPIDLE`/`PORT_KEEPINTVL`/`PORT_KEEPCNT` say:
/// PORT's only liveness check on an idle connection.
fn configure(stream: &TcpStream, s: &PortSettings) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(s.keepidle)
        .with_interval(s.keepintvl)
        .with_retries(s.keepcnt);
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        tracing::warn!("PORT: setting TCP keepalive: {e}");
    }
    let _ = stream.set_nodelay(true);
}
