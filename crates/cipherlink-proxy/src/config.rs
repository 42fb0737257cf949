//! The proxy's configuration: named services, as in stunnel's file, in
//! TOML (docs/proxy.md). The command-line flags fill in the same
//! [`ServiceConfig`] for a single service. Nothing is checked here:
//! [`crate::Service::bind`] checks a service whole and names the field.
//!
//! Durations are written as everywhere in cipherlink (`"30s"`, `"250ms"`,
//! `"2m"`); a bare number keeps the unit of the field's old name
//! (`connect_timeout_ms = 10000`, `idle_timeout_secs = 3600`), which stays
//! accepted.
//!
//! ```toml
//! stats_interval = "10s"
//! shutdown_grace = "30s"
//!
//! [service.web]
//! role = "server"                # encrypted in, plaintext out
//! listen = "0.0.0.0:8443"
//! forward = "127.0.0.1:8080"
//! transport = "tls"
//! [service.web.tls]              # the core's TLS configuration, unchanged
//! certificate = "server.crt"
//! private_key = "server.key"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ProxyError;
use crate::nacl_frame::DEFAULT_MAX_DATA_SIZE;

/// How a service's encrypted side is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// TLS 1.3 through the core's Context (hybrid post-quantum by default).
    Tls,
    /// The seed's v1 NaCl-box frame (docs/v1-frame.md): for Python peers.
    V1,
    /// The link protocol (docs/link-protocol.md): random-looking bytes,
    /// hybrid post-quantum, forward secret, token-authenticated clients.
    Link,
    /// SeasideVPN's PORT wire (docs/port-wire.md): for SeasideVPN peers.
    /// No forward secrecy, no post-quantum key exchange, no replay
    /// protection.
    Port,
    /// No encryption: a baseline for measurement.
    Plain,
    /// SeasideVPN's TYPHOON wire over UDP (docs/typhoon-wire.md), for
    /// `udp = true` services only, with the port transport's files. No
    /// forward secrecy, no post-quantum key exchange, no replay protection.
    Typhoon,
}

impl Transport {
    /// The name used in the configuration and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::V1 => "v1",
            Transport::Link => "link",
            Transport::Port => "port",
            Transport::Plain => "plain",
            Transport::Typhoon => "typhoon",
        }
    }

    /// Whether it carries datagrams (`udp = true`): `plain` over UDP and
    /// `typhoon`. The stream transports (tls, v1, port) cannot.
    pub fn carries_datagrams(self) -> bool {
        matches!(self, Transport::Plain | Transport::Typhoon)
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s.to_ascii_lowercase().as_str() {
            "tls" => Ok(Transport::Tls),
            "v1" => Ok(Transport::V1),
            "link" => Ok(Transport::Link),
            "port" => Ok(Transport::Port),
            "plain" => Ok(Transport::Plain),
            "typhoon" => Ok(Transport::Typhoon),
            other => Err(format!(
                "unknown transport {other:?}; valid: tls, v1, link, port, plain, typhoon (udp)"
            )),
        }
    }
}

/// Which end of the tunnel a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts encrypted connections and forwards plaintext to `connect`.
    Server,
    /// Accepts plaintext connections and carries them encrypted to `connect`.
    Client,
}

/// The v1 transport's keys, bounds and nonce mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1Config {
    /// Our X25519 secret key file (hex, base64 or 32 raw bytes), mode 0600.
    pub secret_key: PathBuf,
    /// The peer's X25519 public key file.
    pub peer_public_key: PathBuf,
    /// The largest `data_size` accepted and sent (the first frame of a
    /// connection is held to 64 KiB of plaintext whatever this says).
    #[serde(default = "default_max_frame")]
    pub max_frame_size: u32,
    /// Both ends are cipherlink: each direction of a connection is one
    /// nonce sequence from 0, so frames spliced from another connection,
    /// deleted or reordered are refused. Random-nonce peers (PyNaCl) fail.
    #[serde(default)]
    pub strict: bool,
    /// Server: how long a new connection may take to deliver its first
    /// authentic frame; nothing is connected onward before it
    /// (`auth_timeout`; a bare number is milliseconds, as `auth_timeout_ms`).
    #[serde(
        default = "default_auth_timeout",
        alias = "auth_timeout_ms",
        with = "millis"
    )]
    pub auth_timeout: Duration,
}

