//! The sending side: one keep-alive HTTP/1.1 client per peer, reusing idle
//! connections, with the package's 5.x retry rule (connection errors only,
//! a bounded number of attempts, a fixed wait between them).
//!
//! Under TLS the server's chain is verified against the CA but not its
//! name (parties are addressed by IP, as the package does with
//! `check_hostname=False`). So that a party holding another certificate
//! from the same CA cannot answer in a peer's place, the server's
//! certificate is then checked as the receiving side checks a client's:
//! its issuer and serial number must be the registered certificate's,
//! before anything is sent.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use crate::body::MessageBody;
use crate::error::SendError;

/// Retries on connection errors, as 5.x does with tenacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (5.x `conn_retry_max`, default 3). At least 1.
    pub attempts: u32,
    /// Wait between attempts (5.x `conn_retry_delay`, default 1 s).
    pub wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            wait: Duration::from_secs(1),
        }
    }
}

/// Client settings shared by all peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientOptions {
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

/// One keep-alive connection: hyper's request handle and the connection
/// future that does its I/O. The future is polled by the sending task itself
/// while a request is under way, instead of by a task of its own: that saves
/// several task wake-ups (and often a hop between threads) per message,
/// which for small messages cost more than the HTTP work. Between requests
/// nothing polls it; a connection the peer closed meanwhile is noticed when
/// it is next used, and a request it did not send goes out on another.
struct Conn {
    sender: SendRequest<MessageBody>,
    /// `None` once the connection has ended.
    driver: Driver,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.driver.is_none() || self.sender.is_closed()
    }
}

type Driver = Option<Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>>;

/// Runs `fut` while doing the connection's I/O. When the connection ends
/// first it is dropped, which fails whatever `fut` still waits for.
async fn drive<F: Future>(driver: &mut Driver, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(d) = driver.as_mut() {
            if let Poll::Ready(res) = d.as_mut().poll(cx) {
                if let Err(e) = res {
                    debug!("connection ended: {e}");
                }
                *driver = None;
                // Dropping the connection completes `fut` with an error.
                return fut.as_mut().poll(cx);
            }
        }
        Poll::Pending
    })
    .await
}

/// How one exchange on a connection ended.
enum Exchange {
    Answered(StatusCode, Option<String>, Bytes),
    /// The request was not sent; it can go out on another connection.
    Unsent(Box<Request<MessageBody>>),
    Failed(SendError),
}

/// How a peer's TLS connections are made: the connector, the server name
/// sent (not checked), and the identity of the peer's registered
/// certificate, which its server must present (`None`: not registered).
pub(crate) type TlsTarget = (
    TlsConnector,
    ServerName<'static>,
    Option<crate::identity::ServerIdentity>,
);

/// Sends to one peer.
pub(crate) struct PeerClient {
    label: String,
    /// Resolved once, when the pool starts: the peer's identity is built
    /// from this address too, and a connection should not wait for DNS.
    addr: SocketAddr,
    tls: Option<TlsTarget>,
    cookie: HeaderValue,
    host_header: HeaderValue,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    opts: ClientOptions,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("addr", &self.label)
            .finish()
    }
}

impl PeerClient {
    pub(crate) fn new(
        host: &str,
        addr: SocketAddr,
        our_port: u16,
        tls: Option<TlsTarget>,
        opts: ClientOptions,
    ) -> PeerClient {
        let label = format!("{host}:{}", addr.port());
        PeerClient {
            cookie: HeaderValue::from_str(&format!("server_port={our_port}"))
                .unwrap_or_else(|_| HeaderValue::from_static("server_port=0")),
            host_header: HeaderValue::from_str(&label)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            label,
            addr,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(opts.max_connections.max(1)),
            opts,
        }
    }

