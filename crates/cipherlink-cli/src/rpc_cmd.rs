//! `cipherlink rpc`: the gRPC latency lab of seed 001 (serve, steady, coldconn).
//!
//! Settings follow the seed's environment variables (`DF_HOST DF_PORT
//! DELAY_MS N_RPS T_DURATION_SEC T_WARMUP_SEC TLS_CA TLS_CERT TLS_KEY`), read
//! from the environment and a `.env` file; flags override both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_rpc::client::coldconn::{run_coldconn, ColdOptions};
use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::client::findmax::{find_max, FindMaxOptions, Step};
use cipherlink_rpc::client::steady::{run_steady, SteadyOptions, SteadyReport};
use cipherlink_rpc::record;
use cipherlink_rpc::server::{BoundServer, ServerOptions};
use cipherlink_rpc::summary::report::latency_line;
use cipherlink_rpc::timer::Timer;
use cipherlink_rpc::tls::{self, ClientTls, KeyExchange, ServerTls};
use clap::{Args, Subcommand};

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
    /// Test 01_steady: fixed-rate open-loop load over one HTTP/2 channel.
    Steady(SteadyArgs),
    /// Test 02_coldconn: a new secure channel per attempt.
    Coldconn(ColdArgs),
}

/// The seed's TLS variables. For a server TLS_CA is the CA of its clients
/// (mutual TLS); for a client it is the CA of the server.
#[derive(Debug, Clone, Args)]
struct RpcTlsArgs {
    /// CA certificate (PEM). Server: require client certificates it signed.
    #[arg(long, env = "TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Our certificate (PEM). Client: present it (mutual TLS).
    #[arg(long, env = "TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Our private key (PEM).
    #[arg(long, env = "TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Accept the seed's openssl certificates (X.509 v1, host only in the
    /// CN, no subjectAltName) as gRPC's own TLS stack does. The chain is
    /// still verified (leaf signed directly by the CA).
    #[arg(
        long = "dangerous-legacy-cn-certs",
        alias = "legacy-cn-certs",
        env = "TLS_LEGACY_CN",
        // The seed writes TLS_LEGACY_CN=1: take 1/0, yes/no, on/off too.
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    legacy_cn_certs: bool,
    /// Key-exchange groups to offer / accept, most preferred first, e.g.
    /// `X25519` (classical) or `X25519MLKEM768` (hybrid post-quantum).
    #[arg(
        long,
        env = "TLS_GROUPS",
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "X25519MLKEM768,X25519,P-256,P-384"
    )]
    groups: Vec<KeyExchange>,
    /// Plaintext HTTP/2, no TLS at all (TLS_* are then ignored).
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DF_HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "DF_PORT", default_value_t = 50051)]
    port: u16,
    /// Artificial delay per call, in milliseconds (0 allowed).
    #[arg(long, env = "DELAY_MS", default_value_t = 5.0)]
    delay_ms: f64,
    #[command(flatten)]
    tls: RpcTlsArgs,
    /// Sleep on tokio's 1 ms timer wheel instead of the precise timer.
    #[arg(long)]
    tokio_timer: bool,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// HTTP/2 streams a client may have open at once. With
    /// --max-request-bytes it bounds what one connection can make the server
    /// buffer (1024 x 64 KiB = 64 MiB by default).
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_CONCURRENT_STREAMS)]
    max_streams: u32,
    /// Connections open at once, all threads together; more wait in the
    /// listen backlog.
    #[arg(long, default_value_t = cipherlink_rpc::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Close a connection after this many seconds without a byte either
    /// way (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = cipherlink_rpc::server::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// Server threads (0: one per core). Each runs whole connections, TLS
    /// handshake, HTTP/2 and handlers, so a connection never crosses threads;
    /// new connections are dealt to the threads in turn.
    #[arg(long, env = "RPC_THREADS", default_value_t = 0)]
    threads: usize,
}

#[derive(Debug, Clone, Args)]
struct ClientArgs {
    /// Server host name or address.
    #[arg(long, env = "DF_HOST", default_value = "localhost")]
    host: String,
    /// Server port.
    #[arg(long, env = "DF_PORT", default_value_t = 50051)]
    port: u16,
    /// Name to check in the server certificate (default: --host), like
    /// gRPC's ssl_target_name_override.
    #[arg(long, env = "TLS_SERVER_NAME")]
    server_name: Option<String>,
    #[command(flatten)]
    tls: RpcTlsArgs,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// The request's `json` field.
    #[arg(long, default_value = r#"{"vector":[0.12,0.34,0.56,0.78]}"#)]
    payload: String,
    /// Sleep on tokio's 1 ms timer wheel instead of the precise timer.
    #[arg(long)]
    tokio_timer: bool,
}