fn default_max_frame() -> u32 {
    DEFAULT_MAX_DATA_SIZE
}
fn default_auth_timeout() -> Duration {
    Duration::from_secs(10)
}

impl V1Config {
    /// Key files with the default bounds, in compatible mode.
    pub fn new(secret_key: impl Into<PathBuf>, peer_public_key: impl Into<PathBuf>) -> V1Config {
        V1Config {
            secret_key: secret_key.into(),
            peer_public_key: peer_public_key.into(),
            max_frame_size: default_max_frame(),
            strict: false,
            auth_timeout: default_auth_timeout(),
        }
    }
}

/// Options that remove a protection, in one table per service (as the
/// core's `[dangerous]` for TLS), each with a `--dangerous-*` flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDangerous {
    /// Let a `plain` service listen on an address other than loopback:
    /// anyone who can reach it then reads, changes and reaches the service.
    #[serde(default)]
    pub plain_on_network: bool,
}

/// The link transport's files, as `cipherlink link keygen` and
/// `cipherlink link invite` write them. A server needs `server_key` and
/// `token_store`; a client needs `connection_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Server: the server key file (`link keygen --key`).
    #[serde(default)]
    pub server_key: Option<PathBuf>,
    /// Server: the token store (`link invite --tokens`); re-read when it
    /// changes, so `link revoke` applies to new links.
    #[serde(default)]
    pub token_store: Option<PathBuf>,
    /// Client: the connection file `link invite` issued.
    #[serde(default)]
    pub connection_file: Option<PathBuf>,
}

/// The port transport's files, as `cipherlink link keygen --wire port` and
/// `link invite --wire port` write them; the fields mean what
/// [`LinkConfig`]'s do. A server needs `server_key` and `token_store`; a
/// client needs `connection_file`. The `typhoon` transport takes the same
/// table (TYPHOON uses PORT's keys, tokens and connection files:
/// `link keygen|invite --wire typhoon` write them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Server: the PORT server key file (`link keygen --wire port --key`,
    /// or SeasideVPN's `conf.env` with its `SEASIDE_PRIVATE_KEY=` line).
    #[serde(default)]
    pub server_key: Option<PathBuf>,
    /// Server: the token store (`link invite --wire port --tokens`);
    /// re-read when it changes, so `link revoke` refuses new sessions and
    /// ends the open ones of the revoked token.
    #[serde(default)]
    pub token_store: Option<PathBuf>,
    /// Client: the PORT connection file `link invite --wire port` issued
    /// (or one written by hand for a SeasideVPN listener).
    #[serde(default)]
    pub connection_file: Option<PathBuf>,
}

/// One named service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Server or client end.
    pub role: Role,
    /// Address to accept connections on.
    pub listen: String,
    /// Where each accepted connection goes (`host:port`): a server's
    /// plaintext service (also spelled `forward`), or a client's proxy server.
    /// A link or port client may leave it empty to use its connection
    /// file's server.
    #[serde(alias = "forward", default)]
    pub connect: String,
    /// How the encrypted side is carried.
    pub transport: Transport,
    /// TLS options for `transport = "tls"`: the core's configuration.
    #[serde(default)]
    pub tls: Option<cipherlink::Config>,
    /// Keys for `transport = "v1"`.
    #[serde(default)]
    pub v1: Option<V1Config>,
    /// Files for `transport = "link"`.
    #[serde(default)]
    pub link: Option<LinkConfig>,
    /// Files for `transport = "port"` and `transport = "typhoon"`.
    #[serde(default)]
    pub port: Option<PortConfig>,
    /// Most tunnels open at once; more wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a tunnel after this long with no byte in either direction
    /// (0 = never; a bare number is seconds, as `idle_timeout_secs`).
    #[serde(
        default = "default_idle_timeout",
        alias = "idle_timeout_secs",
        with = "secs"
    )]
    pub idle_timeout: Duration,
    /// How long connecting to `connect` may take (a bare number is
    /// milliseconds, as `connect_timeout_ms`).
    #[serde(
        default = "default_connect_timeout",
        alias = "connect_timeout_ms",
        with = "millis"
    )]
    pub connect_timeout: Duration,
    /// Bytes read at once per direction (and the plaintext per v1 frame).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: usize,
    /// Carry the tunnels as streams over one long-lived encrypted
    /// connection (docs/mux.md) instead of one connection and handshake per
    /// tunnel: `tls` and `link` only, and both ends must set it. On a
    /// server, `max_connections` then counts streams.
    #[serde(default)]
    pub mux: bool,
    /// Carry UDP datagrams instead of TCP connections (docs/proxy.md, "UDP
    /// services"): transports `plain` and `typhoon`. The client end keeps a
    /// flow per application source address, the server end a UDP socket to
    /// `connect` per flow; both ends must set it.
    #[serde(default)]
    pub udp: bool,
    /// `udp`: forget a flow with no datagram either way for this long (a
    /// bare number is seconds).
    #[serde(default = "default_flow_idle_timeout", with = "secs")]
    pub flow_idle_timeout: Duration,
    /// `udp`: most flows held at once; a new flow beyond it evicts the
    /// least recently used one.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Protections turned off (`[service.NAME.dangerous]`).
    #[serde(default)]
    pub dangerous: ServiceDangerous,
}

