//! Runs one scenario of [`crate::scenarios`]: a subject's client in namespace A and echo server in
//! namespace B, joined by the TUN router applying the scenario's netem
//! string (root), or, without root, through the stream proxy on loopback.
//! Every wait is bounded by the scenario's [`Timers`]; the lab's namespaces
//! are removed when the scenario ends, however it ends.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::capture::{CappedBuf, Capture, CaptureError};
use crate::exchange::{self, ClientLog, ClientPlan, ServerLog};
use crate::lab::{Lab, TunLabError};
use crate::model::Model;
use crate::netem::{self, NetemError};
use crate::output::{OutDir, OutputError};
use crate::recorder::Recorder;
use crate::results::{Mode, ScenarioResult};
use crate::router::Router;
use crate::scenarios::{ScenarioDef, Timers};
use crate::stream_proxy::{ProxyConfig, StreamProxy};
use crate::stream_shaper::Impairments;
use crate::subject::{Dial, LabSubject};
use crate::timeline::{timeline, TimelineError};
use crate::tun_router::route_with;

/// A scenario's capture, held in memory (lab) or read back (proxy), is
/// refused beyond this many bytes: 64 MiB, a thousand times what a
/// standard scenario ([`crate::scenarios`]) captures.
pub const CAPTURE_LIMIT: usize = 64 * 1024 * 1024;

/// How long a subject's server may take to listen: a foreign program
/// (an interpreter and its imports) is given time on a slow machine.
pub(crate) const LISTEN_LIMIT: Duration = Duration::from_secs(20);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seed of the impairment models (A→B draws from 2·seed, B→A from 2·seed+1).
    pub seed: u64,
    /// Time limits.
    pub timers: Timers,
    /// Where the pcap files go.
    pub out: Arc<OutDir>,
    /// Lab (root) or proxy.
    pub mode: Mode,
    /// Prefix of the namespaces' names (see [`Lab::create`]).
    pub prefix: String,
    /// The server's port.
    pub port: u16,
    /// Largest capture of a scenario, in bytes ([`CAPTURE_LIMIT`]).
    pub capture_limit: usize,
}

