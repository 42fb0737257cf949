//! A service: one listener, its transport, limits and counters; and a
//! [`Proxy`], the named services of one process with shared stats and
//! shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ProxyConfig, Role, ServiceConfig, Transport};
use crate::error::ProxyError;
use crate::link::LinkEngine;
use crate::nacl_frame::keys::{check_pair, read_public_key, read_secret_key};
use crate::nacl_frame::{Keys, Mode, LIMIT_MAX_DATA_SIZE, OVERHEAD};
use crate::nacl_frame_tunnel::V1Engine;
use crate::port_tunnel::PortEngine;
use crate::service_limits::{
    port_descriptors_of_this_process, port_pending_of_this_process, relayed_tunnels_cap,
};
use crate::stats::{stats_line, ServiceStats, Snapshot};
use cipherlink_link::gate::ServerLimits;

/// How the encrypted side is made, built once per service.
#[derive(Debug)]
pub(crate) enum Engine {
    Tls(cipherlink::Context),
    V1(V1Engine),
    Link(LinkEngine),
    Port(PortEngine),
    Plain,
}

/// How long tunnels cut at the end of the grace period may take to reset
/// their sockets and log their close before they are dropped outright.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// What every tunnel of a service reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) transport: Transport,
    pub(crate) connect: String,
    pub(crate) engine: Engine,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) buffer_size: usize,
    pub(crate) stats: Arc<ServiceStats>,
    /// Set when the service multiplexes (`mux = true`): the connection
    /// limits, and on a client the connection its tunnels share.
    pub(crate) mux: Option<crate::mux_tunnel::MuxSettings>,
}

/// Where a service's connections come from: TCP, or (a link or port
/// server) sessions that have already authenticated.
enum Listener {
    Tcp(TcpListener),
    Link(cipherlink_link::driver::LinkListener),
    Port(cipherlink_port::driver::PortListener),
}

/// What a listener hands over: a TCP connection and its address, or a link
/// and its authenticated client name; or (a mux server) one stream of an
/// authenticated connection, with that connection's peer.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Link(cipherlink_link::driver::Link),
    Port(Box<cipherlink_port::driver::Accepted>),
    Mux(crate::mux::MuxStream, Arc<str>),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Tcp(l) => l.fmt(f),
            Listener::Link(l) => f
                .debug_struct("LinkListener")
                .field("local", &l.local_addr())
                .finish(),
            Listener::Port(l) => l.fmt(f),
        }
    }
}

impl Listener {
    async fn accept(&mut self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
            Listener::Link(l) => l
                .accept()
                .await
                .map(Accepted::Link)
                .ok_or_else(|| std::io::Error::other("the link listener stopped")),
            Listener::Port(l) => l
                .accept()
                .await
                .map(|a| Accepted::Port(Box::new(a)))
                .ok_or_else(|| std::io::Error::other("the PORT listener stopped")),
        }
    }
}

/// A bound, checked service, ready to run.
#[derive(Debug)]
pub struct Service {
    listener: Listener,
    pub(crate) max_connections: usize,
    shared: Arc<Shared>,
}

impl Service {
    /// Checks `config` whole (TLS through the core's Context, v1 key files,
    /// limits) and binds its listen address.
    pub async fn bind(name: &str, config: &ServiceConfig) -> Result<Service, ProxyError> {
        let checked = Checked::new(name, config).await?;
        checked.bind(config, 1).await
    }
}

/// A service whose configuration passed every check, not listening yet.
struct Checked {
    shared: Arc<Shared>,
    /// Where to listen, a bare port made `0.0.0.0:PORT`.
    listen: String,
}

impl Checked {
    /// Every check of [`Service::bind`], without listening.
    async fn new(name: &str, config: &ServiceConfig) -> Result<Checked, ProxyError> {
        let shared = Arc::new(check(name, config)?);
        let listen = listen_address(&config.listen);
        if config.transport == Transport::Plain {
            check_plain_listen(name, config, &listen).await?;
        }
        Ok(Checked { shared, listen })
    }

