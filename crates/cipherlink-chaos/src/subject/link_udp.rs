//! The link protocol's datagram mode (`cipherlink_link::dgram`) as a
//! datagram subject: a fresh server key and token, the lab's keepalive
//! timers ([`super::link_keepalive`]), and each session's transport
//! secrets exported by the client so that the timeline reads every
//! datagram: the two pieces of msg1 and msg2 (or a cookie reply) are the
//! handshake, pings and pongs keepalive, data data, a close the close.
//! It keeps a replay window, so it promises each datagram at most once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cipherlink_link::dgram::capture::{CaptureReader, DatagramKind};
use cipherlink_link::dgram::driver::{
    connect_exporting_keys, DgramListener, DgramReader, DgramWriter,
};
use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_link::proto::RecordType;
use cipherlink_link::wire::TransportKeys;
use cipherlink_link::{ClientConfig, KeepaliveConfig, LinkParams, ServerEndpoint};

use super::datagram::{DatagramSession, DatagramSubject};
use super::{PacketClass, SetupError, SubjectError};

/// The link over UDP with a fresh server key and token.
#[derive(Clone)]
pub struct LinkUdp {
    endpoint: Arc<ServerEndpoint>,
    client: Arc<ClientConfig>,
    keys: Arc<Mutex<Vec<TransportKeys>>>,
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("link-udp", stage, reason)
}

impl LinkUdp {
    /// A server key, one token for the client `chaos`, and `keepalive`.
    pub fn new(keepalive: KeepaliveConfig) -> Result<Self, SetupError> {
        let params = LinkParams {
            keepalive,
            ..LinkParams::default()
        };
        let (endpoint, client) = super::link::fresh(params)?;
        Ok(Self {
            endpoint,
            client,
            keys: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn exported(&self) -> Vec<TransportKeys> {
        self.keys.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

impl DatagramSubject for LinkUdp {
    type Session = LinkUdpSession;
    type Listening = DgramListener;

    fn name(&self) -> &str {
        "link-udp"
    }

    fn classify_datagrams(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut reader = CaptureReader::new(&self.client.server_key, &self.exported(), unix);
        datagrams
            .iter()
            .map(|&(from_client, d)| match reader.classify(from_client, d) {
                DatagramKind::FirstPiece
                | DatagramKind::SecondPiece
                | DatagramKind::CookieReply
                | DatagramKind::Msg2 => PacketClass::Handshake,
                DatagramKind::Record(RecordType::Data) => PacketClass::Data,
                DatagramKind::Record(RecordType::Close) => PacketClass::Close,
                DatagramKind::Record(_) => PacketClass::Keepalive,
                DatagramKind::Unknown => PacketClass::Unknown,
            })
            .collect()
    }

    /// §5's bound: the longest idle time, then every retry's timeout.
    fn gone_within(&self) -> Option<Duration> {
        let k = &self.client.params.keepalive;
        Some(k.max_next_in + (k.max_retries + 1) * k.max_timeout)
    }

    fn at_most_once(&self) -> bool {
        true
    }

    async fn listen(&self, addr: SocketAddr) -> Result<(DgramListener, SocketAddr), SubjectError> {
        let listener = DgramListener::bind(
            &addr.to_string(),
            Arc::clone(&self.endpoint),
            DgramServerOptions::default(),
        )
        .await
        .map_err(|e| err("accept", e))?;
        let local = listener.local_addr();
        Ok((listener, local))
    }

    async fn take(&self, listening: &mut DgramListener) -> Result<LinkUdpSession, SubjectError> {
        match listening.accept().await {
            Some(a) => Ok(LinkUdpSession::new(a.session)),
            None => Err(err("accept", "the listener stopped")),
        }
    }

    async fn dial(&self, server: SocketAddr) -> Result<LinkUdpSession, SubjectError> {
        let (session, keys) = connect_exporting_keys(&server.to_string(), (*self.client).clone())
            .await
            .map_err(|e| err("connect", e))?;
        if let Ok(mut k) = self.keys.lock() {
            k.push(keys);
        }
        Ok(LinkUdpSession::new(session))
    }
}

/// A session of the link over UDP; its writer goes with the close.
pub struct LinkUdpSession {
    reader: DgramReader,
    writer: Option<DgramWriter>,
}

impl LinkUdpSession {
    fn new(s: cipherlink_link::dgram::driver::DgramSession) -> Self {
        Self {
            reader: s.reader,
            writer: Some(s.writer),
        }
    }
}

impl DatagramSession for LinkUdpSession {
    async fn send(&mut self, datagram: &[u8]) -> Result<(), SubjectError> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| err("send", "the session was closed here"))?;
        w.send(datagram).await.map_err(|e| err("send", e))
    }

    async fn recv(&mut self) -> Result<Option<Vec<u8>>, SubjectError> {
        self.reader.recv().await.map_err(|e| err("recv", e))
    }

    /// The close datagram leaves before this returns (the client's writer
    /// waits for its task).
    async fn close(&mut self) -> Result<(), SubjectError> {
        match self.writer.take() {
            Some(w) => w.close().await.map_err(|e| err("close", e)),
            None => Ok(()),
        }
    }
}
