//! The bench's client: how it reaches a pair's client end (a TCP port, or
//! a SOCKS5 port for obfs4), and the one-tunnel operations of the cases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend::MODE_ECHO;
use super::socks5::{Socks5Dialer, Socks5Error};

/// One tunnel's open-and-echo, from connect to the echo (bounded).
pub(super) const TUNNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the bench connects to get a tunnel to the backend.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// A plain TCP port (the backend itself, or a port-forwarding client end).
    Tcp(SocketAddr),
    /// A SOCKS5 port that is asked for the backend's tunnel.
    Socks5(Arc<Socks5Dialer>),
}

/// Why one tunnel failed (counted, not fatal).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    /// Connecting to the client end.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The SOCKS5 dial.
    #[error(transparent)]
    Socks(#[from] Socks5Error),
    /// Writing or reading through the tunnel.
    #[error("through the tunnel: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes came back, but not the ones sent.
    #[error("the echo came back wrong")]
    WrongEcho,
    /// Not done within [`TUNNEL_TIMEOUT`].
    #[error("not done within {0:?}")]
    TimedOut(Duration),
}

impl Entry {
    /// A connected stream that carries a tunnel to the backend.
    pub(super) async fn open(&self) -> Result<TcpStream, ConnError> {
        match self {
            Entry::Tcp(addr) => {
                let stream =
                    TcpStream::connect(addr)
                        .await
                        .map_err(|source| ConnError::Connect {
                            addr: *addr,
                            source,
                        })?;
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Entry::Socks5(dialer) => Ok(dialer.connect().await?),
        }
    }

    /// How the client reaches this entry, for the report, when it is not a TCP port.
    pub(super) fn interface(&self) -> Option<String> {
        match self {
            Entry::Tcp(_) => None,
            Entry::Socks5(dialer) => Some(format!(
                "SOCKS5 (transport arguments as username/password), CONNECT {}",
                dialer.target
            )),
        }
    }
}

/// A new tunnel: open, 4-byte echo, close.
pub(super) async fn one_tunnel(entry: &Entry) -> Result<(), ConnError> {
    let work = async {
        let mut stream = entry.open().await?;
        stream
            .write_all(&[MODE_ECHO, b'p', b'i', b'n', b'g'])
            .await?;
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).await?;
        if &back != b"ping" {
            return Err(ConnError::WrongEcho);
        }
        Ok(())
    };
    tokio::time::timeout(TUNNEL_TIMEOUT, work)
        .await
        .map_err(|_| ConnError::TimedOut(TUNNEL_TIMEOUT))?
}

/// A tunnel proved by a one-byte echo, then kept open and silent.
pub(super) async fn idle_tunnel(entry: &Entry) -> Result<TcpStream, ConnError> {
    let work = async {
        let mut stream = entry.open().await?;
        stream.write_all(&[MODE_ECHO, b'i']).await?;
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).await?;
        if &back != b"i" {
            return Err(ConnError::WrongEcho);
        }
        Ok(stream)
    };
    tokio::time::timeout(TUNNEL_TIMEOUT, work)
        .await
        .map_err(|_| ConnError::TimedOut(TUNNEL_TIMEOUT))?
}
