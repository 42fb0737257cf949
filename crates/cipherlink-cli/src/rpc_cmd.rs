//! `cipherlink rpc`: the gRPC latency lab (serve, steady, coldconn), a Rust
//! port of the original Python grpcio suite.
//!
//! Flags speak the other commands' vocabulary (`--listen`, `--connect`,
//! `--cert`, durations with units); each also reads the suite's
//! environment variable (`DF_HOST DF_PORT DELAY_MS N_RPS T_DURATION_SEC
//! T_WARMUP_SEC TLS_CA TLS_CERT TLS_KEY ...`), from the environment or a
//! `.env` file, with the same meaning, and flags override both.

mod args;
mod progress;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_rpc::client::coldconn::{run_coldconn, ColdOptions};
use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::client::findmax::{find_max, FindMaxOptions, Step};
use cipherlink_rpc::client::progress::SteadyProgress;
use cipherlink_rpc::client::steady::{run_steady_reporting, SteadyOptions, SteadyReport};
use cipherlink_rpc::record;
use cipherlink_rpc::server::{BoundServer, ServerOptions};
use cipherlink_rpc::summary::report::latency_line;
use cipherlink_rpc::timer::Timer;
use cipherlink_rpc::tls::{self, ClientTls, ServerTls};
use clap::{Args, Subcommand};

use args::{ClientArgs, ColdArgs, RpcTlsArgs, ServeArgs, SteadyArgs};

/// What `.env` loading found, announced when an `rpc` command starts.
static DOTENV: std::sync::OnceLock<cipherlink_rpc::env::DotEnv> = std::sync::OnceLock::new();

/// Loads `./.env` into the environment; call before parsing flags.
pub fn load_dotenv() {
    let loaded = cipherlink_rpc::env::load_dotenv();
    if let Some(path) = &loaded.path {
        tracing::debug!("read {}", path.display());
    }
    let _ = DOTENV.set(loaded);
}

/// Says on stderr which settings from the environment or `.env` weaken
/// certificate verification, so none is in force unseen.
fn announce_weakening() {
    for weakening in DOTENV
        .get()
        .map(|d| d.weakening.as_slice())
        .unwrap_or_default()
    {
        eprintln!("warning: {weakening}");
    }
}

/// `cipherlink rpc ...`
#[derive(Debug, Args)]
pub struct RpcArgs {
    #[command(subcommand)]
    command: RpcCommand,
}

#[derive(Debug, Subcommand)]
enum RpcCommand {
    /// Serve score.ScoreService/GetScore with an artificial delay.
    Serve(ServeArgs),
    /// Fixed-rate open-loop load over one HTTP/2 channel: latency per request.
    Steady(SteadyArgs),
    /// A new secure channel per attempt: connect and first-call times.
    Coldconn(ColdArgs),
}

/// Runs `cipherlink rpc ...`.
pub async fn run(args: RpcArgs) -> Result<()> {
    announce_weakening();
    let (command, result) = match args.command {
        // The accept loop needs one thread; the server starts its own.
        RpcCommand::Serve(a) => ("serve", on_runtime(move || serve(a)).await),
        // One thread for the whole client (scheduler, requests and the
        // connection task): no hand-offs between threads on the request
        // path, and the other cores stay free for the server.
        RpcCommand::Steady(a) => ("steady", on_runtime(move || steady(a)).await),
        RpcCommand::Coldconn(a) => ("coldconn", on_runtime(move || coldconn(a)).await),
    };
    result.map_err(|err| name_flags(command, &err))
}

/// The flag (and environment variable) behind each field that the rpc
/// library (or the core, in its TOML spelling) names in its messages as
/// `field`, by subcommand (`None`: all): the libraries name their options,
/// the user typed flags.
const FIELD_FLAGS: [(Option<&str>, &str, &str); 19] = [
    (
        None,
        "accept_legacy_certificates",
        "--dangerous-accept-legacy-certs (or env TLS_LEGACY_CN=1)",
    ),
    (
        None,
        "dangerous.accept_legacy_certificates",
        "--dangerous-accept-legacy-certs (or env TLS_LEGACY_CN=1)",
    ),
    (
        None,
        "accept_cn_only_certificates",
        "--dangerous-accept-cn-only (or env TLS_LEGACY_CN=1)",
    ),
    (
        None,
        "dangerous.accept_cn_only_certificates",
        "--dangerous-accept-cn-only (or env TLS_LEGACY_CN=1)",
    ),
    (None, "cert", "--cert (env TLS_CERT)"),
    (None, "certificate", "--cert (env TLS_CERT)"),
    (None, "key", "--key (env TLS_KEY)"),
    (None, "private_key", "--key (env TLS_KEY)"),
    (None, "ca", "--ca (env TLS_CA)"),
    (None, "trusted_cas", "--ca (env TLS_CA)"),
    (None, "groups", "--groups (env TLS_GROUPS)"),
    (None, "key_exchange", "--groups (env TLS_GROUPS)"),
    (None, "server_name", "--server-name (env TLS_SERVER_NAME)"),
    (None, "duration", "--duration (env T_DURATION_SEC)"),
    (None, "deadline", "--deadline"),
    (Some("steady"), "rate", "--rps (env N_RPS)"),
    (Some("steady"), "max_outstanding", "--max-outstanding"),
    (
        Some("steady"),
        "growth",
        "--find-max (with --start-rps and --max-rps)",
    ),
    (Some("coldconn"), "rate", "--rate"),
];

