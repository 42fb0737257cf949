//! `cipherlink proxy ...`: glue from flags (or a TOML file) to
//! `cipherlink_proxy`, plus signal handling.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink_proxy::{
    LinkConfig, PortConfig, ProxyConfig, Role, ServiceConfig, Transport, V1Config,
};
use clap::{Args, Subcommand};

use crate::tls_args::{build_context, ClientTlsArgs, ServerTlsArgs, TlsArgs};
use crate::values::{duration_or_ms, duration_or_secs, listen_addr};

/// Put encryption in front of any TCP service (like stunnel), or of a UDP
/// service with --udp.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: ProxyCommand,
}

/// Which end, or a whole configuration file.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Accept encrypted connections (with --udp: sessions) and forward their
    /// plaintext to --forward.
    Server(ServerArgs),
    /// Accept plaintext connections (with --udp: datagrams) and carry them
    /// encrypted to --connect.
    Client(ClientArgs),
    /// Run every service of a TOML file (docs/proxy.md) in one process.
    Run(RunArgs),
    /// Write a key pair: `--transport v1` makes X25519 keys for the v1 frame.
    Keygen(KeygenArgs),
}

/// Options every service has.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Where to accept connections: PORT (every interface), HOST:PORT or [IPv6]:PORT.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// How the encrypted side is carried: tls, v1, link (recommended against
    /// observers: random-looking, hybrid post-quantum), port (SeasideVPN's
    /// PORT wire, for SeasideVPN peers: no forward secrecy, no post-quantum
    /// part; docs/port-wire.md) or plain (no encryption; for measurement).
    /// With --udp: link (the link's datagram mode, with the link files;
    /// docs/link-protocol.md §11), plain (no encryption) or typhoon
    /// (SeasideVPN's TYPHOON over UDP, with the port transport's files;
    /// docs/typhoon-wire.md).
    #[arg(long, default_value = "tls")]
    pub transport: Transport,
    /// Carry a UDP service instead of TCP connections (docs/proxy.md, "UDP
    /// services"): the client end binds --listen as a UDP socket, keeps a
    /// flow per application source address and carries every datagram over
    /// one session to the server end, which sends it to --forward from a
    /// socket per flow. --transport link, plain or typhoon; both ends need it.
    #[arg(long)]
    pub udp: bool,
    /// --udp: forget a flow with no datagram either way for this long
    /// [default: 60s]; a bare number is seconds.
    #[arg(long, value_name = "DURATION", value_parser = duration_or_secs)]
    pub flow_idle_timeout: Option<Duration>,
    /// --udp: most flows held at once [default: 4096]; a new flow beyond
    /// it evicts the least recently used.
    #[arg(long, value_name = "N")]
    pub max_flows: Option<usize>,
    /// v1: our X25519 secret key file (hex, base64 or 32 raw bytes).
    #[arg(long, value_name = "FILE")]
    pub v1_key: Option<PathBuf>,
    /// v1: the peer's X25519 public key file.
    #[arg(long, value_name = "FILE")]
    pub v1_peer: Option<PathBuf>,
    /// v1: largest frame data size accepted and sent (16 + plaintext; the
    /// first frame of a connection is held to 65552 whatever this says).
    #[arg(long, default_value_t = cipherlink_proxy::nacl_frame::DEFAULT_MAX_DATA_SIZE)]
    pub max_frame_size: u32,
    /// v1 between two cipherlink proxies: each direction is one nonce
    /// sequence, so frames spliced from another connection, deleted or
    /// reordered are refused. Both ends need it; PyNaCl peers cannot use it.
    #[arg(long)]
    pub v1_strict: bool,
    /// v1 server: drop a connection whose first authentic frame has not
    /// come within this time (nothing is connected onward before it);
    /// e.g. 10s or 500ms, a bare number is milliseconds.
    #[arg(
        long,
        alias = "v1-auth-timeout-ms",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = duration_or_ms
    )]
    pub v1_auth_timeout: Duration,
    /// plain: listen on an address other than loopback, although anyone who
    /// reaches it reads and changes the traffic and reaches the service.
    #[arg(long)]
    pub dangerous_plain_on_network: bool,
    /// link, server: the server key file (`cipherlink link keygen --key`).
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// link, server: the token store (`cipherlink link invite --tokens`);
    /// re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub link_tokens: Option<PathBuf>,
    /// link, client: the connection file `cipherlink link invite` issued.
    #[arg(long, value_name = "FILE")]
    pub link_file: Option<PathBuf>,
    /// port and typhoon, server: the server key file (`cipherlink link keygen
    /// --wire port|typhoon --key`, or SeasideVPN's conf.env with
    /// SEASIDE_PRIVATE_KEY=).
    #[arg(long, value_name = "FILE")]
    pub port_key: Option<PathBuf>,
    /// port and typhoon, server: the token store (`cipherlink link invite
    /// --wire port|typhoon --tokens`); re-read when it changes, a revoked
    /// token's tunnels (sessions) end.
    #[arg(long, value_name = "FILE")]
    pub port_tokens: Option<PathBuf>,
    /// port and typhoon, client: the connection file `cipherlink link invite
    /// --wire port|typhoon` issued (or one written for a SeasideVPN listener).
    #[arg(long, value_name = "FILE")]
    pub port_file: Option<PathBuf>,
    /// Most tunnels open at once (with --mux on a server: streams).
    #[arg(long, default_value_t = 16_384)]
    pub max_connections: usize,
    /// tls and link: carry the tunnels as streams over one long-lived
    /// encrypted connection (docs/mux.md), so a new tunnel costs no
    /// handshake. Both ends need it.
    #[arg(long)]
    pub mux: bool,
    /// Close a tunnel with no byte either way for this long (0 = never);
    /// e.g. 1h or 90s, a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_or_secs)]
    pub idle_timeout: Duration,
    /// Time limit for connecting onward; e.g. 10s or 500ms, a bare number
    /// is milliseconds.
    #[arg(
        long,
        alias = "connect-timeout-ms",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = duration_or_ms
    )]
    pub connect_timeout: Duration,
    /// Bytes read at once per direction.
    #[arg(long, default_value_t = cipherlink_proxy::config::DEFAULT_BUFFER_SIZE)]
    pub buffer_size: usize,
    /// Log a stats line this often when something changed (0 = never);
    /// e.g. 10s, a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration_or_secs)]
    pub stats: Duration,
    /// On Ctrl-C or SIGTERM, let open tunnels go on this long before they
    /// are cut (a second Ctrl-C exits at once); a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_or_secs)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `proxy server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The plaintext service to forward to (host:port; with --udp a UDP
    /// service, resolved once at start).
    #[arg(long)]
    pub forward: String,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub server: ServerTlsArgs,
}