/// Why a scenario could not be run at all (a failure of the subject is a
/// result, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The lab could not be set up.
    #[error("the lab: {0}")]
    Lab(#[from] TunLabError),
    /// The scenario's netem string is wrong.
    #[error("scenario netem string: {0}")]
    Netem(#[from] NetemError),
    /// The capture could not be written.
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    /// The capture could not be read back.
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    /// An output file was refused or could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Files, sockets, threads.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

pub(crate) fn other(what: &str, reason: impl std::fmt::Display) -> RunError {
    RunError::Io {
        what: what.into(),
        source: std::io::Error::other(reason.to_string()),
    }
}

/// The pcap file name of a scenario.
pub fn pcap_name(transport: &str, scenario: &str) -> String {
    format!("{transport}-{scenario}.pcap")
}

/// Runs `def` with `subject`.
pub async fn run_scenario<S: LabSubject + Clone>(
    subject: S,
    def: &ScenarioDef,
    opts: &RunOptions,
) -> Result<ScenarioResult, RunError> {
    let netem = netem::parse(&def.netem)?;
    match opts.mode {
        Mode::Lab => run_lab(subject, def, netem, opts).await,
        Mode::Proxy => run_proxy(subject, def, netem, opts).await,
    }
}

/// The transport's bound for declaring a silent peer gone, and whether the
/// lab must set `TCP_USER_TIMEOUT` to get one.
fn gone_bound<S: LabSubject>(subject: &S, timers: &Timers) -> (Duration, bool) {
    match subject.gone_within() {
        Some(d) => (d, false),
        None => (timers.tcp_user_timeout, true),
    }
}

async fn run_lab<S: LabSubject + Clone>(
    subject: S,
    def: &ScenarioDef,
    netem: netem::Netem,
    opts: &RunOptions,
) -> Result<ScenarioResult, RunError> {
    let timers = opts.timers;
    let LabRun {
        lab,
        silence,
        router_stop,
        router_task,
    } = start_lab(netem, opts)?;

    let epoch = Instant::now();
    let server_addr = SocketAddr::from((lab.b.addr, opts.port));
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let server = start_server(&lab, &subject, server_addr, epoch, timers, server_stopped)?;

    let (bound, user_timeout) = gone_bound(&subject, &timers);
    let stale = def.stale_after.is_some();
    let plan = ClientPlan {
        messages: def.messages,
        stale_after: def.stale_after,
        silence: Arc::clone(&silence),
        gone_limit: bound + timers.stale_slack,
        epoch,
    };
    let client_subject = subject.clone();
    let client = lab.spawn_in(&lab.a, move || async move {
        let tcp_timeout = (stale && user_timeout).then_some(timers.tcp_user_timeout);
        if let Err(e) = client_subject.prepare_client_namespace(tcp_timeout) {
            return ClientLog {
                error: Some(e.to_string()),
                failed_at: Some(plan.epoch.elapsed().as_secs_f64()),
                ..ClientLog::default()
            };
        }
        run_client(
            &client_subject,
            server_addr,
            &plan,
            timers.scenario,
            tcp_timeout,
        )
        .await
    });
    let client_log = match join(client, &lab.a.name).await? {
        Ok(log) => log,
        Err(panic) => ClientLog {
            error: Some(format!("the client panicked: {panic}")),
            failed_at: Some(epoch.elapsed().as_secs_f64()),
            panicked: true,
            ..ClientLog::default()
        },
    };
    let duration = epoch.elapsed().as_secs_f64();
    let _ = server_stop.send(());
    let server_log = join(server, &lab.b.name)
        .await?
        .map(Option::unwrap_or_default)
        .unwrap_or_else(server_panicked);
    let (stats, pcap) = stop_lab(lab, router_stop, router_task).await?;
    let name = pcap_name(subject.name(), &def.name);
    opts.out.write(&name, &pcap)?;
    let packets = timeline(&subject, &pcap)?;
    Ok(ScenarioResult::new(
        def.clone(),
        subject.name(),
        Mode::Lab,
        opts.seed,
        timers,
        stale.then_some(bound.as_secs_f64()),
        client_log,
        server_log,
        duration,
        Some(stats.into()),
        packets,
        Some(name),
    ))
}

/// The router's task: its counts and capture once told to stop.
pub(crate) type RouterTask =
    tokio::task::JoinHandle<Result<(crate::tun_router::RouterStats, CappedBuf), RunError>>;

/// A scenario's lab while it runs: the namespaces, the router between
/// them (a model per direction, capturing), and the switch that silences
/// the peer.
pub(crate) struct LabRun {
    pub(crate) lab: SweptLab,
    pub(crate) silence: Arc<AtomicBool>,
    pub(crate) router_stop: oneshot::Sender<()>,
    pub(crate) router_task: RouterTask,
}

/// Makes the namespaces and starts routing between them with `netem`
/// each way (A→B draws from 2·seed, B→A from 2·seed+1).
pub(crate) fn start_lab(netem: netem::Netem, opts: &RunOptions) -> Result<LabRun, RunError> {
    let mut lab = SweptLab(Lab::create(&opts.prefix)?);
    let (a, b) = lab
        .take_devices()
        .ok_or_else(|| other("the lab", "its TUN devices are missing"))?;
    let router = Router::new(
        Model::new(netem.clone(), opts.seed.wrapping_mul(2)),
        Model::new(netem, opts.seed.wrapping_mul(2).wrapping_add(1)),
    );
    let silence = Arc::new(AtomicBool::new(false));
    let (router_stop, router_stopped) = oneshot::channel::<()>();
    let router_silence = Arc::clone(&silence);
    let capture_limit = opts.capture_limit;
    let router_task = tokio::spawn(async move {
        let mut capture = Capture::new(CappedBuf::new(capture_limit))?;
        let stats = route_with(
            a,
            b,
            router,
            Some(&mut capture),
            async {
                let _ = router_stopped.await;
            },
            &router_silence,
        )
        .await
        .map_err(io_err("routing"))?;
        Ok::<_, RunError>((stats, capture.into_inner()))
    });
    Ok(LabRun {
        lab,
        silence,
        router_stop,
        router_task,
    })
}

/// Stops the router, removes the namespaces, and returns the router's
/// counts and the capture (an error if it was cut at its bound: it would
/// mislead, so the scenario fails with why).
pub(crate) async fn stop_lab(
    lab: SweptLab,
    router_stop: oneshot::Sender<()>,
    router_task: RouterTask,
) -> Result<(crate::tun_router::RouterStats, Vec<u8>), RunError> {
    let _ = router_stop.send(());
    let (stats, pcap) = router_task
        .await
        .map_err(|e| other("the router task", e))??;
    drop(lab);
    Ok((stats, pcap.into_bytes()?))
}

/// The subject's server in namespace B, listening at `addr` once this
/// returns, serving one session until `stopped`.
#[allow(clippy::type_complexity)]
fn start_server<S: LabSubject + Clone>(
    lab: &Lab,
    subject: &S,
    addr: SocketAddr,
    epoch: Instant,
    timers: Timers,
    stopped: oneshot::Receiver<()>,
) -> Result<std::thread::JoinHandle<Result<Option<ServerLog>, TunLabError>>, RunError> {
    let (listen_subject, server_subject) = (subject.clone(), subject.clone());
    lab.listen_in(
        &lab.b,
        LISTEN_LIMIT,
        move || async move {
            listen_subject
                .listen(addr)
                .await
                .map(|(listening, _)| listening)
                .map_err(|e| e.to_string())
        },
        move |listening| async move {
            serve(&server_subject, listening, epoch, timers.scenario, stopped).await
        },
    )
    .map_err(io_err(format!("server on {addr}")))
}

/// A lab whose namespaces are emptied before they are removed, however the
/// scenario ends: a foreign command's process that left its process group
/// (a daemon, `setsid`) escapes the kill of that group, and would run on,
/// as root or the sudo user, in a namespace no longer named anywhere.
pub(crate) struct SweptLab(Lab);

impl std::ops::Deref for SweptLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl std::ops::DerefMut for SweptLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.0
    }
}

