//! The listening side: one HTTP/1.1 (optionally TLS) server that turns each
//! `POST` into a buffered message and answers as the package does.
//!
//! | case | status, body |
//! |---|---|
//! | stored | `200 Message received` |
//! | `GET`/`HEAD`, any path | `200 Connection working (GET)` |
//! | other method | `405` |
//! | no `Content-Length` (chunked) | `411` (the package: 500) |
//! | body over the limit, or its decoded value over the sender's budget | `413` |
//! | body not received in time | `408` |
//! | no `server_port` cookie | `400 Bad Request` |
//! | unknown sender | `401` (5.x reason "Server did not recognize sender.") |
//! | body not a valid envelope | `400 Failed processing received message: '...'` |
//! | id already buffered | `409` (the package: 200 and both lost) |
//! | sender's buffer full | `429` |
//! | shutting down | `503` |
//!
//! A connection is closed when no request has been under way on it for
//! `idle_timeout`, and one address may hold at most
//! `max_incoming_connections_per_address` connections (more are closed at
//! once), so one peer cannot keep every slot of the global cap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::codec::DecodeLimits;
use crate::conn_limits::{Activity, AddressSlots};
use crate::envelope::{self, WireVersion};
use crate::error::{DecodeError, EnvelopeError};
use crate::identity;
use crate::mailbox::{DeliverError, Mailbox, MESSAGE_OVERHEAD};
use crate::text::{cut, MAX_PEER_TEXT, MAX_REASON};

/// How a peer is recognised when it sends.
#[derive(Debug, Clone)]
pub(crate) struct PeerIdentity {
    pub name: String,
    /// `"{ip}:{port}"` as the package builds it.
    pub address_id: String,
    /// `address_id` in the form the wire version compares.
    pub comparable_address_id: String,
    /// `"{issuer CN}:{serial}"` of the pinned certificate, if any.
    pub cert_id: Option<String>,
}

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub max_body: usize,
    pub max_depth: usize,
    pub body_timeout: Duration,
    pub header_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// The most memory one decoded message may take: the sender's whole
    /// buffer budget, since a larger one could never be buffered.
    pub max_decoded: usize,
}

/// Everything a request handler needs; shared by all connections.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub wire: WireVersion,
    pub limits: ServerLimits,
    pub peers: Vec<PeerIdentity>,
    pub mailbox: Arc<Mailbox>,
    pub bytes_received: Vec<AtomicU64>,
}

/// What is known about one connection before its requests arrive.
#[derive(Debug, Clone)]
struct ConnInfo {
    remote: SocketAddr,
    tls: bool,
    /// The presented certificate's id, or why it has none.
    cert_id: Result<String, String>,
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    recv: Arc<Receiver>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each connection holds a permit; without one, connections wait in the
    // listen backlog instead of each costing a task and buffers.
    let permits = Arc::new(Semaphore::new(recv.limits.max_connections.max(1)));
    let per_address = Arc::new(AddressSlots::default());
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let cap = recv.limits.max_connections_per_address;
                    let Some(slot) = AddressSlots::take(&per_address, remote.ip(), cap) else {
                        warn!("refused a connection from {}: it already has {cap} open (the limit per address)", remote.ip());
                        drop(stream);
                        continue;
                    };
                    let conn = connection(stream, remote, tls.clone(), recv.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        conn.await;
                        drop(slot);
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    debug!("server loop stopped");
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    recv: Arc<Receiver>,
    shutdown: watch::Receiver<bool>,
) {
    // Small request/response exchanges: do not wait for Nagle.
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let info = ConnInfo {
                remote,
                tls: false,
                cert_id: Err("plain HTTP".into()),
            };
            serve_http(TokioIo::new(stream), info, recv, shutdown).await;
        }
        Some(acceptor) => {
            let limit = recv.limits.handshake_timeout;
            let tls_stream = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!("TLS handshake from {remote} failed: {e}");
                    return;
                }
                Err(_) => {
                    warn!("TLS handshake from {remote} took longer than {limit:?}");
                    return;
                }
            };
            let cert_id = match tls_stream.get_ref().1.peer_certificates() {
                Some([first, ..]) => identity::presented_cert_id(first),
                _ => Err("no client certificate".to_string()),
            };
            let info = ConnInfo {
                remote,
                tls: true,
                cert_id,
            };
            serve_http(TokioIo::new(tls_stream), info, recv, shutdown).await;
        }
    }
}

