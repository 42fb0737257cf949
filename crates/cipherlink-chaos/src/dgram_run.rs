//! Runs one scenario with a datagram transport: its client in namespace A
//! sends numbered datagrams at a steady rate ([`crate::dgram_exchange`]),
//! its echo server in namespace B, the TUN router between them applying
//! the scenario's netem string to every packet, UDP as TCP (the model
//! sees only lengths and times). A scenario of `n` messages becomes
//! [`DATAGRAMS_PER_MESSAGE`]·n datagrams, one every [`INTERVAL`]; the
//! stale scenario silences the peer after as many times its echoes.
//! Datagram transports need the lab: without root the scenario is not run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::dgram_exchange::{self, Arrivals, DatagramPlan};
use crate::exchange::{ClientLog, ServerLog};
use crate::netem;
use crate::results::{Mode, ScenarioResult};
use crate::results_dgram::DatagramStats;
use crate::scenario_run::{
    io_err, join, pcap_name, server_panicked, start_lab, stop_lab, LabRun, RunError, RunOptions,
    LISTEN_LIMIT,
};
use crate::scenarios::ScenarioDef;
use crate::subject::DatagramSubject;
use crate::timeline::{timeline, DatagramClasses};

/// Datagrams per message of the stream scenarios: the ideal scenario's 32
/// messages are 256 datagrams.
pub const DATAGRAMS_PER_MESSAGE: u32 = 8;
/// Time between two datagrams: 100 a second.
pub const INTERVAL: Duration = Duration::from_millis(10);
/// How long echoes are waited for after the last datagram: more than
/// any standard scenario's round trip (at most 350 ms with jitter).
pub const DRAIN: Duration = Duration::from_secs(2);

/// `def` as a datagram transport runs it: [`DATAGRAMS_PER_MESSAGE`] times
/// the messages, and the silence after as many times the echoes.
pub fn datagram_scenario(def: &ScenarioDef) -> ScenarioDef {
    ScenarioDef {
        messages: def.messages.saturating_mul(DATAGRAMS_PER_MESSAGE),
        stale_after: def
            .stale_after
            .map(|n| n.saturating_mul(DATAGRAMS_PER_MESSAGE)),
        ..def.clone()
    }
}

/// Runs `def` (a standard scenario, scaled here) with `subject`.
pub async fn run_datagram_scenario<S: DatagramSubject + Clone>(
    subject: S,
    def: &ScenarioDef,
    opts: &RunOptions,
) -> Result<ScenarioResult, RunError> {
    let netem = netem::parse(&def.netem)?;
    let def = datagram_scenario(def);
    if opts.mode == Mode::Proxy {
        return Ok(ScenarioResult::skipped(
            def,
            subject.name(),
            Mode::Proxy,
            opts.timers,
            "a datagram transport needs the TUN lab (the stream proxy carries one TCP \
             connection); run as root"
                .into(),
        ));
    }
    let timers = opts.timers;
    let LabRun {
        lab,
        silence,
        router_stop,
        router_task,
    } = start_lab(netem.clone(), opts)?;

    let epoch = Instant::now();
    let server_addr = SocketAddr::from((lab.b.addr, opts.port));
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let (listen_subject, server_subject) = (subject.clone(), subject.clone());
    let server = lab
        .listen_in(
            &lab.b,
            LISTEN_LIMIT,
            move || async move {
                listen_subject
                    .listen(server_addr)
                    .await
                    .map(|(listening, _)| listening)
                    .map_err(|e| e.to_string())
            },
            move |listening| async move {
                serve(
                    &server_subject,
                    listening,
                    epoch,
                    timers.scenario,
                    server_stopped,
                )
                .await
            },
        )
        .map_err(io_err(format!("server on {server_addr}")))?;

    let bound = subject.gone_within();
    let plan = DatagramPlan {
        count: def.messages,
        interval: INTERVAL,
        drain: DRAIN,
        stale_after: def.stale_after,
        silence: Arc::clone(&silence),
        gone_limit: bound.map(|b| b + timers.stale_slack),
        epoch,
    };
    let client_subject = subject.clone();
    let client = lab.spawn_in(&lab.a, move || async move {
        run_client(&client_subject, server_addr, &plan, timers.scenario).await
    });
    let (client_log, client_arrivals) = match join(client, &lab.a.name).await? {
        Ok(done) => done,
        Err(panic) => (
            ClientLog {
                error: Some(format!("the client panicked: {panic}")),
                failed_at: Some(epoch.elapsed().as_secs_f64()),
                panicked: true,
                ..ClientLog::default()
            },
            Arrivals::default(),
        ),
    };
    let duration = epoch.elapsed().as_secs_f64();
    let _ = server_stop.send(());
    let (server_log, server_arrivals) = join(server, &lab.b.name)
        .await?
        .map(Option::unwrap_or_default)
        .unwrap_or_else(|panic| (server_panicked(panic), Arrivals::default()));
    let (stats, pcap) = stop_lab(lab, router_stop, router_task).await?;
    let name = pcap_name(subject.name(), &def.name);
    opts.out.write(&name, &pcap)?;
    let packets = timeline(&DatagramClasses(&subject), &pcap)?;
    let sent = u32::try_from(client_log.messages.len()).unwrap_or(u32::MAX);
    let mut datagram = DatagramStats::new(
        &netem,
        sent,
        INTERVAL.as_secs_f64() * 1e3,
        server_arrivals,
        client_arrivals,
        subject.at_most_once(),
    );
    let stale = def.stale_after.is_some();
    if stale {
        // The silence, not the impairment, decides what the stale scenario loses.
        datagram.expected_fraction = None;
        datagram.min_fraction = None;
    }
    Ok(ScenarioResult::new(
        def,
        subject.name(),
        Mode::Lab,
        opts.seed,
        timers,
        bound.filter(|_| stale).map(|b| b.as_secs_f64()),
        client_log,
        server_log,
        duration,
        Some(stats.into()),
        packets,
        Some(name),
    )
    .with_datagram(datagram))
}

/// Serves one session until the client ends it, the scenario's limit,
/// or `stop` (the client is done: plain UDP has no end of its own).
async fn serve<S: DatagramSubject>(
    subject: &S,
    mut listening: S::Listening,
    epoch: Instant,
    limit: Duration,
    stop: oneshot::Receiver<()>,
) -> (ServerLog, Arrivals) {
    let mut log = ServerLog::default();
    let mut arrivals = Arrivals::default();
    let work = async {
        let mut session = subject
            .take(&mut listening)
            .await
            .map_err(|e| e.to_string())?;
        dgram_exchange::server(&mut session, epoch, &mut log, &mut arrivals).await;
        Ok::<(), String>(())
    };
    let outcome = tokio::select! {
        r = timeout(limit, work) => match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("no end within {limit:?}")),
        },
        // Not an error: plain UDP's server cannot tell the run ended.
        _ = stop => None,
    };
    if log.error.is_none() {
        log.error = outcome;
    }
    (log, arrivals)
}

async fn run_client<S: DatagramSubject>(
    subject: &S,
    server: SocketAddr,
    plan: &DatagramPlan,
    limit: Duration,
) -> (ClientLog, Arrivals) {
    let mut log = ClientLog::default();
    let mut arrivals = Arrivals::default();
    let work = async {
        let mut session = subject.dial(server).await.map_err(|e| e.to_string())?;
        log.connected = Some(plan.epoch.elapsed().as_secs_f64());
        dgram_exchange::client(&mut session, plan, &mut log, &mut arrivals).await;
        Ok::<(), String>(())
    };
    let error = match timeout(limit, work).await {
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
    (log, arrivals)
}
