//! Plain UDP, no protocol: the baseline every datagram transport is
//! compared with. The server's session is the first client that sends;
//! both sockets are connected to their peer, so nothing else is read.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::datagram::{DatagramSession, DatagramSubject};
use super::SubjectError;

/// Largest datagram read (UDP's maximum payload over IPv4).
const MAX_DATAGRAM: usize = 65_507;

/// Plain UDP, no protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainUdp;

/// A plain UDP session: a connected socket, and for the server the first
/// datagram, read to learn the client's address.
#[derive(Debug)]
pub struct PlainUdpSession {
    socket: UdpSocket,
    first: Option<Vec<u8>>,
    buf: Vec<u8>,
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("udp", stage, reason)
}

impl DatagramSubject for PlainUdp {
    type Session = PlainUdpSession;
    /// The bound socket, until the first session takes it.
    type Listening = Option<UdpSocket>;

    fn name(&self) -> &str {
        "udp"
    }

    async fn listen(
        &self,
        addr: SocketAddr,
    ) -> Result<(Option<UdpSocket>, SocketAddr), SubjectError> {
        let e = |e: std::io::Error| err("accept", format!("binding {addr}: {e}"));
        let socket = UdpSocket::bind(addr).await.map_err(e)?;
        let local = socket.local_addr().map_err(e)?;
        Ok((Some(socket), local))
    }

    /// The session keeps the listening socket: a new one bound to the
    /// same port would miss what arrives meanwhile.
    async fn take(
        &self,
        listening: &mut Option<UdpSocket>,
    ) -> Result<PlainUdpSession, SubjectError> {
        let socket = listening
            .take()
            .ok_or_else(|| err("accept", "the socket already serves a session"))?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, peer) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| err("accept", e))?;
        let first = buf[..n].to_vec();
        socket
            .connect(peer)
            .await
            .map_err(|e| err("accept", format!("connecting to {peer}: {e}")))?;
        Ok(PlainUdpSession {
            socket,
            first: Some(first),
            buf,
        })
    }

    async fn dial(&self, server: SocketAddr) -> Result<PlainUdpSession, SubjectError> {
        let socket = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
            .await
            .map_err(|e| err("connect", e))?;
        socket
            .connect(server)
            .await
            .map_err(|e| err("connect", format!("{server}: {e}")))?;
        Ok(PlainUdpSession {
            socket,
            first: None,
            buf: vec![0u8; MAX_DATAGRAM],
        })
    }
}

impl DatagramSession for PlainUdpSession {
    async fn send(&mut self, datagram: &[u8]) -> Result<(), SubjectError> {
        match self.socket.send(datagram).await {
            Ok(_) => Ok(()),
            // An ICMP error of an earlier datagram (the server not yet
            // listening): UDP carries on, as an application would.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(err("send", e)),
        }
    }

    async fn recv(&mut self) -> Result<Option<Vec<u8>>, SubjectError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        loop {
            match self.socket.recv(&mut self.buf).await {
                Ok(n) => return Ok(Some(self.buf[..n].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(err("recv", e)),
            }
        }
    }

    /// UDP has no end to tell the peer.
    async fn close(&mut self) -> Result<(), SubjectError> {
        Ok(())
    }
}
