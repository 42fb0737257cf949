//! The Pool: a named party with one listener and named peers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

use crate::body::MessageBody;
use crate::client::{ClientOptions, PeerClient};
use crate::config::{Limits, PoolConfig};
use crate::envelope::{self, EncodedObject, MessageId, WireVersion};
use crate::error::{ConfigError, PoolError};
use crate::identity;
use crate::ids::Counters;
use crate::mailbox::{Mailbox, Wait};
use crate::server::{self, PeerIdentity, Receiver, ServerLimits};
use crate::value::Value;

/// A party: sends to and receives from its peers by name. Cheap to clone;
/// all clones are the same party. Dropping the last clone stops the server;
/// [`Pool::shutdown`] does so after flushing.
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// A listener bound before its Pool starts, for [`Pool::with_listener`]:
/// made from a `std::net::TcpListener` or a `tokio::net::TcpListener`.
#[derive(Debug)]
pub struct BoundListener(Bound);

#[derive(Debug)]
enum Bound {
    Std(std::net::TcpListener),
    Tokio(TcpListener),
}

impl From<std::net::TcpListener> for BoundListener {
    fn from(l: std::net::TcpListener) -> Self {
        BoundListener(Bound::Std(l))
    }
}

impl From<TcpListener> for BoundListener {
    fn from(l: TcpListener) -> Self {
        BoundListener(Bound::Tokio(l))
    }
}

/// One message taken by [`Pool::recv_any`].
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The sender's name.
    pub peer: String,
    /// The message id.
    pub id: MessageId,
    /// The message.
    pub value: Value,
}

/// Traffic with one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub name: String,
    /// Messages sent (send counter).
    pub sent: u64,
    /// Body bytes sent and answered 200.
    pub bytes_sent: u64,
    /// Messages received (receive counter).
    pub received: u64,
    /// Body bytes accepted.
    pub bytes_received: u64,
    /// Messages buffered now, not yet received.
    pub buffered: usize,
}

#[derive(Debug)]
struct Shared {
    name: String,
    wire: WireVersion,
    limits: Limits,
    local_addr: SocketAddr,
    peers: Vec<Peer>,
    by_name: HashMap<String, usize>,
    mailbox: Arc<Mailbox>,
    receiver: Arc<Receiver>,
    shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    background: Mutex<JoinSet<()>>,
}

#[derive(Debug)]
struct Peer {
    name: String,
    client: PeerClient,
    counters: Counters,
    bytes_sent: AtomicU64,
}

impl Pool {
    /// Binds `cfg.listen`, starts serving and prepares the peers' clients.
    pub async fn start(cfg: PoolConfig) -> Result<Pool, PoolError> {
        cfg.check()?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ConfigError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Pool::serve(cfg, listener).await
    }

