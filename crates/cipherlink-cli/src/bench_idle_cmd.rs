//! `cipherlink bench idle`: a server's memory per idle connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::PemSource;
use cipherlink_lab::bench_idle::{self, ChildSpec, IdleBenchOptions, IdleMode, IdleServer};
use clap::Args;

/// `bench idle` options.
#[derive(Debug, Args)]
pub struct BenchIdleArgs {
    /// Idle connections to open per mode.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Modes, comma-separated: tls, plain (default: both; tls with --target).
    #[arg(long, value_delimiter = ',')]
    pub mode: Option<Vec<IdleMode>>,
    /// Measure this running server instead of spawning `cipherlink serve`.
    #[arg(long, value_name = "ADDR", requires = "pid")]
    pub target: Option<SocketAddr>,
    /// With --target: the PIDs whose memory is summed (e.g. nginx's workers), comma-separated.
    #[arg(long, value_delimiter = ',', requires = "target")]
    pub pid: Vec<u32>,
    /// With --target: the CA that signed its certificate.
    #[arg(long, value_name = "FILE", requires = "target")]
    pub ca: Option<PathBuf>,
    /// With --target: the server name to verify (default: its address).
    #[arg(long, requires = "target")]
    pub server_name: Option<String>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Internal: be the plain-TCP baseline server on this address.
    #[arg(long, hide = true, value_name = "ADDR")]
    pub serve_plain: Option<SocketAddr>,
}

/// Runs the benchmark (or, with the hidden --serve-plain, its plain server).
pub async fn run(args: BenchIdleArgs) -> Result<()> {
    if let Some(addr) = args.serve_plain {
        return serve_plain(addr).await;
    }
    if args.connections == 0 {
        anyhow::bail!("--connections must be at least 1");
    }
    let server = match args.target {
        Some(addr) => IdleServer::Target {
            addr,
            pids: args.pid,
            ca: args.ca.map(PemSource::path),
            server_name: args.server_name,
        },
        None => {
            let exe = std::env::current_exe().context("finding this program to run `serve`")?;
            IdleServer::Spawn(Arc::new(move |spec: &ChildSpec<'_>| {
                let mut command = Command::new(&exe);
                match spec.mode {
                    // serve's defaults, as a user would start it: the point
                    // is that they hold this many idle clients.
                    IdleMode::Tls => command
                        .args(["serve", "--listen", "127.0.0.1:0", "--echo", "--cert"])
                        .arg(spec.cert)
                        .arg("--key")
                        .arg(spec.key),
                    IdleMode::Plain => {
                        command.args(["bench", "idle", "--serve-plain", "127.0.0.1:0"])
                    }
                };
                command
            }))
        }
    };
    let modes = args.mode.unwrap_or_else(|| match &server {
        IdleServer::Target { .. } => vec![IdleMode::Tls],
        IdleServer::Spawn(_) => vec![IdleMode::Tls, IdleMode::Plain],
    });
    let options = IdleBenchOptions {
        connections: args.connections,
        modes,
        server,
        concurrency: args.concurrency,
        progress: true,
    };
    let report = bench_idle::run(&options).await?;
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn serve_plain(addr: SocketAddr) -> Result<()> {
    let fds = cipherlink_lab::fd_limit::raise().context("raising the open-file limit")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        "serving plain TCP on {addr}; holds up to {} connections",
        fds.connections()
    );
    // serve's default idle timeout.
    bench_idle::plain::serve(listener, fds.connections(), Duration::from_secs(300)).await;
    Ok(())
}
