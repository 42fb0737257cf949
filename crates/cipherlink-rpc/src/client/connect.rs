//! Opening gRPC channels over the lab's own TCP + TLS connector.
//!
//! tonic drives HTTP/2 over whatever stream the connector yields, so the
//! connector is where TCP_NODELAY is set and where the lab's TLS
//! configuration (and its verifiers) apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::error::{chain, RpcError};

/// Anything the channel can run over.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address of the server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// TLS configuration; `None` means plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name checked in the server certificate (default: `host`).
    pub server_name: Option<String>,
    /// Time allowed for TCP + TLS + HTTP/2 setup.
    pub connect_timeout: Duration,
}

/// A resolved target that opens channels on demand.
#[derive(Clone)]
pub struct Connector {
    addrs: Arc<[SocketAddr]>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    endpoint: Endpoint,
    label: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// Resolves the host once, so cold-connection timings exclude DNS.
    pub async fn resolve(target: &Target) -> Result<Self, RpcError> {
        let resolve_err = |detail: String| RpcError::Resolve {
            host: target.host.clone(),
            port: target.port,
            detail,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_err("no addresses".into()));
        }
        let name = target
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone());
        let tls = match &target.tls {
            None => None,
            Some(cfg) => {
                let sn = ServerName::try_from(name.clone()).map_err(|e| RpcError::ServerName {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
                Some((TlsConnector::from(cfg.clone()), sn))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = if name.contains(':') {
            format!("[{name}]:{}", target.port)
        } else {
            format!("{name}:{}", target.port)
        };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| RpcError::ServerName {
                name: name.clone(),
                detail: chain(&e),
            })?
            // No HTTP/2 pings: they would add traffic the measurement does not ask for.
            .http2_keep_alive_interval(Duration::from_secs(3600))
            .keep_alive_while_idle(false);
        Ok(Self {
            addrs: addrs.into(),
            tls,
            endpoint,
            label: format!("{}:{}", target.host, target.port),
            connect_timeout: target.connect_timeout,
        })
    }

    /// host:port, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// TCP (+ TLS) to the first address that answers.
    async fn open(
        addrs: Arc<[SocketAddr]>,
        tls: Option<(TlsConnector, ServerName<'static>)>,
    ) -> std::io::Result<TokioIo<Box<dyn Io>>> {
        let mut last = std::io::Error::other("no address to connect to");
        for addr in addrs.iter() {
            let tcp = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // Small request/response messages: Nagle + delayed ACK would add 40 ms.
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = match &tls {
                None => Box::new(tcp),
                Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            };
            return Ok(TokioIo::new(io));
        }
        Err(last)
    }

    /// Opens a channel and waits until TCP, TLS and HTTP/2 are set up.
    ///
    /// If the connection later breaks, tonic reconnects on the next call
    /// (failing calls with UNAVAILABLE meanwhile): still one connection at a time.
    pub async fn channel(&self) -> Result<Channel, RpcError> {
        let addrs = self.addrs.clone();
        let tls = self.tls.clone();
        let connector =
            tower::service_fn(move |_uri: http::Uri| Self::open(addrs.clone(), tls.clone()));
        let connect = self.endpoint.connect_with_connector(connector);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(ch)) => Ok(ch),
            Ok(Err(e)) => Err(RpcError::Connect {
                target: self.label.clone(),
                detail: chain(&e),
            }),
            Err(_) => Err(RpcError::Connect {
                target: self.label.clone(),
                detail: format!("timed out after {:?}", self.connect_timeout),
            }),
        }
    }
}