    /// Starts serving on a listener the caller has already bound (a
    /// `std::net::TcpListener` or a `tokio::net::TcpListener`); `cfg.listen`
    /// is not used. Binding first is how two parties learn each other's
    /// ports before either starts, with no window in which another program
    /// could take a port picked for one of them.
    pub async fn with_listener(
        cfg: PoolConfig,
        listener: impl Into<BoundListener>,
    ) -> Result<Pool, PoolError> {
        cfg.check()?;
        let listener = match listener.into().0 {
            Bound::Tokio(l) => l,
            Bound::Std(l) => l
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l))
                .map_err(|source| ConfigError::Listener { source })?,
        };
        Pool::serve(cfg, listener).await
    }

    /// Serves on `listener` and prepares the peers' clients.
    async fn serve(cfg: PoolConfig, listener: TcpListener) -> Result<Pool, PoolError> {
        let local_addr = listener
            .local_addr()
            .map_err(|source| ConfigError::Listener { source })?;
        let our_port = cfg.advertised_port.unwrap_or(local_addr.port());
        let connector = cfg.tls_client.clone().map(TlsConnector::from);
        let opts = ClientOptions {
            retry: cfg.retry,
            connect_timeout: cfg.limits.connect_timeout,
            request_timeout: cfg.limits.request_timeout,
            max_connections: cfg.limits.max_connections_per_peer,
        };

        let mut peers = Vec::new();
        let mut identities = Vec::new();
        for p in &cfg.peers {
            let (peer, identity) =
                prepare_peer(&cfg, p, connector.as_ref(), our_port, opts).await?;
            peers.push(peer);
            identities.push(identity);
        }

        let mailbox = Arc::new(Mailbox::new(
            peers.len(),
            cfg.limits.max_buffered_per_peer,
            cfg.limits.max_buffered_bytes_per_peer,
        ));
        let receiver = Arc::new(Receiver {
            wire: cfg.wire,
            limits: ServerLimits {
                max_body: cfg.limits.max_body,
                max_depth: cfg.limits.max_depth,
                body_timeout: cfg.limits.body_timeout,
                header_timeout: cfg.limits.header_timeout,
                handshake_timeout: cfg.limits.handshake_timeout,
                idle_timeout: cfg.limits.idle_timeout,
                max_connections: cfg.limits.max_incoming_connections,
                max_connections_per_address: cfg.limits.max_incoming_connections_per_address,
                max_decoded: cfg.limits.max_buffered_bytes_per_peer,
            },
            peers: identities,
            mailbox: mailbox.clone(),
            bytes_received: peers.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let acceptor = cfg.tls_server.clone().map(TlsAcceptor::from);
        let with_tls = if acceptor.is_some() { " with TLS" } else { "" };
        let server = tokio::spawn(server::serve(
            listener,
            acceptor,
            receiver.clone(),
            shutdown_rx,
        ));
        info!(
            "{}: Serving on {local_addr}{with_tls} (tno.mpc.communication {} wire)",
            cfg.name, cfg.wire
        );
        let by_name = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        Ok(Pool {
            shared: Arc::new(Shared {
                name: cfg.name,
                wire: cfg.wire,
                limits: cfg.limits,
                local_addr,
                peers,
                by_name,
                mailbox,
                receiver,
                shutdown_tx,
                server: Mutex::new(Some(server)),
                background: Mutex::new(JoinSet::new()),
            }),
        })
    }

    /// This party's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The wire version spoken.
    pub fn wire(&self) -> WireVersion {
        self.shared.wire
    }

    /// The peers' names, in configuration order.
    pub fn peers(&self) -> Vec<String> {
        self.shared.peers.iter().map(|p| p.name.clone()).collect()
    }

    fn index(&self, peer: &str) -> Result<usize, PoolError> {
        self.shared
            .by_name
            .get(peer)
            .copied()
            .ok_or_else(|| PoolError::UnknownPeer(peer.to_string()))
    }

    /// Encodes `value` for `peer` and takes its message id. Encoding comes
    /// first, so a value that cannot be sent does not leave a gap in the
    /// peer's ids.
    fn prepare(
        &self,
        peer: &str,
        value: &Value,
        id: Option<MessageId>,
    ) -> Result<(usize, MessageId, EncodedObject), PoolError> {
        let idx = self.index(peer)?;
        let body = envelope::encode_object(self.shared.wire, value, self.shared.limits.max_depth)
            .map_err(|source| PoolError::Encode {
            peer: peer.to_string(),
            source,
        })?;
        let id = self.shared.peers[idx]
            .counters
            .next_send(self.shared.wire, id);
        Ok((idx, id, body))
    }

    /// Sends `value` to `peer` and waits for its `200`. Without an id, the
    /// next id of the send counter is used (as the package numbers them).
    /// Returns the id used.
    pub async fn send(
        &self,
        peer: &str,
        value: &Value,
        id: Option<MessageId>,
    ) -> Result<MessageId, PoolError> {
        let (idx, id, body) = self.prepare(peer, value, id)?;
        self.shared.send_body(idx, &id, body).await?;
        Ok(id)
    }

    /// Starts sending in the background (the package's `asend`); errors are
    /// logged. [`Pool::shutdown`] waits for these. Returns the id used.
    pub fn asend(
        &self,
        peer: &str,
        value: &Value,
        id: Option<MessageId>,
    ) -> Result<MessageId, PoolError> {
        let (idx, id, body) = self.prepare(peer, value, id)?;
        let shared = self.shared.clone();
        let task_id = id.clone();
        let mut bg = self
            .shared
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Reap finished sends so the set does not grow without bound.
        while bg.try_join_next().is_some() {}
        bg.spawn(async move {
            if let Err(e) = shared.send_body(idx, &task_id, body).await {
                warn!("{}: background send failed: {e}", shared.name);
            }
        });
        Ok(id)
    }

    /// Sends one value to several peers (all by default) at once, encoding it
    /// once. Each peer's send counter advances, as in the package.
    pub async fn broadcast(
        &self,
        value: &Value,
        id: Option<MessageId>,
        peers: Option<&[&str]>,
    ) -> Result<(), PoolError> {
        let targets: Vec<usize> = match peers {
            Some(names) => names
                .iter()
                .map(|n| self.index(n))
                .collect::<Result<_, _>>()?,
            None => (0..self.shared.peers.len()).collect(),
        };
        // Encoded once; each peer's body is it (shared when large) and its own id.
        let object = envelope::encode_object(self.shared.wire, value, self.shared.limits.max_depth)
            .map_err(|source| PoolError::Encode {
                peer: "(broadcast)".to_string(),
                source,
            })?;
        let mut set = JoinSet::new();
        for idx in targets {
            let msg_id = self.shared.peers[idx]
                .counters
                .next_send(self.shared.wire, id.clone());
            let shared = self.shared.clone();
            let object = object.clone();
            set.spawn(async move { shared.send_body(idx, &msg_id, object).await });
        }
        let mut first_err = None;
        while let Some(res) = set.join_next().await {
            let res = res.unwrap_or_else(|e| Err(PoolError::TaskFailed(e.to_string())));
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Receives message `id` (or the next counter id) from `peer`, waiting up
    /// to the pool's `recv_timeout`.
    pub async fn recv(&self, peer: &str, id: Option<MessageId>) -> Result<Value, PoolError> {
        self.recv_timeout(peer, id, self.shared.limits.recv_timeout)
            .await
    }

    /// [`Pool::recv`] with its own timeout (`None`: wait forever).
    pub async fn recv_timeout(
        &self,
        peer: &str,
        id: Option<MessageId>,
        timeout: Option<Duration>,
    ) -> Result<Value, PoolError> {
        let idx = self.index(peer)?;
        let id = self.shared.peers[idx]
            .counters
            .next_recv(self.shared.wire, id);
        self.shared.wait(idx, id, timeout).await
    }

    /// Takes message `id` from `peer` if it has arrived, without waiting.
    /// Without an id, looks at the next counter id and advances the receive
    /// counter only when that message was there.
    pub fn try_recv(&self, peer: &str, id: Option<MessageId>) -> Result<Option<Value>, PoolError> {
        let idx = self.index(peer)?;
        let counters = &self.shared.peers[idx].counters;
        match id {
            Some(id) => Ok(self.shared.mailbox.take(idx, &id)),
            None => {
                let id = counters.peek_recv(self.shared.wire);
                let got = self.shared.mailbox.take(idx, &id);
                if got.is_some() {
                    counters.advance_recv_from(&id, self.shared.wire);
                }
                Ok(got)
            }
        }
    }

    /// Receives one message from each of several peers (all by default),
    /// with the same explicit id or each peer's next counter id.
    pub async fn recv_all(
        &self,
        peers: Option<&[&str]>,
        id: Option<MessageId>,
    ) -> Result<Vec<(String, Value)>, PoolError> {
        let targets: Vec<usize> = match peers {
            Some(names) => names
                .iter()
                .map(|n| self.index(n))
                .collect::<Result<_, _>>()?,
            None => (0..self.shared.peers.len()).collect(),
        };
        let wanted: Vec<(usize, MessageId)> = targets
            .into_iter()
            .map(|i| {
                (
                    i,
                    self.shared.peers[i]
                        .counters
                        .next_recv(self.shared.wire, id.clone()),
                )
            })
            .collect();
        let deadline = self
            .shared
            .limits
            .recv_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let mut out = Vec::with_capacity(wanted.len());
        for (idx, msg_id) in wanted {
            let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            let v = self.shared.wait(idx, msg_id, left).await?;
            out.push((self.shared.peers[idx].name.clone(), v));
        }
        Ok(out)
    }

    /// Takes the oldest buffered message from any peer, whatever its id,
    /// waiting up to `timeout` (`None`: forever). Counters are not touched.
    /// This is what an echo party needs; the package has no equivalent.
    pub async fn recv_any(&self, timeout: Option<Duration>) -> Result<Received, PoolError> {
        let fut = async {
            loop {
                let arrived = self.shared.mailbox.arrived();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some((idx, id, value)) = self.shared.mailbox.take_any(None) {
                    return Ok(Received {
                        peer: self.shared.peers[idx].name.clone(),
                        id,
                        value,
                    });
                }
                if self.shared.mailbox.is_closed() {
                    return Err(PoolError::Shutdown);
                }
                arrived.await;
            }
        };
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(PoolError::RecvTimeout {
                    peer: "(any)".into(),
                    id: "(any)".into(),
                    timeout: t,
                })
            }),
        }
    }

    /// Traffic per peer so far.
    pub fn stats(&self) -> Vec<PeerStats> {
        self.shared
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (sent, received) = p.counters.totals();
                PeerStats {
                    name: p.name.clone(),
                    sent,
                    bytes_sent: p.bytes_sent.load(Ordering::Relaxed),
                    received,
                    bytes_received: self
                        .shared
                        .receiver
                        .bytes_received
                        .get(i)
                        .map_or(0, |c| c.load(Ordering::Relaxed)),
                    buffered: self.shared.mailbox.buffered(i),
                }
            })
            .collect()
    }

    /// Flushes background sends (up to `limits.flush_timeout`), wakes waiting
    /// `recv`s with [`PoolError::Shutdown`], stops the server and logs totals.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        let mut bg =
            std::mem::take(&mut *shared.background.lock().unwrap_or_else(|p| p.into_inner()));
        let flush = async { while bg.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.limits.flush_timeout, flush)
            .await
            .is_err()
        {
            warn!(
                "{}: background sends still running after {:?}; abandoning them",
                shared.name, shared.limits.flush_timeout
            );
        }
        let waiting = shared.mailbox.close();
        if waiting > 0 {
            warn!(
                "{}: There are {waiting} messages being awaited that have not yet been received.",
                shared.name
            );
        }
        let _ = shared.shutdown_tx.send(true);
        let handle = shared
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        let stats = self.stats();
        info!(
            "{}: Pool shutdown. Total bytes sent: {}, messages sent: {}, bytes received: {}, messages received: {}",
            shared.name,
            stats.iter().map(|s| s.bytes_sent).sum::<u64>(),
            stats.iter().map(|s| s.sent).sum::<u64>(),
            stats.iter().map(|s| s.bytes_received).sum::<u64>(),
            stats.iter().map(|s| s.received).sum::<u64>(),
        );
    }
}

