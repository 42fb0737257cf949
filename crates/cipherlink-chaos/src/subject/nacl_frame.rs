//! The proxy's NaCl box frame as a subject (`v1` on the wire, in flags and
//! in reports): two fresh key pairs, pre-shared; frames classed by their
//! header.

use cipherlink_proxy::nacl_frame as frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{PacketClass, Session, StreamSubject, Subject, SubjectError};

/// Largest read from the socket at once.
const READ: usize = 16 * 1024;

/// The proxy's NaCl box frame with two fresh key pairs.
#[derive(Clone)]
pub struct NaclFrame {
    client: frame::Keys,
    server: frame::Keys,
}

impl NaclFrame {
    /// Two fresh key pairs and both ends' boxes.
    pub fn new() -> Self {
        let (client, client_pub) = frame::keys::generate_pair();
        let (server, server_pub) = frame::keys::generate_pair();
        NaclFrame {
            client: frame::Keys::new(&client, &server_pub),
            server: frame::Keys::new(&server, &client_pub),
        }
    }
}

impl Default for NaclFrame {
    fn default() -> Self {
        Self::new()
    }
}

/// A NaCl frame session: frames out, frames in.
pub struct NaclFrameSession {
    io: TcpStream,
    sealer: frame::Sealer,
    opener: frame::Opener,
    decoder: frame::Decoder,
    plain: Vec<u8>,
}

impl NaclFrameSession {
    fn new(io: TcpStream, keys: frame::Keys, side: frame::Side) -> Self {
        // Both halves together, so the opener knows our own nonce prefix and
        // refuses our frames reflected back, as the proxy does.
        let (sealer, opener) = frame::session(
            keys,
            frame::DEFAULT_MAX_DATA_SIZE,
            side,
            frame::Mode::Compatible,
        );
        NaclFrameSession {
            io,
            sealer,
            opener,
            decoder: frame::Decoder::new(frame::DEFAULT_MAX_DATA_SIZE),
            plain: Vec::new(),
        }
    }
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("v1", stage, reason)
}

impl Subject for NaclFrame {
    type Session = NaclFrameSession;

    fn name(&self) -> &str {
        "v1"
    }

    /// A frame header: version 1, nonce size 24 (big-endian).
    fn classify(&self, payload: &[u8]) -> PacketClass {
        match payload {
            [1, 0, 0, 0, 24, ..] => PacketClass::Data,
            _ => PacketClass::Unknown,
        }
    }
}

impl StreamSubject for NaclFrame {
    async fn connect(&self, io: TcpStream) -> Result<NaclFrameSession, SubjectError> {
        Ok(NaclFrameSession::new(
            io,
            self.client.clone(),
            frame::Side::Client,
        ))
    }

    async fn accept(&self, io: TcpStream) -> Result<NaclFrameSession, SubjectError> {
        Ok(NaclFrameSession::new(
            io,
            self.server.clone(),
            frame::Side::Server,
        ))
    }
}

impl Session for NaclFrameSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        let mut out = Vec::with_capacity(data.len() + frame::OVERHEAD);
        self.sealer
            .seal(data, &mut out)
            .map_err(|e| err("send", e))?;
        self.io.write_all(&out).await.map_err(|e| err("send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; READ];
        while self.plain.is_empty() {
            let n = self.io.read(&mut buf).await.map_err(|e| err("recv", e))?;
            if n == 0 {
                self.decoder.finish().map_err(|e| err("recv", e))?;
                return Ok(Vec::new());
            }
            let mut input = &buf[..n];
            loop {
                let frame = match self.decoder.decode(&mut input) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Err(err("recv", e)),
                };
                let plain = self.opener.open(frame).map_err(|e| err("recv", e))?;
                self.plain.extend_from_slice(plain);
            }
        }
        let n = self.plain.len().min(max);
        Ok(self.plain.drain(..n).collect())
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.io.shutdown().await.map_err(|e| err("close", e))
    }
}
