//! The flags of `cipherlink rpc`, in the vocabulary of the other commands
//! (`--listen`, `--connect`, `--cert`, durations with units), each still
//! reading the original Python suite's environment variable, and its old
//! spelling kept as a hidden alias.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink_rpc::tls::KeyExchange;
use clap::Args;

use crate::tls_args::GroupList;
use crate::values::{duration_or_ms, duration_or_secs};

/// The port the suite's server listens on and its clients call.
const DEFAULT_PORT: u16 = 50051;

/// TLS flags of the server and the clients. For a server `--ca` is the CA
/// of its clients (mutual TLS); for a client it is the CA of the server.
#[derive(Debug, Clone, Args)]
pub struct RpcTlsArgs {
    /// CA certificate (PEM). Server: require client certificates it signed
    /// (mutual TLS). Client: verify the server with it.
    #[arg(long, alias = "tls-ca", env = "TLS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Our certificate (PEM), leaf first. Client: present it (mutual TLS).
    #[arg(long, alias = "tls-cert", env = "TLS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key for --cert (PEM).
    #[arg(long, alias = "tls-key", env = "TLS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Dangerous: accept X.509 v1 certificates (`openssl x509 -req` without
    /// extensions, as the original suite's openssl commands make), ours and
    /// the peer's, as gRPC's own TLS stack does: the peer's must be signed
    /// directly by the CA, and a server's must name the host in its CN.
    /// TLS_LEGACY_CN=1 in the environment sets it (and, for a client,
    /// --dangerous-accept-cn-only).
    #[arg(long = "dangerous-accept-legacy-certs", alias = "accept-legacy-certs")]
    pub accept_legacy_certificates: bool,
    /// The old flag (env TLS_LEGACY_CN=1): --dangerous-accept-legacy-certs
    /// and, for a client, --dangerous-accept-cn-only.
    #[arg(
        long = "dangerous-legacy-cn-certs",
        alias = "legacy-cn-certs",
        env = "TLS_LEGACY_CN",
        hide = true,
        // The suite writes TLS_LEGACY_CN=1: take 1/0, yes/no, on/off too.
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub legacy_cn_certs: bool,
    /// Key-exchange groups to offer / accept, most preferred first, e.g.
    /// `X25519` (classical) or `X25519MLKEM768` (hybrid post-quantum);
    /// separated by `,` or, as OpenSSL writes them, `:`.
    #[arg(
        long,
        env = "TLS_GROUPS",
        value_name = "LIST",
        value_parser = GroupList,
        default_value = "X25519MLKEM768,X25519,P-256,P-384"
    )]
    pub groups: ::std::vec::Vec<KeyExchange>,
    /// Plaintext HTTP/2, no TLS at all (the TLS flags are then ignored).
    #[arg(long, alias = "insecure")]
    pub plaintext: bool,
}

impl RpcTlsArgs {
    /// Whether X.509 v1 certificates are accepted.
    pub fn accept_legacy_certificates(&self) -> bool {
        self.accept_legacy_certificates || self.legacy_cn_certs
    }

    /// Whether any file flag is set (ignored with --plaintext).
    pub fn any_file(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, or PORT alone for every interface
    /// [default: 0.0.0.0:50051, or the environment's DF_HOST and DF_PORT].
    #[arg(long, value_name = "ADDR", value_parser = crate::values::listen_addr)]
    pub listen: Option<SocketAddr>,
    /// The old spelling of --listen's address (an IP address).
    #[arg(long, env = "DF_HOST", hide = true)]
    pub host: Option<String>,
    /// The old spelling of --listen's port.
    #[arg(long, env = "DF_PORT", hide = true)]
    pub port: Option<u16>,
    /// Artificial delay per call, e.g. 5ms or 500us (0 allowed; a bare
    /// number is milliseconds).
    #[arg(
        long,
        alias = "delay-ms",
        env = "DELAY_MS",
        value_name = "DURATION",
        default_value = "5ms",
        value_parser = duration_or_ms
    )]
    pub delay: Duration,
    #[command(flatten)]
    pub tls: RpcTlsArgs,
    /// Sleep on tokio's 1 ms timer wheel instead of the precise timer.
    #[arg(long)]
    pub tokio_timer: bool,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// HTTP/2 streams a client may have open at once. With
    /// --max-request-bytes it bounds what one connection can make the server
    /// buffer (1024 x 64 KiB = 64 MiB by default).
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_streams: u32,
    /// Connections open at once, all threads together; more wait in the
    /// listen backlog.
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a connection after this long without a byte either way, e.g.
    /// 5m or 30s (0: never; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration_or_secs)]
    pub idle_timeout: Duration,
    /// Server threads (0: one per core). Each runs whole connections, TLS
    /// handshake, HTTP/2 and handlers, so a connection never crosses threads;
    /// new connections are dealt to the threads in turn.
    #[arg(long, env = "RPC_THREADS", default_value_t = 0)]
    pub threads: usize,
}