/// `proxy client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The proxy server to connect to (host:port); with --transport link,
    /// port or typhoon, defaults to the connection file's server.
    #[arg(long)]
    pub connect: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub client: ClientTlsArgs,
}

/// `proxy run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The proxy configuration (TOML, `[service.NAME]` tables).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Overrides the file's `stats_interval`; e.g. 10s, a bare number is seconds.
    #[arg(long, value_name = "DURATION", value_parser = duration_or_secs)]
    pub stats: Option<Duration>,
}

/// `proxy keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Which transport the keys are for (only v1 has its own keys; tls uses `cipherlink certs`).
    #[arg(long)]
    pub transport: Transport,
    /// Folder to write NAME.key and NAME.pub into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem.
    #[arg(long, default_value = "v1")]
    pub name: String,
    /// Replace NAME.key and NAME.pub if they exist (the old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Runs the chosen subcommand.
pub async fn run(args: ProxyArgs) -> Result<()> {
    match args.command {
        ProxyCommand::Server(server) => {
            let mut tls = server.common.tls.to_config()?;
            server.server.apply(&mut tls);
            let fields = server.server.fields();
            let config = single(Role::Server, &server.common, server.forward, tls, fields)?;
            serve(config).await
        }
        ProxyCommand::Client(client) => {
            let mut tls = client.common.tls.to_config()?;
            client.client.apply(&mut tls);
            let connect = match (client.connect, client.common.transport) {
                (Some(connect), _) => connect,
                // Empty: the service takes the connection file's server.
                (None, Transport::Link | Transport::Port | Transport::Typhoon) => String::new(),
                (None, _) => anyhow::bail!("--connect HOST:PORT is required"),
            };
            let fields = client.client.fields();
            let config = single(Role::Client, &client.common, connect, tls, fields)?;
            serve(config).await
        }
        ProxyCommand::Run(run) => {
            let mut config = ProxyConfig::from_toml_file(&run.config)?;
            if let Some(stats) = run.stats {
                config.stats_interval = stats;
            }
            serve(config).await
        }
        ProxyCommand::Keygen(keygen) => {
            if keygen.transport != Transport::V1 {
                anyhow::bail!(
                    "--transport {}: only v1 has its own keys here; for tls use `cipherlink certs \
                     --out DIR`, for link `cipherlink link keygen`, for port `cipherlink link \
                     keygen --wire port`",
                    keygen.transport.name()
                );
            }
            use cipherlink_proxy::nacl_frame::keys::{write_key_pair, Existing};
            let existing = if keygen.force {
                Existing::Replace
            } else {
                Existing::Refuse
            };
            let (secret, public) = write_key_pair(&keygen.out, &keygen.name, existing)
                .with_context(|| {
                    format!(
                        "writing the v1 key pair {} into {}{}",
                        keygen.name,
                        keygen.out.display(),
                        if keygen.force {
                            ""
                        } else {
                            " (--force replaces an existing pair)"
                        }
                    )
                })?;
            println!("wrote {} (secret: keep it private)", secret.display());
            println!("wrote {} (public: give it to the peer)", public.display());
            Ok(())
        }
    }
}