async fn serve_http<I>(
    io: I,
    info: ConnInfo,
    recv: Arc<Receiver>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = recv.limits.header_timeout;
    let idle_timeout = recv.limits.idle_timeout;
    let info = Arc::new(info);
    let activity = Activity::new();
    let svc_activity = activity.clone();
    let svc = service_fn(move |req| {
        let recv = recv.clone();
        let info = info.clone();
        let in_flight = svc_activity.start();
        async move {
            let resp = recv.handle(req, &info).await;
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut check_at = Instant::now() + idle_timeout;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    debug!("connection ended: {e}");
                }
                return;
            }
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep_until(check_at) => {
                match activity.idle_until(idle_timeout) {
                    None => {
                        debug!("closing a connection idle for {idle_timeout:?}");
                        break;
                    }
                    Some(next) => check_at = next,
                }
            }
        }
    }
    // Closes at once when idle; lets a request under way finish.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

type Resp = Response<Full<Bytes>>;

/// A request refused: the status and the reason the package's client reads.
struct Refusal(StatusCode, Option<String>);

impl Refusal {
    fn response(self) -> Resp {
        error(self.0, self.1.as_deref())
    }
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>, info: &ConnInfo) -> Resp {
        match *req.method() {
            Method::GET | Method::HEAD => ok("Connection working (GET)"),
            Method::POST => self.post(req, info).await,
            ref m => {
                warn!(
                    "refused {m} {} from {}: method not allowed",
                    req.uri(),
                    info.remote
                );
                error(StatusCode::METHOD_NOT_ALLOWED, None)
            }
        }
    }

    async fn post(&self, req: Request<Incoming>, info: &ConnInfo) -> Resp {
        let (length, port) = match self.check_post_headers(&req, info) {
            Ok(x) => x,
            Err(refusal) => return refusal.response(),
        };
        // The package logs this at info; here it is debug, because one
        // formatted stderr line per message costs more than the rest of a
        // small message's handling (see docs/pool-wire.md).
        debug!("Received message from {}:{port}", info.remote.ip());
        let peer = match self.identify_sender(info, &port) {
            Ok(p) => p,
            Err(refusal) => return refusal.response(),
        };
        let body = match self.receive_body(req, length, peer).await {
            Ok(b) => b,
            Err(refusal) => return refusal.response(),
        };
        let decoded = match self.decode_body(&body, peer) {
            Ok(d) => d,
            Err(refusal) => return refusal.response(),
        };
        self.deliver(peer, decoded, body.len() as u64)
    }

    /// The declared body length (within `max_body`) and the sender's
    /// `server_port` cookie, or the refusal.
    fn check_post_headers(
        &self,
        req: &Request<Incoming>,
        info: &ConnInfo,
    ) -> Result<(u64, String), Refusal> {
        let remote = info.remote;
        let length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let Some(length) = length else {
            warn!("refused POST from {remote}: no Content-Length (a chunked body?)");
            return Err(Refusal(StatusCode::LENGTH_REQUIRED, None));
        };
        if length > self.limits.max_body as u64 {
            warn!(
                "refused POST from {remote}: body of {length} bytes is over the limit of {}",
                self.limits.max_body
            );
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(format!(
                    "Body of {length} bytes exceeds the limit of {} bytes",
                    self.limits.max_body
                )),
            ));
        }
        let Some(port) = server_port_cookie(req) else {
            warn!("refused POST from {remote}: HTTP POST does not contain the server_port cookie");
            return Err(Refusal(StatusCode::BAD_REQUEST, None));
        };
        Ok((length, port))
    }

    /// The sending peer's index, or 401 as the package answers it.
    fn identify_sender(&self, info: &ConnInfo, port: &str) -> Result<usize, Refusal> {
        self.identify(info, port).map_err(|id| {
            warn!(
                "Received message from unknown sender: {}",
                cut(&id, 2 * MAX_PEER_TEXT)
            );
            let reason = match self.wire {
                WireVersion::V5 => Some("Server did not recognize sender.".into()),
                WireVersion::V4 => None,
            };
            Refusal(StatusCode::UNAUTHORIZED, reason)
        })
    }

    /// The whole body, read within `body_timeout`.
    async fn receive_body(
        &self,
        req: Request<Incoming>,
        length: u64,
        peer: usize,
    ) -> Result<Bytes, Refusal> {
        let name = &self.peers[peer].name;
        // `length` was checked against max_body, and hyper ends the body at
        // Content-Length, so it fits in usize and bounds the read.
        let length = usize::try_from(length).unwrap_or(self.limits.max_body);
        let read = read_body(req.into_body(), length, self.limits.max_body);
        match tokio::time::timeout(self.limits.body_timeout, read).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => {
                warn!("reading the body from {name} failed: {e}");
                Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    Some("Failed reading the request body".into()),
                ))
            }
            Err(_) => {
                warn!(
                    "body from {name} not received within {:?}",
                    self.limits.body_timeout
                );
                Err(Refusal(StatusCode::REQUEST_TIMEOUT, None))
            }
        }
    }

    /// The message in `body`, decoded within the depth and memory limits.
    fn decode_body(&self, body: &Bytes, peer: usize) -> Result<envelope::Decoded, Refusal> {
        let name = &self.peers[peer].name;
        let limits = DecodeLimits {
            max_depth: self.limits.max_depth,
            max_memory: self.limits.max_decoded,
        };
        let decoded = envelope::decode_received(self.wire, body, limits).map_err(|e| {
            warn!("refused message from {name}: {e}");
            let status = match e {
                EnvelopeError::Outer(DecodeError::TooLarge { .. })
                | EnvelopeError::Inner(DecodeError::TooLarge { .. }) => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            Refusal(
                status,
                Some(format!("Failed processing received message: '{e}'")),
            )
        })?;
        debug!(
            "message {} from {name}: {} ({} bytes)",
            decoded.id,
            decoded.value.kind(),
            body.len()
        );
        Ok(decoded)
    }

    /// Puts the message in `peer`'s mailbox, counting its bytes.
    fn deliver(&self, peer: usize, decoded: envelope::Decoded, body_len: u64) -> Resp {
        let name = &self.peers[peer].name;
        let envelope::Decoded { id, value, memory } = decoded;
        // Counted before delivery: a waiting recv may return (and its party
        // report totals) before this handler runs again.
        let counter = self.bytes_received.get(peer);
        if let Some(c) = counter {
            c.fetch_add(body_len, Ordering::Relaxed);
        }
        // Charged by what it holds in memory, not by what it took on the
        // wire: a list of small ints takes about its body, a list of
        // `None`s ~40 times.
        let size = memory
            .saturating_add(2 * id.heap_size())
            .saturating_add(MESSAGE_OVERHEAD);
        match self.mailbox.deliver(peer, id.clone(), value, size) {
            Ok(()) => ok("Message received"),
            Err(e) => {
                if let Some(c) = counter {
                    c.fetch_sub(body_len, Ordering::Relaxed);
                }
                warn!("refused message {id} from {name}: {e}");
                let status = match e {
                    DeliverError::Duplicate => StatusCode::CONFLICT,
                    DeliverError::Full(_) | DeliverError::FullBytes(_) => {
                        StatusCode::TOO_MANY_REQUESTS
                    }
                    DeliverError::Closed => StatusCode::SERVICE_UNAVAILABLE,
                };
                error(status, Some(&format!("Message {id} refused: {e}")))
            }
        }
    }

    /// The index of the sending peer, or the id that matched nobody.
    fn identify(&self, info: &ConnInfo, port: &str) -> Result<usize, String> {
        let address_id = identity::request_address_id(info.remote.ip(), port);
        if !info.tls {
            let wanted = identity::comparable_network_id(self.wire, &address_id);
            return self
                .peers
                .iter()
                .position(|p| p.comparable_address_id == wanted)
                .ok_or(address_id);
        }
        let cert_id = info.cert_id.clone().map_err(|why| format!("({why})"))?;
        if let Some(i) = self
            .peers
            .iter()
            .position(|p| p.cert_id.as_deref() == Some(cert_id.as_str()))
        {
            return Ok(i);
        }
        // 4.x falls back to the address for peers registered without a
        // certificate; 5.x identifies TLS senders by certificate only.
        if self.wire == WireVersion::V4 {
            if let Some(i) = self
                .peers
                .iter()
                .position(|p| p.cert_id.is_none() && p.address_id == address_id)
            {
                return Ok(i);
            }
        }
        Err(format!("{cert_id} or {address_id}"))
    }
}