#[derive(Debug, Args)]
struct SteadyArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Requests per second.
    #[arg(long, env = "N_RPS", default_value_t = 500.0)]
    rps: f64,
    /// Recorded seconds.
    #[arg(long, env = "T_DURATION_SEC", default_value_t = 300.0)]
    duration_sec: f64,
    /// Unrecorded warm-up seconds before them.
    #[arg(long, env = "T_WARMUP_SEC", default_value_t = 30.0)]
    warmup_sec: f64,
    /// Requests in flight at most; beyond, they are recorded as RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 10_000)]
    max_outstanding: usize,
    /// Results file.
    #[arg(long, default_value = "01_steady_results.txt")]
    out: PathBuf,
    /// Search the highest rate that keeps p99 and errors within bounds
    /// (each step lasts --duration-sec after --warmup-sec; no file is written).
    #[arg(long)]
    find_max: bool,
    /// --find-max: p99 bound in milliseconds.
    #[arg(long, default_value_t = 5.0)]
    p99_bound_ms: f64,
    /// --find-max: largest failed fraction allowed.
    #[arg(long, default_value_t = 0.001)]
    max_error_rate: f64,
    /// --find-max: first rate.
    #[arg(long, default_value_t = 1000.0)]
    start_rps: f64,
    /// --find-max: highest rate tried.
    #[arg(long, default_value_t = 200_000.0)]
    max_rps: f64,
}

