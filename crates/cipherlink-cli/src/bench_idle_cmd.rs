//! `cipherlink bench idle`: a server's memory per idle connection.

use crate::output::report;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::{Implementation, PemSource};
use cipherlink_lab::bench_idle::{
    self, ChildSpec, IdleBenchOptions, IdleEvent, IdleMode, IdleObserver, IdleReport, IdleServer,
};
use cipherlink_lab::format::thousands;
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
    /// The TLS implementation of the spawned `serve` (rustls or openssl).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "rustls",
        conflicts_with = "target"
    )]
    pub implementation: Implementation,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Write the report as JSON to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Internal: be the plain-TCP baseline server on this address.
    #[arg(long, hide = true, value_name = "ADDR")]
    pub serve_plain: Option<SocketAddr>,
}

/// Runs the benchmark (or, with the hidden --serve-plain, its plain server).
pub async fn run(args: BenchIdleArgs) -> Result<()> {
    crate::output::json_destination(args.json.as_deref());
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
            let implementation = args.implementation.name();
            IdleServer::Spawn(Arc::new(move |spec: &ChildSpec<'_>| {
                let mut command = Command::new(&exe);
                match spec.mode {
                    // serve's defaults, as a user would start it: the point
                    // is that they hold this many idle clients.
                    IdleMode::Tls => command
                        .args(["serve", "--listen", "127.0.0.1:0", "--echo"])
                        .args(["--implementation", implementation, "--cert"])
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
        observer: progress_bar(),
    };
    let report = bench_idle::run(&options).await?;
    print_report(&report);
    crate::json_report::write(args.json.as_deref(), &report)?;
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

/// A progress bar on stderr while each mode's connections open, when
/// stderr is a terminal (`None` otherwise).
fn progress_bar() -> Option<IdleObserver> {
    use std::io::IsTerminal;
    use std::sync::{Mutex, PoisonError};

    use indicatif::{ProgressBar, ProgressStyle};

    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    Some(IdleObserver::new(move |event: &IdleEvent| {
        let mut bar = bar.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            IdleEvent::Opening { mode, total } => {
                let new = ProgressBar::new(*total as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg} {wide_bar} {pos}/{len} connections ({per_sec})",
                ) {
                    new.set_style(style);
                }
                new.set_message(format!("opening {mode}"));
                new.enable_steady_tick(Duration::from_millis(100));
                *bar = Some(new);
            }
            IdleEvent::Tried => {
                if let Some(bar) = bar.as_ref() {
                    bar.inc(1);
                }
            }
            IdleEvent::Opened => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
            }
            // Printed with the report.
            _ => {}
        }
    }))
}

/// The report as a table, with the limits the run honoured and its warnings.
fn print_report(report: &IdleReport) {
    for note in &report.limits {
        report!("limit: {note}");
    }
    report!(
        "\nserver memory per idle connection (VmRSS after - before, / connections); \
         client open-file limit {} (hard {})",
        report.client_fd_limit.soft,
        report.client_fd_limit.hard
    );
    report!(
        "{:<6} {:<34} {:>8} {:>7} {:>8} {:>7} {:>11} {:>11} {:>11}",
        "mode",
        "server",
        "opened",
        "failed",
        "open",
        "open s",
        "rss before",
        "rss after",
        "bytes/conn"
    );
    for case in &report.cases {
        report!(
            "{:<6} {:<34} {:>8} {:>7} {:>8} {:>7.1} {:>11} {:>11} {:>11}",
            case.mode.to_string(),
            format!("{} ({})", case.server, bench_idle::pids_text(&case.pids)),
            thousands(case.opened as u64),
            case.failed,
            thousands(case.still_open as u64),
            case.open_seconds,
            format!("{} KB", thousands(case.rss_before_bytes / 1024)),
            format!("{} KB", thousands(case.rss_after_bytes / 1024)),
            case.bytes_per_connection
                .map_or("-".into(), |b| thousands(b.max(0.0) as u64)),
        );
        if let Some(err) = &case.first_error {
            report!("    first error: {err}");
        }
        if case.still_open < case.opened {
            report!(
                "    WARNING: the server closed {} of the idle connections",
                case.opened - case.still_open
            );
        }
    }
    if let Some(extra) = report.tls_over_plain() {
        report!(
            "TLS costs {} bytes per idle connection more than plain TCP",
            thousands(extra.max(0.0) as u64)
        );
    }
}