/// One service from flags, checked as the TOML form would be.
fn single(
    role: Role,
    common: &CommonArgs,
    connect: String,
    tls: cipherlink::Config,
    fields: Vec<&'static str>,
) -> Result<ProxyConfig> {
    let mut service =
        ServiceConfig::new(role, common.listen.to_string(), connect, common.transport);
    service.max_connections = common.max_connections;
    service.idle_timeout = common.idle_timeout;
    service.connect_timeout = common.connect_timeout;
    service.buffer_size = common.buffer_size;
    service.mux = common.mux;
    service.dangerous.plain_on_network = common.dangerous_plain_on_network;
    udp_flags(common, &mut service)?;
    match common.transport {
        Transport::Tls => {
            // The same checks as `serve`/`connect`, naming the flag at fault.
            let core_role = match role {
                Role::Server => cipherlink::Role::Server,
                Role::Client => cipherlink::Role::Client,
            };
            let origin = common.tls.origin().with(fields);
            build_context(core_role, &tls, &origin)?;
            service.tls = Some(tls);
        }
        Transport::V1 => {
            let (Some(key), Some(peer)) = (&common.v1_key, &common.v1_peer) else {
                anyhow::bail!(
                    "--transport v1 needs --v1-key (our secret key) and --v1-peer (the peer's \
                     public key); make them with `cipherlink proxy keygen --transport v1 --out DIR`"
                );
            };
            let mut v1 = V1Config::new(key, peer);
            v1.max_frame_size = common.max_frame_size;
            v1.strict = common.v1_strict;
            v1.auth_timeout = common.v1_auth_timeout;
            service.v1 = Some(v1);
        }
        Transport::Link => {
            let link = match role {
                Role::Server => {
                    let (Some(key), Some(tokens)) = (&common.link_key, &common.link_tokens) else {
                        anyhow::bail!(
                            "--transport link on a server needs --link-key (`cipherlink link \
                             keygen --key FILE`) and --link-tokens (the store `cipherlink link \
                             invite --tokens FILE` writes)"
                        );
                    };
                    LinkConfig {
                        server_key: Some(key.clone()),
                        token_store: Some(tokens.clone()),
                        connection_file: None,
                    }
                }
                Role::Client => {
                    let Some(file) = &common.link_file else {
                        anyhow::bail!(
                            "--transport link on a client needs --link-file (the connection \
                             file `cipherlink link invite` issued)"
                        );
                    };
                    LinkConfig {
                        server_key: None,
                        token_store: None,
                        connection_file: Some(file.clone()),
                    }
                }
            };
            service.link = Some(link);
        }
        Transport::Port | Transport::Typhoon => {
            // A policy PORT (and TYPHOON, the same key exchange) cannot
            // meet is refused, not ignored.
            if let Some((setting, reason)) = cipherlink_proxy::port::unmet_policy(&tls.compliance) {
                let flag = if setting == "classical" {
                    "--classical"
                } else {
                    "--post-quantum"
                };
                let reason = match common.transport {
                    Transport::Typhoon => reason.replace("transport port", "transport typhoon"),
                    _ => reason,
                };
                anyhow::bail!("{flag} {reason}");
            }
            service.port = Some(port_files(role, common)?);
        }
        _ => {}
    }
    if let Some(flag) = misplaced(role, common) {
        anyhow::bail!(
            "{flag} does not apply to a {} with --transport {}",
            match role {
                Role::Server => "server",
                Role::Client => "client",
            },
            common.transport.name()
        );
    }
    let name = match role {
        Role::Server => "server",
        Role::Client => "client",
    };
    let mut config = ProxyConfig {
        stats_interval: common.stats,
        shutdown_grace: common.shutdown_grace,
        ..ProxyConfig::default()
    };
    config.service.insert(name.to_string(), service);
    Ok(config)
}