/// `err` with every field the table knows replaced by its flag.
fn name_flags(command: &str, err: &anyhow::Error) -> anyhow::Error {
    let mut text = format!("{err:#}");
    for (only, field, flag) in FIELD_FLAGS {
        if only.is_none_or(|only| only == command) {
            text = text.replace(&format!("`{field}`"), flag);
        }
    }
    anyhow::anyhow!(text)
}

/// Runs `make()` on a single-threaded runtime of its own thread.
async fn on_runtime<F, Fut>(make: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(make())
    })
    .await
    .context("the runtime thread failed")?
}

fn timer(tokio_timer: bool) -> Timer {
    if tokio_timer {
        Timer::Tokio
    } else {
        Timer::precise()
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
    let listen = a.listen_addr()?;
    let tls = if a.tls.plaintext {
        warn_ignored(&a.tls);
        None
    } else {
        let (Some(cert), Some(key)) = (a.tls.cert.clone(), a.tls.key.clone()) else {
            bail!(
                "a TLS server needs --cert and --key (env TLS_CERT, TLS_KEY); \
                 pass --plaintext for plaintext HTTP/2"
            );
        };
        Some(tls::server_config(&ServerTls {
            cert,
            key,
            client_ca: a.tls.ca.clone(),
            accept_legacy_certificates: a.tls.accept_legacy_certificates(),
            groups: a.tls.groups.clone(),
        })?)
    };
    let mode = match (&tls, &a.tls.ca) {
        (None, _) => "plaintext",
        (Some(_), None) => "TLS 1.3, server auth",
        (Some(_), Some(_)) => "TLS 1.3, mutual auth",
    };
    let mut opts = ServerOptions::new(listen, a.delay, tls);
    opts.precise_timer = !a.tokio_timer;
    opts.max_request_bytes = a.max_request_bytes;
    opts.max_concurrent_streams = a.max_streams;
    opts.max_connections = a.max_connections;
    opts.idle_timeout = (!a.idle_timeout.is_zero()).then_some(a.idle_timeout);
    opts.threads = a.threads;
    let server = BoundServer::bind(opts).await?;
    let addr = server.local_addr()?;
    // One write: scripts and tests read the address from this line, and
    // eprintln! writes a line in pieces.
    let line = format!("ScoreService on {addr} ({mode}, delay {:?})\n", a.delay);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    server
        .run(async {
            crate::shutdown::requested().await;
        })
        .await?;
    Ok(())
}

fn warn_ignored(t: &RpcTlsArgs) {
    if t.any_file() {
        tracing::warn!("--plaintext: ignoring --ca, --cert and --key (TLS_CA, TLS_CERT, TLS_KEY)");
    }
}

async fn connector(c: &ClientArgs, resumption: bool) -> Result<Connector> {
    let tls = if c.tls.plaintext {
        warn_ignored(&c.tls);
        None
    } else {
        let Some(ca) = c.tls.ca.clone() else {
            bail!(
                "a TLS client needs --ca (env TLS_CA) to verify the server; \
                 pass --plaintext for plaintext HTTP/2"
            );
        };
        let identity = match (c.tls.cert.clone(), c.tls.key.clone()) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("mutual TLS needs both --cert and --key (env TLS_CERT, TLS_KEY)"),
        };
        Some(tls::client_config(&ClientTls {
            ca,
            identity,
            accept_legacy_certificates: c.tls.accept_legacy_certificates(),
            accept_cn_only_certificates: c.accept_cn_only_certificates(),
            resumption,
            groups: c.tls.groups.clone(),
        })?)
    };
    let server = c.server();
    Ok(Connector::resolve(&Target {
        host: server.host,
        port: server.port,
        tls,
        server_name: c.server_name.clone(),
        connect_timeout: Duration::from_secs(10),
    })
    .await?)
}