impl Drop for SweptLab {
    fn drop(&mut self) {
        for ns in [&self.0.a, &self.0.b] {
            let ended = end_processes_in(&ns.name);
            if ended > 0 {
                tracing::warn!(
                    "ended {ended} process(es) still in namespace {} at the end of the scenario",
                    ns.name
                );
            }
        }
    }
}

/// Kills every process in network namespace `name` (of `/run/netns`), this
/// one excepted; how many. Never the host's namespace, whatever `name`.
fn end_processes_in(name: &str) -> usize {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let Ok(target) = std::fs::metadata(format!("/run/netns/{name}")).map(id) else {
        return 0;
    };
    let ours = std::fs::metadata("/proc/self/ns/net").map(id);
    let host = std::fs::metadata("/proc/1/ns/net").map(id);
    if ours.as_ref().ok() == Some(&target) || host.as_ref().ok() == Some(&target) {
        return 0;
    }
    let me = std::process::id();
    let mut ended = std::collections::BTreeSet::new();
    // Again while any were found: one may have forked meanwhile.
    for _ in 0..8 {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            break;
        };
        let mut found = 0;
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // A zombie has no namespace left: it is not found.
            let inside = std::fs::metadata(entry.path().join("ns/net")).map(id);
            if pid == me || inside.ok() != Some(target) {
                continue;
            }
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            let signal = nix::sys::signal::Signal::SIGKILL;
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).is_ok() {
                found += 1;
                ended.insert(pid);
            }
        }
        if found == 0 {
            break;
        }
        // The killed leave their namespace as they exit.
        std::thread::sleep(Duration::from_millis(10));
    }
    ended.len()
}

/// Waits for a namespace thread without blocking the runtime. The thread
/// ends by itself: everything it waits on is bounded by the scenario's timers.
/// A panic of the code under test is a result (`Ok(Err(message))`), which
/// the scenario reports; failing to enter the namespace is an error.
pub(crate) async fn join<T: Send + 'static>(
    handle: std::thread::JoinHandle<Result<T, TunLabError>>,
    ns: &str,
) -> Result<Result<T, String>, RunError> {
    let joined = tokio::task::spawn_blocking(move || handle.join())
        .await
        .map_err(|e| other("waiting for a namespace thread", e))?;
    match joined {
        Ok(r) => Ok(Ok(r?)),
        Err(payload) => Ok(Err(format!(
            "in namespace {ns}: {}",
            panic_message(&*payload)
        ))),
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

pub(crate) fn server_panicked(panic: String) -> ServerLog {
    ServerLog {
        error: Some(format!("the server panicked: {panic}")),
        panicked: true,
        ..ServerLog::default()
    }
}

async fn serve<S: LabSubject>(
    subject: &S,
    mut listening: S::Listening,
    epoch: Instant,
    limit: Duration,
    stop: oneshot::Receiver<()>,
) -> ServerLog {
    let mut log = ServerLog::default();
    let work = async {
        let mut session = subject
            .take(&mut listening)
            .await
            .map_err(|e| e.to_string())?;
        exchange::server(&mut session, epoch, &mut log).await;
        Ok::<(), String>(())
    };
    // The select's futures (and their borrow of `log`) end with this statement.
    let outcome = tokio::select! {
        r = timeout(limit, work) => match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("no end within {limit:?}")),
        },
        _ = stop => Some("stopped after the client ended".to_string()),
    };
    if log.error.is_none() {
        log.error = outcome;
    }
    log
}