#[derive(Debug, Args)]
struct ColdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Attempts per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(long, env = "T_DURATION_SEC", default_value_t = 300.0)]
    duration_sec: f64,
    /// Unrecorded attempts before the run (the first connection of a process
    /// also pays one-time start-up costs).
    #[arg(long, default_value_t = 1)]
    warmup_attempts: u32,
    /// Allow TLS session resumption (then attempts after the first are not fully cold).
    #[arg(long)]
    resume: bool,
    /// Results file.
    #[arg(long, default_value = "02_coldconn_results.txt")]
    out: PathBuf,
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
/// library names in its messages as `field`, by subcommand (`None`: all):
/// the library names its options, the user typed flags.
const FIELD_FLAGS: [(Option<&str>, &str, &str); 12] = [
    (
        None,
        "accept_legacy",
        "--dangerous-legacy-cn-certs (env TLS_LEGACY_CN=1)",
    ),
    (None, "cert", "--tls-cert (env TLS_CERT)"),
    (None, "key", "--tls-key (env TLS_KEY)"),
    (None, "ca", "--tls-ca (env TLS_CA)"),
    (None, "groups", "--groups (env TLS_GROUPS)"),
    (None, "server_name", "--server-name (env TLS_SERVER_NAME)"),
    (None, "duration", "--duration-sec (env T_DURATION_SEC)"),
    (None, "deadline", "--deadline-ms"),
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

fn secs(value: f64, name: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{name}={value} is not a duration"))
}

fn timer(tokio_timer: bool) -> Timer {
    if tokio_timer {
        Timer::Tokio
    } else {
        Timer::precise()
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
    let delay = Duration::try_from_secs_f64(a.delay_ms / 1e3)
        .with_context(|| format!("DELAY_MS={} is not a delay", a.delay_ms))?;
    let ip: std::net::IpAddr = a
        .host
        .parse()
        .with_context(|| format!("DF_HOST={} is not an IP address to listen on", a.host))?;
    let tls = if a.tls.insecure {
        warn_ignored(&a.tls);
        None
    } else {
        let (Some(cert), Some(key)) = (a.tls.tls_cert.clone(), a.tls.tls_key.clone()) else {
            bail!("a TLS server needs TLS_CERT and TLS_KEY (or --tls-cert/--tls-key); pass --insecure for plaintext");
        };
        Some(tls::server_config(&ServerTls {
            cert,
            key,
            client_ca: a.tls.tls_ca.clone(),
            accept_legacy: a.tls.legacy_cn_certs,
            groups: a.tls.groups.clone(),
        })?)
    };
    let mode = match (&tls, &a.tls.tls_ca) {
        (None, _) => "plaintext (--insecure)",
        (Some(_), None) => "TLS 1.3, server auth",
        (Some(_), Some(_)) => "TLS 1.3, mutual auth",
    };
    let mut opts = ServerOptions::new(SocketAddr::new(ip, a.port), delay, tls);
    opts.precise_timer = !a.tokio_timer;
    opts.max_request_bytes = a.max_request_bytes;
    opts.max_concurrent_streams = a.max_streams;
    opts.max_connections = a.max_connections;
    opts.idle_timeout = (a.idle_timeout > 0).then(|| Duration::from_secs(a.idle_timeout));
    opts.threads = a.threads;
    let server = BoundServer::bind(opts).await?;
    let addr = server.local_addr()?;
    eprintln!("ScoreService on {addr}: {mode}, DELAY_MS={}", a.delay_ms);
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn warn_ignored(t: &RpcTlsArgs) {
    if t.tls_ca.is_some() || t.tls_cert.is_some() || t.tls_key.is_some() {
        tracing::warn!("--insecure: ignoring TLS_CA/TLS_CERT/TLS_KEY");
    }
}

async fn connector(c: &ClientArgs, resumption: bool) -> Result<Connector> {
    let tls = if c.tls.insecure {
        warn_ignored(&c.tls);
        None
    } else {
        let Some(ca) = c.tls.tls_ca.clone() else {
            bail!("a TLS client needs TLS_CA (or --tls-ca) to verify the server; pass --insecure for plaintext");
        };
        let identity = match (c.tls.tls_cert.clone(), c.tls.tls_key.clone()) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("mutual TLS needs both TLS_CERT and TLS_KEY"),
        };
        Some(tls::client_config(&ClientTls {
            ca,
            identity,
            accept_legacy: c.tls.legacy_cn_certs,
            resumption,
            groups: c.tls.groups.clone(),
        })?)
    };
    Ok(Connector::resolve(&Target {
        host: c.host.clone(),
        port: c.port,
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
        duration: secs(a.duration_sec, "T_DURATION_SEC")?,
        warmup: secs(a.warmup_sec, "T_WARMUP_SEC")?,
        deadline: Duration::from_millis(a.client.deadline_ms),
        max_outstanding: a.max_outstanding,
        payload: a.client.payload.clone(),
    };
    opts.validate()?;
    let channel = connector.channel().await?;
    let timer = timer(a.client.tokio_timer);
    if a.find_max {
        let fm = FindMaxOptions {
            start_rps: a.start_rps,
            max_rps: a.max_rps,
            growth: 1.5,
            refine_steps: 4,
            p99_bound: Duration::try_from_secs_f64(a.p99_bound_ms / 1e3)
                .context("--p99-bound-ms is not a duration")?,
            max_error_rate: a.max_error_rate,
        };
        let result = find_max(channel, &opts, &fm, &timer, |s: &Step| {
            println!(
                "{:>9.0}/s achieved {:>9.0}/s  p50 {:.3} p99 {:.3} ms  errors {:.3}%  {}",
                s.report.target_rps,
                s.report.achieved_rps,
                s.report.latencies.percentile_ms(50.0),
                s.report.latencies.percentile_ms(99.0),
                100.0 * s.report.error_rate(),
                if s.passed { "pass" } else { "FAIL" }
            );
        })
        .await?;
        match result.best_rps {
            Some(best) => println!(
                "highest sustainable rate on one channel: {best:.0}/s (p99 <= {} ms, errors <= {}%)",
                a.p99_bound_ms,
                100.0 * a.max_error_rate
            ),
            None => println!("no rate met the bounds; lower --start-rps"),
        }
        return Ok(());
    }
    eprintln!(
        "01_steady: {} rps for {} s after {} s warm-up, to {}",
        a.rps,
        a.duration_sec,
        a.warmup_sec,
        connector.label()
    );
    let run = run_steady(channel, &opts, &timer).await?;
    record::write_steady(&a.out, &run.outcomes)?;
    print_steady(&run.report);
    println!("results: {}", a.out.display());
    Ok(())
}

async fn coldconn(a: ColdArgs) -> Result<()> {
    let connector = connector(&a.client, a.resume).await?;
    let opts = ColdOptions {
        rate: a.rate,
        duration: secs(a.duration_sec, "T_DURATION_SEC")?,
        deadline: Duration::from_millis(a.client.deadline_ms),
        payload: a.client.payload.clone(),
        warmup_attempts: a.warmup_attempts,
    };
    eprintln!(
        "02_coldconn: {} attempts/s for {} s, to {}",
        a.rate,
        a.duration_sec,
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