fn default_max_connections() -> usize {
    16_384
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(3_600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
/// 60 s: the flow idle timeout of a `udp` service (as a NAT's UDP mapping).
pub const DEFAULT_FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
fn default_flow_idle_timeout() -> Duration {
    DEFAULT_FLOW_IDLE_TIMEOUT
}
/// 4,096: the most flows of a `udp` service held at once.
pub const DEFAULT_MAX_FLOWS: usize = 4096;
fn default_max_flows() -> usize {
    DEFAULT_MAX_FLOWS
}
/// 16 KiB: one TLS record's worth of plaintext per read.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;
fn default_buffer_size() -> usize {
    DEFAULT_BUFFER_SIZE
}

impl ServiceConfig {
    /// A service with default limits.
    pub fn new(
        role: Role,
        listen: impl Into<String>,
        connect: impl Into<String>,
        transport: Transport,
    ) -> ServiceConfig {
        ServiceConfig {
            role,
            listen: listen.into(),
            connect: connect.into(),
            transport,
            tls: None,
            v1: None,
            link: None,
            port: None,
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            connect_timeout: default_connect_timeout(),
            buffer_size: default_buffer_size(),
            mux: false,
            udp: false,
            flow_idle_timeout: default_flow_idle_timeout(),
            max_flows: default_max_flows(),
            dangerous: ServiceDangerous::default(),
        }
    }
}

/// A whole proxy: global settings and named services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Log a stats line per service this often, when something changed
    /// (0 = never; a bare number is seconds, as `stats_interval_secs`).
    #[serde(default, alias = "stats_interval_secs", with = "secs")]
    pub stats_interval: Duration,
    /// On SIGINT/SIGTERM, how long open tunnels may go on before they are
    /// cut (a bare number is seconds, as `shutdown_grace_secs`).
    #[serde(
        default = "default_grace",
        alias = "shutdown_grace_secs",
        with = "secs"
    )]
    pub shutdown_grace: Duration,
    /// The services, by name.
    #[serde(default)]
    pub service: BTreeMap<String, ServiceConfig>,
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

/// A duration field: a string with its unit, or a bare number in `bare`.
fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    bare: cipherlink::duration::BareUnit,
) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(u64),
        Text(String),
    }
    let text = match Written::deserialize(deserializer)? {
        Written::Number(n) => n.to_string(),
        Written::Text(text) => text,
    };
    cipherlink::duration::parse(&text, bare).map_err(serde::de::Error::custom)
}

/// Duration fields whose bare numbers are milliseconds.
mod millis {
    use super::*;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        deserialize_duration(d, cipherlink::duration::BareUnit::Millis)
    }
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cipherlink::duration::display(*d))
    }
}