fn print_steady(r: &SteadyReport) {
    println!(
        "rate: target {:.0}/s, achieved {:.0}/s, max issue lag {:.3} ms",
        r.target_rps,
        r.achieved_rps,
        r.max_issue_lag.as_secs_f64() * 1e3
    );
    let ok = r.latencies.len();
    println!(
        "requests: {} ok {} ({:.2}%){}",
        r.total,
        ok,
        if r.total == 0 {
            0.0
        } else {
            100.0 * ok as f64 / r.total as f64
        },
        if r.errors.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!(", errors: {}", list.join(", "))
        }
    );
    println!("latency: {}", latency_line(&r.latencies));
    if r.achieved_rps < 0.97 * r.target_rps {
        println!(
            "warning: the client did not reach the target rate; it, not the server, is the limit"
        );
    }
}

async fn steady(a: SteadyArgs) -> Result<()> {
    let connector = connector(&a.client, true).await?;
    let opts = SteadyOptions {
        rate: a.rps,
        duration: a.duration,
        warmup: a.warmup,
        deadline: a.client.deadline,
        max_outstanding: a.max_outstanding,
        payload: a.client.payload.clone(),
    };
    opts.validate()?;
    let timer = timer(a.client.tokio_timer);
    if a.find_max {
        return find_max_rate(&a, &connector, &opts, &timer).await;
    }
    let channel = connector.channel().await?;
    let progress = Arc::new(SteadyProgress::default());
    eprintln!(
        "steady: {}/s for {:?} after {:?} of warm-up, to {}",
        a.rps,
        a.duration,
        a.warmup,
        connector.label()
    );
    let display = progress::Display::start(progress.clone());
    let run = run_steady_reporting(channel, &opts, &timer, &progress).await;
    drop(display);
    let run = run?;
    record::write_steady(&a.out, &run.outcomes)?;
    print_steady(&run.report);
    println!("results: {}", a.out.display());
    Ok(())
}

/// `steady --find-max`: a line on stdout per step, progress on stderr.
async fn find_max_rate(
    a: &SteadyArgs,
    connector: &Connector,
    opts: &SteadyOptions,
    timer: &Timer,
) -> Result<()> {
    let channel = connector.channel().await?;
    let progress = Arc::new(SteadyProgress::default());
    let fm = FindMaxOptions {
        start_rps: a.start_rps,
        max_rps: a.max_rps,
        growth: 1.5,
        refine_steps: 4,
        p99_bound: a.p99_bound,
        max_error_rate: a.max_error_rate,
    };
    let display = progress::Display::start(progress.clone());
    let result = find_max(channel, opts, &fm, timer, &progress, |s: &Step| {
        display.println(&format!(
            "{:>9.0}/s achieved {:>9.0}/s  p50 {:.3} p99 {:.3} ms  errors {:.3}%  {}",
            s.report.target_rps,
            s.report.achieved_rps,
            s.report.latencies.percentile_ms(50.0),
            s.report.latencies.percentile_ms(99.0),
            100.0 * s.report.error_rate(),
            if s.passed { "pass" } else { "FAIL" }
        ));
    })
    .await;
    drop(display);
    match result?.best_rps {
        Some(best) => println!(
            "highest sustainable rate on one channel: {best:.0}/s (p99 <= {:?}, errors <= {}%)",
            a.p99_bound,
            100.0 * a.max_error_rate
        ),
        None => println!("no rate met the bounds; lower --start-rps"),
    }
    Ok(())
}

async fn coldconn(a: ColdArgs) -> Result<()> {
    let connector = connector(&a.client, a.resume).await?;
    let opts = ColdOptions {
        rate: a.rate,
        duration: a.duration,
        deadline: a.client.deadline,
        payload: a.client.payload.clone(),
        warmup_attempts: a.warmup_attempts,
    };
    eprintln!(
        "coldconn: {} attempts/s for {:?}, to {}",
        a.rate,
        a.duration,
        connector.label()
    );
    let outcomes = run_coldconn(&connector, &opts, &timer(a.client.tokio_timer)).await?;
    record::write_coldconn(&a.out, &outcomes)?;
    let file = cipherlink_rpc::summary::read(&a.out)?;
    print!(
        "{}",
        cipherlink_rpc::summary::render(&cipherlink_rpc::summary::summarize(&file))
    );
    println!("results: {}", a.out.display());
    Ok(())
}
