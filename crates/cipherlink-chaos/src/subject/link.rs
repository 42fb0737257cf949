//! The link protocol as a subject. Its driver only connects and listens by
//! address, so each end is spliced onto the lab's socket through a
//! loopback socket of its own namespace; the bytes through the lab are
//! exactly the link's. The client exports each session's transport keys
//! (`connect_exporting_keys`), with which the timeline reads every record
//! through `cipherlink_link::wire`: data, keepalive, close or rekey. The
//! lab's links are unpadded (`PORT_TAIL_LENGTH` 0), so msg1 and msg2 have
//! their exact documented sizes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherlink_link::driver::{self, LinkListener};
use cipherlink_link::wire::{self, Flow, Part, RecordType, TransportKeys};
use cipherlink_link::{
    ClientConfig, KeepaliveConfig, LinkParams, ServerEndpoint, ServerKey, TokenStore,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{PacketClass, Session, SetupError, StreamSubject, Subject, SubjectError};
use crate::tls_records::{RecordMap, Span};

/// Bound on the loopback splice's own set-up.
const SPLICE_SETUP: Duration = Duration::from_secs(10);

/// The link protocol with a fresh server key and token.
#[derive(Clone)]
pub struct Link {
    endpoint: Arc<ServerEndpoint>,
    client: Arc<ClientConfig>,
    /// Each session's transport keys (the driver's export for labs), to
    /// read the capture's records afterwards.
    keys: Arc<Mutex<Vec<TransportKeys>>>,
}

/// Keepalive timers of the lab. `stale`: short, so that a silent peer is
/// declared gone within about 2.5 s; otherwise long enough that 30% loss
/// (TCP retransmitting under the records) does not end a live link.
pub fn link_keepalive(stale: bool) -> KeepaliveConfig {
    let ms = Duration::from_millis;
    if stale {
        KeepaliveConfig {
            min_next_in: ms(250),
            max_next_in: ms(500),
            min_timeout: ms(250),
            max_timeout: ms(500),
            default_timeout: ms(500),
            max_retries: 3,
        }
    } else {
        KeepaliveConfig {
            min_next_in: ms(1000),
            max_next_in: ms(2000),
            min_timeout: ms(2000),
            max_timeout: ms(8000),
            default_timeout: ms(4000),
            max_retries: 4,
        }
    }
}

impl Link {
    /// A server key, one token for the client `chaos`, and `keepalive`.
    pub fn new(keepalive: KeepaliveConfig) -> Result<Self, SetupError> {
        let params = LinkParams {
            keepalive,
            // Exact handshake sizes for the classifier (no random padding).
            tail_length: 0,
            handshake_timeout: Duration::from_secs(30),
            ..LinkParams::default()
        };
        let (endpoint, client) = fresh(params)?;
        Ok(Link {
            endpoint,
            client,
            keys: Arc::default(),
        })
    }
}

/// A fresh server key with one token for the client `chaos`, its endpoint
/// (a replay filter of its own) and the client's configuration, both with
/// `params`: the link subjects over TCP and over UDP start here.
pub(super) fn fresh(
    params: LinkParams,
) -> Result<(Arc<ServerEndpoint>, Arc<ClientConfig>), SetupError> {
    let link = |what| move |source| SetupError::Link { what, source };
    let mut rng = StdRng::from_os_rng();
    let key = ServerKey::generate(&mut rng);
    let server_key = *key.public();
    let mut tokens = TokenStore::new();
    let token = tokens
        .issue("chaos", &mut rng)
        .map_err(link("issuing a link token"))?;
    let options = cipherlink_link::EndpointOptions {
        // Nothing else in the process shares the key.
        private_replay: true,
        ..Default::default()
    };
    let endpoint = ServerEndpoint::with_options(key, tokens, params.clone(), options)
        .map_err(link("the link server endpoint"))?;
    let client = ClientConfig {
        server_key,
        token,
        name: "chaos".into(),
        params,
    };
    Ok((Arc::new(endpoint), Arc::new(client)))
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("link", stage, reason)
}

/// Copies between the lab's socket and a loopback one until both ends
/// close or either fails; a failure closes both (as the lab's socket
/// timing out must end the link).
fn splice(mut lab: TcpStream, mut local: TcpStream) {
    tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut lab, &mut local).await;
    });
}

impl Subject for Link {
    type Session = LinkSession;

    fn name(&self) -> &str {
        "link"
    }

    fn classify(&self, _payload: &[u8]) -> PacketClass {
        PacketClass::Data
    }

    /// Every record read with the sessions' exported transport keys:
    /// data, keepalive (ping, pong), close, or rekey (counted as handshake).
    fn decode_records(&self, pcap: &[u8]) -> Option<RecordMap> {
        let keys = self.keys.lock().ok()?.clone();
        if keys.is_empty() {
            return None;
        }
        Some(RecordMap::from_streams(pcap, |up, down| {
            link_records(up, down, &keys)
        }))
    }