    /// Binds the listen address, as one of `link_servers` link and port servers of
    /// this process: a link server's admission caps are its share of the
    /// open-file limit (docs/link-protocol.md §6).
    async fn bind(
        self,
        config: &ServiceConfig,
        link_servers: usize,
    ) -> Result<Service, ProxyError> {
        let Checked { shared, listen } = self;
        let name = shared.name.as_str();
        let bind_error = |error| ProxyError::Bind {
            service: name.to_string(),
            addr: config.listen.clone(),
            error,
        };
        let listener = match &shared.engine {
            Engine::Link(LinkEngine::Server { endpoint, .. }) => {
                let limits = ServerLimits::for_this_process(link_servers);
                let listener = cipherlink_link::driver::LinkListener::bind_with(
                    listen.as_str(),
                    endpoint.clone(),
                    limits,
                )
                .await
                .map_err(|e| match e {
                    cipherlink_link::driver::DriverError::Io { source, .. } => bind_error(source),
                    other => bind_error(std::io::Error::other(other)),
                })?;
                tracing::info!(
                    service = %name,
                    "link server: holds up to {} connections before they authenticate ({} per address)",
                    limits.max_unauthenticated,
                    limits.max_unauthenticated_per_ip
                );
                Listener::Link(listener)
            }
            Engine::Port(PortEngine::Server {
                key,
                tokens,
                settings,
            }) => {
                let pending = port_pending_of_this_process(link_servers);
                let listener = cipherlink_port::driver::PortListener::bind_with_limits(
                    listen.as_str(),
                    key.clone(),
                    tokens.admit_fn(),
                    settings.clone(),
                    pending,
                )
                .await
                .map_err(|e| bind_error(std::io::Error::other(e)))?;
                tracing::info!(
                    service = %name,
                    "PORT server: holds up to {} connections before they are admitted ({} per \
                     address); PORT_TIMEOUT {} s for each INIT and second connection",
                    pending.total,
                    pending.per_group,
                    settings.timeout.as_secs()
                );
                Listener::Port(listener)
            }
            _ => Listener::Tcp(TcpListener::bind(&listen).await.map_err(bind_error)?),
        };
        let max_connections = match &listener {
            Listener::Link(_) => relayed_tunnels_cap(
                name,
                config.max_connections,
                ServerLimits::link_descriptors_of_this_process(link_servers),
            ),
            Listener::Port(_) => relayed_tunnels_cap(
                name,
                config.max_connections,
                port_descriptors_of_this_process(link_servers),
            ),
            Listener::Tcp(_) => config.max_connections,
        };
        Ok(Service {
            listener,
            max_connections,
            shared,
        })
    }
}

/// `listen` as the socket layer takes it: a bare port listens on every
/// interface, as `--listen 8443` does in every command.
pub(crate) fn listen_address(listen: &str) -> String {
    match listen.trim().parse::<u16>() {
        Ok(port) => format!("0.0.0.0:{port}"),
        Err(_) => listen.to_string(),
    }
}

impl Service {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Link(l) => Ok(l.local_addr()),
            Listener::Port(l) => Ok(l.local_addr()),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<ServiceStats> {
        self.shared.stats.clone()
    }

