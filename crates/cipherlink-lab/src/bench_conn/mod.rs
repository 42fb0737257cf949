//! `cipherlink bench conn`: connections per second, seed 000's experiment.
//!
//! Each connection is connect -> handshake -> client writes PING -> server
//! answers PONG -> close. Plain TCP runs in the same process as the ceiling,
//! and the crypto floor is measured in the same run, so the rate can be
//! read as a fraction of what this machine's public-key work permits
//! (see [`floor`] for what a handshake needs).

mod client;
pub mod floor;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cipherlink::certs::{self, CertBundle, CertOptions, KeyAlgorithm};
use cipherlink::{Config, Context, Implementation, KeyExchange, PemSource};
use hdrhistogram::Histogram;
use serde::Serialize;

use floor::CryptoFloor;

pub(crate) const PING: &[u8; 4] = b"PING";
pub(crate) const PONG: &[u8; 4] = b"PONG";

/// The lab's error type, by the name this module's callers know.
pub use crate::LabError as BenchError;

/// What a running benchmark reports as it goes; the caller decides how to
/// show it (the lab prints nothing).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnEvent {
    /// A case is about to run.
    CaseStarted {
        /// e.g. `tls X25519 on rustls`.
        label: String,
    },
    /// Every `batch` completed connections of the running case.
    Connections {
        /// Completed so far in this case.
        done: u64,
        /// Their rate since the case started.
        per_sec: f64,
    },
    /// A case finished; its floor is measured.
    CaseDone {
        /// The result, floor included.
        case: Box<CaseResult>,
    },
}

/// A callback for [`ConnEvent`]s, called from any thread.
pub type Observer = crate::observer::Observer<ConnEvent>;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plain TCP: the ceiling.
    Plain,
    /// A full TLS 1.3 handshake per connection.
    Tls,
    /// TLS 1.3 resumed with a ticket from an earlier connection.
    TlsResume,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plain" => Ok(Mode::Plain),
            "tls" => Ok(Mode::Tls),
            "tls-resume" => Ok(Mode::TlsResume),
            _ => Err(format!("unknown mode {s:?}; valid: plain, tls, tls-resume")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Plain => "plain",
            Mode::Tls => "tls",
            Mode::TlsResume => "tls-resume",
        })
    }
}

/// What each connection exchanges after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exchange {
    /// PING, expect exactly PONG (cipherlink's own servers).
    PingPong,
    /// `PING\n`, expect five bytes back (`cipherlink serve --echo`, `openssl s_server -rev`).
    Echo,
    /// Handshake and close (any TLS server).
    None,
}

impl std::str::FromStr for Exchange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pingpong" => Ok(Exchange::PingPong),
            "echo" => Ok(Exchange::Echo),
            "none" => Ok(Exchange::None),
            _ => Err(format!(
                "unknown exchange {s:?}; valid: pingpong, echo, none"
            )),
        }
    }
}

/// An external server to measure instead of the in-process one.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// The CA that signed its certificate.
    pub ca: PemSource,
    /// The name to verify (defaults to the address).
    pub server_name: Option<String>,
}

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct ConnBenchOptions {
    /// Modes, in order.
    pub modes: Vec<Mode>,
    /// Groups for the TLS modes; each is one case.
    pub groups: Vec<KeyExchange>,
    /// TLS implementations; each group runs on each, client and server
    /// both on the same one (side by side in one run).
    pub implementations: Vec<Implementation>,
    /// Stop after this many connections per case (otherwise after `duration`).
    pub connections: Option<u64>,
    /// How long each case runs (a hard cap when `connections` is set too).
    pub duration: Duration,
    /// Connections in flight at once.
    pub concurrency: usize,
    /// Report progress every this many connections (0: never).
    pub batch: u64,
    /// External server, or `None` for the in-process one.
    pub target: Option<Target>,
    /// After-handshake exchange.
    pub exchange: Exchange,
    /// Certificate key algorithm of the in-process server.
    pub cert_algorithm: KeyAlgorithm,
    /// Receives progress and per-case results while the run goes on.
    pub observer: Option<Observer>,
    /// The clients' verified-chain cache (`Config::chain_cache`, on both
    /// implementations).
    /// The floor counts the verifications the handshakes really do.
    pub chain_cache: bool,
}

