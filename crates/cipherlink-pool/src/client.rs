//! The sending side: one keep-alive HTTP/1.1 client per peer, reusing idle
//! connections, with the package's 5.x retry rule (connection errors only,
//! a bounded number of attempts, a fixed wait between them).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

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

type Sender = SendRequest<Full<Bytes>>;

/// Sends to one peer.
pub(crate) struct PeerClient {
    label: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    cookie: HeaderValue,
    host_header: HeaderValue,
    idle: Mutex<Vec<Sender>>,
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
        port: u16,
        our_port: u16,
        tls: Option<(TlsConnector, ServerName<'static>)>,
        opts: ClientOptions,
    ) -> PeerClient {
        let label = format!("{host}:{port}");
        PeerClient {
            cookie: HeaderValue::from_str(&format!("server_port={our_port}"))
                .unwrap_or_else(|_| HeaderValue::from_static("server_port=0")),
            host_header: HeaderValue::from_str(&label)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            label,
            host: host.to_string(),
            port,
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
    pub(crate) async fn send(&self, body: Bytes) -> Result<(), SendError> {
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

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let len = body.len();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = hyper::Uri::from_static("/");
        let h = req.headers_mut();
        h.insert(HOST, self.host_header.clone());
        h.insert(COOKIE, self.cookie.clone());
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        req
    }

    fn pop_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps a connection for reuse. Right after a response it may not be
    /// ready yet (the connection task still finishing the exchange), so only
    /// closed ones are dropped; `ready()` is awaited when it is taken again.
    fn push_idle(&self, s: Sender) {
        if !s.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
    }

    async fn try_once(&self, body: Bytes) -> Result<(), SendError> {
        let mut req = self.request(body);
        // A connection the peer closed while idle may still look ready; a
        // request hyper hands back unsent goes out on another connection at
        // once, without spending an attempt.
        while let Some(mut sender) = self.pop_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            let fut = sender.try_send_request(req);
            match tokio::time::timeout(self.opts.request_timeout, fut).await {
                Ok(Ok(resp)) => return self.finish(sender, resp).await,
                Ok(Err(mut e)) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(self.http_error(e.into_error())),
                },
                Err(_) => return Err(self.timeout()),
            }
        }
        let mut sender = self.connect().await?;
        let fut = sender.send_request(req);
        let resp = match tokio::time::timeout(self.opts.request_timeout, fut).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(self.http_error(e)),
            Err(_) => return Err(self.timeout()),
        };
        self.finish(sender, resp).await
    }

    async fn finish(
        &self,
        sender: Sender,
        resp: hyper::Response<hyper::body::Incoming>,
    ) -> Result<(), SendError> {
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        // Read the (short) answer fully so the connection can be reused.
        let body = Limited::new(resp.into_body(), 64 * 1024).collect();
        let body = match tokio::time::timeout(self.opts.request_timeout, body).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                warn!("reading the answer from {} failed: {e}", self.label);
                Bytes::new()
            }
            Err(_) => return Err(self.timeout()),
        };
        self.push_idle(sender);
        if status == StatusCode::OK {
            return Ok(());
        }
        let reason = reason
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
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

    async fn connect(&self) -> Result<Sender, SendError> {
        let limit = self.opts.connect_timeout;
        let tcp =
            match tokio::time::timeout(limit, TcpStream::connect((self.host.as_str(), self.port)))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(self.connect_error(e)),
                Err(_) => {
                    return Err(self.connect_error(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connect took longer than {limit:?}"),
                    )))
                }
            };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
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
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<Sender, SendError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(io).await.map_err(|e| self.http_error(e))?;
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!("connection to {label} ended: {e}");
            }
        });
        Ok(sender)
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