async fn run_client<S: LabSubject>(
    subject: &S,
    server: SocketAddr,
    plan: &ClientPlan,
    limit: Duration,
    user_timeout: Option<Duration>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let dial = Dial {
        server,
        user_timeout,
    };
    let work = async {
        let mut session = subject.dial(&dial).await.map_err(|e| e.to_string())?;
        if subject.observes_setup() {
            log.connected = Some(plan.epoch.elapsed().as_secs_f64());
        }
        exchange::client(&mut session, plan, &mut log).await;
        Ok::<(), String>(())
    };
    let outcome = timeout(limit, work).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("no end within {limit:?}")),
    };
    if let Some(e) = error {
        if log.error.is_none() {
            log.failed_at = Some(plan.epoch.elapsed().as_secs_f64());
            log.error = Some(e);
        }
    }
    log
}

/// What the stream proxy cannot do to a byte stream, if the scenario needs it.
fn proxy_cannot(def: &ScenarioDef, netem: &netem::Netem) -> Option<String> {
    let mut missing = Vec::new();
    if netem.loss.is_some() {
        missing.push("loss");
    }
    if netem.duplicate.is_some() {
        missing.push("duplication");
    }
    if netem.reorder.is_some() {
        missing.push("reordering");
    }
    if netem.rate.is_some() {
        missing.push("rate");
    }
    if def.stale_after.is_some() {
        missing.push("silencing a live connection");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "the stream proxy (no root) cannot do {}: it impairs a byte stream, and TCP \
             repairs packet faults below it; run as root for the TUN lab",
            missing.join(", ")
        )
    })
}

async fn run_proxy<S: LabSubject + Clone>(
    subject: S,
    def: &ScenarioDef,
    netem: netem::Netem,
    opts: &RunOptions,
) -> Result<ScenarioResult, RunError> {
    let timers = opts.timers;
    if let Some(why) = subject.needs_lab().or_else(|| proxy_cannot(def, &netem)) {
        return Ok(ScenarioResult::skipped(
            def.clone(),
            subject.name(),
            Mode::Proxy,
            timers,
            why,
        ));
    }
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (listening, upstream) = subject
        .listen(loopback)
        .await
        .map_err(|e| other("starting the echo server", e))?;
    let imp = Impairments {
        latency: netem.delay.map(|d| d.latency).unwrap_or_default(),
        jitter: netem.delay.map(|d| d.jitter).unwrap_or_default(),
        corrupt: netem.corrupt.map_or(0.0, |c| c.probability.fraction()),
        ..Impairments::default()
    };
    let mut config = ProxyConfig::new(loopback, upstream.to_string());
    config.up = imp;
    config.down = imp;
    config.seed = opts.seed;
    config.idle_timeout = timers.scenario;
    let name = pcap_name(subject.name(), &def.name);
    let (recorder, writer) = Recorder::create(opts.out.create(&name)?)?;
    config.recorder = Some(recorder);
    let proxy = StreamProxy::bind(config)
        .await
        .map_err(|e| other("starting the stream proxy", e))?;
    let proxy_addr = proxy.local_addr().map_err(io_err("the proxy's address"))?;
    let proxy_task = tokio::spawn(proxy.run());

    let epoch = Instant::now();
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let server_subject = subject.clone();
    let server = tokio::spawn(async move {
        serve(
            &server_subject,
            listening,
            epoch,
            timers.scenario,
            server_stopped,
        )
        .await
    });
    let plan = ClientPlan {
        messages: def.messages,
        stale_after: None,
        silence: Arc::new(AtomicBool::new(false)),
        gone_limit: timers.scenario,
        epoch,
    };
    let client_log = run_client(&subject, proxy_addr, &plan, timers.scenario, None).await;
    let duration = epoch.elapsed().as_secs_f64();
    let _ = server_stop.send(());
    let server_log = match server.await {
        Ok(log) => log,
        Err(e) if e.is_panic() => server_panicked(panic_message(&*e.into_panic())),
        Err(e) => return Err(other("the server task", e)),
    };
    // Dropping the proxy drops the last recorder handle: the writer flushes and ends.
    proxy_task.abort();
    let _ = proxy_task.await;
    // The connection's last events come as its task ends; then the file is committed.
    writer.finish(Duration::from_secs(5)).await?;
    let pcap = opts.out.read(&name, opts.capture_limit as u64)?;
    let packets = timeline(&subject, &pcap)?;
    Ok(ScenarioResult::new(
        def.clone(),
        subject.name(),
        Mode::Proxy,
        opts.seed,
        timers,
        None,
        client_log,
        server_log,
        duration,
        None,
        packets,
        Some(name),
    ))
}