impl Shared {
    /// Completes a body begun by [`envelope::encode_object`] with the id and
    /// sends it.
    async fn send_body(
        &self,
        idx: usize,
        id: &MessageId,
        object: EncodedObject,
    ) -> Result<(), PoolError> {
        let peer = &self.peers[idx];
        let parts = object.finish(id).map_err(|source| PoolError::Encode {
            peer: peer.name.clone(),
            source,
        })?;
        let body = MessageBody::new(parts);
        let len = body.len();
        tracing::debug!("Sending {len} bytes to {}...", peer.client.label());
        peer.client
            .send(body)
            .await
            .map_err(|source| PoolError::Send {
                peer: peer.name.clone(),
                id: id.to_string(),
                source,
            })?;
        peer.bytes_sent.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    async fn wait(
        &self,
        idx: usize,
        id: MessageId,
        timeout: Option<Duration>,
    ) -> Result<Value, PoolError> {
        let name = &self.peers[idx].name;
        let rx = match self.mailbox.wait(idx, &id) {
            Ok(Wait::Ready(v)) => return Ok(v),
            Ok(Wait::Pending(rx)) => rx,
            Err(_) => {
                return Err(PoolError::AlreadyWaiting {
                    peer: name.clone(),
                    id: id.to_string(),
                })
            }
        };
        let Some(limit) = timeout else {
            return rx.await.map_err(|_| PoolError::Shutdown);
        };
        let mut rx = rx;
        match tokio::time::timeout(limit, &mut rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(PoolError::Shutdown),
            Err(_) => match self.mailbox.cancel_wait(idx, &id, rx) {
                Some(v) => Ok(v),
                None => Err(PoolError::RecvTimeout {
                    peer: name.clone(),
                    id: id.to_string(),
                    timeout: limit,
                }),
            },
        }
    }
}

/// The connector and the server name a peer's TLS connections use.
fn tls_target(
    connector: &TlsConnector,
    p: &crate::config::PeerConfig,
) -> Result<(TlsConnector, ServerName<'static>), ConfigError> {
    let name = ServerName::try_from(p.host.clone()).map_err(|e| ConfigError::Resolve {
        peer: p.name.clone(),
        host: p.host.clone(),
        reason: format!("not a valid TLS server name: {e}"),
    })?;
    Ok((connector.clone(), name))
}

/// The peer's IPv4 address, as `socket.gethostbyname` would give it.
async fn resolve_ipv4(peer: &str, host: &str, port: u16) -> Result<IpAddr, ConfigError> {
    let err = |reason: String| ConfigError::Resolve {
        peer: peer.to_string(),
        host: host.to_string(),
        reason,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| err(e.to_string()))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .map(|a| a.ip())
        .ok_or_else(|| err(format!("only non-IPv4 addresses: {addrs:?}")))
}

/// One configured peer: its address resolved, its registered certificate
/// read, and its client ready (TLS when the pool uses it).
async fn prepare_peer(
    cfg: &PoolConfig,
    p: &crate::config::PeerConfig,
    connector: Option<&TlsConnector>,
    our_port: u16,
    opts: ClientOptions,
) -> Result<(Peer, PeerIdentity), PoolError> {
    let ip = resolve_ipv4(&p.name, &p.host, p.port).await?;
    let cert_id = match &p.cert {
        Some(der) => {
            Some(
                identity::registered_cert_id(der).map_err(|reason| ConfigError::PeerCert {
                    peer: p.name.clone(),
                    reason,
                })?,
            )
        }
        None => None,
    };
    let tls = match connector {
        Some(c) if cert_id.is_none() => {
            warn!(
                "{}: peer {:?} has no registered certificate: under TLS its server is \
                     checked against the CA only, not identified",
                cfg.name, p.name
            );
            Some(tls_target(c, p)?)
        }
        Some(c) => Some(tls_target(c, p)?),
        None => None,
    };
    let server_identity = match &p.cert {
        Some(der) => Some(identity::ServerIdentity::from_der(der).map_err(|reason| {
            ConfigError::PeerCert {
                peer: p.name.clone(),
                reason,
            }
        })?),
        None => None,
    };
    let address_id = identity::peer_address_id(ip, p.port);
    let identity = PeerIdentity {
        name: p.name.clone(),
        comparable_address_id: identity::comparable_network_id(cfg.wire, &address_id).into_owned(),
        address_id,
        cert_id,
    };
    let peer = Peer {
        name: p.name.clone(),
        client: PeerClient::new(
            &p.host,
            SocketAddr::new(ip, p.port),
            our_port,
            tls.map(|(c, name)| (c, name, server_identity)),
            opts,
        ),
        counters: Counters::default(),
        bytes_sent: AtomicU64::new(0),
    };
    Ok((peer, identity))
}
