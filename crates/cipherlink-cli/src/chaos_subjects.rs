//! `Subject`s of `cipherlink chaos run`: the protocols under test, adapted
//! to the chaos lab's trait (the chaos crate depends on none of them).
//!
//! - `tls`: cipherlink's TLS (`Context`/`Tunnel`); the client writes its
//!   secrets to a key log in the report folder, with which the timeline
//!   decrypts every TLS 1.3 record and classes packets by what they carry
//!   (Wireshark and tshark read the same file next to the pcaps).
//! - `link`: the link protocol (`cipherlink-link`), with `PORT_*` keepalive
//!   timers shortened so the stale scenario ends in seconds. Its driver
//!   only connects and listens by address, so each end is spliced onto the
//!   lab's socket through a loopback socket of its own namespace; the bytes
//!   through the lab are exactly the link's. The client exports each
//!   session's transport secrets (`connect_exporting_keys`), with which the
//!   timeline decrypts every record: data, keepalive, close or rekey. With
//!   `PORT_TAIL_LENGTH` 0 msg1 and msg2 have exact sizes.
//! - `v1`: the proxy's v1 frame (NaCl box, pre-shared keys); frames
//!   classified by their header (`version 1, nonce_size 24`).
//! - `plain`: TCP alone, the baseline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::certs::{self, CertOptions};
use cipherlink::{Context, Tunnel};
use cipherlink_chaos::output::PrivateFile;
use cipherlink_chaos::subject::{PacketClass, Session, Subject, SubjectError};
use cipherlink_chaos::tls_records::{KeyLog, RecordMap, Span};
use cipherlink_link::proto::handshake::TransportKeys;
use cipherlink_link::proto::handshake::{C1_MIN, C2_MIN, MSG1_HEADER, MSG2_HEADER};
use cipherlink_link::proto::record::{Direction, RecordType, INNER_HEADER};
use cipherlink_link::{
    ClientConfig, KeepaliveConfig, LinkParams, ServerEndpoint, ServerKey, TokenStore,
};
use cipherlink_proxy::v1;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Bound on the loopback splice's own set-up.
const SPLICE_SETUP: Duration = Duration::from_secs(10);
/// Largest read from a socket at once.
const READ: usize = 16 * 1024;

fn err(subject: &str, stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError {
        subject: subject.into(),
        stage,
        reason: reason.to_string(),
    }
}

// ---------------------------------------------------------------- TLS

/// cipherlink TLS with a fresh test PKI.
#[derive(Clone)]
pub struct Tls {
    server: Context,
    client: Context,
    key_log: Arc<PrivateFile>,
}

/// The most of the key log read back (some 200 bytes a line, five lines a
/// session): a bound, not a size a run comes near.
const KEY_LOG_MAX: u64 = 16 << 20;

impl Tls {
    /// Makes a CA, a server certificate for `localhost`, and both contexts;
    /// the client logs its sessions' secrets to `key_log`.
    pub fn new(key_log: Arc<PrivateFile>) -> Result<Self> {
        let bundle =
            certs::generate(&CertOptions::default()).context("making test certificates")?;
        Ok(Tls {
            server: Context::server(&bundle.server_config()).context("TLS server context")?,
            client: Context::client(&{
                let mut edited = bundle.client_config();
                edited.dangerous.key_log_file = Some(key_log.path());
                edited
            })
            .context("TLS client context")?,
            key_log,
        })
    }
}

/// A TLS session.
pub struct TlsSession(Tunnel<TcpStream>);

impl Subject for Tls {
    type Session = TlsSession;

    fn name(&self) -> &str {
        "tls"
    }

    async fn connect(&self, io: TcpStream) -> Result<TlsSession, SubjectError> {
        let t = self
            .client
            .connect(io, "localhost")
            .await
            .map_err(|e| err("tls", "connect", e))?;
        Ok(TlsSession(t))
    }

    async fn accept(&self, io: TcpStream) -> Result<TlsSession, SubjectError> {
        let t = self
            .server
            .accept(io, "client")
            .await
            .map_err(|e| err("tls", "accept", e))?;
        Ok(TlsSession(t))
    }

