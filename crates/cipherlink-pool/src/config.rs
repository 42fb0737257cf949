//! What a Pool is built from: its name, listener, peers, wire version,
//! limits and TLS configurations. Checked once, when the Pool starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::client::RetryPolicy;
use crate::envelope::WireVersion;
use crate::error::ConfigError;

/// Another party.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The name this party uses for it (`send("Bob", ...)`).
    pub name: String,
    /// Its host name or IP address (it must resolve to IPv4, as the package's
    /// `gethostbyname` requires). Resolved once, when the pool starts: the
    /// peer's identity is that address, and connections go to it.
    pub host: String,
    /// Its listening port.
    pub port: u16,
    /// Its client certificate, pinned: with TLS, a request is from this peer
    /// exactly when it presents a certificate with the same issuer CN and
    /// serial number (the package's `cert=` argument).
    pub cert: Option<CertificateDer<'static>>,
}

impl PeerConfig {
    /// A peer at `host:port`, identified by address (plain HTTP).
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            host: host.into(),
            port,
            cert: None,
        }
    }

    /// Pins the peer's client certificate (DER), identifying it under TLS.
    pub fn with_cert(mut self, cert: CertificateDer<'static>) -> PeerConfig {
        self.cert = Some(cert);
        self
    }
}

/// Limits and timeouts. Every one bounds something a peer controls.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted (the package has none). Default 256 MiB.
    pub max_body: usize,
    /// Unreceived messages buffered per sender before 429s. Default 100 000.
    pub max_buffered_per_peer: usize,
    /// Memory of unreceived messages buffered per sender before 429s, as
    /// the decoder charges it (at most `codec::MEMORY_FACTOR` times the
    /// body). A message whose decoded value alone would take more is
    /// refused with 413 while it is decoded. Default 1 GiB.
    pub max_buffered_bytes_per_peer: usize,
    /// Connections accepted at once; more wait in the listen backlog.
    /// Default 1024.
    pub max_incoming_connections: usize,
    /// Connections one remote address may hold at once; more are closed as
    /// they arrive. Default 256 (aiohttp opens up to 100 per peer, and a
    /// host may run several parties).
    pub max_incoming_connections_per_address: usize,
    /// How long an incoming connection may stay open with no request under
    /// way before it is closed. Default 30 s.
    pub idle_timeout: Duration,
    /// Deepest nesting decoded or encoded. Default 256; at most
    /// `codec::MAX_DEPTH_LIMIT` (512).
    pub max_depth: usize,
    /// How long `recv` waits by default; `None` waits forever. Default 60 s
    /// (5.x: 3 s, 4.x: forever).
    pub recv_timeout: Option<Duration>,
    /// How long one POST may take, from sending to the end of the answer.
    /// Default 300 s, as the package.
    pub request_timeout: Duration,
    /// How long a TCP connect plus TLS handshake may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a request body may take to arrive. Default 60 s.
    pub body_timeout: Duration,
    /// How long request headers may take to arrive. Default 30 s.
    pub header_timeout: Duration,
    /// How long a server-side TLS handshake may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// Concurrent connections to one peer (concurrent sends beyond wait).
    /// Default 16.
    pub max_connections_per_peer: usize,
    /// How long `shutdown` waits for background sends. Default 30 s.
    pub flush_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 256 * 1024 * 1024,
            max_buffered_per_peer: 100_000,
            max_buffered_bytes_per_peer: 1 << 30,
            max_incoming_connections: 1024,
            max_incoming_connections_per_address: 256,
            idle_timeout: Duration::from_secs(30),
            max_depth: crate::codec::DEFAULT_MAX_DEPTH,
            recv_timeout: Some(Duration::from_secs(60)),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_connections_per_peer: 16,
            flush_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything a Pool is built from.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// This party's name (for logs).
    pub name: String,
    /// Where to listen. Port 0 picks a free port ([`crate::Pool::local_addr`]).
    /// Not used by [`crate::Pool::with_listener`], which is given a bound
    /// listener instead.
    pub listen: SocketAddr,
    /// The wire to speak. Default 5.x.
    pub wire: WireVersion,
    /// The other parties.
    pub peers: Vec<PeerConfig>,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Retries of connection errors when sending.
    pub retry: RetryPolicy,
    /// The port to announce in the `server_port` cookie, when it differs from
    /// the listening port (port forwarding; 4.x `external_port`).
    pub advertised_port: Option<u16>,
    /// TLS for the listener; it should require client certificates.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// TLS for outgoing requests; it should present a client certificate.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

impl PoolConfig {
    /// A 5.x party with default limits and no peers yet.
    pub fn new(name: impl Into<String>, listen: SocketAddr) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            listen,
            wire: WireVersion::default(),
            peers: Vec::new(),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            advertised_port: None,
            tls_server: None,
            tls_client: None,
        }
    }

    /// Adds a peer.
    pub fn peer(mut self, peer: PeerConfig) -> PoolConfig {
        self.peers.push(peer);
        self
    }

    /// Chooses the wire version.
    pub fn wire(mut self, wire: WireVersion) -> PoolConfig {
        self.wire = wire;
        self
    }

    /// Uses TLS both ways.
    pub fn tls(
        mut self,
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> PoolConfig {
        self.tls_server = Some(server);
        self.tls_client = Some(client);
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for p in &self.peers {
            if p.name == self.name {
                return Err(ConfigError::PeerIsSelf(p.name.clone()));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(ConfigError::DuplicatePeer(p.name.clone()));
            }
        }
        let l = &self.limits;
        for (field, zero) in [
            ("limits.max_body", l.max_body == 0),
            ("limits.max_buffered_per_peer", l.max_buffered_per_peer == 0),
            ("limits.max_depth", l.max_depth == 0),
            (
                "limits.max_buffered_bytes_per_peer",
                l.max_buffered_bytes_per_peer == 0,
            ),
            (
                "limits.max_incoming_connections",
                l.max_incoming_connections == 0,
            ),
            (
                "limits.max_incoming_connections_per_address",
                l.max_incoming_connections_per_address == 0,
            ),
            ("limits.idle_timeout", l.idle_timeout.is_zero()),
            (
                "limits.max_connections_per_peer",
                l.max_connections_per_peer == 0,
            ),
            ("retry.attempts", self.retry.attempts == 0),
        ] {
            if zero {
                return Err(ConfigError::Zero { field });
            }
        }
        if l.max_depth > crate::codec::MAX_DEPTH_LIMIT {
            return Err(ConfigError::TooLarge {
                field: "limits.max_depth",
                value: l.max_depth,
                max: crate::codec::MAX_DEPTH_LIMIT,
            });
        }
        if self.tls_server.is_some() != self.tls_client.is_some() {
            return Err(ConfigError::HalfTls);
        }
        Ok(())
    }
}
