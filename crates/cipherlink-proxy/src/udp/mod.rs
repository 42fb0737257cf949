//! UDP services (`udp = true`, `--udp`; docs/proxy.md, "UDP services"):
//! datagrams instead of TCP connections.
//!
//! ```text
//!  app --UDP--> [client end] == one session: flow header + datagram ==> [server end] --UDP--> service
//!               flow per source address          plain | typhoon        socket per (session, flow)
//! ```
//!
//! The client end binds a UDP socket, names each application source
//! address a flow (a 4-byte id) and carries every datagram as one message of
//! one session to the server end, behind the flow header ([`header`]). The
//! server end keeps a socket connected to the service per (session, flow)
//! and sends its replies back with that flow's id. Both ends expire idle
//! flows and hold at most `max_flows` ([`flows::FlowTable`]), the least
//! recently used evicted (at the server end, of the session holding the
//! most: `fair`). Nothing waits on the network: a datagram too large
//! for the transport, or one that finds a queue full, is dropped and counted
//! ([`UdpStats`]).

mod activity;
mod client;
mod fair;
pub mod flows;
pub mod header;
mod link;
mod plain;
mod queue;
mod server;
pub mod stats;
mod transport;
mod typhoon;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::{Role, ServiceConfig, Transport};
use crate::error::ProxyError;
use crate::port::PortTokens;

pub use stats::{UdpSnapshot, UdpStats};
pub use transport::{TransportError, MAX_UDP_PAYLOAD};

/// The most flows `max_flows` may ask for (each flow of a server end is a
/// socket: a descriptor).
pub const LIMIT_MAX_FLOWS: usize = 1 << 20;

/// What both ends' tasks read.
#[derive(Debug)]
pub(crate) struct UdpShared {
    pub(crate) name: String,
    pub(crate) transport: Transport,
    /// The server end (a client end's), for messages and for connecting.
    pub(crate) connect: String,
    pub(crate) idle: Duration,
    pub(crate) max_flows: usize,
    /// The most bytes of one message, header included.
    pub(crate) max_message: usize,
    pub(crate) stats: Arc<UdpStats>,
    /// Bytes a server end's per-session queues hold together.
    pub(crate) budget: queue::Budget,
}

/// The sessions a server end holds at most: a `plain` one's source
/// addresses are `max_flows`, TYPHOON's listener holds 1,024, and the
/// link's is given this bound, so its token-fair admission (§11.6) decides
/// who stays rather than a refusal here.
pub(crate) fn max_sessions(max_flows: usize) -> usize {
    max_flows.max(1024)
}

/// What the per-session queues of a server end hold together at most,
/// whatever the number of sessions.
pub const SERVER_QUEUE_BUDGET: usize = 16 * 1024 * 1024;

/// A UDP service whose configuration passed every check, not bound yet.
#[derive(Debug)]
pub struct UdpChecked {
    shared: Arc<UdpShared>,
    listen: String,
    end: CheckedEnd,
}

#[derive(Debug)]
enum CheckedEnd {
    Client(transport::Connector),
    Server {
        service: SocketAddr,
        typhoon: Option<Box<TyphoonFiles>>,
        link: Option<Box<link::LinkUdpFiles>>,
    },
}

/// A typhoon server's files, read.
struct TyphoonFiles(typhoon::TyphoonServerFiles);

impl std::fmt::Debug for TyphoonFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TyphoonServerFiles")
            .field("token_store", &self.0.tokens().path())
            .finish_non_exhaustive()
    }
}

/// A bound UDP service, ready to run.
#[derive(Debug)]
pub struct UdpService {
    shared: Arc<UdpShared>,
    local: SocketAddr,
    end: BoundEnd,
}

#[derive(Debug)]
enum BoundEnd {
    Client {
        app: UdpSocket,
        connector: Arc<transport::Connector>,
    },
    Server {
        listener: transport::Listener,
        service: SocketAddr,
        tokens: Option<Arc<PortTokens>>,
        /// A link server's endpoint and token store, re-read as a TCP
        /// link service's.
        link_tokens: Option<Box<link::LinkUdpFiles>>,
    },
}