    /// The secrets the client logged, for decrypting the capture.
    fn key_log(&self) -> Option<KeyLog> {
        match self.key_log.read(KEY_LOG_MAX) {
            Ok(bytes) => Some(KeyLog::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) => {
                tracing::warn!("reading the TLS key log: {e}");
                None
            }
        }
    }

    /// Without the key log: a TLS record header (content type, then
    /// version 3.x). TLS 1.3 hides every record after the ServerHello as
    /// application data, which the key log's decryption above sees through.
    fn classify(&self, payload: &[u8]) -> PacketClass {
        cipherlink_chaos::tls_records::classify_header(payload)
    }
}

impl Session for TlsSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.0
            .write_all(data)
            .await
            .map_err(|e| err("tls", "send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        self.0
            .read_chunk(max)
            .await
            .map_err(|e| err("tls", "recv", e))
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.0.close().await.map_err(|e| err("tls", "close", e))
    }
}

// ---------------------------------------------------------------- link

/// msg1 and msg2 without padding (the lab's tail length is 0).
const MSG1: usize = MSG1_HEADER + C1_MIN;
const MSG2: usize = MSG2_HEADER + C2_MIN;

/// The link protocol with a fresh server key and token.
#[derive(Clone)]
pub struct Link {
    endpoint: Arc<ServerEndpoint>,
    client: Arc<ClientConfig>,
    /// Each session's transport secrets (the driver's debug export), to
    /// decrypt the capture's records afterwards.
    keys: Arc<std::sync::Mutex<Vec<TransportKeys>>>,
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
    pub fn new(keepalive: KeepaliveConfig) -> Result<Self> {
        let mut rng = StdRng::from_os_rng();
        let key = ServerKey::generate(&mut rng);
        let server_key = *key.public();
        let mut tokens = TokenStore::new();
        let token = tokens
            .issue("chaos", &mut rng)
            .context("issuing a link token")?;
        let params = LinkParams {
            keepalive,
            // Exact sizes for the classifier (no random padding).
            tail_length: 0,
            handshake_timeout: Duration::from_secs(30),
            ..LinkParams::default()
        };
        let endpoint =
            ServerEndpoint::new(key, tokens, params.clone()).context("link server endpoint")?;
        Ok(Link {
            endpoint: Arc::new(endpoint),
            client: Arc::new(ClientConfig {
                server_key,
                token,
                name: "chaos".into(),
                params,
            }),
            keys: Arc::default(),
        })
    }
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