/// Up to this much of a declared body is allocated before it arrives; a
/// larger body grows the buffer as its bytes come (so a peer that only
/// announces a big body cannot make us commit memory for it), never past
/// the announced length.
const PREALLOC_MAX: usize = 16 * 1024 * 1024;

/// A body longer than allowed, or a broken stream.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("body longer than the limit of {0} bytes")]
    TooLong(usize),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Collects a body of `length` announced bytes into one buffer of exactly
/// its size, which is ours alone: the decoder may share a large `bytes`
/// value out of it, and the mailbox charges that value its length. A body
/// that arrived as one chunk is a slice of hyper's read buffer (up to
/// ~400 KiB), which a shared value would keep alive whole; so it is always
/// copied, once. Up to `PREALLOC_MAX` the buffer is sized from
/// Content-Length; beyond, it doubles with what arrives but stops at the
/// announced length, where hyper ends the body.
async fn read_body(mut body: Incoming, length: usize, max: usize) -> Result<Bytes, BodyError> {
    let mut buf: Vec<u8> = Vec::with_capacity(length.min(PREALLOC_MAX));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: ignored, as the package does
        };
        let needed = buf.len().saturating_add(data.len());
        if needed > max {
            return Err(BodyError::TooLong(max));
        }
        if needed > buf.capacity() {
            let grown = buf.capacity().saturating_mul(2).min(length).max(needed);
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    // Exactly its length (a no-op when the body was as long as announced).
    Ok(Bytes::from(buf.into_boxed_slice()))
}

/// The `server_port` cookie, from any `Cookie` header (other cookies allowed).
fn server_port_cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == "server_port")
        .map(|(_, v)| cut(v.trim().trim_matches('"'), MAX_PEER_TEXT).into_owned())
}

fn text(status: StatusCode, body: String, reason: Option<&str>) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(reason) = reason {
        // A reason phrase may not hold CR/LF or other controls (the package
        // answers 500 when its own reason would); replace them instead.
        let clean: String = cut(reason, MAX_REASON)
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(clean) {
            resp.extensions_mut().insert(phrase);
        }
    }
    resp
}

fn ok(body: &'static str) -> Resp {
    text(StatusCode::OK, body.to_string(), None)
}

/// An error answer as aiohttp words it: body `"{code}: {reason}"`.
fn error(status: StatusCode, reason: Option<&str>) -> Resp {
    let shown = cut(
        reason.or(status.canonical_reason()).unwrap_or("Error"),
        MAX_REASON,
    )
    .into_owned();
    text(status, format!("{}: {shown}", status.as_u16()), reason)
}