    /// host:port, for messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// POSTs one body, retrying connection errors per the policy.
    pub(crate) async fn send(&self, body: MessageBody) -> Result<(), SendError> {
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(self.connect_error(std::io::Error::other("client closed")));
        };
        let attempts = self.opts.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_once(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    debug!("Could not connect to {}, retrying: {e}", self.label);
                    tokio::time::sleep(self.opts.retry.wait).await;
                }
                Err(e) if e.is_retryable() && attempts > 1 => {
                    return Err(SendError::RetriesExhausted {
                        addr: self.label.clone(),
                        attempts,
                        last: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn request(&self, body: MessageBody) -> Request<MessageBody> {
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = hyper::Uri::from_static("/");
        let h = req.headers_mut();
        h.insert(HOST, self.host_header.clone());
        h.insert(COOKIE, self.cookie.clone());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        req
    }

    fn pop_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn push_idle(&self, c: Conn) {
        if !c.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
    }

    async fn try_once(&self, body: MessageBody) -> Result<(), SendError> {
        let mut req = self.request(body);
        // A connection the peer closed while idle may still look ready; a
        // request hyper hands back unsent goes out on another connection at
        // once, without spending an attempt.
        while let Some(mut conn) = self.pop_idle() {
            match self.exchange(&mut conn, req).await {
                Exchange::Unsent(back) => req = *back,
                done => return self.finish(conn, done),
            }
        }
        let mut conn = self.connect().await?;
        match self.exchange(&mut conn, req).await {
            Exchange::Unsent(_) => Err(self.connect_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "new connection closed before the request was sent",
            ))),
            done => self.finish(conn, done),
        }
    }

    /// Sends one request on `conn` and reads the whole (short) answer, so the
    /// connection can be reused; all within the request timeout.
    async fn exchange(&self, conn: &mut Conn, req: Request<MessageBody>) -> Exchange {
        let Conn { sender, driver } = conn;
        let work = async {
            if sender.ready().await.is_err() {
                return Exchange::Unsent(Box::new(req));
            }
            let resp = match sender.try_send_request(req).await {
                Ok(resp) => resp,
                Err(mut e) => {
                    return match e.take_message() {
                        Some(back) => Exchange::Unsent(Box::new(back)),
                        None => Exchange::Failed(self.http_error(e.into_error())),
                    }
                }
            };
            let status = resp.status();
            let reason = resp
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
            // Read the (short) answer fully so the connection can be reused.
            let body = match Limited::new(resp.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    warn!("reading the answer from {} failed: {e}", self.label);
                    Bytes::new()
                }
            };
            Exchange::Answered(status, reason, body)
        };
        match tokio::time::timeout(self.opts.request_timeout, drive(driver, work)).await {
            Ok(done) => done,
            Err(_) => Exchange::Failed(self.timeout()),
        }
    }

    fn finish(&self, conn: Conn, done: Exchange) -> Result<(), SendError> {
        let (status, reason, body) = match done {
            Exchange::Answered(status, reason, body) => (status, reason, body),
            Exchange::Failed(e) => return Err(e),
            Exchange::Unsent(_) => return Err(self.timeout()),
        };
        self.push_idle(conn);
        if status == StatusCode::OK {
            return Ok(());
        }
        let reason = reason
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        // The peer's words go into our errors and logs: cut them.
        let reason = crate::text::cut(&reason, crate::text::MAX_REASON).into_owned();
        if status == StatusCode::BAD_REQUEST && reason.contains("Input must be bytes") {
            return Err(SendError::VersionMismatch {
                addr: self.label.clone(),
                reason,
            });
        }
        Err(SendError::Status {
            addr: self.label.clone(),
            status: status.as_u16(),
            reason,
        })
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let limit = self.opts.connect_timeout;
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.connect_error(e)),
            Err(_) => {
                return Err(self.connect_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect took longer than {limit:?}"),
                )))
            }
        };
        // Small request/answer exchanges: do not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name, expected)) => {
                let tls =
                    match tokio::time::timeout(limit, connector.connect(name.clone(), tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return Err(SendError::Tls {
                                addr: self.label.clone(),
                                source: e,
                            })
                        }
                        Err(_) => {
                            return Err(SendError::Tls {
                                addr: self.label.clone(),
                                source: std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "TLS handshake timed out",
                                ),
                            })
                        }
                    };
                if let Some(expected) = expected {
                    let presented = match tls.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => Some(leaf.as_ref()),
                        _ => None,
                    };
                    if let Err(found) = expected.check(presented) {
                        return Err(SendError::WrongServer {
                            addr: self.label.clone(),
                            expected: expected.label().to_string(),
                            found: crate::text::cut(&found, 2 * crate::text::MAX_PEER_TEXT)
                                .into_owned(),
                        });
                    }
                }
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<Conn, SendError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(io).await.map_err(|e| self.http_error(e))?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(conn)),
        })
    }

    fn connect_error(&self, source: std::io::Error) -> SendError {
        SendError::Connect {
            addr: self.label.clone(),
            source,
        }
    }

    fn http_error(&self, source: hyper::Error) -> SendError {
        SendError::Http {
            addr: self.label.clone(),
            source,
        }
    }

    fn timeout(&self) -> SendError {
        SendError::Timeout {
            addr: self.label.clone(),
            timeout: self.opts.request_timeout,
        }
    }
}