    async fn connect(&self, io: TcpStream) -> Result<Self::Session, SubjectError> {
        let local = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| err("link", "connect", format!("loopback splice: {e}")))?;
        let addr = local.local_addr().map_err(|e| err("link", "connect", e))?;
        tokio::spawn(async move {
            if let Ok(Ok((s, _))) = timeout(SPLICE_SETUP, local.accept()).await {
                let _ = s.set_nodelay(true);
                splice(io, s);
            }
        });
        let (link, keys) = cipherlink_link::driver::connect_exporting_keys(addr, &self.client)
            .await
            .map_err(|e| err("link", "connect", e))?;
        if let Ok(mut all) = self.keys.lock() {
            all.push(keys);
        }
        Ok(LinkSession(link))
    }

    async fn accept(&self, io: TcpStream) -> Result<Self::Session, SubjectError> {
        let mut listener = cipherlink_link::driver::LinkListener::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::clone(&self.endpoint),
        )
        .await
        .map_err(|e| err("link", "accept", e))?;
        let local = TcpStream::connect(listener.local_addr())
            .await
            .map_err(|e| err("link", "accept", format!("loopback splice: {e}")))?;
        let _ = local.set_nodelay(true);
        splice(io, local);
        // The listener answers only authenticated clients; a failed
        // handshake shows as no link within the bound.
        match timeout(self.client.params.handshake_timeout, listener.accept()).await {
            Ok(Some(link)) => Ok(LinkSession(link)),
            Ok(None) => Err(err("link", "accept", "the listener stopped")),
            Err(_) => Err(err("link", "accept", "no authenticated link in time")),
        }
    }

    fn classify(&self, _payload: &[u8]) -> PacketClass {
        PacketClass::Data
    }

    /// Every record decrypted with the session's exported transport keys:
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
    /// them, records are `masked length ‖ sealed type, length, body, tag`:
    /// their type is encrypted, but a ping or pong is the only 29-byte
    /// record (8-byte body) and every message of the run is larger.
    fn classify_at(&self, from_client: bool, offset: u64, payload: &[u8]) -> PacketClass {
        let handshake = if from_client { MSG1 } else { MSG2 } as u64;
        const KEEPALIVE: usize = 2 + INNER_HEADER + 8 + 16;
        if offset < handshake {
            PacketClass::Handshake
        } else if payload.len().is_multiple_of(KEEPALIVE) && payload.len() <= 3 * KEEPALIVE {
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

/// The record spans of one captured link, with whichever exported key set
/// opens its records (the AEAD says which session it was).
fn link_records(up: &[u8], down: &[u8], keys: &[TransportKeys]) -> [Vec<Span>; 2] {
    let mut best = [
        link_direction(up, MSG1, None),
        link_direction(down, MSG2, None),
    ];
    for k in keys {
        let tried = [
            link_direction(up, MSG1, Some(Direction::new(k.c2s_key, k.c2s_len))),
            link_direction(down, MSG2, Some(Direction::new(k.s2c_key, k.s2c_len))),
        ];
        if tried[0].len() + tried[1].len() > best[0].len() + best[1].len() {
            best = tried;
        }
    }
    best
}

/// One direction: its handshake message, then every record that opens.
fn link_direction(stream: &[u8], handshake: usize, mut keys: Option<Direction>) -> Vec<Span> {
    let mut spans = Vec::new();
    if stream.is_empty() {
        return spans;
    }
    let mut at = handshake.min(stream.len());
    spans.push((0, at as u64, PacketClass::Handshake));
    let Some(dir) = keys.as_mut() else {
        return spans;
    };
    while let Ok(Some(n)) = dir.peek_len(&stream[at..]) {
        let mut record = stream[at..at + n].to_vec();
        let Ok((ty, _)) = dir.open(&mut record) else {
            break;
        };
        let class = match ty {
            RecordType::Data => PacketClass::Data,
            RecordType::Ping | RecordType::Pong => PacketClass::Keepalive,
            RecordType::Close => PacketClass::Close,
            RecordType::Rekey => PacketClass::Handshake,
        };
        if ty == RecordType::Rekey {
            dir.rekey();
        }
        spans.push((at as u64, (at + n) as u64, class));
        at += n;
    }
    spans
}

/// A link session.
pub struct LinkSession(cipherlink_link::driver::Link);

impl Session for LinkSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.0
            .write_all(data)
            .await
            .map_err(|e| err("link", "send", e))?;
        self.0.flush().await.map_err(|e| err("link", "send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; max];
        let n = self
            .0
            .read(&mut buf)
            .await
            .map_err(|e| err("link", "recv", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.0.shutdown().await.map_err(|e| err("link", "close", e))
    }
}

// ---------------------------------------------------------------- v1

/// The proxy's v1 frame with two fresh key pairs.
#[derive(Clone)]
pub struct V1 {
    client: v1::Keys,
    server: v1::Keys,
}

impl V1 {
    /// Two fresh key pairs and both ends' boxes.
    pub fn new() -> Self {
        let (client, client_pub) = v1::keys::generate_pair();
        let (server, server_pub) = v1::keys::generate_pair();
        V1 {
            client: v1::Keys::new(&client, &server_pub),
            server: v1::Keys::new(&server, &client_pub),
        }
    }
}

/// A v1 session: frames out, frames in.
pub struct V1Session {
    io: TcpStream,
    sealer: v1::Sealer,
    opener: v1::Opener,
    decoder: v1::Decoder,
    plain: Vec<u8>,
}

impl V1Session {
    fn new(io: TcpStream, keys: v1::Keys, side: v1::Side) -> Self {
        // Both halves together, so the opener knows our own nonce prefix and
        // refuses our frames reflected back, as the proxy does.
        let (sealer, opener) =
            v1::session(keys, v1::DEFAULT_MAX_DATA_SIZE, side, v1::Mode::Compatible);
        V1Session {
            io,
            sealer,
            opener,
            decoder: v1::Decoder::new(v1::DEFAULT_MAX_DATA_SIZE),
            plain: Vec::new(),
        }
    }
}

impl Subject for V1 {
    type Session = V1Session;

    fn name(&self) -> &str {
        "v1"
    }

    async fn connect(&self, io: TcpStream) -> Result<V1Session, SubjectError> {
        Ok(V1Session::new(io, self.client.clone(), v1::Side::Client))
    }

    async fn accept(&self, io: TcpStream) -> Result<V1Session, SubjectError> {
        Ok(V1Session::new(io, self.server.clone(), v1::Side::Server))
    }

    /// A frame header: version 1, nonce size 24 (big-endian).
    fn classify(&self, payload: &[u8]) -> PacketClass {
        match payload {
            [1, 0, 0, 0, 24, ..] => PacketClass::Data,
            _ => PacketClass::Unknown,
        }
    }
}

impl Session for V1Session {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        let mut out = Vec::with_capacity(data.len() + v1::OVERHEAD);
        self.sealer
            .seal(data, &mut out)
            .map_err(|e| err("v1", "send", e))?;
        self.io
            .write_all(&out)
            .await
            .map_err(|e| err("v1", "send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; READ];
        while self.plain.is_empty() {
            let n = self
                .io
                .read(&mut buf)
                .await
                .map_err(|e| err("v1", "recv", e))?;
            if n == 0 {
                self.decoder.finish().map_err(|e| err("v1", "recv", e))?;
                return Ok(Vec::new());
            }
            let mut input = &buf[..n];
            loop {
                let frame = match self.decoder.decode(&mut input) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Err(err("v1", "recv", e)),
                };
                let plain = self.opener.open(frame).map_err(|e| err("v1", "recv", e))?;
                self.plain.extend_from_slice(plain);
            }
        }
        let n = self.plain.len().min(max);
        Ok(self.plain.drain(..n).collect())
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.io.shutdown().await.map_err(|e| err("v1", "close", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cipherlink_chaos::output::{Invoker, OutDir};
    use cipherlink_chaos::recorder::Recorder;
    use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
    use cipherlink_chaos::subject::{PacketClass, Session, Subject};
    use tokio::net::{TcpListener, TcpStream};

    use super::{link_keepalive, Link};

    /// A real link through the recording proxy: with the exported keys every
    /// record after the handshake decodes (data, then the close record),
    /// where the record bytes alone say nothing of their type.
    #[tokio::test]
    async fn a_captured_link_decodes_record_by_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let subject = Link::new(link_keepalive(false)).expect("link subject");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = listener.local_addr().expect("addr");
        let server = subject.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut session = server.accept(tcp).await.expect("server session");
            while let Ok(chunk) = session.recv(4096).await {
                if chunk.is_empty() || session.send(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = session.close().await;
        });
        let out = OutDir::open(dir.path(), Invoker::current_user()).expect("out dir");
        let (recorder, writer) =
            Recorder::create(out.create("link.pcap").expect("pcap")).expect("recorder");
        let mut config =
            ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), upstream.to_string());
        config.recorder = Some(recorder);
        let proxy = StreamProxy::bind(config).await.expect("proxy");
        let via = proxy.local_addr().expect("proxy addr");
        let proxy_task = tokio::spawn(proxy.run());

        let tcp = TcpStream::connect(via).await.expect("connect");
        let mut session = subject.connect(tcp).await.expect("client session");
        session.send(b"hello link").await.expect("send");
        let mut echoed = Vec::new();
        while echoed.len() < 10 {
            echoed.extend(session.recv(4096).await.expect("echo"));
        }
        assert_eq!(echoed, b"hello link");
        session.close().await.expect("close");

        // The file appears when the recording ends: once the connection's
        // task, and with it its recorder handles, is gone (the client's
        // close ends it).
        drop(session);
        proxy_task.abort();
        let (_, pcap) = writer
            .finish(Duration::from_secs(20))
            .await
            .expect("capture committed");
        let bytes = std::fs::read(&pcap).expect("capture");
        let map = subject.decode_records(&bytes).expect("decoded");
        let up = match map.classes().as_slice() {
            [[up, down]] => {
                assert!(down.contains(&PacketClass::Data), "{down:?}");
                up.clone()
            }
            other => panic!("one connection expected: {other:?}"),
        };
        assert_eq!(up.first(), Some(&PacketClass::Handshake), "{up:?}");
        assert!(up.contains(&PacketClass::Data), "{up:?}");
        assert_eq!(up.last(), Some(&PacketClass::Close), "{up:?}");
    }
}