/// A transport's file flag given to another transport or role.
fn misplaced(role: Role, common: &CommonArgs) -> Option<&'static str> {
    let link = match (common.transport, role) {
        (Transport::Link, Role::Server) => common.link_file.as_ref().map(|_| "--link-file"),
        (Transport::Link, Role::Client) => common
            .link_key
            .as_ref()
            .map(|_| "--link-key")
            .or(common.link_tokens.as_ref().map(|_| "--link-tokens")),
        _ => common
            .link_key
            .as_ref()
            .or(common.link_tokens.as_ref())
            .or(common.link_file.as_ref())
            .map(|_| "--link-*"),
    };
    let port = match (common.transport, role) {
        (Transport::Port | Transport::Typhoon, Role::Server) => {
            common.port_file.as_ref().map(|_| "--port-file")
        }
        (Transport::Port | Transport::Typhoon, Role::Client) => common
            .port_key
            .as_ref()
            .map(|_| "--port-key")
            .or(common.port_tokens.as_ref().map(|_| "--port-tokens")),
        _ => common
            .port_key
            .as_ref()
            .or(common.port_tokens.as_ref())
            .or(common.port_file.as_ref())
            .map(|_| "--port-*"),
    };
    link.or(port)
        .or((common.v1_strict && common.transport != Transport::V1).then_some("--v1-strict"))
}

/// The port (and typhoon) transport's files from flags, as the link
/// transport's.
fn port_files(role: Role, common: &CommonArgs) -> Result<PortConfig> {
    let wire = common.transport.name();
    Ok(match role {
        Role::Server => {
            let (Some(key), Some(tokens)) = (&common.port_key, &common.port_tokens) else {
                anyhow::bail!(
                    "--transport {wire} on a server needs --port-key (`cipherlink link keygen \
                     --wire {wire} --key FILE`) and --port-tokens (the store `cipherlink link \
                     invite --wire {wire} --tokens FILE` writes)"
                );
            };
            PortConfig {
                server_key: Some(key.clone()),
                token_store: Some(tokens.clone()),
                connection_file: None,
            }
        }
        Role::Client => {
            let Some(file) = &common.port_file else {
                anyhow::bail!(
                    "--transport {wire} on a client needs --port-file (the connection file \
                     `cipherlink link invite --wire {wire}` issued)"
                );
            };
            PortConfig {
                connection_file: Some(file.clone()),
                ..PortConfig::default()
            }
        }
    })
}

/// The --udp flags: a transport that carries datagrams, and the flow
/// limits only with --udp.
fn udp_flags(common: &CommonArgs, service: &mut ServiceConfig) -> Result<()> {
    if !common.udp {
        if common.transport == Transport::Typhoon {
            anyhow::bail!("--transport typhoon carries datagrams: add --udp (a UDP service)");
        }
        for (set, flag) in [
            (common.flow_idle_timeout.is_some(), "--flow-idle-timeout"),
            (common.max_flows.is_some(), "--max-flows"),
        ] {
            if set {
                anyhow::bail!("{flag} applies to UDP services only: add --udp");
            }
        }
        return Ok(());
    }
    match common.transport {
        Transport::Plain | Transport::Typhoon | Transport::Link => {}
        other => anyhow::bail!(
            "--udp: transport {} carries streams, not datagrams; use --transport link, plain \
             or typhoon",
            other.name()
        ),
    }
    if common.mux {
        anyhow::bail!("--mux does not apply with --udp (one session carries every flow)");
    }
    service.udp = true;
    if let Some(idle) = common.flow_idle_timeout {
        service.flow_idle_timeout = idle;
    }
    if let Some(n) = common.max_flows {
        service.max_flows = n;
    }
    Ok(())
}

async fn serve(config: ProxyConfig) -> Result<()> {
    // Every connection is a descriptor, two for each tunnel; a link
    // server's admission caps are sized from this limit when it binds
    // (docs/link-protocol.md §6).
    match cipherlink_lab::fd_limit::raise() {
        Ok(l) if l.soft > l.soft_before => tracing::info!(
            "open-file limit raised from {} to {} (hard limit {})",
            l.soft_before,
            l.soft,
            l.hard
        ),
        Ok(l) => tracing::info!("open-file limit {} (hard limit {})", l.soft, l.hard),
        Err(e) => tracing::warn!("open-file limit not raised: {e}"),
    }
    let proxy = cipherlink_proxy::Proxy::bind(&config).await?;
    crate::shutdown::take_over();
    for (name, addr) in proxy.addrs() {
        let service = &config.service[&name];
        tracing::info!(
            "service {name}: {} {}{} listening on {addr}, connecting to {}",
            match service.role {
                Role::Server => "server",
                Role::Client => "client",
            },
            service.transport.name(),
            if service.udp { " (UDP)" } else { "" },
            if service.connect.is_empty() {
                "the connection file's server"
            } else {
                &service.connect
            }
        );
    }
    let grace = config.shutdown_grace;
    proxy
        .run(async move {
            crate::shutdown::requested().await;
            tracing::info!(
                "stopping: no new tunnels; open ones may go on for up to {} \
                 (interrupt again to exit now)",
                cipherlink::duration::display(grace)
            );
        })
        .await;
    tracing::info!("proxy stopped");
    Ok(())
}