/// Duration fields whose bare numbers are seconds.
mod secs {
    use super::*;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        deserialize_duration(d, cipherlink::duration::BareUnit::Secs)
    }
    pub use super::millis::serialize;
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            stats_interval: Duration::ZERO,
            shutdown_grace: default_grace(),
            service: BTreeMap::new(),
        }
    }
}

impl ProxyConfig {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<ProxyConfig, ProxyError> {
        toml::from_str(text).map_err(|error| ProxyError::Toml {
            path: origin.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// Reads a TOML file; relative paths in it (certificates, keys) are
    /// taken relative to the file's folder.
    pub fn from_toml_file(path: &Path) -> Result<ProxyConfig, ProxyError> {
        let text = std::fs::read_to_string(path).map_err(|error| ProxyError::File {
            path: path.to_path_buf(),
            error,
        })?;
        let mut config = ProxyConfig::from_toml(&text, path)?;
        if let Some(base) = path.parent() {
            for service in config.service.values_mut() {
                service.rebase_paths(base);
            }
        }
        Ok(config)
    }
}

impl ServiceConfig {
    fn rebase_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            let rebase = |source: &mut cipherlink::PemSource| source.rebase(base);
            tls.certificate.iter_mut().for_each(rebase);
            tls.private_key.iter_mut().for_each(rebase);
            tls.trusted_cas.iter_mut().for_each(rebase);
        }
        if let Some(v1) = &mut self.v1 {
            for path in [&mut v1.secret_key, &mut v1.peer_public_key] {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        let link = self.link.as_mut().map(|l| {
            [
                &mut l.server_key,
                &mut l.token_store,
                &mut l.connection_file,
            ]
        });
        let port = self.port.as_mut().map(|p| {
            [
                &mut p.server_key,
                &mut p.token_store,
                &mut p.connection_file,
            ]
        });
        for path in link.into_iter().chain(port).flatten().flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_two_services_parses_and_rebases() {
        let text = r#"
            stats_interval_secs = 5
            shutdown_grace = "1m"
            [service.web]
            role = "server"
            listen = "127.0.0.1:8443"
            forward = "127.0.0.1:8080"
            transport = "tls"
            [service.web.tls]
            certificate = "server.crt"
            private_key = "server.key"
            require_client_cert = true
            trusted_cas = ["ca.crt"]
            allowed_identities = ["client"]
            [service.legacy]
            role = "client"
            listen = "127.0.0.1:9000"
            connect = "127.0.0.1:9001"
            transport = "v1"
            max_connections = 10
            connect_timeout = "250ms"
            idle_timeout_secs = 60
            [service.legacy.v1]
            secret_key = "client.key"
            peer_public_key = "/etc/server.pub"
            [service.bench]
            role = "server"
            listen = "0.0.0.0:9200"
            connect = "127.0.0.1:9201"
            transport = "plain"
            connect_timeout_ms = 2000
            idle_timeout = "2m"
            [service.bench.dangerous]
            plain_on_network = true
            [service.hidden]
            role = "client"
            listen = "127.0.0.1:9100"
            transport = "link"
            [service.hidden.link]
            connection_file = "alice.link"
            [service.seaside]
            role = "server"
            listen = "127.0.0.1:8587"
            forward = "127.0.0.1:8080"
            transport = "port"
            [service.seaside.port]
            server_key = "port-server.key"
            token_store = "/etc/port-tokens.txt"
        "#;
        let mut config = ProxyConfig::from_toml(text, Path::new("p.toml")).unwrap();
        for service in config.service.values_mut() {
            service.rebase_paths(Path::new("/etc/cl"));
        }
        let web = &config.service["web"];
        assert_eq!(web.connect, "127.0.0.1:8080");
        let tls = web.tls.as_ref().unwrap();
        assert_eq!(
            tls.certificate,
            Some(cipherlink::PemSource::path("/etc/cl/server.crt"))
        );
        assert_eq!(tls.allowed_identities, vec!["client".to_string()]);
        let legacy = &config.service["legacy"];
        let v1 = legacy.v1.as_ref().unwrap();
        assert_eq!(v1.secret_key, PathBuf::from("/etc/cl/client.key"));
        assert_eq!(v1.peer_public_key, PathBuf::from("/etc/server.pub"));
        assert_eq!(v1.max_frame_size, DEFAULT_MAX_DATA_SIZE);
        assert!(!v1.strict);
        assert_eq!(v1.auth_timeout, Duration::from_secs(10));
        assert!(config.service["bench"].dangerous.plain_on_network);
        assert!(!legacy.dangerous.plain_on_network);
        assert_eq!(legacy.max_connections, 10);
        assert_eq!(config.stats_interval, Duration::from_secs(5));
        assert_eq!(config.shutdown_grace, Duration::from_secs(60));
        // A new name takes a unit; an old name's bare number keeps its unit.
        assert_eq!(legacy.connect_timeout, Duration::from_millis(250));
        assert_eq!(legacy.idle_timeout, Duration::from_secs(60));
        let bench = &config.service["bench"];
        assert_eq!(bench.connect_timeout, Duration::from_secs(2));
        assert_eq!(bench.idle_timeout, Duration::from_secs(120));
        assert_eq!(web.connect_timeout, Duration::from_secs(10));
        let hidden = &config.service["hidden"];
        assert_eq!(hidden.transport, Transport::Link);
        assert_eq!(
            hidden.connect, "",
            "a link client may take the file's server"
        );
        assert_eq!(
            hidden.link.as_ref().unwrap().connection_file,
            Some(PathBuf::from("/etc/cl/alice.link"))
        );
        let seaside = config.service["seaside"].port.as_ref().unwrap();
        assert_eq!(config.service["seaside"].transport, Transport::Port);
        assert_eq!(
            (&seaside.server_key, &seaside.token_store),
            (
                &Some(PathBuf::from("/etc/cl/port-server.key")),
                &Some(PathBuf::from("/etc/port-tokens.txt"))
            )
        );
    }

    #[test]
    fn a_udp_service_parses_with_its_flow_limits_and_defaults() {
        let text = r#"
            [service.dns]
            role = "client"
            listen = "127.0.0.1:5353"
            connect = "10.0.0.2:8053"
            transport = "plain"
            udp = true
            flow_idle_timeout = "90s"
            max_flows = 128
            [service.game]
            role = "server"
            listen = "0.0.0.0:8542"
            forward = "127.0.0.1:27015"
            transport = "typhoon"
            udp = true
            flow_idle_timeout = 30
            [service.game.port]
            server_key = "port-server.key"
            token_store = "port-tokens.txt"
            [service.web]
            role = "server"
            listen = "127.0.0.1:8443"
            forward = "127.0.0.1:8080"
            transport = "plain"
        "#;
        let config = ProxyConfig::from_toml(text, Path::new("p.toml")).unwrap();
        let dns = &config.service["dns"];
        assert!(dns.udp);
        assert_eq!(dns.flow_idle_timeout, Duration::from_secs(90));
        assert_eq!(dns.max_flows, 128);
        let game = &config.service["game"];
        assert_eq!((game.transport, game.udp), (Transport::Typhoon, true));
        // A bare number is seconds.
        assert_eq!(game.flow_idle_timeout, Duration::from_secs(30));
        assert_eq!(game.max_flows, DEFAULT_MAX_FLOWS);
        let web = &config.service["web"];
        assert!(!web.udp);
        assert_eq!(web.flow_idle_timeout, DEFAULT_FLOW_IDLE_TIMEOUT);
        assert_eq!("typhoon".parse::<Transport>(), Ok(Transport::Typhoon));
        assert!(Transport::Typhoon.carries_datagrams() && !Transport::Tls.carries_datagrams());
    }

    #[test]
    fn unknown_fields_and_transports_are_named() {
        let err = ProxyConfig::from_toml(
            "[service.a]\nrole=\"server\"\nlisten=\"x\"\nconnect=\"y\"\ntransport=\"ssh\"",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("p.toml") && err.contains("ssh"), "{err}");
        let err = ProxyConfig::from_toml("[service.a]\nlisten_addr=1", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = ProxyConfig::from_toml(
            "[service.a]\nrole=\"server\"\nlisten=\"x\"\nconnect=\"y\"\ntransport=\"tls\"\n\
             connect_timeout=\"3 parsecs\"",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a unit"), "{err}");
    }
}
