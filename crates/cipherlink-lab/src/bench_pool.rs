//! `cipherlink bench pool`: two parties of a cipherlink-pool on loopback,
//! plain and TLS, Rust-Rust and (when given a Python interpreter with
//! tno.mpc.communication 5.x) Rust-Python.
//!
//! For each payload size, Alice (always Rust) runs three phases against Bob:
//! 1. one-way: `send` awaited one at a time, as the package does;
//! 2. pipelined: up to `depth` sends in flight;
//! 3. round trip: send, Bob sends it back, Alice receives; per-message RTT.
//!
//! Both sides use default (counter) ids, so a Python Bob only needs to know
//! the counts (`tests/py/bench_party.py` in cipherlink-pool).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherlink::certs::{CertOptions, Pem};
use cipherlink_pool::{PeerConfig, Pool, PoolConfig, RetryPolicy, Value};
use hdrhistogram::Histogram;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::LabError;

/// What to run.
#[derive(Debug, Clone)]
pub struct PoolBenchOptions {
    /// Payload sizes in bytes (a `bytes` value of this length).
    pub sizes: Vec<usize>,
    /// Messages per phase for payloads up to 64 KiB.
    pub messages_small: usize,
    /// Messages per phase for larger payloads.
    pub messages_large: usize,
    /// Sends in flight in the pipelined phase.
    pub depth: usize,
    /// Run plain HTTP.
    pub plain: bool,
    /// Run TLS.
    pub tls: bool,
    /// Also measure Python parties (a Rust Alice with a Python Bob, and the
    /// Python-Python baseline).
    pub python: Option<PythonParty>,
}

/// How to run a Python party.
#[derive(Debug, Clone)]
pub struct PythonParty {
    /// A Python with tno.mpc.communication 5.x (and, for TLS,
    /// `cryptography` and `pyOpenSSL`).
    pub interpreter: PathBuf,
    /// The party script, `bench_party.py` (in cipherlink-pool's `tests/py`).
    pub script: PathBuf,
}

impl Default for PoolBenchOptions {
    fn default() -> Self {
        PoolBenchOptions {
            sizes: vec![16, 1 << 20],
            messages_small: 2000,
            messages_large: 100,
            depth: 16,
            plain: true,
            tls: true,
            python: None,
        }
    }
}

const RUST_PAIR: &str = "rust-rust";
const MIXED_PAIR: &str = "rust-python5";
const PYTHON_PAIR: &str = "python5-python5";

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct PoolBenchRow {
    /// "rust-rust", "rust-python5" (Rust Alice, Python Bob) or
    /// "python5-python5" (the baseline).
    pub pair: String,
    /// "plain" or "tls".
    pub transport: String,
    /// Payload bytes.
    pub size: usize,
    /// Messages per phase.
    pub messages: usize,
    /// One-way, each send awaited: messages per second.
    pub oneway_msgs_per_s: f64,
    /// Pipelined: messages per second.
    pub pipelined_msgs_per_s: f64,
    /// Round trip, median, milliseconds.
    pub rtt_p50_ms: f64,
    /// Round trip, 99th percentile, milliseconds.
    pub rtt_p99_ms: f64,
}

/// All rows.
#[derive(Debug, Clone, Serialize)]
pub struct PoolBenchReport {
    /// The measured cases.
    pub rows: Vec<PoolBenchRow>,
    /// Cases that could not run because a Python party failed, with why.
    pub python_failures: Vec<String>,
}

fn pool_err(phase: &str) -> impl FnOnce(cipherlink_pool::PoolError) -> LabError + '_ {
    move |source| LabError::Pool {
        phase: phase.to_string(),
        source: Box::new(source),
    }
}