impl ServeArgs {
    /// --listen, else DF_HOST / DF_PORT (--host / --port), else the default.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        if let Some(addr) = self.listen {
            return Ok(addr);
        }
        let ip = match &self.host {
            None => IpAddr::from([0, 0, 0, 0]),
            // Parsed, not resolved, as it always was: --listen takes names.
            Some(host) => host.parse().with_context(|| {
                format!(
                    "DF_HOST (--host) {host:?} is not an IP address to listen on; \
                     --listen HOST:PORT also takes a host name"
                )
            })?,
        };
        Ok(SocketAddr::new(ip, self.port.unwrap_or(DEFAULT_PORT)))
    }
}

/// The server a client calls, as `--connect` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// `HOST:PORT`, `[IPv6]:PORT`, or `PORT` alone for localhost. Not resolved
/// here: the client resolves once, before it starts timing.
pub fn server(text: &str) -> Result<Server, String> {
    let trimmed = text.trim();
    if let Ok(port) = trimmed.parse::<u16>() {
        return Ok(Server {
            host: "localhost".into(),
            port,
        });
    }
    let usage = || format!("`{text}`: write HOST:PORT, [IPv6]:PORT or PORT");
    let (host, port) = trimmed.rsplit_once(':').ok_or_else(usage)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(usage)?,
        None if host.contains(':') => return Err(usage()),
        None => host,
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
    if host.is_empty() {
        return Err(usage());
    }
    Ok(Server {
        host: host.to_string(),
        port,
    })
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server: HOST:PORT or [IPv6]:PORT [default: localhost:50051, or
    /// the environment's DF_HOST and DF_PORT].
    #[arg(long, value_name = "HOST:PORT", value_parser = server)]
    pub connect: Option<Server>,
    /// The old spelling of --connect's host.
    #[arg(long, env = "DF_HOST", hide = true)]
    pub host: Option<String>,
    /// The old spelling of --connect's port.
    #[arg(long, env = "DF_PORT", hide = true)]
    pub port: Option<u16>,
    /// Name to check in the server certificate (default: the host of
    /// --connect), like gRPC's ssl_target_name_override.
    #[arg(long, env = "TLS_SERVER_NAME")]
    pub server_name: Option<String>,
    #[command(flatten)]
    pub tls: RpcTlsArgs,
    /// Dangerous: accept a server certificate without subjectAltName whose
    /// CN equals the server name, as gRPC's own TLS stack does. The chain is
    /// still verified.
    #[arg(long = "dangerous-accept-cn-only", alias = "accept-cn-only")]
    pub accept_cn_only_certificates: bool,
    /// Per-call deadline, e.g. 1s or 250ms (a bare number is milliseconds).
    #[arg(
        long,
        alias = "deadline-ms",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = duration_or_ms
    )]
    pub deadline: Duration,
    /// The request's `json` field.
    #[arg(long, default_value = r#"{"vector":[0.12,0.34,0.56,0.78]}"#)]
    pub payload: String,
    /// Sleep on tokio's 1 ms timer wheel instead of the precise timer.
    #[arg(long)]
    pub tokio_timer: bool,
}