    /// Accepts until `stop` turns true, then lets open tunnels finish for
    /// up to `grace` and cuts the rest. Returns when every tunnel is gone.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, grace: Duration) {
        // Stops with the service, however `run` ends (an aborted task too).
        let _reload = match &self.shared.engine {
            Engine::Link(LinkEngine::Server {
                endpoint,
                token_store,
            }) => Some(AbortOnDrop(tokio::spawn(reload_tokens(
                self.shared.name.clone(),
                endpoint.clone(),
                token_store.clone(),
            )))),
            Engine::Port(PortEngine::Server { tokens, .. }) => Some(AbortOnDrop(tokio::spawn(
                reload_port_tokens(self.shared.name.clone(), tokens.clone()),
            ))),
            _ => None,
        };
        let permits = Arc::new(Semaphore::new(self.max_connections));
        // A mux server's max_connections counts streams; its connections
        // are held to the same number apart, so idle ones cannot pile up.
        let mux_server = self.shared.mux.is_some() && self.shared.role == Role::Server;
        let streams = permits.clone();
        let permits = if mux_server {
            Arc::new(Semaphore::new(self.max_connections))
        } else {
            permits
        };
        let mut tunnels = JoinSet::new();
        let ids = Arc::new(AtomicU64::new(0));
        let cut = CancellationToken::new();
        loop {
            // Reap finished tunnels so the set does not grow.
            while tunnels.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let accepted = match accepted {
                Ok(accepted) => accepted,
                Err(err) if matches!(self.listener, Listener::Link(_) | Listener::Port(_)) => {
                    tracing::warn!(service = %self.shared.name, "{err}");
                    break;
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(service = %self.shared.name, "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if mux_server {
                tunnels.spawn(crate::mux_tunnel::serve_connection(
                    self.shared.clone(),
                    accepted,
                    crate::mux_tunnel::Serving {
                        permit,
                        streams: streams.clone(),
                        ids: ids.clone(),
                        cut: cut.clone(),
                        stop: stop.clone(),
                    },
                ));
                continue;
            }
            let stats = &self.shared.stats;
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            stats.active.fetch_add(1, Ordering::AcqRel);
            let shared = self.shared.clone();
            let id = ids.fetch_add(1, Ordering::Relaxed);
            let cut = cut.clone();
            tunnels.spawn(async move {
                let _permit = permit;
                let _active = ActiveGuard(&shared.stats);
                crate::conn::handle(&shared, accepted, id, cut).await;
            });
        }
        drop(self.listener);
        // Tunnels that ended since the last accept are still in the set
        // until joined: count only the open ones.
        while tunnels.try_join_next().is_some() {}
        let open = tunnels.len();
        if open > 0 {
            tracing::info!(
                service = %self.shared.name,
                "stopped accepting; waiting up to {} for {open} open tunnel(s)",
                cipherlink::duration::display(grace)
            );
        }
        let drained = tokio::time::timeout(grace, async {
            while tunnels.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let open = tunnels.len();
            tracing::warn!(
                service = %self.shared.name,
                "cut {open} tunnel(s) still open after the {} grace period",
                cipherlink::duration::display(grace)
            );
            // Each tunnel resets both of its sockets (so the far ends see
            // the cut as an error, not as a clean end), counts itself as
            // failed and logs its close.
            cut.cancel();
            let ended = tokio::time::timeout(CUT_WAIT, async {
                while tunnels.join_next().await.is_some() {}
            })
            .await;
            if ended.is_err() {
                tunnels.shutdown().await;
            }
        }
    }
}

/// Aborts a helper task when its owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decrements the active count however a tunnel task ends (abort included).
pub(crate) struct ActiveGuard<'a>(pub(crate) &'a ServiceStats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn check(name: &str, config: &ServiceConfig) -> Result<Shared, ProxyError> {
    let bad = |field: &'static str, reason: &str| ProxyError::Config {
        service: name.to_string(),
        field,
        reason: reason.to_string(),
    };
    if config.udp || config.transport == Transport::Typhoon {
        return Err(bad(
            "udp",
            "is not set, but transport \"typhoon\" carries datagrams: set udp = true (--udp)",
        ));
    }
    check_limits(config).map_err(|(field, reason)| bad(field, &reason))?;
    if config.transport == Transport::Port {
        check_port_policy(config).map_err(|(field, reason)| bad(field, &reason))?;
    }
    check_sections(config).map_err(|(field, reason)| bad(field, &reason))?;
    if config.dangerous.plain_on_network && config.transport != Transport::Plain {
        return Err(bad(
            "dangerous.plain_on_network",
            &format!(
                "is set, but transport is \"{}\"; it only applies to plain",
                config.transport.name()
            ),
        ));
    }
    let (engine, file_server) = engine(name, config)?;
    // A client without `connect` goes to its connection file's server.
    let connect = match (config.connect.is_empty(), file_server) {
        (true, Some(server)) => server,
        _ => config.connect.clone(),
    };
    if connect.is_empty() {
        return Err(bad("connect", "is empty; give host:port"));
    }
    let mux = match (config.mux, config.transport) {
        (false, _) => None,
        (true, Transport::Tls | Transport::Link) => Some(crate::mux_tunnel::MuxSettings::new(
            config.role,
            config.max_connections,
        )),
        (true, other) => {
            return Err(bad(
                "mux",
                &format!(
                    "is set, but transport is \"{}\"; multiplexing is for tls and link",
                    other.name()
                ),
            ))
        }
    };
    // A v1 frame carries one read: keep it under the bound the peer enforces.
    let buffer_size = match &engine {
        Engine::V1(v1) => config
            .buffer_size
            .min(v1.max_frame as usize - crate::nacl_frame::TAG_LEN),
        _ => config.buffer_size,
    };
    Ok(Shared {
        name: name.to_string(),
        role: config.role,
        transport: config.transport,
        connect,
        engine,
        connect_timeout: config.connect_timeout,
        idle_timeout: (!config.idle_timeout.is_zero()).then_some(config.idle_timeout),
        buffer_size,
        stats: Arc::default(),
        mux,
    })
}

/// A transport's own table only: (field, reason) for another's.
fn check_sections(config: &ServiceConfig) -> Result<(), (&'static str, String)> {
    let tables = [
        (config.tls.is_some(), "tls", Transport::Tls),
        (config.v1.is_some(), "v1", Transport::V1),
        (config.link.is_some(), "link", Transport::Link),
        (config.port.is_some(), "port", Transport::Port),
    ];
    for (present, field, owner) in tables {
        if present && owner != config.transport {
            return Err((
                field,
                format!(
                    "is set, but transport is \"{}\"; remove it or change the transport",
                    config.transport.name()
                ),
            ));
        }
    }
    Ok(())
}

/// The transport's keys and settings, and the server a connection file
/// names (link and port clients).
fn engine(name: &str, config: &ServiceConfig) -> Result<(Engine, Option<String>), ProxyError> {
    let bad = |field: &'static str, reason: &str| ProxyError::Config {
        service: name.to_string(),
        field,
        reason: reason.to_string(),
    };
    Ok(match config.transport {
        Transport::Tls => {
            let tls = config.tls.clone().unwrap_or_default();
            let built = match config.role {
                Role::Server => cipherlink::Context::server(&tls),
                Role::Client => cipherlink::Context::client(&tls),
            };
            let context = built.map_err(|error| ProxyError::Tls {
                service: name.to_string(),
                error,
            })?;
            (Engine::Tls(context), None)
        }
        Transport::V1 => (Engine::V1(v1_engine(name, config)?), None),
        Transport::Link => {
            let Some(link) = &config.link else {
                return Err(bad(
                    "link",
                    "is missing: a link server needs `server_key` and `token_store`, a link \
                     client `connection_file` (`cipherlink link keygen` / `link invite`)",
                ));
            };
            let (mut engine, file_server) = crate::link::engine(config.role, link)
                .map_err(|(field, reason)| bad(field, &reason))?;
            if let LinkEngine::Client(client) = &mut engine {
                // The driver's own handshake limit, so an abandoned attempt
                // does not outlive connect_timeout.
                client.params.handshake_timeout = config.connect_timeout;
            }
            (Engine::Link(engine), file_server)
        }
        Transport::Port => {
            let Some(port) = &config.port else {
                return Err(bad(
                    "port",
                    "is missing: a port server needs `server_key` and `token_store`, a port \
                     client `connection_file` (`cipherlink link keygen --wire port` / \
                     `link invite --wire port`)",
                ));
            };
            let (engine, file_server) = crate::port_tunnel::engine(config.role, port)
                .map_err(|(field, reason)| bad(field, &reason))?;
            (Engine::Port(engine), file_server)
        }
        Transport::Plain => (Engine::Plain, None),
        Transport::Typhoon => {
            return Err(bad(
                "udp",
                "is not set, but transport \"typhoon\" carries datagrams: set udp = true",
            ))
        }
    })
}