/// What a run reports as it goes, for a caller that shows progress.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum PoolBenchEvent<'a> {
    /// A case was measured (it is in the report too).
    Row(&'a PoolBenchRow),
    /// A Python party failed; its case is left out (and listed in the
    /// report's `python_failures`).
    PythonFailed(&'a str),
}

/// Runs every case and returns the report; `on_event` hears of each row as
/// it is measured (a run takes minutes).
pub async fn run(
    opts: PoolBenchOptions,
    mut on_event: impl FnMut(PoolBenchEvent<'_>),
) -> Result<PoolBenchReport, LabError> {
    let certs = Arc::new(PoolPki::new()?);
    let mut rows = Vec::new();
    let mut python_failures = Vec::new();
    let mut transports = Vec::new();
    if opts.plain {
        transports.push(false);
    }
    if opts.tls {
        transports.push(true);
    }
    for &tls in &transports {
        for &size in &opts.sizes {
            let n = if size <= 64 * 1024 {
                opts.messages_small
            } else {
                opts.messages_large
            };
            let row = case(&opts, &certs, tls, size, n, None).await?;
            on_event(PoolBenchEvent::Row(&row));
            rows.push(row);
            if let Some(python) = &opts.python {
                let mixed = case(&opts, &certs, tls, size, n, Some(python)).await;
                let pair = python_pair(&opts, python, &certs, tls, size, n).await;
                for outcome in [mixed, pair] {
                    match outcome {
                        Ok(row) => {
                            on_event(PoolBenchEvent::Row(&row));
                            rows.push(row);
                        }
                        Err(e @ LabError::PythonParty { .. }) => {
                            let transport = if tls { "mutual TLS" } else { "plain" };
                            let why = format!("{transport}, {size} B: {e}");
                            on_event(PoolBenchEvent::PythonFailed(&why));
                            python_failures.push(why);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(PoolBenchReport {
        rows,
        python_failures,
    })
}

/// Rust-Rust over Python-Python for one transport and size, from rows of
/// the same run.
#[derive(Debug, Clone, Serialize)]
pub struct PoolBenchRatio {
    /// "plain" or "tls".
    pub transport: String,
    /// Payload bytes.
    pub size: usize,
    /// One-way messages/s, Rust over Python.
    pub oneway: f64,
    /// Pipelined messages/s, Rust over Python.
    pub pipelined: f64,
    /// Median round trip, Python over Rust (how many times lower Rust's is).
    pub rtt_p50_lower: f64,
}

impl PoolBenchReport {
    /// Rust-Rust against the Python-Python baseline, where both ran.
    pub fn ratios(&self) -> Vec<PoolBenchRatio> {
        let python = |r: &PoolBenchRow| {
            self.rows
                .iter()
                .find(|p| p.pair == PYTHON_PAIR && p.transport == r.transport && p.size == r.size)
        };
        self.rows
            .iter()
            .filter(|r| r.pair == RUST_PAIR)
            .filter_map(|rust| {
                python(rust).map(|py| PoolBenchRatio {
                    transport: rust.transport.clone(),
                    size: rust.size,
                    oneway: rust.oneway_msgs_per_s / py.oneway_msgs_per_s,
                    pipelined: rust.pipelined_msgs_per_s / py.pipelined_msgs_per_s,
                    rtt_p50_lower: py.rtt_p50_ms / rust.rtt_p50_ms,
                })
            })
            .collect()
    }
}

/// One case with a Rust Alice; Bob is Rust, or the `python` party.
async fn case(
    opts: &PoolBenchOptions,
    certs: &Arc<PoolPki>,
    tls: bool,
    size: usize,
    n: usize,
    python: Option<&PythonParty>,
) -> Result<PoolBenchRow, LabError> {
    // Rust parties serve on listeners bound here, so each side knows the
    // other's port before either starts.
    let (alice_listener, alice_port) = bind()?;
    let mut py_child = None;
    let (bob_ready_tx, bob_ready_rx) = oneshot::channel();
    let (bob, bob_port) = if let Some(python) = python {
        let bob_port = port_for_python()?;
        py_child = Some(python_bob(python, certs, tls, bob_port, alice_port, n).await?);
        let _ = bob_ready_tx.send(());
        (None, bob_port)
    } else {
        let certs = certs.clone();
        let (bob_listener, bob_port) = bind()?;
        let bob = on_own_thread("bob", move || async move {
            let bob = party(
                "Bob",
                bob_listener,
                PeerConfig::new("Alice", "127.0.0.1", alice_port),
                tls.then(|| certs.party(&certs.bob, &certs.alice)),
            )
            .await?;
            let _ = bob_ready_tx.send(());
            rust_bob(bob, n).await
        });
        (Some(bob), bob_port)
    };

    let (depth, certs_for_alice) = (opts.depth, certs.clone());
    let alice = on_own_thread("alice", move || async move {
        let certs = certs_for_alice;
        let alice = party(
            "Alice",
            alice_listener,
            PeerConfig::new("Bob", "127.0.0.1", bob_port),
            tls.then(|| certs.party(&certs.alice, &certs.bob)),
        )
        .await?;
        bob_ready_rx
            .await
            .map_err(|_| LabError::Setup("Bob did not start".into()))?;
        let measured = alice_phases(&alice, size, n, depth).await;
        alice.shutdown().await;
        measured
    });

    let measured = alice.await;
    if let Some(bob) = bob {
        bob.await?;
    }
    if let Some(mut child) = py_child {
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    let pair = if python.is_some() {
        MIXED_PAIR
    } else {
        RUST_PAIR
    };
    Ok(measured?.into_row(pair, tls, size, n))
}

/// Runs a party on an OS thread of its own with a single-threaded runtime,
/// as if it were its own process: it wakes from epoll when its peer writes,
/// instead of handing every message between the worker threads of one
/// shared runtime (two futex wake-ups per message, which cost more than the
/// HTTP work of a small message).
fn on_own_thread<F, Fut, T>(
    name: &str,
    party: F,
) -> impl std::future::Future<Output = Result<T, LabError>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, LabError>>,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let name = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("bench-{name}"))
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LabError::Setup(format!("runtime: {e}")))
                .and_then(|rt| rt.block_on(party()));
            let _ = tx.send(result);
        });
    async move {
        spawned.map_err(|e| LabError::Setup(format!("thread for {name}: {e}")))?;
        rx.await
            .map_err(|_| LabError::Setup(format!("{name} panicked")))?
    }
}

/// What Alice measured in the three phases; `bench_party.py --role alice`
/// prints the same fields as JSON.
#[derive(serde::Deserialize)]
struct Measured {
    oneway: f64,
    pipelined: f64,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
}

impl Measured {
    fn into_row(self, pair: &str, tls: bool, size: usize, messages: usize) -> PoolBenchRow {
        PoolBenchRow {
            pair: pair.to_string(),
            transport: if tls { "tls" } else { "plain" }.to_string(),
            size,
            messages,
            oneway_msgs_per_s: self.oneway,
            pipelined_msgs_per_s: self.pipelined,
            rtt_p50_ms: self.rtt_p50_ms,
            rtt_p99_ms: self.rtt_p99_ms,
        }
    }
}

async fn alice_phases(
    alice: &Pool,
    size: usize,
    n: usize,
    depth: usize,
) -> Result<Measured, LabError> {
    let payload = Value::from(vec![0x5a; size]);
    // 1. One-way, awaited.
    let t = Instant::now();
    for _ in 0..n {
        alice
            .send("Bob", &payload, None)
            .await
            .map_err(pool_err("one-way"))?;
    }
    let oneway = n as f64 / t.elapsed().as_secs_f64();

    // 2. Pipelined: ids are taken in order, sends overlap.
    let t = Instant::now();
    let mut set = JoinSet::new();
    let payload = Arc::new(payload);
    for _ in 0..n {
        while set.len() >= depth.max(1) {
            if let Some(r) = set.join_next().await {
                flatten(r).map_err(pool_err("pipelined"))?;
            }
        }
        let (a, p) = (alice.clone(), payload.clone());
        // Each send takes the next counter id; the set of ids is the same
        // whatever order the tasks run in, so Bob's in-order recvs all match.
        set.spawn(async move { a.send("Bob", &p, None).await.map(|_| ()) });
    }
    while let Some(r) = set.join_next().await {
        flatten(r).map_err(pool_err("pipelined"))?;
    }
    let pipelined = n as f64 / t.elapsed().as_secs_f64();

    // 3. Round trips.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| LabError::Setup(format!("histogram: {e}")))?;
    for _ in 0..n {
        let t = Instant::now();
        alice
            .send("Bob", &payload, None)
            .await
            .map_err(pool_err("rtt send"))?;
        alice
            .recv("Bob", None)
            .await
            .map_err(pool_err("rtt recv"))?;
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
    }
    Ok(Measured {
        oneway,
        pipelined,
        rtt_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        rtt_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// The baseline: a Python Alice against a Python Bob, the same phases.
async fn python_pair(
    opts: &PoolBenchOptions,
    python: &PythonParty,
    certs: &PoolPki,
    tls: bool,
    size: usize,
    n: usize,
) -> Result<PoolBenchRow, LabError> {
    let alice_port = port_for_python()?;
    let bob_port = port_for_python()?;
    let mut bob = python_bob(python, certs, tls, bob_port, alice_port, n).await?;
    let mut alice = python_command(python, certs, tls, alice_port, bob_port, n, "alice");
    alice
        .arg(format!("--size={size}"))
        .arg(format!("--depth={}", opts.depth));
    alice.stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(600), alice.output())
        .await
        .map_err(|_| python_failed(python, "Alice", "took over 600 s".into(), b""))?
        .map_err(|e| python_failed(python, "Alice", e.to_string(), b""))?;
    let _ = tokio::time::timeout(Duration::from_secs(30), bob.wait()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let measured: Measured = serde_json::from_str(line).map_err(|e| {
        python_failed(
            python,
            "Alice",
            format!("printed {line:?} ({e}); exit {}", out.status),
            &out.stderr,
        )
    })?;
    Ok(measured.into_row(PYTHON_PAIR, tls, size, n))
}

/// `bench_party.py` as `role`, listening on `port`, its peer on `peer_port`.
fn python_command(
    python: &PythonParty,
    certs: &PoolPki,
    tls: bool,
    port: u16,
    peer_port: u16,
    n: usize,
    role: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&python.interpreter);
    cmd.arg(&python.script)
        .arg(format!("--role={role}"))
        .arg(format!("--port={port}"))
        .arg(format!("--peer-port={peer_port}"))
        .arg(format!("--count={n}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if tls {
        // Alice holds the server leaf, Bob the client leaf (both carry both
        // usages), as the Rust parties do.
        let (own, peer) = if role == "alice" {
            (&certs.alice, &certs.bob)
        } else {
            (&certs.bob, &certs.alice)
        };
        cmd.arg("--tls")
            .arg(&own.cert_path)
            .arg(&own.key_path)
            .arg(&certs.ca_path)
            .arg(&peer.cert_path);
    }
    cmd
}

/// Starts the Python Bob and waits until it listens.
async fn python_bob(
    python: &PythonParty,
    certs: &PoolPki,
    tls: bool,
    bob_port: u16,
    alice_port: u16,
    n: usize,
) -> Result<tokio::process::Child, LabError> {
    let mut cmd = python_command(python, certs, tls, bob_port, alice_port, n, "bob");
    // Bob runs on while Alice measures: its stderr goes to a file, read only
    // if it fails to start.
    let stderr_path = certs.dir.path().join(format!("bob-{bob_port}.stderr"));
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| python_failed(python, "Bob", format!("stderr file: {e}"), b""))?;
    cmd.stderr(stderr);
    let mut child = cmd
        .spawn()
        .map_err(|e| python_failed(python, "Bob", e.to_string(), b""))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| python_failed(python, "Bob", "no stdout pipe".into(), b""))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("READY") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let _ = child.kill().await;
        let stderr = std::fs::read(&stderr_path).unwrap_or_default();
        return Err(python_failed(
            python,
            "Bob",
            "did not print READY".into(),
            &stderr,
        ));
    }
    Ok(child)
}

/// The Python party's failure, with the end of its stderr and, when a module
/// is missing, what to install.
fn python_failed(
    python: &PythonParty,
    role: &'static str,
    what: String,
    stderr: &[u8],
) -> LabError {
    let stderr = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let mut detail = what;
    if !tail.is_empty() {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        detail.push_str(&format!("; stderr: {}", tail.join(" | ")));
    }
    if let Some(module) = stderr
        .lines()
        .find_map(|l| l.split("No module named ").nth(1))
    {
        detail.push_str(&format!(
            "; this Python lacks {module}: the benchmark's parties need \
             tno.mpc.communication 5.x (and cryptography and pyOpenSSL for --tls), \
             as scripts/setup-peers installs into .venv/tno5"
        ));
    }
    LabError::PythonParty {
        role,
        python: python.interpreter.display().to_string(),
        detail,
    }
}

fn flatten(
    r: Result<Result<(), cipherlink_pool::PoolError>, tokio::task::JoinError>,
) -> Result<(), cipherlink_pool::PoolError> {
    r.unwrap_or_else(|e| Err(cipherlink_pool::PoolError::TaskFailed(e.to_string())))
}

/// Bob's side of the three phases, with default ids.
async fn rust_bob(bob: Pool, n: usize) -> Result<(), LabError> {
    for _ in 0..2 * n {
        bob.recv("Alice", None)
            .await
            .map_err(pool_err("bob recv"))?;
    }
    for _ in 0..n {
        let v = bob
            .recv("Alice", None)
            .await
            .map_err(pool_err("bob rtt recv"))?;
        bob.send("Alice", &v, None)
            .await
            .map_err(pool_err("bob rtt send"))?;
    }
    bob.shutdown().await;
    Ok(())
}

/// Starts a party on `listener`, with TLS when given its identity.
async fn party(
    name: &str,
    listener: std::net::TcpListener,
    peer: PeerConfig,
    tls: Option<TlsParty<'_>>,
) -> Result<Pool, LabError> {
    let mut cfg = PoolConfig::new(name, ([127, 0, 0, 1], 0).into());
    cfg.retry = RetryPolicy {
        attempts: 40,
        wait: Duration::from_millis(250),
    };
    cfg.limits.recv_timeout = Some(Duration::from_secs(120));
    let peer = match tls {
        Some(tls) => {
            let pem = |s: &String| cipherlink::PemSource::inline(s.clone());
            let (server, client) = cipherlink_pool::tls::core_configs(
                pem(&tls.own.pem.cert),
                pem(&tls.own.pem.key),
                pem(tls.ca_pem),
            )
            .map_err(|e| LabError::Setup(format!("certificates: {e}")))?;
            cfg = cfg.tls(server, client);
            peer.with_cert(tls.peer_der.clone())
        }
        None => peer,
    };
    cfg = cfg.peer(peer);
    Pool::with_listener(cfg, listener)
        .await
        .map_err(pool_err("start"))
}

/// A listener on a free loopback port, and the port.
fn bind() -> Result<(std::net::TcpListener, u16), LabError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            let port = l.local_addr()?.port();
            Ok((l, port))
        })
        .map_err(|e| LabError::Setup(format!("binding 127.0.0.1:0: {e}")))
}

/// A loopback port that was free a moment ago, for a Python party only:
/// tno.mpc.communication binds the port number it is given and announces it
/// to its peers, so it cannot be handed a bound socket. Another program can
/// take the port in between (the party then fails to start, loudly, and its
/// case is reported as failed). Rust parties get bound listeners ([`bind`]).
fn port_for_python() -> Result<u16, LabError> {
    bind().map(|(_, port)| port)
}

/// One party's certificate and key.
struct Identity {
    /// The certificate and key, PEM (for Rust parties).
    pem: Pem,
    /// The certificate, DER: the identity its peer pins, as the package does.
    der: CertificateDer<'static>,
    /// The certificate file (for Python parties).
    cert_path: PathBuf,
    /// The key file.
    key_path: PathBuf,
}

impl Identity {
    fn new(pem: &Pem, dir: &Path, name: &str) -> Result<Identity, LabError> {
        let der = CertificateDer::from_pem_slice(pem.cert.as_bytes())
            .map_err(|e| LabError::Setup(format!("certificates: {name}.crt: {e}")))?;
        Ok(Identity {
            pem: pem.clone(),
            der,
            cert_path: dir.join(format!("{name}.crt")),
            key_path: dir.join(format!("{name}.key")),
        })
    }
}

/// A party's TLS: its identity, the CA, and the peer's certificate.
struct TlsParty<'a> {
    own: &'a Identity,
    ca_pem: &'a String,
    peer_der: &'a CertificateDer<'static>,
}