/// Aborts a task when its owner goes away.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps until `at`, or forever without one.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sends one datagram on a non-blocking socket without waiting:
/// `WouldBlock` when its buffer is full. A direct send, not tokio's
/// `try_send`: that refuses until the reactor has seen the socket
/// writable, which a new flow's socket has not yet, and its first datagram
/// would be dropped.
pub(crate) fn send_now(
    socket: &UdpSocket,
    payload: &[u8],
    to: Option<SocketAddr>,
) -> std::io::Result<usize> {
    let raw = socket2::SockRef::from(socket);
    match to {
        Some(to) => raw.send_to(payload, &to.into()),
        None => raw.send(payload),
    }
}

/// The wildcard address of `peer`'s family, any port.
pub(crate) fn unspecified(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

impl UdpService {
    /// Checks `config` (a `udp = true` service) and binds it.
    pub async fn bind(name: &str, config: &ServiceConfig) -> Result<UdpService, ProxyError> {
        check(name, config).await?.bind().await
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<UdpStats> {
        self.shared.stats.clone()
    }

    /// Carries datagrams until `stop` turns true; with `stats_every`, logs
    /// a stats line that often when something changed. Dropped datagrams
    /// are reported in a warning line at most every 10 s either way.
    pub async fn run(self, stop: watch::Receiver<bool>, stats_every: Option<Duration>) {
        let shared = self.shared;
        let _report = AbortOnDrop(tokio::spawn(stats::report(
            shared.name.clone(),
            shared.stats.clone(),
            stats_every,
        )));
        match self.end {
            BoundEnd::Client { app, connector } => client::run(shared, app, connector, stop).await,
            BoundEnd::Server {
                listener,
                service,
                tokens,
                link_tokens,
            } => {
                let _reload = tokens.map(|t| {
                    AbortOnDrop(tokio::spawn(crate::service::reload_port_tokens(
                        shared.name.clone(),
                        t,
                    )))
                });
                let _reload_link = link_tokens.map(|files| {
                    let (endpoint, path) = files.reload();
                    AbortOnDrop(tokio::spawn(crate::service::reload_tokens(
                        shared.name.clone(),
                        endpoint,
                        path,
                    )))
                });
                server::run(shared, listener, service, stop).await
            }
        }
    }
}

impl UdpChecked {
    /// Binds the listen address.
    pub async fn bind(self) -> Result<UdpService, ProxyError> {
        let name = self.shared.name.clone();
        let bind_error = |error| ProxyError::Bind {
            service: name.clone(),
            addr: format!("{} (UDP)", self.listen),
            error,
        };
        let (end, local) = match self.end {
            CheckedEnd::Client(connector) => {
                let app = UdpSocket::bind(&self.listen).await.map_err(bind_error)?;
                let local = app.local_addr().map_err(bind_error)?;
                let connector = Arc::new(connector);
                (BoundEnd::Client { app, connector }, local)
            }
            CheckedEnd::Server {
                service,
                typhoon,
                link: Some(files),
            } => {
                let _ = typhoon;
                let listener = files
                    .bind(&self.listen, max_sessions(self.shared.max_flows))
                    .await
                    .map_err(|e| bind_error(std::io::Error::other(e)))?;
                let local = listener.local_addr();
                let end = BoundEnd::Server {
                    listener: transport::Listener::Link(listener),
                    service,
                    tokens: None,
                    link_tokens: Some(files),
                };
                (end, local)
            }
            CheckedEnd::Server {
                service, typhoon, ..
            } => {
                let (listener, tokens) = match typhoon {
                    Some(files) => {
                        let TyphoonFiles(files) = *files;
                        let tokens = files.tokens();
                        let listener = files
                            .bind(&self.listen)
                            .await
                            .map_err(|e| bind_error(std::io::Error::other(e)))?;
                        (transport::Listener::Typhoon(listener), Some(tokens))
                    }
                    None => {
                        let listener = plain::PlainListener::bind(
                            &self.listen,
                            self.shared.idle,
                            self.shared.max_flows,
                            self.shared.stats.clone(),
                            self.shared.budget.clone(),
                        )
                        .await
                        .map_err(bind_error)?;
                        (transport::Listener::Plain(listener), None)
                    }
                };
                let local = listener.local_addr();
                let end = BoundEnd::Server {
                    listener,
                    service,
                    tokens,
                    link_tokens: None,
                };
                (end, local)
            }
        };
        Ok(UdpService {
            shared: self.shared,
            local,
            end,
        })
    }
}

/// Every check of a `udp = true` service (fields, files, the service's
/// address), without binding; errors name the service and the field.
pub async fn check(name: &str, config: &ServiceConfig) -> Result<UdpChecked, ProxyError> {
    let bad = |field: &'static str, reason: String| ProxyError::Config {
        service: name.to_string(),
        field,
        reason,
    };
    check_fields(config).map_err(|(field, reason)| bad(field, reason))?;
    let listen = crate::service::listen_address(&config.listen);
    if config.transport == Transport::Plain {
        crate::service::check_plain_listen(name, config, &listen).await?;
    }
    let port_files = || {
        config.port.as_ref().ok_or_else(|| {
            bad(
                "port",
                "is missing: a typhoon server needs `server_key` and `token_store`, a typhoon \
                 client `connection_file` (`cipherlink link keygen|invite --wire typhoon`)"
                    .into(),
            )
        })
    };
    let link_files = || {
        config.link.as_ref().ok_or_else(|| {
            bad(
                "link",
                "is missing: a link server needs `server_key` and `token_store`, a link client \
                 `connection_file` (`cipherlink link keygen|invite`)"
                    .into(),
            )
        })
    };
    let (end, connect) = match config.role {
        Role::Client => {
            let (connector, file_server) = match config.transport {
                Transport::Typhoon => {
                    let (c, server) = typhoon::client(port_files()?, config.connect_timeout)
                        .map_err(|(field, reason)| bad(field, reason))?;
                    (transport::Connector::Typhoon(Box::new(c)), Some(server))
                }
                Transport::Link => {
                    let (c, server) = link::client(link_files()?, config.connect_timeout)
                        .map_err(|(field, reason)| bad(field, reason))?;
                    (transport::Connector::Link(Box::new(c)), server)
                }
                _ => (transport::Connector::Plain(plain::PlainConnector), None),
            };
            let connect = match (config.connect.is_empty(), file_server) {
                (true, Some(server)) => server,
                _ => config.connect.clone(),
            };
            (CheckedEnd::Client(connector), connect)
        }
        Role::Server => {
            let typhoon = match config.transport {
                Transport::Typhoon => Some(Box::new(TyphoonFiles(
                    typhoon::server_files(port_files()?)
                        .map_err(|(field, reason)| bad(field, reason))?,
                ))),
                _ => None,
            };
            let link = match config.transport {
                Transport::Link => Some(Box::new(
                    link::server_files(link_files()?)
                        .map_err(|(field, reason)| bad(field, reason))?,
                )),
                _ => None,
            };
            let service = resolve(&config.connect)
                .await
                .map_err(|reason| bad("connect", reason))?;
            (
                CheckedEnd::Server {
                    service,
                    typhoon,
                    link,
                },
                config.connect.clone(),
            )
        }
    };
    if connect.is_empty() {
        return Err(bad("connect", "is empty; give host:port".into()));
    }
    Ok(UdpChecked {
        shared: Arc::new(UdpShared {
            name: name.to_string(),
            transport: config.transport,
            connect,
            idle: config.flow_idle_timeout,
            max_flows: config.max_flows,
            max_message: transport::max_message(config.transport),
            stats: Arc::default(),
            budget: queue::Budget::new(SERVER_QUEUE_BUDGET),
        }),
        listen,
        end,
    })
}

/// The service's address, resolved once: the server end sends to it
/// without waiting on a name lookup per flow.
async fn resolve(connect: &str) -> Result<SocketAddr, String> {
    if connect.is_empty() {
        return Err("is empty; give the UDP service's host:port".into());
    }
    tokio::net::lookup_host(connect)
        .await
        .map_err(|e| format!("{connect}: {e}"))?
        .next()
        .ok_or_else(|| format!("{connect}: no address"))
}

/// The fields of a UDP service: (field, reason) for the first wrong one.
fn check_fields(config: &ServiceConfig) -> Result<(), (&'static str, String)> {
    match config.transport {
        Transport::Plain | Transport::Typhoon | Transport::Link => {}
        other => {
            return Err((
                "udp",
                format!(
                    "is set, but transport \"{}\" carries streams; a UDP service takes link, \
                     plain or typhoon",
                    other.name()
                ),
            ))
        }
    }
    if config.mux {
        return Err(("mux", "is for TCP services; remove it or `udp`".into()));
    }
    let tables = [
        (config.tls.is_some(), "tls"),
        (config.v1.is_some(), "v1"),
        (
            config.link.is_some() && config.transport != Transport::Link,
            "link",
        ),
        (
            config.port.is_some() && config.transport != Transport::Typhoon,
            "port",
        ),
    ];
    if let Some((_, field)) = tables.iter().find(|(set, _)| *set) {
        return Err((
            field,
            format!(
                "is set, but transport is \"{}\"; remove it or change the transport",
                config.transport.name()
            ),
        ));
    }
    if config.dangerous.plain_on_network && config.transport != Transport::Plain {
        return Err((
            "dangerous.plain_on_network",
            "is set, but transport is \"typhoon\"; it only applies to plain".into(),
        ));
    }
    if config.flow_idle_timeout.is_zero() {
        return Err((
            "flow_idle_timeout",
            "is 0, which would forget every flow at once; give a time such as \"60s\" (the \
             default)"
                .into(),
        ));
    }
    if config.max_flows == 0 || config.max_flows > LIMIT_MAX_FLOWS {
        return Err((
            "max_flows",
            format!(
                "is {}; it must be between 1 and {LIMIT_MAX_FLOWS}",
                config.max_flows
            ),
        ));
    }
    if config.connect_timeout.is_zero() {
        return Err((
            "connect_timeout",
            "is 0, which would fail every session at once; give a limit such as \"10s\" (the \
             default)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(transport: Transport) -> ServiceConfig {
        let mut c = ServiceConfig::new(Role::Server, "127.0.0.1:0", "127.0.0.1:53", transport);
        c.udp = true;
        c
    }

    async fn refusal(config: &ServiceConfig) -> String {
        let e = check("dns", config).await.unwrap_err().to_string();
        assert!(e.contains("service `dns`"), "{e}");
        e
    }

    #[tokio::test]
    async fn a_stream_transport_or_a_bad_limit_is_refused_by_field() {
        for t in [Transport::Tls, Transport::V1, Transport::Port] {
            let e = refusal(&service(t)).await;
            assert!(e.contains("`udp`") && e.contains(t.name()), "{e}");
        }
        let mut c = service(Transport::Plain);
        c.max_flows = 0;
        assert!(refusal(&c).await.contains("`max_flows`"));
        let mut c = service(Transport::Plain);
        c.flow_idle_timeout = Duration::ZERO;
        assert!(refusal(&c).await.contains("`flow_idle_timeout`"));
        let mut c = service(Transport::Plain);
        c.mux = true;
        assert!(refusal(&c).await.contains("`mux`"));
        let mut c = service(Transport::Plain);
        c.listen = "0.0.0.0:0".into();
        assert!(refusal(&c).await.contains("plain_on_network"));
        let c = service(Transport::Typhoon);
        assert!(refusal(&c).await.contains("`port`"));
        let mut c = service(Transport::Plain);
        c.connect = String::new();
        assert!(refusal(&c).await.contains("`connect`"));
    }

    #[tokio::test]
    async fn typhoon_without_udp_is_refused_naming_udp() {
        let mut c = service(Transport::Typhoon);
        c.udp = false;
        let e = crate::Service::bind("game", &c)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`udp`") && e.contains("typhoon"), "{e}");
    }
}