/// The numeric limits every transport has: (field, reason) when one is out
/// of range, before anything would panic or misbehave on it.
fn check_limits(config: &ServiceConfig) -> Result<(), (&'static str, String)> {
    if config.buffer_size < 1024 || config.buffer_size > 16 * 1024 * 1024 {
        return Err(("buffer_size", "must be between 1024 and 16 MiB".into()));
    }
    if config.max_connections == 0 || config.max_connections > Semaphore::MAX_PERMITS {
        return Err((
            "max_connections",
            format!(
                "is {}; it must be between 1 and {} (the most the tunnel semaphore holds)",
                config.max_connections,
                Semaphore::MAX_PERMITS
            ),
        ));
    }
    if config.connect_timeout.is_zero() {
        return Err((
            "connect_timeout",
            "is 0, which would fail every connection at once; give a limit such as \"10s\" \
             (the default)"
                .into(),
        ));
    }
    Ok(())
}

/// A compliance policy PORT cannot meet is refused by name rather than
/// ignored with the rest of the `tls` section.
fn check_port_policy(config: &ServiceConfig) -> Result<(), (&'static str, String)> {
    let Some(tls) = &config.tls else {
        return Ok(());
    };
    match crate::port::unmet_policy(&tls.compliance) {
        Some((setting, reason)) => Err((
            match setting {
                "classical" => "tls.compliance.classical",
                _ => "tls.compliance.post_quantum",
            },
            reason,
        )),
        None => Ok(()),
    }
}

