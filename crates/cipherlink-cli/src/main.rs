//! `cipherlink`: encrypted links between parties, and honest measurements of them.

mod arg_errors;
mod bench_cmd;
mod bench_conn_print;
mod bench_datagram_cmd;
mod bench_idle_cmd;
mod bench_link_cmd;
mod bench_pool_cmd;
mod bench_proxy_cmd;
mod certs_cmd;
mod chaos_cmd;
mod chaos_run;
mod connect_cmd;
mod error_report;
mod info_cmd;
mod json_report;
mod link_cmd;
mod link_port;
mod link_typhoon;
mod link_udp;
mod output;
mod pool_cmd;
mod proxy_cmd;
mod rpc_cmd;
mod seaside_serve;
mod serve_cmd;
mod shutdown;
mod stdio_session;
mod summarize_cmd;
mod tls_args;
mod values;
mod wire_policy;

#[cfg(test)]
mod allocator_tests;

use anyhow::{Context as _, Result};

/// rustls and hyper allocate many small, short-lived buffers across threads;
/// mimalloc serves those faster than glibc's malloc (measured in bench conn).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

/// Encrypted, authenticated, post-quantum-ready links (hybrid X25519MLKEM768
/// by default), and benchmarks that compare them with their baselines.
///
/// Start with `cipherlink bench conn` (no setup needed), or
/// `cipherlink certs --out certs/` and then `serve` / `connect`.
#[derive(Debug, Parser)]
#[command(
    name = "cipherlink",
    version,
    long_version = info_cmd::long_version(),
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a test CA with server and client certificates.
    Certs(certs_cmd::CertsArgs),
    /// Run a TLS server (echo, or print what arrives).
    Serve(serve_cmd::ServeArgs),
    /// Connect to a TLS server, send stdin, print the reply.
    Connect(connect_cmd::ConnectArgs),
    /// What each TLS implementation (rustls, OpenSSL) offers here.
    Info(info_cmd::InfoArgs),
    /// Benchmarks (connections/s, ...).
    Bench(bench_cmd::BenchArgs),
    /// gRPC latency lab: serve, steady, coldconn (then `summarize` the results).
    Rpc(rpc_cmd::RpcArgs),
    /// Summarize results files (numbers, SVG and HTML plots).
    Summarize(summarize_cmd::SummarizeArgs),
    /// A party of a pool of named parties, wire-compatible with TNO's tno.mpc.communication: serve, send.
    Pool(pool_cmd::PoolArgs),
    /// Chaos lab: netem strings on the packet model, an impairment proxy, a namespace lab, scenario runs.
    Chaos(chaos_cmd::ChaosArgs),
    /// Encrypt any TCP service, like stunnel: server, client, run, keygen.
    // Boxed: its flags for every transport make it the largest variant.
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// The link protocol (hybrid post-quantum, probe-resistant): keygen, invite, revoke, serve, connect.
    Link(link_cmd::LinkArgs),
}

fn init_logging() {
    // A typo in CIPHERLINK_LOG is said, not silently replaced by the default.
    let (filter, refused) = match std::env::var("CIPHERLINK_LOG") {
        Ok(spec) => match tracing_subscriber::EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(err) => (
                tracing_subscriber::EnvFilter::new("info"),
                Some((spec, err)),
            ),
        },
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some((spec, err)) = refused {
        tracing::warn!(
            "CIPHERLINK_LOG={spec:?} is not a log filter ({err}); logging at info. \
             Write e.g. debug, or info,cipherlink_link=debug"
        );
    }
}

fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{}", error_report::render(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> Result<()> {
    init_logging();
    // The gRPC suite's .env fills in environment variables, which flags read at parse time.
    rpc_cmd::load_dotenv();
    let cli = Cli::try_parse()
        .unwrap_or_else(|error| arg_errors::without_weakening_tips::<Cli>(error).exit());
    // Test-only (tests/docs_examples.rs): check a documented command line's
    // flags and values without running it (benchmarks, root, foreign hosts).
    if std::env::var_os("CIPHERLINK_PARSE_ONLY").is_some_and(|v| v == "1") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(cli));
    // tokio reads stdin on a blocking thread whose read cannot be cancelled
    // (`connect` after the server closed, with a terminal on stdin): exit
    // without waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs(args) => certs_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Connect(args) => connect_cmd::run(args).await,
        Command::Info(args) => info_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args).await,
        Command::Rpc(args) => rpc_cmd::run(args).await,
        Command::Summarize(args) => summarize_cmd::run(args),
        Command::Pool(args) => pool_cmd::run(args).await,
        Command::Chaos(args) => chaos_cmd::run(args).await,
        Command::Proxy(args) => proxy_cmd::run(*args).await,
        Command::Link(args) => link_cmd::run(args).await,
    }
}
