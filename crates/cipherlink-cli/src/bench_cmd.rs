//! `cipherlink bench ...`: benchmarks that print numbers and write JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::certs::KeyAlgorithm;
use cipherlink::{Implementation, KeyExchange, PemSource};
use cipherlink_lab::bench_conn::{self, ConnBenchOptions, Exchange, Mode, Target};
use clap::{Args, Subcommand};

/// Benchmarks.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// Which benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Connections per second: connect, handshake, PING/PONG, close.
    Conn(ConnArgs),
    /// Proxy pairs per transport against stunnel, HAProxy, shadowsocks, spiped and obfs4: conns/s, MB/s, CPU and idle memory per tunnel.
    Proxy(crate::bench_proxy_cmd::BenchProxyArgs),
    /// Pool messages/s and round trips between two parties (Rust, and Python when installed).
    Pool(crate::bench_pool_cmd::BenchPoolArgs),
    /// A server's memory per idle connection (TLS and plain TCP), in its own process.
    Idle(crate::bench_idle_cmd::BenchIdleArgs),
    /// The link protocol against TLS: handshakes/s and CPU per handshake, throughput, record overhead, idle memory.
    Link(crate::bench_link_cmd::BenchLinkArgs),
    /// Datagram transports (plain UDP, TYPHOON, the link's datagram mode) beside WireGuard: handshakes/s, datagrams/s, added latency, idle memory.
    Datagram(crate::bench_datagram_cmd::BenchDatagramArgs),
}

/// `bench conn` options.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Modes to run, comma-separated: plain, tls, tls-resume.
    #[arg(long, default_value = "plain,tls,tls-resume", value_delimiter = ',')]
    pub mode: Vec<Mode>,
    /// Groups for the TLS modes, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "X25519MLKEM768,X25519,P-256"
    )]
    pub groups: Vec<KeyExchange>,
    /// TLS implementations, comma-separated (rustls, openssl): each group
    /// runs on each, client and server on the same one, side by side.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "rustls"
    )]
    pub implementation: Vec<Implementation>,
    /// Turn off the clients' verified-chain cache, so every handshake
    /// verifies the whole chain (the floor then counts both verifications).
    #[arg(long)]
    pub no_chain_cache: bool,
    /// Connections per case (default: run for --duration).
    #[arg(long)]
    pub connections: Option<u64>,
    /// Time per case (a bare number is seconds).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    pub duration: Duration,
    /// Connections in flight at once (1: one after another, as Sandwich's benchmark).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Print a line every N connections (0 = none).
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
    /// Certificate key algorithm of the in-process server.
    #[arg(long, default_value = "p256")]
    pub cert_algorithm: KeyAlgorithm,
    /// Benchmark this TLS server instead of the in-process one (e.g. openssl s_server).
    #[arg(long, value_name = "ADDR")]
    pub target: Option<SocketAddr>,
    /// With --target: the CA that signed its certificate.
    #[arg(long, value_name = "FILE", requires = "target")]
    pub ca: Option<PathBuf>,
    /// With --target: the server name to verify.
    #[arg(long, requires = "target")]
    pub server_name: Option<String>,
    /// With --target: what to do after the handshake: none, echo, pingpong.
    #[arg(long, default_value = "none")]
    pub exchange: Exchange,
    /// Write the full report as JSON to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs the chosen benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Conn(conn) => run_conn(conn).await,
        BenchCommand::Proxy(proxy) => crate::bench_proxy_cmd::run(proxy).await,
        BenchCommand::Pool(pool) => crate::bench_pool_cmd::run(pool).await,
        BenchCommand::Idle(idle) => crate::bench_idle_cmd::run(idle).await,
        BenchCommand::Link(link) => crate::bench_link_cmd::run(link).await,
        BenchCommand::Datagram(d) => crate::bench_datagram_cmd::run(d).await,
    }
}

async fn run_conn(args: ConnArgs) -> Result<()> {
    crate::output::json_destination(args.json.as_deref());
    if args.duration.is_zero() {
        anyhow::bail!("--duration must be more than 0");
    }
    let target = match args.target {
        Some(addr) => Some(Target {
            addr,
            ca: PemSource::path(
                args.ca
                    .context("--target needs --ca: the CA that signed the server's certificate")?,
            ),
            server_name: args.server_name,
        }),
        None => None,
    };
    let options = ConnBenchOptions {
        modes: args.mode,
        groups: args.groups,
        implementations: args.implementation,
        connections: args.connections,
        duration: args.duration,
        concurrency: args.concurrency,
        batch: args.batch,
        target,
        exchange: args.exchange,
        cert_algorithm: args.cert_algorithm,
        observer: Some(crate::bench_conn_print::observer(args.cert_algorithm)),
        chain_cache: !args.no_chain_cache,
    };
    let report = bench_conn::run(&options).await?;
    crate::bench_conn_print::print_table(&report);
    crate::bench_conn_print::print_group_ratios(&report);
    crate::bench_conn_print::print_implementation_ratios(&report);
    crate::json_report::write(args.json.as_deref(), &report)?;
    Ok(())
}