/// The v1 section: bounds, then the key files (0600 secret key, no
/// low-order peer key).
fn v1_engine(name: &str, config: &ServiceConfig) -> Result<V1Engine, ProxyError> {
    let bad = |field: &'static str, reason: String| ProxyError::Config {
        service: name.to_string(),
        field,
        reason,
    };
    let Some(v1) = &config.v1 else {
        return Err(bad(
            "v1",
            "is missing: transport v1 needs `secret_key` and `peer_public_key` \
             (make them with `cipherlink proxy keygen --transport v1`)"
                .into(),
        ));
    };
    if (v1.max_frame_size as usize) < OVERHEAD || v1.max_frame_size > LIMIT_MAX_DATA_SIZE {
        return Err(bad(
            "v1.max_frame_size",
            format!("must be between {OVERHEAD} and {LIMIT_MAX_DATA_SIZE} (16 MiB of data)"),
        ));
    }
    if v1.auth_timeout.is_zero() {
        return Err(bad(
            "v1.auth_timeout",
            "is 0, which would drop every client before its first frame; give a limit such \
             as \"10s\" (the default)"
                .into(),
        ));
    }
    let key_error = |error| ProxyError::Key {
        service: name.to_string(),
        error,
    };
    let secret = read_secret_key(&v1.secret_key).map_err(key_error)?;
    let public = read_public_key(&v1.peer_public_key).map_err(key_error)?;
    if secret.public_key() == public {
        return Err(bad(
            "v1.peer_public_key",
            "is our own public key; give the other side's".into(),
        ));
    }
    check_pair(&secret, &public, &v1.peer_public_key).map_err(key_error)?;
    Ok(V1Engine {
        keys: Keys::new(&secret, &public),
        max_frame: v1.max_frame_size,
        mode: if v1.strict {
            Mode::Strict
        } else {
            Mode::Compatible
        },
        auth_timeout: v1.auth_timeout,
    })
}

/// `plain` carries everything in the clear and lets anyone through: it
/// listens on loopback only, unless the configuration says otherwise in
/// its `dangerous` table, and it says so in the log either way.
pub(crate) async fn check_plain_listen(
    name: &str,
    config: &ServiceConfig,
    listen: &str,
) -> Result<(), ProxyError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|error| ProxyError::Bind {
            service: name.to_string(),
            addr: config.listen.clone(),
            error,
        })?
        .collect();
    let exposed = addrs.iter().find(|addr| !addr.ip().is_loopback());
    if let (Some(addr), false) = (exposed, config.dangerous.plain_on_network) {
        return Err(ProxyError::Config {
            service: name.to_string(),
            field: "listen",
            reason: format!(
                "is {} ({addr}), not loopback, and transport plain has no encryption and no \
                 authentication: listen on 127.0.0.1 or ::1, use tls or link, or accept the \
                 risk with --dangerous-plain-on-network (TOML: [service.{name}.dangerous] \
                 plain_on_network = true)",
                config.listen
            ),
        });
    }
    tracing::warn!(
        service = %name,
        "transport plain: no encryption, no authentication; whoever can reach {} or the path to \
         {} reads and changes every byte",
        config.listen,
        config.connect
    );
    Ok(())
}

/// The services of one process.
#[derive(Debug)]
pub struct Proxy {
    services: Vec<Service>,
    /// The `udp = true` services.
    udp: Vec<crate::udp::UdpService>,
    stats_interval: Option<Duration>,
    grace: Duration,
}

impl Proxy {
    /// Checks every service, then binds them all: a mistake in any
    /// service's configuration stops the proxy before any of them listens.
    pub async fn bind(config: &ProxyConfig) -> Result<Proxy, ProxyError> {
        if config.service.is_empty() {
            return Err(ProxyError::Config {
                service: "-".into(),
                field: "service",
                reason: "no service is configured".into(),
            });
        }
        // Link and port servers (whose listeners hold connections before
        // they are tunnels) share the process's descriptors.
        let link_servers = config
            .service
            .values()
            .filter(|s| matches!(s.transport, Transport::Link | Transport::Port))
            .filter(|s| s.role == Role::Server)
            .count();
        let mut checked = Vec::new();
        let mut udp_checked = Vec::new();
        for (name, service) in &config.service {
            if service.udp {
                udp_checked.push(crate::udp::check(name, service).await?);
            } else {
                checked.push((Checked::new(name, service).await?, service));
            }
        }
        let mut services = Vec::new();
        for (service, config) in checked {
            services.push(service.bind(config, link_servers).await?);
        }
        let mut udp = Vec::new();
        for service in udp_checked {
            udp.push(service.bind().await?);
        }
        Ok(Proxy {
            services,
            udp,
            stats_interval: (!config.stats_interval.is_zero()).then_some(config.stats_interval),
            grace: config.shutdown_grace,
        })
    }