/// The benchmark's certificates, as `cipherlink certs` makes them (the CA
/// name starts with CN, as the package's identity needs): Alice holds the
/// server leaf and Bob the client leaf, named `bob` (both leaves carry both
/// usages). Also written to a temporary folder for Python parties, which
/// take files; removed when the value drops.
struct PoolPki {
    dir: tempfile::TempDir,
    ca_pem: String,
    ca_path: PathBuf,
    alice: Identity,
    bob: Identity,
}

impl PoolPki {
    fn new() -> Result<PoolPki, LabError> {
        let bundle = cipherlink::certs::generate(&CertOptions {
            client_name: "bob".into(),
            ..CertOptions::default()
        })?;
        let dir = tempfile::tempdir()
            .map_err(|e| LabError::Setup(format!("a temporary folder for certificates: {e}")))?;
        bundle.write_to(dir.path())?;
        Ok(PoolPki {
            ca_pem: bundle.ca.cert.clone(),
            ca_path: dir.path().join("ca.crt"),
            alice: Identity::new(&bundle.server, dir.path(), "server")?,
            bob: Identity::new(&bundle.client, dir.path(), "client")?,
            dir,
        })
    }

    /// `own`'s TLS against `peer`.
    fn party<'a>(&'a self, own: &'a Identity, peer: &'a Identity) -> TlsParty<'a> {
        TlsParty {
            own,
            ca_pem: &self.ca_pem,
            peer_der: &peer.der,
        }
    }
}
