//! Plain TCP, no protocol: the baseline every subject is compared with.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{PacketClass, Session, StreamSubject, Subject, SubjectError};

/// Plain TCP, no protocol: the baseline every subject is compared with.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

/// A plain TCP session.
#[derive(Debug)]
pub struct PlainSession(TcpStream);

fn plain_error(stage: &'static str, err: std::io::Error) -> SubjectError {
    SubjectError::new("tcp", stage, err)
}

impl Subject for PlainTcp {
    type Session = PlainSession;

    fn name(&self) -> &str {
        "tcp"
    }

    fn classify(&self, _payload: &[u8]) -> PacketClass {
        PacketClass::Data
    }
}

impl StreamSubject for PlainTcp {
    async fn connect(&self, io: TcpStream) -> Result<PlainSession, SubjectError> {
        Ok(PlainSession(io))
    }

    async fn accept(&self, io: TcpStream) -> Result<PlainSession, SubjectError> {
        Ok(PlainSession(io))
    }
}

impl Session for PlainSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.0
            .write_all(data)
            .await
            .map_err(|e| plain_error("send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; max];
        let n = self
            .0
            .read(&mut buf)
            .await
            .map_err(|e| plain_error("recv", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.0.shutdown().await.map_err(|e| plain_error("close", e))
    }
}