    /// Without the keys: msg1 (client) and msg2 (server) are the first
    /// bytes of each direction, of fixed length without padding. After
    /// them a record's type is encrypted, but a ping or pong is the only
    /// record of [`wire::UNPADDED_KEEPALIVE_LEN`] bytes (an 8-byte body)
    /// and every message of a scenario is larger.
    fn classify_at(&self, from_client: bool, offset: u64, payload: &[u8]) -> PacketClass {
        let handshake = flow(from_client).unpadded_handshake_len() as u64;
        let keepalive = wire::UNPADDED_KEEPALIVE_LEN;
        if offset < handshake {
            PacketClass::Handshake
        } else if payload.len().is_multiple_of(keepalive) && payload.len() <= 3 * keepalive {
            PacketClass::Keepalive
        } else {
            PacketClass::Data
        }
    }

    fn gone_within(&self) -> Option<Duration> {
        let k = &self.client.params.keepalive;
        Some(k.max_next_in + k.max_timeout * (k.max_retries + 1))
    }
}

impl StreamSubject for Link {
    async fn connect(&self, io: TcpStream) -> Result<Self::Session, SubjectError> {
        let local = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| err("connect", format!("loopback splice: {e}")))?;
        let addr = local.local_addr().map_err(|e| err("connect", e))?;
        tokio::spawn(async move {
            if let Ok(Ok((s, _))) = timeout(SPLICE_SETUP, local.accept()).await {
                let _ = s.set_nodelay(true);
                splice(io, s);
            }
        });
        let (link, keys) = driver::connect_exporting_keys(addr, &self.client)
            .await
            .map_err(|e| err("connect", e))?;
        if let Ok(mut all) = self.keys.lock() {
            all.push(keys);
        }
        Ok(LinkSession(link))
    }

    async fn accept(&self, io: TcpStream) -> Result<Self::Session, SubjectError> {
        let mut listener = LinkListener::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::clone(&self.endpoint),
        )
        .await
        .map_err(|e| err("accept", e))?;
        let local = TcpStream::connect(listener.local_addr())
            .await
            .map_err(|e| err("accept", format!("loopback splice: {e}")))?;
        let _ = local.set_nodelay(true);
        splice(io, local);
        // The listener answers only authenticated clients; a failed
        // handshake shows as no link within the bound.
        match timeout(self.client.params.handshake_timeout, listener.accept()).await {
            Ok(Some(link)) => Ok(LinkSession(link)),
            Ok(None) => Err(err("accept", "the listener stopped")),
            Err(_) => Err(err("accept", "no authenticated link in time")),
        }
    }
}

fn flow(from_client: bool) -> Flow {
    if from_client {
        Flow::ToServer
    } else {
        Flow::ToClient
    }
}

/// The record spans of one captured link, with whichever exported key set
/// opens the most of its records (the AEAD says which session it was).
fn link_records(up: &[u8], down: &[u8], keys: &[TransportKeys]) -> [Vec<Span>; 2] {
    // Without a key set that opens anything: each direction's handshake message.
    let handshake_only = |stream: &[u8], flow: Flow| -> Vec<wire::Span> {
        if stream.is_empty() {
            return Vec::new();
        }
        vec![wire::Span {
            range: 0..flow.unpadded_handshake_len().min(stream.len()),
            part: Part::Handshake,
        }]
    };
    let mut best = [
        handshake_only(up, Flow::ToServer),
        handshake_only(down, Flow::ToClient),
    ];
    for k in keys {
        let tried = [
            wire::spans(up, Flow::ToServer, k),
            wire::spans(down, Flow::ToClient, k),
        ];
        if tried[0].len() + tried[1].len() > best[0].len() + best[1].len() {
            best = tried;
        }
    }
    best.map(|spans| spans.into_iter().map(class_span).collect())
}

fn class_span(span: wire::Span) -> Span {
    let class = match span.part {
        Part::Handshake | Part::Record(RecordType::Rekey) => PacketClass::Handshake,
        Part::Record(RecordType::Data) => PacketClass::Data,
        Part::Record(RecordType::Ping | RecordType::Pong) => PacketClass::Keepalive,
        Part::Record(RecordType::Close) => PacketClass::Close,
    };
    (span.range.start as u64, span.range.end as u64, class)
}

/// A link session.
pub struct LinkSession(driver::Link);

impl Session for LinkSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.0.write_all(data).await.map_err(|e| err("send", e))?;
        self.0.flush().await.map_err(|e| err("send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; max];
        let n = self.0.read(&mut buf).await.map_err(|e| err("recv", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.0.shutdown().await.map_err(|e| err("close", e))
    }
}
