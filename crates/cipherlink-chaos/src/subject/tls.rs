//! cipherlink's TLS as a subject: a fresh test PKI, both contexts, and
//! optionally the client's key log, with which the timeline decrypts every
//! TLS 1.3 record.

use std::sync::Arc;

use cipherlink::certs::{self, CertOptions};
use cipherlink::{Context, Tunnel};
use tokio::net::TcpStream;

use super::{PacketClass, Session, SetupError, StreamSubject, Subject, SubjectError};
use crate::output::PrivateFile;
use crate::tls_records::{self, KeyLog};

/// The most of the key log read back (some 200 bytes a line, five lines a
/// session): a bound, not a size a run comes near.
const KEY_LOG_MAX: u64 = 16 << 20;

/// cipherlink TLS with a fresh test PKI.
#[derive(Clone)]
pub struct Tls {
    server: Context,
    client: Context,
    key_log: Option<Arc<PrivateFile>>,
}

impl Tls {
    /// Makes a CA, a server certificate for `localhost`, and both contexts.
    pub fn new() -> Result<Self, SetupError> {
        Self::make(None)
    }

    /// As [`Tls::new`], and the client logs its sessions' secrets to
    /// `key_log` (the NSS key log format), which [`Subject::key_log`] reads
    /// back to decrypt the capture.
    pub fn with_key_log(key_log: Arc<PrivateFile>) -> Result<Self, SetupError> {
        Self::make(Some(key_log))
    }

    fn make(key_log: Option<Arc<PrivateFile>>) -> Result<Self, SetupError> {
        let tls = |what| move |source| SetupError::Tls { what, source };
        let bundle =
            certs::generate(&CertOptions::default()).map_err(tls("making test certificates"))?;
        let mut client_config = bundle.client_config();
        client_config.dangerous.key_log_file = key_log.as_ref().map(|k| k.path());
        Ok(Tls {
            server: Context::server(&bundle.server_config())
                .map_err(tls("the TLS server context"))?,
            client: Context::client(&client_config).map_err(tls("the TLS client context"))?,
            key_log,
        })
    }
}

/// A TLS session.
pub struct TlsSession(Tunnel<TcpStream>);

fn err(stage: &'static str, e: cipherlink::Error) -> SubjectError {
    SubjectError::new("tls", stage, e)
}

impl Subject for Tls {
    type Session = TlsSession;

    fn name(&self) -> &str {
        "tls"
    }

    /// The secrets the client logged, for decrypting the capture.
    fn key_log(&self) -> Option<KeyLog> {
        match self.key_log.as_ref()?.read(KEY_LOG_MAX) {
            Ok(bytes) => Some(KeyLog::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) => {
                tracing::warn!("reading the TLS key log: {e}");
                None
            }
        }
    }

    /// Without the key log: a TLS record header (content type, then
    /// version 3.x). TLS 1.3 hides every record after the ServerHello as
    /// application data, which the key log's decryption sees through.
    fn classify(&self, payload: &[u8]) -> PacketClass {
        tls_records::classify_header(payload)
    }
}

impl StreamSubject for Tls {
    async fn connect(&self, io: TcpStream) -> Result<TlsSession, SubjectError> {
        let tunnel = self
            .client
            .connect(io, "localhost")
            .await
            .map_err(|e| err("connect", e))?;
        Ok(TlsSession(tunnel))
    }

    async fn accept(&self, io: TcpStream) -> Result<TlsSession, SubjectError> {
        let tunnel = self
            .server
            .accept(io, "client")
            .await
            .map_err(|e| err("accept", e))?;
        Ok(TlsSession(tunnel))
    }
}

impl Session for TlsSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.0.write_all(data).await.map_err(|e| err("send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        self.0.read_chunk(max).await.map_err(|e| err("recv", e))
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.0.close().await.map_err(|e| err("close", e))
    }
}
