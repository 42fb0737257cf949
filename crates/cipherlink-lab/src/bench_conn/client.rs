//! One benchmark connection: connect, handshake, PING, PONG, close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cipherlink::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Exchange, PING, PONG};

/// What one connection measured.
pub struct Sample {
    /// From connect() to handshake done (to connect done for plain).
    pub handshake: Duration,
    /// The whole connection.
    pub total: Duration,
    /// TLS session resumed.
    pub resumed: bool,
}

/// A failure of one connection, as text for the report.
pub type SampleError = String;

async fn connect(addr: SocketAddr) -> Result<TcpStream, SampleError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Plain TCP round.
pub async fn plain(addr: SocketAddr, exchange: Exchange) -> Result<Sample, SampleError> {
    let start = Instant::now();
    let mut stream = connect(addr).await?;
    let handshake = start.elapsed();
    match exchange {
        Exchange::None => {}
        Exchange::PingPong | Exchange::Echo => {
            stream
                .write_all(PING)
                .await
                .map_err(|e| format!("write PING: {e}"))?;
            let mut reply = [0u8; PONG.len()];
            stream
                .read_exact(&mut reply)
                .await
                .map_err(|e| format!("read PONG: {e}"))?;
            if exchange == Exchange::PingPong && reply != *PONG {
                return Err(format!("expected PONG, got {reply:?}"));
            }
        }
    }
    let _ = stream.shutdown().await;
    Ok(Sample {
        handshake,
        total: start.elapsed(),
        resumed: false,
    })
}

/// TLS round through a cipherlink Tunnel.
pub async fn tls(
    addr: SocketAddr,
    context: &Context,
    exchange: Exchange,
) -> Result<Sample, SampleError> {
    let start = Instant::now();
    let stream = connect(addr).await?;
    let mut tunnel = context.tunnel(stream, addr.to_string());
    // PING leaves with the client's Finished: one flight, as a tuned client would send it.
    let first: &[u8] = if exchange == Exchange::PingPong {
        PING
    } else {
        &[]
    };
    tunnel
        .handshake_and_send(first)
        .await
        .map_err(|e| e.to_string())?;
    let handshake = start.elapsed();
    let resumed = tunnel.resumed();
    match exchange {
        Exchange::None => {}
        Exchange::PingPong => {
            let mut reply = [0u8; PONG.len()];
            tunnel
                .read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            if reply != *PONG {
                return Err(format!("expected PONG, got {reply:?}"));
            }
        }
        Exchange::Echo => {
            let line = b"PING\n";
            tunnel.write_all(line).await.map_err(|e| e.to_string())?;
            let mut reply = [0u8; 5];
            tunnel
                .read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    tunnel.close().await.map_err(|e| e.to_string())?;
    Ok(Sample {
        handshake,
        total: start.elapsed(),
        resumed,
    })
}