impl Default for ConnBenchOptions {
    fn default() -> Self {
        ConnBenchOptions {
            modes: vec![Mode::Plain, Mode::Tls, Mode::TlsResume],
            groups: vec![
                KeyExchange::X25519MlKem768,
                KeyExchange::X25519,
                KeyExchange::P256,
            ],
            implementations: vec![Implementation::Rustls],
            connections: None,
            duration: Duration::from_secs(3),
            concurrency: 16,
            batch: 1000,
            target: None,
            exchange: Exchange::PingPong,
            cert_algorithm: KeyAlgorithm::P256,
            observer: None,
            chain_cache: true,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// One mode/group case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The mode.
    pub mode: Mode,
    /// The group (none for plain).
    pub group: Option<String>,
    /// The TLS implementation (none for plain).
    pub implementation: Option<Implementation>,
    /// Connections completed.
    pub connections: u64,
    /// Connections that failed.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Connections that resumed a session.
    pub resumed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Completed connections per second.
    pub conns_per_sec: f64,
    /// connect() to handshake done.
    pub handshake: Percentiles,
    /// The whole connection.
    pub connection: Percentiles,
    /// The crypto floor, measured on every core just before this case.
    pub floor: Option<CryptoFloor>,
    /// Connections/s this machine's crypto and TCP allow (see the report).
    pub floor_per_sec: Option<f64>,
    /// `conns_per_sec` as a percentage of `floor_per_sec`.
    pub percent_of_floor: Option<f64>,
    /// Process CPU time (client and server, in-process) per connection, in
    /// microseconds; robust to other load on the machine. `None` with --target.
    pub cpu_us_per_conn: Option<f64>,
    /// Server connections still open after the case (must be 0).
    pub server_connections_left: Option<usize>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ConnReport {
    /// CPU cores available.
    pub cores: usize,
    /// Concurrency used.
    pub concurrency: usize,
    /// Certificate algorithm.
    pub cert_algorithm: String,
    /// What was measured against.
    pub target: String,
    /// CPU microseconds per plain TCP connection (both ends), from the plain case.
    pub plain_tcp_us: Option<f64>,
    /// The cases.
    pub cases: Vec<CaseResult>,
}

struct Fixture {
    bundle: CertBundle,
}

impl Fixture {
    fn server_context(&self, tls: Tls, resumption: bool) -> Result<Context, BenchError> {
        Ok(Context::server(
            &Config::builder()
                .implementation(tls.implementation)
                .key_exchange([tls.group])
                .identity(
                    PemSource::inline(self.bundle.server.cert.clone()),
                    PemSource::inline(self.bundle.server.key.clone()),
                )
                .resumption(resumption)
                .build(),
        )?)
    }
}

fn client_context(
    ca: PemSource,
    server_name: Option<String>,
    tls: Tls,
    resumption: bool,
    chain_cache: bool,
) -> Result<Context, BenchError> {
    let mut config = Config::builder()
        .implementation(tls.implementation)
        .chain_cache(chain_cache)
        .key_exchange([tls.group])
        .trusted_ca(ca)
        .resumption(resumption);
    if let Some(name) = server_name {
        config = config.server_name(name);
    }
    Ok(Context::client(&config.build())?)
}

fn leaf_public_key(cert_pem: &str) -> Result<Vec<u8>, BenchError> {
    use cipherlink::rustls::pki_types::{pem::PemObject, CertificateDer};
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| BenchError::Setup(format!("server certificate PEM: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| BenchError::Setup(format!("server certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// Runs the benchmark, printing seed-style lines and a final table on stdout.
pub async fn run(options: &ConnBenchOptions) -> Result<ConnReport, BenchError> {
    if options.concurrency == 0 {
        return Err(BenchError::Setup("--concurrency must be at least 1".into()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bundle = certs::generate(&CertOptions {
        algorithm: options.cert_algorithm,
        ..CertOptions::default()
    })?;
    let fixture = Fixture { bundle };

    let spki = leaf_public_key(&fixture.bundle.server.cert)?;
    let mut cases = Vec::new();
    let mut plain_tcp_us = None;
    for &mode in &options.modes {
        let cases_of_mode: Vec<Option<Tls>> = match mode {
            Mode::Plain => vec![None],
            _ => options
                .groups
                .iter()
                .flat_map(|&group| {
                    options.implementations.iter().map(move |&implementation| {
                        Some(Tls {
                            group,
                            implementation,
                        })
                    })
                })
                .collect(),
        };
        for tls in cases_of_mode {
            Observer::emit(
                options.observer.as_ref(),
                ConnEvent::CaseStarted {
                    label: case_label(mode, tls),
                },
            );
            // Floor samples before and after the case: the machine's drift
            // during the case shows as their spread.
            let mut samples = Vec::new();
            if let Some(tls) = tls {
                for _ in 0..FLOOR_SAMPLES_EACH_SIDE {
                    samples.push(measure_floor(options, &fixture, &spki, tls, cores)?);
                }
            }
            let mut result = run_case(options, &fixture, mode, tls).await?;
            if let Some(tls) = tls {
                for _ in 0..FLOOR_SAMPLES_EACH_SIDE {
                    samples.push(measure_floor(options, &fixture, &spki, tls, cores)?);
                }
            }
            result.floor = CryptoFloor::from_samples(&samples);
            if mode == Mode::Plain && result.conns_per_sec > 0.0 {
                plain_tcp_us = Some(cores as f64 * 1e6 / result.conns_per_sec);
            }
            if let Some(floor) = &result.floor {
                let crypto_us = match mode {
                    Mode::TlsResume => floor.resumed_handshake_us(),
                    _ => floor.full_handshake_us(),
                };
                let per_conn = crypto_us + plain_tcp_us.unwrap_or(0.0);
                let floor_rate = cores as f64 * 1e6 / per_conn;
                result.floor_per_sec = Some(floor_rate);
                result.percent_of_floor = Some(100.0 * result.conns_per_sec / floor_rate);
            }
            Observer::emit(
                options.observer.as_ref(),
                ConnEvent::CaseDone {
                    case: Box::new(result.clone()),
                },
            );
            cases.push(result);
        }
    }
    let report = ConnReport {
        cores,
        concurrency: options.concurrency,
        cert_algorithm: options.cert_algorithm.to_string(),
        target: options
            .target
            .as_ref()
            .map_or("in-process loopback".to_string(), |t| t.addr.to_string()),
        plain_tcp_us,
        cases,
    };
    Ok(report)
}

/// A TLS case: a group on an implementation.
#[derive(Debug, Clone, Copy)]
struct Tls {
    group: KeyExchange,
    implementation: Implementation,
}

fn case_label(mode: Mode, tls: Option<Tls>) -> String {
    match tls {
        Some(tls) => format!("{mode} {} on {}", tls.group, tls.implementation),
        None => mode.to_string(),
    }
}

/// Floor samples taken before a case, and again after it.
const FLOOR_SAMPLES_EACH_SIDE: usize = 2;

/// One sample of the crypto floor of a case, measured on every core.
fn measure_floor(
    options: &ConnBenchOptions,
    fixture: &Fixture,
    spki: &[u8],
    tls: Tls,
    cores: usize,
) -> Result<CryptoFloor, BenchError> {
    Ok(tokio::task::block_in_place(|| {
        floor::measure(
            tls.group,
            options.cert_algorithm,
            &fixture.bundle.server.key,
            spki,
            // Both implementations' clients keep the chain cache.
            options.chain_cache,
            Duration::from_millis(100),
            cores,
        )
    })?)
}

async fn run_case(
    options: &ConnBenchOptions,
    fixture: &Fixture,
    mode: Mode,
    tls: Option<Tls>,
) -> Result<CaseResult, BenchError> {
    let (route, client_ctx) = route(options, fixture, mode, tls)?;
    let exchange = if options.target.is_none() {
        Exchange::PingPong
    } else {
        options.exchange
    };
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        start: Instant::now(),
        limit: options.connections,
        deadline: Instant::now()
            + if options.connections.is_some() {
                options.duration.max(Duration::from_secs(60))
            } else {
                options.duration
            },
        batch: options.batch,
        observer: options.observer.clone(),
    });
    let cpu_before = crate::cpu::process_cpu_time();
    let outputs = drive(options, route, &shared, client_ctx, exchange).await?;
    let cpu = cpu_before.zip(crate::cpu::process_cpu_time());
    Ok(summarize(options, mode, tls, &shared, &outputs, cpu))
}

/// Where this case's clients connect, and with which client Context.
fn route(
    options: &ConnBenchOptions,
    fixture: &Fixture,
    mode: Mode,
    tls: Option<Tls>,
) -> Result<(Route, Option<Context>), BenchError> {
    let resumption = mode == Mode::TlsResume;
    // In process, each core runs its own server and its share of the
    // clients on a single-threaded runtime, so a connection never crosses
    // cores: what is measured is the TLS stack, not the scheduler.
    Ok(match (&options.target, tls) {
        (Some(target), Some(tls)) => (
            Route::Target(target.addr),
            Some(client_context(
                target.ca.clone(),
                target.server_name.clone(),
                tls,
                resumption,
                options.chain_cache,
            )?),
        ),
        (Some(target), None) => (Route::Target(target.addr), None),
        (None, None) => (Route::InProcess(None), None),
        (None, Some(tls)) => {
            let ca = PemSource::inline(fixture.bundle.ca.cert.clone());
            let client = client_context(
                ca,
                Some("localhost".into()),
                tls,
                resumption,
                options.chain_cache,
            )?;
            (
                Route::InProcess(Some(fixture.server_context(tls, resumption)?)),
                Some(client),
            )
        }
    })
}

/// Runs the workers (tasks against a target, or one shard per core in
/// process) until the case ends; one output per shard.
async fn drive(
    options: &ConnBenchOptions,
    route: Route,
    shared: &Arc<Shared>,
    client_ctx: Option<Context>,
    exchange: Exchange,
) -> Result<Vec<ShardOutput>, BenchError> {
    match route {
        Route::Target(addr) => {
            let mut workers = Vec::with_capacity(options.concurrency);
            for _ in 0..options.concurrency {
                let (shared, client_ctx) = (shared.clone(), client_ctx.clone());
                workers.push(tokio::spawn(worker(shared, addr, client_ctx, exchange)));
            }
            let mut results = Vec::with_capacity(workers.len());
            for w in workers {
                results.push(
                    w.await
                        .map_err(|e| BenchError::Setup(format!("worker task: {e}")))?,
                );
            }
            Ok(vec![ShardOutput {
                results,
                server_connections_left: None,
            }])
        }
        Route::InProcess(server_ctx) => {
            let shards = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(options.concurrency);
            let mut threads = Vec::with_capacity(shards);
            for shard in 0..shards {
                // Spread the workers: the first shards take the remainder.
                let workers = options.concurrency / shards
                    + usize::from(shard < options.concurrency % shards);
                let (shared, client_ctx, server_ctx) =
                    (shared.clone(), client_ctx.clone(), server_ctx.clone());
                threads.push(std::thread::spawn(move || {
                    run_shard(shared, server_ctx, client_ctx, exchange, workers)
                }));
            }
            tokio::task::spawn_blocking(move || {
                threads
                    .into_iter()
                    .map(|t| {
                        t.join()
                            .map_err(|_| BenchError::Setup("a benchmark shard panicked".into()))?
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| BenchError::Setup(format!("joining shards: {e}")))?
        }
    }
}

/// The case's numbers from the shards' histograms and the shared counters.
fn summarize(
    options: &ConnBenchOptions,
    mode: Mode,
    tls: Option<Tls>,
    shared: &Shared,
    outputs: &[ShardOutput],
    cpu: Option<(Duration, Duration)>,
) -> CaseResult {
    let mut handshake = new_histogram();
    let mut connection = new_histogram();
    let mut resumed = 0;
    let mut server_connections_left = None;
    for output in outputs {
        for local in &output.results {
            handshake.add(&local.handshake).ok();
            connection.add(&local.connection).ok();
            resumed += local.resumed;
        }
        if let Some(left) = output.server_connections_left {
            *server_connections_left.get_or_insert(0) += left;
        }
    }
    let seconds = shared.start.elapsed().as_secs_f64();
    let completed = shared.completed.load(Ordering::Relaxed);
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    CaseResult {
        mode,
        group: tls.map(|t| t.group.name().to_string()),
        implementation: tls.map(|t| t.implementation),
        connections: completed,
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        resumed,
        seconds,
        conns_per_sec: completed as f64 / seconds,
        handshake: Percentiles::of(&handshake),
        connection: Percentiles::of(&connection),
        floor: None,
        floor_per_sec: None,
        percent_of_floor: None,
        cpu_us_per_conn: match (cpu, &options.target) {
            (Some((before, after)), None) if completed > 0 => {
                Some((after - before).as_secs_f64() * 1e6 / completed as f64)
            }
            _ => None,
        },
        server_connections_left,
    }
}

/// Where the clients connect.
enum Route {
    /// An external server.
    Target(SocketAddr),
    /// In-process servers, one per core: TLS with this Context, or plain.
    InProcess(Option<Context>),
}

struct ShardOutput {
    results: Vec<WorkerResult>,
    server_connections_left: Option<usize>,
}

/// One core's server and clients, on a runtime of its own.
fn run_shard(
    shared: Arc<Shared>,
    server_ctx: Option<Context>,
    client_ctx: Option<Context>,
    exchange: Exchange,
    workers: usize,
) -> Result<ShardOutput, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("shard runtime: {e}")))?;
    runtime.block_on(async move {
        let server = match server_ctx {
            Some(ctx) => server::tls(ctx).await?,
            None => server::plain().await?,
        };
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                tokio::spawn(worker(
                    shared.clone(),
                    server.addr,
                    client_ctx.clone(),
                    exchange,
                ))
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(
                task.await
                    .map_err(|e| BenchError::Setup(format!("worker task: {e}")))?,
            );
        }
        let server_connections_left = match &server.stats {
            Some(stats) => Some(settle(stats).await),
            None => None,
        };
        Ok(ShardOutput {
            results,
            server_connections_left,
        })
    })
}

/// Waits briefly for the server's last connections to finish closing.
async fn settle(stats: &cipherlink::server::ServerStats) -> usize {
    for _ in 0..100 {
        if stats.active() == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stats.active()
}

struct Shared {
    issued: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    start: Instant,
    limit: Option<u64>,
    deadline: Instant,
    batch: u64,
    observer: Option<Observer>,
}

struct WorkerResult {
    handshake: Histogram<u64>,
    connection: Histogram<u64>,
    resumed: u64,
}

fn new_histogram() -> Histogram<u64> {
    // 1 us .. 60 s at 3 significant digits; these bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

async fn worker(
    shared: Arc<Shared>,
    addr: SocketAddr,
    context: Option<Context>,
    exchange: Exchange,
) -> WorkerResult {
    let mut result = WorkerResult {
        handshake: new_histogram(),
        connection: new_histogram(),
        resumed: 0,
    };
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let ticket = shared.issued.fetch_add(1, Ordering::Relaxed);
        if shared.limit.is_some_and(|limit| ticket >= limit) {
            break;
        }
        let attempt = async {
            match &context {
                Some(ctx) => client::tls(addr, ctx, exchange).await,
                None => client::plain(addr, exchange).await,
            }
        };
        let outcome = match tokio::time::timeout(CONNECTION_TIMEOUT, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "connection did not finish within {CONNECTION_TIMEOUT:?}"
            )),
        };
        match outcome {
            Ok(sample) => {
                let _ = result
                    .handshake
                    .record(sample.handshake.as_micros().max(1) as u64);
                let _ = result
                    .connection
                    .record(sample.total.as_micros().max(1) as u64);
                result.resumed += u64::from(sample.resumed);
                let done = shared.completed.fetch_add(1, Ordering::Relaxed) + 1;
                if shared.batch > 0 && done.is_multiple_of(shared.batch) {
                    Observer::emit(
                        shared.observer.as_ref(),
                        ConnEvent::Connections {
                            done,
                            per_sec: done as f64 / shared.start.elapsed().as_secs_f64(),
                        },
                    );
                }
            }
            Err(message) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = shared.first_error.lock() {
                    first.get_or_insert(message);
                }
            }
        }
    }
    result
}