    /// Each service's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.services
            .iter()
            .filter_map(|s| s.local_addr().ok().map(|a| (s.name().to_string(), a)))
            .chain(
                self.udp
                    .iter()
                    .map(|s| (s.name().to_string(), s.local_addr())),
            )
            .collect()
    }

    /// Each service's name and counters.
    pub fn stats(&self) -> Vec<(String, Arc<ServiceStats>)> {
        self.services
            .iter()
            .map(|s| (s.name().to_string(), s.stats()))
            .collect()
    }

    /// Each UDP service's name and counters.
    pub fn udp_stats(&self) -> Vec<(String, Arc<crate::udp::UdpStats>)> {
        self.udp
            .iter()
            .map(|s| (s.name().to_string(), s.stats()))
            .collect()
    }

    /// Runs every service until `shutdown` completes, then drains them.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = self.stats();
        let mut running = JoinSet::new();
        for service in self.services {
            running.spawn(service.run(stop_rx.clone(), self.grace));
        }
        for service in self.udp {
            running.spawn(service.run(stop_rx.clone(), self.stats_interval));
        }
        let ticker = self
            .stats_interval
            .map(|every| tokio::spawn(tick(stats, every)));
        shutdown.await;
        let _ = stop_tx.send(true);
        while running.join_next().await.is_some() {}
        if let Some(ticker) = ticker {
            ticker.abort();
        }
    }
}

/// Logs a stats line per service every `every`, for the services where
/// something moved since their last line: an idle proxy stays quiet, and
/// the first line after a quiet spell covers all of it.
async fn tick(services: Vec<(String, Arc<ServiceStats>)>, every: Duration) {
    let start = tokio::time::Instant::now();
    let mut before: Vec<(Snapshot, tokio::time::Instant)> = services
        .iter()
        .map(|(_, s)| (s.snapshot(), start))
        .collect();
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let now = tokio::time::Instant::now();
        for ((name, stats), (prev, since)) in services.iter().zip(before.iter_mut()) {
            let snap = stats.snapshot();
            if snap == *prev {
                continue;
            }
            tracing::info!("{}", stats_line(name, prev, &snap, now - *since));
            *prev = snap;
            *since = now;
        }
    }
}

/// Re-reads a link server's token store when it changes (as `cipherlink
/// link serve` does), so `link revoke` refuses new links and closes the open
/// links of the revoked tokens without a restart. A store that no longer
/// reads or parses refuses every token and closes every link until fixed.
pub(crate) async fn reload_tokens(
    name: String,
    endpoint: Arc<cipherlink_link::ServerEndpoint>,
    path: std::path::PathBuf,
) {
    use cipherlink_link::token_file::{Reload, TokenFile};
    // On content, not mtime; a store that fails to read or parse refuses
    // every token (and closes their links) until fixed: a revoke typed
    // wrong must not leave the token it meant to revoke working.
    let mut store = TokenFile::new(&path);
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        every.tick().await;
        match store.reload(&endpoint) {
            Reload::Unchanged => {}
            Reload::Applied { tokens, closed } => tracing::info!(
                service = %name,
                "reloaded {} ({tokens} tokens; closed {closed} open links of revoked tokens)",
                path.display()
            ),
            Reload::Failed { reason, closed } => tracing::error!(
                service = %name,
                "token store {reason}: refusing every token until it is fixed (closed {closed} open links)"
            ),
        }
    }
}

/// Re-reads a port server's token store when it changes, as `cipherlink
/// link serve --wire port` does: a revoked token is refused from then on
/// and its open tunnels are ended; a store that no longer reads or parses
/// refuses every token until fixed.
pub(crate) async fn reload_port_tokens(name: String, tokens: Arc<crate::port::PortTokens>) {
    use crate::port::Reload;
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        every.tick().await;
        match tokens.reload() {
            Reload::Unchanged => {}
            Reload::Applied { tokens: n } => tracing::info!(
                service = %name,
                "reloaded {} ({n} tokens; tunnels of revoked tokens are ended)",
                tokens.path().display()
            ),
            Reload::Failed { reason } => tracing::error!(
                service = %name,
                "{reason}: refusing every token until it is fixed (open tunnels are ended)"
            ),
        }
    }
}