impl ClientArgs {
    /// --connect, else DF_HOST / DF_PORT (--host / --port), else the default.
    pub fn server(&self) -> Server {
        self.connect.clone().unwrap_or_else(|| Server {
            host: self.host.clone().unwrap_or_else(|| "localhost".into()),
            port: self.port.unwrap_or(DEFAULT_PORT),
        })
    }

    /// Whether a server certificate may name its host only in the CN.
    pub fn accept_cn_only_certificates(&self) -> bool {
        self.accept_cn_only_certificates || self.tls.legacy_cn_certs
    }
}

#[derive(Debug, Args)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Requests per second.
    #[arg(long, env = "N_RPS", default_value_t = 500.0)]
    pub rps: f64,
    /// Recorded time, e.g. 5m or 90s (a bare number is seconds).
    #[arg(
        long,
        alias = "duration-sec",
        env = "T_DURATION_SEC",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = duration_or_secs
    )]
    pub duration: Duration,
    /// Unrecorded warm-up before it, e.g. 30s (a bare number is seconds).
    #[arg(
        long,
        alias = "warmup-sec",
        env = "T_WARMUP_SEC",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = duration_or_secs
    )]
    pub warmup: Duration,
    /// Requests in flight at most; beyond, they are recorded as RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 10_000)]
    pub max_outstanding: usize,
    /// Results file: JSON lines, one request a line.
    #[arg(long, value_name = "FILE", default_value = "steady.jsonl")]
    pub out: PathBuf,
    /// Search the highest rate that keeps p99 and errors within bounds
    /// (each step lasts --duration after --warmup; no file is written).
    #[arg(long)]
    pub find_max: bool,
    /// --find-max: p99 bound, e.g. 5ms (a bare number is milliseconds).
    #[arg(
        long,
        alias = "p99-bound-ms",
        value_name = "DURATION",
        default_value = "5ms",
        value_parser = duration_or_ms
    )]
    pub p99_bound: Duration,
    /// --find-max: largest failed fraction allowed.
    #[arg(long, default_value_t = 0.001)]
    pub max_error_rate: f64,
    /// --find-max: first rate.
    #[arg(long, default_value_t = 1000.0)]
    pub start_rps: f64,
    /// --find-max: highest rate tried.
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rps: f64,
}

#[derive(Debug, Args)]
pub struct ColdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Attempts per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// How long to run, e.g. 5m (a bare number is seconds).
    #[arg(
        long,
        alias = "duration-sec",
        env = "T_DURATION_SEC",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = duration_or_secs
    )]
    pub duration: Duration,
    /// Unrecorded attempts before the run (the first connection of a process
    /// also pays one-time start-up costs).
    #[arg(long, default_value_t = 1)]
    pub warmup_attempts: u32,
    /// Allow TLS session resumption (then attempts after the first are not fully cold).
    #[arg(long)]
    pub resume: bool,
    /// Results file: JSON lines, one attempt a line.
    #[arg(long, value_name = "FILE", default_value = "coldconn.jsonl")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn servers_are_host_port_bracketed_v6_or_a_port() {
        let s = |host: &str, port| {
            Ok(Server {
                host: host.into(),
                port,
            })
        };
        assert_eq!(server("example.org:443"), s("example.org", 443));
        assert_eq!(server("127.0.0.1:1"), s("127.0.0.1", 1));
        assert_eq!(server("[::1]:50051"), s("::1", 50051));
        assert_eq!(server("8443"), s("localhost", 8443));
        for bad in [
            "example.org",
            "::1:50051",
            "[::1:5",
            ":5",
            "host:http",
            "host:70000",
        ] {
            assert!(server(bad).is_err(), "{bad}");
        }
    }

    /// The literal defaults in the flags are the library's.
    #[test]
    fn serve_defaults_are_the_library_defaults() -> Result<(), clap::Error> {
        let serve = Serve::try_parse_from(["t", "--listen", "1"])?.args;
        assert_eq!(
            serve.idle_timeout,
            cipherlink_rpc::server::DEFAULT_IDLE_TIMEOUT
        );
        Ok(())
    }
}
